// Does compute-sanitizer synccheck flag named barriers reached from different code sites? (Session 27.)
// Two converged warps meet at named barrier 1 (64 threads), each from its own code site:
//   mode 0: bar.sync in both (.aligned)         synccheck: "Divergent thread(s) in block", kernel stopped
//   mode 1: barrier.sync in both (non-.aligned)  synccheck: clean; racecheck: clean
//   mode 2: bar.arrive, then bar.sync            synccheck: clean; racecheck: clean (one hand-off)
//   mode 3: bar.sync in both, warp 1 after polling an mbarrier   synccheck: as mode 0
// (H200, driver 580.159.04, CUDA 13.0; run with the barriers and mbarrier waits as inline asm here, since
// moved onto src/ptx's wrappers, which give the same barrier instructions in SASS.) Build and run, from the
// repository root:
//   nvcc -std=c++17 -arch=sm_90a -O2 -lineinfo -I src -o sync_probe docs/experiments/s27-sync-probe.cu
//   for m in 0 1 2 3; do compute-sanitizer --tool synccheck ./sync_probe $m; done
#include <cuda_runtime.h>

#include <cstdint>
#include <cstdio>

#include "ptx/barrier.hpp"
#include "ptx/mbarrier.hpp"

namespace ptx = flash_mla::ptx;
template <int kMode>
__global__ void probe(int* out) {
  __shared__ int x[64];
  const int warp = threadIdx.x / 32;
  if (warp == 0) {
    x[threadIdx.x] = threadIdx.x * 3;
    if (kMode == 0) ptx::named_barrier_sync_aligned(1, 64);
    if (kMode == 1) ptx::named_barrier_sync(1, 64);
    if (kMode == 2) ptx::named_barrier_arrive_aligned(1, 64);
    out[threadIdx.x] = 1;
  } else if (warp == 1) {
    x[threadIdx.x] = threadIdx.x * 5;
    if (kMode == 0) ptx::named_barrier_sync_aligned(1, 64);
    if (kMode == 1) ptx::named_barrier_sync(1, 64);
    if (kMode == 2) ptx::named_barrier_sync_aligned(1, 64);
    out[threadIdx.x] = x[threadIdx.x ^ 32] + 7;
  }
}
// Mode 3: warp 1 first polls an mbarrier (try_wait loop, as the kernel's waits), that warp 0's lane 0
// completes, then both warps meet at named barrier 1 from different code sites.
__global__ void probe_mbar(int* out) {
  __shared__ uint64_t bar;
  const int warp = threadIdx.x / 32;
  if (threadIdx.x == 0) ptx::mbarrier_init(&bar, 1);
  __syncthreads();
  if (warp == 0) {
    for (int i = 0; i < 2000; ++i) out[threadIdx.x] += i;
    if (threadIdx.x == 0) ptx::mbarrier_arrive(&bar);
    ptx::named_barrier_sync_aligned(1, 64);
  } else if (warp == 1) {
    ptx::mbarrier_wait(&bar, 0);
    ptx::named_barrier_sync_aligned(1, 64);
    out[threadIdx.x] = 3;
  }
}
int main(int argc, char** argv) {
  const int mode = argc > 1 ? argv[1][0] - '0' : 0;
  int* out;
  cudaMalloc(&out, 96 * sizeof(int));
  cudaMemset(out, 0, 96 * sizeof(int));
  if (mode == 0) probe<0><<<1, 96>>>(out);
  if (mode == 1) probe<1><<<1, 96>>>(out);
  if (mode == 2) probe<2><<<1, 96>>>(out);
  if (mode == 3) probe_mbar<<<1, 96>>>(out);
  printf("mode%d %s\n", mode, cudaGetErrorString(cudaDeviceSynchronize()));
  return 0;
}

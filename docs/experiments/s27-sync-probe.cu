// Does compute-sanitizer synccheck flag named barriers reached from different code sites? (Session 27.)
// Two converged warps meet at named barrier 1 (64 threads), each from its own code site:
//   mode 0: bar.sync in both (.aligned)         synccheck: "Divergent thread(s) in block", kernel stopped
//   mode 1: barrier.sync in both (non-.aligned)  synccheck: clean; racecheck: clean
//   mode 2: bar.arrive, then bar.sync            synccheck: clean; racecheck: clean (one hand-off)
//   mode 3: bar.sync in both, warp 1 after polling an mbarrier   synccheck: as mode 0
// (H200, driver 580.159.04, CUDA 13.0.) Build and run:
//   nvcc -arch=sm_90a -O2 -lineinfo -o sync_probe s27-sync-probe.cu
//   for m in 0 1 2 3; do compute-sanitizer --tool synccheck ./sync_probe $m; done
#include <cstdio>
#include <cuda_runtime.h>
template <int kMode>
__global__ void probe(int* out) {
  __shared__ int x[64];
  const int warp = threadIdx.x / 32;
  if (warp == 0) {
    x[threadIdx.x] = threadIdx.x * 3;
    if (kMode == 0) asm volatile("bar.sync 1, 64;" ::: "memory");
    if (kMode == 1) asm volatile("barrier.sync 1, 64;" ::: "memory");
    if (kMode == 2) asm volatile("bar.arrive 1, 64;" ::: "memory");
    out[threadIdx.x] = 1;
  } else if (warp == 1) {
    x[threadIdx.x] = threadIdx.x * 5;
    if (kMode == 0) asm volatile("bar.sync 1, 64;" ::: "memory");
    if (kMode == 1) asm volatile("barrier.sync 1, 64;" ::: "memory");
    if (kMode == 2) asm volatile("bar.sync 1, 64;" ::: "memory");
    out[threadIdx.x] = x[threadIdx.x ^ 32] + 7;
  }
}
// Mode 3: warp 1 first polls an mbarrier (try_wait loop, as the kernel's waits), that warp 0's lane 0
// completes, then both warps meet at named barrier 1 from different code sites.
__global__ void probe_mbar(int* out) {
  __shared__ __align__(8) unsigned long long bar;
  const int warp = threadIdx.x / 32;
  const unsigned addr = static_cast<unsigned>(__cvta_generic_to_shared(&bar));
  if (threadIdx.x == 0) asm volatile("mbarrier.init.shared::cta.b64 [%0], 1;" ::"r"(addr));
  __syncthreads();
  if (warp == 0) {
    for (int i = 0; i < 2000; ++i) out[threadIdx.x] += i;
    if (threadIdx.x == 0) asm volatile("mbarrier.arrive.shared::cta.b64 _, [%0];" ::"r"(addr) : "memory");
    asm volatile("bar.sync 1, 64;" ::: "memory");
  } else if (warp == 1) {
    unsigned done = 0;
    while (!done) {
      asm volatile("{ .reg .pred p; mbarrier.try_wait.parity.shared::cta.b64 p, [%1], 0; selp.u32 %0, 1, 0, p; }"
                   : "=r"(done) : "r"(addr) : "memory");
    }
    asm volatile("bar.sync 1, 64;" ::: "memory");
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

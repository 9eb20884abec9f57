// L2 -> SM delivery probe for the next session (session 25 found the grouped seesaw's refills landing
// ~1700-2600 cycles after their free, and b=128 16384 h128 s2 pulling ~4.8 TB/s out of L2: its four
// row-tile CTAs each copy every KV block). Not part of the build:
//   nvcc -O3 -std=c++17 -arch=sm_90a -I src -o l2_bench docs/experiments/l2_bench.cu && ./l2_bench
//
// One CTA per SM; one thread copies 72 KiB blocks (nine 8 KiB cp.async.bulk, as the dense kernel's nine
// boxes) into a 2-stage ring, and one consumer thread frees each stage as soon as it lands (or after
// `hold` cycles). Blocks come from a buffer in a pseudo-random order; CTAs in groups of `share` read the
// same sequence at about the same time, as a call's row tiles do. Reports TB/s delivered into shared
// memory (every CTA's bytes) and TB/s read from the buffer's distinct blocks:
//   - a 4 GiB buffer, share 1: the DRAM copy pattern (session 13's ring_bench: 4.32 TB/s);
//   - share 2 and 4 on it: the 128- and 256-row calls' pattern (one DRAM read, 2 or 4 deliveries);
//   - a 16 MiB buffer (L2-resident after the first pass), share 1: the L2 -> SM ceiling.
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <vector>

#include <cuda/ptx>

#include "ptx/mbarrier.hpp"

namespace {

constexpr int kStages = 2;
constexpr int kChunk = 8192;
constexpr int kChunks = 9;
constexpr int kBlockBytes = kChunk * kChunks;  // 72 KiB, one 64-token bf16 block of 576 channels

struct Smem {
  char stage[kStages][kBlockBytes];
  uint64_t full[kStages];
  uint64_t free[kStages];
};

__global__ void __launch_bounds__(64, 1)
    ring(const char* buf, long long nblocks, int share, int iters, int hold, unsigned long long* sink) {
  extern __shared__ char raw[];
  const uint32_t misalign = static_cast<uint32_t>(__cvta_generic_to_shared(raw)) & 1023;
  Smem& s = *reinterpret_cast<Smem*>(raw + ((1024 - misalign) & 1023));
  if (threadIdx.x == 0) {
    for (int st = 0; st < kStages; ++st) {
      flash_mla::ptx::mbarrier_init(&s.full[st], 1);
      flash_mla::ptx::mbarrier_init(&s.free[st], 1);
    }
    flash_mla::ptx::fence_barrier_init();
  }
  __syncthreads();
  const long long group = blockIdx.x / share;
  if (threadIdx.x == 0) {
    for (int i = 0; i < iters; ++i) {
      const int st = i % kStages;
      const uint32_t parity = (i / kStages) & 1;
      flash_mla::ptx::mbarrier_wait(&s.free[st], parity ^ 1);
      const long long blk = (group * 7919 + static_cast<long long>(i) * 104729) % nblocks;
      flash_mla::ptx::mbarrier_arrive_expect_tx(&s.full[st], kBlockBytes);
      for (int c = 0; c < kChunks; ++c) {
        cuda::ptx::cp_async_bulk(cuda::ptx::space_cluster, cuda::ptx::space_global, s.stage[st] + c * kChunk,
                                 buf + blk * kBlockBytes + c * kChunk, static_cast<uint32_t>(kChunk), &s.full[st]);
      }
    }
  } else if (threadIdx.x == 32) {
    unsigned long long acc = 0;
    for (int i = 0; i < iters; ++i) {
      const int st = i % kStages;
      flash_mla::ptx::mbarrier_wait(&s.full[st], (i / kStages) & 1);
      acc += static_cast<unsigned char>(s.stage[st][i % kBlockBytes]);
      if (hold > 0) {
        const long long t0 = clock64();
        while (clock64() - t0 < hold) {
        }
      }
      flash_mla::ptx::mbarrier_arrive(&s.free[st]);
    }
    if (acc == 0x123456789ull) *sink = acc;  // keeps the reads
  }
}

void check(cudaError_t e, const char* what) {
  if (e != cudaSuccess) {
    std::fprintf(stderr, "%s: %s\n", what, cudaGetErrorString(e));
    std::exit(1);
  }
}

}  // namespace

int main() {
  int sms = 0;
  check(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, 0), "sm count");
  const size_t big = size_t{4} << 30, small = size_t{16} << 20;
  char* buf = nullptr;
  check(cudaMalloc(&buf, big), "cudaMalloc");
  check(cudaMemset(buf, 1, big), "cudaMemset");
  unsigned long long* sink = nullptr;
  check(cudaMalloc(&sink, sizeof(*sink)), "cudaMalloc");
  const int smem = static_cast<int>(sizeof(Smem)) + 1024;
  check(cudaFuncSetAttribute(ring, cudaFuncAttributeMaxDynamicSharedMemorySize, smem), "smem opt-in");
  cudaEvent_t e0, e1;
  check(cudaEventCreate(&e0), "event");
  check(cudaEventCreate(&e1), "event");
  const int iters = 2000;
  struct Case {
    const char* what;
    size_t bytes;
    int share, hold;
  };
  const Case cases[] = {{"4 GiB, share 1 (DRAM pattern)", big, 1, 0},
                        {"4 GiB, share 2 (128-row calls)", big, 2, 0},
                        {"4 GiB, share 4 (256-row calls)", big, 4, 0},
                        {"16 MiB, share 1 (L2 resident)", small, 1, 0},
                        {"16 MiB, share 4", small, 4, 0},
                        {"4 GiB, share 4, hold 3000 cycles", big, 4, 3000}};
  std::printf("%d CTAs, %d blocks of 72 KiB each, 2-stage ring; median of 5 launches\n", sms, iters);
  std::printf("%-36s %12s %14s %12s\n", "case", "us", "delivered TB/s", "read TB/s");
  for (const Case& c : cases) {
    const long long nblocks = static_cast<long long>(c.bytes / kBlockBytes);
    std::vector<float> ms;
    for (int rep = 0; rep < 6; ++rep) {
      check(cudaEventRecord(e0), "record");
      ring<<<sms, 64, smem>>>(buf, nblocks, c.share, iters, c.hold, sink);
      check(cudaEventRecord(e1), "record");
      check(cudaEventSynchronize(e1), "sync");
      check(cudaGetLastError(), "launch");
      float t = 0;
      check(cudaEventElapsedTime(&t, e0, e1), "elapsed");
      if (rep > 0) ms.push_back(t);  // the first launch warms L2 and the clocks
    }
    std::sort(ms.begin(), ms.end());
    const double sec = ms[ms.size() / 2] * 1e-3;
    const double delivered = static_cast<double>(sms) * iters * kBlockBytes;
    std::printf("%-36s %12.1f %14.2f %12.2f\n", c.what, sec * 1e6, delivered / sec * 1e-12,
                delivered / c.share / sec * 1e-12);
  }
  cudaFree(sink);
  cudaFree(buf);
  return 0;
}

// Instruction-cache probe for the next session (session 23 found the dense decode kernel 6-10 % slower
// when only its producer's code moved; docs/PERFORMANCE.md). Not part of the build:
//   nvcc -O3 -arch=sm_90a -o icache_bench docs/experiments/icache_bench.cu && ./icache_bench
//
// Each kernel runs a loop whose body is `kInstr` FFMA (four independent chains, so one warp can issue
// one per cycle) on every warp of one CTA per SM, and reports the median SM cycles per FFMA per
// warp-scheduler: the steady state (iterations 2..) and the first iteration, whose code is cold. Warp w
// runs on scheduler w % 4; with `split`, warps 4..7 run a second body of kInstr (as the dense kernel's
// consumer 1 beside consumer 0's warps 0..3), so with 8 or 12 warps every scheduler's instruction cache
// must hold both bodies (with 4 warps each scheduler runs one warp, and split changes nothing). Where the steady
// cost rises above ~1 cycle per FFMA per warp, the body no longer fits the cache level serving it.
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdio>
#include <vector>

namespace {

constexpr int kMaxWarps = 16;

template <int kInstr, int kVariant>
__device__ __forceinline__ void body(float (&x)[4], float a, float b) {
#pragma unroll
  for (int i = 0; i < kInstr / 4; ++i) {
#pragma unroll
    for (int c = 0; c < 4; ++c) x[c] = kVariant == 0 ? fmaf(x[c], a, b) : fmaf(x[c], b, a);
  }
}

// cycles[block][warp][0]: the first iteration; [1]: iterations 2 .. iters (per iteration).
template <int kInstr>
__global__ void __launch_bounds__(kMaxWarps * 32, 1)
    probe(float* out, float a, float b, int iters, bool split, long long* cycles) {
  const int warp = threadIdx.x / 32;
  float x[4] = {threadIdx.x * 1e-3f, 1.0f, 2.0f, 3.0f};
  const bool odd = split && (warp / 4) % 2 == 1;
  long long t0 = clock64(), t1 = t0;
  for (int it = 0; it < iters; ++it) {
    if (odd) {
      body<kInstr, 1>(x, a, b);
    } else {
      body<kInstr, 0>(x, a, b);
    }
    if (it == 0) t1 = clock64();
  }
  const long long t2 = clock64();
  if (threadIdx.x % 32 == 0) {
    cycles[(blockIdx.x * kMaxWarps + warp) * 2 + 0] = t1 - t0;
    cycles[(blockIdx.x * kMaxWarps + warp) * 2 + 1] = (t2 - t1) / (iters > 1 ? iters - 1 : 1);
  }
  out[blockIdx.x * blockDim.x + threadIdx.x] = x[0] + x[1] + x[2] + x[3];
}

void check(cudaError_t e, const char* what) {
  if (e != cudaSuccess) {
    std::fprintf(stderr, "%s: %s\n", what, cudaGetErrorString(e));
    std::exit(1);
  }
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0.0 : v[v.size() / 2];
}

template <int kInstr>
void run(int sms, int warps, bool split, float* out, long long* cycles) {
  const int iters = 64;
  probe<kInstr><<<sms, warps * 32>>>(out, 1.0000001f, 1e-7f, iters, split, cycles);  // warm-up
  probe<kInstr><<<sms, warps * 32>>>(out, 1.0000001f, 1e-7f, iters, split, cycles);
  check(cudaDeviceSynchronize(), "probe");
  std::vector<long long> c(static_cast<size_t>(sms) * kMaxWarps * 2);
  check(cudaMemcpy(c.data(), cycles, c.size() * sizeof(long long), cudaMemcpyDeviceToHost), "cudaMemcpy");
  std::vector<double> first, steady;
  for (int s = 0; s < sms; ++s) {
    for (int w = 0; w < warps; ++w) {
      first.push_back(static_cast<double>(c[(s * kMaxWarps + w) * 2 + 0]));
      steady.push_back(static_cast<double>(c[(s * kMaxWarps + w) * 2 + 1]));
    }
  }
  // A scheduler serves warps / 4 warps; per FFMA and scheduler: cycles / (kInstr * warps / 4).
  const double per = kInstr * std::max(1, warps / 4);
  std::printf("%6.1f KiB  %2d warps  %-6s  steady %6.3f  first %7.3f cycles per FFMA per scheduler\n",
              kInstr * 16 / 1024.0, warps, split ? "split" : "same", median(steady) / per, median(first) / per);
}

}  // namespace

int main() {
  int sms = 0;
  check(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, 0), "attribute");
  float* out = nullptr;
  long long* cycles = nullptr;
  check(cudaMalloc(&out, sizeof(float) * sms * kMaxWarps * 32), "cudaMalloc");
  check(cudaMalloc(&cycles, sizeof(long long) * sms * kMaxWarps * 2), "cudaMalloc");
  for (int warps : {4, 8, 12}) {
    for (bool split : {false, true}) {
      if (split && warps == 4) continue;
      run<256>(sms, warps, split, out, cycles);
      run<512>(sms, warps, split, out, cycles);
      run<768>(sms, warps, split, out, cycles);
      run<1024>(sms, warps, split, out, cycles);
      run<1280>(sms, warps, split, out, cycles);
      run<1536>(sms, warps, split, out, cycles);
      run<2048>(sms, warps, split, out, cycles);
      run<3072>(sms, warps, split, out, cycles);
      run<4096>(sms, warps, split, out, cycles);
      run<6144>(sms, warps, split, out, cycles);
      run<8192>(sms, warps, split, out, cycles);
    }
  }
  return 0;
}

// flash-mla-phases: where a block's time goes in the Hopper kernel's consumers. Built only with
// -DFLASH_MLA_TRACE=ON (the library then stamps clock64 at every consumer hand-off of the first
// kPhaseIters blocks of each CTA, kernel.cuh FLASH_MLA_PHASE_AT); never a release build. For each
// workload it prints the median time of one call (stream launches, no graph) and, per consumer, the
// median cycle of each event after consumer 0 began the block, over CTAs and blocks 2 .. kPhaseIters-2.
// The stamps cost a few percent and shift the schedule slightly: compare builds with flash-mla-bench,
// and read a stamp taken just after a bar.sync as "issued" (SASS BAR.SYNC.DEFER_BLOCKING lets the
// clock read run before the barrier releases).
//
//   cmake -S . -B build-trace -DFLASH_MLA_TRACE=ON && cmake --build build-trace --target flash-mla-phases
//   build-trace/cli/flash-mla-phases
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdio>
#include <stdexcept>
#include <string>
#include <vector>

#include "decode_call.hpp"
#include "flash_mla/flash_mla.hpp"
#include "workload.hpp"

namespace flash_mla::sm90::dense {
extern void* g_phase_buffer;  // [kCtas][2][kIters][kEvents] long long, set by the last launch
}

namespace {

using namespace flash_mla;

constexpr int kCtas = 264, kIters = 24, kEvents = 16;  // kernel.cuh's kPhaseCtas, kPhaseIters, kPhaseEvents
const char* const kEventNames[kEvents] = {"begin", "K landed", "S masked", "max",     "exp",
                                          "tail",  "kPFree",   "kPReady",  "P·V done"};

void check(cudaError_t e, const char* what) {
  if (e != cudaSuccess) throw std::runtime_error(std::string(what) + ": " + cudaGetErrorString(e));
}

template <typename V>
void* upload(const V& v) {
  void* d = nullptr;
  check(cudaMalloc(&d, v.size() * sizeof(v[0]) + 16), "cudaMalloc");
  check(cudaMemcpy(d, v.data(), v.size() * sizeof(v[0]), cudaMemcpyHostToDevice), "cudaMemcpy");
  return d;
}

double median(std::vector<double> v) {
  if (v.empty()) return -1;
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

void study(const char* name, int batch, int seqlen, int h_q, int s_q) {
  testing::WorkloadConfig c;
  c.batch = batch;
  c.seqlens.assign(batch, seqlen);
  c.h_q = h_q;
  c.s_q = s_q;
  c.causal = true;
  c.seed = 1;
  const testing::Workload w = testing::make_workload(c);
  const Device dev{DeviceType::kCUDA, 0};
  testing::DecodeBuffers b;
  b.q = upload(w.q);
  b.k_cache = upload(w.k_cache);
  b.block_table = upload(w.block_table);
  b.seqlens = upload(w.seqlens);
  const int parts = testing::decode_parts(w, cuda_device_info(0).sm_count);
  check(cudaMalloc(&b.metadata, parts * 32), "cudaMalloc");
  check(cudaMalloc(&b.num_splits, (c.batch + 1) * 4), "cudaMalloc");
  check(cudaMalloc(&b.out, w.out_elems() * 2), "cudaMalloc");
  check(cudaMalloc(&b.lse, w.lse_elems() * 4), "cudaMalloc");
  check(cudaMalloc(&b.workspace, testing::decode_workspace(w, parts) + 256), "cudaMalloc");
  get_mla_metadata(testing::schedule_args(w, dev, b, parts, nullptr));
  const DecodeArgs a = testing::decode_args(w, dev, b, parts, Backend::kSM90, nullptr);
  for (int i = 0; i < 3; ++i) mla_decode(a);
  cudaEvent_t e0, e1;
  check(cudaEventCreate(&e0), "event");
  check(cudaEventCreate(&e1), "event");
  check(cudaEventRecord(e0), "event");
  for (int i = 0; i < 10; ++i) mla_decode(a);
  check(cudaEventRecord(e1), "event");
  check(cudaEventSynchronize(e1), "event");
  float ms = 0;
  check(cudaEventElapsedTime(&ms, e0, e1), "event");

  std::vector<long long> t(static_cast<size_t>(kCtas) * 2 * kIters * kEvents);
  check(cudaMemset(sm90::dense::g_phase_buffer, 0, t.size() * sizeof(t[0])), "cudaMemset");
  mla_decode(a);
  check(cudaDeviceSynchronize(), "decode");
  check(cudaMemcpy(t.data(), sm90::dense::g_phase_buffer, t.size() * sizeof(t[0]), cudaMemcpyDeviceToHost),
        "cudaMemcpy");
  auto at = [&](int cta, int wg, int it, int ev) {
    return t[((static_cast<size_t>(cta) * 2 + wg) * kIters + it) * kEvents + ev];
  };
  std::vector<double> block;
  std::vector<std::vector<double>> since(2 * kEvents);
  for (int cta = 0; cta < kCtas; ++cta) {
    for (int it = 2; it + 1 < kIters; ++it) {
      const long long begin = at(cta, 0, it, 0), next = at(cta, 0, it + 1, 0);
      if (begin == 0 || next == 0) continue;
      block.push_back(static_cast<double>(next - begin));
      for (int wg = 0; wg < 2; ++wg) {
        for (int ev = 0; ev < kEvents; ++ev) {
          if (at(cta, wg, it, ev) != 0)
            since[wg * kEvents + ev].push_back(static_cast<double>(at(cta, wg, it, ev) - begin));
        }
      }
    }
  }
  std::printf("%-22s %8.1f us/call  block: median %5.0f cycles (%zu samples)\n", name, ms * 1e3 / 10, median(block),
              block.size());
  for (int wg = 0; wg < 2; ++wg) {
    std::printf("   consumer %d:", wg);
    for (int ev = 0; ev < kEvents; ++ev) {
      if (!since[wg * kEvents + ev].empty())
        std::printf("  %s %.0f", kEventNames[ev], median(since[wg * kEvents + ev]));
    }
    std::printf("\n");
  }
  for (void* ptr : {b.q, b.k_cache, b.block_table, b.seqlens, b.metadata, b.num_splits, b.out, b.lse, b.workspace}) {
    cudaFree(ptr);
  }
}

}  // namespace

int main() {
  try {
    study("b128 8192 h128 s2", 128, 8192, 128, 2);
    study("b128 4096 h128 s1", 128, 4096, 128, 1);
    study("b128 8192 h16 s1", 128, 8192, 16, 1);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "flash-mla-phases: %s\n", e.what());
    return 1;
  }
  return 0;
}

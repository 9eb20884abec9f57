// The GPU half of flash-mla-bench (built only with FLASH_MLA_WITH_CUDA): the two ceilings of PERF.md
// and the CUDA-graph timing of mla_decode. CUDA types stay in gpu_bench.cpp.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "workload.hpp"

namespace flash_mla::bench {

struct Ceilings {
  double copy_gbps = 0.0;    // device-to-device copy of a 2 GiB buffer, bytes read + written
  double gemm_tflops = 0.0;  // bf16 8192^3 through cublasGemmEx, fp32 accumulation
};

struct GpuTiming {
  std::vector<double> call_us;  // one per timed graph replay: replay time / calls_per_graph
  int calls_per_graph = 0;
  int copies = 0;  // rotated input copies (together past 4x the L2)
  // get_mla_metadata alone (the schedule kernel, once per decoding step in an engine): one per timed
  // replay of a graph of kCallsPerGraph calls; empty when it could not be timed (schedule_error says why).
  std::vector<double> schedule_us;
  std::string schedule_error;
  // Eager calls, as an engine without CUDA graphs issues them: per timed round of kCallsPerGraph calls
  // enqueued back to back, the device time between events per call (the calls' own time while the host
  // keeps ahead, else the host's pace) and the host's time to enqueue one call (argument checks, tensor-map
  // encodes, launches).
  std::vector<double> eager_us, host_us;
  std::string eager_error;
};

class GpuBench {
 public:
  explicit GpuBench(int device);
  ~GpuBench();
  GpuBench(const GpuBench&) = delete;
  GpuBench& operator=(const GpuBench&) = delete;

  std::string device_name() const;
  int sm_count() const;
  Ceilings measure_ceilings();

  // Uploads w's KV cache, block table and seqlens (shared by every row of a group that differs only
  // in q). The cache is copied enough times that one graph's calls together read past 4x the L2.
  void load_kv(const testing::Workload& w);
  // Times mla_decode (main kernel + combine) on w's q over the loaded cache: ~10 calls captured in a
  // CUDA graph, `replays` timed replays (0: about 0.2 s worth) after warm-up. Returns host copies of
  // the out and lse the replays wrote. Then times eager calls (GpuTiming::eager_us, host_us) and
  // get_mla_metadata the same way as the decode (a graph of its own).
  GpuTiming time_decode(const testing::Workload& w, int replays, std::vector<uint8_t>* out,
                        std::vector<float>* lse);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace flash_mla::bench

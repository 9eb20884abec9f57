// flash-mla-bench: times MLA decode (mla_decode: main kernel + combine) on one workload or on named
// grids of workloads, checks each result against the float64 reference with SPEC.md's tolerances, and
// prints one table: median time, GB/s and TFLOP/s (PERF.md's counting), the check, and on a GPU the
// fractions of the copy and matmul ceilings measured in the same run; and the time of get_mla_metadata
// alone ("sched us": the schedule, run once per decoding step, not part of the call's time). On a GPU also
// the call without a graph ("eager us": calls enqueued back to back, device time per call; "host us": the
// host's time to enqueue one).
//
// Backends: auto (sm90 when device 0 is an sm_90 GPU and the library accepts CUDA tensors there, else
// cpu), cpu, sm90. CPU timing: std::chrono around each call, median. GPU timing: gpu_bench.cpp.
// Exit status: 0 every check passed; 1 a check failed or a call raised; 2 a bad command line.
#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <fstream>
#include <limits>
#include <map>
#include <memory>
#include <numeric>
#include <sstream>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include "decode_call.hpp"
#include "flash_mla/flash_mla.hpp"
#include "workload.hpp"
#if defined(FLASH_MLA_WITH_CUDA)
#include "gpu_bench.hpp"
#endif

namespace flash_mla::bench {
namespace {

using testing::CheckResult;
using testing::decode_args;
using testing::decode_parts;
using testing::decode_workspace;
using testing::DecodeBuffers;
using testing::dtype_short_name;
using testing::schedule_args;
using testing::Workload;
using testing::WorkloadConfig;

// ---------------------------------------------------------------------------------------------
// Workloads

// A KV cache format of --kv: how the cache stores tokens, and whether q is e4m3 too.
struct KvChoice {
  const char* name;
  KvCacheFormat format;
  bool fp8_q;
  const char* what;
};
const KvChoice kKvChoices[] = {
    {"dense", KvCacheFormat::kDense, false, "576 channels of --dtype (the default)"},
    {"fp8", KvCacheFormat::kFP8WithScale, false, "FP8 with scale: 656 bytes per token (FlashMLA's), bf16 q"},
    {"fp8-tensor", KvCacheFormat::kFP8PerTensor, false, "per-tensor e4m3 with descale_k (vLLM's), bf16 q"},
    {"fp8-tensor-fp8q", KvCacheFormat::kFP8PerTensor, true, "per-tensor e4m3, and q e4m3 with descale_q"},
};

// The shape of one table row, its page size and its cache format (one run can time a grid at several
// page sizes and formats); the run-wide settings (dtype, causal, seed) are in Options.
struct Spec {
  std::string label;
  int batch = 1;
  int s_q = 1;
  int h_q = 16;
  int h_kv = 1;
  std::vector<int32_t> seqlens;
  int page = 64;
  KvChoice kv = kKvChoices[0];
};

std::string shape_label(const std::string& lens, int h_q, int s_q, int h_kv) {
  std::string s = lens + " h_q=" + std::to_string(h_q) + " s_q=" + std::to_string(s_q);
  if (h_kv != 1) s += " h_kv=" + std::to_string(h_kv);
  return s;
}

Spec uniform(int batch, int len, int h_q, int s_q, int h_kv = 1) {
  const std::string lens = "b=" + std::to_string(batch) + " seqlen=" + std::to_string(len);
  return {shape_label(lens, h_q, s_q, h_kv), batch, s_q, h_q, h_kv, std::vector<int32_t>(batch, len)};
}

// PERF.md's ragged rows: normal around the mean, sd mean / 2, at least s_q, seeded.
Spec ragged(int batch, int mean, int h_q, int s_q, uint64_t seed, int h_kv = 1) {
  const std::string lens = "b=" + std::to_string(batch) + " seqlen~" + std::to_string(mean);
  return {shape_label(lens, h_q, s_q, h_kv) + " ragged", batch, s_q, h_q, h_kv,
          testing::make_seqlens(batch, mean, true, s_q, seed)};
}

Spec listed(const std::vector<int32_t>& lens, int h_q, int s_q, int h_kv = 1) {
  std::string text = "b=" + std::to_string(lens.size()) + " lens=";
  if (lens.size() <= 4) {
    for (size_t i = 0; i < lens.size(); ++i) text += (i ? "/" : "") + std::to_string(lens[i]);
  } else {
    const double mean = std::accumulate(lens.begin(), lens.end(), 0.0) / double(lens.size());
    text += "listed(mean " + std::to_string(std::lround(mean)) + ")";
  }
  return {shape_label(text, h_q, s_q, h_kv), static_cast<int>(lens.size()), s_q, h_q, h_kv, lens};
}

// Lengths drawn uniformly from [lo, hi], seeded.
Spec random_lens(int batch, int lo, int hi, int h_q, int s_q, uint64_t seed) {
  const std::vector<int32_t> lens = testing::uniform_random_seqlens(batch, lo, hi, seed);
  const std::string text = "b=" + std::to_string(batch) + " lens=" + std::to_string(lo) + ".." + std::to_string(hi);
  return {shape_label(text, h_q, s_q, 1), batch, s_q, h_q, 1, lens};
}

struct Grid {
  const char* name;
  const char* what;
};
const Grid kGrids[] = {
    {"cpu", "the default on the CPU: b=8, ragged lengths around 2048, h_q=16, s_q=2"},
    {"perf", "the rows of PERF.md's incumbents table (the default on a GPU)"},
    {"flashmla", "FlashMLA's grid: b=128 x seqlen 4096/8192/16384 x h_q 16/32/64/128 x s_q 1/2 x uniform/ragged"},
    {"short", "PERF.md's short-context rows (b=16..256, seqlen 512..1024)"},
    {"small", "PERF.md's small-batch rows (b=1..132, up to 64k context), then b 1/2/4/8/16 x seqlen 4k/16k/64k x "
              "h_q 16/128 x s_q 1/4"},
    {"all", "perf, flashmla, short and small"},
};

bool grid_specs(const std::string& name, uint64_t seed, std::vector<Spec>* out) {
  auto& v = *out;
  if (name == "cpu") {
    v.push_back(ragged(8, 2048, 16, 2, seed));
  } else if (name == "perf") {
    v.push_back(uniform(128, 8192, 16, 1));
    v.push_back(uniform(128, 16384, 64, 1));
    v.push_back(uniform(128, 4096, 128, 1));
    v.push_back(ragged(128, 8192, 128, 1, seed));
    v.push_back(uniform(128, 16384, 128, 2));
    v.push_back(uniform(128, 1024, 16, 1));
    v.push_back(uniform(128, 1024, 128, 1));
    v.push_back(uniform(1, 65536, 16, 1));
    v.push_back(listed({4641, 45118, 1730, 1696}, 16, 4));
    v.push_back(random_lens(64, 256, 1024, 16, 4, seed));
    v.push_back(uniform(64, 512, 16, 2));
  } else if (name == "flashmla") {
    for (int len : {4096, 8192, 16384}) {
      for (int h_q : {16, 32, 64, 128}) {
        for (int s_q : {1, 2}) {
          v.push_back(uniform(128, len, h_q, s_q));
          v.push_back(ragged(128, len, h_q, s_q, seed));
        }
      }
    }
  } else if (name == "short") {
    v.push_back(uniform(128, 1024, 16, 1));
    v.push_back(uniform(128, 1024, 128, 1));
    v.push_back(uniform(128, 1024, 16, 4));
    v.push_back(uniform(16, 1024, 16, 16));
    v.push_back(uniform(256, 512, 16, 1));
  } else if (name == "small") {
    v.push_back(uniform(1, 65536, 16, 1));
    v.push_back(listed({4641, 45118, 1730, 1696}, 16, 4));
    v.push_back(random_lens(64, 256, 1024, 16, 4, seed));
    v.push_back(uniform(64, 512, 16, 2));
    v.push_back(uniform(132, 4096, 16, 4));
    v.push_back(uniform(8, 32768, 128, 1));
    // Latency-bound serving: small batches, long contexts, speculative s_q.
    for (int b : {1, 2, 4, 8, 16}) {
      for (int len : {4096, 16384, 65536}) {
        for (int h_q : {16, 128}) {
          for (int s_q : {1, 4}) v.push_back(uniform(b, len, h_q, s_q));
        }
      }
    }
  } else if (name == "all") {
    for (const char* g : {"perf", "flashmla", "short", "small"}) grid_specs(g, seed, out);
  } else {
    return false;
  }
  return true;
}

// ---------------------------------------------------------------------------------------------
// Options

struct Options {
  // The single workload given by flags (used when no --grid is given).
  int batch = 8, s_q = 2, h_q = 16, h_kv = 1, seqlen = 2048;
  bool ragged = false, seqlen_given = false, shape_given = false;
  std::vector<int32_t> seqlens;
  std::vector<std::string> grids;
  std::vector<KvChoice> kvs;  // each row once per cache format (default: dense)
  // Run-wide settings.
  DType dtype = DType::kBF16;
  std::vector<int> pages = {64};
  bool scatter = true, causal = true;
  uint64_t seed = 0;
  float value_sd = 0.1f;
  Backend backend = Backend::kAuto;
  int iters = 0;             // 0: auto
  int64_t check_rows = -1;   // -1: auto; 0: all rows
  bool check = true, ceilings = true, quiet = false, list = false, list_json = false;
  std::string json;
  std::string only;  // label filter
};

const char* kUsage = R"(usage: flash-mla-bench [options]

Times MLA decode (out, lse = mla_decode(...): main kernel + combine) and checks every result against
the float64 reference. With no options: b=8, ragged lengths around 2048, h_q=16, s_q=2 on the CPU;
the 'perf' grid on a GPU.

workload (one row; without --grid):
  --batch N          sequences (default 8)
  --s-q N            query tokens per sequence (default 2)
  --h-q N            query heads (default 16)
  --h-kv N           KV heads (default 1)
  --seqlen N         cached tokens per sequence, uniform unless --ragged (default: ragged around 2048)
  --ragged           lengths ~ normal(seqlen, seqlen/2), at least s_q, seeded by --seed
  --seqlens a,b,c    the lengths, one per sequence (sets the batch)
  --grid NAMES       comma-separated named workload lists instead (see below)
  --kv NAMES         comma-separated cache formats; every row runs once per format (see below)
run-wide:
  --dtype bf16|fp16|fp32   (fp32: cpu backend only; FP8 --kv formats: bf16; default bf16)
  --page-size N,...  tokens per KV page (default 64); several sizes time every row at each size
  --no-scatter       pages in order (default: scattered at random)
  --causal / --no-causal   (default causal; no effect when s_q = 1)
  --seed N           inputs and ragged lengths (default 0)
  --value-sd X       q's and the cache's values ~ normal(0, X) (default 0.1; at the card's power cap the
                     data change the clock: compare implementations on the same distribution)
  --backend auto|cpu|sm90  (default auto)
  --iters N          timed calls (cpu) or graph replays (gpu); default: about 1 s (cpu), 0.2 s (gpu)
  --check-rows N     output rows sampled for the float64 check; 0 = all (default: all when cheap)
  --no-check         skip the float64 check
  --no-ceilings      (gpu) skip measuring the copy and matmul ceilings
  --json FILE        also write the rows as JSON
  --only TEXT        keep the grid's rows whose label contains TEXT (e.g. "seqlen=8192")
  --list             print the workloads and exit
  --list-json        print the workloads as JSON lines (label, shape, page, kv, every length) and exit:
                     scripts/incumbent_bench.py times an incumbent on exactly these inputs' shapes
  --quiet            no progress on stderr
)";

[[noreturn]] void usage_error(const std::string& msg) {
  std::fprintf(stderr, "flash-mla-bench: %s\n(see flash-mla-bench --help)\n", msg.c_str());
  std::exit(2);
}

int64_t parse_int(const std::string& opt, const std::string& text, int64_t lo, int64_t hi) {
  char* end = nullptr;
  errno = 0;
  const long long v = std::strtoll(text.c_str(), &end, 10);
  if (text.empty() || *end != '\0' || errno != 0 || v < lo || v > hi) {
    usage_error(opt + ": expected an integer in [" + std::to_string(lo) + ", " + std::to_string(hi) + "], got '" +
                text + "'");
  }
  return v;
}

std::vector<std::string> split_commas(const std::string& text) {
  std::vector<std::string> parts;
  std::stringstream ss(text);
  for (std::string item; std::getline(ss, item, ',');) parts.push_back(item);
  return parts;
}

Options parse_args(int argc, char** argv) {
  Options o;
  constexpr int64_t kMaxInt = std::numeric_limits<int32_t>::max();
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i], value;
    const size_t eq = arg.find('=');
    const bool inline_value = arg.rfind("--", 0) == 0 && eq != std::string::npos;
    if (inline_value) {
      value = arg.substr(eq + 1);
      arg = arg.substr(0, eq);
    }
    auto next = [&]() -> std::string {
      if (inline_value) return value;
      if (i + 1 >= argc) usage_error(arg + ": expected a value");
      return argv[++i];
    };
    if (arg == "--help" || arg == "-h") {
      std::fputs(kUsage, stdout);
      std::puts("grids:");
      for (const Grid& g : kGrids) std::printf("  %-10s %s\n", g.name, g.what);
      std::puts("cache formats (--kv):");
      for (const KvChoice& k : kKvChoices) std::printf("  %-16s %s\n", k.name, k.what);
      std::exit(0);
    } else if (arg == "--batch") {
      o.batch = int(parse_int(arg, next(), 1, kMaxInt));
      o.shape_given = true;
    } else if (arg == "--s-q") {
      o.s_q = int(parse_int(arg, next(), 1, 4096));
      o.shape_given = true;
    } else if (arg == "--h-q") {
      o.h_q = int(parse_int(arg, next(), 1, 4096));
      o.shape_given = true;
    } else if (arg == "--h-kv") {
      o.h_kv = int(parse_int(arg, next(), 1, 4096));
      o.shape_given = true;
    } else if (arg == "--seqlen") {
      o.seqlen = int(parse_int(arg, next(), 0, kMaxInt));
      o.seqlen_given = o.shape_given = true;
    } else if (arg == "--ragged") {
      o.ragged = o.shape_given = true;
    } else if (arg == "--seqlens") {
      for (const std::string& s : split_commas(next())) o.seqlens.push_back(int32_t(parse_int(arg, s, 0, kMaxInt)));
      if (o.seqlens.empty()) usage_error("--seqlens: expected a comma-separated list of lengths");
      o.shape_given = true;
    } else if (arg == "--kv") {
      for (const std::string& name : split_commas(next())) {
        const KvChoice* found = nullptr;
        for (const KvChoice& k : kKvChoices) found = name == k.name ? &k : found;
        if (found == nullptr) {
          usage_error("--kv: expected dense, fp8, fp8-tensor or fp8-tensor-fp8q, got '" + name + "'");
        }
        o.kvs.push_back(*found);
      }
    } else if (arg == "--grid") {
      for (const std::string& g : split_commas(next())) o.grids.push_back(g);
    } else if (arg == "--dtype") {
      const std::string d = next();
      if (d == "bf16" || d == "bfloat16") o.dtype = DType::kBF16;
      else if (d == "fp16" || d == "float16") o.dtype = DType::kFP16;
      else if (d == "fp32" || d == "float32") o.dtype = DType::kFP32;
      else usage_error("--dtype: expected bf16, fp16 or fp32, got '" + d + "'");
    } else if (arg == "--page-size") {
      o.pages.clear();
      for (const std::string& s : split_commas(next())) o.pages.push_back(int(parse_int(arg, s, 1, 1 << 20)));
      if (o.pages.empty()) usage_error("--page-size: expected a page size or a comma-separated list");
    } else if (arg == "--no-scatter") {
      o.scatter = false;
    } else if (arg == "--causal") {
      o.causal = true;
    } else if (arg == "--no-causal") {
      o.causal = false;
    } else if (arg == "--seed") {
      o.seed = uint64_t(parse_int(arg, next(), 0, std::numeric_limits<int64_t>::max()));
    } else if (arg == "--backend") {
      const std::string b = next();
      if (b == "auto") o.backend = Backend::kAuto;
      else if (b == "cpu") o.backend = Backend::kCPU;
      else if (b == "sm90") o.backend = Backend::kSM90;
      else usage_error("--backend: expected auto, cpu or sm90, got '" + b + "'");
    } else if (arg == "--iters") {
      o.iters = int(parse_int(arg, next(), 1, 1000000));
    } else if (arg == "--check-rows") {
      o.check_rows = parse_int(arg, next(), 0, std::numeric_limits<int64_t>::max());
    } else if (arg == "--no-check") {
      o.check = false;
    } else if (arg == "--no-ceilings") {
      o.ceilings = false;
    } else if (arg == "--json") {
      o.json = next();
    } else if (arg == "--only") {
      o.only = next();
    } else if (arg == "--value-sd") {
      const std::string v = next();
      char* end = nullptr;
      o.value_sd = std::strtof(v.c_str(), &end);
      if (v.empty() || *end != '\0' || !(o.value_sd > 0.0f && o.value_sd <= 100.0f)) {
        usage_error("--value-sd: expected a number in (0, 100], got '" + v + "'");
      }
    } else if (arg == "--list") {
      o.list = true;
    } else if (arg == "--list-json") {
      o.list_json = true;
    } else if (arg == "--quiet") {
      o.quiet = true;
    } else {
      usage_error(std::string("unknown option '") + argv[i] + "'");
    }
  }
  if (!o.grids.empty() && o.shape_given) {
    usage_error("--grid names the workloads: drop --batch/--s-q/--h-q/--h-kv/--seqlen/--ragged/--seqlens");
  }
  if (!o.seqlens.empty()) {
    if (o.ragged || o.seqlen_given) usage_error("--seqlens gives every length: drop --seqlen/--ragged");
    o.batch = static_cast<int>(o.seqlens.size());
  }
  if (o.ragged && o.seqlen < 1) usage_error("--ragged: expected a mean --seqlen >= 1");
  if (o.h_q % o.h_kv != 0) usage_error("--h-kv must divide --h-q");
  if (o.kvs.empty()) o.kvs.push_back(kKvChoices[0]);
  for (const KvChoice& k : o.kvs) {
    if (k.format != KvCacheFormat::kDense && o.dtype != DType::kBF16) {
      usage_error(std::string("--kv ") + k.name + ": q and out are bf16 with an FP8 cache; drop --dtype");
    }
  }
  return o;
}

std::vector<Spec> workload_specs(const Options& o, bool gpu) {
  std::vector<Spec> specs;
  if (!o.grids.empty()) {
    for (const std::string& g : o.grids) {
      if (!grid_specs(g, o.seed, &specs)) usage_error("--grid: unknown grid '" + g + "' (see --help)");
    }
  } else if (!o.shape_given) {
    grid_specs(gpu ? "perf" : "cpu", o.seed, &specs);
  } else if (!o.seqlens.empty()) {
    specs.push_back(listed(o.seqlens, o.h_q, o.s_q, o.h_kv));
  } else if (o.ragged || !o.seqlen_given) {  // the default lengths are ragged around 2048
    specs.push_back(ragged(o.batch, o.seqlen, o.h_q, o.s_q, o.seed, o.h_kv));
  } else {
    specs.push_back(uniform(o.batch, o.seqlen, o.h_q, o.s_q, o.h_kv));
  }
  if (!o.only.empty()) {
    specs.erase(std::remove_if(specs.begin(), specs.end(),
                               [&](const Spec& s) { return s.label.find(o.only) == std::string::npos; }),
                specs.end());
    if (specs.empty()) usage_error("--only '" + o.only + "': no workload's label contains it (see --list)");
  }
  if (o.pages.size() == 1) {
    for (Spec& s : specs) s.page = o.pages[0];
  } else {
    std::vector<Spec> paged;  // each row at every page size, next to each other
    for (const Spec& s : specs) {
      for (int page : o.pages) {
        paged.push_back(s);
        paged.back().page = page;
        paged.back().label += " page=" + std::to_string(page);
      }
    }
    specs = std::move(paged);
  }
  std::vector<Spec> rows;  // each shape once per cache format, next to each other
  for (const Spec& s : specs) {
    for (const KvChoice& k : o.kvs) {
      rows.push_back(s);
      rows.back().kv = k;
    }
  }
  return rows;
}

// ---------------------------------------------------------------------------------------------
// Running and checking

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? std::numeric_limits<double>::quiet_NaN() : v[v.size() / 2];
}

struct Row {
  Spec spec;
  double bytes = 0.0, flops = 0.0;
  std::vector<double> call_us;
  std::vector<double> schedule_us;  // get_mla_metadata alone, per call (empty: not timed)
  std::vector<double> eager_us, host_us;  // GPU: calls without a graph (GpuTiming; empty on the CPU)
  std::string timing_note;  // e.g. "10 calls/graph, 4 copies"
  bool checked = false;
  CheckResult check;
  std::string error;  // a call or set-up that raised
  bool ok() const { return error.empty() && (!checked || check.ok); }
};

// The KV-cache part of a workload: rows that share it (same batch, lengths, h_kv and format) share one
// cache, built once; only q is redrawn per row.
WorkloadConfig kv_config(const Spec& s, const Options& o) {
  WorkloadConfig c;
  c.batch = s.batch;
  c.s_q = 1;
  c.h_q = s.h_kv;
  c.h_kv = s.h_kv;
  c.seqlens = s.seqlens;
  c.dtype = o.dtype;
  c.kv_format = s.kv.format;
  c.fp8_q = s.kv.fp8_q;
  c.page_block_size = s.page;
  c.causal = o.causal;
  c.scatter_pages = o.scatter;
  c.poison = true;
  c.seed = o.seed;
  c.value_sd = o.value_sd;
  return c;
}

// Turns the KV workload into this row's: its s_q and h_q, and a fresh q (normal(0, --value-sd), seeded by the row).
void set_queries(Workload* w, const Spec& s, const Options& o) {
  w->config.s_q = s.s_q;
  w->config.h_q = s.h_q;
  testing::fill_queries(*w, o.seed * 0x9E3779B97F4A7C15ull + uint64_t(s.s_q) * 7919 + uint64_t(s.h_q) * 104729 + 1);
}

// Output rows checked when --check-rows is not given: every row while the float64 reference costs at
// most kTokenRowsPerCore (row, token) pairs per core (about 2 s; it runs on every core), else a random
// sample of about that cost.
constexpr double kTokenRowsPerCore = 0.5e6;

CheckResult check_output(const Workload& w, const void* out, const float* lse, int64_t requested_rows) {
  const auto& c = w.config;
  const int64_t total_rows = int64_t(c.batch) * c.s_q * c.h_q;
  const double mean_len = std::max(1.0, std::accumulate(w.seqlens.begin(), w.seqlens.end(), 0.0) / c.batch);
  const double budget = std::max(1u, std::thread::hardware_concurrency()) * kTokenRowsPerCore;
  int64_t rows = requested_rows;
  if (rows < 0) rows = total_rows * mean_len <= budget ? 0 : std::max<int64_t>(32, int64_t(budget / mean_len));
  return testing::check_against_reference(w, out, lse, rows);
}

struct AlignedFree {
  void operator()(void* p) const { std::free(p); }
};

// CPU timing: get_mla_metadata 20 times (schedule_us), then mla_decode: one warm-up call and `iters`
// timed calls (auto: about 1 s; a call of a second or more is timed once, as the warm-up itself).
std::vector<double> time_cpu(const Workload& w, int iters, std::vector<uint8_t>* out, std::vector<float>* lse,
                             std::vector<double>* schedule_us) {
  const auto& c = w.config;
  const Device cpu{};
  const int parts = decode_parts(w, default_num_sms(cpu));
  std::vector<int32_t> metadata(size_t(parts) * kMetadataWords), num_splits(size_t(c.batch) + 1);
  const size_t ws_bytes = (decode_workspace(w, parts) + 255) / 256 * 256;
  std::unique_ptr<void, AlignedFree> workspace(std::aligned_alloc(256, ws_bytes));
  if (!workspace) throw std::runtime_error("out of memory for a " + std::to_string(ws_bytes) + "-byte workspace");
  out->assign(size_t(w.out_elems()) * w.elem(), 0xFF);  // NaN: rows nobody writes fail the check
  lse->assign(size_t(w.lse_elems()), std::numeric_limits<float>::quiet_NaN());

  DecodeBuffers b;
  b.q = const_cast<uint8_t*>(w.q.data());
  b.k_cache = const_cast<uint8_t*>(w.k_cache.data());
  b.block_table = const_cast<int32_t*>(w.block_table.data());
  b.seqlens = const_cast<int32_t*>(w.seqlens.data());
  b.metadata = metadata.data();
  b.num_splits = num_splits.data();
  b.out = out->data();
  b.lse = lse->data();
  b.workspace = workspace.get();
  b.descale_q = const_cast<float*>(&w.descale_q);
  b.descale_k = const_cast<float*>(&w.descale_k);
  using Clock = std::chrono::steady_clock;
  const ScheduleArgs schedule = schedule_args(w, cpu, b, parts, nullptr);
  schedule_us->clear();
  for (int i = 0; i < 20; ++i) {
    const auto t0 = Clock::now();
    get_mla_metadata(schedule);
    schedule_us->push_back(std::chrono::duration<double, std::micro>(Clock::now() - t0).count());
  }
  const DecodeArgs args = decode_args(w, cpu, b, parts, Backend::kCPU, nullptr);

  auto timed_call = [&] {
    const auto t0 = Clock::now();
    mla_decode(args);
    return std::chrono::duration<double, std::micro>(Clock::now() - t0).count();
  };
  const double first_us = timed_call();
  if (iters == 0 && first_us >= 1e6) return {first_us};
  const int n = iters > 0 ? iters : std::clamp(static_cast<int>(1e6 / first_us), 3, 100);
  std::vector<double> us;
  for (int i = 0; i < n; ++i) us.push_back(timed_call());
  return us;
}

// Picks the backend: sm90 when asked for or when auto finds a usable sm_90 device 0, else cpu.
// `why_not_gpu` explains an auto fallback when a GPU is present.
Backend choose_backend(Backend requested, std::string* why_not_gpu) {
  if (requested == Backend::kCPU) return Backend::kCPU;
  try {
    if (!cuda_backend_built()) throw Error("backend", "expected a build with FLASH_MLA_CUDA, got a CPU-only build");
    if (cuda_device_count() == 0) throw Error("backend", "expected a CUDA device, found none");
    return resolve_backend(requested, Device{DeviceType::kCUDA, 0});
  } catch (const Error& e) {
    if (requested == Backend::kSM90) usage_error(std::string("--backend sm90: ") + e.what());
    if (cuda_device_count() > 0) *why_not_gpu = e.what();
    return Backend::kCPU;
  }
}

// ---------------------------------------------------------------------------------------------
// Output

std::string fmt(const char* format, double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, format, v);
  return buf;
}

// Three significant digits, no exponent for the sizes a benchmark meets.
std::string sig3(double v) {
  if (!std::isfinite(v)) return "-";
  const double a = std::abs(v);
  if (a >= 100) return fmt("%.0f", v);
  if (a >= 10) return fmt("%.1f", v);
  if (a >= 1) return fmt("%.2f", v);
  return fmt("%.3g", v);
}

std::string check_cell(const Row& r) {
  if (!r.error.empty()) return "ERROR";
  if (!r.checked) return "skipped";
  return r.check.ok ? "ok" : "FAIL";
}

void print_table(const std::vector<Row>& rows, const std::string& backend, bool show_ceilings, double copy_gbps,
                 double gemm_tflops) {
  std::vector<std::string> head = {"workload", "kv", "backend", "time us", "GB/s", "TFLOP/s", "sched us",
                                   "eager us", "host us"};
  if (show_ceilings) {
    head.push_back("% copy");
    head.push_back("% gemm");
  }
  for (const char* h : {"max err", "rows", "check"}) head.push_back(h);
  std::vector<std::vector<std::string>> cells;
  for (const Row& r : rows) {
    const double t = median(r.call_us);
    const double gbps = r.bytes / (t * 1e-6) / 1e9, tflops = r.flops / (t * 1e-6) / 1e12;
    std::vector<std::string> c = {r.spec.label, r.spec.kv.name, backend};
    if (r.error.empty()) {
      c.insert(c.end(), {sig3(t), sig3(gbps), sig3(tflops)});
    } else {
      c.insert(c.end(), {"-", "-", "-"});
    }
    c.push_back(r.error.empty() && !r.schedule_us.empty() ? sig3(median(r.schedule_us)) : "-");
    c.push_back(r.error.empty() && !r.eager_us.empty() ? sig3(median(r.eager_us)) : "-");
    c.push_back(r.error.empty() && !r.host_us.empty() ? sig3(median(r.host_us)) : "-");
    if (show_ceilings) {
      c.push_back(r.error.empty() && copy_gbps > 0 ? fmt("%.1f", 100.0 * gbps / copy_gbps) : "-");
      c.push_back(r.error.empty() && gemm_tflops > 0 ? fmt("%.1f", 100.0 * tflops / gemm_tflops) : "-");
    }
    c.push_back(r.checked ? fmt("%.1e", r.check.max_abs_err) : "-");
    c.push_back(r.checked ? std::to_string(r.check.rows_checked) : "-");
    c.push_back(check_cell(r));
    cells.push_back(c);
  }
  std::vector<size_t> width(head.size());
  for (size_t j = 0; j < head.size(); ++j) {
    width[j] = head[j].size();
    for (const auto& c : cells) width[j] = std::max(width[j], c[j].size());
  }
  auto print_line = [&](const std::vector<std::string>& c) {
    std::string line;
    for (size_t j = 0; j < c.size(); ++j) {
      const std::string pad(width[j] - c[j].size(), ' ');
      line += (j ? "  " : "") + (j < 3 ? c[j] + pad : pad + c[j]);  // text left, numbers right
    }
    while (!line.empty() && line.back() == ' ') line.pop_back();
    std::puts(line.c_str());
  };
  print_line(head);
  std::vector<std::string> rule;
  for (size_t w : width) rule.push_back(std::string(w, '-'));
  print_line(rule);
  for (const auto& c : cells) print_line(c);
}

std::string json_string(const std::string& s) {
  std::string o = "\"";
  for (unsigned char ch : s) {
    if (ch == '"' || ch == '\\') {
      o += '\\';
      o += char(ch);
    } else if (ch < 0x20) {
      o += fmt("\\u%04x", ch);
    } else {
      o += char(ch);
    }
  }
  return o + "\"";
}

std::string json_number(double v) {
  if (!std::isfinite(v)) return "null";
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.10g", v);
  return buf;
}

struct RunInfo {
  std::string command, backend, device, date;
  bool gpu = false;
  double copy_gbps = 0.0, gemm_tflops = 0.0;
};

void write_json(const std::string& path, const RunInfo& info, const Options& o, const std::vector<Row>& rows) {
  std::ofstream f(path);
  if (!f) throw std::runtime_error("cannot write " + path);
  f << "{\n  \"tool\": \"flash-mla-bench\",\n  \"command\": " << json_string(info.command)
    << ",\n  \"date\": " << json_string(info.date) << ",\n  \"backend\": " << json_string(info.backend)
    << ",\n  \"device\": " << json_string(info.device)
    << ",\n  \"dtype\": " << json_string(dtype_short_name(o.dtype))
    << ",\n  \"scatter\": " << (o.scatter ? "true" : "false")
    << ",\n  \"causal\": " << (o.causal ? "true" : "false") << ",\n  \"seed\": " << o.seed << ",\n  \"ceilings\": ";
  if (info.gpu && info.copy_gbps > 0) {
    f << "{\"copy_gbps\": " << json_number(info.copy_gbps) << ", \"gemm_tflops\": " << json_number(info.gemm_tflops)
      << "}";
  } else {
    f << "null";
  }
  f << ",\n  \"rows\": [";
  for (size_t i = 0; i < rows.size(); ++i) {
    const Row& r = rows[i];
    const double t = median(r.call_us);
    const double gbps = r.bytes / (t * 1e-6) / 1e9, tflops = r.flops / (t * 1e-6) / 1e12;
    f << (i ? "," : "") << "\n    {\"workload\": " << json_string(r.spec.label) << ", \"kv\": "
      << json_string(r.spec.kv.name) << ", \"batch\": " << r.spec.batch
      << ", \"s_q\": " << r.spec.s_q << ", \"h_q\": " << r.spec.h_q << ", \"h_kv\": " << r.spec.h_kv
      << ", \"page_size\": " << r.spec.page
      << ", \"seqlens\": [";
    for (size_t j = 0; j < r.spec.seqlens.size(); ++j) f << (j ? ", " : "") << r.spec.seqlens[j];
    f << "], \"bytes\": " << json_number(r.bytes) << ", \"flops\": " << json_number(r.flops)
      << ", \"iters\": " << r.call_us.size() << ", \"time_us_median\": " << json_number(t)
      << ", \"time_us_min\": "
      << json_number(r.call_us.empty() ? NAN : *std::min_element(r.call_us.begin(), r.call_us.end()))
      << ", \"gbps\": " << json_number(gbps) << ", \"tflops\": " << json_number(tflops)
      << ", \"schedule_us_median\": " << json_number(r.schedule_us.empty() ? NAN : median(r.schedule_us))
      << ", \"eager_us_median\": " << json_number(r.eager_us.empty() ? NAN : median(r.eager_us))
      << ", \"host_us_median\": " << json_number(r.host_us.empty() ? NAN : median(r.host_us));
    if (info.gpu && info.copy_gbps > 0) {
      f << ", \"frac_copy\": " << json_number(gbps / info.copy_gbps)
        << ", \"frac_gemm\": " << json_number(tflops / info.gemm_tflops);
    }
    f << ", \"timing\": " << json_string(r.timing_note) << ", \"check\": ";
    if (r.checked) {
      f << "{\"ok\": " << (r.check.ok ? "true" : "false") << ", \"rows\": " << r.check.rows_checked
        << ", \"max_abs_err\": " << json_number(r.check.max_abs_err)
        << ", \"max_lse_err\": " << json_number(r.check.max_lse_err)
        << ", \"cos_diff\": " << json_number(r.check.cos_diff)
        << ", \"first_failure\": " << json_string(r.check.first_failure) << "}";
    } else {
      f << "null";
    }
    f << ", \"error\": " << (r.error.empty() ? "null" : json_string(r.error)) << "}";
  }
  f << "\n  ]\n}\n";
}

std::string utc_now() {
  const std::time_t now = std::time(nullptr);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", std::gmtime(&now));
  return buf;
}

// ---------------------------------------------------------------------------------------------

int run(int argc, char** argv) {
  const Options o = parse_args(argc, argv);
  std::string why_not_gpu;
  const Backend backend = choose_backend(o.backend, &why_not_gpu);
  const bool gpu = backend == Backend::kSM90;
  if (gpu && o.dtype == DType::kFP32) usage_error("--dtype fp32: the sm90 backend takes bf16 or fp16");
  const std::vector<Spec> specs = workload_specs(o, gpu);
  for (const Spec& s : specs) {
    if (s.h_q % s.h_kv != 0) usage_error("h_kv must divide h_q (" + s.label + ")");
  }
  if (o.list) {
    for (const Spec& s : specs) std::printf("%s  kv=%s\n", s.label.c_str(), s.kv.name);
    return 0;
  }
  if (o.list_json) {
    for (const Spec& s : specs) {
      std::printf("{\"label\": %s, \"batch\": %d, \"s_q\": %d, \"h_q\": %d, \"h_kv\": %d, \"page\": %d, "
                  "\"kv\": %s, \"causal\": %s, \"seqlens\": [",
                  json_string(s.label).c_str(), s.batch, s.s_q, s.h_q, s.h_kv, s.page, json_string(s.kv.name).c_str(),
                  o.causal ? "true" : "false");
      for (size_t i = 0; i < s.seqlens.size(); ++i) std::printf("%s%d", i ? ", " : "", int(s.seqlens[i]));
      std::printf("]}\n");
    }
    return 0;
  }

  RunInfo info;
  for (int i = 0; i < argc; ++i) info.command += (i ? " " : "") + std::string(argv[i]);
  info.date = utc_now();
  info.backend = to_string(backend);
  info.gpu = gpu;
  info.device = "cpu (" + std::to_string(std::thread::hardware_concurrency()) + " threads)";
  // Progress on stderr for several workloads or one whose inputs take a while to build (> 256 MB).
  const double first_kv_bytes = std::accumulate(specs[0].seqlens.begin(), specs[0].seqlens.end(), 0.0) *
                                specs[0].h_kv * kHeadDim * double(element_size(o.dtype));
  const bool progress = !o.quiet && (specs.size() > 1 || first_kv_bytes > 256e6);
  if (!why_not_gpu.empty() && !o.quiet) {
    std::fprintf(stderr, "flash-mla-bench: a GPU is present but the sm90 backend can't run (%s); timing the cpu "
                         "backend\n", why_not_gpu.c_str());
  }

#if defined(FLASH_MLA_WITH_CUDA)
  std::unique_ptr<GpuBench> gpu_bench;
  if (gpu) {
    gpu_bench = std::make_unique<GpuBench>(0);
    info.device = gpu_bench->device_name() + " (" + std::to_string(gpu_bench->sm_count()) + " SMs)";
    if (o.ceilings) {
      if (!o.quiet) std::fprintf(stderr, "measuring the copy and matmul ceilings...\n");
      const Ceilings c = gpu_bench->measure_ceilings();
      info.copy_gbps = c.copy_gbps;
      info.gemm_tflops = c.gemm_tflops;
    }
  }
#endif
  if (!gpu && !o.quiet && o.grids.size() && specs.size() > 1 && !o.list) {
    std::fprintf(stderr, "flash-mla-bench: timing %zu workloads on the cpu backend; grids are sized for a GPU and "
                         "may take a long time here\n", specs.size());
  }

  // Rows run grouped by KV cache (each cache built once), reported in the order given.
  std::vector<size_t> order(specs.size());
  std::iota(order.begin(), order.end(), 0);
  auto kv_key = [&](size_t i) {
    return std::make_tuple(specs[i].page, specs[i].batch, specs[i].h_kv, specs[i].seqlens,
                           std::string(specs[i].kv.name));
  };
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return kv_key(a) < kv_key(b); });

  std::vector<Row> rows(specs.size());
  std::unique_ptr<Workload> w;
  std::string kv_error;
  size_t done = 0;
  for (size_t k = 0; k < order.size(); ++k) {
    const size_t i = order[k];
    Row& row = rows[i];
    row.spec = specs[i];
    const bool new_kv = k == 0 || kv_key(order[k - 1]) != kv_key(i);
    const std::string tag = "[" + std::to_string(++done) + "/" + std::to_string(specs.size()) + "] " + row.spec.label +
                            " kv=" + row.spec.kv.name;
    try {
      if (new_kv) {
        w.reset();
        kv_error.clear();
        if (progress) std::fprintf(stderr, "%s: building the KV cache\n", tag.c_str());
        try {
          w = std::make_unique<Workload>(testing::make_workload(kv_config(row.spec, o)));
#if defined(FLASH_MLA_WITH_CUDA)
          if (gpu) gpu_bench->load_kv(*w);
#endif
        } catch (const std::exception& e) {
          kv_error = e.what();
        }
      }
      if (!kv_error.empty()) throw std::runtime_error(kv_error);
      set_queries(w.get(), row.spec, o);
      row.bytes = w->bytes();
      row.flops = w->flops();
      std::vector<uint8_t> out;
      std::vector<float> lse;
      if (gpu) {
#if defined(FLASH_MLA_WITH_CUDA)
        const GpuTiming t = gpu_bench->time_decode(*w, o.iters, &out, &lse);
        row.call_us = t.call_us;
        row.schedule_us = t.schedule_us;
        row.eager_us = t.eager_us;
        row.host_us = t.host_us;
        row.timing_note = std::to_string(t.calls_per_graph) + " calls per graph, " + std::to_string(t.copies) +
                          " input copies, " + std::to_string(t.call_us.size()) + " replays";
        if (!t.schedule_error.empty()) {
          std::fprintf(stderr, "%s: the schedule was not timed: %s\n", tag.c_str(), t.schedule_error.c_str());
        }
        if (!t.eager_error.empty()) {
          std::fprintf(stderr, "%s: eager calls were not timed: %s\n", tag.c_str(), t.eager_error.c_str());
        }
#endif
      } else {
        row.call_us = time_cpu(*w, o.iters, &out, &lse, &row.schedule_us);
        row.timing_note = std::to_string(row.call_us.size()) + " timed calls after 1 warm-up";
      }
      if (o.check) {
        row.check = check_output(*w, out.data(), lse.data(), o.check_rows);
        row.checked = true;
      }
      if (progress) {
        std::fprintf(stderr, "%s: %s us, check %s\n", tag.c_str(), sig3(median(row.call_us)).c_str(),
                     check_cell(row).c_str());
      }
    } catch (const std::exception& e) {
      row.error = e.what();
      row.call_us.clear();
      if (progress) std::fprintf(stderr, "%s: error: %s\n", tag.c_str(), e.what());
    }
  }

  std::string page_list;
  for (int page : o.pages) page_list += (page_list.empty() ? "" : "/") + std::to_string(page);
  std::printf("flash-mla-bench: %s on %s; %s, pages of %s%s, %s, seed %llu\n", info.backend.c_str(),
              info.device.c_str(), dtype_short_name(o.dtype), page_list.c_str(), o.scatter ? " scattered" : " in order",
              o.causal ? "causal" : "not causal", static_cast<unsigned long long>(o.seed));
  if (gpu && info.copy_gbps > 0) {
    std::printf("ceilings this run: copy %.0f GB/s (2 GiB device-to-device, read + written), bf16 GEMM 8192^3 %.0f "
                "TFLOP/s\n", info.copy_gbps, info.gemm_tflops);
  }
  std::printf("time: median per call, %s\n\n", gpu ? "CUDA-graph replay (mla_decode: main kernel + combine)"
                                                   : "std::chrono around each mla_decode call");
  print_table(rows, info.backend, gpu && info.copy_gbps > 0, info.copy_gbps, info.gemm_tflops);

  bool all_ok = true;
  for (const Row& r : rows) {
    if (r.ok()) continue;
    if (all_ok) std::puts("");
    all_ok = false;
    const std::string& why = r.error.empty() ? r.check.first_failure : r.error;
    std::printf("%s %s kv=%s: %s\n", check_cell(r).c_str(), r.spec.label.c_str(), r.spec.kv.name, why.c_str());
  }
  if (!o.json.empty()) write_json(o.json, info, o, rows);
  return all_ok ? 0 : 1;
}

}  // namespace
}  // namespace flash_mla::bench

int main(int argc, char** argv) {
  try {
    return flash_mla::bench::run(argc, argv);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "flash-mla-bench: %s\n", e.what());
    return 1;
  }
}

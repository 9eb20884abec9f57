// GPU timing for flash-mla-bench, with the CUDA runtime API and cuBLAS (PERF.md's method):
// - ceilings, measured in the same run: a device-to-device copy of a 2 GiB buffer (bytes read +
//   written) and a bf16 8192^3 cublasGemmEx on random data;
// - mla_decode: metadata computed on the device once (as once per decoding step), then ~10 calls
//   captured in one CUDA graph and the graph replayed back to back between events; each replay's time
//   divided by its calls, median over many replays after warm-up. Inputs are rotated over enough copies
//   that one graph's calls read at least 4x the L2, so no call finds its KV cache in L2.
#include "gpu_bench.hpp"

#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <stdexcept>
#include <string>
#include <utility>

#include "decode_call.hpp"
#include "flash_mla/half.hpp"

namespace flash_mla::bench {

namespace {

using testing::decode_args;
using testing::decode_parts;
using testing::decode_workspace;
using testing::DecodeBuffers;
using testing::schedule_args;

constexpr int kCallsPerGraph = 10;
constexpr int kMaxCopies = 64;
constexpr double kWarmupMs = 50.0;
constexpr double kReplayBudgetMs = 200.0;  // auto replay count: about this much GPU time
constexpr int kMinReplays = 20;
constexpr int kMaxReplays = 1000;
constexpr double kEagerBudgetMs = 20.0;  // eager calls: timed rounds of kCallsPerGraph calls, about this
constexpr int kMaxEagerRounds = 20;       // much GPU time (3 rounds at least), after one untimed round

void check(cudaError_t status, const std::string& what) {
  if (status != cudaSuccess) {
    cudaGetLastError();
    throw std::runtime_error(what + " failed: " + cudaGetErrorString(status));
  }
}

void check(cublasStatus_t status, const std::string& what) {
  if (status != CUBLAS_STATUS_SUCCESS) throw std::runtime_error(what + " failed: " + cublasGetStatusString(status));
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0.0 : v[v.size() / 2];
}

class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  explicit DeviceBuffer(size_t bytes) : bytes_(bytes) {
    if (bytes > 0) check(cudaMalloc(&ptr_, bytes), "cudaMalloc(" + std::to_string(bytes) + " bytes)");
  }
  ~DeviceBuffer() {
    if (ptr_ != nullptr) cudaFree(ptr_);
  }
  DeviceBuffer(DeviceBuffer&& o) noexcept : ptr_(std::exchange(o.ptr_, nullptr)), bytes_(o.bytes_) {}
  DeviceBuffer& operator=(DeviceBuffer&& o) noexcept {
    std::swap(ptr_, o.ptr_);
    std::swap(bytes_, o.bytes_);
    return *this;
  }
  void* get() const { return ptr_; }
  size_t bytes() const { return bytes_; }

 private:
  void* ptr_ = nullptr;
  size_t bytes_ = 0;
};

// Enqueues `rounds` calls of `enqueue` on `stream` back to back, an event before and after each, and
// returns each round's milliseconds. Nothing synchronises in between, so the GPU never waits on the host.
std::vector<double> time_rounds(cudaStream_t stream, int rounds, const std::function<void()>& enqueue) {
  struct Events {
    std::vector<cudaEvent_t> e;
    ~Events() {
      for (cudaEvent_t x : e) cudaEventDestroy(x);
    }
  } ev;
  for (int i = 0; i <= rounds; ++i) {
    cudaEvent_t e;
    check(cudaEventCreate(&e), "cudaEventCreate");
    ev.e.push_back(e);
  }
  check(cudaEventRecord(ev.e[0], stream), "cudaEventRecord");
  for (int i = 0; i < rounds; ++i) {
    enqueue();
    check(cudaEventRecord(ev.e[i + 1], stream), "cudaEventRecord");
  }
  check(cudaEventSynchronize(ev.e[rounds]), "cudaEventSynchronize");
  std::vector<double> ms(rounds);
  for (int i = 0; i < rounds; ++i) {
    float t = 0.0f;
    check(cudaEventElapsedTime(&t, ev.e[i], ev.e[i + 1]), "cudaEventElapsedTime");
    ms[i] = t;
  }
  return ms;
}

// Uniform values in [-1, 1) as bf16 (splitmix64), for the matmul ceiling: random data, never zeros,
// since zeros run faster than real data.
std::vector<uint16_t> random_bf16(size_t n, uint64_t seed) {
  std::vector<uint16_t> v(n);
  uint64_t x = seed;
  for (size_t i = 0; i < n; ++i) {
    uint64_t z = (x += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
    v[i] = float_to_bf16(static_cast<float>(static_cast<double>(z >> 11) * 0x1.0p-52 - 1.0));
  }
  return v;
}

struct Graph {
  cudaGraph_t graph = nullptr;
  cudaGraphExec_t exec = nullptr;
  ~Graph() {
    if (exec != nullptr) cudaGraphExecDestroy(exec);
    if (graph != nullptr) cudaGraphDestroy(graph);
  }
};

// Captures what `enqueue` puts on `stream` into g and instantiates it. A throw while capturing ends the
// capture (discarding the partial graph) before it propagates, so the stream stays usable.
void capture(Graph& g, cudaStream_t stream, const std::function<void()>& enqueue, const std::string& what) {
  check(cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal), "cudaStreamBeginCapture (" + what + ")");
  try {
    enqueue();
  } catch (...) {
    cudaGraph_t broken = nullptr;
    cudaStreamEndCapture(stream, &broken);
    if (broken != nullptr) cudaGraphDestroy(broken);
    cudaGetLastError();
    throw;
  }
  check(cudaStreamEndCapture(stream, &g.graph), "cudaStreamEndCapture (" + what + ")");
  check(cudaGraphInstantiate(&g.exec, g.graph, 0), "cudaGraphInstantiate (" + what + ")");
}

// FLASH_MLA_VALIDATE=1 makes every call read device values (a synchronising copy), which stream
// capture forbids. The bench validates its first, uncaptured call of every workload explicitly instead.
void suspend_env_validation() {
  if (std::getenv("FLASH_MLA_VALIDATE") == nullptr) return;
  unsetenv("FLASH_MLA_VALIDATE");
  std::fprintf(stderr, "flash-mla-bench: FLASH_MLA_VALIDATE unset for graph capture; the first call of each "
                       "workload is validated instead\n");
}

}  // namespace

struct GpuBench::Impl {
  int device = 0;
  cudaDeviceProp prop{};
  cudaStream_t stream = nullptr;
  // The loaded KV group: k_cache copies share one block table and seqlens.
  std::vector<DeviceBuffer> k_cache;
  DeviceBuffer block_table, seqlens;
};

GpuBench::GpuBench(int device) : impl_(std::make_unique<Impl>()) {
  impl_->device = device;
  check(cudaSetDevice(device), "cudaSetDevice(" + std::to_string(device) + ")");
  check(cudaGetDeviceProperties(&impl_->prop, device), "cudaGetDeviceProperties");
  check(cudaStreamCreateWithFlags(&impl_->stream, cudaStreamNonBlocking), "cudaStreamCreate");
}

GpuBench::~GpuBench() {
  impl_->k_cache.clear();
  if (impl_->stream != nullptr) cudaStreamDestroy(impl_->stream);
}

std::string GpuBench::device_name() const { return impl_->prop.name; }

int GpuBench::sm_count() const { return impl_->prop.multiProcessorCount; }

Ceilings GpuBench::measure_ceilings() {
  const cudaStream_t stream = impl_->stream;
  Ceilings c;
  {
    const size_t bytes = size_t(2) << 30;
    DeviceBuffer src(bytes), dst(bytes);
    check(cudaMemsetAsync(src.get(), 0x5a, bytes, stream), "cudaMemsetAsync");
    check(cudaMemsetAsync(dst.get(), 0, bytes, stream), "cudaMemsetAsync");
    auto copy = [&] {
      check(cudaMemcpyAsync(dst.get(), src.get(), bytes, cudaMemcpyDeviceToDevice, stream), "cudaMemcpyAsync");
    };
    time_rounds(stream, 2, copy);
    c.copy_gbps = 2.0 * double(bytes) / (median(time_rounds(stream, 10, copy)) * 1e-3) / 1e9;
  }
  {
    const int n = 8192;
    const size_t elems = size_t(n) * n, bytes = elems * sizeof(uint16_t);
    const std::vector<uint16_t> host = random_bf16(elems, 1);
    DeviceBuffer a(bytes), b(bytes), out(bytes);
    check(cudaMemcpyAsync(a.get(), host.data(), bytes, cudaMemcpyHostToDevice, stream), "cudaMemcpyAsync (GEMM A)");
    check(cudaMemcpyAsync(b.get(), host.data(), bytes, cudaMemcpyHostToDevice, stream), "cudaMemcpyAsync (GEMM B)");
    struct Handle {
      cublasHandle_t h = nullptr;
      ~Handle() {
        if (h != nullptr) cublasDestroy(h);
      }
    } handle;
    check(cublasCreate(&handle.h), "cublasCreate");
    check(cublasSetStream(handle.h, stream), "cublasSetStream");
    const float alpha = 1.0f, beta = 0.0f;
    auto gemm = [&] {
      check(cublasGemmEx(handle.h, CUBLAS_OP_N, CUBLAS_OP_N, n, n, n, &alpha, a.get(), CUDA_R_16BF, n, b.get(),
                         CUDA_R_16BF, n, &beta, out.get(), CUDA_R_16BF, n, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
            "cublasGemmEx (bf16 8192^3)");
    };
    time_rounds(stream, 3, gemm);
    c.gemm_tflops = 2.0 * double(n) * n * n / (median(time_rounds(stream, 10, gemm)) * 1e-3) / 1e12;
  }
  return c;
}

void GpuBench::load_kv(const testing::Workload& w) {
  Impl& m = *impl_;
  m.k_cache.clear();
  const size_t k_bytes = w.k_cache.size();
  // Bytes one call reads; copies so that one graph's calls together read at least 4x the L2.
  const double per_call = std::max(1.0, w.bytes());
  const int copies = std::clamp(static_cast<int>(std::ceil(4.0 * m.prop.l2CacheSize / per_call)), 1, kMaxCopies);
  // Every copy goes on the bench's stream (non-blocking: no implicit ordering with the legacy stream).
  for (int i = 0; i < copies; ++i) {
    m.k_cache.emplace_back(k_bytes);
    check(cudaMemcpyAsync(m.k_cache[i].get(), w.k_cache.data(), k_bytes, cudaMemcpyHostToDevice, m.stream),
          "cudaMemcpyAsync (k_cache)");
  }
  m.block_table = DeviceBuffer(w.block_table.size() * sizeof(int32_t));
  check(cudaMemcpyAsync(m.block_table.get(), w.block_table.data(), m.block_table.bytes(), cudaMemcpyHostToDevice,
                        m.stream),
        "cudaMemcpyAsync (block_table)");
  m.seqlens = DeviceBuffer(w.seqlens.size() * sizeof(int32_t));
  check(cudaMemcpyAsync(m.seqlens.get(), w.seqlens.data(), m.seqlens.bytes(), cudaMemcpyHostToDevice, m.stream),
        "cudaMemcpyAsync (cache_seqlens)");
  check(cudaStreamSynchronize(m.stream), "KV upload");
}

GpuTiming GpuBench::time_decode(const testing::Workload& w, int replays, std::vector<uint8_t>* out,
                                std::vector<float>* lse) {
  Impl& m = *impl_;
  if (m.k_cache.empty()) throw std::runtime_error("time_decode: no KV cache loaded");
  const cudaStream_t stream = m.stream;
  const Device device{DeviceType::kCUDA, m.device};
  const auto& c = w.config;
  const int copies = static_cast<int>(m.k_cache.size());
  const int calls = std::max(kCallsPerGraph, copies);
  const size_t q_bytes = w.q.size(), out_bytes = size_t(w.out_elems()) * w.elem();
  const size_t lse_bytes = size_t(w.lse_elems()) * sizeof(float);

  std::vector<DeviceBuffer> q, o, l;
  for (int i = 0; i < copies; ++i) {
    q.emplace_back(q_bytes);
    o.emplace_back(out_bytes);
    l.emplace_back(lse_bytes);
    check(cudaMemcpyAsync(q[i].get(), w.q.data(), q_bytes, cudaMemcpyHostToDevice, stream), "cudaMemcpyAsync (q)");
  }
  const int parts = decode_parts(w, m.prop.multiProcessorCount);
  DeviceBuffer metadata(size_t(parts) * kMetadataWords * sizeof(int32_t));
  DeviceBuffer num_splits((size_t(c.batch) + 1) * sizeof(int32_t));
  DeviceBuffer workspace(decode_workspace(w, parts));
  DeviceBuffer descales(2 * sizeof(float));  // [descale_q, descale_k], read by FP8 formats
  const float descale_values[2] = {w.descale_q, w.descale_k};
  check(cudaMemcpyAsync(descales.get(), descale_values, sizeof descale_values, cudaMemcpyHostToDevice, stream),
        "cudaMemcpyAsync (descales)");
  auto buffers = [&](int i) {
    DecodeBuffers b;
    b.q = q[i].get();
    b.k_cache = m.k_cache[i].get();
    b.block_table = m.block_table.get();
    b.seqlens = m.seqlens.get();
    b.metadata = metadata.get();
    b.num_splits = num_splits.get();
    b.out = o[i].get();
    b.lse = l[i].get();
    b.workspace = workspace.get();
    b.descale_q = descales.get();
    b.descale_k = static_cast<float*>(descales.get()) + 1;
    return b;
  };
  auto poison_outputs = [&] {  // 0xFF bytes: NaN in every float format, so unwritten rows fail the check
    for (int i = 0; i < copies; ++i) {
      check(cudaMemsetAsync(o[i].get(), 0xFF, out_bytes, stream), "cudaMemsetAsync (out)");
      check(cudaMemsetAsync(l[i].get(), 0xFF, lse_bytes, stream), "cudaMemsetAsync (lse)");
    }
  };

  // The schedule, once (it is shared by every layer of a decoding step), on the device.
  get_mla_metadata(schedule_args(w, device, buffers(0), parts, stream));
  // One direct call with its device values validated, before anything is captured (the validation's
  // copies run on this stream, after get_mla_metadata; the synchronisation reports a schedule failure
  // under its own name).
  poison_outputs();
  check(cudaStreamSynchronize(stream), "get_mla_metadata");
  DecodeArgs first = decode_args(w, device, buffers(0), parts, Backend::kSM90, stream);
  first.validate_values = true;
  mla_decode(first);
  check(cudaStreamSynchronize(stream), "first mla_decode call");
  poison_outputs();

  suspend_env_validation();
  Graph g;
  capture(g, stream, [&] {
    for (int call = 0; call < calls; ++call) {
      mla_decode(decode_args(w, device, buffers(call % copies), parts, Backend::kSM90, stream));
    }
  }, "decode");
  auto replay = [&] { check(cudaGraphLaunch(g.exec, stream), "cudaGraphLaunch"); };

  // Warm-up: at least kWarmupMs of replays (clocks up, caches and TLBs in their steady state).
  const double warm_ms = std::max(median(time_rounds(stream, 3, replay)), 1e-3);
  time_rounds(stream, std::clamp(static_cast<int>(kWarmupMs / warm_ms), 1, kMaxReplays), replay);
  const int rounds = replays > 0 ? replays
                                 : std::clamp(static_cast<int>(kReplayBudgetMs / warm_ms),
                                              kMinReplays, kMaxReplays);
  GpuTiming t;
  t.calls_per_graph = calls;
  t.copies = copies;
  for (double ms : time_rounds(stream, rounds, replay)) t.call_us.push_back(ms * 1e3 / calls);

  out->resize(out_bytes);
  lse->resize(w.lse_elems());
  check(cudaMemcpyAsync(out->data(), o[0].get(), out_bytes, cudaMemcpyDeviceToHost, stream), "cudaMemcpyAsync (out)");
  check(cudaMemcpyAsync(lse->data(), l[0].get(), lse_bytes, cudaMemcpyDeviceToHost, stream), "cudaMemcpyAsync (lse)");
  check(cudaStreamSynchronize(stream), "copying out and lse back");

  // Eager calls (after the copy: the checked rows are the graph's), rotating over the input copies as the
  // graph does, so that no call finds its KV cache in L2. A failure here leaves the decode row intact.
  int eager_calls = 0;
  auto eager = [&] {
    const auto t0 = std::chrono::steady_clock::now();
    for (int call = 0; call < kCallsPerGraph; ++call) {
      mla_decode(decode_args(w, device, buffers(eager_calls++ % copies), parts, Backend::kSM90, stream));
    }
    t.host_us.push_back(std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t0).count() /
                        kCallsPerGraph);
  };
  try {
    const double round_ms = std::max(median(time_rounds(stream, 1, eager)), 1e-3);
    const int eager_rounds = std::clamp(static_cast<int>(kEagerBudgetMs / round_ms), 3, kMaxEagerRounds);
    t.host_us.clear();
    for (double ms : time_rounds(stream, eager_rounds, eager)) t.eager_us.push_back(ms * 1e3 / kCallsPerGraph);
  } catch (const std::exception& e) {  // the graph's row stands; the eager columns stay empty
    t.eager_us.clear();
    t.host_us.clear();
    t.eager_error = e.what();
  }

  // The schedule alone, as an engine runs it once per decoding step: kCallsPerGraph get_mla_metadata
  // calls in a graph (they rewrite the same words). Not part of the decode time above; a failure here
  // leaves the decode row intact.
  try {
    Graph sg;
    capture(sg, stream, [&] {
      for (int call = 0; call < kCallsPerGraph; ++call) {
        get_mla_metadata(schedule_args(w, device, buffers(0), parts, stream));
      }
    }, "schedule");
    auto replay_schedule = [&] { check(cudaGraphLaunch(sg.exec, stream), "cudaGraphLaunch (schedule)"); };
    time_rounds(stream, 3, replay_schedule);
    for (double ms : time_rounds(stream, kMinReplays, replay_schedule)) {
      t.schedule_us.push_back(ms * 1e3 / kCallsPerGraph);
    }
  } catch (const std::exception& e) {
    t.schedule_us.clear();
    t.schedule_error = e.what();
  }
  return t;
}

}  // namespace flash_mla::bench

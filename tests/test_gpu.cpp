// CUDA tests (ctest label gpu). Every test skips when no CUDA device is visible; the decode tests
// also skip unless the sm90 backend resolves for cuda:0 (a Hopper GPU and a build with the kernel).
//   - The device schedule (get_mla_metadata on CUDA tensors) writes exactly the host's words, on
//     random batches from b = 1 to 5000, inside and outside CUDA-graph capture.
//   - The sm90 decode against the float64 reference over h_q x h_kv x s_q x dtype x causal, batches
//     from 1 to 5000, lengths 0, 1, 63, 64, 65 and ragged; guard bands, determinism, the sm90-only
//     argument checks and value validation on device memory.
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <sstream>
#include <stdexcept>

#include "test_support.hpp"

namespace flash_mla::test {
namespace {

constexpr Device kCuda0{DeviceType::kCUDA, 0};
constexpr uint8_t kGuardByte = 0x6b;

void cuda_ok(cudaError_t status, const char* what) {
  if (status != cudaSuccess) throw std::runtime_error(std::string(what) + ": " + cudaGetErrorString(status));
}

// Device memory with guard bands on both sides (filled with kGuardByte); data() is 256-byte aligned.
class DeviceBuffer {
 public:
  static constexpr size_t kGuardBytes = 512;

  explicit DeviceBuffer(size_t bytes) : bytes_(bytes) {
    cuda_ok(cudaMalloc(&base_, bytes + 2 * kGuardBytes), "cudaMalloc");
    cuda_ok(cudaMemset(base_, kGuardByte, bytes + 2 * kGuardBytes), "cudaMemset");
  }
  ~DeviceBuffer() { cudaFree(base_); }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;

  void* data() { return static_cast<char*>(base_) + kGuardBytes; }
  size_t size() const { return bytes_; }
  void upload(const void* src) { cuda_ok(cudaMemcpy(data(), src, bytes_, cudaMemcpyHostToDevice), "upload"); }
  void download(void* dst) const {
    cuda_ok(cudaMemcpy(dst, static_cast<const char*>(base_) + kGuardBytes, bytes_, cudaMemcpyDeviceToHost), "download");
  }
  void fill(uint8_t byte) { cuda_ok(cudaMemset(data(), byte, bytes_), "cudaMemset"); }
  bool guards_intact() const {
    std::vector<uint8_t> all(bytes_ + 2 * kGuardBytes);
    cuda_ok(cudaMemcpy(all.data(), base_, all.size(), cudaMemcpyDeviceToHost), "download guards");
    auto guard_ok = [](const uint8_t* p) {
      return std::all_of(p, p + kGuardBytes, [](uint8_t v) { return v == kGuardByte; });
    };
    return guard_ok(all.data()) && guard_ok(all.data() + kGuardBytes + bytes_);
  }

 private:
  void* base_ = nullptr;
  size_t bytes_ = 0;
};

#define REQUIRE_GPU() \
  if (cuda_device_count() == 0) GTEST_SKIP() << "no CUDA device"

// Empty when the sm90 decode runs on cuda:0, else why not.
std::string sm90_unavailable() {
  if (cuda_device_count() == 0) return "no CUDA device";
  const CudaDeviceInfo info = cuda_device_info(0);
  if (info.major != 9) return "cuda:0 is " + info.name + ", not sm_90";
  try {
    resolve_backend(Backend::kAuto, kCuda0);
  } catch (const Error& e) {
    return std::string("no sm90 decode: ") + e.what();
  }
  return "";
}

#define REQUIRE_SM90()                                      \
  if (const std::string why = sm90_unavailable(); !why.empty()) GTEST_SKIP() << why

// ---------------------------------------------------------------------------------------------
// Device schedule.

// get_mla_metadata on device copies of `seqlens`, outputs prefilled with garbage; returns the words.
Schedule device_schedule(const std::vector<int32_t>& seqlens, int rows, int h_kv, int num_sms, cudaStream_t stream) {
  const int64_t b = static_cast<int64_t>(seqlens.size());
  Schedule s;
  s.parts = num_sm_parts(num_sms > 0 ? num_sms : cuda_device_info(0).sm_count, rows, h_kv);
  DeviceBuffer d_lens(b * 4), d_meta(static_cast<size_t>(s.parts) * kMetadataWords * 4), d_splits((b + 1) * 4);
  d_lens.upload(seqlens.data());
  d_meta.fill(0xab);
  d_splits.fill(0xcd);
  ScheduleArgs a;
  a.cache_seqlens = make_view(d_lens.data(), DType::kInt32, kCuda0, {b});
  a.num_q_tokens_per_head_k = rows;
  a.num_heads_k = h_kv;
  a.num_sms = num_sms;
  a.tile_scheduler_metadata = make_view(d_meta.data(), DType::kInt32, kCuda0, {s.parts, kMetadataWords});
  a.num_splits = make_view(d_splits.data(), DType::kInt32, kCuda0, {b + 1});
  a.stream = stream;
  get_mla_metadata(a);
  cuda_ok(cudaStreamSynchronize(stream), "schedule kernel");
  s.metadata.resize(static_cast<size_t>(s.parts) * kMetadataWords);
  s.num_splits.resize(b + 1);
  d_meta.download(s.metadata.data());
  d_splits.download(s.num_splits.data());
  if (!d_meta.guards_intact() || !d_splits.guards_intact()) throw std::runtime_error("schedule wrote out of bounds");
  return s;
}

class Stream {
 public:
  Stream() { cuda_ok(cudaStreamCreateWithFlags(&s_, cudaStreamNonBlocking), "cudaStreamCreate"); }
  ~Stream() { cudaStreamDestroy(s_); }
  operator cudaStream_t() const { return s_; }

 private:
  cudaStream_t s_ = nullptr;
};

TEST(GpuSchedule, MatchesHostWords) {
  REQUIRE_GPU();
  Stream stream;
  for (const ScheduleCase& c : schedule_cases(600, 777)) {
    const Schedule want = host_schedule(c.seqlens, c.rows, c.h_kv, c.num_sms);
    const Schedule got = device_schedule(c.seqlens, c.rows, c.h_kv, c.num_sms, stream);
    ASSERT_EQ(got.metadata, want.metadata) << c.describe();
    ASSERT_EQ(got.num_splits, want.num_splits) << c.describe();
  }
}

TEST(GpuSchedule, DefaultSmCountIsTheDevices) {
  REQUIRE_GPU();
  const int sms = cuda_device_info(0).sm_count;
  EXPECT_EQ(default_num_sms(kCuda0), sms);
  const std::vector<int32_t> lens = ragged_seqlens({0, 1, 64, 65}, 77, 5000, 3);
  const Schedule got = device_schedule(lens, 128, 1, 0, nullptr);
  const Schedule want = host_schedule(lens, 128, 1, sms);
  EXPECT_EQ(got.metadata, want.metadata);
  EXPECT_EQ(got.num_splits, want.num_splits);
}

TEST(GpuSchedule, CapturedInACudaGraph) {
  REQUIRE_GPU();
  Stream stream;
  const int b = 300, rows = 128, num_sms = 132;
  const int parts = num_sm_parts(num_sms, rows, 1);
  DeviceBuffer d_lens(b * 4), d_meta(parts * kMetadataWords * 4), d_splits((b + 1) * 4);
  ScheduleArgs a;
  a.cache_seqlens = make_view(d_lens.data(), DType::kInt32, kCuda0, {b});
  a.num_q_tokens_per_head_k = rows;
  a.num_sms = num_sms;
  a.tile_scheduler_metadata = make_view(d_meta.data(), DType::kInt32, kCuda0, {parts, kMetadataWords});
  a.num_splits = make_view(d_splits.data(), DType::kInt32, kCuda0, {b + 1});
  a.stream = stream;

  cudaGraph_t graph = nullptr;
  cudaGraphExec_t exec = nullptr;
  ASSERT_EQ(cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal), cudaSuccess);
  get_mla_metadata(a);
  ASSERT_EQ(cudaStreamEndCapture(stream, &graph), cudaSuccess);
  ASSERT_EQ(cudaGraphInstantiate(&exec, graph, 0), cudaSuccess);

  // The graph reads the lengths when it runs: replay it on two different batches.
  for (uint64_t seed : {1, 2}) {
    const std::vector<int32_t> lens = ragged_seqlens({0, 0, 1, 63, 64, 65}, b, 20000, seed);
    d_lens.upload(lens.data());
    d_meta.fill(0xab);
    ASSERT_EQ(cudaGraphLaunch(exec, stream), cudaSuccess);
    ASSERT_EQ(cudaStreamSynchronize(stream), cudaSuccess);
    std::vector<int32_t> meta(parts * kMetadataWords), splits(b + 1);
    d_meta.download(meta.data());
    d_splits.download(splits.data());
    const Schedule want = host_schedule(lens, rows, 1, num_sms);
    EXPECT_EQ(meta, want.metadata) << "seed " << seed;
    EXPECT_EQ(splits, want.num_splits) << "seed " << seed;
  }
  cudaGraphExecDestroy(exec);
  cudaGraphDestroy(graph);
}

// ---------------------------------------------------------------------------------------------
// Decode.

// A decode call on device copies of a workload's inputs; metadata from the device schedule.
class GpuDecode {
 public:
  GpuDecode(testing::Workload& workload, int num_sms, cudaStream_t stream)
      : w(workload),
        parts(num_sm_parts(num_sms, w.config.s_q * w.config.h_q / w.config.h_kv, w.config.h_kv)),
        q(w.q.size()),
        k(w.k_cache.size()),
        table(w.block_table.size() * 4),
        lens(w.seqlens.size() * 4),
        meta(static_cast<size_t>(parts) * kMetadataWords * 4),
        splits((w.seqlens.size() + 1) * 4),
        out(static_cast<size_t>(w.out_elems()) * w.elem()),
        lse(static_cast<size_t>(w.lse_elems()) * 4),
        workspace(decode_workspace_bytes(w.config.batch, w.config.s_q, w.config.h_q, parts)) {
    q.upload(w.q.data());
    k.upload(w.k_cache.data());
    table.upload(w.block_table.data());
    lens.upload(w.seqlens.data());
    out.fill(0xff);
    lse.fill(0xff);
    workspace.fill(0xff);
    const int64_t b = w.config.batch;
    ScheduleArgs s;
    s.cache_seqlens = w.seqlens_view(lens.data(), kCuda0);
    s.num_q_tokens_per_head_k = w.config.s_q * w.config.h_q / w.config.h_kv;
    s.num_heads_k = w.config.h_kv;
    s.page_block_size = w.config.page_block_size;
    s.num_sms = num_sms;
    s.tile_scheduler_metadata = make_view(meta.data(), DType::kInt32, kCuda0, {parts, kMetadataWords});
    s.num_splits = make_view(splits.data(), DType::kInt32, kCuda0, {b + 1});
    s.stream = stream;
    get_mla_metadata(s);

    args.q = w.q_view(q.data(), kCuda0);
    args.k_cache = w.k_cache_view(k.data(), kCuda0);
    args.block_table = w.block_table_view(table.data(), kCuda0);
    args.cache_seqlens = s.cache_seqlens;
    args.tile_scheduler_metadata = s.tile_scheduler_metadata;
    args.num_splits = s.num_splits;
    args.softmax_scale = w.softmax_scale;
    args.causal = w.config.causal;
    args.out = w.out_view(out.data(), kCuda0);
    args.lse = w.lse_view(lse.data(), kCuda0);
    args.workspace = workspace.data();
    args.workspace_bytes = workspace.size();
    args.stream = stream;
  }

  void run() {
    mla_decode(args);
    cuda_ok(cudaStreamSynchronize(static_cast<cudaStream_t>(args.stream)), "decode");
  }
  // Copies out and lse back.
  void fetch() {
    out_host.resize(out.size());
    lse_host.resize(lse.size() / 4);
    out.download(out_host.data());
    lse.download(lse_host.data());
  }
  // Against the float64 reference: every row (max_rows 0) or max_rows random rows.
  testing::CheckResult check(int64_t max_rows, uint64_t seed = 1) {
    fetch();
    return testing::check_against_reference(w, out_host.data(), lse_host.data(), max_rows, seed);
  }
  bool guards_intact() const { return out.guards_intact() && lse.guards_intact() && workspace.guards_intact(); }

  testing::Workload& w;
  int parts;
  DeviceBuffer q, k, table, lens, meta, splits, out, lse, workspace;
  DecodeArgs args;
  std::vector<uint8_t> out_host;
  std::vector<float> lse_host;
};

testing::Workload make(int batch, int s_q, int h_q, int h_kv, std::vector<int32_t> lens, DType dtype, bool causal,
                       uint64_t seed, int page = 64) {
  testing::WorkloadConfig c;
  c.batch = batch;
  c.s_q = s_q;
  c.h_q = h_q;
  c.h_kv = h_kv;
  c.seqlens = std::move(lens);
  c.dtype = dtype;
  c.page_block_size = page;
  c.causal = causal;
  c.seed = seed;
  return testing::make_workload(c);
}

constexpr int64_t kCheckedRows = 256;

struct HeadCase {
  int h_q, h_kv;
};

std::vector<HeadCase> head_cases() {
  std::vector<HeadCase> cases;
  for (int h_q : {1, 3, 16, 32, 63, 64, 126, 127, 128}) {
    for (int h_kv : {1, 2, 3, 8}) {
      if (h_q % h_kv == 0) cases.push_back({h_q, h_kv});
    }
  }
  return cases;
}

class GpuDecodeMatrix : public ::testing::TestWithParam<HeadCase> {};

// For one (h_q, h_kv): s_q 1..4, bf16 and fp16, causal off and on, batches 1..128 rotating, lengths
// 0, 1, 63, 64, 65 and ragged, on the device's own SM count (splits) and on 1 SM (no splits).
TEST_P(GpuDecodeMatrix, MatchesReference) {
  REQUIRE_SM90();
  const HeadCase hc = GetParam();
  const int sms = cuda_device_info(0).sm_count;
  Stream stream;
  const int batches[] = {1, 3, 16, 37, 128};
  int index = 0;
  for (DType dt : {DType::kBF16, DType::kFP16}) {
    for (int s_q = 1; s_q <= 4; ++s_q, ++index) {
      const int b = batches[(index + hc.h_q) % 5];
      // About 16k cached rows in all (tokens x h_kv); a single sequence gets a long random length.
      const int max_len = std::clamp(16000 / (b * hc.h_kv), 8, 4096);
      const std::vector<int32_t> special = b >= 5 ? std::vector<int32_t>{0, 1, 63, 64, 65}
                                          : b > 1 ? std::vector<int32_t>{0, 65} : std::vector<int32_t>{};
      const uint64_t seed = 1000 * hc.h_q + 10 * hc.h_kv + index;
      testing::Workload w = make(b, s_q, hc.h_q, hc.h_kv, ragged_seqlens(special, b, max_len, seed), dt, false, seed);
      for (bool causal : {false, true}) {
        if (causal && s_q == 1) continue;
        for (int num_sms : {sms, 1}) {
          SCOPED_TRACE(::testing::Message() << (dt == DType::kBF16 ? "bf16" : "fp16") << " s_q=" << s_q << " b=" << b
                                            << " causal=" << causal << " num_sms=" << num_sms);
          w.config.causal = causal;
          GpuDecode d(w, num_sms, stream);
          d.run();
          const auto r = d.check(kCheckedRows, seed);
          EXPECT_TRUE(r.ok) << r.first_failure << " (max abs err " << r.max_abs_err << ", cos diff " << r.cos_diff
                            << ")";
          EXPECT_TRUE(d.guards_intact());
        }
      }
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Heads, GpuDecodeMatrix, ::testing::ValuesIn(head_cases()),
                         [](const ::testing::TestParamInfo<HeadCase>& i) {
                           return "hq" + std::to_string(i.param.h_q) + "_hkv" + std::to_string(i.param.h_kv);
                         });

TEST(GpuDecode, LargeBatchShortSequences) {
  REQUIRE_SM90();
  Stream stream;
  std::vector<int32_t> lens = ragged_seqlens({0, 0, 1, 63, 64, 65}, 5000, 40, 9);
  for (size_t i = 0; i < lens.size(); i += 29) lens[i] = 0;
  for (int s_q : {1, 2}) {
    testing::Workload w = make(5000, s_q, 128, 1, lens, DType::kBF16, s_q > 1, 9 + s_q);
    GpuDecode d(w, cuda_device_info(0).sm_count, stream);
    d.run();
    const auto r = d.check(2000, s_q);
    EXPECT_TRUE(r.ok) << "s_q=" << s_q << ": " << r.first_failure;
    EXPECT_TRUE(d.guards_intact());
  }
}

TEST(GpuDecode, EmptyAndFullyMaskedRowsAreExact) {
  REQUIRE_SM90();
  Stream stream;
  for (const auto& lens : {std::vector<int32_t>(64, 0), std::vector<int32_t>{0, 1, 2, 3, 4, 100, 0}}) {
    testing::Workload w = make(static_cast<int>(lens.size()), 4, 128, 1, lens, DType::kBF16, true, 21);
    GpuDecode d(w, cuda_device_info(0).sm_count, stream);
    d.run();
    const auto r = d.check(0);
    EXPECT_TRUE(r.ok) << r.first_failure;
    const auto& c = w.config;
    for (int i = 0; i < c.batch; ++i) {
      for (int t = 0; t < c.s_q; ++t) {
        if (visible_keys(w, i, t) > 0) continue;
        for (int h = 0; h < c.h_q; ++h) {
          const int64_t row = (int64_t(i) * c.s_q + t) * c.h_q + h;
          for (int e = 0; e < kHeadDimV; ++e) {
            ASSERT_EQ(testing::load_as_float(c.dtype, d.out_host.data(), row * kHeadDimV + e), 0.0f);
          }
          ASSERT_EQ(d.lse_host[(int64_t(i) * c.h_q + h) * c.s_q + t], std::numeric_limits<float>::infinity());
        }
      }
    }
  }
}

TEST(GpuDecode, BitwiseDeterministicWhateverTheWorkspaceHolds) {
  REQUIRE_SM90();
  Stream stream;
  testing::Workload w = make(9, 2, 128, 1, ragged_seqlens({0, 1, 65}, 9, 3000, 31), DType::kFP16, true, 31);
  GpuDecode d(w, cuda_device_info(0).sm_count, stream);
  d.run();
  d.fetch();
  const std::vector<uint8_t> out0 = d.out_host;
  const std::vector<float> lse0 = d.lse_host;
  for (uint8_t garbage : {0x00, 0x7f, 0xff}) {
    d.workspace.fill(garbage);
    d.out.fill(0xff);
    d.run();
    d.fetch();
    EXPECT_EQ(0, std::memcmp(out0.data(), d.out_host.data(), out0.size()))
        << "out, workspace 0x" << std::hex << int(garbage);
    EXPECT_EQ(0, std::memcmp(lse0.data(), d.lse_host.data(), lse0.size() * 4)) << "lse";
  }
}

// Checks that only the sm90 backend makes (validate.cpp), then a valid call.
class GpuValidation : public ::testing::Test {
 protected:
  void expect_rejected(GpuDecode& d, const DecodeArgs& bad, const std::string& argument,
                       std::initializer_list<std::string> needles) {
    expect_error([&] { mla_decode(bad); }, argument, needles);
    d.run();
    const auto r = d.check(0);
    EXPECT_TRUE(r.ok) << r.first_failure;
  }
};

TEST_F(GpuValidation, Float32IsCpuOnly) {
  REQUIRE_SM90();
  testing::Workload w = make(2, 1, 16, 1, {100, 7}, DType::kFP32, false, 41);
  GpuDecode d(w, 132, nullptr);
  expect_error([&] { mla_decode(d.args); }, "q", {"float32 runs on the cpu backend only", "got float32"});
}

TEST_F(GpuValidation, PageSizeMustBe64) {
  REQUIRE_SM90();
  testing::Workload w = make(2, 1, 16, 1, {100, 7}, DType::kBF16, false, 42, 16);
  GpuDecode d(w, 132, nullptr);
  expect_error([&] { mla_decode(d.args); }, "k_cache", {"page_block_size 64 (sm90 backend)", "got 16"});
}

TEST_F(GpuValidation, CopyEngineAlignment) {
  REQUIRE_SM90();
  testing::Workload w = make(2, 2, 16, 1, {100, 7}, DType::kBF16, false, 43);
  GpuDecode d(w, 132, nullptr);
  DecodeArgs a = d.args;
  a.q.data = static_cast<char*>(d.q.data()) + 2;
  expect_rejected(d, a, "q", {"16-byte aligned", "got an address ending in 2 mod 16"});
  a = d.args;
  a.q.stride[2] = 577;
  expect_rejected(d, a, "q", {"multiples of 8 elements", "got stride 577 in dimension 2"});
  a = d.args;
  a.k_cache.stride[1] = 580;  // 1160 bytes: not a multiple of 16
  expect_rejected(d, a, "k_cache", {"multiples of 8 elements", "got stride 580 in dimension 1"});
}

TEST(GpuValueValidation, RejectsBadDeviceValuesAndAcceptsGarbageTails) {
  REQUIRE_SM90();
  testing::Workload w = make(3, 1, 16, 1, {130, 0, 64}, DType::kBF16, false, 51);
  GpuDecode d(w, 132, nullptr);
  d.args.validate_values = true;
  d.run();  // the workload's garbage past each sequence's end passes
  auto r = d.check(0);
  EXPECT_TRUE(r.ok) << r.first_failure;
  std::vector<int32_t> table = w.block_table;
  table[1] = static_cast<int32_t>(w.num_pages);  // sequence 0, page 1 (used)
  d.table.upload(table.data());
  expect_error([&] { mla_decode(d.args); }, "block_table", {"got block_table[0, 1] = " + std::to_string(w.num_pages)});
  d.table.upload(w.block_table.data());
  std::vector<int32_t> lens = w.seqlens;
  lens[2] = 63;  // same pages, but the metadata was computed for 64
  d.lens.upload(lens.data());
  expect_error([&] { mla_decode(d.args); }, "tile_scheduler_metadata", {"get_mla_metadata"});
  d.lens.upload(w.seqlens.data());
  d.run();
  r = d.check(0);
  EXPECT_TRUE(r.ok) << r.first_failure;
}

}  // namespace
}  // namespace flash_mla::test

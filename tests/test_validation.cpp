// One test per check of core/validate.cpp, core/api.cpp and core/tensor.cpp: an otherwise valid CPU
// call with exactly one thing broken must throw flash_mla::Error naming the argument, with the
// expected and the actual value in what(); nothing may be written, and the valid call still works.
// Then value validation (validate_values / FLASH_MLA_VALIDATE=1): bad block-table entries of used
// pages, lengths past the table's capacity and stale metadata are rejected; garbage past the end is not.
#include <gtest/gtest.h>

#include <algorithm>
#include <climits>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <memory>

#include "test_support.hpp"

namespace flash_mla::test {
namespace {

constexpr Device kCpu{DeviceType::kCPU, 0};
constexpr Device kCuda0{DeviceType::kCUDA, 0};

bool all_bytes(const GuardedBuffer& b, uint8_t value) {
  const auto* p = static_cast<const uint8_t*>(b.data());
  return std::all_of(p, p + b.size(), [value](uint8_t v) { return v == value; });
}

// The valid call of `d` decodes correctly.
void expect_valid_call_works(CpuDecode& d) {
  d.out.fill(0xff);
  d.lse.fill(0xff);
  ASSERT_NO_THROW(mla_decode(d.args));
  const auto r = d.check();
  EXPECT_TRUE(r.ok) << r.first_failure;
  EXPECT_TRUE(d.guards_intact());
}

// `bad` (a modified copy of d.args) is rejected naming `argument`; out and lse are left untouched;
// the valid arguments then decode correctly.
void expect_rejected(CpuDecode& d, const DecodeArgs& bad, const std::string& argument,
                     std::initializer_list<std::string> needles) {
  d.out.fill(0x5c);
  d.lse.fill(0x5c);
  expect_error([&] { mla_decode(bad); }, argument, needles);
  EXPECT_TRUE(all_bytes(d.out, 0x5c)) << "out written by a rejected call";
  EXPECT_TRUE(all_bytes(d.lse, 0x5c)) << "lse written by a rejected call";
  expect_valid_call_works(d);
}

// ---------------------------------------------------------------------------------------------
// mla_decode argument checks. The valid call: b = 3, s_q = 2, h_q = 4, h_kv = 2, page 16, bf16.
class DecodeValidation : public ::testing::Test {
 protected:
  DecodeValidation() : w(make_valid()), d(w, 132) {}

  static testing::Workload make_valid() {
    testing::WorkloadConfig c;
    c.batch = 3;
    c.s_q = 2;
    c.h_q = 4;
    c.h_kv = 2;
    c.seqlens = {70, 0, 130};
    c.page_block_size = 16;
    c.causal = true;
    c.seed = 5;
    return testing::make_workload(c);
  }

  void expect_rejected(const DecodeArgs& bad, const std::string& argument, std::initializer_list<std::string> needles) {
    test::expect_rejected(d, bad, argument, needles);
  }
  void expect_valid_call_works() { test::expect_valid_call_works(d); }

  testing::Workload w;
  CpuDecode d;
};

TEST_F(DecodeValidation, ValidCallSucceeds) { expect_valid_call_works(); }

// q
TEST_F(DecodeValidation, QDimensions) {
  DecodeArgs a = d.args;
  a.q.ndim = 3;
  expect_rejected(a, "q", {"4 dimensions [b, s_q, h_q, 576]", "got 3 dimensions"});
}
TEST_F(DecodeValidation, QNegativeSize) {
  DecodeArgs a = d.args;
  a.q.shape[1] = -2;
  expect_rejected(a, "q", {"non-negative sizes", "[3, -2, 4, 576]"});
}
TEST_F(DecodeValidation, QNegativeStride) {
  DecodeArgs a = d.args;
  a.q.stride[2] = -576;
  expect_rejected(a, "q", {"non-negative strides", "-576"});
}
TEST_F(DecodeValidation, QEmptyBatch) {
  DecodeArgs a = d.args;
  a.q.shape[0] = 0;
  expect_rejected(a, "q", {"b >= 1", "b = 0"});
}
TEST_F(DecodeValidation, QNoQueryTokens) {
  DecodeArgs a = d.args;
  a.q.shape[1] = 0;
  expect_rejected(a, "q", {"s_q >= 1", "s_q = 0"});
}
TEST_F(DecodeValidation, QNoHeads) {
  DecodeArgs a = d.args;
  a.q.shape[2] = 0;
  expect_rejected(a, "q", {"h_q >= 1", "h_q = 0"});
}
TEST_F(DecodeValidation, QHeadDim) {
  DecodeArgs a = d.args;
  a.q.shape[3] = 512;
  expect_rejected(a, "q", {"576", "got 512"});
}
TEST_F(DecodeValidation, QDtype) {
  DecodeArgs a = d.args;
  a.q.dtype = DType::kInt32;
  expect_rejected(a, "q", {"bfloat16", "float16", "got int32"});
}
TEST_F(DecodeValidation, QLastDimStride) {
  DecodeArgs a = d.args;
  a.q.stride[3] = 2;
  expect_rejected(a, "q", {"last-dimension stride 1", "got 2"});
}
TEST_F(DecodeValidation, QNull) {
  DecodeArgs a = d.args;
  a.q.data = nullptr;
  expect_rejected(a, "q", {"non-null data pointer", "got nullptr"});
}

// k_cache
TEST_F(DecodeValidation, KCacheDimensions) {
  DecodeArgs a = d.args;
  a.k_cache.ndim = 2;
  expect_rejected(a, "k_cache", {"4 dimensions [num_blocks, page_block_size, h_kv, 576]", "got 2 dimensions"});
}
TEST_F(DecodeValidation, KCacheNegativeSize) {
  DecodeArgs a = d.args;
  a.k_cache.shape[0] = -1;
  expect_rejected(a, "k_cache", {"non-negative sizes", "[-1, 16, 2, 576]"});
}
TEST_F(DecodeValidation, KCacheDevice) {
  DecodeArgs a = d.args;
  a.k_cache.device = kCuda0;
  expect_rejected(a, "k_cache", {"a tensor on cpu (q's device)", "got cuda:0"});
}
TEST_F(DecodeValidation, KCacheDtype) {
  DecodeArgs a = d.args;
  a.k_cache.dtype = DType::kFP16;
  expect_rejected(a, "k_cache", {"dtype bfloat16", "got float16"});
}
TEST_F(DecodeValidation, KCacheHeadDim) {
  DecodeArgs a = d.args;
  a.k_cache.shape[3] = 656;
  expect_rejected(a, "k_cache", {"576", "got 656"});
}
TEST_F(DecodeValidation, KCacheNoBlocks) {
  DecodeArgs a = d.args;
  a.k_cache.shape[0] = 0;
  expect_rejected(a, "k_cache", {"at least one block", "got 0"});
}
TEST_F(DecodeValidation, KCachePageSize) {
  DecodeArgs a = d.args;
  a.k_cache.shape[1] = 0;
  expect_rejected(a, "k_cache", {"page_block_size >= 1", "got 0"});
}
// Sizes past 32 bits: a stride-0 view makes them cheap, and the backends hold them in ints, so they
// must be rejected rather than truncated (a page of 2^32 + 1 tokens read as 1, one of 2^32 as 0).
TEST_F(DecodeValidation, KCachePageSizePast32Bits) {
  DecodeArgs a = d.args;
  a.k_cache.shape[1] = (int64_t{1} << 32) + 1;
  a.k_cache.stride[1] = 0;
  expect_rejected(a, "k_cache", {"page_block_size (dim 1) <= 2147483647", "got 4294967297"});
}
TEST_F(DecodeValidation, KCacheElementCountPast63Bits) {
  DecodeArgs a = d.args;
  a.k_cache.shape[0] = int64_t{1} << 57;  // x 16 x 2 x 576 wraps an int64 element count
  a.k_cache.stride[0] = 0;
  a.k_cache.data = nullptr;  // a wrapped count of 0 used to let this through
  expect_rejected(a, "k_cache", {"element count below 2^63", "shape [144115188075855872, 16, 2, 576]"});
}
TEST_F(DecodeValidation, KCacheNoHeads) {
  DecodeArgs a = d.args;
  a.k_cache.shape[2] = 0;
  expect_rejected(a, "k_cache", {"h_kv >= 1", "got 0"});
}
TEST_F(DecodeValidation, KCacheHeadsNotDividingQueryHeads) {
  DecodeArgs a = d.args;
  a.k_cache.shape[2] = 3;
  expect_rejected(a, "k_cache", {"h_kv dividing h_q = 4", "got h_kv = 3"});
}
TEST_F(DecodeValidation, KCacheLastDimStride) {
  DecodeArgs a = d.args;
  a.k_cache.stride[3] = 3;
  expect_rejected(a, "k_cache", {"last-dimension stride 1", "got 3"});
}
TEST_F(DecodeValidation, KCacheNull) {
  DecodeArgs a = d.args;
  a.k_cache.data = nullptr;
  expect_rejected(a, "k_cache", {"non-null data pointer", "got nullptr"});
}

TEST_F(DecodeValidation, HeadDimV) {
  DecodeArgs a = d.args;
  a.head_dim_v = 576;
  expect_rejected(a, "head_dim_v", {"expected 512", "got 576"});
}

// block_table
TEST_F(DecodeValidation, BlockTableDimensions) {
  DecodeArgs a = d.args;
  a.block_table.ndim = 1;
  expect_rejected(a, "block_table", {"2 dimensions [b, max_blocks_per_seq]", "got 1 dimensions"});
}
TEST_F(DecodeValidation, BlockTableDevice) {
  DecodeArgs a = d.args;
  a.block_table.device = kCuda0;
  expect_rejected(a, "block_table", {"cpu", "got cuda:0"});
}
TEST_F(DecodeValidation, BlockTableDtype) {
  DecodeArgs a = d.args;
  a.block_table.dtype = DType::kFP32;
  expect_rejected(a, "block_table", {"dtype int32", "got float32"});
}
TEST_F(DecodeValidation, BlockTableRows) {
  DecodeArgs a = d.args;
  a.block_table.shape[0] = 2;
  expect_rejected(a, "block_table", {"b = 3 rows", "got [2, " + std::to_string(w.max_blocks_per_seq) + "]"});
}
TEST_F(DecodeValidation, BlockTableLastDimStride) {
  DecodeArgs a = d.args;
  a.block_table.stride[1] = 2;
  expect_rejected(a, "block_table", {"last-dimension stride 1", "got 2"});
}
TEST_F(DecodeValidation, BlockTableRowsPast32Bits) {
  DecodeArgs a = d.args;
  a.block_table.shape[1] = (int64_t{1} << 32) + 1;
  a.block_table.stride[0] = 0;
  expect_rejected(a, "block_table", {"max_blocks_per_seq (dim 1) <= 2147483647", "got 4294967297"});
}
TEST_F(DecodeValidation, BlockTableNull) {
  DecodeArgs a = d.args;
  a.block_table.data = nullptr;
  expect_rejected(a, "block_table", {"non-null data pointer", "got nullptr"});
}
TEST_F(DecodeValidation, BlockTableMisaligned) {
  DecodeArgs a = d.args;
  a.block_table.data = static_cast<char*>(a.block_table.data) + 2;
  expect_rejected(a, "block_table", {"aligned to its 4-byte elements", "got an address ending in 2 mod 4"});
}

// cache_seqlens
TEST_F(DecodeValidation, SeqlensDimensions) {
  DecodeArgs a = d.args;
  a.cache_seqlens.ndim = 2;
  a.cache_seqlens.shape[1] = 1;
  a.cache_seqlens.stride[1] = 1;
  expect_rejected(a, "cache_seqlens", {"1 dimensions [b]", "got 2 dimensions"});
}
TEST_F(DecodeValidation, SeqlensDevice) {
  DecodeArgs a = d.args;
  a.cache_seqlens.device = kCuda0;
  expect_rejected(a, "cache_seqlens", {"cpu", "got cuda:0"});
}
TEST_F(DecodeValidation, SeqlensDtype) {
  DecodeArgs a = d.args;
  a.cache_seqlens.dtype = DType::kBF16;
  expect_rejected(a, "cache_seqlens", {"dtype int32", "got bfloat16"});
}
TEST_F(DecodeValidation, SeqlensShape) {
  DecodeArgs a = d.args;
  a.cache_seqlens.shape[0] = 4;
  expect_rejected(a, "cache_seqlens", {"shape [3]", "got [4]"});
}
TEST_F(DecodeValidation, SeqlensContiguous) {
  DecodeArgs a = d.args;
  a.cache_seqlens.stride[0] = 2;
  expect_rejected(a, "cache_seqlens", {"contiguous", "[3]"});
}
TEST_F(DecodeValidation, SeqlensNull) {
  DecodeArgs a = d.args;
  a.cache_seqlens.data = nullptr;
  expect_rejected(a, "cache_seqlens", {"non-null data pointer", "got nullptr"});
}

// tile_scheduler_metadata
TEST_F(DecodeValidation, MetadataDimensions) {
  DecodeArgs a = d.args;
  a.tile_scheduler_metadata.ndim = 1;
  expect_rejected(a, "tile_scheduler_metadata", {"2 dimensions [num_sm_parts, 8]", "got 1 dimensions"});
}
TEST_F(DecodeValidation, MetadataDevice) {
  DecodeArgs a = d.args;
  a.tile_scheduler_metadata.device = kCuda0;
  expect_rejected(a, "tile_scheduler_metadata", {"cpu", "got cuda:0"});
}
TEST_F(DecodeValidation, MetadataDtype) {
  DecodeArgs a = d.args;
  a.tile_scheduler_metadata.dtype = DType::kFP32;
  expect_rejected(a, "tile_scheduler_metadata", {"dtype int32", "got float32"});
}
TEST_F(DecodeValidation, MetadataWords) {
  DecodeArgs a = d.args;
  a.tile_scheduler_metadata.shape[1] = 7;
  expect_rejected(a, "tile_scheduler_metadata",
                  {"[num_sm_parts >= 1, 8]", "got [" + std::to_string(d.schedule.parts) + ", 7]"});
}
TEST_F(DecodeValidation, MetadataNoParts) {
  DecodeArgs a = d.args;
  a.tile_scheduler_metadata.shape[0] = 0;
  expect_rejected(a, "tile_scheduler_metadata", {"[num_sm_parts >= 1, 8]", "got [0, 8]"});
}
TEST_F(DecodeValidation, MetadataContiguous) {
  DecodeArgs a = d.args;
  a.tile_scheduler_metadata.stride[0] = 16;
  expect_rejected(a, "tile_scheduler_metadata", {"contiguous", "other strides"});
}
TEST_F(DecodeValidation, MetadataNull) {
  DecodeArgs a = d.args;
  a.tile_scheduler_metadata.data = nullptr;
  expect_rejected(a, "tile_scheduler_metadata", {"non-null data pointer", "got nullptr"});
}

// num_splits
TEST_F(DecodeValidation, NumSplitsDimensions) {
  DecodeArgs a = d.args;
  a.num_splits.ndim = 2;
  a.num_splits.shape[1] = 1;
  expect_rejected(a, "num_splits", {"1 dimensions [b + 1]", "got 2 dimensions"});
}
TEST_F(DecodeValidation, NumSplitsDevice) {
  DecodeArgs a = d.args;
  a.num_splits.device = kCuda0;
  expect_rejected(a, "num_splits", {"cpu", "got cuda:0"});
}
TEST_F(DecodeValidation, NumSplitsDtype) {
  DecodeArgs a = d.args;
  a.num_splits.dtype = DType::kFP16;
  expect_rejected(a, "num_splits", {"dtype int32", "got float16"});
}
TEST_F(DecodeValidation, NumSplitsShape) {
  DecodeArgs a = d.args;
  a.num_splits.shape[0] = 3;
  expect_rejected(a, "num_splits", {"shape [4] (b + 1", "got [3]"});
}
TEST_F(DecodeValidation, NumSplitsContiguous) {
  DecodeArgs a = d.args;
  a.num_splits.stride[0] = 3;
  expect_rejected(a, "num_splits", {"contiguous", "[4]"});
}
TEST_F(DecodeValidation, NumSplitsNull) {
  DecodeArgs a = d.args;
  a.num_splits.data = nullptr;
  expect_rejected(a, "num_splits", {"non-null data pointer", "got nullptr"});
}

TEST_F(DecodeValidation, SoftmaxScaleNaN) {
  DecodeArgs a = d.args;
  a.softmax_scale = std::numeric_limits<float>::quiet_NaN();
  expect_rejected(a, "softmax_scale", {"a finite number", "got nan"});
}
TEST_F(DecodeValidation, SoftmaxScaleInf) {
  DecodeArgs a = d.args;
  a.softmax_scale = std::numeric_limits<float>::infinity();
  expect_rejected(a, "softmax_scale", {"a finite number", "got inf"});
}

// out
TEST_F(DecodeValidation, OutDimensions) {
  DecodeArgs a = d.args;
  a.out.ndim = 3;
  expect_rejected(a, "out", {"4 dimensions [b, s_q, h_q, 512]", "got 3 dimensions"});
}
TEST_F(DecodeValidation, OutDevice) {
  DecodeArgs a = d.args;
  a.out.device = kCuda0;
  expect_rejected(a, "out", {"cpu", "got cuda:0"});
}
TEST_F(DecodeValidation, OutDtype) {
  DecodeArgs a = d.args;
  a.out.dtype = DType::kFP32;
  expect_rejected(a, "out", {"dtype bfloat16", "got float32"});
}
TEST_F(DecodeValidation, OutShape) {
  DecodeArgs a = d.args;
  a.out.shape[2] = 5;
  expect_rejected(a, "out", {"shape [3, 2, 4, 512]", "got [3, 2, 5, 512]"});
}
TEST_F(DecodeValidation, OutContiguous) {
  DecodeArgs a = d.args;
  a.out.stride[2] = 1024;
  expect_rejected(a, "out", {"contiguous", "[3, 2, 4, 512]"});
}
TEST_F(DecodeValidation, OutNull) {
  DecodeArgs a = d.args;
  a.out.data = nullptr;
  expect_rejected(a, "out", {"non-null data pointer", "got nullptr"});
}
TEST_F(DecodeValidation, OutMisaligned) {
  DecodeArgs a = d.args;
  a.out.data = static_cast<char*>(a.out.data) + 1;
  expect_rejected(a, "out", {"aligned to its 2-byte elements", "got an address ending in 1 mod 2"});
}

// lse
TEST_F(DecodeValidation, LseDimensions) {
  DecodeArgs a = d.args;
  a.lse.ndim = 2;
  expect_rejected(a, "lse", {"3 dimensions [b, h_q, s_q]", "got 2 dimensions"});
}
TEST_F(DecodeValidation, LseDevice) {
  DecodeArgs a = d.args;
  a.lse.device = kCuda0;
  expect_rejected(a, "lse", {"cpu", "got cuda:0"});
}
TEST_F(DecodeValidation, LseDtype) {
  DecodeArgs a = d.args;
  a.lse.dtype = DType::kBF16;
  expect_rejected(a, "lse", {"dtype float32", "got bfloat16"});
}
TEST_F(DecodeValidation, LseShape) {
  DecodeArgs a = d.args;  // [b, s_q, h_q] instead of [b, h_q, s_q]
  a.lse = make_view(d.lse.data(), DType::kFP32, kCpu, {3, 2, 4});
  expect_rejected(a, "lse", {"shape [3, 4, 2]", "got [3, 2, 4]"});
}
TEST_F(DecodeValidation, LseContiguous) {
  DecodeArgs a = d.args;
  a.lse.stride[2] = 4;
  expect_rejected(a, "lse", {"contiguous", "[3, 4, 2]"});
}
TEST_F(DecodeValidation, LseNull) {
  DecodeArgs a = d.args;
  a.lse.data = nullptr;
  expect_rejected(a, "lse", {"non-null data pointer", "got nullptr"});
}
TEST_F(DecodeValidation, LseMisaligned) {
  DecodeArgs a = d.args;
  a.lse.data = static_cast<char*>(a.lse.data) + 1;
  expect_rejected(a, "lse", {"aligned to its 4-byte elements", "got an address ending in 1 mod 4"});
}

// workspace
TEST_F(DecodeValidation, WorkspaceTooSmall) {
  DecodeArgs a = d.args;
  const size_t need = decode_workspace_bytes(3, 2, 4, d.schedule.parts);
  ASSERT_EQ(need, d.workspace.size());
  a.workspace_bytes = need - 1;
  expect_rejected(a, "workspace_bytes", {"at least " + std::to_string(need), "got " + std::to_string(need - 1)});
}
TEST_F(DecodeValidation, WorkspaceNull) {
  DecodeArgs a = d.args;
  a.workspace = nullptr;
  expect_rejected(a, "workspace", {"non-null pointer", "got nullptr"});
}
TEST_F(DecodeValidation, WorkspaceUnaligned) {
  GuardedBuffer big(d.workspace.size() + 256);
  DecodeArgs a = d.args;
  a.workspace = static_cast<char*>(big.data()) + 16;
  expect_rejected(a, "workspace", {"256-byte aligned", "got an unaligned pointer"});
}

TEST(DecodeWorkspace, BytesCoverPartialResultsOfEverySlot) {
  // fp32 partial O (512 floats) and lse (1 float, the block 256-byte padded) per slot and row.
  for (int64_t b : {1, 3, 5000}) {
    for (int64_t parts : {1, 66, 132}) {
      const int64_t entries = (b + parts) * 2 * 16;
      const size_t lse_bytes = (entries * 4 + 255) / 256 * 256;
      EXPECT_EQ(decode_workspace_bytes(b, 2, 16, parts), lse_bytes + static_cast<size_t>(entries) * 512 * 4);
    }
  }
}

// Backend selection (api.cpp).
TEST_F(DecodeValidation, Sm90BackendOnCpuTensors) {
  DecodeArgs a = d.args;
  a.backend = Backend::kSM90;
  expect_rejected(a, "backend", {"CUDA tensors for the sm90 backend", "got tensors on cpu"});
}

DecodeArgs all_on(DecodeArgs a, Device device) {
  for (TensorView* t : {&a.q, &a.k_cache, &a.block_table, &a.cache_seqlens, &a.tile_scheduler_metadata,
                        &a.num_splits, &a.out, &a.lse}) {
    t->device = device;
  }
  return a;
}

TEST_F(DecodeValidation, CpuBackendOnCudaTensors) {
  DecodeArgs a = all_on(d.args, kCuda0);
  a.backend = Backend::kCPU;
  expect_rejected(a, "backend", {"CPU tensors for the cpu backend", "got tensors on cuda:0"});
}

TEST_F(DecodeValidation, CudaTensorsWithoutAUsableGpu) {
  DecodeArgs a = all_on(d.args, kCuda0);
  if (!cuda_backend_built()) {
    expect_rejected(a, "q", {"CPU tensors (this build has no CUDA backend)", "got cuda:0"});
  } else if (cuda_device_count() == 0) {
    expect_rejected(a, "device", {"CUDA device index in [0, 0)", "got 0"});
  } else {
    // A GPU is present: only the "not this architecture / no kernel" answers can be checked without
    // real device memory.
    try {
      resolve_backend(Backend::kAuto, kCuda0);
    } catch (const Error&) {
      expect_rejected(a, "q", {"got cuda:0"});
      return;
    }
    GTEST_SKIP() << "the sm90 backend runs on this machine; test_gpu covers it";
  }
}

TEST(ResolveBackend, CpuTensors) {
  EXPECT_EQ(resolve_backend(Backend::kAuto, kCpu), Backend::kCPU);
  EXPECT_EQ(resolve_backend(Backend::kCPU, kCpu), Backend::kCPU);
  expect_error([] { resolve_backend(Backend::kSM90, kCpu); }, "backend", {"sm90", "got tensors on cpu"});
}

// ---------------------------------------------------------------------------------------------
// get_mla_metadata argument checks. The valid call: b = 3, 8 rows per KV head, 1 KV head, 132 SMs.
class ScheduleValidation : public ::testing::Test {
 protected:
  ScheduleValidation() {
    parts = num_sm_parts(132, 8, 1);
    metadata.assign(parts * kMetadataWords, 0);
    args.cache_seqlens = make_view(seqlens.data(), DType::kInt32, kCpu, {3});
    args.num_q_tokens_per_head_k = 8;
    args.num_heads_k = 1;
    args.num_sms = 132;
    args.tile_scheduler_metadata = make_view(metadata.data(), DType::kInt32, kCpu, {parts, kMetadataWords});
    args.num_splits = make_view(num_splits.data(), DType::kInt32, kCpu, {4});
  }

  void expect_rejected(const ScheduleArgs& bad, const std::string& argument,
                       std::initializer_list<std::string> needles) {
    std::fill(metadata.begin(), metadata.end(), -5);
    std::fill(num_splits.begin(), num_splits.end(), -5);
    expect_error([&] { get_mla_metadata(bad); }, argument, needles);
    EXPECT_TRUE(std::all_of(metadata.begin(), metadata.end(), [](int32_t v) { return v == -5; }));
    EXPECT_TRUE(std::all_of(num_splits.begin(), num_splits.end(), [](int32_t v) { return v == -5; }));
    ASSERT_NO_THROW(get_mla_metadata(args));
    const Schedule want = host_schedule(seqlens, 8, 1, 132);
    EXPECT_EQ(metadata, want.metadata);
    EXPECT_EQ(num_splits, want.num_splits);
    EXPECT_EQ(num_splits[0], 0);
  }

  std::vector<int32_t> seqlens{100, 0, 4000};
  int parts = 0;
  std::vector<int32_t> metadata;
  std::vector<int32_t> num_splits = std::vector<int32_t>(4, 0);
  ScheduleArgs args;
};

TEST_F(ScheduleValidation, SeqlensDimensions) {
  ScheduleArgs a = args;
  a.cache_seqlens.ndim = 2;
  a.cache_seqlens.shape[1] = 1;
  expect_rejected(a, "cache_seqlens", {"1 dimensions [b]", "got 2 dimensions"});
}
TEST_F(ScheduleValidation, SeqlensNegativeSize) {
  ScheduleArgs a = args;
  a.cache_seqlens.shape[0] = -3;
  expect_rejected(a, "cache_seqlens", {"non-negative sizes", "[-3]"});
}
TEST_F(ScheduleValidation, SeqlensDtype) {
  ScheduleArgs a = args;
  a.cache_seqlens.dtype = DType::kFP32;
  expect_rejected(a, "cache_seqlens", {"dtype int32", "got float32"});
}
TEST_F(ScheduleValidation, SeqlensEmptyBatch) {
  ScheduleArgs a = args;
  a.cache_seqlens.shape[0] = 0;
  expect_rejected(a, "cache_seqlens", {"b >= 1", "got b = 0"});
}
TEST_F(ScheduleValidation, SeqlensContiguous) {
  ScheduleArgs a = args;
  a.cache_seqlens.stride[0] = 2;
  expect_rejected(a, "cache_seqlens", {"contiguous", "[3]"});
}
TEST_F(ScheduleValidation, SeqlensNull) {
  ScheduleArgs a = args;
  a.cache_seqlens.data = nullptr;
  expect_rejected(a, "cache_seqlens", {"non-null data pointer", "got nullptr"});
}
TEST_F(ScheduleValidation, QueryRows) {
  ScheduleArgs a = args;
  a.num_q_tokens_per_head_k = 0;
  expect_rejected(a, "num_q_tokens_per_head_k", {">= 1", "got 0"});
}
TEST_F(ScheduleValidation, KvHeads) {
  ScheduleArgs a = args;
  a.num_heads_k = -1;
  expect_rejected(a, "num_heads_k", {">= 1", "got -1"});
}
TEST_F(ScheduleValidation, PageBlockSize) {
  ScheduleArgs a = args;
  a.page_block_size = 0;
  expect_rejected(a, "page_block_size", {">= 1", "got 0"});
}
TEST_F(ScheduleValidation, NumSms) {
  ScheduleArgs a = args;
  a.num_sms = -1;
  expect_rejected(a, "num_sms", {">= 0", "got -1"});
}
TEST_F(ScheduleValidation, NumSmsPastALaunchGrid) {
  ScheduleArgs a = args;
  a.num_sms = kMaxNumSms + 1;
  expect_rejected(a, "num_sms", {"<= 65535", "got 65536"});
}
TEST_F(ScheduleValidation, QueryRowsAtTheIntLimit) {
  // ceil(rows / 64) in 32-bit arithmetic overflowed here; the schedule is one part per SM.
  EXPECT_EQ(num_sm_parts(132, INT_MAX, 1), 1);
  ScheduleArgs a = args;
  a.num_q_tokens_per_head_k = INT_MAX;
  std::vector<int32_t> one_part(kMetadataWords, -5);
  a.tile_scheduler_metadata = make_view(one_part.data(), DType::kInt32, kCpu, {1, kMetadataWords});
  ASSERT_NO_THROW(get_mla_metadata(a));
  EXPECT_EQ(one_part[0], 0);  // the whole batch in the one part
  EXPECT_EQ(one_part[2], 2);
}
TEST_F(ScheduleValidation, MetadataDimensions) {
  ScheduleArgs a = args;
  a.tile_scheduler_metadata.ndim = 1;
  expect_rejected(a, "tile_scheduler_metadata", {"2 dimensions [num_sm_parts, 8]", "got 1 dimensions"});
}
TEST_F(ScheduleValidation, MetadataDevice) {
  ScheduleArgs a = args;
  a.tile_scheduler_metadata.device = kCuda0;
  expect_rejected(a, "tile_scheduler_metadata", {"a tensor on cpu (cache_seqlens' device)", "got cuda:0"});
}
TEST_F(ScheduleValidation, MetadataDtype) {
  ScheduleArgs a = args;
  a.tile_scheduler_metadata.dtype = DType::kFP16;
  expect_rejected(a, "tile_scheduler_metadata", {"dtype int32", "got float16"});
}
TEST_F(ScheduleValidation, MetadataShapeForAnotherSmCount) {
  ScheduleArgs a = args;
  a.num_sms = 66;  // 66 parts expected; the buffer has 132 rows
  expect_rejected(a, "tile_scheduler_metadata", {"shape [66, 8]", "got [132, 8]"});
}
TEST_F(ScheduleValidation, MetadataContiguous) {
  ScheduleArgs a = args;
  a.tile_scheduler_metadata.stride[1] = 2;
  expect_rejected(a, "tile_scheduler_metadata", {"contiguous", "[132, 8]"});
}
TEST_F(ScheduleValidation, MetadataNull) {
  ScheduleArgs a = args;
  a.tile_scheduler_metadata.data = nullptr;
  expect_rejected(a, "tile_scheduler_metadata", {"non-null data pointer", "got nullptr"});
}
TEST_F(ScheduleValidation, NumSplitsDimensions) {
  ScheduleArgs a = args;
  a.num_splits.ndim = 2;
  a.num_splits.shape[1] = 1;
  expect_rejected(a, "num_splits", {"1 dimensions [b + 1]", "got 2 dimensions"});
}
TEST_F(ScheduleValidation, NumSplitsDevice) {
  ScheduleArgs a = args;
  a.num_splits.device = kCuda0;
  expect_rejected(a, "num_splits", {"cpu (cache_seqlens' device)", "got cuda:0"});
}
TEST_F(ScheduleValidation, NumSplitsDtype) {
  ScheduleArgs a = args;
  a.num_splits.dtype = DType::kFP32;
  expect_rejected(a, "num_splits", {"dtype int32", "got float32"});
}
TEST_F(ScheduleValidation, NumSplitsShape) {
  ScheduleArgs a = args;
  a.num_splits.shape[0] = 3;
  expect_rejected(a, "num_splits", {"shape [4]", "got [3]"});
}
TEST_F(ScheduleValidation, NumSplitsContiguous) {
  ScheduleArgs a = args;
  a.num_splits.stride[0] = 2;
  expect_rejected(a, "num_splits", {"contiguous", "[4]"});
}
TEST_F(ScheduleValidation, NumSplitsNull) {
  ScheduleArgs a = args;
  a.num_splits.data = nullptr;
  expect_rejected(a, "num_splits", {"non-null data pointer", "got nullptr"});
}

TEST_F(ScheduleValidation, CudaTensorsWithoutAGpuThrow) {
  if (cuda_device_count() > 0) GTEST_SKIP() << "a GPU is present; test_gpu covers CUDA tensors";
  ScheduleArgs a = args;
  for (TensorView* t : {&a.cache_seqlens, &a.tile_scheduler_metadata, &a.num_splits}) t->device = kCuda0;
  // The device's SM count is needed first: no device to ask.
  a.num_sms = 0;
  if (cuda_backend_built()) {
    expect_rejected(a, "device", {"CUDA device index in [0, 0)", "got 0"});
  } else {
    expect_rejected(a, "device", {"a CUDA device", "got cuda:0"});
  }
  // With an explicit SM count the launch itself must fail cleanly (an Error, not a crash).
  a.num_sms = 132;
  try {
    get_mla_metadata(a);
    ADD_FAILURE() << "get_mla_metadata on CUDA tensors without a GPU did not throw";
  } catch (const Error& e) {
    EXPECT_FALSE(e.argument().empty()) << e.what();
  }
}

// num_sm_parts and the small helpers of the public API.
TEST(NumSmPartsValidation, NoSms) {
  expect_error([] { num_sm_parts(0, 128, 1); }, "num_sms", {">= 1", "got 0"});
}
TEST(NumSmPartsValidation, NoRows) {
  expect_error([] { num_sm_parts(132, 0, 1); }, "num_q_tokens_per_head_k", {">= 1", "got 0"});
}
TEST(NumSmPartsValidation, NoKvHeads) {
  expect_error([] { num_sm_parts(132, 128, 0); }, "num_heads_k", {">= 1", "got 0"});
}
TEST(MakeView, TooManyDimensions) {
  expect_error([] { make_view(nullptr, DType::kFP32, kCpu, {1, 2, 3, 4, 5}); }, "shape", {"at most 4", "got 5"});
}
TEST(MakeView, StrideCountMismatch) {
  expect_error([] { make_view(nullptr, DType::kFP32, kCpu, {2, 3}, {3}); }, "stride",
               {"one stride per dimension", "got 1 strides for 2 dimensions"});
}
TEST(CudaDeviceInfo, MissingDevice) {
  const int n = cuda_device_count();
  if (cuda_backend_built()) {
    expect_error([n] { cuda_device_info(n); }, "device",
                 {"index in [0, " + std::to_string(n) + ")", "got " + std::to_string(n)});
  } else {
    expect_error([n] { cuda_device_info(n); }, "device", {"a CUDA device", "got cuda:0"});
  }
}

// ---------------------------------------------------------------------------------------------
// FP8 caches (SPEC.md, "FP8 KV cache"): the format rule, the dtypes q and out may have with each, and
// the descale tensors. The valid calls: b = 3, s_q = 2, h_q = 4, h_kv = 2, page 16; an FP8-with-scale
// cache with a bf16 q, and a per-tensor cache with an e4m3 q (both descales required).
class FP8Validation : public ::testing::Test {
 protected:
  FP8Validation()
      : scaled_w(make(KvCacheFormat::kFP8WithScale, false)),
        tensor_w(make(KvCacheFormat::kFP8PerTensor, true)),
        scaled(scaled_w, 132),
        tensor(tensor_w, 132) {}

  static testing::Workload make(KvCacheFormat format, bool fp8_q) {
    return random_workload(3, 2, 4, 2, {70, 0, 130}, DType::kBF16, true, 6, 16, format, fp8_q);
  }

  testing::Workload scaled_w, tensor_w;
  CpuDecode scaled, tensor;
  float descale_storage[2] = {0.5f, 0.5f};
};

TEST_F(FP8Validation, ValidCallsSucceed) {
  expect_valid_call_works(scaled);
  expect_valid_call_works(tensor);
}

TEST_F(FP8Validation, Uint8CacheNeeds656Bytes) {
  DecodeArgs a = tensor.args;
  a.k_cache.dtype = DType::kUInt8;
  expect_rejected(tensor, a, "k_cache", {"last dimension 656 for a uint8 cache", "got last dimension 576"});
}
TEST_F(FP8Validation, E4M3CacheOfAnotherWidth) {
  DecodeArgs a = scaled.args;
  a.k_cache.dtype = DType::kFP8E4M3;
  a.k_cache.shape[3] = 600;
  expect_rejected(scaled, a, "k_cache", {"576 (per-tensor FP8) or 656 (FP8 with scale)", "got last dimension 600"});
}
TEST_F(FP8Validation, CacheOfAnotherDtype) {
  DecodeArgs a = scaled.args;
  a.k_cache.dtype = DType::kInt32;
  expect_rejected(scaled, a, "k_cache", {"bfloat16, float16, float32, float8_e4m3fn or uint8", "got int32"});
}
TEST_F(FP8Validation, WithScaleCacheNeedsABf16Q) {
  for (DType q : {DType::kFP16, DType::kFP8E4M3}) {
    DecodeArgs a = scaled.args;
    a.q.dtype = q;
    expect_rejected(scaled, a, "q", {"bfloat16 with a k_cache in the FP8-with-scale layout",
                                     std::string("got ") + to_string(q)});
  }
}
TEST_F(FP8Validation, PerTensorCacheNeedsABf16OrE4M3Q) {
  DecodeArgs a = tensor.args;
  a.q.dtype = DType::kFP16;
  expect_rejected(tensor, a, "q", {"bfloat16 or float8_e4m3fn with a per-tensor FP8 k_cache", "got float16"});
}
TEST_F(FP8Validation, E4M3QNeedsAPerTensorCache) {
  testing::Workload w = random_workload(2, 1, 4, 1, {30, 5}, DType::kBF16, false, 8, 16);
  CpuDecode d(w, 132);
  DecodeArgs a = d.args;
  a.q.dtype = DType::kFP8E4M3;
  expect_rejected(d, a, "q", {"a float8_e4m3fn q needs a per-tensor FP8 k_cache", "got float8_e4m3fn"});
}
TEST_F(FP8Validation, OutIsBf16) {
  DecodeArgs a = scaled.args;
  a.out.dtype = DType::kFP16;
  expect_rejected(scaled, a, "out", {"dtype bfloat16", "got float16"});
  a = tensor.args;
  a.out.dtype = DType::kFP8E4M3;
  expect_rejected(tensor, a, "out", {"dtype bfloat16", "got float8_e4m3fn"});
}
TEST_F(FP8Validation, DescaleKRequiredForAPerTensorCache) {
  DecodeArgs a = tensor.args;
  a.descale_k = TensorView{};
  expect_rejected(tensor, a, "descale_k", {"float32 tensor of shape (1,)", "per-tensor FP8 k_cache", "got none"});
}
TEST_F(FP8Validation, DescaleQRequiredForAnE4M3Q) {
  DecodeArgs a = tensor.args;
  a.descale_q = TensorView{};
  expect_rejected(tensor, a, "descale_q", {"float32 tensor of shape (1,)", "float8_e4m3fn q", "got none"});
}
TEST_F(FP8Validation, DescaleShapeDtypeDeviceAndPointer) {
  for (const char* name : {"descale_q", "descale_k"}) {
    SCOPED_TRACE(name);
    auto with = [&](TensorView t) {
      DecodeArgs a = tensor.args;
      (std::string(name) == "descale_q" ? a.descale_q : a.descale_k) = t;
      return a;
    };
    expect_rejected(tensor, with(make_view(descale_storage, DType::kFP32, kCpu, {2})), name, {"shape [1]", "got [2]"});
    expect_rejected(tensor, with(make_view(descale_storage, DType::kFP32, kCpu, {1, 1})), name,
                    {"1 dimensions (1,)", "got 2 dimensions"});
    TensorView t = make_view(descale_storage, DType::kFP32, kCpu, {1});
    t.ndim = 0;  // data but no dimensions: a scalar view is not the (1,) tensor asked for
    expect_rejected(tensor, with(t), name, {"1 dimensions", "got 0 dimensions"});
    expect_rejected(tensor, with(make_view(descale_storage, DType::kBF16, kCpu, {1})), name,
                    {"dtype float32", "got bfloat16"});
    expect_rejected(tensor, with(make_view(descale_storage, DType::kFP32, kCuda0, {1})), name,
                    {"a tensor on cpu (q's device)", "got cuda:0"});
    expect_rejected(tensor, with(make_view(nullptr, DType::kFP32, kCpu, {1})), name,
                    {"non-null data pointer", "got nullptr"});
    expect_rejected(tensor, with(make_view(reinterpret_cast<char*>(descale_storage) + 2, DType::kFP32, kCpu, {1})),
                    name, {"aligned to its 4-byte elements", "got an address ending in 2 mod 4"});
  }
}
TEST_F(FP8Validation, UnusedDescalesAreStillChecked) {
  DecodeArgs a = scaled.args;
  a.descale_k = make_view(descale_storage, DType::kFP16, kCpu, {1});
  expect_rejected(scaled, a, "descale_k", {"dtype float32", "got float16"});
  a = scaled.args;
  a.descale_q = make_view(descale_storage, DType::kFP32, kCpu, {3});
  expect_rejected(scaled, a, "descale_q", {"shape [1]", "got [3]"});
}
TEST_F(FP8Validation, DescaleValuesOnRequest) {
  ScopedEnv env("FLASH_MLA_VALIDATE", nullptr);
  const float saved_q = tensor_w.descale_q, saved_k = tensor_w.descale_k;
  for (float bad : {std::numeric_limits<float>::quiet_NaN(), 0.0f, -1.0f, std::numeric_limits<float>::infinity()}) {
    for (float* value : {&tensor_w.descale_q, &tensor_w.descale_k}) {
      *value = bad;
      DecodeArgs a = tensor.args;
      a.validate_values = true;
      const std::string name = value == &tensor_w.descale_q ? "descale_q" : "descale_k";
      tensor.out.fill(0x5c);
      expect_error([&] { mla_decode(a); }, name, {"a finite value > 0", "got " + name + "[0] = "});
      EXPECT_TRUE(all_bytes(tensor.out, 0x5c)) << "out written by a rejected call";
      tensor_w.descale_q = saved_q;
      tensor_w.descale_k = saved_k;
    }
  }
  tensor.args.validate_values = true;
  expect_valid_call_works(tensor);
}

TEST(KvCacheFormatRule, DtypeAndLastDimension) {
  EXPECT_EQ(kv_cache_format(DType::kBF16, 576), KvCacheFormat::kDense);
  EXPECT_EQ(kv_cache_format(DType::kFP16, 576), KvCacheFormat::kDense);
  EXPECT_EQ(kv_cache_format(DType::kFP32, 576), KvCacheFormat::kDense);
  EXPECT_EQ(kv_cache_format(DType::kUInt8, 656), KvCacheFormat::kFP8WithScale);
  EXPECT_EQ(kv_cache_format(DType::kFP8E4M3, 656), KvCacheFormat::kFP8WithScale);
  EXPECT_EQ(kv_cache_format(DType::kFP8E4M3, 576), KvCacheFormat::kFP8PerTensor);
  expect_error([] { kv_cache_format(DType::kBF16, 656); }, "k_cache", {"576", "got 656"});
  expect_error([] { kv_cache_format(DType::kUInt8, 576); }, "k_cache", {"656", "got last dimension 576"});
  EXPECT_EQ(decode_output_dtype(DType::kBF16, DType::kUInt8), DType::kBF16);
  EXPECT_EQ(decode_output_dtype(DType::kFP8E4M3, DType::kFP8E4M3), DType::kBF16);
  EXPECT_EQ(decode_output_dtype(DType::kFP16, DType::kFP16), DType::kFP16);
  EXPECT_EQ(decode_output_dtype(DType::kFP32, DType::kFP32), DType::kFP32);
  EXPECT_EQ(element_size(DType::kFP8E4M3), 1u);
  EXPECT_EQ(element_size(DType::kUInt8), 1u);
  EXPECT_STREQ(to_string(DType::kFP8E4M3), "float8_e4m3fn");
  EXPECT_STREQ(to_string(DType::kUInt8), "uint8");
  static_assert(kFP8WithScaleBytes == 656 && kFP8ScaleOffset == 512 && kFP8RopeOffset == 528);
}

// ---------------------------------------------------------------------------------------------
// Value validation.
class ValueValidation : public DecodeValidation {
 protected:
  // Recomputes the metadata of d.args for the current seqlens (so only the edited value is wrong).
  void reschedule() {
    d.schedule = host_schedule(w.seqlens, w.config.s_q * w.config.h_q / w.config.h_kv, w.config.h_kv, 132);
    d.args.tile_scheduler_metadata =
        make_view(d.schedule.metadata.data(), DType::kInt32, kCpu, {d.schedule.parts, kMetadataWords});
    d.args.num_splits = make_view(d.schedule.num_splits.data(), DType::kInt32, kCpu, {w.config.batch + 1});
  }
  // The edited call is rejected with validate_values on; then the edit is undone.
  template <typename Edit, typename Undo>
  void expect_value_rejected(Edit edit, Undo undo, const std::string& argument,
                             std::initializer_list<std::string> needles) {
    ScopedEnv env("FLASH_MLA_VALIDATE", nullptr);
    edit();
    DecodeArgs a = d.args;
    a.validate_values = true;
    d.out.fill(0x5c);
    expect_error([&] { mla_decode(a); }, argument, needles);
    EXPECT_TRUE(all_bytes(d.out, 0x5c)) << "out written by a rejected call";
    undo();
    d.args.validate_values = true;
    expect_valid_call_works();
  }
  int32_t& table(int i, int j) { return w.block_table[static_cast<size_t>(i) * w.max_blocks_per_seq + j]; }
};

TEST_F(ValueValidation, GarbagePastTheEndIsAccepted) {
  // The workload leaves -1, 2147480000 and stale pages past every sequence's last page; make sure
  // the extremes are there too, in the empty sequence's row as well.
  const int used2 = (130 + 15) / 16;
  table(2, used2) = INT32_MIN;
  table(2, used2 + 1) = INT32_MAX;
  table(1, 0) = -1;
  for (bool flag : {true, false}) {
    ScopedEnv env("FLASH_MLA_VALIDATE", flag ? nullptr : "1");
    d.args.validate_values = flag;
    expect_valid_call_works();
  }
}

TEST_F(ValueValidation, NegativeBlockTableEntry) {
  const int32_t saved = table(2, 8);  // sequence 2 (L = 130) uses pages 0..8
  expect_value_rejected([&] { table(2, 8) = -1; }, [&] { table(2, 8) = saved; },
                        "block_table", {"used pages in [0, num_blocks = " + std::to_string(w.num_pages) + ")",
                                        "got block_table[2, 8] = -1"});
}

TEST_F(ValueValidation, BlockTableEntryPastTheCache) {
  const int32_t saved = table(0, 4);  // sequence 0 (L = 70) uses pages 0..4
  const std::string n = std::to_string(w.num_pages);
  expect_value_rejected([&] { table(0, 4) = static_cast<int32_t>(w.num_pages); }, [&] { table(0, 4) = saved; },
                        "block_table", {"[0, num_blocks = " + n + ")", "got block_table[0, 4] = " + n});
}

TEST_F(ValueValidation, SeqlenBeyondCapacity) {
  const int capacity = w.max_blocks_per_seq * 16;
  expect_value_rejected(
      [&] {
        w.seqlens[1] = capacity + 1;
        reschedule();
      },
      [&] {
        w.seqlens[1] = 0;
        reschedule();
      },
      "cache_seqlens",
      {"max_blocks_per_seq * page_block_size = " + std::to_string(capacity),
       "got cache_seqlens[1] = " + std::to_string(capacity + 1)});
}

TEST_F(ValueValidation, NegativeSeqlen) {
  expect_value_rejected(
      [&] {
        w.seqlens[1] = -1;
        reschedule();
      },
      [&] {
        w.seqlens[1] = 0;
        reschedule();
      },
      "cache_seqlens", {"values in [0, ", "got cache_seqlens[1] = -1"});
}

TEST_F(ValueValidation, MetadataOfOtherSeqlens) {
  std::vector<int32_t> other = w.seqlens;
  other[0] = 10;
  Schedule stale = host_schedule(other, 4, 2, 132);
  ASSERT_NE(stale.metadata, d.schedule.metadata);
  const TensorView good_meta = d.args.tile_scheduler_metadata, good_splits = d.args.num_splits;
  expect_value_rejected(
      [&] {
        d.args.tile_scheduler_metadata = make_view(stale.metadata.data(), DType::kInt32, kCpu, {stale.parts, 8});
        d.args.num_splits = make_view(stale.num_splits.data(), DType::kInt32, kCpu, {4});
      },
      [&] {
        d.args.tile_scheduler_metadata = good_meta;
        d.args.num_splits = good_splits;
      },
      "tile_scheduler_metadata", {"the schedule of these cache_seqlens (get_mla_metadata)", "other sequence lengths"});
}

TEST_F(ValueValidation, NumSplitsOfOtherSeqlens) {
  expect_value_rejected([&] { d.schedule.num_splits[3] += 1; }, [&] { d.schedule.num_splits[3] -= 1; },
                        "tile_scheduler_metadata", {"get_mla_metadata", "got metadata computed for other"});
}

TEST_F(ValueValidation, EnvironmentVariableSwitchesItOn) {
  table(2, 8) = static_cast<int32_t>(w.num_pages) + 3;
  d.args.validate_values = false;
  {
    ScopedEnv env("FLASH_MLA_VALIDATE", "1");
    expect_error([&] { mla_decode(d.args); }, "block_table", {"got block_table[2, 8] = "});
  }
  // Off ("0" or unset): no check, and the CPU backend still does not read out of bounds.
  for (const char* v : {"0", static_cast<const char*>(nullptr)}) {
    ScopedEnv env("FLASH_MLA_VALIDATE", v);
    EXPECT_NO_THROW(mla_decode(d.args));
    EXPECT_TRUE(d.guards_intact());
  }
}

}  // namespace
}  // namespace flash_mla::test

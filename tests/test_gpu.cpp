// CUDA tests (ctest label gpu). Every test skips when no CUDA device is visible; the decode tests
// also skip unless the sm90 backend resolves for cuda:0 (a Hopper GPU and a build with the kernel).
//   - The device schedule (get_mla_metadata on CUDA tensors) writes exactly the host's words, on
//     random batches from b = 1 to 5000, inside and outside CUDA-graph capture.
//   - The sm90 decode against the float64 reference over h_q x h_kv x s_q x dtype x causal (h_q 8 and
//     16 are the TP16 / TP8 shards of 128 heads), batches from 1 to 5000, lengths 0, 1, 63, 64, 65 and
//     ragged; guard bands, the sm90-only argument checks and value validation on device memory.
//   - Determinism: bitwise-identical out and lse over 100 calls, and CUDA-graph replay equal to the
//     eager call, also with get_mla_metadata captured and new lengths and block tables per replay.
// The random fuzzer is test_gpu_fuzz.cpp, the two-GPU tests test_gpu_multi.cpp; helpers gpu_support.hpp.
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <sstream>
#include <stdexcept>

#include "gpu_support.hpp"

namespace flash_mla::test {
namespace {

constexpr Device kCuda0 = cuda_device(0);

// Asserts, after d.fetch() or d.check(), out == 0 exactly and lse == +inf on every row that sees no key.
void expect_empty_rows_exact(const GpuDecode& d) {
  const auto& c = d.w.config;
  for (int i = 0; i < c.batch; ++i) {
    for (int t = 0; t < c.s_q; ++t) {
      if (visible_keys(d.w, i, t) > 0) continue;
      for (int h = 0; h < c.h_q; ++h) {
        const int64_t row = (int64_t(i) * c.s_q + t) * c.h_q + h;
        for (int e = 0; e < kHeadDimV; ++e) {
          ASSERT_EQ(testing::load_as_float(c.dtype, d.out_host.data(), row * kHeadDimV + e), 0.0f)
              << "b=" << i << " t=" << t << " h=" << h << " [" << e << "]";
        }
        ASSERT_EQ(d.lse_host[(int64_t(i) * c.h_q + h) * c.s_q + t], std::numeric_limits<float>::infinity())
            << "b=" << i << " t=" << t << " h=" << h;
      }
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Device schedule.

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

// Word 7 with negative lengths (counted as empty), on the thread path (one part of 4) and the warp path (one part
// of 5000 sequences, more than the device pass gives a thread). schedule_cases holds no negative lengths.
TEST(GpuSchedule, NegativeLengthsMatchHostWords) {
  REQUIRE_GPU();
  Stream stream;
  std::vector<int32_t> many(5000);
  for (int i = 0; i < 5000; ++i) many[i] = i % 3 == 0 ? -1 - i : 1 + 17 * i % 900;
  for (const std::vector<int32_t>& lens : {std::vector<int32_t>{-5, 100, -1, 64}, many}) {
    const Schedule want = host_schedule(lens, 64, 1, 1);
    const Schedule got = device_schedule(lens, 64, 1, 1, stream);
    ASSERT_EQ(got.metadata, want.metadata) << lens.size() << " sequences";
    ASSERT_EQ(got.num_splits, want.num_splits) << lens.size() << " sequences";
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


constexpr int64_t kCheckedRows = 256;

struct HeadCase {
  int h_q, h_kv;
};

std::vector<HeadCase> head_cases() {
  std::vector<HeadCase> cases;
  for (int h_q : {1, 3, 8, 16, 32, 63, 64, 126, 127, 128}) {  // 8, 16: TP16 / TP8 shards of 128 heads
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
      const uint64_t seed = 1000 * hc.h_q + 10 * hc.h_kv + index;
      testing::Workload w = random_workload(b, s_q, hc.h_q, hc.h_kv, matrix_seqlens(b, hc.h_kv, seed), dt, false, seed);
      for (bool causal : {false, true}) {
        if (causal && s_q == 1) continue;
        for (int num_sms : {sms, 1}) {
          SCOPED_TRACE(::testing::Message() << testing::dtype_short_name(dt) << " s_q=" << s_q << " b=" << b
                                            << " causal=" << causal << " num_sms=" << num_sms);
          w.config.causal = causal;
          expect_decode_matches_reference(w, num_sms, stream, kCheckedRows, seed);
        }
      }
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Heads, GpuDecodeMatrix, ::testing::ValuesIn(head_cases()),
                         [](const ::testing::TestParamInfo<HeadCase>& i) {
                           return "hq" + std::to_string(i.param.h_q) + "_hkv" + std::to_string(i.param.h_kv);
                         });

class GpuDecodePages : public ::testing::TestWithParam<int> {};

// Every page size the sm90 backend takes: lengths at and around page and block edges, zero, and ragged
// ones; NaN-poisoned page tails and garbage table entries past the end; both dtypes, s_q 1 and 3
// (causal), 16 and 128 heads, split (the device's SM count) and unsplit (1 SM).
TEST_P(GpuDecodePages, MatchesReference) {
  REQUIRE_SM90();
  const int page = GetParam();
  const int sms = cuda_device_info(0).sm_count;
  Stream stream;
  int index = 0;
  for (DType dt : {DType::kBF16, DType::kFP16}) {
    for (int h_q : {16, 128}) {
      for (int s_q : {1, 3}) {
        ++index;
        std::vector<int32_t> special = {0, 1, page - 1, page, page + 1, 63, 64, 65, 2 * page + 1, 257};
        for (int32_t& l : special) l = std::max(l, 0);
        const int b = 24;
        const uint64_t seed = 7000 + 10 * page + index;
        testing::Workload w =
            random_workload(b, s_q, h_q, 1, ragged_seqlens(special, b, 1500, seed), dt, s_q > 1, seed, page);
        for (int num_sms : {sms, 1}) {
          SCOPED_TRACE(::testing::Message() << testing::dtype_short_name(dt) << " page=" << page << " h_q=" << h_q
                                            << " s_q=" << s_q << " num_sms=" << num_sms);
          expect_decode_matches_reference(w, num_sms, stream, kCheckedRows, seed);
        }
      }
    }
  }
}

INSTANTIATE_TEST_SUITE_P(PageSizes, GpuDecodePages,
                         ::testing::Values(1, 2, 4, 8, 16, 24, 32, 48, 64, 96, 100, 128, 129, 192, 256),
                         [](const ::testing::TestParamInfo<int>& i) { return "page" + std::to_string(i.param); });

// A block-table entry outside the pool inside a sequence reads as zeros (TMA boxes and the gather's
// zero-fill), as on the CPU backend. Pages 64 (TMA), 16 and 48 (TMA boxes of 16 rows), 4 and 100
// (gather).
TEST(GpuDecode, OutOfPoolPageReadsAsZeros) {
  REQUIRE_SM90();
  Stream stream;
  for (int page : {64, 16, 48, 4, 100}) {
    SCOPED_TRACE(::testing::Message() << "page=" << page);
    testing::Workload w = random_workload(3, 2, 16, 1, {200, 70, 129}, DType::kBF16, true, 92, page);
    expect_out_of_pool_page_reads_as_zeros(w, stream);
  }
}

// An `out` 8 bytes past a 16-byte boundary (validation asks for 8) cannot take the staged bulk copies
// of a final output (kernel.cuh, store_final_staged): the kernel falls back to direct stores. With 4
// SMs the host schedule keeps every one of these sequences whole (4 parts at h64, 2 at h128), so every
// row takes that path; the bytes around `out` are checked untouched.
TEST(GpuDecode, OutOffSixteenBytesTakesTheDirectStores) {
  REQUIRE_SM90();
  Stream stream;
  for (int h_q : {64, 128}) {
    SCOPED_TRACE(::testing::Message() << "h_q=" << h_q);
    testing::Workload w =
        random_workload(8, 1, h_q, 1, {100, 7, 300, 64, 0, 65, 250, 1}, DType::kBF16, false, 61 + h_q);
    GpuDecode d(w, 4, stream);
    constexpr size_t kShift = 8;
    DeviceBuffer shifted(d.out.size() + 16);
    shifted.fill(0xa5);
    d.args.out.data = static_cast<char*>(shifted.data()) + kShift;
    d.run();
    d.fetch();  // lse; out_host is replaced below
    std::vector<uint8_t> host(shifted.size());
    shifted.download(host.data());
    std::copy_n(host.begin() + kShift, d.out.size(), d.out_host.begin());
    const auto r = testing::check_against_reference(w, d.out_host.data(), d.lse_host.data(), 0);
    EXPECT_TRUE(r.ok) << r.first_failure << " (max abs err " << r.max_abs_err << ")";
    const auto untouched = [](uint8_t b) { return b == 0xa5; };
    EXPECT_TRUE(std::all_of(host.begin(), host.begin() + kShift, untouched));
    EXPECT_TRUE(std::all_of(host.begin() + kShift + d.out.size(), host.end(), untouched));
    EXPECT_TRUE(shifted.guards_intact());
  }
}

// q as a view with padded strides (heads 640 elements apart, tokens and sequences further), its padding
// NaN: the query tile's loads read only the view, with 16, 128, 8 and 63 query heads per KV head, split
// and unsplit (the device's SMs and 1), s_q 1 and 3. (docs/experiments/s22-q-by-tma.patch loads the
// first three by TMA boxes over q's strides.)
TEST(GpuDecode, PaddedQueryStrides) {
  REQUIRE_SM90();
  Stream stream;
  const int sms = cuda_device_info(0).sm_count;
  const HeadCase cases[] = {{16, 1}, {128, 1}, {16, 2}, {126, 2}};
  for (const HeadCase hc : cases) {
    for (int s_q : {1, 3}) {
      for (int num_sms : {sms, 1}) {
        SCOPED_TRACE(::testing::Message() << "h_q=" << hc.h_q << " h_kv=" << hc.h_kv << " s_q=" << s_q
                                          << " num_sms=" << num_sms);
        const int b = 6;
        testing::Workload w = random_workload(b, s_q, hc.h_q, hc.h_kv, {700, 65, 0, 130, 1, 64}, DType::kBF16,
                                              false, 71 + hc.h_q + s_q);
        w.config.causal = s_q > 1;
        GpuDecode d(w, num_sms, stream);
        const int64_t head_stride = 640, seq_stride = head_stride * hc.h_q + 64;
        const int64_t batch_stride = seq_stride * s_q + 128;
        DeviceBuffer padded(static_cast<size_t>(batch_stride * b * 2));
        padded.fill(0xff);  // bf16 0xffff is NaN
        for (int i = 0; i < b; ++i) {
          for (int t = 0; t < s_q; ++t) {
            const int64_t dst = (i * batch_stride + t * seq_stride) * 2;
            const int64_t src = ((int64_t(i) * s_q + t) * hc.h_q) * kHeadDim * 2;
            cuda_ok(cudaMemcpy2D(static_cast<char*>(padded.data()) + dst, head_stride * 2,
                                 static_cast<const char*>(d.q.data()) + src, kHeadDim * 2, kHeadDim * 2, hc.h_q,
                                 cudaMemcpyDeviceToDevice),
                    "padded q");
          }
        }
        d.args.q.data = padded.data();
        d.args.q.stride[0] = batch_stride;
        d.args.q.stride[1] = seq_stride;
        d.args.q.stride[2] = head_stride;
        d.run();
        const auto r = d.check(0);
        EXPECT_TRUE(r.ok) << r.first_failure << " (max abs err " << r.max_abs_err << ")";
        EXPECT_TRUE(d.guards_intact() && padded.guards_intact());
      }
    }
  }
}

// When the combine is the decode kernel's programmatic dependent (the warp-per-row shape: batch * rows
// * 4 >= 4096), it waits for each split sequence's pieces on counters in metadata words 5 and 6
// (flash_mla.hpp) and puts them back to 0: after every call the metadata is the schedule's again, word
// for word, and the next layer's call (same metadata) gets the same bits. One and four query tiles, and
// two KV heads, so that a sequence's count runs over tiles and heads; and per-tensor FP8 with 16 rows,
// the narrow kernel's release (b = 64: 64 * 16 rows * 4 quarters reach the warp-per-row shape; not yet
// run on a GPU in session 17, whose device time was spent).
TEST(GpuDecode, CallsLeaveTheMetadataAsScheduled) {
  REQUIRE_SM90();
  Stream stream;
  struct Shape {
    int b, s_q, h_q, h_kv;
    KvCacheFormat format;
  };
  const Shape shapes[] = {{20, 4, 16, 1, KvCacheFormat::kDense},
                          {20, 2, 128, 1, KvCacheFormat::kDense},
                          {20, 1, 128, 2, KvCacheFormat::kDense},
                          {64, 1, 16, 1, KvCacheFormat::kFP8PerTensor}};
  for (const Shape& sh : shapes) {
    SCOPED_TRACE(::testing::Message() << "b=" << sh.b << " s_q=" << sh.s_q << " h_q=" << sh.h_q << " h_kv=" << sh.h_kv
                                      << " " << to_string(sh.format));
    const std::vector<int32_t> lens = ragged_seqlens({0, 65, 9000, 4100}, sh.b, 1200, 78 + sh.h_q);
    testing::Workload w = random_workload(sh.b, sh.s_q, sh.h_q, sh.h_kv, lens, DType::kBF16, sh.s_q > 1, 77 + sh.h_q,
                                          64, sh.format);
    GpuDecode d(w, 16, stream);
    cuda_ok(cudaStreamSynchronize(stream), "schedule");
    std::vector<int32_t> scheduled(d.meta.size() / sizeof(int32_t)), after(scheduled.size());
    d.meta.download(scheduled.data());
    std::vector<int32_t> splits(w.config.batch + 1);
    d.splits.download(splits.data());
    ASSERT_GT(splits.back(), w.config.batch) << "the workload must split sequences";
    d.run();
    const auto r = d.check(600);
    EXPECT_TRUE(r.ok) << r.first_failure << " (max abs err " << r.max_abs_err << ")";
    const std::vector<uint8_t> first_out = d.out_host;
    const std::vector<float> first_lse = d.lse_host;
    for (int call = 0; call < 3; ++call) {
      d.meta.download(after.data());
      EXPECT_EQ(after, scheduled) << "after call " << call;
      d.run();
      d.fetch();
      EXPECT_EQ(d.out_host, first_out) << "call " << call + 1;
      EXPECT_EQ(std::memcmp(d.lse_host.data(), first_lse.data(), first_lse.size() * sizeof(float)), 0);
    }
    EXPECT_TRUE(d.guards_intact());
  }
}

// A part whose schedule row is garbage with a first sequence past its last (row[0] >= 1, row[2] near
// INT_MIN: before 78bec05 end_req - begin_req overflowed and, by the code, ~2^31 pieces would have been
// read out of bounds) does nothing: the call completes, the guard bands around out, lse and the
// workspace stay intact, and with the schedule's words back the next call matches the reference. Whole
// sequences only (4 SMs, short lengths), so no combine waits on the skipped part.
TEST(GpuDecode, GarbageScheduleRowReadsNothing) {
  REQUIRE_SM90();
  Stream stream;
  for (int h_q : {16, 128}) {
    SCOPED_TRACE(::testing::Message() << "h_q=" << h_q);
    testing::Workload w = random_workload(6, 1, h_q, 1, {100, 300, 64, 1, 250, 129}, DType::kBF16, false, 93 + h_q);
    GpuDecode d(w, 4, stream);
    cuda_ok(cudaStreamSynchronize(stream), "schedule");
    std::vector<int32_t> splits(w.config.batch + 1);
    d.splits.download(splits.data());
    ASSERT_EQ(splits.back(), w.config.batch) << "the workload must split nothing";
    std::vector<int32_t> scheduled(d.meta.size() / sizeof(int32_t));
    d.meta.download(scheduled.data());
    for (const int32_t first : {1, 3, INT32_MAX}) {
      std::vector<int32_t> garbage = scheduled;
      garbage[0] = first;
      garbage[2] = INT32_MIN;
      d.meta.upload(garbage.data());
      d.run();
      EXPECT_TRUE(d.guards_intact()) << "row[0] = " << first;
    }
    d.meta.upload(scheduled.data());
    d.run();
    const auto r = d.check(0);
    EXPECT_TRUE(r.ok) << r.first_failure << " (max abs err " << r.max_abs_err << ")";
    EXPECT_TRUE(d.guards_intact());
  }
}

TEST(GpuDecode, LargeBatchShortSequences) {
  REQUIRE_SM90();
  Stream stream;
  std::vector<int32_t> lens = ragged_seqlens({0, 0, 1, 63, 64, 65}, 5000, 40, 9);
  for (size_t i = 0; i < lens.size(); i += 29) lens[i] = 0;
  for (int s_q : {1, 2}) {
    testing::Workload w = random_workload(5000, s_q, 128, 1, lens, DType::kBF16, s_q > 1, 9 + s_q);
    GpuDecode d(w, cuda_device_info(0).sm_count, stream);
    d.run();
    const auto r = d.check(2000, s_q);
    EXPECT_TRUE(r.ok) << "s_q=" << s_q << ": " << r.first_failure;
    EXPECT_TRUE(d.guards_intact());
  }
}

// A large batch in which one long sequence is split into ~69 pieces: the merge's weights past the
// first 32 pieces, and a sequence of ~13. b * h_q * 4 quarters = 4096 is exactly launch_combine's
// threshold for the warp-per-row shape.
TEST(GpuDecode, LargeBatchWithOneLongSequence) {
  REQUIRE_SM90();
  Stream stream;
  std::vector<int32_t> lens = ragged_seqlens({0, 1, 64, 65}, 64, 300, 31);
  lens[5] = 48000;
  lens[40] = 9000;
  for (DType dtype : {DType::kBF16, DType::kFP16}) {
    testing::Workload w = random_workload(64, 1, 16, 1, lens, dtype, false, 32);
    GpuDecode d(w, cuda_device_info(0).sm_count, stream);
    d.run();
    const auto r = d.check(64 * 16, 1);
    EXPECT_TRUE(r.ok) << to_string(dtype) << ": " << r.first_failure;
    EXPECT_TRUE(d.guards_intact());
  }
}

// The split-warp combine (combine_kernel: batches with few row quarters) reduces a row's lse in each
// warp up to 64 pieces, and in the whole CTA beyond, with weights in rounds of 512 pieces; four or
// sixteen warps share a quarter (combine_split_warps: sixteen from 64 parts per sequence). num_sms
// sets the pieces of the longest sequence (host schedule, checked below): four warps with 45, 101
// (PERF.md's b=4 mixed row) and 625 pieces; sixteen with 157, 625 and, at 128 rows, 125; and a
// sequence shorter than s_q (causal: its first 60 query tokens see no key) cut into 5 pieces, whose
// empty rows must come out as exact zeros with lse +inf.
TEST(GpuDecode, SplitWarpCombineOverTensToHundredsOfPieces) {
  REQUIRE_SM90();
  Stream stream;
  struct Case {
    std::vector<int32_t> lens;
    int h_q, s_q, num_sms, min_pieces, max_pieces;
  };
  std::vector<int32_t> one_long(16, 100);
  one_long[0] = 40000;
  const Case cases[] = {{{40000}, 8, 4, 48, 33, 64},
                        {{4641, 45118, 1730, 1696}, 16, 4, 132, 65, 512},
                        {one_long, 16, 1, 1000, 513, 1024},
                        {{40000}, 16, 1, 160, 65, 512},
                        {{40000}, 16, 1, 700, 513, 1024},
                        {{40000}, 128, 1, 300, 65, 512},
                        {{640}, 1, 700, 176, 2, 64}};
  for (const Case& c : cases) {
    for (DType dtype : {DType::kBF16, DType::kFP16}) {
      SCOPED_TRACE(::testing::Message() << "b=" << c.lens.size() << " h_q=" << c.h_q << " s_q=" << c.s_q
                                        << " num_sms=" << c.num_sms << " " << to_string(dtype));
      testing::Workload w = random_workload(static_cast<int>(c.lens.size()), c.s_q, c.h_q, 1, c.lens, dtype,
                                            c.s_q > 1, 71 + c.num_sms);
      GpuDecode d(w, c.num_sms, stream);
      d.run();
      std::vector<int32_t> splits(c.lens.size() + 1);
      d.splits.download(splits.data());
      int pieces = 0;
      for (size_t i = 0; i < c.lens.size(); ++i) pieces = std::max(pieces, splits[i + 1] - splits[i]);
      EXPECT_GE(pieces, c.min_pieces);
      EXPECT_LE(pieces, c.max_pieces);
      const auto r = d.check(64);
      EXPECT_TRUE(r.ok) << r.first_failure;
      EXPECT_TRUE(d.guards_intact());
      expect_empty_rows_exact(d);
    }
  }
}

// A NaN key inside a split sequence reaches every output row and lse of that sequence, as in the
// reference (SPEC: NaN in exactly the reference's positions), through each combine path: four warps
// per quarter reducing in each warp (45 pieces), sixteen reducing in the CTA (157 pieces: there a NaN
// lse that is a thread's first value was once dropped by fmaxf), and a warp per row (b=64, 2-3
// pieces). The other sequences' bytes are those of the clean call.
TEST(GpuDecode, NaNKeyInsideASplitSequencePropagates) {
  REQUIRE_SM90();
  Stream stream;
  struct Case {
    std::vector<int32_t> lens;
    int h_q, s_q, num_sms;
  };
  const Case cases[] = {
      {{40000, 300}, 8, 4, 48}, {{40000, 300}, 16, 1, 160}, {std::vector<int32_t>(64, 2000), 16, 1, 132}};
  for (const Case& c : cases) {
    SCOPED_TRACE(::testing::Message() << "b=" << c.lens.size() << " h_q=" << c.h_q << " s_q=" << c.s_q
                                      << " num_sms=" << c.num_sms);
    testing::Workload w = random_workload(static_cast<int>(c.lens.size()), c.s_q, c.h_q, 1, c.lens, DType::kBF16,
                                          c.s_q > 1, 64 + c.num_sms);
    GpuDecode clean(w, c.num_sms, stream);
    clean.run();
    clean.fetch();
    std::vector<int32_t> splits(c.lens.size() + 1);
    clean.splits.download(splits.data());
    ASSERT_GE(splits[1] - splits[0], 2) << "sequence 0 must be split";
    const int token = 37;  // sequence 0, visible to every query row
    const int64_t page = w.block_table[token / w.config.page_block_size];
    const int64_t at = (page * w.config.page_block_size + token % w.config.page_block_size) * w.k_row_bytes() + 2 * 5;
    w.k_cache[at] = 0xC0;  // bf16 0x7FC0 (quiet NaN) at channel 5, little-endian
    w.k_cache[at + 1] = 0x7F;
    GpuDecode poisoned(w, c.num_sms, stream);
    poisoned.run();
    poisoned.fetch();
    const int64_t rows = int64_t(w.config.s_q) * w.config.h_q;
    for (int64_t e = 0; e < rows * kHeadDimV; ++e) {
      ASSERT_TRUE(std::isnan(testing::load_as_float(DType::kBF16, poisoned.out_host.data(), e))) << "element " << e;
    }
    for (int64_t i = 0; i < rows; ++i) ASSERT_TRUE(std::isnan(poisoned.lse_host[i])) << "lse " << i;
    const size_t out_bytes = rows * kHeadDimV * 2;
    EXPECT_EQ(0, std::memcmp(poisoned.out_host.data() + out_bytes, clean.out_host.data() + out_bytes,
                             poisoned.out_host.size() - out_bytes));
    EXPECT_EQ(0, std::memcmp(poisoned.lse_host.data() + rows, clean.lse_host.data() + rows,
                             (poisoned.lse_host.size() - rows) * sizeof(float)));
  }
}

TEST(GpuDecode, EmptyAndFullyMaskedRowsAreExact) {
  REQUIRE_SM90();
  Stream stream;
  for (const auto& lens : {std::vector<int32_t>(64, 0), std::vector<int32_t>{0, 1, 2, 3, 4, 100, 0}}) {
    testing::Workload w = random_workload(static_cast<int>(lens.size()), 4, 128, 1, lens, DType::kBF16, true, 21);
    GpuDecode d(w, cuda_device_info(0).sm_count, stream);
    d.run();
    const auto r = d.check(0);
    EXPECT_TRUE(r.ok) << r.first_failure;
    expect_empty_rows_exact(d);
  }
}

// ---------------------------------------------------------------------------------------------
// Determinism: bitwise-identical out and lse over 100 calls and across CUDA-graph replay.

struct DeterminismCase {
  int b, s_q, h_q, h_kv;
  DType dtype;
  bool causal;
  int num_sms;  // 0: the device's SM count through get_mla_metadata's default
  const char* what;
};

// Partly filled and several 64-row query tiles, one and several KV heads, split and unsplit.
std::vector<DeterminismCase> determinism_cases() {
  return {{9, 2, 128, 1, DType::kFP16, true, 0, "256 rows per KV head, s_q 2 causal, split"},
          {16, 1, 16, 1, DType::kBF16, false, 0, "16 rows per KV head, split"},
          {5, 3, 64, 2, DType::kBF16, true, 1, "96 rows per KV head, 2 KV heads, unsplit"},
          {3, 2, 8, 1, DType::kFP16, true, 7, "16 rows per KV head, few parts"}};
}

std::string describe(const DeterminismCase& c) {
  std::ostringstream s;
  s << c.what << ": b=" << c.b << " s_q=" << c.s_q << " h_q=" << c.h_q << " h_kv=" << c.h_kv
    << " num_sms=" << c.num_sms;
  return s.str();
}

testing::Workload determinism_workload(const DeterminismCase& c, uint64_t seed) {
  return random_workload(c.b, c.s_q, c.h_q, c.h_kv, ragged_seqlens({0, 1, 65, 4000}, c.b, 3000, seed), c.dtype,
                         c.causal, seed);
}

bool same_bits(const GpuDecode& d, const std::vector<uint8_t>& out, const std::vector<float>& lse) {
  return d.out_host.size() == out.size() && d.lse_host.size() == lse.size() &&
         std::memcmp(out.data(), d.out_host.data(), out.size()) == 0 &&
         std::memcmp(lse.data(), d.lse_host.data(), lse.size() * sizeof(float)) == 0;
}

TEST(GpuDecode, BitwiseDeterministicWhateverTheWorkspaceHolds) {
  REQUIRE_SM90();
  Stream stream;
  uint64_t seed = 31;
  for (const DeterminismCase& c : determinism_cases()) {
    SCOPED_TRACE(describe(c));
    testing::Workload w = determinism_workload(c, seed++);
    GpuDecode d(w, c.num_sms, stream);
    d.run();
    const auto r = d.check(kCheckedRows, seed);
    EXPECT_TRUE(r.ok) << r.first_failure;
    const std::vector<uint8_t> out0 = d.out_host;
    const std::vector<float> lse0 = d.lse_host;
    // 100 calls; every other one first fills out, lse and the workspace with another pattern.
    const uint8_t garbage[] = {0x00, 0x7f, 0xff, 0x55, 0x80};
    int differing = 0;
    for (int call = 0; call < 100; ++call) {
      if (call % 2 == 0) {
        d.workspace.fill(garbage[(call / 2) % 5]);
        d.out.fill(garbage[(call / 2 + 1) % 5]);
        d.lse.fill(garbage[(call / 2 + 2) % 5]);
      }
      d.run();
      d.fetch();
      if (!same_bits(d, out0, lse0) && ++differing == 1) ADD_FAILURE() << "call " << call << " differs from call 0";
    }
    EXPECT_EQ(differing, 0) << "of 100 calls";
    EXPECT_TRUE(d.guards_intact());
  }
}

// Value validation synchronises, so it cannot run inside graph capture.
bool value_validation_from_env() {
  const char* v = std::getenv("FLASH_MLA_VALIDATE");
  return v != nullptr && v[0] != '\0' && std::string(v) != "0";
}

// The calls `capture` makes on `stream`, captured once and instantiated.
class Graph {
 public:
  template <typename Capture>
  Graph(cudaStream_t stream, Capture&& capture) {
    cuda_ok(cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal), "cudaStreamBeginCapture");
    try {
      capture();
    } catch (...) {
      cudaGraph_t partial = nullptr;
      cudaStreamEndCapture(stream, &partial);
      if (partial != nullptr) cudaGraphDestroy(partial);
      throw;
    }
    cuda_ok(cudaStreamEndCapture(stream, &graph_), "cudaStreamEndCapture");
    cuda_ok(cudaGraphInstantiate(&exec_, graph_, 0), "cudaGraphInstantiate");
  }
  ~Graph() {
    if (exec_ != nullptr) cudaGraphExecDestroy(exec_);
    if (graph_ != nullptr) cudaGraphDestroy(graph_);
  }
  Graph(const Graph&) = delete;
  Graph& operator=(const Graph&) = delete;

  void replay(cudaStream_t stream) {
    cuda_ok(cudaGraphLaunch(exec_, stream), "cudaGraphLaunch");
    cuda_ok(cudaStreamSynchronize(stream), "graph replay");
  }

 private:
  cudaGraph_t graph_ = nullptr;
  cudaGraphExec_t exec_ = nullptr;
};

TEST(GpuGraph, DecodeReplayEqualsEagerBitwise) {
  REQUIRE_SM90();
  if (value_validation_from_env()) GTEST_SKIP() << "FLASH_MLA_VALIDATE synchronises; graphs cannot capture it";
  Stream stream;
  uint64_t seed = 71;
  for (const DeterminismCase& c : determinism_cases()) {
    SCOPED_TRACE(describe(c));
    testing::Workload w = determinism_workload(c, seed++);
    GpuDecode d(w, c.num_sms, stream);
    d.run();
    d.fetch();
    const std::vector<uint8_t> eager_out = d.out_host;
    const std::vector<float> eager_lse = d.lse_host;
    Graph graph(stream, [&] { mla_decode(d.args); });
    for (int replay = 0; replay < 10; ++replay) {
      d.workspace.fill(replay % 2 ? 0xff : 0x00);
      d.out.fill(0xff);
      d.lse.fill(0xff);
      graph.replay(stream);
      d.fetch();
      EXPECT_TRUE(same_bits(d, eager_out, eager_lse)) << "replay " << replay;
    }
    const auto r = testing::check_against_reference(w, eager_out.data(), eager_lse.data(), kCheckedRows, seed);
    EXPECT_TRUE(r.ok) << r.first_failure;
    EXPECT_TRUE(d.guards_intact());
  }
}

// get_mla_metadata and mla_decode captured together, as engines do for a decoding step; between
// replays new lengths, block tables, queries and cache contents are written into the same buffers
// (all-zero CUDA-graph padding batches included). Each replay equals the eager call on those inputs.
TEST(GpuGraph, ScheduleAndDecodeReplayFollowNewLengthsAndBlockTables) {
  REQUIRE_SM90();
  if (value_validation_from_env()) GTEST_SKIP() << "FLASH_MLA_VALIDATE synchronises; graphs cannot capture it";
  Stream stream;
  const int b = 24, s_q = 2, h_q = 64, h_kv = 1;
  const DType dtype = DType::kBF16;
  std::vector<int32_t> one_long(b, 1);
  one_long[5] = 20000;
  const std::vector<std::vector<int32_t>> lengths = {
      ragged_seqlens({0, 1, 63, 64, 65}, b, 3000, 61), ragged_seqlens({0, 0, 0, 2, 128}, b, 200, 62),
      std::vector<int32_t>(b, 0), one_long, ragged_seqlens({0, 65}, b, 6000, 65)};
  std::vector<testing::Workload> inputs;
  int64_t pages = 0;
  int64_t width = 0;
  for (size_t v = 0; v < lengths.size(); ++v) {
    inputs.push_back(random_workload(b, s_q, h_q, h_kv, lengths[v], dtype, true, 61 + v));
    pages = std::max(pages, inputs.back().num_pages);
    width = std::max<int64_t>(width, inputs.back().max_blocks_per_seq);
  }
  const testing::Workload& w0 = inputs[0];
  const int parts = num_sm_parts(cuda_device_info(0).sm_count, s_q * h_q / h_kv, h_kv);
  DeviceBuffer q(w0.q.size()), k(static_cast<size_t>(pages) * 64 * h_kv * kHeadDim * 2), table(b * width * 4),
      lens(b * 4), meta(static_cast<size_t>(parts) * kMetadataWords * 4), splits((b + 1) * 4),
      out(static_cast<size_t>(w0.out_elems()) * 2), lse(static_cast<size_t>(w0.lse_elems()) * 4),
      workspace(decode_workspace_bytes(b, s_q, h_q, parts));

  ScheduleArgs sa;
  sa.cache_seqlens = w0.seqlens_view(lens.data(), kCuda0);
  sa.num_q_tokens_per_head_k = s_q * h_q / h_kv;
  sa.num_heads_k = h_kv;
  sa.num_sms = 0;
  sa.tile_scheduler_metadata = make_view(meta.data(), DType::kInt32, kCuda0, {parts, kMetadataWords});
  sa.num_splits = make_view(splits.data(), DType::kInt32, kCuda0, {b + 1});
  sa.stream = stream;
  DecodeArgs da;
  da.q = w0.q_view(q.data(), kCuda0);
  da.k_cache = make_view(k.data(), dtype, kCuda0, {pages, 64, h_kv, kHeadDim});
  da.block_table = make_view(table.data(), DType::kInt32, kCuda0, {b, width});
  da.cache_seqlens = sa.cache_seqlens;
  da.tile_scheduler_metadata = sa.tile_scheduler_metadata;
  da.num_splits = sa.num_splits;
  da.softmax_scale = w0.softmax_scale;
  da.causal = true;
  da.out = w0.out_view(out.data(), kCuda0);
  da.lse = w0.lse_view(lse.data(), kCuda0);
  da.workspace = workspace.data();
  da.workspace_bytes = workspace.size();
  da.stream = stream;

  // A workload's inputs into the shared buffers: spare pages NaN, spare block-table columns garbage.
  auto load = [&](const testing::Workload& w) {
    q.upload(w.q.data());
    k.fill(0xff);
    k.upload(w.k_cache.data(), w.k_cache.size(), 0);
    std::vector<int32_t> t(static_cast<size_t>(b * width));
    for (int i = 0; i < b; ++i) {
      for (int64_t j = 0; j < width; ++j) {
        t[i * width + j] = j < w.max_blocks_per_seq ? w.block_table[i * w.max_blocks_per_seq + j]
                                                    : (j % 2 ? -1 : 2147480000);
      }
    }
    table.upload(t.data());
    lens.upload(w.seqlens.data());
  };
  std::vector<uint8_t> eager_out(out.size()), replay_out(out.size());
  std::vector<float> eager_lse(lse.size() / 4), replay_lse(lse.size() / 4);

  load(inputs[0]);
  Graph graph(stream, [&] {
    get_mla_metadata(sa);
    mla_decode(da);
  });
  for (size_t v = 0; v < inputs.size(); ++v) {
    SCOPED_TRACE("inputs " + std::to_string(v));
    load(inputs[v]);
    get_mla_metadata(sa);
    mla_decode(da);
    cuda_ok(cudaStreamSynchronize(stream), "eager decode");
    out.download(eager_out.data());
    lse.download(eager_lse.data());
    const auto r = testing::check_against_reference(inputs[v], eager_out.data(), eager_lse.data(), 512, v);
    EXPECT_TRUE(r.ok) << r.first_failure;

    out.fill(0xff);
    lse.fill(0xff);
    meta.fill(0xab);
    splits.fill(0xcd);
    workspace.fill(0x7f);
    graph.replay(stream);
    out.download(replay_out.data());
    lse.download(replay_lse.data());
    EXPECT_EQ(0, std::memcmp(eager_out.data(), replay_out.data(), eager_out.size())) << "out";
    EXPECT_EQ(0, std::memcmp(eager_lse.data(), replay_lse.data(), eager_lse.size() * 4)) << "lse";
  }
  for (const DeviceBuffer* buffer : {&out, &lse, &meta, &splits, &workspace}) EXPECT_TRUE(buffer->guards_intact());
}

// ---------------------------------------------------------------------------------------------
// Validation on device tensors.

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
  testing::Workload w = random_workload(2, 1, 16, 1, {100, 7}, DType::kFP32, false, 41);
  GpuDecode d(w, 132, nullptr);
  expect_error([&] { mla_decode(d.args); }, "q", {"float32 runs on the cpu backend only", "got float32"});
}

TEST_F(GpuValidation, CopyEngineAlignment) {
  REQUIRE_SM90();
  testing::Workload w = random_workload(2, 2, 16, 1, {100, 7}, DType::kBF16, false, 43);
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

TEST_F(GpuValidation, OutAlignedForTheCombinesStores) {
  REQUIRE_SM90();
  testing::Workload w = random_workload(2, 2, 16, 1, {100, 7}, DType::kBF16, false, 44);
  GpuDecode d(w, 132, nullptr);
  DecodeArgs a = d.args;
  a.out.data = static_cast<char*>(d.out.data()) + 4;
  expect_rejected(d, a, "out", {"8-byte aligned", "got an address ending in 4 mod 8"});
}

TEST(GpuValueValidation, RejectsBadDeviceValuesAndAcceptsGarbageTails) {
  REQUIRE_SM90();
  testing::Workload w = random_workload(3, 1, 16, 1, {130, 0, 64}, DType::kBF16, false, 51);
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

// The CPU backend against the float64 reference (testing::check_against_reference, SPEC tolerances)
// on random workloads with NaN-poisoned page tails and garbage block-table tails: a matrix over the
// cache variant (bf16, fp16, fp32 and the FP8 ones), s_q, h_q, h_kv, page size and causal; then
// zero-length and fully masked rows, the split and unsplit paths, guard bands, determinism and
// strided views.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <sstream>

#include "test_support.hpp"

namespace flash_mla::test {
namespace {

constexpr Device kCpu{DeviceType::kCPU, 0};
constexpr float kInf = std::numeric_limits<float>::infinity();

// Rows of the float64 reference to check: all of them up to this many, else a random sample.
constexpr int64_t kMaxCheckedRows = 1536;

// Asserts out == 0 exactly and lse == +inf on every row that sees no key.
void expect_empty_rows_exact(const CpuDecode& d) {
  const auto& c = d.w.config;
  int64_t empty_rows = 0;
  for (int i = 0; i < c.batch; ++i) {
    for (int t = 0; t < c.s_q; ++t) {
      if (visible_keys(d.w, i, t) > 0) continue;
      for (int h = 0; h < c.h_q; ++h) {
        ++empty_rows;
        const int64_t row = (int64_t(i) * c.s_q + t) * c.h_q + h;
        for (int e = 0; e < kHeadDimV; ++e) {
          ASSERT_EQ(d.out_at(row * kHeadDimV + e), 0.0f) << "b=" << i << " t=" << t << " h=" << h << " [" << e << "]";
        }
        ASSERT_EQ(d.lse_at((int64_t(i) * c.h_q + h) * c.s_q + t), kInf) << "b=" << i << " t=" << t << " h=" << h;
      }
    }
  }
  EXPECT_GT(empty_rows, 0) << "the test meant to have rows without visible keys";
}

// ---------------------------------------------------------------------------------------------
// The matrix. Per cache variant (bf16, fp16 and fp32 caches, and the three FP8 variants of
// kFP8Variants, whose tolerances test_cpu_fp8.cpp justifies), every (s_q, h_q) pair with h_kv = 1,
// page sizes and causal rotating so that every page size and both causal settings meet every variant;
// then h_kv in {2, 3, 8} where it divides h_q. num_sms rotates through 132 (split, the CPU default:
// those cases carry one 3000-token sequence, which the schedule must cut), 16, 3 and 1 (one part: no
// splits).
struct Variant {
  DType dtype;  // q's and out's (bf16 for the FP8 variants)
  KvCacheFormat format;
  bool fp8_q;
  std::string name;
};

std::vector<Variant> variants() {
  std::vector<Variant> v;
  for (DType dt : {DType::kBF16, DType::kFP16, DType::kFP32}) {
    v.push_back({dt, KvCacheFormat::kDense, false, testing::dtype_short_name(dt)});
  }
  for (const FP8Variant& f : kFP8Variants) v.push_back({DType::kBF16, f.format, f.fp8_q, f.name});
  return v;
}

struct MatrixCase {
  Variant variant;
  int s_q, h_q, h_kv, page;
  bool causal;
  int num_sms;
  uint64_t seed;
};

std::vector<MatrixCase> matrix_cases() {
  const int s_qs[] = {1, 2, 4}, h_qs[] = {1, 16, 63, 128}, pages[] = {1, 16, 64, 128, 256};
  const int sms[] = {132, 16, 3, 1};
  std::vector<MatrixCase> cases;
  uint64_t seed = 1000;
  const std::vector<Variant> all = variants();
  for (int vi = 0; vi < static_cast<int>(all.size()); ++vi) {
    for (int si = 0; si < 3; ++si) {
      for (int hi = 0; hi < 4; ++hi) {
        cases.push_back({all[vi], s_qs[si], h_qs[hi], 1, pages[(4 * si + hi + vi) % 5], (si + hi + vi) % 2 == 1,
                         sms[(si + 2 * hi + vi) % 4], seed++});
      }
    }
    // Grouped KV heads.
    const int grouped[][3] = {{16, 2, 2}, {16, 8, 1}, {63, 3, 4}, {128, 8, 2}, {128, 2, 4}};  // h_q, h_kv, s_q
    for (int g = 0; g < 5; ++g) {
      cases.push_back({all[vi], grouped[g][2], grouped[g][0], grouped[g][1], pages[(g + vi) % 5],
                       (g + vi) % 2 == 0, sms[(g + vi) % 4], seed++});
    }
  }
  return cases;
}

std::string matrix_name(const ::testing::TestParamInfo<MatrixCase>& info) {
  const MatrixCase& m = info.param;
  std::ostringstream s;
  s << m.variant.name << "_sq" << m.s_q << "_hq" << m.h_q << "_hkv" << m.h_kv << "_page" << m.page
    << (m.causal ? "_causal" : "_full") << "_sms" << m.num_sms;
  return s.str();
}

class CpuDecodeMatrix : public ::testing::TestWithParam<MatrixCase> {};

TEST_P(CpuDecodeMatrix, MatchesReference) {
  const MatrixCase& m = GetParam();
  // Lengths at block and page edges, zero and one, then random ones up to a few pages.
  const int P = m.page;
  std::vector<int32_t> special{0, 1, 63, 64, 65, P - 1 > 0 ? P - 1 : 2, P + 1, 2 * P + 1, 3};
  const int batch = m.h_q * m.s_q >= 256 ? 10 : 12;
  if (m.num_sms == 132) special.push_back(3000);  // more than any whole group may cost: it is cut
  testing::Workload w = random_workload(batch, m.s_q, m.h_q, m.h_kv, ragged_seqlens(special, batch, 300, m.seed),
                                        m.variant.dtype, m.causal, m.seed, P, m.variant.format, m.variant.fp8_q);
  // Some cases use a caller's softmax scale instead of 576^-0.5.
  if (m.seed % 3 == 0) w.softmax_scale = 0.02f + 0.01f * static_cast<float>(m.seed % 7);

  CpuDecode d(w, m.num_sms);
  d.run();
  const testing::CheckResult r = d.check(kMaxCheckedRows, m.seed);
  EXPECT_TRUE(r.ok) << r.first_failure << " (max abs err " << r.max_abs_err << ", cos diff " << r.cos_diff << ")";
  EXPECT_TRUE(d.guards_intact());
  if (m.num_sms == 1) {
    EXPECT_EQ(d.schedule.num_splits[batch], batch);
  } else if (m.num_sms == 132) {
    EXPECT_GT(d.schedule.num_splits[batch], batch) << "the case meant to cut a sequence";
  }
}

INSTANTIATE_TEST_SUITE_P(Cases, CpuDecodeMatrix, ::testing::ValuesIn(matrix_cases()), matrix_name);

// The matrix itself must cover every axis value with every variant (and splitting).
TEST(CpuDecodeMatrixCoverage, EveryAxisValueMeetsEveryVariant) {
  const auto cases = matrix_cases();
  for (const Variant& v : variants()) {
    SCOPED_TRACE(v.name);
    auto has = [&](auto pred) {
      return std::any_of(cases.begin(), cases.end(),
                         [&](const MatrixCase& m) { return m.variant.name == v.name && pred(m); });
    };
    for (int s_q : {1, 2, 4}) EXPECT_TRUE(has([&](const MatrixCase& m) { return m.s_q == s_q; }));
    for (int h_q : {1, 16, 63, 128}) EXPECT_TRUE(has([&](const MatrixCase& m) { return m.h_q == h_q; }));
    for (int h_kv : {1, 2, 3, 8}) EXPECT_TRUE(has([&](const MatrixCase& m) { return m.h_kv == h_kv; }));
    for (int page : {1, 16, 64, 128, 256}) EXPECT_TRUE(has([&](const MatrixCase& m) { return m.page == page; }));
    for (bool causal : {false, true}) {
      EXPECT_TRUE(has([&](const MatrixCase& m) { return m.causal == causal && m.s_q > 1; }));
    }
    for (int sms : {1, 132}) EXPECT_TRUE(has([&](const MatrixCase& m) { return m.num_sms == sms; }));
  }
}

// ---------------------------------------------------------------------------------------------
TEST(CpuDecode, AllZeroLengthBatch) {
  for (DType dt : {DType::kBF16, DType::kFP16, DType::kFP32}) {
    for (int s_q : {1, 3}) {
      for (int num_sms : {1, 132}) {
        SCOPED_TRACE(std::string(testing::dtype_short_name(dt)) + " s_q=" + std::to_string(s_q) +
                     " sms=" + std::to_string(num_sms));
        testing::Workload w = random_workload(5, s_q, 16, 1, std::vector<int32_t>(5, 0), dt, s_q > 1, 11, 64);
        CpuDecode d(w, num_sms);
        d.run();
        expect_empty_rows_exact(d);
        const auto r = d.check();
        EXPECT_TRUE(r.ok) << r.first_failure;
        EXPECT_TRUE(d.guards_intact());
      }
    }
  }
}

TEST(CpuDecode, ZeroLengthRowsAnywhere) {
  const std::vector<std::vector<int32_t>> batches = {
      {0, 100, 200}, {100, 0, 200}, {100, 200, 0}, {0, 0, 0, 129, 0, 0}, {0, 1, 0, 64, 0, 65, 0}, {77, 0}, {0, 77}};
  uint64_t seed = 20;
  for (const auto& lens : batches) {
    for (int num_sms : {1, 132}) {
      SCOPED_TRACE(::testing::Message() << "b=" << lens.size() << " sms=" << num_sms << " seed=" << seed);
      testing::Workload w =
          random_workload(static_cast<int>(lens.size()), 2, 16, 1, lens, DType::kBF16, false, ++seed, 16);
      CpuDecode d(w, num_sms);
      d.run();
      expect_empty_rows_exact(d);
      const auto r = d.check();
      EXPECT_TRUE(r.ok) << r.first_failure;
    }
  }
}

TEST(CpuDecode, FullyMaskedCausalRows) {
  // s_q = 4 and L < 4: the first 4 - L query tokens see no key (out 0, lse +inf); the rest do.
  for (DType dt : {DType::kBF16, DType::kFP32}) {
    for (int num_sms : {1, 132}) {
      testing::Workload w = random_workload(7, 4, 16, 2, {0, 1, 2, 3, 4, 5, 70}, dt, true, 31 + num_sms, 16);
      CpuDecode d(w, num_sms);
      d.run();
      expect_empty_rows_exact(d);
      const auto r = d.check();
      EXPECT_TRUE(r.ok) << r.first_failure;
    }
  }
}

TEST(CpuDecode, SplitAndUnsplitPathsAgreeWithReference) {
  testing::Workload w = random_workload(6, 2, 16, 1, {700, 0, 1, 513, 64, 1200}, DType::kFP16, true, 41, 64);
  for (int num_sms : {1, 3, 132}) {
    SCOPED_TRACE("num_sms=" + std::to_string(num_sms));
    CpuDecode d(w, num_sms);
    d.run();
    const int b = w.config.batch;
    if (num_sms == 1) {
      EXPECT_EQ(d.schedule.num_splits[b], b) << "one part must not split";
    }
    if (num_sms == 132) {
      EXPECT_GT(d.schedule.num_splits[b], 2 * b) << "132 parts must split the long sequences";
    }
    const auto r = d.check();
    EXPECT_TRUE(r.ok) << r.first_failure;
    EXPECT_TRUE(d.guards_intact());
  }
}

TEST(CpuDecode, LargeBatchShortSequences) {
  // Short sequences and small pages keep the workload (and its poisoned page pool) small.
  std::vector<int32_t> lens = ragged_seqlens({0, 0, 1, 63, 64, 65}, 5000, 24, 51);
  for (size_t i = 0; i < lens.size(); i += 37) lens[i] = 0;
  lens[2500] = 16000;  // 250 blocks: more than a part's share (about 210), so it is split
  testing::Workload w = random_workload(5000, 1, 16, 1, lens, DType::kBF16, false, 51, 8);
  CpuDecode d(w, 132);
  d.run();
  EXPECT_GT(d.schedule.num_splits[5000], 5000);
  const auto r = d.check(4000, 5);
  EXPECT_TRUE(r.ok) << r.first_failure;
  EXPECT_TRUE(d.guards_intact());
  // The split sequence itself, every row.
  std::vector<double> ref(kHeadDimV);
  for (int h = 0; h < 16; ++h) {
    double ref_lse;
    testing::reference_row(w, 2500, 0, h, ref.data(), &ref_lse);
    const int64_t row = 2500 * 16 + h;
    EXPECT_NEAR(d.lse_at(row), ref_lse, std::max(1e-6, 8.01 / 65536 * std::abs(ref_lse))) << "h=" << h;  // SPEC
    for (int e = 0; e < kHeadDimV; ++e) {
      EXPECT_NEAR(d.out_at(row * kHeadDimV + e), ref[e], std::max(8e-4, 2.01 / 128 * std::abs(ref[e]))) << "h=" << h;
    }
  }
}

TEST(CpuDecode, GuardBandsAndInputsSurvive) {
  testing::Workload w = random_workload(5, 4, 63, 3, {0, 1, 65, 3000, 129}, DType::kBF16, true, 61, 16);
  const testing::Workload before = w;
  CpuDecode d(w, 132);
  const Schedule schedule_before = d.schedule;
  d.run();
  EXPECT_TRUE(d.out.guards_intact()) << "write before or after out";
  EXPECT_TRUE(d.lse.guards_intact()) << "write before or after lse";
  EXPECT_TRUE(d.workspace.guards_intact()) << "write before or after the workspace";
  EXPECT_GT(d.schedule.num_splits[5], 5) << "the workspace must have been used";
  EXPECT_TRUE(w.q == before.q) << "q was written";
  EXPECT_TRUE(w.k_cache == before.k_cache) << "k_cache was written";
  EXPECT_TRUE(w.block_table == before.block_table) << "block_table was written";
  EXPECT_TRUE(w.seqlens == before.seqlens) << "cache_seqlens was written";
  EXPECT_TRUE(d.schedule.metadata == schedule_before.metadata) << "metadata was written";
  EXPECT_TRUE(d.schedule.num_splits == schedule_before.num_splits) << "num_splits was written";
  const auto r = d.check();
  EXPECT_TRUE(r.ok) << r.first_failure;
}

TEST(CpuDecode, BitwiseDeterministicWhateverTheWorkspaceHolds) {
  testing::Workload w = random_workload(4, 2, 128, 1, {700, 3, 0, 450}, DType::kBF16, true, 71, 64);
  CpuDecode d(w, 132);
  std::vector<uint8_t> first_out, first_lse;
  std::mt19937 rng(5);
  for (int run = 0; run < 4; ++run) {
    // The workspace's contents on entry must not matter: NaN, zeros, random bytes.
    auto* ws = static_cast<uint8_t*>(d.workspace.data());
    if (run == 1) d.workspace.fill(0xff);
    if (run == 2) d.workspace.fill(0x00);
    if (run == 3) for (size_t i = 0; i < d.workspace.size(); ++i) ws[i] = static_cast<uint8_t>(rng());
    d.out.fill(0xff);
    d.lse.fill(0xff);
    d.run();
    const auto* o = static_cast<const uint8_t*>(d.out.data());
    const auto* l = static_cast<const uint8_t*>(d.lse.data());
    if (run == 0) {
      first_out.assign(o, o + d.out.size());
      first_lse.assign(l, l + d.lse.size());
      const auto r = d.check(kMaxCheckedRows);
      EXPECT_TRUE(r.ok) << r.first_failure;
    } else {
      EXPECT_EQ(0, std::memcmp(first_out.data(), o, d.out.size())) << "out differs in run " << run;
      EXPECT_EQ(0, std::memcmp(first_lse.data(), l, d.lse.size())) << "lse differs in run " << run;
    }
  }
}

TEST(CpuDecode, BackendCpuEqualsAuto) {
  testing::Workload w = random_workload(3, 1, 16, 1, {100, 0, 64}, DType::kFP16, false, 81, 16);
  CpuDecode a(w, 132), b(w, 132);
  a.args.backend = Backend::kAuto;
  b.args.backend = Backend::kCPU;
  a.run();
  b.run();
  EXPECT_EQ(0, std::memcmp(a.out.data(), b.out.data(), a.out.size()));
  EXPECT_EQ(0, std::memcmp(a.lse.data(), b.lse.data(), a.lse.size()));
}

// q, k_cache and block_table as padded strided views (last dim contiguous, padding full of NaN and
// garbage) give bitwise the result of the contiguous tensors.
TEST(CpuDecode, StridedViewsEqualContiguous) {
  for (DType dt : {DType::kBF16, DType::kFP32}) {
    SCOPED_TRACE(testing::dtype_short_name(dt));
    const int b = 4, s_q = 2, h_q = 16, h_kv = 2, page = 16;
    testing::Workload w = random_workload(b, s_q, h_q, h_kv, {37, 0, 200, 65}, dt, true, 91, page);
    CpuDecode ref(w, 132);
    ref.run();

    const size_t es = w.elem();
    const float nan = std::numeric_limits<float>::quiet_NaN();
    // q: [b, s_q, h_q, 576] with head stride 600, token stride h_q * 600 + 8, batch stride + 24.
    const int64_t qh = 600, qt = h_q * qh + 8, qb = s_q * qt + 24;
    std::vector<uint8_t> q(static_cast<size_t>(b * qb) * es);
    for (int64_t i = 0; i < b * qb; ++i) testing::store_from_float(dt, q.data(), i, nan);
    for (int i = 0; i < b; ++i)
      for (int t = 0; t < s_q; ++t)
        for (int h = 0; h < h_q; ++h)
          std::memcpy(&q[static_cast<size_t>(i * qb + t * qt + h * qh) * es],
                      &w.q[static_cast<size_t>(((i * s_q + t) * h_q + h) * kHeadDim) * es], kHeadDim * es);
    // k_cache: [pages, page, h_kv, 576] with head stride 584, token stride h_kv * 584 + 16, page stride + 40.
    const int64_t kh = 584, kt = h_kv * kh + 16, kp = page * kt + 40;
    std::vector<uint8_t> k(static_cast<size_t>(w.num_pages * kp) * es);
    for (int64_t i = 0; i < w.num_pages * kp; ++i) testing::store_from_float(dt, k.data(), i, nan);
    for (int64_t p = 0; p < w.num_pages; ++p)
      for (int j = 0; j < page; ++j)
        for (int h = 0; h < h_kv; ++h)
          std::memcpy(&k[static_cast<size_t>(p * kp + j * kt + h * kh) * es],
                      &w.k_cache[static_cast<size_t>(((p * page + j) * h_kv + h) * kHeadDim) * es], kHeadDim * es);
    // block_table: row stride max_blocks + 5, padding -1.
    const int64_t mb = w.max_blocks_per_seq, bt = mb + 5;
    std::vector<int32_t> table(static_cast<size_t>(b * bt), -1);
    for (int i = 0; i < b; ++i)
      for (int j = 0; j < mb; ++j) table[i * bt + j] = w.block_table[i * mb + j];

    CpuDecode d(w, 132);
    d.args.q = make_view(q.data(), dt, kCpu, {b, s_q, h_q, kHeadDim}, {qb, qt, qh, 1});
    d.args.k_cache = make_view(k.data(), dt, kCpu, {w.num_pages, page, h_kv, kHeadDim}, {kp, kt, kh, 1});
    d.args.block_table = make_view(table.data(), DType::kInt32, kCpu, {b, mb}, {bt, 1});
    d.run();
    EXPECT_EQ(0, std::memcmp(ref.out.data(), d.out.data(), d.out.size())) << "out differs from contiguous";
    EXPECT_EQ(0, std::memcmp(ref.lse.data(), d.lse.data(), d.lse.size())) << "lse differs from contiguous";
    const auto r = d.check();
    EXPECT_TRUE(r.ok) << r.first_failure;
  }
}

// The checker the suite relies on must be able to fail.
TEST(ReferenceChecker, DetectsWrongOutputs) {
  testing::Workload w = random_workload(3, 2, 16, 1, {0, 90, 130}, DType::kFP32, true, 101, 16);
  CpuDecode d(w, 132);
  d.run();
  ASSERT_TRUE(d.check().ok);
  auto* out = static_cast<float*>(d.out.data());
  auto* lse = static_cast<float*>(d.lse.data());
  const int64_t row = (1 * 2 + 1) * 16 + 5;  // b=1, t=1, h=5
  const float o = out[row * kHeadDimV + 7];
  out[row * kHeadDimV + 7] = o + 0.02f + 0.05f * std::abs(o);
  EXPECT_FALSE(d.check().ok) << "a wrong out element passed";
  out[row * kHeadDimV + 7] = o;
  const float l = lse[(1 * 16 + 5) * 2 + 1];
  lse[(1 * 16 + 5) * 2 + 1] = l + 0.01f;
  EXPECT_FALSE(d.check().ok) << "a wrong lse passed";
  lse[(1 * 16 + 5) * 2 + 1] = l;
  lse[0] = 0.0f;  // b=0 is empty: its lse must be +inf
  EXPECT_FALSE(d.check().ok) << "a finite lse on an empty row passed";
  lse[0] = kInf;
  out[0] = std::numeric_limits<float>::quiet_NaN();
  EXPECT_FALSE(d.check().ok) << "NaN in an empty row passed";
  out[0] = 0.0f;
  EXPECT_TRUE(d.check().ok);
}

}  // namespace
}  // namespace flash_mla::test

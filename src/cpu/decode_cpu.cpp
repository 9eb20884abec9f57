// CPU backend: the exact SPEC math, following the same split-KV schedule as the GPU (each part of
// the metadata is one task; a piece of a split sequence writes fp32 partial O and lse, then a combine
// pass merges them), so the split/combine arithmetic is exercised without a GPU.
//
// Per piece and KV head: the piece's keys are converted to float 64 tokens at a time ([64, 576] tile;
// FP8 caches are dequantised there, load_k_row) and shared by all query rows of that head; each row
// keeps an online-softmax state (max, sum, 512 accumulators). Keys past a row's last visible token
// are never read, so NaN tails and garbage block-table entries past the end cannot leak in.
#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <limits>
#include <thread>
#include <vector>

#include "core/backends.hpp"
#include "core/params.hpp"
#include "core/schedule_math.hpp"
#include "cpu/rows.hpp"

namespace flash_mla::detail {

namespace {

constexpr float kInf = std::numeric_limits<float>::infinity();

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define FLASH_MLA_CPU_CLONES __attribute__((target_clones("avx2", "default")))
#else
#define FLASH_MLA_CPU_CLONES
#endif

FLASH_MLA_CPU_CLONES float dot576(const float* a, const float* b) {
  float acc[16] = {};
  for (int c = 0; c < kHeadDim; c += 16) {
    for (int k = 0; k < 16; ++k) acc[k] += a[c + k] * b[c + k];
  }
  float s = 0.0f;
  for (int k = 0; k < 16; ++k) s += acc[k];
  return s;
}

// acc[0:512] = acc * alpha + sum_j p[j] * v[j][0:512]
FLASH_MLA_CPU_CLONES void rescale_accumulate(float* acc, float alpha, const float* p, const float* v,
                                             int count) {
  for (int c = 0; c < kHeadDimV; ++c) acc[c] *= alpha;
  for (int j = 0; j < count; ++j) {
    const float pj = p[j];
    const float* vj = v + static_cast<int64_t>(j) * kHeadDim;
    for (int c = 0; c < kHeadDimV; ++c) acc[c] += pj * vj[c];
  }
}

// One token of one KV head, dequantised to float (SPEC.md, "FP8 KV cache"): dst[0:576]. `offset` is in
// elements of the cache's dtype (bytes for the FP8 formats). Exact: an e4m3 value times a power-of-two
// scale is a float; a per-tensor descale_k rounds each product once.
void load_k_row(const DecodeParams& prm, int64_t offset, float* dst) {
  switch (prm.kv_format) {
    case KvCacheFormat::kDense: load_row(prm.dtype, prm.k, offset, kHeadDim, dst); return;
    case KvCacheFormat::kFP8PerTensor: {
      load_row(DType::kFP8E4M3, prm.k, offset, kHeadDim, dst);
      const float descale = *prm.descale_k;
      for (int c = 0; c < kHeadDim; ++c) dst[c] *= descale;
      return;
    }
    case KvCacheFormat::kFP8WithScale: {
      const uint8_t* row = static_cast<const uint8_t*>(prm.k) + offset;
      load_row(DType::kFP8E4M3, row, 0, kHeadDimV, dst);
      for (int g = 0; g < kFP8NumScales; ++g) {
        float scale;  // memcpy: callers' page strides need not keep the float32 scales 4-byte aligned
        std::memcpy(&scale, row + kFP8ScaleOffset + 4 * g, sizeof scale);
        for (int c = g * kFP8ScaleGroup; c < (g + 1) * kFP8ScaleGroup; ++c) dst[c] *= scale;
      }
      for (int c = 0; c < kHeadDimRope; ++c) {
        uint16_t rope;
        std::memcpy(&rope, row + kFP8RopeOffset + 2 * c, sizeof rope);
        dst[kHeadDimV + c] = bf16_to_float(rope);
      }
      return;
    }
  }
}

void store(DType dtype, void* base, int64_t index, float v) {
  switch (dtype) {
    case DType::kBF16: static_cast<uint16_t*>(base)[index] = float_to_bf16(v); break;
    case DType::kFP16: static_cast<uint16_t*>(base)[index] = float_to_fp16(v); break;
    default: static_cast<float*>(base)[index] = v;
  }
}

struct Piece {
  int req;
  int token_begin;
  int token_end;
  int split;  // index among the sequence's pieces
};

// Scratch of one worker thread, reused across pieces.
struct Workspace {
  std::vector<float> q;    // [rows, 576]
  std::vector<float> k;    // [64, 576]
  std::vector<float> acc;  // [rows, 512]
  std::vector<float> m, l, p;
};

// cache_seqlens clamped to [0, capacity of the block-table row]: lengths past the table are
// truncated rather than read out of bounds (value validation reports them as errors).
int effective_seqlen(const DecodeParams& prm, int req) {
  const int64_t capacity = static_cast<int64_t>(prm.max_blocks_per_seq) * prm.page_block_size;
  return static_cast<int>(std::clamp<int64_t>(prm.seqlens[req], 0, capacity));
}

int visible_end(const DecodeParams& prm, int seqlen, int row) {
  if (!prm.causal) return seqlen;
  const int t = row / prm.q_per_kv;
  return std::max(0, seqlen - prm.s_q + t + 1);
}

void run_piece(const DecodeParams& prm, const Piece& pc, int n_splits, Workspace& ws) {
  const int rows = prm.rows;
  const int seqlen = effective_seqlen(prm, pc.req);
  ws.q.resize(static_cast<size_t>(rows) * kHeadDim);
  ws.k.resize(static_cast<size_t>(kBlockN) * kHeadDim);
  ws.acc.resize(static_cast<size_t>(rows) * kHeadDimV);
  ws.m.resize(rows);
  ws.l.resize(rows);
  ws.p.resize(kBlockN);
  const int32_t* table = prm.block_table + static_cast<int64_t>(pc.req) * prm.block_table_stride;

  for (int kv = 0; kv < prm.h_kv; ++kv) {
    for (int r = 0; r < rows; ++r) {
      const int t = r / prm.q_per_kv, h = kv * prm.q_per_kv + r % prm.q_per_kv;
      const int64_t off = pc.req * prm.q_batch_stride + t * prm.q_seq_stride + h * prm.q_head_stride;
      float* q = &ws.q[static_cast<size_t>(r) * kHeadDim];
      load_row(prm.q_dtype, prm.q, off, kHeadDim, q);
      if (prm.descale_q != nullptr) {
        const float descale = *prm.descale_q;
        for (int c = 0; c < kHeadDim; ++c) q[c] *= descale;
      }
    }
    std::fill(ws.acc.begin(), ws.acc.end(), 0.0f);
    std::fill(ws.m.begin(), ws.m.end(), -kInf);
    std::fill(ws.l.begin(), ws.l.end(), 0.0f);

    for (int t0 = pc.token_begin; t0 < pc.token_end; t0 += kBlockN) {
      const int t1 = std::min(t0 + kBlockN, pc.token_end);
      for (int j = t0; j < t1; ++j) {
        const int64_t page = table[j / prm.page_block_size];
        float* dst = &ws.k[static_cast<size_t>(j - t0) * kHeadDim];
        if (page < 0 || page >= prm.num_pages) {  // as the GPU's bounds-checked copy: zeros
          std::fill(dst, dst + kHeadDim, 0.0f);
          continue;
        }
        const int64_t off = page * prm.k_page_stride + (j % prm.page_block_size) * prm.k_token_stride +
                            kv * prm.k_head_stride;
        load_k_row(prm, off, dst);
      }
      for (int r = 0; r < rows; ++r) {
        const int count = std::min(t1, visible_end(prm, seqlen, r)) - t0;
        if (count <= 0) continue;
        const float* qr = &ws.q[static_cast<size_t>(r) * kHeadDim];
        float block_max = -kInf;
        for (int j = 0; j < count; ++j) {
          ws.p[j] = prm.softmax_scale * dot576(qr, &ws.k[static_cast<size_t>(j) * kHeadDim]);
          block_max = std::max(block_max, ws.p[j]);
        }
        const float m_new = std::max(ws.m[r], block_max);
        const float alpha = std::exp(ws.m[r] - m_new);  // exp(-inf) = 0 on the first block
        float sum = 0.0f;
        for (int j = 0; j < count; ++j) {
          ws.p[j] = std::exp(ws.p[j] - m_new);
          sum += ws.p[j];
        }
        ws.l[r] = ws.l[r] * alpha + sum;
        ws.m[r] = m_new;
        rescale_accumulate(&ws.acc[static_cast<size_t>(r) * kHeadDimV], alpha, ws.p.data(), ws.k.data(),
                           count);
      }
    }

    for (int r = 0; r < rows; ++r) {
      const int t = r / prm.q_per_kv, h = kv * prm.q_per_kv + r % prm.q_per_kv;
      const bool empty = ws.l[r] == 0.0f;
      const float inv = empty ? 0.0f : 1.0f / ws.l[r];
      const float* acc = &ws.acc[static_cast<size_t>(r) * kHeadDimV];
      if (n_splits == 1) {
        const int64_t o = ((static_cast<int64_t>(pc.req) * prm.s_q + t) * prm.h_q + h) * kHeadDimV;
        for (int c = 0; c < kHeadDimV; ++c) store(prm.dtype, prm.out, o + c, acc[c] * inv);
        prm.lse[(static_cast<int64_t>(pc.req) * prm.h_q + h) * prm.s_q + t] =
            empty ? kInf : ws.m[r] + std::log(ws.l[r]);
      } else {
        const int64_t slot = prm.num_splits[pc.req] + pc.split;
        const int64_t idx = (slot * prm.h_kv + kv) * rows + r;
        float* o = prm.o_accum + idx * kHeadDimV;
        for (int c = 0; c < kHeadDimV; ++c) o[c] = acc[c] * inv;
        prm.lse_accum[idx] = empty ? -kInf : ws.m[r] + std::log(ws.l[r]);
      }
    }
  }
}

void run_part(const DecodeParams& prm, int part, Workspace& ws) {
  const int32_t* row = prm.metadata + static_cast<int64_t>(part) * kMetadataWords;
  // Clamped so that metadata of another batch cannot index out of bounds.
  const int begin_req = std::max(row[0], 0), end_req = std::min(row[2], prm.batch - 1);
  const int64_t slots = static_cast<int64_t>(prm.batch) + prm.num_sm_parts;
  for (int req = begin_req; req <= end_req; ++req) {
    const int seqlen = effective_seqlen(prm, req);
    Piece pc{req, req == begin_req ? std::max(row[1], 0) : 0,
             req == end_req ? std::min(row[3], seqlen) : seqlen, req == begin_req ? row[4] : 0};
    const int n_splits = prm.num_splits[req + 1] - prm.num_splits[req];
    const int64_t slot = static_cast<int64_t>(prm.num_splits[req]) + pc.split;
    if (n_splits < 1 || (n_splits > 1 && (slot < 0 || slot >= slots))) continue;
    run_piece(prm, pc, n_splits, ws);
  }
}

void combine_row(const DecodeParams& prm, int req, int kv, int r) {
  const int first = prm.num_splits[req], n = prm.num_splits[req + 1] - first;
  // Entry of piece s in the [slots, h_kv, rows] partial arrays.
  auto entry = [&](int s) { return (static_cast<int64_t>(first + s) * prm.h_kv + kv) * prm.rows + r; };
  float m = -kInf;
  for (int s = 0; s < n; ++s) m = std::max(m, prm.lse_accum[entry(s)]);
  const int t = r / prm.q_per_kv, h = kv * prm.q_per_kv + r % prm.q_per_kv;
  const int64_t o = ((static_cast<int64_t>(req) * prm.s_q + t) * prm.h_q + h) * kHeadDimV;
  float* lse = &prm.lse[(static_cast<int64_t>(req) * prm.h_q + h) * prm.s_q + t];
  if (m == -kInf) {
    for (int c = 0; c < kHeadDimV; ++c) store(prm.dtype, prm.out, o + c, 0.0f);
    *lse = kInf;
    return;
  }
  float sum = 0.0f;
  for (int s = 0; s < n; ++s) sum += std::exp(prm.lse_accum[entry(s)] - m);
  const float total = m + std::log(sum);
  float acc[kHeadDimV] = {};
  for (int s = 0; s < n; ++s) {
    const int64_t idx = entry(s);
    const float w = std::exp(prm.lse_accum[idx] - total);
    const float* part = prm.o_accum + idx * kHeadDimV;
    for (int c = 0; c < kHeadDimV; ++c) acc[c] += w * part[c];
  }
  for (int c = 0; c < kHeadDimV; ++c) store(prm.dtype, prm.out, o + c, acc[c]);
  *lse = total;
}

template <typename Fn>
void parallel_for(int n, Fn&& fn) {
  const int workers = std::max(1, std::min<int>(n, static_cast<int>(std::thread::hardware_concurrency())));
  std::atomic<int> next{0};
  auto worker = [&] {
    Workspace ws;
    for (int i = next.fetch_add(1); i < n; i = next.fetch_add(1)) fn(i, ws);
  };
  std::vector<std::thread> pool;
  for (int w = 1; w < workers; ++w) pool.emplace_back(worker);
  worker();
  for (auto& th : pool) th.join();
}

}  // namespace

void decode_cpu(const DecodeParams& prm) {
  parallel_for(prm.num_sm_parts, [&](int part, Workspace& ws) { run_part(prm, part, ws); });
  parallel_for(prm.batch, [&](int req, Workspace&) {
    const int64_t first = prm.num_splits[req], last = prm.num_splits[req + 1];
    if (last - first <= 1 || first < 0 || last > static_cast<int64_t>(prm.batch) + prm.num_sm_parts) return;
    for (int kv = 0; kv < prm.h_kv; ++kv) {
      for (int r = 0; r < prm.rows; ++r) combine_row(prm, req, kv, r);
    }
  });
}

}  // namespace flash_mla::detail

// Host side of the Hopper decode: the TMA descriptors of the paged KV cache, the main kernel,
// then the split-KV combine, all on the caller's stream (no allocation, no synchronisation).
#include <cuda.h>
#include <cudaTypedefs.h>

#include <algorithm>

#include "core/backends.hpp"
#include "cuda/combine.hpp"
#include "cuda/cuda_check.hpp"
#include "cuda/sm90/decode_common.cuh"
#include "cuda/sm90/decode_dense/config.hpp"
#include "cuda/sm90/decode_narrow/config.hpp"
#include "cuda/sm90/launch.hpp"

#if defined(FLASH_MLA_TRACE)
namespace flash_mla::sm90::dense {
void* g_trace_buffer = nullptr;
void* g_phase_buffer = nullptr;
}
namespace flash_mla::sm90::narrow {
void* g_phase_buffer = nullptr;
}
#endif

namespace flash_mla::detail {

namespace {

PFN_cuTensorMapEncodeTiled_v12000 tensor_map_encoder() {
  static PFN_cuTensorMapEncodeTiled_v12000 fn = [] {
    void* ptr = nullptr;
    cudaDriverEntryPointQueryResult status{};
    cuda_check(cudaGetDriverEntryPointByVersion("cuTensorMapEncodeTiled", &ptr, 12000, cudaEnableDefault, &status),
               "cudaGetDriverEntryPointByVersion(cuTensorMapEncodeTiled)");
    if (status != cudaDriverEntryPointSuccess || ptr == nullptr) {
      throw Error("cuda", "the driver does not provide cuTensorMapEncodeTiled");
    }
    return reinterpret_cast<PFN_cuTensorMapEncodeTiled_v12000>(ptr);
  }();
  return fn;
}

// cuTensorMapEncodeTiled of a 4-D tensor at `base` (dims innermost first, the three outer strides in
// bytes, unit element strides), no interleave, out-of-range elements read as zeros and not written.
CUresult encode_4d(CUtensorMap* map, CUtensorMapDataType dtype, const void* base, const int64_t (&dims)[4],
                   const int64_t (&strides)[3], const uint32_t (&box)[4], CUtensorMapSwizzle swizzle,
                   CUtensorMapL2promotion promotion) {
  const cuuint64_t d[4] = {static_cast<cuuint64_t>(dims[0]), static_cast<cuuint64_t>(dims[1]),
                           static_cast<cuuint64_t>(dims[2]), static_cast<cuuint64_t>(dims[3])};
  const cuuint64_t st[3] = {static_cast<cuuint64_t>(strides[0]), static_cast<cuuint64_t>(strides[1]),
                            static_cast<cuuint64_t>(strides[2])};
  const cuuint32_t b[4] = {box[0], box[1], box[2], box[3]};
  const cuuint32_t elem_strides[4] = {1, 1, 1, 1};
  return tensor_map_encoder()(map, dtype, 4, const_cast<void*>(base), d, st, b, elem_strides,
                              CU_TENSOR_MAP_INTERLEAVE_NONE, swizzle, promotion, CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE);
}

// L2 promotion of the cache's copies. A dense box row is 128 bytes of a token row whose other bytes
// other boxes copy; promoting each row to 256 bytes cost ~7 % of a pure copy stream (H200, session 13,
// scratch ring_bench: nine 64x64 boxes per block, no compute, 132 CTAs: 4.04 TB/s at 256 B, 4.32 TB/s
// without promotion, 4.31 TB/s at 128 B). In the kernel, without promotion: b=128 8192 h16 s1 297 ->
// 289 us, 1024 h16 s1 -3 %, the rest -1.5 % to +1 % (docs/PERFORMANCE.md, session 13). The
// FP8 rows were 0.7-1.9 % slower without it, so FP8 maps keep it (their box rows are 16 to 128 bytes of
// 576- or 656-byte token rows, most not aligned to 128-byte lines; why they gain was not measured). Session 35:
// without it the narrow kernel's h_q=16 rows ran 0.999-1.030x slower, though its L2 reads per tensor fell from
// 23.0 to 20.0 sectors a token (18 needed; DRAM bytes the same).
constexpr CUtensorMapL2promotion kDensePromotion = CU_TENSOR_MAP_L2_PROMOTION_NONE;
constexpr CUtensorMapL2promotion kFP8Promotion = CU_TENSOR_MAP_L2_PROMOTION_L2_256B;

// The cache (or, from byte `offset` of each row, a part of it) as a 4-D tensor {cols, h_kv, page tokens,
// pages} of `dtype`; one copy moves a box of `box_cols` columns x page_copy_rows(page) tokens of one head
// (sm90::BlockPages says which boxes make a 64-token block). Out-of-range coordinates read zeros.
CUtensorMap make_map(const DecodeParams& p, int64_t offset, CUtensorMapDataType dtype, int64_t cols,
                     CUtensorMapSwizzle swizzle, uint32_t box_cols = sm90::kSubTileCols) {
  const int64_t es = p.kv_format == KvCacheFormat::kDense ? 2 : 1;  // bytes per cache element
  const int64_t row_bytes = p.kv_format == KvCacheFormat::kFP8WithScale ? kFP8WithScaleBytes : kHeadDim * es;
  // Strides of size-1 dimensions are never used (and validation does not check them); give the
  // encoder valid ones.
  const int64_t head_stride = p.h_kv > 1 ? p.k_head_stride * es : row_bytes;
  const int64_t token_stride = p.page_block_size > 1 ? p.k_token_stride * es : head_stride * p.h_kv;
  const int64_t page_stride = p.num_pages > 1 ? p.k_page_stride * es : token_stride * p.page_block_size;
  CUtensorMap map{};
  const CUresult r =
      encode_4d(&map, dtype, static_cast<const char*>(p.k) + offset, {cols, p.h_kv, p.page_block_size, p.num_pages},
                {head_stride, token_stride, page_stride},
                {box_cols, 1, static_cast<uint32_t>(sm90::page_copy_rows(p.page_block_size)), 1}, swizzle,
                p.kv_format == KvCacheFormat::kDense ? kDensePromotion : kFP8Promotion);
  if (r != CUDA_SUCCESS) {
    throw Error("k_cache", "expected strides the copy engine accepts (cuTensorMapEncodeTiled error " +
                std::to_string(static_cast<int>(r)) + ")");
  }
  return map;
}

// An FP8-with-scale cache's bf16 RoPE channels (one 128-byte swizzled box a row) and its four float32
// scales (16 bytes a row, unswizzled), for both kernels.
void make_rope_and_scale_maps(const DecodeParams& p, sm90::TensorMaps* maps) {
  maps->rope = make_map(p, kFP8RopeOffset, CU_TENSOR_MAP_DATA_TYPE_BFLOAT16, kHeadDimRope, CU_TENSOR_MAP_SWIZZLE_128B);
  maps->scales = make_map(p, kFP8ScaleOffset, CU_TENSOR_MAP_DATA_TYPE_FLOAT32, kFP8NumScales,
                          CU_TENSOR_MAP_SWIZZLE_NONE, kFP8NumScales);
}

// Dense caches: 16-bit values into the 128-byte-swizzled sub-tiles. FP8: the e4m3 bytes as they are
// (the NoPE channels, and per tensor the RoPE ones too), for the producer to dequantise in shared
// memory; with scale, also the scales (16 bytes a token) and the bf16 RoPE channels, straight into
// their swizzled sub-tile.
sm90::TensorMaps make_cache_maps(const DecodeParams& p) {
  sm90::TensorMaps maps{};
  if (sm90::page_copy_rows(p.page_block_size) < sm90::kMinTmaPage) return maps;  // gathered: no copies
  switch (p.kv_format) {
    case KvCacheFormat::kDense:
      maps.k =
          make_map(p, 0, p.dtype == DType::kBF16 ? CU_TENSOR_MAP_DATA_TYPE_BFLOAT16 : CU_TENSOR_MAP_DATA_TYPE_FLOAT16,
                   kHeadDim, CU_TENSOR_MAP_SWIZZLE_128B);
      break;
    case KvCacheFormat::kFP8WithScale:
      maps.k = make_map(p, 0, CU_TENSOR_MAP_DATA_TYPE_UINT8, kHeadDimV, CU_TENSOR_MAP_SWIZZLE_NONE);
      make_rope_and_scale_maps(p, &maps);
      break;
    case KvCacheFormat::kFP8PerTensor:
      maps.k = make_map(p, 0, CU_TENSOR_MAP_DATA_TYPE_UINT8, kHeadDim, CU_TENSOR_MAP_SWIZZLE_NONE);
      break;
  }
  return maps;
}

// A 16-bit tensor {cols, h_q heads, s_q tokens, b sequences} at `base` (strides in bytes) whose 64-row
// query tiles (row r = t * q_per_kv + h) are one box each, in 64-column boxes, 128-byte swizzled: q_per_kv
// heads x 64 / q_per_kv tokens when q_per_kv divides 64, 64 heads x 1 token when it is a multiple of 64;
// tokens past s_q fall outside the tensor (not read, or read as zeros). False where a tile is not one box
// or the copy engine refuses the strides: the kernel then copies row by row.
bool encode_row_tile_map(const DecodeParams& p, const void* base, int64_t cols, int64_t head_stride,
                         int64_t seq_stride, int64_t batch_stride, CUtensorMap* map) {
  constexpr int kRows = sm90::dense::kBlockM;
  if (kRows % p.q_per_kv != 0 && p.q_per_kv % kRows != 0) return false;
  const uint32_t box_heads = static_cast<uint32_t>(std::min(p.q_per_kv, kRows));
  return encode_4d(map, p.dtype == DType::kFP16 ? CU_TENSOR_MAP_DATA_TYPE_FLOAT16 : CU_TENSOR_MAP_DATA_TYPE_BFLOAT16,
                   base, {cols, p.h_q, p.s_q, p.batch}, {head_stride, seq_stride, batch_stride},
                   {sm90::kSubTileCols, box_heads, kRows / box_heads, 1}, CU_TENSOR_MAP_SWIZZLE_128B,
                   CU_TENSOR_MAP_L2_PROMOTION_NONE) == CUDA_SUCCESS;
}

// The dense kernel's final output tiles by TMA (store_final_staged): `out` (contiguous, params.hpp) as
// encode_row_tile_map's tensor; otherwise out_by_tma stays 0 and each row leaves by its own bulk copies.
// Issued row by row, a 64-row tile's 128 copies took ~2.3 us at b=128 1024 h128 s1 (H200, session 28's
// timelines; the box form ~0.1-0.3 us).
void make_out_map(const DecodeParams& p, sm90::TensorMaps* maps) {
  const int64_t head_stride = kHeadDimV * 2, seq_stride = head_stride * p.h_q;
  maps->out_by_tma =
      encode_row_tile_map(p, p.out, kHeadDimV, head_stride, seq_stride, seq_stride * p.s_q, &maps->out) ? 1 : 0;
}

// The dense kernel's query tiles by TMA (16-bit calls: every tile of 64 live rows, and a partial tile after a
// piece whose output was staged in the Q tile): q with its own strides as encode_row_tile_map's tensor;
// otherwise q_by_tma stays 0 and the consumers copy Q themselves.
void make_q_map(const DecodeParams& p, sm90::TensorMaps* maps) {
  maps->q_by_tma = 0;
  if (p.kv_format != KvCacheFormat::kDense) return;
  // Strides of size-1 dimensions are never used; give the encoder valid ones.
  const int64_t head_stride = p.h_q > 1 ? p.q_head_stride * 2 : kHeadDim * 2;
  const int64_t seq_stride = p.s_q > 1 ? p.q_seq_stride * 2 : head_stride * p.h_q;
  const int64_t batch_stride = p.batch > 1 ? p.q_batch_stride * 2 : seq_stride * p.s_q;
  maps->q_by_tma = encode_row_tile_map(p, p.q, kHeadDim, head_stride, seq_stride, batch_stride, &maps->q) ? 1 : 0;
}

// Split pieces' partials by TMA (store_partial_staged): o_accum as {512 channels, rows, h_kv, slots} (the
// workspace, params.hpp), boxes of 32 fp32 channels x 64 rows, 128-byte swizzled; rows past p.rows fall
// outside the tensor and are not written. Without a workspace, or where the copy engine refuses it,
// accum_by_tma stays 0 and the partials are stored directly.
void make_accum_map(const DecodeParams& p, sm90::TensorMaps* maps) {
  maps->accum_by_tma = 0;
  if (p.o_accum == nullptr) return;
  const int64_t slots = static_cast<int64_t>(p.batch) + p.num_sm_parts;
  const int64_t row_stride = kHeadDimV * 4, kv_stride = row_stride * p.rows, slot_stride = kv_stride * p.h_kv;
  const CUresult r = encode_4d(&maps->accum, CU_TENSOR_MAP_DATA_TYPE_FLOAT32, p.o_accum,
                               {kHeadDimV, p.rows, p.h_kv, slots}, {row_stride, kv_stride, slot_stride},
                               {32, sm90::dense::kBlockM, 1, 1}, CU_TENSOR_MAP_SWIZZLE_128B,
                               CU_TENSOR_MAP_L2_PROMOTION_NONE);
  maps->accum_by_tma = r == CUDA_SUCCESS ? 1 : 0;
}

// The narrow kernel (sm90::narrow) serves FP8 caches (both layouts) with at most 32 query rows per KV head
// whose pages are copied by TMA. Per tensor, session 10 (before the 16-row form): faster than the dense
// kernel on 16 of the 18 such rows compared with it (same-run pairs), up to 1.48x, and 1-5 % slower on b=1
// at 4k and 16k tokens; session 11 did not compare the two again. With scale (H200): 1.04-1.75x the dense
// kernel on every 16-row row compared in session 31 (b=128 16384 h16 s1 716 -> 410 us, b=4 4096 h16 s1
// 16.4 -> 15.8), 1.29-1.37x on the 32-row rows compared in session 32 (docs/PERFORMANCE.md). The CMake option
// FLASH_MLA_SM90_NARROW_FP8=OFF keeps every call on the dense kernel.
bool use_narrow(const DecodeParams& p) {
#if defined(FLASH_MLA_SM90_NARROW_FP8)
  const bool fits = (p.kv_format == KvCacheFormat::kFP8PerTensor && p.rows <= sm90::narrow::kRows) ||
                    (p.kv_format == KvCacheFormat::kFP8WithScale && p.rows <= sm90::narrow::kScaledRows);
  return fits && sm90::page_copy_rows(p.page_block_size) >= sm90::kMinTmaPage;
#else
  (void)p;
  return false;
#endif
}

// The narrow kernel's maps: `k` the 512 NoPE e4m3 bytes in 128-byte boxes, 128-byte swizzled. Per tensor,
// `rope` the 64 RoPE e4m3 bytes as one 64-byte box, unswizzled (until session 35 `k` read all 576 channels,
// its fifth box channels 512..639: 23.0 L2 sectors read a token against 21.1 with this box, ncu, H200). With
// scale, `rope` the 64 bf16 RoPE channels as one 128-byte box (the fifth box's place) and `scales` the four
// float32 scales, unswizzled.
sm90::TensorMaps narrow_maps(const DecodeParams& p) {
  sm90::TensorMaps maps{};
  maps.k = make_map(p, 0, CU_TENSOR_MAP_DATA_TYPE_UINT8, kHeadDimV, CU_TENSOR_MAP_SWIZZLE_128B,
                    sm90::narrow::kRawBoxCols);
  if (p.kv_format == KvCacheFormat::kFP8WithScale) {
    make_rope_and_scale_maps(p, &maps);
  } else {
    maps.rope = make_map(p, kHeadDimV, CU_TENSOR_MAP_DATA_TYPE_UINT8, kHeadDim - kHeadDimV, CU_TENSOR_MAP_SWIZZLE_NONE,
                         sm90::narrow::kRopeBoxCols);
  }
  return maps;
}

}  // namespace

bool sm90_kernel_built() { return true; }

// bf16/fp16 caches with a q of their dtype; FP8 with scale with a bf16 q; per-tensor FP8 with a bf16
// or e4m3 q (the formats of DecodeParams, params.hpp).
bool sm90_kernel_supports(KvCacheFormat format, DType q_dtype) {
  switch (format) {
    case KvCacheFormat::kDense: return q_dtype == DType::kBF16 || q_dtype == DType::kFP16;
    case KvCacheFormat::kFP8WithScale: return q_dtype == DType::kBF16;
    case KvCacheFormat::kFP8PerTensor: return q_dtype == DType::kBF16 || q_dtype == DType::kFP8E4M3;
  }
  return false;
}

void decode_sm90(const DecodeParams& params) {
  CudaDeviceGuard guard(params.device.index);
  DecodeParams p = params;
  p.release_pieces = combine_is_dependent(p);
  if (use_narrow(p)) {
    sm90::narrow::launch_decode(p, narrow_maps(p));
  } else {
    sm90::TensorMaps maps = make_cache_maps(p);
    make_out_map(p, &maps);
    make_q_map(p, &maps);
    make_accum_map(p, &maps);
    if (p.kv_format == KvCacheFormat::kFP8WithScale) {
      sm90::dense::launch_decode<__nv_bfloat16, KvCacheFormat::kFP8WithScale>(p, maps);
    } else if (p.kv_format == KvCacheFormat::kFP8PerTensor) {
      sm90::dense::launch_decode<__nv_bfloat16, KvCacheFormat::kFP8PerTensor>(p, maps);
    } else if (p.dtype == DType::kBF16) {
      sm90::dense::launch_decode<__nv_bfloat16, KvCacheFormat::kDense>(p, maps);
    } else {
      sm90::dense::launch_decode<__half, KvCacheFormat::kDense>(p, maps);
    }
  }
  try {
    cuda_check(cudaGetLastError(), "sm90 decode kernel launch");
    launch_combine(p);
  } catch (...) {
    // The decode kernel may be queued and will count its split pieces in metadata words 5-6, which
    // only the combine puts back to 0: without that, the next call with this metadata would merge
    // before its pieces are stored. Zeroed after the decode kernel (stream order), then rethrown.
    if (p.release_pieces) {
      cudaMemset2DAsync(const_cast<int32_t*>(p.metadata) + kPiecesStoredWord, kMetadataWords * sizeof(int32_t), 0,
                        2 * sizeof(int32_t), static_cast<size_t>(p.num_sm_parts), static_cast<cudaStream_t>(p.stream));
    }
    throw;
  }
}

}  // namespace flash_mla::detail

// flash_mla: MLA (Multi-head Latent Attention) decoding over a paged KV cache.
//
// The torch-free C++ API. Everything a caller passes is a TensorView (pointer, shape, strides in
// elements, dtype, device); the caller owns every buffer, including the split-KV workspace, so no
// call allocates device memory (the CPU backend's worker threads keep small scratch of their own).
// The behaviour contract is SPEC.md (shared with the Python package): shapes, masking, the +inf lse
// of empty rows and the memory-safety rules for block-table and page tails.
//
//   int parts = flash_mla::num_sm_parts(num_sms, s_q * h_q / h_kv, h_kv);
//   flash_mla::get_mla_metadata({cache_seqlens, s_q * h_q / h_kv, h_kv, page_size, num_sms,
//                                metadata /*[parts, 8]*/, num_splits /*[b + 1]*/});
//   flash_mla::mla_decode(args);   // args.workspace: decode_workspace_bytes(b, s_q, h_q, parts)
#pragma once

#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <stdexcept>
#include <string>

namespace flash_mla {

inline constexpr int kHeadDim = 576;   // K row: 512 latent ("NoPE") channels + 64 RoPE channels
inline constexpr int kHeadDimV = 512;  // V = the first 512 channels of the same cached row
inline constexpr int kBlockN = 64;     // tokens per unit of scheduled work (one KV tile)
inline constexpr int kBlockM = 64;     // query rows per tile (wgmma's M)
inline constexpr int kMetadataWords = 8;

// FP8 KV caches (SPEC.md, "FP8 KV cache"). "FP8 with scale" (FlashMLA's format) stores one token of
// one KV head in kFP8WithScaleBytes bytes: the 512 NoPE channels as float8_e4m3fn, then one float32
// scale per kFP8ScaleGroup NoPE channels, then the 64 RoPE channels as bfloat16, unquantised.
inline constexpr int kHeadDimRope = kHeadDim - kHeadDimV;   // 64
inline constexpr int kFP8ScaleGroup = 128;                  // NoPE channels per scale
inline constexpr int kFP8NumScales = kHeadDimV / kFP8ScaleGroup;          // 4
inline constexpr int kFP8ScaleOffset = kHeadDimV;                         // bytes 512..527: scales
inline constexpr int kFP8RopeOffset = kFP8ScaleOffset + 4 * kFP8NumScales;  // bytes 528..655: RoPE
inline constexpr int kFP8WithScaleBytes = kFP8RopeOffset + 2 * kHeadDimRope;  // 656

// kFP8E4M3: float8_e4m3fn (flash_mla/fp8.hpp). kUInt8: raw bytes, for caches in the FP8-with-scale
// layout that callers keep as uint8.
enum class DType : int { kBF16, kFP16, kFP32, kInt32, kFP8E4M3, kUInt8 };
enum class DeviceType : int { kCPU, kCUDA };

struct Device {
  DeviceType type = DeviceType::kCPU;
  int index = 0;
};

const char* to_string(DType dtype);
std::string to_string(Device device);
size_t element_size(DType dtype);

// How k_cache stores a token; k_cache's dtype and last dimension decide it.
enum class KvCacheFormat : int {
  kDense,         // [..., 576] in q's dtype (bf16, fp16; fp32 on the CPU)
  kFP8WithScale,  // [..., 656] uint8 or float8_e4m3fn: 512 e4m3 NoPE, 4 float32 scales, 64 bf16 RoPE
  kFP8PerTensor,  // [..., 576] float8_e4m3fn; value = float(fp8) * descale_k[0]
};
const char* to_string(KvCacheFormat format);
// The format of a cache of this dtype and last dimension; throws Error naming "k_cache" for a
// combination that is none of them.
KvCacheFormat kv_cache_format(DType k_cache_dtype, int64_t last_dim);
// out's dtype for a decode over a cache of this dtype: bfloat16 for FP8 caches, q's dtype otherwise.
DType decode_output_dtype(DType q_dtype, DType k_cache_dtype);

inline constexpr int kMaxDims = 4;

// A strided view of memory someone else owns. Strides are in elements.
struct TensorView {
  void* data = nullptr;
  DType dtype = DType::kFP32;
  Device device{};
  int ndim = 0;
  int64_t shape[kMaxDims] = {0, 0, 0, 0};
  int64_t stride[kMaxDims] = {0, 0, 0, 0};

  int64_t numel() const;
  bool is_contiguous() const;
};

// A row-major contiguous view.
TensorView make_view(void* data, DType dtype, Device device, std::initializer_list<int64_t> shape);
// A view with explicit strides (elements).
TensorView make_view(void* data, DType dtype, Device device, std::initializer_list<int64_t> shape,
                     std::initializer_list<int64_t> stride);

// Every failure a caller could have avoided is reported as an Error. `argument()` names the offending
// argument ("q", "k_cache", ...); what() reads "flash_mla: <argument>: expected <x>, got <y>".
class Error : public std::runtime_error {
 public:
  Error(std::string argument, const std::string& message);
  const std::string& argument() const noexcept { return argument_; }

 private:
  std::string argument_;
};

enum class Backend : int {
  kAuto,  // the tensors' device decides: CUDA tensors -> the Hopper kernel, CPU tensors -> CPU
  kCPU,
  kSM90,  // the Hopper (sm_90a) kernel; needs a build with FLASH_MLA_CUDA and an sm_90 device
};
const char* to_string(Backend backend);

// True when this build contains the CUDA backends.
bool cuda_backend_built();
// Number of CUDA devices usable by this process (0 without CUDA support or without a GPU).
int cuda_device_count();
// SM count and compute capability of a CUDA device; throws Error when unavailable.
struct CudaDeviceInfo {
  int sm_count = 0;
  int major = 0;
  int minor = 0;
  std::string name;
};
CudaDeviceInfo cuda_device_info(int device_index);
// The backend kAuto picks for tensors on `device`; throws Error when none can run there.
Backend resolve_backend(Backend requested, Device device);

// ---------------------------------------------------------------------------------------------
// Split-KV schedule
//
// Work is counted in units of kBlockN tokens. Each sequence costs ceil(L / 64) blocks plus a fixed
// kSplitFixedCost per piece it is cut into; parts are the work of one CTA per (query tile, KV head).
// When groups of ceil(b / num_sm_parts) consecutive sequences, whole, each cost at most a part's share
// plus kWholeGroupSlack, part p takes group p and no sequence is cut. Otherwise batches of up to
// kGreedyMaxBatch sequences (below 2^30 units in all) are cut greedily: parts take pieces in batch order
// up to the smallest budget with which num_sm_parts parts suffice (cuts leave at least 2 blocks in a
// part when rows > 32). Larger batches are cut into num_sm_parts nearly equal parts of the total. Row p of
// tile_scheduler_metadata describes part p:
//   [0] begin_req    first sequence of the part (== b when the part is empty)
//   [1] begin_token  first token of begin_req it covers (a multiple of 64)
//   [2] end_req      last sequence of the part (inclusive; begin_req - 1 when empty)
//   [3] end_token    one past the last token of end_req it covers
//   [4] begin_split  index, among begin_req's pieces, of the part's first piece
//   [5..6] 0 between decode calls. A CUDA decode call counts in words 5 and 6 of the row holding a split
//          sequence's first piece (its combine, launched as a programmatic dependent of the decode
//          kernel, merges the sequence as soon as its pieces are stored) and puts them back to 0 before
//          it ends. So a metadata tensor serves one decode call at a time: layers in sequence on a
//          stream share it, calls that may run at the same time (other streams) need their own.
//   [7]    the 64-token blocks of the part's pieces (0 for an empty part, at most INT32_MAX); a CUDA
//          decode kernel with two consumer schedules picks one per part by it
// num_splits[i] is the prefix sum of the pieces of the sequences before i; sequence i owns
// partial-result slots [num_splits[i], num_splits[i+1]), and num_splits[b] <= b + num_sm_parts.
inline constexpr int kSplitFixedCost = 5;  // tuned for speed, does not affect correctness
inline constexpr int kWholeGroupSlack = 8;  // tuned for speed, does not affect correctness
inline constexpr int kGreedyMaxBatch = 64;  // batches up to this size are cut greedily (see above)

// num_sms / h_kv / ceil(rows / 64), at least 1: one CTA per SM across all query tiles and KV heads.
// num_sms is at most kMaxNumSms (a launch grid dimension's limit); past it, or below 1, it throws.
inline constexpr int kMaxNumSms = 65535;
int num_sm_parts(int num_sms, int num_q_tokens_per_head_k, int num_heads_k);

struct ScheduleArgs {
  TensorView cache_seqlens;          // [b] int32 (CPU or CUDA)
  int num_q_tokens_per_head_k = 0;   // s_q * h_q / h_kv
  int num_heads_k = 1;               // h_kv
  int page_block_size = 64;         // checked (>= 1) but not used: work is counted in 64-token
                                     // blocks whatever the page size (kept for FlashMLA's signature)
  int num_sms = 0;                   // 0: the device's SM count (CUDA) or 132 (CPU tensors)
  TensorView tile_scheduler_metadata;  // [num_sm_parts, 8] int32, same device as cache_seqlens
  TensorView num_splits;               // [b + 1] int32, same device
  void* stream = nullptr;              // cudaStream_t for CUDA tensors
  Backend backend = Backend::kAuto;
};
// Writes the schedule. On CUDA tensors it runs one small kernel on `stream` (graph-capturable, no
// host synchronisation); on CPU tensors it runs on the calling thread.
void get_mla_metadata(const ScheduleArgs& args);
// Number of SMs get_mla_metadata assumes when args.num_sms == 0 for a device.
int default_num_sms(Device device);

// ---------------------------------------------------------------------------------------------
// Decode
//
// Dtypes of q and k_cache (out is decode_output_dtype(q, k_cache)):
//   k_cache                                      q                       out    descale_q   descale_k
//   [..., 576] bf16 | fp16 (| fp32 on CPU)       the same                q's    unused      unused
//   [..., 656] uint8 | float8_e4m3fn (FP8 with   bf16                    bf16   unused      unused
//              scale: the scales are inside)
//   [..., 576] float8_e4m3fn (per-tensor)        bf16                    bf16   unused      required
//                                                float8_e4m3fn           bf16   required    required
// descale_q / descale_k are float32 tensors of shape (1,) on q's device; q's value is
// float(q) * descale_q[0], K's float(fp8) * descale_k[0]. An "unused" descale may still be given (vLLM
// passes both on every call): it is checked like a required one, and not read.
struct DecodeArgs {
  TensorView q;              // [b, s_q, h_q, 576] (dtypes above); last dim contiguous
  TensorView k_cache;        // [num_blocks, page_block_size, h_kv, 576 | 656] (dtypes above); last dim
                             // contiguous. Strides are free (padded pages are fine).
  TensorView block_table;    // [b, max_blocks_per_seq] int32; last dim contiguous
  TensorView cache_seqlens;  // [b] int32
  int head_dim_v = kHeadDimV;
  TensorView tile_scheduler_metadata;  // [num_sm_parts, 8] int32, from get_mla_metadata
  TensorView num_splits;               // [b + 1] int32, from get_mla_metadata
  float softmax_scale = 1.0f / 24.0f;  // 576^-0.5, FlashMLA's default; callers pass their own
  bool causal = false;
  TensorView out;  // [b, s_q, h_q, 512] decode_output_dtype(q, k_cache), contiguous
  TensorView lse;  // [b, h_q, s_q] float32, contiguous
  TensorView descale_q;  // (1,) float32, or none (a default TensorView: no data, no dimensions)
  TensorView descale_k;  // (1,) float32, or none
  // Split-KV scratch of at least decode_workspace_bytes(...) bytes on the tensors' device, 256-byte
  // aligned. Its contents on entry do not matter.
  void* workspace = nullptr;
  size_t workspace_bytes = 0;
  void* stream = nullptr;  // cudaStream_t for CUDA tensors; ignored on CPU
  Backend backend = Backend::kAuto;
  // Read device values to check block-table entries, seqlens and metadata (synchronises; off by
  // default). Also switched on by the environment variable FLASH_MLA_VALIDATE=1.
  bool validate_values = false;
};

// Bytes of split-KV scratch a decode call needs: fp32 partial O and lse for b + num_sm_parts pieces.
size_t decode_workspace_bytes(int64_t batch, int64_t s_q, int64_t h_q, int64_t num_sm_parts);

// out, lse <- MLA decode (SPEC.md). Validates every shape, dtype, stride and size relation first and
// throws Error naming the argument; nothing is written when validation fails.
void mla_decode(const DecodeArgs& args);

// ---------------------------------------------------------------------------------------------
// Quantisers that fill FP8 caches (SPEC.md, "FP8 KV cache"). They run on the calling thread over CPU
// tensors; x: [..., 576] (up to 4 dimensions) bf16, fp16 or fp32 with the last dimension contiguous.
// Both round to nearest even and saturate as flash_mla/fp8.hpp describes.
//
// FP8 with scale: out [..., 656] uint8 or float8_e4m3fn, x's leading shape, last dim contiguous. Per
// token and group g of 128 NoPE channels, scale = 2^ceil(log2(max(amax / 448, 1e-4))) with amax the
// largest |x| among the group's finite values, fp8 = e4m3(x / scale); RoPE channels are stored as
// bf16. Non-finite inputs affect only themselves: NaN gives a NaN code, ±inf saturates to ±448.
void quantize_fp8_with_scale(const TensorView& x, const TensorView& out);
// Per-tensor: out = e4m3(float(x) / descale), float8_e4m3fn of x's shape (any last dimension),
// last dim contiguous; descale finite and > 0 (the descale_k / descale_q the decode is given).
void quantize_fp8_per_tensor(const TensorView& x, float descale, const TensorView& out);

}  // namespace flash_mla

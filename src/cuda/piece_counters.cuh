// The counters a CUDA decode call keeps in metadata words (core/params.hpp, kPiecesStoredWord and
// kCombinesWaitedWord) when the combine is the decode kernel's programmatic dependent: the decode
// kernels release each split piece into them (sm90/decode_common.cuh, release_piece), the combine waits
// on them and puts them back to 0 (combine.cu, wait_for_pieces). One place for where they live and for
// how many releases a piece makes, so that the two sides cannot drift apart.
#pragma once

#include <cuda/atomic>

#include <cstdint>

#include "core/params.hpp"

namespace flash_mla::detail {

// Word `word` of metadata row `part`, as a device-scope atomic.
__device__ __forceinline__ cuda::atomic_ref<int32_t, cuda::thread_scope_device> metadata_counter(
    const DecodeParams& p, int part, int word) {
  int32_t* row = const_cast<int32_t*>(p.metadata) + static_cast<int64_t>(part) * kMetadataWords;
  return cuda::atomic_ref<int32_t, cuda::thread_scope_device>(row[word]);
}

// Releases of one split piece: one from each decode CTA of it, query tiles x KV heads (the sm90 decode
// grids of launch_decode; the narrow kernel's one tile holds its <= 32 rows).
__device__ __forceinline__ int releases_per_piece(const DecodeParams& p) {
  return (p.rows + kBlockM - 1) / kBlockM * p.h_kv;
}

}  // namespace flash_mla::detail

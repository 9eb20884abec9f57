// The split-KV combine (architecture-neutral): merges the fp32 partial results of every split
// sequence into out and lse. Sequences with one piece were written by the main kernel and are skipped.
#pragma once

#include "core/params.hpp"

namespace flash_mla::detail {

// Whether launch_combine runs the combine as a programmatic dependent of the decode kernel before it,
// waiting per sequence for the pieces the decode kernel releases (params.release_pieces must then be
// set for that kernel). Only the warp-per-row shape with a few pieces per sequence does: launched that
// way, the split-warp shapes of small batches ran 11-15 % slower (H200, session 17).
bool combine_is_dependent(const DecodeParams& params);

// Launches on params.stream; the caller has made params.device current.
void launch_combine(const DecodeParams& params);

}  // namespace flash_mla::detail

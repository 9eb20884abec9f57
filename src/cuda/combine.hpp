// The split-KV combine (architecture-neutral): merges the fp32 partial results of every split
// sequence into out and lse. Sequences with one piece were written by the main kernel and are skipped.
#pragma once

#include "core/params.hpp"

namespace flash_mla::detail {

// Launches on params.stream; the caller has made params.device current.
void launch_combine(const DecodeParams& params);

}  // namespace flash_mla::detail

// Hopper decode kernel entry point (placeholder until the kernel lands: reports that it is absent,
// so kAuto keeps CUDA tensors off this backend and callers get a clear error).
#include "core/backends.hpp"

namespace flash_mla::detail {

bool sm90_kernel_built() { return false; }

void decode_sm90(const DecodeParams&) {
  throw Error("backend", "expected a build with the sm90 decode kernel, got one without it");
}

}  // namespace flash_mla::detail

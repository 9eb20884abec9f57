#include "cuda/sm90/decode_narrow/kernel.cuh"
template void flash_mla::sm90::narrow::launch_decode<__nv_bfloat16>(const flash_mla::detail::DecodeParams&, const CUtensorMap&);

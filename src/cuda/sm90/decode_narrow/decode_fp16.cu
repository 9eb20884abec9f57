#include "cuda/sm90/decode_narrow/kernel.cuh"
template void flash_mla::sm90::narrow::launch_decode<__half>(const flash_mla::detail::DecodeParams&, const CUtensorMap&);

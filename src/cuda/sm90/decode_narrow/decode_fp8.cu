#include "cuda/sm90/decode_narrow/kernel.cuh"

// Split-KV schedule entry points of the backends (see flash_mla.hpp for the metadata layout).
#pragma once

#include <cstdint>

namespace flash_mla::detail {

struct ScheduleParams;

// Host implementation: seqlens [b] -> metadata [num_sm_parts, 8], num_splits [b + 1], for CTAs of
// `rows` query rows per KV head (s_q * h_q / h_kv).
void schedule_host(const int32_t* seqlens, int batch, int num_sm_parts, int rows, int32_t* metadata,
                   int32_t* num_splits);

#if defined(FLASH_MLA_WITH_CUDA)
// Device implementation (cuda/schedule.cu): one CTA, same words as schedule_host.
void schedule_cuda(const ScheduleParams& params);
#endif

}  // namespace flash_mla::detail

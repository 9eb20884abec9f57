// The public entry points: backend selection, then validation (validate.cpp), then dispatch.
#include "core/backends.hpp"
#include "core/params.hpp"
#include "core/schedule.hpp"

namespace flash_mla {

using detail::DecodeParams;

bool cuda_backend_built() {
#if defined(FLASH_MLA_WITH_CUDA)
  return true;
#else
  return false;
#endif
}

int cuda_device_count() { return detail::cuda_device_count_impl(); }

CudaDeviceInfo cuda_device_info(int device_index) { return detail::cuda_device_info_impl(device_index); }

int default_num_sms(Device device) {
  // CPU tensors get an H100's SM count, so the CPU path splits work exactly as the GPU does.
  return device.type == DeviceType::kCPU ? 132 : cuda_device_info(device.index).sm_count;
}

int num_sm_parts(int num_sms, int num_q_tokens_per_head_k, int num_heads_k) {
  if (num_sms < 1) throw Error("num_sms", "expected >= 1, got " + std::to_string(num_sms));
  if (num_q_tokens_per_head_k < 1) {
    throw Error("num_q_tokens_per_head_k",
                "expected >= 1 (s_q * h_q / h_kv), got " + std::to_string(num_q_tokens_per_head_k));
  }
  if (num_heads_k < 1) throw Error("num_heads_k", "expected >= 1, got " + std::to_string(num_heads_k));
  // One CTA per SM: more than a launch grid's 65535 would only ask for metadata no kernel can launch.
  if (num_sms > kMaxNumSms) {
    throw Error("num_sms", "expected <= " + std::to_string(kMaxNumSms) + ", got " + std::to_string(num_sms));
  }
  const int m_tiles = static_cast<int>((int64_t{num_q_tokens_per_head_k} + kBlockM - 1) / kBlockM);
  return std::max(1, num_sms / num_heads_k / m_tiles);
}

size_t decode_workspace_bytes(int64_t batch, int64_t s_q, int64_t h_q, int64_t parts) {
  const int64_t entries = (batch + parts) * s_q * h_q;
  return detail::workspace_lse_bytes(entries) + static_cast<size_t>(entries) * kHeadDimV * sizeof(float);
}

Backend resolve_backend(Backend requested, Device device) {
  if (device.type == DeviceType::kCPU) {
    if (requested == Backend::kSM90) {
      throw Error("backend", "expected CUDA tensors for the sm90 backend, got tensors on cpu");
    }
    return Backend::kCPU;
  }
  if (requested == Backend::kCPU) {
    throw Error("backend", "expected CPU tensors for the cpu backend, got tensors on " + to_string(device));
  }
  if (!cuda_backend_built()) {
    throw Error("q", "expected CPU tensors (this build has no CUDA backend), got " + to_string(device));
  }
  const CudaDeviceInfo info = cuda_device_info(device.index);
  if (info.major != 9 || info.minor != 0) {
    throw Error("q", "expected tensors on a Hopper GPU (sm_90), got " + to_string(device) + " (" + info.name +
                ", sm_" + std::to_string(info.major) + std::to_string(info.minor) + ")");
  }
  if (!detail::sm90_kernel_built()) {
    throw Error("q", "expected CPU tensors (this build has no sm90 decode kernel yet), got " + to_string(device));
  }
  return Backend::kSM90;
}

void get_mla_metadata(const ScheduleArgs& args) {
  const detail::ScheduleParams p = detail::make_schedule_params(args);
  if (p.device.type == DeviceType::kCPU) {
    detail::schedule_host(p.seqlens, p.batch, p.num_sm_parts, p.rows, p.metadata, p.num_splits);
    return;
  }
#if defined(FLASH_MLA_WITH_CUDA)
  detail::schedule_cuda(p);
#else
  throw Error("cache_seqlens", "expected CPU tensors (this build has no CUDA backend), got " +
              to_string(p.device));
#endif
}

void mla_decode(const DecodeArgs& args) {
  const Backend backend = resolve_backend(args.backend, args.q.device);
  const DecodeParams params = detail::make_decode_params(args, backend);
  if (detail::value_validation_requested(args.validate_values)) detail::validate_decode_values(params);
  switch (backend) {
    case Backend::kCPU: detail::decode_cpu(params); return;
    case Backend::kSM90:
#if defined(FLASH_MLA_WITH_CUDA)
      detail::decode_sm90(params);
      return;
#endif
    case Backend::kAuto: break;
  }
  throw Error("backend", std::string("expected a built backend, got ") + to_string(backend));
}

void quantize_fp8_with_scale(const TensorView& x, const TensorView& out) {
  detail::quantize_cpu(detail::make_quantize_params(x, out, /*with_scale=*/true, 1.0f));
}

void quantize_fp8_per_tensor(const TensorView& x, float descale, const TensorView& out) {
  detail::quantize_cpu(detail::make_quantize_params(x, out, /*with_scale=*/false, descale));
}

}  // namespace flash_mla

// The smallest complete use of the C++ API on the CPU: build a paged KV cache, compute the split-KV
// schedule, decode, and check what came back (exit status 1 if anything looks wrong).
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <vector>

#include "flash_mla/flash_mla.hpp"
#include "flash_mla/half.hpp"

int main() {
  namespace fm = flash_mla;
  const int b = 2, s_q = 1, h_q = 16, h_kv = 1, page = 64;
  const std::vector<int32_t> seqlens = {100, 37};  // cached tokens per sequence
  const int max_blocks = 2, num_blocks = 4;
  const fm::Device cpu{};

  // Random bf16 q and KV cache (randn / 10); sequence i uses pages block_table[i][0..].
  std::mt19937 rng(0);
  std::normal_distribution<float> normal(0.0f, 0.1f);
  std::vector<uint16_t> q(size_t(b) * s_q * h_q * fm::kHeadDim), k(size_t(num_blocks) * page * h_kv * fm::kHeadDim);
  for (auto& x : q) x = fm::float_to_bf16(normal(rng));
  for (auto& x : k) x = fm::float_to_bf16(normal(rng));
  std::vector<int32_t> block_table = {2, 0, 3, -1};  // [b, max_blocks]; -1: unused

  // The schedule: computed once per decoding step, shared by every layer.
  const int rows = s_q * h_q / h_kv;
  const int parts = fm::num_sm_parts(fm::default_num_sms(cpu), rows, h_kv);
  std::vector<int32_t> metadata(size_t(parts) * fm::kMetadataWords), num_splits(b + 1);
  fm::ScheduleArgs sched;
  sched.cache_seqlens = fm::make_view(const_cast<int32_t*>(seqlens.data()), fm::DType::kInt32, cpu, {b});
  sched.num_q_tokens_per_head_k = rows;
  sched.num_heads_k = h_kv;
  sched.page_block_size = page;
  sched.tile_scheduler_metadata = fm::make_view(metadata.data(), fm::DType::kInt32, cpu, {parts, fm::kMetadataWords});
  sched.num_splits = fm::make_view(num_splits.data(), fm::DType::kInt32, cpu, {b + 1});
  fm::get_mla_metadata(sched);

  std::vector<uint16_t> out(size_t(b) * s_q * h_q * fm::kHeadDimV);
  std::vector<float> lse(size_t(b) * h_q * s_q);
  const size_t ws_bytes = fm::decode_workspace_bytes(b, s_q, h_q, parts);
  void* workspace = std::aligned_alloc(256, (ws_bytes + 255) / 256 * 256);

  fm::DecodeArgs args;
  args.q = fm::make_view(q.data(), fm::DType::kBF16, cpu, {b, s_q, h_q, fm::kHeadDim});
  args.k_cache = fm::make_view(k.data(), fm::DType::kBF16, cpu, {num_blocks, page, h_kv, fm::kHeadDim});
  args.block_table = fm::make_view(block_table.data(), fm::DType::kInt32, cpu, {b, max_blocks});
  args.cache_seqlens = sched.cache_seqlens;
  args.tile_scheduler_metadata = sched.tile_scheduler_metadata;
  args.num_splits = sched.num_splits;
  args.softmax_scale = 1.0f / std::sqrt(float(fm::kHeadDim));
  args.causal = true;
  args.out = fm::make_view(out.data(), fm::DType::kBF16, cpu, {b, s_q, h_q, fm::kHeadDimV});
  args.lse = fm::make_view(lse.data(), fm::DType::kFP32, cpu, {b, h_q, s_q});
  args.workspace = workspace;
  args.workspace_bytes = ws_bytes;
  try {
    fm::mla_decode(args);
  } catch (const fm::Error& e) {
    std::fprintf(stderr, "%s\n", e.what());
    return 1;
  }
  std::free(workspace);

  bool ok = true;
  for (float x : lse) ok = ok && std::isfinite(x);
  double sum_abs = 0.0;
  for (uint16_t x : out) sum_abs += std::abs(fm::bf16_to_float(x));
  ok = ok && std::isfinite(sum_abs) && sum_abs > 0.0;
  std::printf("flash_mla consumer: lse[0] = %.4f, mean |out| = %.3g, backend %s: %s\n", lse[0],
              sum_abs / double(out.size()), fm::to_string(fm::resolve_backend(fm::Backend::kAuto, cpu)),
              ok ? "ok" : "FAILED");
  return ok ? 0 : 1;
}

#include "gpu_support.hpp"

#include <algorithm>
#include <stdexcept>

#include "decode_call.hpp"

namespace flash_mla::test {

void cuda_ok(cudaError_t status, const char* what) {
  if (status != cudaSuccess) throw std::runtime_error(std::string(what) + ": " + cudaGetErrorString(status));
}

int current_device() {
  int device = -1;
  return cudaGetDevice(&device) == cudaSuccess ? device : -1;
}

ScopedDevice::ScopedDevice(int device) {
  cuda_ok(cudaGetDevice(&previous_), "cudaGetDevice");
  cuda_ok(cudaSetDevice(device), "cudaSetDevice");
}

ScopedDevice::~ScopedDevice() { cudaSetDevice(previous_); }

DeviceBuffer::DeviceBuffer(size_t bytes, int device) : bytes_(bytes), device_(device) {
  ScopedDevice on(device_);
  cuda_ok(cudaMalloc(&base_, bytes + 2 * kGuardBytes), "cudaMalloc");
  cuda_ok(cudaMemset(base_, kGuardByte, bytes + 2 * kGuardBytes), "cudaMemset");
  cuda_ok(cudaDeviceSynchronize(), "cudaMemset");
}

DeviceBuffer::~DeviceBuffer() {
  int previous = 0;
  if (cudaGetDevice(&previous) != cudaSuccess) return;
  cudaSetDevice(device_);
  cudaFree(base_);
  cudaSetDevice(previous);
}

void DeviceBuffer::upload(const void* src, size_t bytes, size_t offset) {
  if (offset + bytes > bytes_) throw std::runtime_error("DeviceBuffer::upload past the end");
  ScopedDevice on(device_);
  cuda_ok(cudaMemcpy(static_cast<char*>(data()) + offset, src, bytes, cudaMemcpyHostToDevice), "upload");
}

void DeviceBuffer::download(void* dst) const {
  ScopedDevice on(device_);
  cuda_ok(cudaMemcpy(dst, static_cast<const char*>(base_) + kGuardBytes, bytes_, cudaMemcpyDeviceToHost),
          "download");
}

void DeviceBuffer::fill(uint8_t byte) {
  ScopedDevice on(device_);
  cuda_ok(cudaMemset(data(), byte, bytes_), "cudaMemset");
  // cudaMemset may still run when it returns, on the legacy stream that the tests' non-blocking
  // streams do not wait for.
  cuda_ok(cudaDeviceSynchronize(), "cudaMemset");
}

bool DeviceBuffer::guards_intact() const {
  std::vector<uint8_t> all(bytes_ + 2 * kGuardBytes);
  {
    ScopedDevice on(device_);
    cuda_ok(cudaMemcpy(all.data(), base_, all.size(), cudaMemcpyDeviceToHost), "download guards");
  }
  auto guard_ok = [](const uint8_t* p) {
    return std::all_of(p, p + kGuardBytes, [](uint8_t v) { return v == kGuardByte; });
  };
  return guard_ok(all.data()) && guard_ok(all.data() + kGuardBytes + bytes_);
}

Stream::Stream(int device) : device_(device) {
  ScopedDevice on(device_);
  cuda_ok(cudaStreamCreateWithFlags(&s_, cudaStreamNonBlocking), "cudaStreamCreate");
}

Stream::~Stream() {
  int previous = 0;
  if (cudaGetDevice(&previous) != cudaSuccess) return;
  cudaSetDevice(device_);
  cudaStreamDestroy(s_);
  cudaSetDevice(previous);
}

std::string sm90_unavailable(int device) {
  const std::string name = "cuda:" + std::to_string(device);
  const int count = cuda_device_count();
  if (count <= device) return "no " + name + " (" + std::to_string(count) + " CUDA devices)";
  const CudaDeviceInfo info = cuda_device_info(device);
  if (info.major != 9) return name + " is " + info.name + ", not sm_90";
  try {
    resolve_backend(Backend::kAuto, cuda_device(device));
  } catch (const Error& e) {
    return std::string("no sm90 decode: ") + e.what();
  }
  return "";
}

std::vector<int32_t> matrix_seqlens(int batch, int h_kv, uint64_t seed) {
  const int max_len = std::clamp(16000 / (batch * h_kv), 8, 4096);
  const std::vector<int32_t> special = batch >= 5 ? std::vector<int32_t>{0, 1, 63, 64, 65}
                                       : batch > 1 ? std::vector<int32_t>{0, 65} : std::vector<int32_t>{};
  return ragged_seqlens(special, batch, max_len, seed);
}

Schedule device_schedule(const std::vector<int32_t>& seqlens, int rows, int h_kv, int num_sms, cudaStream_t stream,
                         int device) {
  const int64_t b = static_cast<int64_t>(seqlens.size());
  const Device dev = cuda_device(device);
  Schedule s;
  s.parts = num_sm_parts(num_sms > 0 ? num_sms : cuda_device_info(device).sm_count, rows, h_kv);
  DeviceBuffer d_lens(b * 4, device), d_meta(static_cast<size_t>(s.parts) * kMetadataWords * 4, device),
      d_splits((b + 1) * 4, device);
  d_lens.upload(seqlens.data());
  d_meta.fill(0xab);
  d_splits.fill(0xcd);
  ScheduleArgs a;
  a.cache_seqlens = make_view(d_lens.data(), DType::kInt32, dev, {b});
  a.num_q_tokens_per_head_k = rows;
  a.num_heads_k = h_kv;
  a.num_sms = num_sms;
  a.tile_scheduler_metadata = make_view(d_meta.data(), DType::kInt32, dev, {s.parts, kMetadataWords});
  a.num_splits = make_view(d_splits.data(), DType::kInt32, dev, {b + 1});
  a.stream = stream;
  get_mla_metadata(a);
  {
    ScopedDevice on(device);
    cuda_ok(cudaStreamSynchronize(stream), "schedule kernel");
  }
  s.metadata.resize(static_cast<size_t>(s.parts) * kMetadataWords);
  s.num_splits.resize(b + 1);
  d_meta.download(s.metadata.data());
  d_splits.download(s.num_splits.data());
  if (!d_meta.guards_intact() || !d_splits.guards_intact()) throw std::runtime_error("schedule wrote out of bounds");
  return s;
}

GpuDecode::GpuDecode(testing::Workload& workload, int num_sms, cudaStream_t stream, int device_index)
    : w(workload),
      device(device_index),
      parts(testing::decode_parts(w, num_sms > 0 ? num_sms : cuda_device_info(device_index).sm_count)),
      q(w.q.size(), device),
      k(w.k_cache.size(), device),
      table(w.block_table.size() * 4, device),
      lens(w.seqlens.size() * 4, device),
      meta(static_cast<size_t>(parts) * kMetadataWords * 4, device),
      splits((w.seqlens.size() + 1) * 4, device),
      out(static_cast<size_t>(w.out_elems()) * w.elem(), device),
      lse(static_cast<size_t>(w.lse_elems()) * 4, device),
      workspace(testing::decode_workspace(w, parts), device),
      descales(2 * sizeof(float), device) {
  const Device dev = cuda_device(device);
  const float descale_values[2] = {w.descale_q, w.descale_k};
  descales.upload(descale_values);
  q.upload(w.q.data());
  k.upload(w.k_cache.data());
  table.upload(w.block_table.data());
  lens.upload(w.seqlens.data());
  out.fill(0xff);
  lse.fill(0xff);
  workspace.fill(0xff);
  testing::DecodeBuffers b;
  b.q = q.data();
  b.k_cache = k.data();
  b.block_table = table.data();
  b.seqlens = lens.data();
  b.metadata = meta.data();
  b.num_splits = splits.data();
  b.out = out.data();
  b.lse = lse.data();
  b.workspace = workspace.data();
  b.descale_q = descales.data();
  b.descale_k = static_cast<float*>(descales.data()) + 1;
  schedule = testing::schedule_args(w, dev, b, parts, stream, num_sms);
  get_mla_metadata(schedule);
  args = testing::decode_args(w, dev, b, parts, Backend::kAuto, stream);
}

void GpuDecode::run() {
  mla_decode(args);
  ScopedDevice on(device);
  cuda_ok(cudaStreamSynchronize(static_cast<cudaStream_t>(args.stream)), "decode");
}

void GpuDecode::fetch() {
  out_host.resize(out.size());
  lse_host.resize(lse.size() / 4);
  out.download(out_host.data());
  lse.download(lse_host.data());
}

testing::CheckResult GpuDecode::check(int64_t max_rows, uint64_t seed) {
  fetch();
  return testing::check_against_reference(w, out_host.data(), lse_host.data(), max_rows, seed);
}

void expect_decode_matches_reference(testing::Workload& w, int num_sms, cudaStream_t stream, int64_t max_rows,
                                     uint64_t seed) {
  GpuDecode d(w, num_sms, stream);
  d.run();
  const auto r = d.check(max_rows, seed);
  EXPECT_TRUE(r.ok) << r.first_failure << " (max abs err " << r.max_abs_err << ", cos diff " << r.cos_diff << ")";
  EXPECT_TRUE(d.guards_intact());
}

void expect_out_of_pool_page_reads_as_zeros(testing::Workload& w, cudaStream_t stream) {
  const int page = w.config.page_block_size;
  ASSERT_GT(w.seqlens[0], page) << "sequence 0 needs a second page";
  std::vector<bool> used(static_cast<size_t>(w.num_pages), false);
  for (int i = 0; i < w.config.batch; ++i) {
    for (int j = 0; j < (w.seqlens[i] + page - 1) / page; ++j) used[w.block_table[i * w.max_blocks_per_seq + j]] = true;
  }
  const auto spare = std::find(used.begin(), used.end(), false);
  ASSERT_NE(spare, used.end()) << "no spare page";
  const int64_t page_bytes = page * w.config.h_kv * w.k_row_bytes();
  const int64_t zero_page = spare - used.begin();
  std::fill_n(w.k_cache.begin() + zero_page * page_bytes, page_bytes, uint8_t{0});
  const int entry = 1;  // sequence 0, tokens page .. 2 * page - 1
  w.block_table[entry] = static_cast<int32_t>(zero_page);  // what the reference reads
  GpuDecode d(w, 0, stream);
  std::vector<int32_t> table = w.block_table;
  table[entry] = static_cast<int32_t>(w.num_pages);  // what the kernel reads: outside the pool
  d.table.upload(table.data());
  d.run();
  const auto r = d.check(0);
  EXPECT_TRUE(r.ok) << r.first_failure << " (max abs err " << r.max_abs_err << ")";
}

}  // namespace flash_mla::test

// Helpers of the GPU test executable (flash_mla_gpu_tests, ctest label gpu): device memory with guard
// bands, streams, the skip conditions, the device schedule, and a decode call assembled from a
// testing::Workload on any CUDA device. Every helper that touches a device makes it current for the
// call only, so tests can keep another device current on purpose.
#pragma once

#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "test_support.hpp"

namespace flash_mla::test {

inline constexpr Device cuda_device(int index) { return Device{DeviceType::kCUDA, index}; }

// Throws std::runtime_error naming `what` unless status is cudaSuccess.
void cuda_ok(cudaError_t status, const char* what);

// The current device, or -1 when it cannot be read.
int current_device();

// Makes `device` current for the scope, then restores the previous one.
class ScopedDevice {
 public:
  explicit ScopedDevice(int device);
  ~ScopedDevice();
  ScopedDevice(const ScopedDevice&) = delete;
  ScopedDevice& operator=(const ScopedDevice&) = delete;

 private:
  int previous_ = 0;
};

// Device memory with guard bands on both sides (filled with kGuardByte); data() is 256-byte aligned.
class DeviceBuffer {
 public:
  static constexpr size_t kGuardBytes = 512;
  static constexpr uint8_t kGuardByte = 0x6b;

  explicit DeviceBuffer(size_t bytes, int device = 0);
  ~DeviceBuffer();
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;

  void* data() { return static_cast<char*>(base_) + kGuardBytes; }
  size_t size() const { return bytes_; }
  int device() const { return device_; }
  void upload(const void* src) { upload(src, bytes_, 0); }
  void upload(const void* src, size_t bytes, size_t offset);  // [offset, offset + bytes) of the payload
  void download(void* dst) const;
  void fill(uint8_t byte);
  bool guards_intact() const;

 private:
  void* base_ = nullptr;
  size_t bytes_ = 0;
  int device_ = 0;
};

// A non-blocking stream on `device`.
class Stream {
 public:
  explicit Stream(int device = 0);
  ~Stream();
  Stream(const Stream&) = delete;
  Stream& operator=(const Stream&) = delete;
  operator cudaStream_t() const { return s_; }

 private:
  cudaStream_t s_ = nullptr;
  int device_ = 0;
};

// Empty when the sm90 decode runs on cuda:<device>, else why not.
std::string sm90_unavailable(int device = 0);

#define REQUIRE_GPU() \
  if (cuda_device_count() == 0) GTEST_SKIP() << "no CUDA device"

#define REQUIRE_SM90() \
  if (const std::string why = sm90_unavailable(0); !why.empty()) GTEST_SKIP() << why

// Lengths for the GPU decode matrices: about 16k cached rows in all (tokens x h_kv), so a single
// sequence gets a long random length; 0, 1, 63, 64, 65 among them when the batch has room (0 and 65
// for small batches), the rest ragged.
std::vector<int32_t> matrix_seqlens(int batch, int h_kv, uint64_t seed);

// get_mla_metadata on device copies of `seqlens` on cuda:<device> (outputs prefilled with garbage,
// inside guard bands); returns the words. num_sms 0: the device's SM count.
Schedule device_schedule(const std::vector<int32_t>& seqlens, int rows, int h_kv, int num_sms, cudaStream_t stream,
                         int device = 0);

// A decode call on cuda:<device> copies of a workload's inputs (descales included); metadata from the
// device schedule (num_sms 0: get_mla_metadata's default, the device's SM count). out and lse start
// as NaN, the workspace as garbage.
class GpuDecode {
 public:
  GpuDecode(testing::Workload& workload, int num_sms, cudaStream_t stream, int device = 0);

  // mla_decode, then waits for the stream (on the decode's device).
  void run();
  // Copies out and lse back into out_host and lse_host.
  void fetch();
  // Against the float64 reference: every row (max_rows 0) or max_rows random rows.
  testing::CheckResult check(int64_t max_rows, uint64_t seed = 1);
  bool guards_intact() const { return out.guards_intact() && lse.guards_intact() && workspace.guards_intact(); }

  testing::Workload& w;
  int device;
  int parts;
  DeviceBuffer q, k, table, lens, meta, splits, out, lse, workspace;
  DeviceBuffer descales;  // [descale_q, descale_k] float32 (used by FP8 workloads)
  ScheduleArgs schedule;
  DecodeArgs args;
  std::vector<uint8_t> out_host;
  std::vector<float> lse_host;
};

// One decode of `w` on `num_sms` SMs, checked against the float64 reference on `max_rows` random rows
// (0: all), with the guard bands around out, lse and the workspace intact (gtest expectations).
void expect_decode_matches_reference(testing::Workload& w, int num_sms, cudaStream_t stream, int64_t max_rows,
                                     uint64_t seed);

// An in-sequence block-table entry outside [0, num_pages) (invalid input, accepted while value checks
// are off) reads as zeros on every load path, as on the CPU backend: the kernel gets sequence 0's
// second entry pointing past the pool, the float64 reference a spare page of zeros in its place.
void expect_out_of_pool_page_reads_as_zeros(testing::Workload& w, cudaStream_t stream);



}  // namespace flash_mla::test

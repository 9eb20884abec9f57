// More than one GPU (ctest label gpu; skips unless cuda:0 and cuda:1 both run the sm90 decode):
//   - tensors on one device while the other is current run on their own device (null stream and a
//     stream of that device), match the float64 reference, and leave the current device as it was;
//   - get_mla_metadata with num_sms = 0 sizes and fills the schedule with the tensors' device's SMs;
//   - metadata or num_splits on another device than q is an Error naming the argument, and so are
//     schedule outputs on another device than cache_seqlens; a valid call works afterwards.
#include <gtest/gtest.h>

#include <iostream>
#include <string>
#include <utility>
#include <vector>

#include "gpu_support.hpp"

namespace flash_mla::test {
namespace {

std::string two_sm90_unavailable() {
  if (cuda_device_count() < 2) return "needs 2 CUDA devices, found " + std::to_string(cuda_device_count());
  for (int device : {0, 1}) {
    if (std::string why = sm90_unavailable(device); !why.empty()) return why;
  }
  return "";
}

#define REQUIRE_TWO_SM90() \
  if (const std::string why = two_sm90_unavailable(); !why.empty()) GTEST_SKIP() << why

// Restores cuda:0 as current when a test ends, whatever it did.
class MultiGpu : public ::testing::Test {
 protected:
  void TearDown() override { cudaSetDevice(0); }
};

TEST_F(MultiGpu, TensorsRunOnTheirOwnDeviceWhateverIsCurrent) {
  REQUIRE_TWO_SM90();
  uint64_t seed = 81;
  for (const auto& [current, target] : {std::pair{0, 1}, std::pair{1, 0}}) {
    for (bool own_stream : {false, true}) {
      // 16 query rows per KV head (a partly filled 64-row tile) and 128 (two tiles), both split.
      for (int h_q : {16, 128}) {
        SCOPED_TRACE(::testing::Message() << "tensors on cuda:" << target << ", cuda:" << current << " current, "
                                          << (own_stream ? "a stream of cuda:" + std::to_string(target)
                                                         : std::string("the null stream"))
                                          << ", h_q=" << h_q);
        Stream stream(target);
        cuda_ok(cudaSetDevice(current), "cudaSetDevice");
        testing::Workload w =
            random_workload(7, 2, h_q, 1, ragged_seqlens({0, 1, 65, 5000}, 7, 3000, seed), DType::kBF16, true, seed);
        ++seed;
        GpuDecode d(w, 0, own_stream ? static_cast<cudaStream_t>(stream) : nullptr, target);
        EXPECT_EQ(current_device(), current) << "after get_mla_metadata";
        d.run();
        EXPECT_EQ(current_device(), current) << "after mla_decode";
        const auto r = d.check(512, seed);
        EXPECT_TRUE(r.ok) << r.first_failure;
        EXPECT_TRUE(d.guards_intact());
        {
          ScopedDevice on(target);
          EXPECT_EQ(cudaDeviceSynchronize(), cudaSuccess);
        }
        EXPECT_EQ(cudaGetLastError(), cudaSuccess);
      }
    }
  }
}

TEST_F(MultiGpu, DefaultSmCountIsTheTensorsDevice) {
  REQUIRE_TWO_SM90();
  const std::vector<int32_t> lens = ragged_seqlens({0, 1, 64, 65}, 77, 5000, 3);
  const int rows = 128, h_kv = 1;
  for (const auto& [current, target] : {std::pair{0, 1}, std::pair{1, 0}}) {
    SCOPED_TRACE(::testing::Message() << "cache_seqlens on cuda:" << target << ", cuda:" << current << " current");
    cuda_ok(cudaSetDevice(current), "cudaSetDevice");
    const int sms = cuda_device_info(target).sm_count;
    EXPECT_EQ(default_num_sms(cuda_device(target)), sms);
    // device_schedule sizes the metadata with num_sm_parts(target's SM count): get_mla_metadata rejects
    // any other shape, and the words must be the host schedule's for that count.
    const Schedule got = device_schedule(lens, rows, h_kv, 0, nullptr, target);
    EXPECT_EQ(current_device(), current);
    EXPECT_EQ(got.parts, num_sm_parts(sms, rows, h_kv));
    const Schedule want = host_schedule(lens, rows, h_kv, sms);
    EXPECT_EQ(got.metadata, want.metadata);
    EXPECT_EQ(got.num_splits, want.num_splits);
  }
  const int sms0 = cuda_device_info(0).sm_count, sms1 = cuda_device_info(1).sm_count;
  if (num_sm_parts(sms0, rows, h_kv) != num_sm_parts(sms1, rows, h_kv)) {
    // Metadata shaped for cuda:0's SM count, schedule computed on cuda:1: rejected.
    cuda_ok(cudaSetDevice(0), "cudaSetDevice");
    const int parts0 = num_sm_parts(sms0, rows, h_kv);
    const int64_t b = static_cast<int64_t>(lens.size());
    DeviceBuffer d_lens(b * 4, 1), d_meta(static_cast<size_t>(parts0) * kMetadataWords * 4, 1),
        d_splits((b + 1) * 4, 1);
    ScheduleArgs a;
    a.cache_seqlens = make_view(d_lens.data(), DType::kInt32, cuda_device(1), {b});
    a.num_q_tokens_per_head_k = rows;
    a.tile_scheduler_metadata = make_view(d_meta.data(), DType::kInt32, cuda_device(1), {parts0, kMetadataWords});
    a.num_splits = make_view(d_splits.data(), DType::kInt32, cuda_device(1), {b + 1});
    expect_error([&] { get_mla_metadata(a); }, "tile_scheduler_metadata", {"[" + std::to_string(parts0) + ", 8]"});
  } else {
    std::cout << "[ note     ] cuda:0 and cuda:1 have the same SM count (" << sms0
              << "): the schedule's shape cannot tell them apart" << std::endl;
  }
}

TEST_F(MultiGpu, MetadataFromAnotherDeviceIsRejected) {
  REQUIRE_TWO_SM90();
  cuda_ok(cudaSetDevice(0), "cudaSetDevice");
  testing::Workload w = random_workload(5, 1, 128, 1, ragged_seqlens({0, 65}, 5, 2000, 91), DType::kBF16, false, 91);
  GpuDecode on0(w, 0, nullptr, 0), on1(w, 0, nullptr, 1);  // the same inputs on each device

  DecodeArgs bad = on1.args;
  bad.tile_scheduler_metadata = on0.args.tile_scheduler_metadata;
  bad.num_splits = on0.args.num_splits;
  expect_error([&] { mla_decode(bad); }, "tile_scheduler_metadata", {"a tensor on cuda:1", "got cuda:0"});
  bad = on1.args;
  bad.num_splits = on0.args.num_splits;
  expect_error([&] { mla_decode(bad); }, "num_splits", {"a tensor on cuda:1", "got cuda:0"});
  bad = on0.args;  // the other way round, with cuda:1 current
  bad.tile_scheduler_metadata = on1.args.tile_scheduler_metadata;
  cuda_ok(cudaSetDevice(1), "cudaSetDevice");
  expect_error([&] { mla_decode(bad); }, "tile_scheduler_metadata", {"a tensor on cuda:0", "got cuda:1"});
  cuda_ok(cudaSetDevice(0), "cudaSetDevice");

  // Schedule outputs on another device than cache_seqlens.
  ScheduleArgs s = on1.schedule;
  s.tile_scheduler_metadata = on0.schedule.tile_scheduler_metadata;
  expect_error([&] { get_mla_metadata(s); }, "tile_scheduler_metadata", {"a tensor on cuda:1", "got cuda:0"});
  s = on1.schedule;
  s.num_splits = on0.schedule.num_splits;
  expect_error([&] { get_mla_metadata(s); }, "num_splits", {"a tensor on cuda:1", "got cuda:0"});

  // Nothing was written and the process is healthy: both valid calls still work.
  EXPECT_EQ(current_device(), 0);
  for (GpuDecode* d : {&on0, &on1}) {
    d->run();
    const auto r = d->check(0);
    EXPECT_TRUE(r.ok) << "cuda:" << d->device << ": " << r.first_failure;
    EXPECT_TRUE(d->guards_intact());
  }
}

}  // namespace
}  // namespace flash_mla::test

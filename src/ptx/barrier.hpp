// Named barriers (PTX ISA 9.7.13.1 barrier) and warpgroup register reallocation
// (9.7.19.5 setmaxnreg).
#pragma once

#include <cstdint>

namespace flash_mla::ptx {

// The named barriers are the non-.aligned forms. bar.sync and bar.arrive mean barrier.sync.aligned and
// barrier.arrive.aligned, which promise that every thread of the barrier executes the same instruction;
// the kernels' roles meet at one barrier from different code sites (consumer 0 publishes P, consumer 1
// waits for it), which that promise does not cover. compute-sanitizer synccheck holds it to the promise:
// two converged warps at one bar.sync from two sites are "Divergent thread(s) in block" and the kernel is
// stopped, while barrier.sync there is clean (docs/experiments/s27-sync-probe.cu, H200). Where the
// compiler cannot prove the warp converged, the non-.aligned form adds a uniform move and a BRA.DIV
// before the same BAR.SYNC.

// barrier.sync id, count: wait until `count` threads (a multiple of 32) have arrived at barrier `id`.
__device__ __forceinline__ void named_barrier_sync(uint32_t id, uint32_t count) {
  asm volatile("barrier.sync %0, %1;\n" ::"r"(id), "r"(count) : "memory");
}

// barrier.arrive id, count: counts this thread's arrival at barrier `id` without waiting; the threads
// that wait there with barrier.sync observe the memory accesses made before the arrival (9.7.13.1).
__device__ __forceinline__ void named_barrier_arrive(uint32_t id, uint32_t count) {
  asm volatile("barrier.arrive %0, %1;\n" ::"r"(id), "r"(count) : "memory");
}

// barrier.red.and.pred id, count, pred: barrier.sync's wait and memory ordering, returning whether `pred`
// held in every participating thread (one instruction in place of a vote, a shared-memory exchange and a
// barrier). An id may serve barrier.red and barrier.sync in turn, never both within one phase: every
// participating thread must take the same kind at each use.
__device__ __forceinline__ bool named_barrier_all(uint32_t id, uint32_t count, bool pred) {
  uint32_t all;
  asm volatile(
      "{\n"
      ".reg .pred p, q;\n"
      "setp.ne.u32 q, %1, 0;\n"
      "barrier.red.and.pred p, %2, %3, q;\n"
      "selp.u32 %0, 1, 0, p;\n"
      "}\n"
      : "=r"(all)
      : "r"(static_cast<uint32_t>(pred)), "r"(id), "r"(count)
      : "memory");
  return all != 0;
}

// bar.sync / bar.arrive, the .aligned forms: not for the kernels (above). Only
// docs/experiments/s27-sync-probe.cu uses them, to show synccheck's verdict on either form.
__device__ __forceinline__ void named_barrier_sync_aligned(uint32_t id, uint32_t count) {
  asm volatile("bar.sync %0, %1;\n" ::"r"(id), "r"(count) : "memory");
}
__device__ __forceinline__ void named_barrier_arrive_aligned(uint32_t id, uint32_t count) {
  asm volatile("bar.arrive %0, %1;\n" ::"r"(id), "r"(count) : "memory");
}

// setmaxnreg.inc / .dec.sync.aligned.u32: a warpgroup's register budget per thread.
template <uint32_t kRegs>
__device__ __forceinline__ void setmaxnreg_inc() {
  asm volatile("setmaxnreg.inc.sync.aligned.u32 %0;\n" ::"n"(kRegs));
}
template <uint32_t kRegs>
__device__ __forceinline__ void setmaxnreg_dec() {
  asm volatile("setmaxnreg.dec.sync.aligned.u32 %0;\n" ::"n"(kRegs));
}

}  // namespace flash_mla::ptx

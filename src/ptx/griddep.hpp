// Programmatic dependent launch (PTX ISA 9.7.13.8 griddepcontrol): a kernel launched with
// programmatic stream serialization may start before the previous kernel on its stream has finished;
// it must wait before reading what that kernel wrote.
#pragma once

namespace flash_mla::ptx {

// griddepcontrol.wait: blocks until every prerequisite grid has completed and its memory is visible.
__device__ __forceinline__ void grid_dependency_wait() { asm volatile("griddepcontrol.wait;\n" ::: "memory"); }

// griddepcontrol.launch_dependents: this CTA no longer holds back the dependent grid's launch.
__device__ __forceinline__ void launch_dependents() { asm volatile("griddepcontrol.launch_dependents;\n" ::: "memory"); }

}  // namespace flash_mla::ptx

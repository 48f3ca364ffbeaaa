// cp.async copies of the estimation kernels that bypass L1 (.cg): the source
// was written by an earlier kernel (no stale L1 line may answer), or is read
// once.
#pragma once

#include <cuda_runtime.h>

namespace prism::cuda {

// 16 bytes global -> shared through L2 only; both addresses 16-byte aligned.
// dst as a shared-window address: a loop short of registers converts it once
// per thread rather than per copy (the compiler otherwise redoes the
// conversion and the address arithmetic for every copy).
__device__ __forceinline__ void copy16_cg(unsigned dst, const void* src) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16;" ::"r"(dst), "l"(src) : "memory");
}
__device__ __forceinline__ void copy16_cg(void* dst, const void* src) {
  copy16_cg((unsigned)__cvta_generic_to_shared(dst), src);
}

// Waits for every cp.async this thread issued.
__device__ __forceinline__ void copy_wait_all() { asm volatile("cp.async.wait_all;" ::: "memory"); }

}  // namespace prism::cuda

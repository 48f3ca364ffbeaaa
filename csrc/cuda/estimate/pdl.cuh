// Programmatic dependent launch (sm_90+): the next kernel's CTAs may start
// while this grid drains and run their setup; dependent_wait() blocks until
// the previous grid has completed and its writes are visible. Both are no-ops
// on older GPUs, where the launches stay plainly serialised.
#pragma once

namespace prism::cuda {

__device__ __forceinline__ void allow_dependents() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
#endif
}
__device__ __forceinline__ void dependent_wait() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.wait;" ::: "memory");
#endif
}

}  // namespace prism::cuda

// Block-wide exclusive prefix sum of one value per thread, for the one-CTA
// scans of the attention work order and of the selection's row pointers.
#pragma once
#include <cuda_runtime.h>

namespace prism::cuda {

// The sum of `mine` over the threads before this one in the block: an
// inclusive scan by shuffles within each warp, the warp totals scanned by warp
// 0 through warp_sums (shared memory, 32 entries), then this warp's exclusive
// base plus the thread's exclusive prefix within the warp. Every thread of the
// block must call it (it synchronises the block twice); T: int or int64_t.
template <typename T>
__device__ __forceinline__ T block_exclusive_scan(T mine, T* warp_sums) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  T incl = mine;
#pragma unroll
  for (int o = 1; o < 32; o <<= 1) {
    const T y = __shfl_up_sync(0xffffffffu, incl, o);
    if (lane >= o) incl += y;
  }
  if (lane == 31) warp_sums[warp] = incl;
  __syncthreads();
  if (warp == 0) {
    const T w = warp_sums[lane];
    T wi = w;
#pragma unroll
    for (int o = 1; o < 32; o <<= 1) {
      const T y = __shfl_up_sync(0xffffffffu, wi, o);
      if (lane >= o) wi += y;
    }
    warp_sums[lane] = wi - w;  // exclusive
  }
  __syncthreads();
  return warp_sums[warp] + incl - mine;
}

}  // namespace prism::cuda

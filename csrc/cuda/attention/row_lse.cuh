// Log-sum-exp of one attention row from the online-softmax state both kernels
// keep: the running maximum `mx` of the raw scores and the sum `l` of
// exp2((s - mx) * scale_log2) = exp((s - mx) * scale). Natural log, as
// FlashAttention returns it: lse = mx * scale + ln(l); -inf for a row that met
// no key, so merging it with other key sets gives it weight 0.
#pragma once
#include <math_constants.h>

namespace prism::cuda::attn {

__device__ __forceinline__ float row_lse(float mx, float l, float scale_log2) {
  return l > 0.f ? (mx * scale_log2 + log2f(l)) * 0.69314718055994531f : -CUDART_INF_F;
}

}  // namespace prism::cuda::attn

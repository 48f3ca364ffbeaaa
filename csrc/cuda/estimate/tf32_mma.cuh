// TF32 tensor-core helpers for the block scores: mma.sync m16n8k8 (sm_80+) and
// the hi/lo split that lets three tf32 products (lo*hi + hi*lo + hi*hi)
// reproduce an fp32 dot product to about fp32 accuracy.
#pragma once

#include <cstdint>

namespace prism::cuda::mma {

__device__ __forceinline__ float to_tf32(float x) {
  uint32_t r;
  asm("cvt.rna.tf32.f32 %0, %1;" : "=r"(r) : "f"(x));
  return __uint_as_float(r);
}

__device__ __forceinline__ void split_tf32(float x, float& hi, float& lo) {
  hi = to_tf32(x);
  lo = to_tf32(x - hi);
}

// acc[16x8] += A[16x8] * B[8x8]; fragments in the PTX m16n8k8 .tf32 layout:
// a = {A[g][t], A[g+8][t], A[g][t+4], A[g+8][t+4]}, {b0, b1} = {B[t][g], B[t+4][g]},
// acc = {C[g][2t], C[g][2t+1], C[g+8][2t], C[g+8][2t+1]} (g = lane / 4, t = lane % 4).
__device__ __forceinline__ void mma_tf32(float (&acc)[4], const float4& a, float b0, float b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
      "{%0,%1,%2,%3};"
      : "+f"(acc[0]), "+f"(acc[1]), "+f"(acc[2]), "+f"(acc[3])
      : "r"(__float_as_uint(a.x)), "r"(__float_as_uint(a.y)), "r"(__float_as_uint(a.z)),
        "r"(__float_as_uint(a.w)), "r"(__float_as_uint(b0)), "r"(__float_as_uint(b1)));
}

}  // namespace prism::cuda::mma

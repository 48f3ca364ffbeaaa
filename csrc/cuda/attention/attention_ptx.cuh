// Small device helpers of the sm_80+ attention kernel: element types, inline-PTX
// wrappers for mma.sync / ldmatrix / cp.async, fast exp2. Kept inside the
// attention folder so the kernels depend on nothing but the CUDA toolkit.
#pragma once
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cstdint>

namespace prism::cuda::attn {

// ---- element types --------------------------------------------------------
template <typename T>
struct ElemTraits;

// One specialisation per element type T: its packed pair T2, the conversion
// of two fp32 values into it and its PTX type name TY.
//   pack: two fp32 values -> one register holding (lo, hi), lo in the low half;
//   mma:  d += a * b, m16n8k16, row.col, fp32 accumulate.
#define PRISM_ELEM_TRAITS(T, T2, CVT, TY)                                                          \
  template <>                                                                                      \
  struct ElemTraits<T> {                                                                           \
    static __device__ __forceinline__ uint32_t pack(float lo, float hi) {                          \
      T2 v = CVT(lo, hi);                                                                          \
      return *reinterpret_cast<uint32_t*>(&v);                                                     \
    }                                                                                              \
    static __device__ __forceinline__ void mma(float (&d)[4], const uint32_t (&a)[4], uint32_t b0, \
                                               uint32_t b1) {                                      \
      asm volatile("mma.sync.aligned.m16n8k16.row.col.f32." TY "." TY                              \
                   ".f32 "                                                                         \
                   "{%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"                       \
                   : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])                                \
                   : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));                \
    }                                                                                              \
  };

PRISM_ELEM_TRAITS(__nv_bfloat16, __nv_bfloat162, __floats2bfloat162_rn, "bf16")
PRISM_ELEM_TRAITS(__half, __half2, __floats2half2_rn, "f16")
#undef PRISM_ELEM_TRAITS

// ---- shared memory / async copy -------------------------------------------
__device__ __forceinline__ uint32_t smem_u32(const void* p) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}

// 16-byte global -> shared copy, bypassing L1; zero-fills when !valid.
__device__ __forceinline__ void cp_async_16(uint32_t dst, const void* src, bool valid) {
  const int n = valid ? 16 : 0;
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(src), "r"(n)
               : "memory");
}
__device__ __forceinline__ void cp_async_commit() {
  asm volatile("cp.async.commit_group;\n" ::: "memory");
}
template <int N>
__device__ __forceinline__ void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory");
}

__device__ __forceinline__ void ldmatrix_x4(uint32_t (&r)[4], uint32_t addr) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(addr));
}
__device__ __forceinline__ void ldmatrix_x4_trans(uint32_t (&r)[4], uint32_t addr) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(addr));
}

// ---- math -------------------------------------------------------------------
__device__ __forceinline__ float fast_exp2(float x) {
  float y;
  asm("ex2.approx.ftz.f32 %0, %1;\n" : "=f"(y) : "f"(x));
  return y;
}

}  // namespace prism::cuda::attn

// Device helpers of the sm_90a attention kernel: wgmma (shared-memory matrix
// descriptors, SS and RS forms), mbarriers, TMA tensor copies, setmaxnreg and
// named barriers. Every helper is inline PTX that only the sm_90a pass may
// emit: callers guard their bodies with PRISM_SM90_ENABLED.
#pragma once
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cstdint>

#if defined(__CUDA_ARCH__) && defined(__CUDA_ARCH_FEAT_SM90_ALL)
#define PRISM_SM90_ENABLED 1
#else
#define PRISM_SM90_ENABLED 0
#endif

namespace prism::cuda::attn::sm90 {

#if PRISM_SM90_ENABLED

__device__ __forceinline__ uint32_t smem_addr(const void* p) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}

// ---- wgmma ------------------------------------------------------------------
// Shared-memory matrix descriptor, 128-byte swizzle: start address, leading and
// stride byte offsets (all >> 4), layout type 1 in bits 62-63. Operand tiles are
// 1024-byte aligned, so the base offset field stays 0.
__device__ __forceinline__ uint64_t make_desc_sw128(uint32_t saddr, uint32_t lbo, uint32_t sbo) {
  uint64_t d = 0;
  d |= uint64_t((saddr & 0x3FFFF) >> 4);
  d |= uint64_t((lbo & 0x3FFFF) >> 4) << 16;
  d |= uint64_t((sbo & 0x3FFFF) >> 4) << 32;
  d |= uint64_t(1) << 62;
  return d;
}

__device__ __forceinline__ void wgmma_fence() {
  asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory");
}
__device__ __forceinline__ void wgmma_commit() {
  asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory");
}
template <int N>
__device__ __forceinline__ void wgmma_wait() {
  asm volatile("wgmma.wait_group.sync.aligned %0;\n" ::"n"(N) : "memory");
}
// Keeps the compiler from moving accesses of an accumulator register across
// the wgmma issue / wait points.
__device__ __forceinline__ void reg_fence(float& r) { asm volatile("" : "+f"(r)::"memory"); }
__device__ __forceinline__ void reg_fence(uint32_t& r) { asm volatile("" : "+r"(r)::"memory"); }

// D[64 x N] (+)= A[64 x 16] * B[16 x N]:
//   ssN: A and B from shared memory, both K-major (scale_d == 0: D = A B);
//   rsN: A from registers (m16n8k16-style fragment per warp), B from shared
//        memory MN-major (transpose bit), always accumulates.
template <typename T>
struct Wgmma;

// The accumulator operands of a wgmma, D[64 x N] in N / 2 registers a thread:
// the register list of the instruction (%0 .. %N/2-1) and the matching "+f"
// constraints, eight at a time.
#define PRISM_WGMMA_ACC8(i)                                                                   \
  "+f"(d[i]), "+f"(d[i + 1]), "+f"(d[i + 2]), "+f"(d[i + 3]), "+f"(d[i + 4]), "+f"(d[i + 5]), \
      "+f"(d[i + 6]), "+f"(d[i + 7])
#define PRISM_WGMMA_ACC32 \
  PRISM_WGMMA_ACC8(0), PRISM_WGMMA_ACC8(8), PRISM_WGMMA_ACC8(16), PRISM_WGMMA_ACC8(24)
#define PRISM_WGMMA_ACC64                                                              \
  PRISM_WGMMA_ACC32, PRISM_WGMMA_ACC8(32), PRISM_WGMMA_ACC8(40), PRISM_WGMMA_ACC8(48), \
      PRISM_WGMMA_ACC8(56)
#define PRISM_WGMMA_REGS32                                                                         \
  "%0,%1,%2,%3,%4,%5,%6,%7,%8,%9,%10,%11,%12,%13,%14,%15,%16,%17,%18,%19,%20,%21,%22,%23,%24,%25," \
  "%26,%27,%28,%29,%30,%31"
#define PRISM_WGMMA_REGS64                                                                     \
  PRISM_WGMMA_REGS32                                                                           \
  ",%32,%33,%34,%35,%36,%37,%38,%39,%40,%41,%42,%43,%44,%45,%46,%47,%48,%49,%50,%51,%52,%53,%" \
  "54,%55,%56,%57,%58,%59,%60,%61,%62,%63"

// ssN and rsN of one element type (PTX name TY) and width N: NACC accumulator
// registers (list REGS, constraints ACC); the operand numbers after them are
// SS_P (scale_d), SS_A and SS_B (descriptors), RS_A (fragment) and RS_B.
#define PRISM_WGMMA_N(TY, N, NACC, REGS, ACC, SS_P, SS_A, SS_B, RS_A, RS_B)                        \
  static __device__ __forceinline__ void ss##N(float(&d)[NACC], uint64_t da, uint64_t db,          \
                                               int scale_d) {                                      \
    asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, " SS_P                                          \
                 ", 0;\n"                                                                          \
                 "wgmma.mma_async.sync.aligned.m64n" #N "k16.f32." TY "." TY " {" REGS "}, " SS_A  \
                 ", " SS_B ", p, 1, 1, 0, 0;\n}\n"                                                 \
                 : ACC                                                                             \
                 : "l"(da), "l"(db), "r"(scale_d));                                                \
  }                                                                                                \
  static __device__ __forceinline__ void rs##N(float(&d)[NACC], const uint32_t(&a)[4],             \
                                               uint64_t db) {                                      \
    asm volatile(                                                                                  \
        "{\n.reg .pred p;\nsetp.ne.b32 p, 1, 0;\n"                                                 \
        "wgmma.mma_async.sync.aligned.m64n" #N "k16.f32." TY "." TY " {" REGS "}, " RS_A ", " RS_B \
        ", p, 1, 1, 1;\n}\n"                                                                       \
        : ACC                                                                                      \
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(db));                                    \
  }

// One specialisation per element type; TY is its PTX type name.
#define PRISM_WGMMA_OPS(T, TY)                                                             \
  template <>                                                                              \
  struct Wgmma<T> {                                                                        \
    PRISM_WGMMA_N(TY, 64, 32, PRISM_WGMMA_REGS32, PRISM_WGMMA_ACC32, "%34", "%32", "%33",  \
                  "{%32,%33,%34,%35}", "%36")                                              \
    PRISM_WGMMA_N(TY, 128, 64, PRISM_WGMMA_REGS64, PRISM_WGMMA_ACC64, "%66", "%64", "%65", \
                  "{%64,%65,%66,%67}", "%68")                                              \
  };

PRISM_WGMMA_OPS(__nv_bfloat16, "bf16")
PRISM_WGMMA_OPS(__half, "f16")

// D[64 x 128] += A[64 x 8] * B[8 x 128] in tf32, both operands K-major in
// shared memory (the estimation's logits kernel, logits_sm90.cuh). TF32 takes
// no transpose immediates.
__device__ __forceinline__ void wgmma_tf32_m64n128k8(float (&d)[64], uint64_t da, uint64_t db) {
  asm volatile(
      "{\n.reg .pred p;\nsetp.ne.b32 p, 1, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n128k8.f32.tf32.tf32 {" PRISM_WGMMA_REGS64
      "}, %64, %65, p, 1, 1;\n}\n"
      : PRISM_WGMMA_ACC64
      : "l"(da), "l"(db));
}
#undef PRISM_WGMMA_OPS
#undef PRISM_WGMMA_N
#undef PRISM_WGMMA_REGS64
#undef PRISM_WGMMA_REGS32
#undef PRISM_WGMMA_ACC64
#undef PRISM_WGMMA_ACC32
#undef PRISM_WGMMA_ACC8

// ---- mbarrier -----------------------------------------------------------------
__device__ __forceinline__ void mbar_init(uint64_t* bar, uint32_t count) {
  asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;\n" ::"r"(smem_addr(bar)), "r"(count)
               : "memory");
}
__device__ __forceinline__ void mbar_fence_init() {
  asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory");
}
__device__ __forceinline__ void mbar_arrive_expect_tx(uint64_t* bar, uint32_t bytes) {
  asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;\n" ::"r"(smem_addr(bar)),
               "r"(bytes)
               : "memory");
}
__device__ __forceinline__ void mbar_arrive(uint64_t* bar) {
  asm volatile("mbarrier.arrive.shared::cta.b64 _, [%0];\n" ::"r"(smem_addr(bar)) : "memory");
}
__device__ __forceinline__ void mbar_wait(uint64_t* bar, uint32_t parity) {
  const uint32_t a = smem_addr(bar);
  asm volatile(
      "{\n"
      ".reg .pred done;\n"
      "WAIT_%=:\n"
      "mbarrier.try_wait.parity.shared::cta.b64 done, [%0], %1;\n"
      "@!done bra WAIT_%=;\n"
      "}\n" ::"r"(a),
      "r"(parity)
      : "memory");
}

// ---- TMA ------------------------------------------------------------------------
__device__ __forceinline__ void tma_prefetch_desc(const void* tmap) {
  asm volatile("prefetch.tensormap [%0];\n" ::"l"(reinterpret_cast<uint64_t>(tmap)) : "memory");
}
// 4-D tile load (coordinates innermost first) completing on `bar`.
__device__ __forceinline__ void tma_load_4d(void* dst, const void* tmap, uint64_t* bar, int c0,
                                            int c1, int c2, int c3) {
  asm volatile(
      "cp.async.bulk.tensor.4d.shared::cluster.global.tile.mbarrier::complete_tx::bytes"
      " [%0], [%1, {%2, %3, %4, %5}], [%6];\n" ::"r"(smem_addr(dst)),
      "l"(reinterpret_cast<uint64_t>(tmap)), "r"(c0), "r"(c1), "r"(c2), "r"(c3), "r"(smem_addr(bar))
      : "memory");
}

// ---- warpgroup registers / barriers ------------------------------------------------
template <int N>
__device__ __forceinline__ void setmaxnreg_inc() {
  asm volatile("setmaxnreg.inc.sync.aligned.u32 %0;\n" ::"n"(N));
}
template <int N>
__device__ __forceinline__ void setmaxnreg_dec() {
  asm volatile("setmaxnreg.dec.sync.aligned.u32 %0;\n" ::"n"(N));
}
__device__ __forceinline__ void named_bar_sync(int id, int threads) {
  asm volatile("bar.sync %0, %1;\n" ::"r"(id), "r"(threads) : "memory");
}
__device__ __forceinline__ void named_bar_arrive(int id, int threads) {
  asm volatile("bar.arrive %0, %1;\n" ::"r"(id), "r"(threads) : "memory");
}
__device__ __forceinline__ float exp2_approx(float x) {
  float y;
  asm("ex2.approx.ftz.f32 %0, %1;\n" : "=f"(y) : "f"(x));
  return y;
}

#endif  // PRISM_SM90_ENABLED

}  // namespace prism::cuda::attn::sm90

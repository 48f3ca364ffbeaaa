// The causal mask and the online-softmax steps both attention kernels share
// (the portable mma.sync kernel, attention_fwd_kernel.cuh, and the Hopper
// wgmma consumers, sm90/sm90_mainloop_consumer.cuh). Both hold a tile of
// scores in the m16n8 accumulator layout: per thread, element (nt, 2 * hf + e)
// of n8 tile nt is row (lane >> 2) + 8 * hf, key nt * 8 + 2 * (lane & 3) + e,
// so one quad of lanes holds a row and each thread two row halves (hf). The
// output accumulator has the same layout over the head dim. Scores are raw;
// the softmax scale is folded into the exp2 argument (scale_log2 = scale *
// log2(e)): p = 2^(s * scale_log2 - off) for a row of running offset off.
//
// A row's running state is that offset, its running max score times
// scale_log2 rounded once (-inf while it has met only masked keys), not the
// max itself. Rounding is monotone, so the max of the rounded products is the
// rounded product of the max: the offset a tile's probabilities are taken
// under is exactly the one the next rescale factor starts from, and that
// factor is exactly 1 while the max stays put. Kept as the raw max, the factor
// was exp2(m_prev * scale_log2 - off) with the product fused into the
// subtraction, 2^(the rounding error of off), a few ulps off 1 at every tile:
// over rows of 128K keys the LSE drifted by up to 3.1e-4 on an H200 (1.1e-3
// on the portable kernel, whose softmax steps take fewer keys at a time;
// test/softmax-long-rows.test.ts).
//
// `Frag` is a callable (nt, j) -> float& giving element j (0..3) of n8 tile nt
// of one m16 tile's fragment, so each kernel keeps its own register arrays.
// What the kernels do differently stays in them: how the probabilities are
// summed and packed, and whether the accumulator rescale is skipped.
#pragma once
#include <math_constants.h>
#include "cuda/attention/attention_ptx.cuh"

namespace prism::cuda::attn {

// Whether key tile [start, start + kBlockN) needs the token mask for rows at
// positions >= s_first: it crosses the diagonal of one of them or the key end.
template <int kBlockN>
__device__ __forceinline__ bool tile_needs_mask(int start, int s_first, int key_end) {
  return (start + kBlockN - 1 > s_first) || (start + kBlockN > key_end);
}

// Causal mask of one row half: the row at absolute position srow sees keys
// < min(srow + 1, key_end); key0 is the key of element (0, 2 * hf) of this
// thread (tile start + 2 * (lane & 3)). Masked scores become -inf.
template <int kNT, class Frag>
__device__ __forceinline__ void mask_row_half(Frag&& s, int hf, int key0, int srow, int key_end) {
  const int lim = min(srow + 1, key_end);  // visible keys: key < lim
#pragma unroll
  for (int nt = 0; nt < kNT; ++nt)
#pragma unroll
    for (int e = 0; e < 2; ++e)
      if (key0 + nt * 8 + e >= lim) s(nt, hf * 2 + e) = -CUDART_INF_F;
}

// Max of one row half's scores in the tile, over the quad.
template <int kNT, class Frag>
__device__ __forceinline__ float row_max_quad(Frag&& s, int hf) {
  float mx = fmaxf(s(0, hf * 2), s(0, hf * 2 + 1));
#pragma unroll
  for (int nt = 1; nt < kNT; ++nt) mx = fmaxf(mx, fmaxf(s(nt, hf * 2), s(nt, hf * 2 + 1)));
  mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
  mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
  return mx;
}

// New running offset of one row half: off_prev and the tile's max over the
// quad, times scale_log2 (__fmul_rn: never fused into a later add).
template <int kNT, class Frag>
__device__ __forceinline__ float row_offset_quad(Frag&& s, int hf, float off_prev,
                                                 float scale_log2) {
  return fmaxf(off_prev, __fmul_rn(row_max_quad<kNT>(s, hf), scale_log2));
}
// The offset probabilities are taken under: off, or 0 while the row has met
// only masked keys (so exp2(-inf - 0) = 0, never -inf + inf).
__device__ __forceinline__ float exp2_offset(float off) {
  return (off == -CUDART_INF_F) ? 0.f : off;
}
// Factor that rescales what was accumulated under the previous offset: 1 when
// it did not move, 0 after tiles of only masked keys (-inf - ms).
__device__ __forceinline__ float rescale_factor(float off_prev, float ms) {
  return fast_exp2(off_prev - ms);
}
// Unnormalised probability of score s under offset ms.
__device__ __forceinline__ float exp2_prob(float s, float scale_log2, float ms) {
  return fast_exp2(fmaf(s, scale_log2, -ms));
}

// Multiplies the accumulator rows by their factors (row half 0 by alpha0, 1 by alpha1).
template <int kNT, class Frag>
__device__ __forceinline__ void rescale_rows(Frag&& acc, float alpha0, float alpha1) {
#pragma unroll
  for (int nt = 0; nt < kNT; ++nt) {
    acc(nt, 0) *= alpha0;
    acc(nt, 1) *= alpha0;
    acc(nt, 2) *= alpha1;
    acc(nt, 3) *= alpha1;
  }
}

// Sum of a row's thread-partial value over its quad.
__device__ __forceinline__ float quad_sum(float x) {
  x += __shfl_xor_sync(0xffffffffu, x, 1);
  x += __shfl_xor_sync(0xffffffffu, x, 2);
  return x;
}
// Normalisation factor of a row of softmax denominator l (0 for a row that met no key).
__device__ __forceinline__ float inv_row_sum(float l) { return l > 0.f ? 1.f / l : 0.f; }

// Log-sum-exp of a row of running offset off and denominator l (the sum of
// exp2(s * scale_log2 - off)). Natural log, as FlashAttention returns it:
// lse = (off + log2(l)) * ln(2), i.e. max * scale + ln(l); -inf for a row that
// met no key, so merging it with other key sets gives it weight 0.
__device__ __forceinline__ float row_lse(float off, float l) {
  return l > 0.f ? (off + log2f(l)) * 0.69314718055994531f : -CUDART_INF_F;
}

}  // namespace prism::cuda::attn

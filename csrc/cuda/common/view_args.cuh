// Kernel arguments made from QkvViews, shared by the estimation and metrics
// kernels: a view's data and strides (ViewArg), the shape of a q/k problem on
// the block grid (QkShape), and the vector width a view's rows allow.
#pragma once

#include <cuda_runtime.h>
#include <cstdint>
#include <type_traits>

#include "common/prism_types.h"
#include "cuda/common/dtype_traits.cuh"

namespace prism::cuda {

// A [batch, heads, n, d] view as a kernel argument: its data and strides (elements).
struct ViewArg {
  const void* ptr;
  int64_t sb, sh, sn;

  // Row (b, h, n) of the view in storage type S.
  template <class S>
  __host__ __device__ __forceinline__ const S* row(int64_t b, int64_t h, int64_t n) const {
    return static_cast<const S*>(ptr) + b * sb + h * sh + n * sn;
  }
};

inline ViewArg view_arg(const QkvView& v) { return {v.data, v.stride_b, v.stride_h, v.stride_n}; }

// q [B, Hq, Nq, d] against k [B, Hkv, Nk, d] on the block grid of `blk`.
struct QkShape {
  int B, Hq, Hkv, G, Nq, Nk, d, blk, nq, nk, off;
  int shift;  // (Nk - Nq) % blk: query row r lies in query block (r + shift) / blk
};

// The caller has checked the sizes (they fit an int).
inline QkShape qk_shape(const QkvView& q, const QkvView& k, int block) {
  const BlockGrid grid(q.n, k.n, block);
  QkShape s{};
  s.B = (int)q.batch;
  s.Hq = (int)q.heads;
  s.Hkv = (int)k.heads;
  s.G = s.Hq / s.Hkv;
  s.Nq = (int)q.n;
  s.Nk = (int)k.n;
  s.d = (int)q.d;
  s.blk = block;
  s.nq = (int)grid.nq;
  s.nk = (int)grid.nk;
  s.off = (int)grid.off;
  s.shift = (int)grid.shift;
  return s;
}

// Widest vector load (elements) that every row of `v` allows (pick_vec).
inline int view_vec(const QkvView& v) {
  const int64_t strides[3] = {v.stride_b, v.stride_h, v.stride_n};
  return pick_vec(v.data, v.d, dtype_size(v.dtype), strides, 3);
}

// Calls f(std::integral_constant<int, V>{}) with V = vec for vec in {8, 4, 2},
// V = 1 otherwise: one kernel instantiation per vector width.
template <class F>
void dispatch_vec(int vec, F&& f) {
  switch (vec) {
    case 8: f(std::integral_constant<int, 8>{}); break;
    case 4: f(std::integral_constant<int, 4>{}); break;
    case 2: f(std::integral_constant<int, 2>{}); break;
    default: f(std::integral_constant<int, 1>{}); break;
  }
}

}  // namespace prism::cuda

// Geometry of one estimate() call (csrc/cuda/estimate/estimate.cu): the
// argument checks, the bands, the band-packed pooled rows and the layout of
// the estimation workspace. Host code, included by estimate.cu only.
#pragma once

#include <cuda_runtime.h>
#include <algorithm>
#include <climits>
#include <cstdint>
#include <string>

#include "cuda/common/cuda_check.h"
#include "cuda/common/view_args.cuh"
#include "cuda/cuda_backend.h"
#include "cuda/estimate/estimate_internal.h"
#include "cuda/estimate/logit_store.cuh"
#include "cuda/estimate/select_common.cuh"
#include "cuda/estimate/select_row.cuh"
#include "cuda/estimate/select_tiled.cuh"

namespace prism::cuda::est {

using sel::kMaxStored;
using sel::tiled_cand_offset;

// A band is up to two contiguous dim ranges [s0, s0+w0) U [s1, s1+w1).
struct Band {
  int s0, w0, s1, w1;
};

__host__ __device__ __forceinline__ int band_dim(const Band& b, int kk) {
  return kk < b.w0 ? b.s0 + kk : b.s1 + (kk - b.w0);
}
__device__ __forceinline__ bool in_band(const Band& b, int k) {
  return (k >= b.s0 && k < b.s0 + b.w0) || (k >= b.s1 && k < b.s1 + b.w1);
}

// shift (QkShape): (Nk - Nq) % blk, rows missing from query block 0 (BlockGrid).
struct Geometry : QkShape {
  int nbands;
  Band band[2];
  // Band-packed pooled rows: band b at [poff[b], poff[b] + pw[b]) of a row of
  // pk floats; pw[b] is the band's width rounded up to 8 (one mma k-step),
  // zero-padded.
  int pk, poff[2], pw[2];
  // Rows of at least this many key blocks take the tiled kernel (else the
  // row kernel): past its register path, or earlier where the logits kernel
  // on warpgroup mma makes the stored path faster (choose_logits_kernel).
  int tiled_from = select::kRegKeys + 1;
};

constexpr const char* kWhere = "prism::cuda::estimate";

inline Geometry make_geometry(const QkvView& q, const QkvView& k, const EstimateParams& p) {
  auto req = [](bool c, const std::string& m) { require_arg(c, kWhere, m); };
  req(q.dtype == DType::F32 || q.dtype == DType::F16 || q.dtype == DType::BF16,
      "q dtype must be F32, F16 or BF16");
  req(k.dtype == q.dtype, "k dtype must equal q dtype");
  req(q.batch >= 1 && q.batch == k.batch, "q and k need the same batch >= 1");
  req(q.heads >= 1 && k.heads >= 1, "heads must be >= 1");
  req(q.heads % k.heads == 0, "q heads must be a multiple of k heads");
  req(q.d == k.d, "q and k head_dim differ");
  req(q.d >= 2 && q.d <= 512 && q.d % 2 == 0, "head_dim must be even and in [2, 512]");
  req(q.n >= 1, "q length must be >= 1");
  req(k.n >= q.n, "k length must be >= q length");
  req(k.n <= INT_MAX / 2, "k length too large");
  req(p.block >= 1, "block must be >= 1");
  req(q.batch * q.heads <= INT_MAX / 2, "batch * heads too large");
  Geometry g{};
  static_cast<QkShape&>(g) = qk_shape(q, k, p.block);
  const int d = g.d;
  if (p.method == Method::MeanPool) {
    g.nbands = 1;
    g.band[0] = Band{0, d, 0, 0};
    g.band[1] = Band{0, 0, 0, 0};
  } else {
    req(p.method == Method::Prism, "unknown method");
    const int h = p.high_dims, l = p.low_dims;
    req(h >= 2 && h <= d && h % 2 == 0, "high_dims must be even and in [2, head_dim]");
    req(l >= 2 && l <= d && l % 2 == 0, "low_dims must be even and in [2, head_dim]");
    g.nbands = 2;
    if (p.layout == RopeLayout::Half) {
      g.band[0] = Band{0, h / 2, d / 2, h / 2};
      g.band[1] = Band{d / 2 - l / 2, l / 2, d - l / 2, l / 2};
    } else {
      req(p.layout == RopeLayout::Interleaved, "unknown rope layout");
      g.band[0] = Band{0, h, 0, 0};
      g.band[1] = Band{d - l, l, 0, 0};
    }
  }
  req(p.selection == Selection::TopP || p.selection == Selection::TopK, "unknown selection");
  for (int bi = 0; bi < 2; ++bi)
    g.pw[bi] = bi < g.nbands ? (g.band[bi].w0 + g.band[bi].w1 + 7) & ~7 : 0;
  g.poff[0] = 0;
  g.poff[1] = g.pw[0];
  g.pk = g.pw[0] + g.pw[1];
  return g;
}

inline size_t align_up(size_t x) { return (x + 255) & ~size_t(255); }

struct WsLayout {
  size_t qbar, kbar, eq, ek, scales, tiled, ksplit, logits, rowmax, total;
  int tiled_stride;  // uint32 words of a row's tiled-kernel scratch; 0: the row kernel runs
  // Logit store (logit_store.cuh): (b, kv head) pairs per chunk (0: the tiled
  // kernel recomputes its logits), floats of one band of one pair.
  int store_pairs;
  int64_t band_floats;
};

inline bool uses_tiled_kernel(const Geometry& g) {
  const int path = est_internal::knobs().select_path;
  return path >= 2 ? g.nk >= 2 : path == 0 && g.nk >= g.tiled_from;
}

// Where the stored path's logits run on warpgroup mma (sm_90a), it beats the
// row kernel before the register path ends: on an H200, square causal rows
// of 768 key blocks select in 0.292-0.302 ms against 0.304-0.310, of 1024 in
// 0.438-0.452 against 0.484-0.489; at 512 the row kernel is faster (0.165-0.170
// against 0.190-0.197). Only with enough rows for a wave of the tiled
// kernel's 32-row CTAs: a short chunk over long keys has few rows.
constexpr int kStoredEarlyFrom = 768;       // key blocks
constexpr int64_t kStoredEarlyRows = 8192;  // (query block, query head) rows of the call
inline bool stored_early_shape(const Geometry& g) {
  return g.nk >= kStoredEarlyFrom && (int64_t)g.B * g.Hq * g.nq >= kStoredEarlyRows;
}

// The logit store takes at most this much of the workspace: the (b, kv head)
// pairs are selected in chunks that fit (4 GiB holds one pair at 2M tokens
// with 4 query heads per kv head, or every pair of 32 / 8 heads at 512K).
constexpr int64_t kStoreBudget = int64_t(4) << 30;

inline int64_t store_band_floats(const Geometry& g) {
  const int rows = g.nq * g.G, slabs = (rows + sel::kSlabRows - 1) / sel::kSlabRows;
  return sel::slab_prefix_tiles(slabs, rows, g.G, g.off, g.nk) * sel::kSlabTileFloats;
}

// Whether the stored path is wanted (before asking the device whether a
// logits kernel fits): the tiled kernel runs, and no knob forbids it.
inline bool store_wanted(const Geometry& g) {
  return uses_tiled_kernel(g) && est_internal::knobs().select_path != 2;
}

// Pairs per chunk of the stored path; 0 where the tiled kernel recomputes
// (not wanted, or one pair's store alone exceeds the budget).
inline int store_pairs(const Geometry& g, int64_t band_floats) {
  const int path = est_internal::knobs().select_path;
  if (!store_wanted(g)) return 0;
  const int64_t pair = (int64_t)sizeof(float) * g.nbands * band_floats;
  const int64_t knob = est_internal::knobs().store_budget;
  const int64_t budget = knob >= 0 ? knob : kStoreBudget;
  const int64_t pairs = (int64_t)g.B * g.Hkv;
  if (pair > budget) return path == 3 ? 1 : 0;
  return (int)std::min<int64_t>(pairs, budget / pair);
}

// Keys the tiled kernel stores per row for its exact resolution.
inline int tiled_cap(const Geometry& g) {
  const int W = (g.nk + 31) / 32;
  int cap = std::min(kMaxStored, (g.nk - tiled_cand_offset(g.nbands, W)) / 2);
  const int stress_cap = est_internal::knobs().stress_cap;
  if (stress_cap >= 0) cap = std::min(cap, stress_cap);
  return cap;
}

// logits_fit: a logits kernel fits the device (est::choose_logits_kernel); if
// not, the tiled kernel recomputes its logits and no store is reserved.
inline WsLayout ws_layout(const Geometry& g, bool logits_fit) {
  WsLayout w{};
  size_t o = 0;
  w.qbar = o;
  o += align_up(sizeof(float) * (size_t)g.B * g.Hq * g.nq * g.pk);
  w.kbar = o;
  o += align_up(sizeof(float) * (size_t)g.B * g.Hkv * g.nk * g.pk);
  w.eq = o;
  o += align_up(sizeof(float) * (size_t)g.B * g.Hq * g.nq * 3);
  w.ek = o;
  o += align_up(sizeof(float) * (size_t)g.B * g.Hkv * g.nk * 3);
  w.scales = o;
  o += align_up(sizeof(float) * (size_t)g.B * g.Hq * 2);
  // Tiled kernel: each row's band bitmaps and stored keys (the selection output
  // has room for a row's selected blocks only).
  w.tiled_stride =
      uses_tiled_kernel(g) ? tiled_cand_offset(g.nbands, (g.nk + 31) / 32) + 2 * tiled_cap(g) : 0;
  w.tiled = o;
  o += align_up(sizeof(uint32_t) * (size_t)g.B * g.Hq * g.nq * (size_t)w.tiled_stride);
  w.band_floats = w.tiled_stride > 0 ? store_band_floats(g) : 0;
  w.store_pairs = w.tiled_stride > 0 && logits_fit ? store_pairs(g, w.band_floats) : 0;
  // Stored path: the pooled keys split into tf32 hi and lo, then the store.
  const size_t split = w.store_pairs > 0 ? (size_t)g.B * g.Hkv * g.nk * 2 * g.pk : 0;
  w.ksplit = o;
  o += align_up(sizeof(float) * split);
  w.logits = o;
  o += align_up(sizeof(float) * (size_t)w.store_pairs * g.nbands * (size_t)w.band_floats);
  // Stored path: each row's largest logit per band (SelArgs::rowmax).
  w.rowmax = o;
  o += align_up(w.store_pairs > 0 ? sizeof(float) * (size_t)g.B * g.Hq * g.nq * 2 : 0);
  w.total = o;
  return w;
}

}  // namespace prism::cuda::est

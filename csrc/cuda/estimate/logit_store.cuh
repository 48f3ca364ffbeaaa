// The logit store of the tiled selection path: long rows have their logits
// computed once, by logits_kernel, and read back by the tiled kernel's sweeps
// (select_tiled.cuh) instead of being recomputed on tensor cores for each of
// them. A sweep then streams 4 bytes per logit where it used to spend the
// 3xTF32 products of P dims; the logits keep their bits (the same
// score_tiles, the same scaling), so the selections are those of the other
// two paths.
//
// Layout, per band and (b, kv head) pair: the pair's rows (row = query block
// * G + query head of the group) cut into slabs of 16; slab s holds tiles
// [0, slab_tiles(s)) of 128 key blocks, each tile [16 rows][128 keys] fp32,
// slabs one after the other. Keys past a row's visible length hold values
// nobody reads (the sweeps mask them).
#pragma once

#include <cuda_pipeline.h>
#include <cstdint>

#include "cuda/estimate/async_copy.cuh"
#include "cuda/estimate/pdl.cuh"
#include "cuda/estimate/select_common.cuh"

namespace prism::cuda::sel {

constexpr int kSlabRows = 16;
constexpr int kSlabTileFloats = kSlabRows * kTC;

// Tiles slab s of a pair stores: enough for its longest (last) row.
__host__ __device__ __forceinline__ int slab_tiles(int s, int rows, int G, int off, int nk) {
  const int last = min(kSlabRows * s + kSlabRows - 1, rows - 1);
  return (visible_blocks(last / G, off, nk) + kTC - 1) / kTC;
}

// How many of slabs [0, s0) hold tile t: slab_tiles is nondecreasing in s, so
// those from the first slab whose last row sees a key of the tile on.
__host__ __device__ __forceinline__ int slabs_with_tile(int t, int s0, int rows, int G, int off,
                                                        int nk) {
  // Row r sees key kTC * t iff kTC * t < nk and r / G + off >= kTC * t.
  const int64_t need = (int64_t)G * ((int64_t)kTC * t - off);  // first row that sees it
  if ((int64_t)kTC * t >= nk || need > rows - 1) return 0;
  // slab s's last row 16 s + 15 must reach it: s >= ceil((need - 15) / 16) = floor(need / 16)
  const int64_t first = need <= 0 ? 0 : need / kSlabRows;
  return first >= s0 ? 0 : s0 - (int)first;
}

// Tiles of slabs [0, s0): sum_{s < s0} slab_tiles(s), counted by tile (at most
// nk / 128 terms where the slabs are nq * G / 16): the store's size per call
// on the host (store_band_floats).
__host__ __device__ __forceinline__ int64_t slab_prefix_tiles(int s0, int rows, int G, int off,
                                                              int nk) {
  int64_t sum = 0;
  for (int t = 0; t < (nk + kTC - 1) / kTC; ++t) sum += slabs_with_tile(t, s0, rows, G, off, nk);
  return sum;
}

// A CTA's slabs: where each starts in the band's store (in tiles) and how
// many tiles it has (0 past the pair's rows).
template <int MT>
struct Slabs {
  int64_t base[MT];
  int nt[MT];
};

// Fills `sl` for the MT slabs from row0 (a multiple of 16) on; the whole CTA
// sums the tiles of the slabs before them. Ends on a barrier. (Counting them
// by tile instead, slab_prefix_tiles on warp 0, made the selection stage
// 1.5-2.3% slower at 256K-1M on an H200, so the host alone uses that form.)
template <int MT>
__device__ void find_slabs(const SelArgs& a, int row0, Slabs<MT>& sl) {
  __shared__ long long part[kSelWarps];
  const int rows = a.nq * a.G, s0 = row0 / kSlabRows;
  long long v = 0;
  for (int s = threadIdx.x; s < s0; s += kSelThreads) v += slab_tiles(s, rows, a.G, a.off, a.nk);
#pragma unroll
  for (int o = 16; o; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  if ((threadIdx.x & 31) == 0) part[threadIdx.x >> 5] = v;
  __syncthreads();
  if (threadIdx.x == 0) {
    long long base = 0;
    for (int w = 0; w < kSelWarps; ++w) base += part[w];
    for (int m = 0; m < MT; ++m) {
      const int s = s0 + m;
      sl.base[m] = base;
      sl.nt[m] = kSlabRows * s < rows ? slab_tiles(s, rows, a.G, a.off, a.nk) : 0;
      base += sl.nt[m];
    }
  }
  __syncthreads();
}

// The band's store of pair bk (in the chunk that starts at a.bk0).
__device__ __forceinline__ float* band_store(const SelArgs& a, int64_t bk, int bi) {
  return a.lstore + ((bk - a.bk0) * a.nbands + bi) * a.band_floats;
}

// The pooled keys split once into tf32 hi and lo (mma::split_tf32), so that
// the logits kernel's CTAs do not each split every key tile again. Each
// packed row of pk floats becomes 2 * pk. For logits_kernel: per group of 8
// dims, 16 floats in the order the mma's B fragments take them, for lane
// t % 4 = q: hi(q), hi(q + 4), lo(q), lo(q + 4) (score_tiles' SPLIT loads them
// 16 bytes at a time). ROWS, for logits_sm90_kernel: the row's pk hi floats,
// then its pk lo floats.
template <bool ROWS>
__global__ void split_keys_kernel(const float* kbar, float* out, int64_t n, int pk) {
  dependent_wait();  // the pooled keys
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n;
       i += (int64_t)gridDim.x * blockDim.x) {
    const int64_t row = i / pk;
    const int d = (int)(i - row * pk);
    if constexpr (ROWS) {
      float* o = out + row * 2 * pk + d;
      mma::split_tf32(kbar[i], o[0], o[pk]);
    } else {
      const int q = d & 3, upper = (d >> 2) & 1;
      float* o = out + row * 2 * pk + 16 * (d >> 3) + 4 * q + upper;
      mma::split_tf32(kbar[i], o[0], o[2]);
    }
  }
}

// score_tiles' epilogue for the store: each 16-row m-tile of the CTA is one
// slab; a lane's two adjacent keys go out as one 8-byte store.
template <int MT>
struct StoreFragments : FragmentEpilogue {
  float* st;
  const Slabs<MT>& sl;
  __device__ StoreFragments(float* st_, const Slabs<MT>& sl_) : st(st_), sl(sl_) {}
  template <int MW, int NW>
  __device__ __forceinline__ void operator()(const float (&acc)[MW][NW][4],
                                             const float (&rsv)[MW][2], int c0, int wm,
                                             int wn) const {
    const int lane = threadIdx.x & 31, tile = c0 / kTC;
#pragma unroll
    for (int mw = 0; mw < MW; ++mw) {
      const int m = wm * MW + mw;
      if (tile >= sl.nt[m]) continue;
      float* p = st + (sl.base[m] + tile) * kSlabTileFloats + (lane >> 2) * kTC + wn * 8 * NW +
                 2 * (lane & 3);
#pragma unroll
      for (int h = 0; h < NW; ++h)
#pragma unroll
        for (int h8 = 0; h8 < 2; ++h8)
          *reinterpret_cast<float2*>(p + h8 * 8 * kTC + h * 8) =
              make_float2(__fmul_rn(acc[mw][h][2 * h8], rsv[mw][h8]),
                          __fmul_rn(acc[mw][h][2 * h8 + 1], rsv[mw][h8]));
    }
  }
};

// Logits of 16 * MT rows of one pair, every band with a threshold, into the
// store. One CTA per row group, longest rows first, like the tiled kernel.
// ksplit: the split pooled keys (split_keys_kernel).
template <int MT>
__global__ void __launch_bounds__(kSelThreads, MT >= 8 ? 1 : 2)
    logits_kernel(const SelArgs a, const float* ksplit) {
  constexpr int R = 16 * MT;
  extern __shared__ __align__(16) float smem[];
  __shared__ int64_t qrow[R];
  __shared__ float rs[R];
  __shared__ Slabs<MT> sl;
  const int pmax = max(a.pw[0], a.pw[1]);
  float4* qf = reinterpret_cast<float4*>(smem);  // [pmax / 8][MT][hi, lo][32]
  float* ks = smem + (size_t)pmax * MT * 32;     // [2][128 keys][64 floats]
  const int t = threadIdx.x;
  const CtaRows cr(a, R);
  const int64_t bk = cr.bk;
  const int nrows = cr.nrows, vmax = cr.vmax(a);
  if (t < R) qrow[t] = t < nrows ? cr.qrow(a, t) : 0;
  find_slabs<MT>(a, cr.row0, sl);
  const float* kb = ksplit + bk * a.nk * 2 * a.pk;
  dependent_wait();  // scales, pooled rows; the previous chunk has read the store
  for (int bi = 0; bi < a.nbands; ++bi) {
    if (a.T[bi] == 0) continue;  // the selection skips the band
    __syncthreads();             // the previous band's fragments are read
    if (t < R) rs[t] = t < nrows ? kLog2e / a.scales[(qrow[t] / a.nq) * 2 + bi] : 0.f;
    load_query_frags<MT>(qf, a.qbar, qrow, nrows, a.pk, a.poff[bi], a.pw[bi]);
    __syncthreads();
    score_tiles<MT, false, true>(kb, a.pk, a.poff[bi], a.pw[bi], nrows, rs, vmax, 0,
                                 (vmax + kTC - 1) / kTC, qf, ks,
                                 StoreFragments<MT>(band_store(a, bk, bi), sl), [](int) {});
  }
}

// Streams tiles [t0, t1) of a band's store for one warp's 2 * MT rows of the
// CTA's R = 16 * MT (rows from `rows` on and keys from vlim on are not copied)
// through a double buffer of staging tiles stg [2][R][stride], of which the
// warp copies and reads only its own rows (one slab holds them): for each
// tile, consume(tile_stg, c0) may read them. No warp waits for another:
// staged for the whole CTA, each tile waited behind CTA barriers for the
// slowest warp (2-4% of the estimation at 512K-1M on an H200). Ends on a
// warp barrier.
template <int MT, class Consume>
__device__ __forceinline__ void stored_tiles(const float* st, const Slabs<MT>& sl, int rows,
                                             int vlim, int t0, int t1, float* stg, int stride,
                                             Consume&& consume) {
  constexpr int R = 16 * MT, kWarpRows = R / kSelWarps;
  static_assert(kSlabRows % kWarpRows == 0, "a warp's rows lie in one slab");
  if (t1 <= t0) return;
  // Lane l copies 16-byte column l of each of the warp's rows.
  const int lane = threadIdx.x & 31, r0 = (threadIdx.x >> 5) * kWarpRows, m = r0 / kSlabRows;
  const int nt = sl.nt[m], nr = min(kWarpRows, rows - r0);
  const float* src0 = st + sl.base[m] * kSlabTileFloats + (r0 % kSlabRows) * kTC + 4 * lane;
  float* dst0 = stg + r0 * stride + 4 * lane;
  auto issue = [&](int tile, int buf) {
    if (tile < nt && 4 * lane < vlim - tile * kTC) {
      const float* src = src0 + (int64_t)tile * kSlabTileFloats;
      float* dst = dst0 + buf * R * stride;
#pragma unroll
      for (int i = 0; i < kWarpRows; ++i)
        if (i < nr) copy16_cg(dst + i * stride, src + i * kTC);
    }
    __pipeline_commit();
  };
  issue(t0, 0);
  for (int tile = t0; tile < t1; ++tile) {
    const int buf = (tile - t0) & 1;
    __pipeline_wait_prior(0);  // this tile's copies, the only ones in flight
    __syncwarp();              // every lane's copies landed; every lane is done with tile - 1
    if (tile + 1 < t1) issue(tile + 1, buf ^ 1);  // into tile - 1's buffer
    consume(stg + buf * R * stride, tile * kTC);
  }
  __syncwarp();
}

}  // namespace prism::cuda::sel

// The first two launches of estimate() (csrc/cuda/estimate/estimate.cu):
// pool_kernel (block means of Q and K, band-packed, and per-band energies) and
// temps_kernel (per-head band temperatures). Included by estimate.cu only.
#pragma once

#include <cuda_runtime.h>
#include <cstdint>

#include "cuda/common/dtype_traits.cuh"
#include "cuda/common/view_args.cuh"
#include "cuda/estimate/async_copy.cuh"
#include "cuda/estimate/estimate_geometry.cuh"
#include "cuda/estimate/pdl.cuh"
#include "cuda/estimate/select_row.cuh"

namespace prism::cuda::est {

using select::warp_sum;

// --- 1. pooling ---------------------------------------------------------------
// Query block i holds rows [i*blk - shift, (i+1)*blk - shift) clipped to [0, Nq).
// Units: the first nqu are query blocks (B * Hq * nq, or 0), then nkb key
// blocks [kb0, kb0 + nkb) of every (b, kv head) bh; key block j of bh goes to
// row bh * kstride + kout + j of kbar / ek. A unit's arithmetic depends on
// its rows and VEC only (summarize_keys relies on it).
struct PoolArgs : QkShape {
  ViewArg q, k;
  // Paged keys (k: the pool, sb a page's stride): key t lies in page
  // k_pages[t >> page_shift]. Pages of at least a block hold whole blocks (a
  // block's page looked up once); smaller ones are looked up row by row
  // (pool_kernel's kRowPages). Null: k is a plain view.
  const int32_t* k_pages;
  int page_shift;
  // Keys in pages smaller than a block: looked up row by row (kRowPages).
  __host__ __device__ bool row_pages() const {
    return k_pages != nullptr && blk > (1 << page_shift);
  }
  Band b0, b1;
  int pk, poff1;  // packed output rows (see Geometry)
  int64_t nqu;
  int kb0, nkb;
  int64_t kstride, kout;
  float* qbar;
  float* kbar;
  float* eq;
  float* ek;
};

// VEC elements (16 bytes) of shared memory to fp32.
template <class Tag, int VEC>
__device__ __forceinline__ void unpack16(const typename Tag::storage* p, float (&o)[VEC]) {
  if constexpr (std::is_same_v<Tag, F32Tag>) {
    static_assert(VEC == 4, "16 bytes of f32");
    const float4 x = *reinterpret_cast<const float4*>(p);
    o[0] = x.x;
    o[1] = x.y;
    o[2] = x.z;
    o[3] = x.w;
  } else {
    static_assert(VEC == 8, "16 bytes of a 16-bit type");
    const uint4 x = *reinterpret_cast<const uint4*>(p);
    unpack2<Tag>(x.x, o[0], o[1]);
    unpack2<Tag>(x.y, o[2], o[3]);
    unpack2<Tag>(x.z, o[4], o[5]);
    unpack2<Tag>(x.w, o[6], o[7]);
  }
}

// One unit's rows: the first one, the stride between them, how many, and
// where its outputs go.
template <class S>
struct PoolUnit {
  const S* p;
  int64_t sn;
  int64_t orow;  // output row of qbar / kbar (eq / ek)
  int rows;
  bool is_q;
  // Keys in pages smaller than the block: p is the head's row 0 of pool page
  // 0, and row r of the unit lies in page pages[(first + r) >> shift]. Else null.
  const int32_t* pages;
  int64_t sb;
  int first, shift;
};

template <class S>
__device__ __forceinline__ PoolUnit<S> pool_unit(const PoolArgs& a, int64_t id) {
  PoolUnit<S> u;
  u.is_q = id < a.nqu;
  const int64_t unit = u.is_q ? id : id - a.nqu;
  const int H = u.is_q ? a.Hq : a.Hkv;
  const int i = u.is_q ? (int)(unit % a.nq) : a.kb0 + (int)(unit % a.nkb);
  const int64_t bh = u.is_q ? unit / a.nq : unit / a.nkb;
  u.orow = u.is_q ? unit : bh * a.kstride + a.kout + i;
  const ViewArg& view = u.is_q ? a.q : a.k;
  const int N = u.is_q ? a.Nq : a.Nk;
  const int sh = u.is_q ? a.shift : 0;
  const int first = max(0, i * a.blk - sh);
  u.rows = min((i + 1) * a.blk - sh, N) - first;
  u.pages = nullptr;
  u.sb = view.sb;
  u.first = first;
  u.shift = a.page_shift;
  if (!u.is_q && a.row_pages()) {
    u.p = view.row<S>(0, bh % H, 0);
    u.pages = a.k_pages;
  } else if (!u.is_q && a.k_pages != nullptr) {
    u.p = view.row<S>(a.k_pages[first >> a.page_shift], bh % H, first & ((1 << a.page_shift) - 1));
  } else {
    u.p = view.row<S>(bh / H, bh % H, first);
  }
  u.sn = view.sn;
  return u;
}

// Where row r of unit u starts, given p = its row 0 plus the thread's column:
// r rows on, or (kRowPages, keys in pages smaller than the block) in r's page.
template <bool kRowPages, class S>
__device__ __forceinline__ const S* unit_row(const PoolUnit<S>& u, const S* p, int r) {
  if constexpr (kRowPages) {
    if (u.pages != nullptr) {
      const int t = u.first + r;
      return p + (int64_t)__ldg(u.pages + (t >> u.shift)) * u.sb +
             (int64_t)(t & ((1 << u.shift) - 1)) * u.sn;
    }
  }
  return p + (int64_t)r * u.sn;
}

// Whether pool_kernel copies a unit's rows into shared memory: a full block of
// exactly eight rows per row group in 16-byte chunks (launch_pool_units
// reserves the room only then).
__host__ __device__ __forceinline__ bool pool_rows_in_smem(int threads, int chunk_bytes, int rg,
                                                           int blk) {
  return threads == 256 && chunk_bytes == 16 && blk == 8 * rg;
}

// acc += eight rows, in the order every path of pool_kernel sums them (two
// steps of four, each a pairwise tree): the bits do not depend on the path.
template <int VEC>
__device__ __forceinline__ void add_eight(float (&acc)[VEC], const float (&x)[8][VEC]) {
#pragma unroll
  for (int v = 0; v < VEC; ++v) {
    acc[v] += (x[0][v] + x[1][v]) + (x[2][v] + x[3][v]);
    acc[v] += (x[4][v] + x[5][v]) + (x[6][v] + x[7][v]);
  }
}

// One unit (a block of Q or K) per CTA. A full block of exactly eight rows per
// row group in 16-byte chunks (pool_rows_in_smem; 8 * RG rows: a 128-row block
// of bf16 / fp16 at d 128) is copied into shared memory with cp.async: bytes in flight hold no
// registers, so more CTAs and more bytes fit per SM (at 128K on an H200: 89%
// of the DRAM peak, against 83% with the rows loaded into registers). Each
// thread sums the chunks it copied itself, in the order of the register path
// that takes the other units: the same bits either way (estimate_check
// compares them with that order replayed on the host).
// 256 threads: five CTAs per SM (48 registers; 40 KB of shared memory each).
// kRowPages: key rows in pages smaller than a block, each looked up in the
// page ids (the same rows in the same order, so the same sums).
template <class Tag, int VEC, int THREADS, bool kRowPages>
__global__ void __launch_bounds__(THREADS, THREADS == 256 ? 5 : 1) pool_kernel(const PoolArgs a) {
  allow_dependents();
  using S = typename Tag::storage;
  constexpr bool kAsync = THREADS == 256 && VEC * sizeof(S) == 16;
  // Row groups' sums [RG][d]; then, where pool_rows_in_smem, the rows [8 * RG][d] of S
  // (apart: sharing the bytes cost a barrier and was no faster).
  extern __shared__ __align__(16) float red[];
  const PoolUnit<S> un = pool_unit<S>(a, blockIdx.x);
  const int cpr = a.d / VEC;
  const int RG = blockDim.x / cpr;
  const int t = threadIdx.x, c = t % cpr, g = t / cpr;
  const S* const p = un.p + c * VEC;
  const bool tiled =
      kAsync && pool_rows_in_smem(THREADS, VEC * sizeof(S), RG, a.blk) && un.rows == a.blk;
  float acc[VEC];
#pragma unroll
  for (int v = 0; v < VEC; ++v) acc[v] = 0.f;
  if constexpr (kAsync) {
    if (tiled && g < RG) {
      S* const rows = reinterpret_cast<S*>(red + RG * a.d) + (size_t)g * a.d + c * VEC;
#pragma unroll
      for (int k = 0; k < 8; ++k)
        copy16_cg(rows + (size_t)k * RG * a.d, unit_row<kRowPages>(un, p, g + k * RG));
      copy_wait_all();  // a thread reads back only its own chunks
      float x[8][VEC];
#pragma unroll
      for (int k = 0; k < 8; ++k) unpack16<Tag, VEC>(rows + (size_t)k * RG * a.d, x[k]);
      add_eight(acc, x);
    }
  }
  if (!tiled && g < RG) {
    int r = g;
    // Eight rows in flight per thread, summed in the order of two steps of
    // the loop below: the same bits.
    for (; r + 7 * RG < un.rows; r += 8 * RG) {
      float x[8][VEC];
#pragma unroll
      for (int k = 0; k < 8; ++k) load_vec<Tag, VEC>(unit_row<kRowPages>(un, p, r + k * RG), x[k]);
      add_eight(acc, x);
    }
    for (; r + 3 * RG < un.rows; r += 4 * RG) {
      float x[4][VEC];
#pragma unroll
      for (int k = 0; k < 4; ++k) load_vec<Tag, VEC>(unit_row<kRowPages>(un, p, r + k * RG), x[k]);
#pragma unroll
      for (int v = 0; v < VEC; ++v) acc[v] += (x[0][v] + x[1][v]) + (x[2][v] + x[3][v]);
    }
    for (; r < un.rows; r += RG) {
      float x[VEC];
      load_vec<Tag, VEC>(unit_row<kRowPages>(un, p, r), x);
#pragma unroll
      for (int v = 0; v < VEC; ++v) acc[v] += x[v];
    }
  }
  if (g < RG) {
#pragma unroll
    for (int v = 0; v < VEC; ++v) red[g * a.d + c * VEC + v] = acc[v];
  }
  __syncthreads();
  const float fr = (float)un.rows;
  for (int kk = t; kk < a.d; kk += blockDim.x) {
    float s = 0.f;
    for (int gg = 0; gg < RG; ++gg) s += red[gg * a.d + kk];
    red[kk] = s / fr;  // column kk is only touched by this thread
  }
  __syncthreads();
  float* ov = (un.is_q ? a.qbar : a.kbar) + un.orow * a.pk;
  for (int x = t; x < a.pk; x += blockDim.x) {
    const bool first = x < a.poff1;
    const Band& bd = first ? a.b0 : a.b1;
    const int pos = first ? x : x - a.poff1;
    ov[x] = pos < bd.w0 + bd.w1 ? red[band_dim(bd, pos)] : 0.f;
  }
  if (t < 32) {
    float e = 0.f, e0 = 0.f, e1 = 0.f;
    for (int kk = t; kk < a.d; kk += 32) {
      const float x = red[kk];
      const float x2 = x * x;
      e += x2;
      if (in_band(a.b0, kk)) e0 += x2;
      if (in_band(a.b1, kk)) e1 += x2;
    }
    e = warp_sum(e);
    e0 = warp_sum(e0);
    e1 = warp_sum(e1);
    if (t == 0) {
      float* oe = (un.is_q ? a.eq : a.ek) + un.orow * 3;
      oe[0] = e;
      oe[1] = e0;
      oe[2] = e1;
    }
  }
}

// --- 2. temperatures -----------------------------------------------------------
struct TempArgs : QkShape {
  const float* eq;
  const float* ek;
  int prism;  // 1 = two bands, 0 = mean pool
  int calibrate;
  float temp_high, temp_low;
  int D0, D1;
  float* scales;  // [B*Hq*2]
  float* temps;   // may be null
};

__global__ void __launch_bounds__(256) temps_kernel(const TempArgs a) {
  __shared__ float red[6][256];
  allow_dependents();
  dependent_wait();
  const int bh = blockIdx.x;
  const int b = bh / a.Hq, h = bh % a.Hq;
  const int64_t kbh = (int64_t)b * a.Hkv + h / a.G;
  const int t = threadIdx.x;
  float s[6] = {0.f, 0.f, 0.f, 0.f, 0.f, 0.f};
  if (a.prism && a.calibrate) {
    const float* pq = a.eq + (int64_t)bh * a.nq * 3;
    for (int i = t; i < a.nq; i += 256) {
      s[0] += pq[i * 3];
      s[1] += pq[i * 3 + 1];
      s[2] += pq[i * 3 + 2];
    }
    const float* pk = a.ek + kbh * a.nk * 3;
    for (int j = t; j < a.nk; j += 256) {
      s[3] += pk[j * 3];
      s[4] += pk[j * 3 + 1];
      s[5] += pk[j * 3 + 2];
    }
  }
#pragma unroll
  for (int v = 0; v < 6; ++v) red[v][t] = s[v];
  __syncthreads();
  for (int w = 128; w > 0; w >>= 1) {
    if (t < w) {
#pragma unroll
      for (int v = 0; v < 6; ++v) red[v][t] += red[v][t + w];
    }
    __syncthreads();
  }
  if (t != 0) return;
  float tt[2], sc[2];
  if (!a.prism) {
    const double dd = a.d;
    double tv = a.calibrate ? 1.0 : (double)a.temp_high;
    double scv = std::sqrt(dd) * tv;
    if (!(scv > 0.0) || !std::isfinite(scv)) {
      scv = std::sqrt(dd);
      tv = 1.0;
    }
    tt[0] = tt[1] = (float)tv;
    sc[0] = sc[1] = (float)scv;
  } else {
    const double eps = 1e-6;
    const double nqd = (double)a.nq, nkd = (double)a.nk, dd = (double)a.d;
    const double rq = std::sqrt((double)red[0][0] / (nqd * dd));
    const double rk = std::sqrt((double)red[3][0] / (nkd * dd));
    for (int bi = 0; bi < 2; ++bi) {
      const double Db = bi == 0 ? a.D0 : a.D1;
      double tv;
      if (a.calibrate) {
        const double rqb = std::sqrt((double)red[1 + bi][0] / (nqd * Db));
        const double rkb = std::sqrt((double)red[4 + bi][0] / (nkd * Db));
        tv = std::sqrt(Db / dd) * (rqb / fmax(rq, eps)) * (rkb / fmax(rk, eps));
      } else {
        tv = bi == 0 ? a.temp_high : a.temp_low;
      }
      double scv = std::sqrt(Db) * tv;
      if (!(scv > 0.0) || !std::isfinite(scv)) {
        scv = std::sqrt(Db);
        tv = 1.0;
      }
      tt[bi] = (float)tv;
      sc[bi] = (float)scv;
    }
  }
  a.scales[bh * 2] = sc[0];
  a.scales[bh * 2 + 1] = sc[1];
  if (a.temps) {
    a.temps[bh * 2] = tt[0];
    a.temps[bh * 2 + 1] = tt[1];
  }
}

}  // namespace prism::cuda::est

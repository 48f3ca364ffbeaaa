// Prism block-mask estimation on the GPU: pooling, energy temperatures,
// dual-band block scores, top-p / top-k selection, sink/diagonal, lists.
//
// Three launches, no host synchronisation:
//  1. pool_kernel: one CTA per (b, head, block) of Q and of K (each kv head
//     pooled once). Streams the rows with vector loads, fp32 sums, writes the
//     block mean band-packed (band 0 dims, then band 1 dims, each zero-padded
//     to a multiple of 8) and the block's per-band sums of squares.
//  2. temps_kernel: one CTA per (b, query head) reduces the energy partials in
//     a fixed order and writes the per-band logit scales (and temps).
//  3. one of two selection kernels (plan_selection picks it), both on
//     consecutive (query block, query head of the group) rows of one kv head,
//     both computing the block scores on tensor cores (select_common.cuh) and
//     applying the same exact rule to the same bits:
//     select_kernel (rows up to 1024 key blocks): per band the logit tile
//     [M x visible] of M <= 16 rows stays in shared memory, then one warp per
//     row does the softmax and the threshold search of select_row.cuh and ORs
//     the kept set into a per-row bitmap; finally every row writes mask, count
//     and ascending indices.
//     select_tiled_kernel (longer rows, select_tiled.cuh): up to 64 rows per CTA,
//     logits recomputed tile by tile, never held whole.
#include <cuda_runtime.h>
#include <climits>
#include <cmath>
#include <cstdint>
#include <string>
#include <utility>

#include "cuda/common/cuda_check.h"
#include "cuda/common/dtype_traits.cuh"
#include "cuda/cuda_backend.h"
#include "cuda/estimate/estimate_internal.h"
#include "cuda/estimate/pdl.cuh"
#include "cuda/estimate/select_common.cuh"
#include "cuda/estimate/select_row.cuh"
#include "cuda/estimate/select_tiled.cuh"

namespace prism::cuda {
namespace {

using namespace sel;
using select::warp_sum;

// Launches `kernel` on `stream`, overlapping its start with the previous
// kernel's tail when `pdl` is set (the kernel must call dependent_wait()).
template <class... Params, class... Args>
cudaError_t launch_pdl(bool pdl, void (*kernel)(Params...), unsigned grid, unsigned threads,
                       size_t smem, cudaStream_t stream, Args&&... args) {
  cudaLaunchConfig_t cfg{};
  cfg.gridDim = dim3(grid);
  cfg.blockDim = dim3(threads);
  cfg.dynamicSmemBytes = smem;
  cfg.stream = stream;
  cudaLaunchAttribute attr[1];
  attr[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
  attr[0].val.programmaticStreamSerializationAllowed = 1;
  cfg.attrs = attr;
  cfg.numAttrs = pdl ? 1 : 0;
  return cudaLaunchKernelEx(&cfg, kernel, std::forward<Args>(args)...);
}

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

int g_stage_limit = 3;
int g_select_path = 0;                                 // est_internal::set_select_path
int g_stress = 0, g_stress_cap = -1, g_stress_mt = 0;  // est_internal::set_tiled_stress

// ----------------------------------------------------------------------------
// Geometry and validation
struct Geometry {
  int B, Hq, Hkv, G, Nq, Nk, d, blk, nq, nk, off;
  int shift;  // (Nk - Nq) % blk: rows missing from query block 0 (BlockGrid)
  int nbands;
  Band band[2];
  // Band-packed pooled rows: band b at [poff[b], poff[b] + pw[b]) of a row of
  // pk floats; pw[b] is the band's width rounded up to 8 (one mma k-step),
  // zero-padded.
  int pk, poff[2], pw[2];
};

constexpr const char* kWhere = "prism::cuda::estimate";

Geometry make_geometry(const QkvView& q, const QkvView& k, const EstimateParams& p) {
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
  g.B = (int)q.batch;
  g.Hq = (int)q.heads;
  g.Hkv = (int)k.heads;
  g.G = g.Hq / g.Hkv;
  g.Nq = (int)q.n;
  g.Nk = (int)k.n;
  g.d = (int)q.d;
  g.blk = p.block;
  const BlockGrid grid(q.n, k.n, p.block);
  g.nq = (int)grid.nq;
  g.nk = (int)grid.nk;
  g.off = (int)grid.off;
  g.shift = (int)grid.shift;
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

size_t align_up(size_t x) { return (x + 255) & ~size_t(255); }

struct WsLayout {
  size_t qbar, kbar, eq, ek, scales, tiled, total;
  int tiled_stride;  // uint32 words of a row's tiled-kernel scratch; 0: the row kernel runs
};

bool uses_tiled_kernel(const Geometry& g) {
  return g_select_path == 2 ? g.nk >= 2 : g_select_path == 0 && g.nk > select::kRegKeys;
}

// Keys the tiled kernel stores per row for its exact resolution.
int tiled_cap(const Geometry& g) {
  const int W = (g.nk + 31) / 32;
  int cap = std::min(kMaxStored, (g.nk - g.nbands * W) / 2);
  if (g_stress_cap >= 0) cap = std::min(cap, g_stress_cap);
  return cap;
}

WsLayout ws_layout(const Geometry& g) {
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
  w.tiled_stride = uses_tiled_kernel(g) ? g.nbands * ((g.nk + 31) / 32) + 2 * tiled_cap(g) : 0;
  w.tiled = o;
  o += align_up(sizeof(uint32_t) * (size_t)g.B * g.Hq * g.nq * (size_t)w.tiled_stride);
  w.total = o;
  return w;
}

// ----------------------------------------------------------------------------
// 1. pooling
struct PoolArgs {
  const void* q;
  const void* k;
  int64_t qsb, qsh, qsn, ksb, ksh, ksn;
  int B, Hq, Hkv, Nq, Nk, d, blk, nq, nk;
  int shift;  // query block i holds rows [i*blk - shift, (i+1)*blk - shift) clipped to [0, Nq)
  Band b0, b1;
  int pk, poff1;  // packed output rows (see Geometry)
  float* qbar;
  float* kbar;
  float* eq;
  float* ek;
};

template <class Tag, int VEC>
__global__ void __launch_bounds__(512) pool_kernel(const PoolArgs a) {
  allow_dependents();
  using S = typename Tag::storage;
  extern __shared__ float red[];  // [RG][d]
  const int64_t nqu = (int64_t)a.B * a.Hq * a.nq;
  int64_t unit = blockIdx.x;
  const S* base;
  int64_t sn;
  int N, i, sh;
  float* ov;
  float* oe;
  if (unit < nqu) {
    i = (int)(unit % a.nq);
    const int64_t bh = unit / a.nq;
    const int64_t h = bh % a.Hq, b = bh / a.Hq;
    base = static_cast<const S*>(a.q) + b * a.qsb + h * a.qsh;
    sn = a.qsn;
    N = a.Nq;
    sh = a.shift;
    ov = a.qbar + unit * a.pk;
    oe = a.eq + unit * 3;
  } else {
    unit -= nqu;
    i = (int)(unit % a.nk);
    const int64_t bh = unit / a.nk;
    const int64_t h = bh % a.Hkv, b = bh / a.Hkv;
    base = static_cast<const S*>(a.k) + b * a.ksb + h * a.ksh;
    sn = a.ksn;
    N = a.Nk;
    sh = 0;
    ov = a.kbar + unit * a.pk;
    oe = a.ek + unit * 3;
  }
  const int r0 = max(0, i * a.blk - sh);
  const int rows = min((i + 1) * a.blk - sh, N) - r0;
  const int cpr = a.d / VEC;
  const int RG = blockDim.x / cpr;
  const int t = threadIdx.x, c = t % cpr, g = t / cpr;
  if (g < RG) {
    float acc[VEC];
#pragma unroll
    for (int v = 0; v < VEC; ++v) acc[v] = 0.f;
    const S* p = base + (int64_t)r0 * sn + c * VEC;
    int r = g;
    for (; r + 3 * RG < rows; r += 4 * RG) {
      float x0[VEC], x1[VEC], x2[VEC], x3[VEC];
      load_vec<Tag, VEC>(p + (int64_t)r * sn, x0);
      load_vec<Tag, VEC>(p + (int64_t)(r + RG) * sn, x1);
      load_vec<Tag, VEC>(p + (int64_t)(r + 2 * RG) * sn, x2);
      load_vec<Tag, VEC>(p + (int64_t)(r + 3 * RG) * sn, x3);
#pragma unroll
      for (int v = 0; v < VEC; ++v) acc[v] += (x0[v] + x1[v]) + (x2[v] + x3[v]);
    }
    for (; r < rows; r += RG) {
      float x0[VEC];
      load_vec<Tag, VEC>(p + (int64_t)r * sn, x0);
#pragma unroll
      for (int v = 0; v < VEC; ++v) acc[v] += x0[v];
    }
#pragma unroll
    for (int v = 0; v < VEC; ++v) red[g * a.d + c * VEC + v] = acc[v];
  }
  __syncthreads();
  const float fr = (float)rows;
  for (int kk = t; kk < a.d; kk += blockDim.x) {
    float s = 0.f;
    for (int gg = 0; gg < RG; ++gg) s += red[gg * a.d + kk];
    red[kk] = s / fr;  // column kk is only touched by this thread
  }
  __syncthreads();
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
      oe[0] = e;
      oe[1] = e0;
      oe[2] = e1;
    }
  }
}

// ----------------------------------------------------------------------------
// 2. temperatures
struct TempArgs {
  const float* eq;
  const float* ek;
  int B, Hq, Hkv, G, nq, nk, d;
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

// ----------------------------------------------------------------------------
// 3. scores + selection
constexpr int kMaxRows = 16;  // row kernel: one m16 tile of query rows

// Row bookkeeping of one CTA, in shared memory so the loops need no divisions.
struct RowInfo {
  int64_t qrow[kMaxRows];  // (b * Hq + head) * nq + query block
  int V[kMaxRows];         // visible key blocks
  float rs[kMaxRows];      // log2(e) / scale of the current band
};

template <bool TOPK>
__global__ void __launch_bounds__(kSelThreads, 2) select_kernel(const SelArgs a) {
  extern __shared__ __align__(16) float smem[];
  float4* qf = reinterpret_cast<float4*>(smem);  // [max pw / 8][hi, lo][32 lanes]
  float* ks = smem + (size_t)max(a.pw[0], a.pw[1]) * 2 * kMaxRows;        // [2][kTileFloats]
  float* lg = ks + 2 * kTileFloats;                                       // [M][LS]
  uint32_t* bits = reinterpret_cast<uint32_t*>(lg + (size_t)a.M * a.LS);  // [M][W]
  uint32_t* scratch = bits + (size_t)a.M * a.W;                           // [warps][32]
  __shared__ RowInfo ri;
  const int t = threadIdx.x, lane = t & 31, warp = t >> 5;
  const int64_t bk = blockIdx.x / a.upb;                // b * Hkv + kv head
  const int u = a.upb - 1 - (int)(blockIdx.x % a.upb);  // long rows first
  const int b = (int)(bk / a.Hkv), hk = (int)(bk % a.Hkv);
  const int row0 = u * a.M;
  const int nrows = min(a.M, a.nq * a.G - row0);
  const int vmax = min((row0 + nrows - 1) / a.G + a.off + 1, a.nk);
  for (int x = t; x < a.M * a.W; x += kSelThreads) bits[x] = 0u;
  if (t < nrows) {
    const int head = hk * a.G + (row0 + t) % a.G, blk = (row0 + t) / a.G;
    ri.qrow[t] = ((int64_t)b * a.Hq + head) * a.nq + blk;
    ri.V[t] = min(blk + a.off + 1, a.nk);
  }
  dependent_wait();  // scales, pooled rows: written by the previous kernels
  const float* kb = a.kbar + bk * a.nk * a.pk;

  for (int bi = 0; bi < a.nbands; ++bi) {
    const int P = a.pw[bi], poff = a.poff[bi];  // P is a multiple of 8
    __syncthreads();                            // ri written; previous band's rows selected
    if (t < nrows) {
      const int64_t bh = ri.qrow[t] / a.nq;
      ri.rs[t] = kLog2e / a.scales[bh * 2 + bi];
    }
    __syncthreads();
    load_query_frags<1>(qf, a.qbar, ri.qrow, nrows, a.pk, poff, P);
    score_tiles<1, false>(
        kb, a.pk, poff, P, nrows, ri.rs, vmax, 0, (vmax + kTC - 1) / kTC, qf, ks,
        [&](int r, int j, float l) { lg[(size_t)r * a.LS + j] = l; }, [](int) {});
    for (int r = warp; r < nrows; r += kSelWarps) {
      const int V = ri.V[r];
      float* L = lg + (size_t)r * a.LS;
      if (V <= select::kRegKeys && (V & 31) && lane >= (V & 31))
        L[(V & ~31) + lane] = -INFINITY;  // pad the last word
      __syncwarp();
      select::select_row<TOPK>(L, V, a.T[bi], bits + (size_t)r * a.W, scratch + warp * 32);
    }
  }
  __syncthreads();
  for (int r = warp; r < nrows; r += kSelWarps)
    write_row(a, bits + (size_t)r * a.W, ri.qrow[r], ri.V[r]);
}

using SelKernel = void (*)(SelArgs);

SelKernel tiled_kernel(bool topk, int mt) {
  if (topk)
    return mt == 4   ? select_tiled_kernel<true, 4>
           : mt == 2 ? select_tiled_kernel<true, 2>
                     : select_tiled_kernel<true, 1>;
  return mt == 4   ? select_tiled_kernel<false, 4>
         : mt == 2 ? select_tiled_kernel<false, 2>
                   : select_tiled_kernel<false, 1>;
}

// The selection kernel and its launch shape.
struct SelPlan {
  SelKernel kernel;
  size_t smem;  // dynamic shared memory
  int M;        // rows per CTA
  int LS, W;    // row kernel's logit row stride; bitmap words per row
  int cap;      // tiled kernel: keys stored per row
};

// The row kernel keeps M whole logit rows in shared memory, which is fastest
// while every row fits its register path; beyond that M would shrink with the
// rows, and the tiled kernel (whose shared memory does not grow with them)
// takes over. Throws for shapes neither can take.
cudaError_t plan_selection(const Geometry& g, bool topk, int optin, SelPlan& sp) {
  const int Dmax = std::max(g.pw[0], g.pw[1]);
  sp.W = (g.nk + 31) / 32;
  if (!uses_tiled_kernel(g)) {
    sp.kernel = topk ? select_kernel<true> : select_kernel<false>;
    sp.LS = (g.nk + 31) & ~31;  // rows padded to whole 32-key words
    const size_t fixed = sizeof(float) * ((size_t)Dmax * 2 * kMaxRows + 2u * kTileFloats) +
                         sizeof(uint32_t) * 32u * kSelWarps;  // + per-warp search scratch
    const size_t per_row = sizeof(float) * (size_t)sp.LS + sizeof(uint32_t) * (size_t)sp.W;
    const size_t cap = (size_t)optin - sizeof(RowInfo);
    int M = 0;
    if (cap > fixed) M = (int)std::min<size_t>(kMaxRows, (cap - fixed) / per_row);
    // prefer 2 CTAs per SM on big rows when it costs little
    const size_t two_per_sm = 112u * 1024u - sizeof(RowInfo);
    if (M == kMaxRows && fixed + kMaxRows * per_row > two_per_sm)
      M = (int)std::max<size_t>(1, (two_per_sm - fixed) / per_row);
    require_arg(M >= 1, kWhere,
                "too many key blocks for shared memory (nk=" + std::to_string(g.nk) + ")");
    sp.M = M;
    sp.smem = fixed + (size_t)M * per_row;
    return cudaSuccess;
  }
  require_arg(g.nk <= kMaxTiledKeys, kWhere,
              "too many key blocks (nk=" + std::to_string(g.nk) + ")");
  sp.LS = 0;
  const size_t dyn_min =
      sizeof(uint32_t) * kSelWarps * (size_t)sp.W;  // write stage: a bitmap per warp
  sp.M = 0;
  for (int mt : {4, 2, 1}) {  // most rows per CTA that fit
    if (g_stress_mt && mt != g_stress_mt) continue;
    const SelKernel kern = tiled_kernel(topk, mt);
    cudaFuncAttributes fa{};
    PRISM_CUDA_TRY(cudaFuncGetAttributes(&fa, kern));
    const size_t dyn = std::max(tiled_smem_bytes(mt, Dmax), dyn_min);
    if (dyn + fa.sharedSizeBytes <= (size_t)optin) {
      sp.kernel = kern;
      sp.smem = dyn;
      sp.M = 16 * mt;
      break;
    }
  }
  require_arg(sp.M > 0, kWhere,
              "too many key blocks or dims for shared memory (nk=" + std::to_string(g.nk) + ")");
  // Stored keys sit in the row's workspace scratch after the band bitmaps.
  sp.cap = tiled_cap(g);
  return cudaSuccess;
}

uint32_t topp_threshold(float tau) {
  if (!(tau > 0.f)) return 0u;  // NaN or <= 0: nothing ranked first is < tau
  const double x = std::ceil((double)tau * 2147483648.0);
  return x >= 4294967295.0 ? 0xffffffffu : (uint32_t)x;
}
uint32_t topk_threshold(int32_t k) { return k <= 0 ? 0u : (uint32_t)k; }

}  // namespace

namespace est_internal {
void set_stage_limit(int n) { g_stage_limit = n; }
void set_select_path(int path) { g_select_path = path; }
void set_tiled_stress(int flags, int cap, int mtiles) {
  g_stress = flags;
  g_stress_cap = cap;
  g_stress_mt = mtiles;
}
}  // namespace est_internal

size_t estimate_workspace_bytes(const QkvView& q, const QkvView& k, const EstimateParams& p) {
  return ws_layout(make_geometry(q, k, p)).total;
}

cudaError_t estimate(const QkvView& q, const QkvView& k, const EstimateParams& p,
                     const BlockMaskOut& out, void* workspace, cudaStream_t stream) {
  const Geometry g = make_geometry(q, k, p);
  require_arg(q.data != nullptr && k.data != nullptr, kWhere, "q or k data is null");
  require_arg(out.counts && out.indices, kWhere, "counts and indices must be non-null");
  require_arg(workspace != nullptr, kWhere, "workspace is null");
  const WsLayout wl = ws_layout(g);
  char* ws = static_cast<char*>(workspace);
  float* qbar = reinterpret_cast<float*>(ws + wl.qbar);
  float* kbar = reinterpret_cast<float*>(ws + wl.kbar);
  float* eq = reinterpret_cast<float*>(ws + wl.eq);
  float* ek = reinterpret_cast<float*>(ws + wl.ek);
  float* scales = reinterpret_cast<float*>(ws + wl.scales);

  int dev = 0;
  PRISM_CUDA_TRY(cudaGetDevice(&dev));
  int optin = 0;
  PRISM_CUDA_TRY(cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev));
  int cc_major = 0;
  PRISM_CUDA_TRY(cudaDeviceGetAttribute(&cc_major, cudaDevAttrComputeCapabilityMajor, dev));
  const bool pdl = cc_major >= 9;
  const bool topk = p.selection == Selection::TopK;
  SelPlan sp{};
  PRISM_CUDA_TRY(plan_selection(g, topk, optin, sp));

  // 1. pooling
  {
    PoolArgs a{};
    a.q = q.data;
    a.k = k.data;
    a.qsb = q.stride_b;
    a.qsh = q.stride_h;
    a.qsn = q.stride_n;
    a.ksb = k.stride_b;
    a.ksh = k.stride_h;
    a.ksn = k.stride_n;
    a.B = g.B;
    a.Hq = g.Hq;
    a.Hkv = g.Hkv;
    a.Nq = g.Nq;
    a.Nk = g.Nk;
    a.d = g.d;
    a.blk = g.blk;
    a.nq = g.nq;
    a.nk = g.nk;
    a.shift = g.shift;
    a.b0 = g.band[0];
    a.b1 = g.band[1];
    a.pk = g.pk;
    a.poff1 = g.poff[1];
    a.qbar = qbar;
    a.kbar = kbar;
    a.eq = eq;
    a.ek = ek;
    const int64_t esz = dtype_size(q.dtype);
    const int64_t qs_[3] = {q.stride_b, q.stride_h, q.stride_n};
    const int64_t ks_[3] = {k.stride_b, k.stride_h, k.stride_n};
    const int vec =
        std::min(pick_vec(q.data, g.d, esz, qs_, 3), pick_vec(k.data, g.d, esz, ks_, 3));
    const int cpr = g.d / vec;
    const int threads = cpr <= 256 ? 256 : 512;
    const size_t smem = sizeof(float) * (size_t)(threads / cpr) * g.d;
    const int64_t units = (int64_t)g.B * g.Hq * g.nq + (int64_t)g.B * g.Hkv * g.nk;
    require_arg(units < INT_MAX, kWhere, "too many blocks");
    dispatch_float_dtype(q.dtype, [&](auto tag) {
      using Tag = decltype(tag);
      switch (vec) {
        case 8: pool_kernel<Tag, 8><<<(unsigned)units, threads, smem, stream>>>(a); break;
        case 4: pool_kernel<Tag, 4><<<(unsigned)units, threads, smem, stream>>>(a); break;
        case 2: pool_kernel<Tag, 2><<<(unsigned)units, threads, smem, stream>>>(a); break;
        default: pool_kernel<Tag, 1><<<(unsigned)units, threads, smem, stream>>>(a); break;
      }
    });
    PRISM_CUDA_TRY(cudaGetLastError());
  }
  if (g_stage_limit <= 1) return cudaGetLastError();
  // 2. temperatures
  {
    TempArgs a{};
    a.eq = eq;
    a.ek = ek;
    a.B = g.B;
    a.Hq = g.Hq;
    a.Hkv = g.Hkv;
    a.G = g.G;
    a.nq = g.nq;
    a.nk = g.nk;
    a.d = g.d;
    a.prism = g.nbands == 2 ? 1 : 0;
    a.calibrate = p.calibrate ? 1 : 0;
    a.temp_high = p.temp_high;
    a.temp_low = p.temp_low;
    a.D0 = g.band[0].w0 + g.band[0].w1;
    a.D1 = g.band[1].w0 + g.band[1].w1;
    a.scales = scales;
    a.temps = out.temps;
    PRISM_CUDA_TRY(launch_pdl(pdl, temps_kernel, (unsigned)(g.B * g.Hq), 256, 0, stream, a));
  }
  if (g_stage_limit <= 2) return cudaGetLastError();
  // 3. scores + selection + outputs
  {
    SelArgs a{};
    a.qbar = qbar;
    a.kbar = kbar;
    a.scales = scales;
    a.Hq = g.Hq;
    a.Hkv = g.Hkv;
    a.G = g.G;
    a.nq = g.nq;
    a.nk = g.nk;
    a.off = g.off;
    a.pk = g.pk;
    for (int bi = 0; bi < 2; ++bi) {
      a.poff[bi] = g.poff[bi];
      a.pw[bi] = g.pw[bi];
    }
    a.nbands = g.nbands;
    if (topk) {
      a.T[0] = topk_threshold(p.topk_high);
      a.T[1] = topk_threshold(p.topk_low);
    } else {
      a.T[0] = topp_threshold(p.tau_high);
      a.T[1] = topp_threshold(p.tau_low);
    }
    a.M = sp.M;
    a.vec_out = (g.nk % 4 == 0 && reinterpret_cast<uintptr_t>(out.mask) % 4 == 0) ? 1 : 0;
    const int64_t upb = ((int64_t)g.nq * g.G + sp.M - 1) / sp.M;
    a.upb = (int)upb;
    a.LS = sp.LS;
    a.W = sp.W;
    a.cap = sp.cap;
    a.stress = g_stress;
    a.sink = p.force_sink ? 1 : 0;
    a.diag = p.force_diag ? 1 : 0;
    a.mask = out.mask;
    a.counts = out.counts;
    a.indices = out.indices;
    a.tscratch = reinterpret_cast<uint32_t*>(ws + wl.tiled);
    a.tstride = wl.tiled_stride;
    const int64_t grid = (int64_t)g.B * g.Hkv * upb;
    require_arg(grid < INT_MAX, kWhere, "too many rows");
    if (sp.smem > 48u * 1024u)
      PRISM_CUDA_TRY(cudaFuncSetAttribute(sp.kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                          (int)sp.smem));
    PRISM_CUDA_TRY(launch_pdl(pdl, sp.kernel, (unsigned)grid, kSelThreads, sp.smem, stream, a));
  }
  return cudaGetLastError();
}

}  // namespace prism::cuda

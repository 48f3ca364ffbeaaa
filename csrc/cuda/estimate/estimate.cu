// Prism block-mask estimation on the GPU: pooling, energy temperatures,
// dual-band block scores, top-p / top-k selection, sink/diagonal, lists.
//
// Three launches, no host synchronisation:
//  1. pool_kernel: one CTA per (b, head, block) of Q and of K (each kv head
//     pooled once). Streams the rows with vector loads, fp32 sums, writes the
//     block mean and the block's per-band sums of squares (energy partials).
//  2. temps_kernel: one CTA per (b, query head) reduces the energy partials in
//     a fixed order and writes the per-band logit scales (and temps).
//  3. select_kernel: one CTA per (b, kv head, M consecutive (query block,
//     query head of the group) rows). Per band it computes the logit tile
//     [M x visible] through shared memory, then one warp per row does the
//     softmax and an exact threshold search (binary search on the float bits
//     of the probabilities, fixed-point integer mass sums: deterministic, no
//     sort), ORs the kept set into a per-row bitmap; finally every row writes
//     mask, count and ascending indices.
#include <cuda_pipeline.h>
#include <cuda_runtime.h>
#include <climits>
#include <cmath>
#include <cstdint>
#include <string>

#include "cuda/common/cuda_check.h"
#include "cuda/common/dtype_traits.cuh"
#include "cuda/cuda_backend.h"
#include "cuda/estimate/estimate_internal.h"

namespace prism::cuda {
namespace {

constexpr unsigned kFull = 0xffffffffu;
constexpr float kFix = 2147483648.f;  // probability fixed point: 2^31

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

// ----------------------------------------------------------------------------
// Geometry and validation
struct Geometry {
  int B, Hq, Hkv, G, Nq, Nk, d, blk, nq, nk, off;
  int nbands;
  Band band[2];
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
  g.B = (int)q.batch; g.Hq = (int)q.heads; g.Hkv = (int)k.heads; g.G = g.Hq / g.Hkv;
  g.Nq = (int)q.n; g.Nk = (int)k.n; g.d = (int)q.d; g.blk = p.block;
  g.nq = (int)num_blocks(q.n, p.block); g.nk = (int)num_blocks(k.n, p.block);
  g.off = g.nk - g.nq;
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
  return g;
}

size_t align_up(size_t x) { return (x + 255) & ~size_t(255); }

struct WsLayout {
  size_t qbar, kbar, eq, ek, scales, total;
};

WsLayout ws_layout(const Geometry& g) {
  WsLayout w{};
  size_t o = 0;
  w.qbar = o; o += align_up(sizeof(float) * (size_t)g.B * g.Hq * g.nq * g.d);
  w.kbar = o; o += align_up(sizeof(float) * (size_t)g.B * g.Hkv * g.nk * g.d);
  w.eq = o;   o += align_up(sizeof(float) * (size_t)g.B * g.Hq * g.nq * 3);
  w.ek = o;   o += align_up(sizeof(float) * (size_t)g.B * g.Hkv * g.nk * 3);
  w.scales = o; o += align_up(sizeof(float) * (size_t)g.B * g.Hq * 2);
  w.total = o;
  return w;
}

// ----------------------------------------------------------------------------
// Warp helpers
__device__ __forceinline__ float warp_max(float v) {
#pragma unroll
  for (int o = 16; o; o >>= 1) v = fmaxf(v, __shfl_xor_sync(kFull, v, o));
  return v;
}
// Butterfly: every lane ends with the same bits (each step adds the same two
// operands, commutatively), and the order is fixed: deterministic.
__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
  for (int o = 16; o; o >>= 1) v += __shfl_xor_sync(kFull, v, o);
  return v;
}

// ----------------------------------------------------------------------------
// 1. pooling
struct PoolArgs {
  const void* q;
  const void* k;
  int64_t qsb, qsh, qsn, ksb, ksh, ksn;
  int B, Hq, Hkv, Nq, Nk, d, blk, nq, nk;
  Band b0, b1;
  float* qbar;
  float* kbar;
  float* eq;
  float* ek;
};

template <class Tag, int VEC>
__global__ void __launch_bounds__(512) pool_kernel(const PoolArgs a) {
  using S = typename Tag::storage;
  extern __shared__ float red[];  // [RG][d]
  const int64_t nqu = (int64_t)a.B * a.Hq * a.nq;
  int64_t unit = blockIdx.x;
  const S* base;
  int64_t sn;
  int N, i;
  float* ov;
  float* oe;
  if (unit < nqu) {
    i = (int)(unit % a.nq);
    const int64_t bh = unit / a.nq;
    const int64_t h = bh % a.Hq, b = bh / a.Hq;
    base = static_cast<const S*>(a.q) + b * a.qsb + h * a.qsh;
    sn = a.qsn; N = a.Nq;
    ov = a.qbar + unit * a.d; oe = a.eq + unit * 3;
  } else {
    unit -= nqu;
    i = (int)(unit % a.nk);
    const int64_t bh = unit / a.nk;
    const int64_t h = bh % a.Hkv, b = bh / a.Hkv;
    base = static_cast<const S*>(a.k) + b * a.ksb + h * a.ksh;
    sn = a.ksn; N = a.Nk;
    ov = a.kbar + unit * a.d; oe = a.ek + unit * 3;
  }
  const int r0 = i * a.blk;
  const int rows = min(a.blk, N - r0);
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
    s = s / fr;
    ov[kk] = s;
    red[kk] = s;  // column kk is only touched by this thread
  }
  __syncthreads();
  if (t < 32) {
    float e = 0.f, e0 = 0.f, e1 = 0.f;
    for (int kk = t; kk < a.d; kk += 32) {
      const float x = red[kk];
      const float x2 = x * x;
      e += x2;
      if (in_band(a.b0, kk)) e0 += x2;
      if (in_band(a.b1, kk)) e1 += x2;
    }
    e = warp_sum(e); e0 = warp_sum(e0); e1 = warp_sum(e1);
    if (t == 0) { oe[0] = e; oe[1] = e0; oe[2] = e1; }
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
  const int bh = blockIdx.x;
  const int b = bh / a.Hq, h = bh % a.Hq;
  const int64_t kbh = (int64_t)b * a.Hkv + h / a.G;
  const int t = threadIdx.x;
  float s[6] = {0.f, 0.f, 0.f, 0.f, 0.f, 0.f};
  if (a.prism && a.calibrate) {
    const float* pq = a.eq + (int64_t)bh * a.nq * 3;
    for (int i = t; i < a.nq; i += 256) {
      s[0] += pq[i * 3]; s[1] += pq[i * 3 + 1]; s[2] += pq[i * 3 + 2];
    }
    const float* pk = a.ek + kbh * a.nk * 3;
    for (int j = t; j < a.nk; j += 256) {
      s[3] += pk[j * 3]; s[4] += pk[j * 3 + 1]; s[5] += pk[j * 3 + 2];
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
    if (!(scv > 0.0) || !std::isfinite(scv)) { scv = std::sqrt(dd); tv = 1.0; }
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
      if (!(scv > 0.0) || !std::isfinite(scv)) { scv = std::sqrt(Db); tv = 1.0; }
      tt[bi] = (float)tv;
      sc[bi] = (float)scv;
    }
  }
  a.scales[bh * 2] = sc[0];
  a.scales[bh * 2 + 1] = sc[1];
  if (a.temps) { a.temps[bh * 2] = tt[0]; a.temps[bh * 2 + 1] = tt[1]; }
}

// ----------------------------------------------------------------------------
// 3. scores + selection
constexpr int kSelThreads = 256;
constexpr int kTC = 128;    // key blocks per score tile (each thread: 4 rows x 2 of them)
constexpr int kKC = 32;     // band dims per score tile
constexpr int kMaxRows = 16;
constexpr int kKsStride = kTC + 1;      // scalar tiles: [kKC dims][kTC + 1]
constexpr int kKs4Stride = kKC + 4;     // float4 tiles: [kTC key blocks][kKC + 4]
constexpr int kTileFloats = kTC * kKs4Stride;  // one buffer, either layout
static_assert(kKC * kKsStride <= kTileFloats, "tile buffer");

struct SelArgs {
  const float* qbar;
  const float* kbar;
  const float* scales;
  int B, Hq, Hkv, G, nq, nk, d, off;
  Band band[2];
  int nbands, Dmax;
  int topk;
  uint32_t T[2];  // keep iff (mass or count ranked before) < T
  int M, upb, LS, W;
  int vec4;  // band ranges and d are multiples of 4: 16-byte tile copies
  int sink, diag;
  uint8_t* mask;
  int32_t* counts;
  int32_t* indices;
};

// Decide the kept set from the per-element keys (float bits of p) and weights
// (fixed-point p, or 1 for top-k), and OR it into bits[]. Rule: rank by key
// descending, ties to the lower index; keep iff the weight ranked strictly
// before is < T. With S(v) = W(key >= v), the kept set is: every key > v*, and
// the first m keys == v* in index order, where v* is the largest v with
// S(v) >= T and m = ceil((T - W(key > v*)) / w(v*)).
//
// v* is found by bisection on the key bits over [lo, hi), S(lo) >= T > S(hi),
// counting the keys left inside the interval as it goes. Once at most 32 keys
// remain, they are gathered one per lane and v* is read off exactly: it is the
// largest candidate k with S(k) >= T (S only steps at keys). Most rows need
// 8-14 full passes instead of 31.
struct Decision {
  int mode;  // 0 none, 1 all, 2 threshold
  uint32_t vstar, meq;
};

__device__ __forceinline__ uint32_t key_weight(uint32_t key, bool topk) {
  return topk ? 1u : __float2uint_rn(__uint_as_float(key) * kFix);
}

// Lower end of the search: keys below bits(p_lo) weigh less than total - T
// together, so S(bits(p_lo)) >= T. Top-k has no such bound.
__device__ __forceinline__ uint32_t search_floor(uint32_t total, uint32_t T, int V, bool topk) {
  if (topk) return 0u;
  const float slack = (float)(total - T) - 0.5f * (float)V - 2.f;
  if (!(slack > 0.f)) return 0u;
  return __float_as_uint(0.999f * slack / ((float)V * kFix));
}

// Interval state of the bisection (warp-uniform).
struct Search {
  uint32_t lo, hi, s_hi;  // S(lo) >= T > S(hi) = s_hi
  uint32_t n_lo, n_hi;    // keys >= lo, keys >= hi
};

// One bisection step from the warp's partial sums at mid: s = W(key >= mid),
// n = #(key >= mid).
__device__ __forceinline__ void search_step(Search& st, uint32_t mid, uint32_t T, uint32_t s,
                                            uint32_t n) {
  s = __reduce_add_sync(kFull, s);
  n = __reduce_add_sync(kFull, n);
  if (s >= T) {
    st.lo = mid;
    st.n_lo = n;
  } else {
    st.hi = mid;
    st.s_hi = s;
    st.n_hi = n;
  }
}

// Appends the keys of one 32-key word that lie in [lo, hi) to scratch, in index
// order (the candidates of search_finish).
__device__ __forceinline__ void gather_word(const Search& st, bool valid, uint32_t key, uint32_t& run,
                                            uint32_t* scratch) {
  const int lane = threadIdx.x & 31;
  const bool c = valid && key >= st.lo && key < st.hi;
  const uint32_t bal = __ballot_sync(kFull, c);
  if (c) scratch[run + __popc(bal & ((1u << lane) - 1u))] = key;
  run += __popc(bal);
}

// Finishes the search from the <= 32 candidate keys gathered in scratch (run of
// them; none when the bisection already closed the interval).
__device__ __forceinline__ Decision search_finish(const Search& st, const uint32_t* scratch, uint32_t run,
                                                  uint32_t T, bool topk) {
  const int lane = threadIdx.x & 31;
  const bool has = lane < (int)run;
  const uint32_t my = has ? scratch[lane] : 0u;
  Decision dc{2, st.lo, 0u};
  uint32_t gs = st.s_hi;  // W(key > v*)
  if (st.hi - st.lo > 1) {
    const uint32_t mw = has ? key_weight(my, topk) : 0u;
    uint32_t acc = st.s_hi;  // S(my)
    const int cand = (int)(st.n_lo - st.n_hi);
    for (int i = 0; i < cand; ++i) {
      const uint32_t kk = __shfl_sync(kFull, my, i);
      const uint32_t ww = __shfl_sync(kFull, mw, i);
      acc += kk >= my ? ww : 0u;
    }
    const uint32_t v = __reduce_max_sync(kFull, has && acc >= T ? my : 0u);
    dc.vstar = max(v, st.lo);
    gs += __reduce_add_sync(kFull, has && my > dc.vstar ? mw : 0u);
  }
  const uint32_t ws = key_weight(dc.vstar, topk);
  dc.meq = ws == 0 ? UINT_MAX : (T - gs + ws - 1) / ws;
  return dc;
}

// Keep decision for one 32-key word of a row (j = 32 * word + lane): ORs the
// kept keys into bits[word]. `run` counts the keys == v* met in earlier words
// (ties are kept in index order).
__device__ __forceinline__ void keep_word(const Decision& dc, bool valid, uint32_t key, uint32_t& run,
                                          uint32_t* bits_word) {
  const int lane = threadIdx.x & 31;
  bool keep;
  if (dc.mode == 0) {
    keep = false;
  } else if (dc.mode == 1) {
    keep = valid;
  } else {
    const bool eq = valid && key == dc.vstar;
    const uint32_t bal = __ballot_sync(kFull, eq);
    const uint32_t rank = run + __popc(bal & ((1u << lane) - 1u));
    run += __popc(bal);
    keep = valid && (key > dc.vstar || (eq && rank < dc.meq));
  }
  const uint32_t word = __ballot_sync(kFull, keep);
  if (lane == 0) *bits_word |= word;
}

template <int NPL>
__device__ void select_row_reg(float* L, int V, uint32_t T, bool topk, uint32_t* bits,
                               uint32_t* scratch) {
  const int lane = threadIdx.x & 31;
  uint32_t* Wt = reinterpret_cast<uint32_t*>(L);  // weights replace the logits once read
  float x[NPL];
  uint32_t key[NPL];
  float m = -INFINITY;
#pragma unroll
  for (int e = 0; e < NPL; ++e) {
    const int j = e * 32 + lane;
    x[e] = j < V ? L[j] : -INFINITY;
    m = fmaxf(m, x[e]);
  }
  m = warp_max(m);
  float z = 0.f;
#pragma unroll
  for (int e = 0; e < NPL; ++e) {
    const int j = e * 32 + lane;
    const float ex = j < V ? __expf(x[e] - m) : 0.f;
    x[e] = ex;
    z += ex;
  }
  z = warp_sum(z);
  const float rz = 1.f / z;
  uint32_t tl = 0, km = 0;
#pragma unroll
  for (int e = 0; e < NPL; ++e) {
    const int j = e * 32 + lane;
    key[e] = j < V ? __float_as_uint(x[e] * rz) : 0u;
    const uint32_t w = key_weight(key[e], topk);
    if (j < V) Wt[j] = w;
    tl += j < V ? w : 0u;
    km = max(km, key[e]);
  }
  const uint32_t total = __reduce_add_sync(kFull, tl);
  Decision dc{0, 0u, 0u};
  if (T == 0) {
    dc.mode = 0;
  } else if (total < T) {
    dc.mode = 1;
  } else {
    km = __reduce_max_sync(kFull, km);
    Search st{search_floor(total, T, V, topk), km + 1u, 0u, 0u, 0u};
    if (st.lo >= st.hi) st.lo = 0u;
    uint32_t n = 0;
#pragma unroll
    for (int e = 0; e < NPL; ++e) n += (e * 32 + lane < V && key[e] >= st.lo) ? 1u : 0u;
    st.n_lo = __reduce_add_sync(kFull, n);
    __syncwarp();
    while (st.hi - st.lo > 1 && st.n_lo - st.n_hi > 32u) {
      const uint32_t mid = st.lo + ((st.hi - st.lo) >> 1);
      uint32_t s = 0, c = 0;
#pragma unroll
      for (int e = 0; e < NPL; ++e) {
        if (key[e] >= mid) {  // invalid lanes hold key 0 < mid
          s += Wt[e * 32 + lane];
          ++c;
        }
      }
      search_step(st, mid, T, s, c);
    }
    // gather the candidates, one per lane
    uint32_t run = 0;
    if (st.hi - st.lo > 1) {
#pragma unroll
      for (int e = 0; e < NPL; ++e) gather_word(st, e * 32 + lane < V, key[e], run, scratch);
      __syncwarp();
    }
    dc = search_finish(st, scratch, run, T, topk);
    __syncwarp();
  }
  uint32_t run = 0;
#pragma unroll
  for (int e = 0; e < NPL; ++e) {
    if (e * 32 >= V) break;  // warp-uniform
    keep_word(dc, e * 32 + lane < V, key[e], run, bits + e);
  }
}

// Same rule for rows longer than the register path: values stay in shared
// memory (L is overwritten with the probability bits).
__device__ void select_row_smem(float* L, int V, uint32_t T, bool topk, uint32_t* bits,
                                uint32_t* scratch) {
  const int lane = threadIdx.x & 31;
  uint32_t* K = reinterpret_cast<uint32_t*>(L);
  float m = -INFINITY;
  for (int j = lane; j < V; j += 32) m = fmaxf(m, L[j]);
  m = warp_max(m);
  float z = 0.f;
  for (int j = lane; j < V; j += 32) {
    const float ex = __expf(L[j] - m);
    L[j] = ex;
    z += ex;
  }
  z = warp_sum(z);
  uint32_t tl = 0, km = 0;
  const float rz = 1.f / z;
  for (int j = lane; j < V; j += 32) {
    const uint32_t kb = __float_as_uint(L[j] * rz);
    K[j] = kb;
    tl += key_weight(kb, topk);
    km = max(km, kb);
  }
  const uint32_t total = __reduce_add_sync(kFull, tl);
  km = __reduce_max_sync(kFull, km);
  Decision dc{0, 0u, 0u};
  if (T == 0) {
    dc.mode = 0;
  } else if (total < T) {
    dc.mode = 1;
  } else {
    Search st{search_floor(total, T, V, topk), km + 1u, 0u, 0u, 0u};
    if (st.lo >= st.hi) st.lo = 0u;
    uint32_t n = 0;
    for (int j = lane; j < V; j += 32) n += K[j] >= st.lo ? 1u : 0u;
    st.n_lo = __reduce_add_sync(kFull, n);
    while (st.hi - st.lo > 1 && st.n_lo - st.n_hi > 32u) {
      const uint32_t mid = st.lo + ((st.hi - st.lo) >> 1);
      uint32_t s = 0, c = 0;
      for (int j = lane; j < V; j += 32) {
        const uint32_t k = K[j];
        if (k >= mid) {
          s += key_weight(k, topk);
          ++c;
        }
      }
      search_step(st, mid, T, s, c);
    }
    uint32_t run = 0;
    if (st.hi - st.lo > 1) {
      for (int base = 0; base < V; base += 32) {
        const int j = base + lane;
        gather_word(st, j < V, j < V ? K[j] : 0u, run, scratch);
      }
      __syncwarp();
    }
    dc = search_finish(st, scratch, run, T, topk);
    __syncwarp();
  }
  uint32_t run = 0;
  const int nw = (V + 31) / 32;
  for (int e = 0; e < nw; ++e) {
    const int j = e * 32 + lane;
    const bool valid = j < V;
    keep_word(dc, valid, valid ? K[j] : 0u, run, bits + e);
  }
}

__device__ __forceinline__ void select_row(float* L, int V, uint32_t T, bool topk, uint32_t* bits,
                                           uint32_t* scratch) {
  if (V <= 128) select_row_reg<4>(L, V, T, topk, bits, scratch);
  else if (V <= 256) select_row_reg<8>(L, V, T, topk, bits, scratch);
  else if (V <= 512) select_row_reg<16>(L, V, T, topk, bits, scratch);
  else if (V <= 1024) select_row_reg<32>(L, V, T, topk, bits, scratch);
  else select_row_smem(L, V, T, topk, bits, scratch);
}

__global__ void __launch_bounds__(kSelThreads, 2) select_kernel(const SelArgs a) {
  extern __shared__ __align__(16) float smem[];
  float* qs = smem;                                   // [Dmax][16]
  float* ks = qs + a.Dmax * kMaxRows;                 // [2][kTileFloats]
  float* lg = ks + 2 * kTileFloats;                   // [M][LS]
  uint32_t* bits = reinterpret_cast<uint32_t*>(lg + (size_t)a.M * a.LS);  // [M][W]
  uint32_t* scratch = bits + (size_t)a.M * a.W;                           // [warps][32]
  const int t = threadIdx.x, lane = t & 31, warp = t >> 5;
  const int64_t bk = blockIdx.x / a.upb;               // b * Hkv + kv head
  const int u = a.upb - 1 - (int)(blockIdx.x % a.upb);  // long rows first
  const int b = (int)(bk / a.Hkv), hk = (int)(bk % a.Hkv);
  const int total_rows = a.nq * a.G;
  const int row0 = u * a.M;
  const int nrows = min(a.M, total_rows - row0);
  const int imax = (row0 + nrows - 1) / a.G;
  const int vmax = min(imax + a.off + 1, a.nk);
  for (int x = t; x < a.M * a.W; x += kSelThreads) bits[x] = 0u;
  const float* kb = a.kbar + bk * a.nk * a.d;
  const int col = t & (kTC / 2 - 1), rg = t / (kTC / 2);  // columns col and col + kTC/2
  // query (b, head, block) of local row r
  auto row_head = [&](int r) { return hk * a.G + (row0 + r) % a.G; };
  auto row_blk = [&](int r) { return (row0 + r) / a.G; };

  for (int bi = 0; bi < a.nbands; ++bi) {
    const Band bd = a.band[bi];
    const int D = bd.w0 + bd.w1;
    for (int x = t; x < D * kMaxRows; x += kSelThreads) {
      const int kk = x / kMaxRows, r = x % kMaxRows;
      float v = 0.f;
      if (r < nrows) {
        const int64_t qrow = ((int64_t)b * a.Hq + row_head(r)) * a.nq + row_blk(r);
        v = a.qbar[qrow * a.d + band_dim(bd, kk)];
      }
      qs[kk * kMaxRows + r] = v;
    }
    float scr[4];
#pragma unroll
    for (int rr = 0; rr < 4; ++rr) {
      const int r = rg * 4 + rr;
      scr[rr] = r < nrows ? a.scales[((int64_t)b * a.Hq + row_head(r)) * 2 + bi] : 1.f;
    }
    __syncthreads();
    // Score tiles [kTC key blocks x kKC band dims], double-buffered with
    // cp.async so the L2 latency of the next tile hides behind this one.
    const int nkc = (D + kKC - 1) / kKC;
    const int ntiles = ((vmax + kTC - 1) / kTC) * nkc;
    // Tiles run key-block tile major, dim chunk minor; (tc, kc) counters
    // instead of a division per tile.
    auto advance = [nkc](int& tc, int& kc) {
      if (++kc == nkc) {
        kc = 0;
        ++tc;
      }
    };
    auto issue = [&](int tc, int kc, int buf) {
      const int c0 = tc * kTC, k0 = kc * kKC;
      float* dst = ks + buf * kTileFloats;
      if (a.vec4) {  // [key block][dims], 16-byte chunks (a chunk never straddles a band range)
        for (int x = t; x < kTC * (kKC / 4); x += kSelThreads) {
          const int c = x / (kKC / 4), c4 = x % (kKC / 4);
          const int j = c0 + c, dim = k0 + c4 * 4;
          float* sp = dst + c * kKs4Stride + c4 * 4;
          if (j < vmax && dim < D) __pipeline_memcpy_async(sp, kb + (int64_t)j * a.d + band_dim(bd, dim), 16);
          else *reinterpret_cast<float4*>(sp) = make_float4(0.f, 0.f, 0.f, 0.f);
        }
      } else {  // [dims][key block], one float at a time
        for (int x = t; x < kKC * kTC; x += kSelThreads) {
          const int kk = x % kKC, c = x / kKC;
          const int j = c0 + c, dim = k0 + kk;
          float* sp = dst + kk * kKsStride + c;
          if (j < vmax && dim < D) __pipeline_memcpy_async(sp, kb + (int64_t)j * a.d + band_dim(bd, dim), sizeof(float));
          else *sp = 0.f;
        }
      }
      __pipeline_commit();
    };
    const bool active = rg * 4 < nrows;  // warp-uniform: rg is constant per warp
    float acc[2][4] = {};
    int cur_t = 0, cur_k = 0, nxt_t = 0, nxt_k = 0;
    issue(0, 0, 0);
    advance(nxt_t, nxt_k);
    for (int tile = 0; tile < ntiles; ++tile) {
      const int buf = tile & 1;
      if (tile + 1 < ntiles) {
        issue(nxt_t, nxt_k, buf ^ 1);
        advance(nxt_t, nxt_k);
        __pipeline_wait_prior(1);
      } else {
        __pipeline_wait_prior(0);
      }
      __syncthreads();
      const int c0 = cur_t * kTC, k0 = cur_k * kKC;
      advance(cur_t, cur_k);
      if (k0 == 0) {
#pragma unroll
        for (int h = 0; h < 2; ++h)
#pragma unroll
          for (int rr = 0; rr < 4; ++rr) acc[h][rr] = 0.f;
      }
      if (active) {
        const int kn = min(kKC, D - k0);
        const float4* q4 = reinterpret_cast<const float4*>(qs + k0 * kMaxRows) + rg;
        if (a.vec4) {
          const float* kt0 = ks + buf * kTileFloats + col * kKs4Stride;
          const float* kt1 = kt0 + (kTC / 2) * kKs4Stride;
#pragma unroll 2
          for (int kk = 0; kk < kn; kk += 4) {
            const float4 k0v = *reinterpret_cast<const float4*>(kt0 + kk);
            const float4 k1v = *reinterpret_cast<const float4*>(kt1 + kk);
            const float kv[2][4] = {{k0v.x, k0v.y, k0v.z, k0v.w}, {k1v.x, k1v.y, k1v.z, k1v.w}};
#pragma unroll
            for (int u = 0; u < 4; ++u) {
              const float4 qv = q4[(kk + u) * (kMaxRows / 4)];
#pragma unroll
              for (int h = 0; h < 2; ++h) {
                acc[h][0] = fmaf(qv.x, kv[h][u], acc[h][0]);
                acc[h][1] = fmaf(qv.y, kv[h][u], acc[h][1]);
                acc[h][2] = fmaf(qv.z, kv[h][u], acc[h][2]);
                acc[h][3] = fmaf(qv.w, kv[h][u], acc[h][3]);
              }
            }
          }
        } else {
          const float* kt = ks + buf * kTileFloats;
#pragma unroll 4
          for (int kk = 0; kk < kn; ++kk) {
            const float4 qv = q4[kk * (kMaxRows / 4)];
#pragma unroll
            for (int h = 0; h < 2; ++h) {
              const float kv = kt[kk * kKsStride + col + h * (kTC / 2)];
              acc[h][0] = fmaf(qv.x, kv, acc[h][0]);
              acc[h][1] = fmaf(qv.y, kv, acc[h][1]);
              acc[h][2] = fmaf(qv.z, kv, acc[h][2]);
              acc[h][3] = fmaf(qv.w, kv, acc[h][3]);
            }
          }
        }
        if (k0 + kKC >= D) {
#pragma unroll
          for (int h = 0; h < 2; ++h) {
            const int j = c0 + col + h * (kTC / 2);
            if (j < vmax) {
#pragma unroll
              for (int rr = 0; rr < 4; ++rr) {
                const int r = rg * 4 + rr;
                if (r < nrows) lg[(size_t)r * a.LS + j] = acc[h][rr] / scr[rr];
              }
            }
          }
        }
      }
      __syncthreads();  // buffer buf is refilled by the next iteration's issue
    }
    __syncthreads();
    for (int r = warp; r < nrows; r += kSelThreads / 32) {
      const int V = min(row_blk(r) + a.off + 1, a.nk);
      select_row(lg + (size_t)r * a.LS, V, a.T[bi], a.topk != 0, bits + (size_t)r * a.W,
                 scratch + warp * 32);
    }
    __syncthreads();
  }

  // outputs
  const uint32_t lt = (1u << lane) - 1u;
  for (int r = warp; r < nrows; r += kSelThreads / 32) {
    const int i = row_blk(r);
    const int V = min(i + a.off + 1, a.nk);
    const int dj = i + a.off;
    const int64_t rowid = ((int64_t)b * a.Hq + row_head(r)) * a.nq + i;
    const int64_t base = rowid * a.nk;
    const uint32_t* br = bits + (size_t)r * a.W;
    uint32_t run = 0;
    for (int e = 0; e < a.W; ++e) {
      const int j = e * 32 + lane;
      bool sel = false;
      if (j < V) {
        sel = (br[e] >> lane) & 1u;
        if (a.sink && j == 0) sel = true;
        if (a.diag && j == dj) sel = true;
      }
      if (j < a.nk) a.mask[base + j] = sel ? 1 : 0;
      const uint32_t bal = __ballot_sync(kFull, sel);
      if (sel) a.indices[base + run + __popc(bal & lt)] = j;
      run += __popc(bal);
    }
    for (int j = (int)run + lane; j < a.nk; j += 32) a.indices[base + j] = -1;
    if (lane == 0) a.counts[rowid] = (int32_t)run;
  }
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
}  // namespace est_internal

size_t estimate_workspace_bytes(const QkvView& q, const QkvView& k, const EstimateParams& p) {
  return ws_layout(make_geometry(q, k, p)).total;
}

cudaError_t estimate(const QkvView& q, const QkvView& k, const EstimateParams& p,
                     const BlockMaskOut& out, void* workspace, cudaStream_t stream) {
  const Geometry g = make_geometry(q, k, p);
  require_arg(q.data != nullptr && k.data != nullptr, kWhere, "q or k data is null");
  require_arg(out.mask && out.counts && out.indices, kWhere, "mask, counts and indices must be non-null");
  require_arg(workspace != nullptr, kWhere, "workspace is null");
  const WsLayout wl = ws_layout(g);
  char* ws = static_cast<char*>(workspace);
  float* qbar = reinterpret_cast<float*>(ws + wl.qbar);
  float* kbar = reinterpret_cast<float*>(ws + wl.kbar);
  float* eq = reinterpret_cast<float*>(ws + wl.eq);
  float* ek = reinterpret_cast<float*>(ws + wl.ek);
  float* scales = reinterpret_cast<float*>(ws + wl.scales);

  // Selection kernel geometry (shared memory bound rows per CTA).
  int dev = 0;
  PRISM_CUDA_TRY(cudaGetDevice(&dev));
  int optin = 0;
  PRISM_CUDA_TRY(cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev));
  const int Dmax = (g.nbands == 1) ? g.d : std::max(g.band[0].w0 + g.band[0].w1, g.band[1].w0 + g.band[1].w1);
  const int LS = (g.nk + 3) & ~3;
  const int W = (g.nk + 31) / 32;
  const size_t fixed = sizeof(float) * ((size_t)Dmax * kMaxRows + 2u * kTileFloats) +
                       sizeof(uint32_t) * 32u * (kSelThreads / 32);  // + per-warp search scratch
  const size_t per_row = sizeof(float) * (size_t)LS + sizeof(uint32_t) * (size_t)W;
  const size_t cap = (size_t)optin;
  int M = 0;
  if (cap > fixed) M = (int)std::min<size_t>(kMaxRows, (cap - fixed) / per_row);
  // prefer >= 2 CTAs per SM on big rows when it costs little
  if (M == kMaxRows && fixed + kMaxRows * per_row > 112u * 1024u) M = (int)std::max<size_t>(1, (112u * 1024u - fixed) / per_row);
  require_arg(M >= 1, kWhere, "too many key blocks for shared memory (nk=" + std::to_string(g.nk) + ")");
  const size_t sel_smem = fixed + (size_t)M * per_row;

  // 1. pooling
  {
    PoolArgs a{};
    a.q = q.data; a.k = k.data;
    a.qsb = q.stride_b; a.qsh = q.stride_h; a.qsn = q.stride_n;
    a.ksb = k.stride_b; a.ksh = k.stride_h; a.ksn = k.stride_n;
    a.B = g.B; a.Hq = g.Hq; a.Hkv = g.Hkv; a.Nq = g.Nq; a.Nk = g.Nk; a.d = g.d; a.blk = g.blk;
    a.nq = g.nq; a.nk = g.nk; a.b0 = g.band[0]; a.b1 = g.band[1];
    a.qbar = qbar; a.kbar = kbar; a.eq = eq; a.ek = ek;
    const int64_t esz = dtype_size(q.dtype);
    const int64_t qs_[3] = {q.stride_b, q.stride_h, q.stride_n};
    const int64_t ks_[3] = {k.stride_b, k.stride_h, k.stride_n};
    const int vec = std::min(pick_vec(q.data, g.d, esz, qs_, 3), pick_vec(k.data, g.d, esz, ks_, 3));
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
    a.eq = eq; a.ek = ek; a.B = g.B; a.Hq = g.Hq; a.Hkv = g.Hkv; a.G = g.G;
    a.nq = g.nq; a.nk = g.nk; a.d = g.d;
    a.prism = g.nbands == 2 ? 1 : 0;
    a.calibrate = p.calibrate ? 1 : 0;
    a.temp_high = p.temp_high; a.temp_low = p.temp_low;
    a.D0 = g.band[0].w0 + g.band[0].w1; a.D1 = g.band[1].w0 + g.band[1].w1;
    a.scales = scales; a.temps = out.temps;
    temps_kernel<<<(unsigned)(g.B * g.Hq), 256, 0, stream>>>(a);
    PRISM_CUDA_TRY(cudaGetLastError());
  }
  if (g_stage_limit <= 2) return cudaGetLastError();
  // 3. scores + selection + outputs
  {
    SelArgs a{};
    a.qbar = qbar; a.kbar = kbar; a.scales = scales;
    a.B = g.B; a.Hq = g.Hq; a.Hkv = g.Hkv; a.G = g.G; a.nq = g.nq; a.nk = g.nk; a.d = g.d; a.off = g.off;
    a.band[0] = g.band[0]; a.band[1] = g.band[1]; a.nbands = g.nbands; a.Dmax = Dmax;
    a.topk = p.selection == Selection::TopK ? 1 : 0;
    if (a.topk) {
      a.T[0] = topk_threshold(p.topk_high); a.T[1] = topk_threshold(p.topk_low);
    } else {
      a.T[0] = topp_threshold(p.tau_high); a.T[1] = topp_threshold(p.tau_low);
    }
    a.M = M;
    {
      bool v4 = g.d % 4 == 0;
      for (int bi = 0; bi < g.nbands; ++bi)
        v4 = v4 && g.band[bi].s0 % 4 == 0 && g.band[bi].w0 % 4 == 0 && g.band[bi].s1 % 4 == 0 &&
             g.band[bi].w1 % 4 == 0;
      a.vec4 = v4 ? 1 : 0;
    }
    const int64_t upb = ((int64_t)g.nq * g.G + M - 1) / M;
    a.upb = (int)upb;
    a.LS = LS; a.W = W;
    a.sink = p.force_sink ? 1 : 0; a.diag = p.force_diag ? 1 : 0;
    a.mask = out.mask; a.counts = out.counts; a.indices = out.indices;
    const int64_t grid = (int64_t)g.B * g.Hkv * upb;
    require_arg(grid < INT_MAX, kWhere, "too many rows");
    if (sel_smem > 48u * 1024u)
      PRISM_CUDA_TRY(cudaFuncSetAttribute(select_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)sel_smem));
    select_kernel<<<(unsigned)grid, kSelThreads, sel_smem, stream>>>(a);
    PRISM_CUDA_TRY(cudaGetLastError());
  }
  return cudaGetLastError();
}

}  // namespace prism::cuda

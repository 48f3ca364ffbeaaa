// Selection for rows of any length (the tiled path): no logit row is ever held
// whole, so the rows per CTA do not shrink as rows grow.
//
// One CTA per (b, kv head, R = 16 * MT consecutive (query block, query head of
// the group) rows). Per band the logits are recomputed tile by tile (128 key
// blocks, score_tiles) into a small staging tile that TPR threads per row read;
// probabilities are never stored. Sweeps over the tiles:
//  1. probe: the tiles holding the sink and the rows' diagonals (where a causal
//     row's largest score usually is) give each row a guess m of its max logit;
//  2. z: x = 2^(l - m) summed per lane in the row kernel's order (lane j % 32;
//     four partials by (j / 32) % 4 up to 1024 keys, one partial beyond: the
//     register and the shared-memory path of select_row.cuh), so rz = 1 / z has
//     the same bits; also a histogram of x per quarter octave. A row whose guess
//     was exceeded repeats the sweep with its true max;
//  3. keys: p = x * rz, key and fixed-point weight as in select_row.cuh. The
//     histogram brackets the threshold key v* in [ka, kb]; a sweep marks every
//     key > kb in the band's bitmap, sums their weight (wa) and stores the keys
//     inside the bracket in index order. With wa < T <= wa + (weight inside),
//     decide() resolves the rule exactly on the stored keys with wa above them.
//     A bracket that misses v* moves; one holding more keys than fit narrows
//     to the sub-range of the sweep's exact sub-histogram that holds v*; a
//     single key value left is kept by index rank during the next sweep.
// The band bitmaps and the stored keys live in a per-row scratch of the
// estimation workspace (the output has room for a row's selection only).
// STORED: the sweeps read the logits that logits_kernel stored
// (logit_store.cuh) instead of recomputing them, and each warp sweeps its own
// rows as far as its own longest open row, waiting for no other warp until
// the sweep ends; everything else is the same.
#pragma once

#include <cuda_runtime.h>
#include <climits>
#include <cstdint>
#include <type_traits>

#include "cuda/estimate/logit_store.cuh"
#include "cuda/estimate/pdl.cuh"
#include "cuda/estimate/select_common.cuh"
#include "cuda/estimate/select_row.cuh"

namespace prism::cuda::sel {

constexpr int kStageStride = kTC + 4;  // staging row (floats): conflict-free vector reads
// z sweep histogram: x by its exponent and top two mantissa bits (quarter
// octaves); the top bucket starts at x = 1, bucket 0 (untracked) takes x < 1.5 * 2^-32.
constexpr int kHistBuckets = 128;
constexpr int kHistBase =
    508 - (kHistBuckets - 1);    // bucket = (bits(x) >> 21) - kHistBase; bits(1) >> 21 = 508
constexpr int kSubBuckets = 32;  // linear sub-ranges of a key bracket, one per lane
constexpr int kMaxStored = select::kRegKeys;  // stored keys per row: the register decision's limit
constexpr int kMaxTiledKeys = 1 << 18;  // a key adds < 2^14 to a histogram bucket: sums fit 32 bits

// SelArgs::stress bits, for tests: skip the max probe; start every row's
// search from a bracket below / above its threshold key.
constexpr int kStressNoProbe = 1, kStressLow = 2, kStressHigh = 4;

// Words of a row's tiled-kernel scratch before its stored keys: the band
// bitmaps, rounded up to even so that each (key, index) pair is one 8-byte store.
__host__ __device__ __forceinline__ constexpr int tiled_cand_offset(int nbands, int W) {
  return (nbands * W + 1) & ~1;
}

enum : uint8_t { kDone = 0, kBracket = 1, kTies = 2, kAll = 3 };

#ifdef PRISM_TUNING_VARIANTS
// Harness builds: score tiles swept, by kind (est_internal::tiled_sweep_counts).
enum { kCountPasses, kCountProbe, kCountZ, kCountKeys, kCountKinds };
__device__ unsigned long long g_tiles_swept[kCountKinds];
#define PRISM_COUNT_TILES(kind, n) \
  if (threadIdx.x == 0) atomicAdd(&g_tiles_swept[kind], (unsigned long long)(n))
#else
#define PRISM_COUNT_TILES(kind, n)
#endif

template <int R>
struct TiledRows {
  int64_t qrow[R];  // (b * Hq + head) * nq + query block
  int V[R];         // visible key blocks (0 past the CTA's rows)
  float rs[R];      // log2(e) / scale of the current band
  float m[R], seen[R], rz[R];
  uint32_t ka[R], kb[R];    // key bracket of the next sweep
  uint32_t olo[R], ohi[R];  // keys known to hold v*
  uint32_t wa[R], wc[R], nc[R], kmin[R],
      kmax[R];      // last sweep: weight above, weight / count inside, range of the keys not stored
  uint32_t meq[R];  // kTies: keys == ka kept, in index order
  uint8_t mode[R], sh[R];  // sh: sub-histogram shift of the bracket
};

// Dynamic shared memory of the tiled kernel (bytes): recomputing, query
// fragments, key tile double buffer, staging tile, histograms; stored, two
// staging tiles and the histograms.
__host__ __device__ constexpr size_t tiled_smem_bytes(int mt, int pmax, bool stored) {
  return stored ? sizeof(float) * (size_t)16 * mt * (2 * kStageStride + kHistBuckets)
                : sizeof(float) * ((size_t)pmax * mt * 32 + 2 * kTileFloats +
                                   (size_t)16 * mt * (kStageStride + kHistBuckets));
}

template <int N>
__device__ __forceinline__ void load_floats(const float* p, float (&v)[N]) {
  static_assert(N == 2 || N % 4 == 0, "vector loads");
  if constexpr (N == 2) {
    const float2 x = *reinterpret_cast<const float2*>(p);
    v[0] = x.x;
    v[1] = x.y;
  } else {
#pragma unroll
    for (int q = 0; q < N / 4; ++q) {
      const float4 x = reinterpret_cast<const float4*>(p)[q];
      v[4 * q] = x.x;
      v[4 * q + 1] = x.y;
      v[4 * q + 2] = x.z;
      v[4 * q + 3] = x.w;
    }
  }
}

// Reduction over the TPR consecutive lanes that share a row.
template <int TPR, class T, class Op>
__device__ __forceinline__ T row_reduce(T v, Op op) {
#pragma unroll
  for (int o = 1; o < TPR; o <<= 1) v = op(v, __shfl_xor_sync(select::kFull, v, o));
  return v;
}

// Smallest shift that cuts [ka, kb] into at most kSubBuckets sub-ranges.
__device__ __forceinline__ uint8_t sub_shift(uint32_t ka, uint32_t kb) {
  static_assert(kSubBuckets == 32, "range >> s < 32: s = bit length of range - 5");
  const uint32_t range = kb > ka ? kb - ka : 0u;
  return (uint8_t)max(0, 32 - __clz(range) - 5);
}

// Sub-range of a key inside the bracket [ka, ...] cut by shift sh.
__device__ __forceinline__ uint32_t sub_bucket(uint32_t key, uint32_t ka, int sh) {
  return min((key - ka) >> sh, (uint32_t)kSubBuckets - 1u);
}

// The exact rule on the n <= 32 * NPL keys stored for a row (index order), with
// weight `above` ranked above all of them; ORs the kept ones into the bitmap.
template <int NPL, bool TOPK>
__device__ void resolve_regs(const uint32_t* cand, int n, uint32_t above, uint32_t T, uint32_t* bm,
                             uint32_t* scratch) {
  const int lane = threadIdx.x & 31;
  uint32_t key[NPL], jj[NPL], w[TOPK ? 1 : NPL];
  uint32_t tl = 0;
#pragma unroll
  for (int e = 0; e < NPL; ++e) {
    const int i = 32 * e + lane;
    key[e] = i < n ? __ldcg(cand + 2 * i) : 0u;
    jj[e] = i < n ? __ldcg(cand + 2 * i + 1) : 0u;
    if constexpr (!TOPK) {
      w[e] = select::key_weight<false>(key[e]);
      tl += w[e];
    }
  }
  const uint32_t total = above + (TOPK ? (uint32_t)n : __reduce_add_sync(select::kFull, tl));
  const select::Decision dc = select::decide_regs<NPL, TOPK>(key, w, total, T, n, above, scratch);
  uint32_t run = 0;
#pragma unroll
  for (int e = 0; e < NPL; ++e) {
    if (e * 32 >= n) break;  // warp-uniform
    const uint32_t word = select::keep_word(dc, key[e], run);
    if ((word >> lane) & 1u) atomicOr(bm + (jj[e] >> 5), 1u << (jj[e] & 31));
  }
}

template <bool TOPK>
__device__ void resolve_stored(const uint32_t* cand, int n, uint32_t above, uint32_t T,
                               uint32_t* bm, uint32_t* scratch) {
  static_assert(kMaxStored == 32 * 32, "stored keys: at most 32 per lane");
  if (n <= 128)
    resolve_regs<4, TOPK>(cand, n, above, T, bm, scratch);
  else if (n <= 256)
    resolve_regs<8, TOPK>(cand, n, above, T, bm, scratch);
  else if (n <= 512)
    resolve_regs<16, TOPK>(cand, n, above, T, bm, scratch);
  else
    resolve_regs<32, TOPK>(cand, n, above, T, bm, scratch);
}

// After a key sweep, one warp per open row: resolve the row, or set up the
// next sweep. sub: the sweep's sub-histogram (exact weights) of the bracket's
// keys it could not store (the stored ones are added here, only when a too
// full bracket needs it, so a sweep that stores them all does no atomics);
// bm: the band's bitmap; cand: the stored keys (key, j).
template <bool TOPK, int R>
__device__ void next_sweep(TiledRows<R>& st, int r, uint32_t T, int cap, uint32_t* sub,
                           uint32_t* bm, const uint32_t* cand, uint32_t* scratch) {
  const int lane = threadIdx.x & 31;
  const uint32_t wa = st.wa[r], wc = st.wc[r], nc = st.nc[r];
  uint32_t ka = st.ka[r], kb = st.kb[r], olo = st.olo[r], ohi = st.ohi[r], meq = 0u;
  uint8_t mode = st.mode[r];
  if (mode != kBracket) {
    mode = kDone;  // ties / keep all: the sweep set every bit
  } else if (wa >= T) {
    ka = olo = kb + 1u;  // v* above the bracket
    kb = ohi;
  } else if (wa + wc < T && ka > 1u) {
    kb = ohi = ka - 1u;  // v* below the bracket (or every key is kept)
    ka = olo;
  } else if (nc <= (uint32_t)cap) {
    resolve_stored<TOPK>(cand, (int)nc, wa, T, bm, scratch);  // also "keep all" when ka == 1
    mode = kDone;
  } else if (wa + wc < T) {
    mode = kAll;  // keep every key, more than could be stored
    ka = UINT_MAX;
    kb = 0u;
  } else {
    // v* inside a bracket holding too many keys: the sub-range that holds it.
    uint32_t above = wa;
    // The sweep added the keys it could not store to the sub-histogram and
    // their range to kmin / kmax; the stored ones join both now (should the
    // range be one key value, the sub-histogram is not read).
    uint32_t kmin = st.kmin[r], kmax = st.kmax[r];
    for (int i = lane; i < cap; i += 32) {
      const uint32_t key = __ldcg(cand + 2 * i);
      atomicAdd(sub + sub_bucket(key, ka, st.sh[r]), select::key_weight<TOPK>(key));
      kmin = min(kmin, key);
      kmax = max(kmax, key);
    }
    kmin = __reduce_min_sync(select::kFull, kmin);
    kmax = __reduce_max_sync(select::kFull, kmax);
    if (kmin != kmax) {
      __syncwarp();
      uint32_t s = sub[lane];  // weight of sub-ranges >= lane
#pragma unroll
      for (int o = 1; o < 32; o <<= 1) {
        const uint32_t v = __shfl_down_sync(select::kFull, s, o);
        if (lane + o < 32) s += v;
      }
      const int top =
          31 - __clz(__ballot_sync(select::kFull, wa + s >= T));  // lane 0: wa + wc >= T
      const uint32_t rest = __shfl_sync(select::kFull, s, (top + 1) & 31);
      if (top < 31) above += rest;
      const uint64_t lo = (uint64_t)ka + ((uint64_t)top << st.sh[r]);
      const uint64_t hi = lo + ((uint64_t)1 << st.sh[r]) - 1u;
      ka = (uint32_t)max(lo, (uint64_t)kmin);
      kb = (uint32_t)min(min(hi, (uint64_t)kb), (uint64_t)kmax);
    } else {
      ka = kb = kmin;
    }
    olo = ka;
    ohi = kb;
    if (ka == kb) {  // one key value: its first meq in index order are kept
      mode = kTies;
      const uint32_t wv = select::key_weight<TOPK>(ka);
      meq = wv == 0u ? UINT_MAX : (T - above + wv - 1u) / wv;
    }
  }
  __syncwarp();  // every lane has read the row's state (and its mode, in the caller)
  if (lane == 0) {
    st.ka[r] = ka;
    st.kb[r] = kb;
    st.olo[r] = olo;
    st.ohi[r] = ohi;
    st.meq[r] = meq;
    st.mode[r] = mode;
    st.sh[r] = sub_shift(ka, kb);
  }
}

// CTAs per SM the registers leave room for. The more warps, the more of the
// per-key dependency chains they hide, up to where spills cost more. 32 rows
// on stored logits: three on sm_90 (80 registers, ~0.4 KB of spills; 3.5%
// faster at 512K and 1M on an H200 than two, and four 1.5-4% slower than
// three), two before it, whose shared memory holds no third CTA (sm_80: 164
// KB an SM), so that fewer registers would buy only spills. 32 rows
// recomputing their logits: two (128 registers; the shared memory holds no
// third). 16 rows (only where 32 do not fit): two. 64 rows: one, no spills.
template <int MT, bool STORED>
constexpr int tiled_ctas_per_sm() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ < 900
  constexpr int stored32 = 2;
#else
  constexpr int stored32 = 3;
#endif
  return MT == 4 ? 1 : MT == 2 && STORED ? stored32 : 2;
}

template <bool TOPK, int MT, bool STORED>
__global__ void __launch_bounds__(kSelThreads, tiled_ctas_per_sm<MT, STORED>())
    select_tiled_kernel(const SelArgs a) {
  constexpr int R = 16 * MT, TPR = kSelThreads / R, LPT = 32 / TPR;
  static_assert(TPR >= 4 && LPT >= 2,
                "each of a row's first four threads writes one word of a tile");
  extern __shared__ __align__(16) float smem[];
  __shared__ TiledRows<R> st;
  __shared__ uint32_t scratch[kSelWarps * 32];
  __shared__ uint32_t untracked[kSelThreads];  // z sweep: a thread's adds nobody reads
  __shared__ Slabs<MT> sl;
  const int pmax = STORED ? 0 : max(a.pw[0], a.pw[1]);
  float4* qf = reinterpret_cast<float4*>(smem);       // [pmax / 8][MT][hi, lo][32]
  float* ks = smem + (size_t)pmax * MT * 32;          // [2][kTileFloats]
  float* stg = STORED ? smem : ks + 2 * kTileFloats;  // [STORED ? 2 : 1][R][kStageStride]
  uint32_t* hist = reinterpret_cast<uint32_t*>(
      stg + (STORED ? 2 : 1) * R * kStageStride);  // [R][kHistBuckets] or [R][kSubBuckets]
  const int t = threadIdx.x, lane = t & 31, warp = t >> 5;
  const int r = t / TPR,
            c = t % TPR;  // as a consumer: row r, lanes [c * LPT, (c + 1) * LPT) of each word
  const CtaRows cr(a, R);
  const int64_t bk = cr.bk;
  const int nrows = cr.nrows;
  if (t < R) {
    st.qrow[t] = t < nrows ? cr.qrow(a, t) : 0;
    st.V[t] = t < nrows ? cr.visible(a, t) : 0;
  }
  if constexpr (STORED) find_slabs<MT>(a, cr.row0, sl);
  dependent_wait();  // scales, pooled rows, stored logits: written by the previous kernels
  __syncthreads();
  const float* kb = a.kbar + bk * a.nk * a.pk;
  const int W = a.W, vmax = st.V[nrows - 1];
  const int myV = st.V[r];
  const bool seq = myV > select::kRegKeys;  // z in the shared-memory path's order
  uint32_t* const mine = a.tscratch + st.qrow[r] * a.tstride;    // [band][W], stored keys
  uint32_t* const cand = mine + tiled_cand_offset(a.nbands, W);  // 8-byte aligned
  const float* mystg = stg + r * kStageStride + c * LPT;         // STORED: moves with the buffer
  // Longest row still open; called by every thread (a lane per row, then a
  // warp maximum: each thread walking all the rows cost 2% of the kernel).
  auto open_vmax = [&]() {
    int v = 0;
    for (int x = lane; x < nrows; x += 32)
      if (st.mode[x] != kDone) v = max(v, st.V[x]);
    return (int)__reduce_max_sync(select::kFull, (unsigned)v);
  };
  // How far the caller sweeps: on stored logits a warp sweeps its own WR rows
  // (r = t / TPR) alone, up to the longest of them still open; recomputing,
  // score_tiles' tensor-core tiles span the CTA's rows (vlim: open_vmax()).
  constexpr int WR = R / kSelWarps;
  auto sweep_vmax = [&](int vlim) {
    if constexpr (STORED)
      return (int)__reduce_max_sync(select::kFull, st.mode[r] != kDone ? (unsigned)myV : 0u);
    return vlim;
  };
  // Zeroes the histograms (per_row words a row) of the open rows the caller
  // sweeps: on stored logits the warp's own, behind a warp barrier (its sweep
  // has no CTA barrier); recomputing, the CTA's (score_tiles' first barrier).
  auto clear_hist = [&](int per_row, auto&& open) {
    const int x0 = STORED ? WR * warp * per_row + lane : t;
    const int x1 = STORED ? (WR * warp + WR) * per_row : R * per_row;
    for (int x = x0; x < x1; x += STORED ? 32 : kSelThreads)
      if (open(x / per_row)) hist[x] = 0u;
    if constexpr (STORED) __syncwarp();
  };

  for (int bi = 0; bi < a.nbands; ++bi) {
    __syncthreads();  // the previous band's last reads of the row state are done
    const uint32_t T = a.T[bi];
    if (T == 0) continue;  // keep none: the band adds no bits (the write stage skips it)
    const int P = a.pw[bi], poff = a.poff[bi];
    if (t < R) {
      st.rs[t] = t < nrows ? kLog2e / a.scales[(st.qrow[t] / a.nq) * 2 + bi] : 0.f;
      st.mode[t] = t < nrows ? kBracket : kDone;  // z still to sum
    }
    if constexpr (!STORED) load_query_frags<MT>(qf, a.qbar, st.qrow, nrows, a.pk, poff, P);
    __syncthreads();
    const float* const lst = STORED ? band_store(a, bk, bi) : nullptr;
    auto sweep = [&](int vlim, int t0, int t1, auto&& consume) {
      if constexpr (STORED) {
        stored_tiles<MT>(lst, sl, nrows, vlim, t0, t1, stg, kStageStride,
                         [&](const float* tile, int c0) {
                           mystg = tile + r * kStageStride + c * LPT;
                           consume(c0);
                         });
      } else {
        score_tiles<MT, true>(
            kb, a.pk, poff, P, nrows, st.rs, vlim, t0, t1, qf, ks,
            [&](int rr, int j, float l) { stg[rr * kStageStride + (j & (kTC - 1))] = l; }, consume);
      }
    };

    // 1. probe
    float mx = -INFINITY;
    auto probe = [&](int c0) {
#pragma unroll
      for (int k = 0; k < 4; ++k) {
        float lv[LPT];
        load_floats<LPT>(mystg + 32 * k, lv);
#pragma unroll
        for (int i = 0; i < LPT; ++i)
          if (c0 + 32 * k + c * LPT + i < myV) mx = fmaxf(mx, lv[i]);
      }
    };
    // The rows' largest logits, written with the stored ones (exact: z is then
    // summed once), or a guess from a probe (the choice is uniform over the
    // CTA, so only the probe's rows shuffle their maxima together).
    const bool stored_max = STORED && a.rowmax != nullptr && !(a.stress & kStressNoProbe);
    if (!(a.stress & kStressNoProbe)) {
      if (!stored_max) {
        // The sink's tile and the diagonals' of the rows swept together.
        const int v0 = STORED ? st.V[WR * warp] : st.V[0], v1 = sweep_vmax(vmax);
        const int td0 = (v0 - 1) / kTC, td1 = (v1 - 1) / kTC;
        if (v1 > 0) {
          if (td0 > 1) sweep(v1, 0, 1, probe);
          sweep(v1, td0 > 1 ? td0 : 0, td1 + 1, probe);
        }
        PRISM_COUNT_TILES(kCountProbe, (vmax - 1) / kTC + 1 -
                                           ((st.V[0] - 1) / kTC > 1 ? (st.V[0] - 1) / kTC - 1 : 0));
      }
      PRISM_COUNT_TILES(kCountPasses, (vmax + kTC - 1) / kTC);
    }
    if (stored_max) {
      if (c == 0) st.m[r] = r < nrows ? a.rowmax[st.qrow[r] * 2 + bi] : -INFINITY;
    } else {
      mx = row_reduce<TPR>(mx, [](float x, float y) { return fmaxf(x, y); });
      if (c == 0) st.m[r] = mx;
    }
    __syncthreads();

    // 2. z (again for rows whose max guess was exceeded)
    for (;;) {
      const int vlim = open_vmax();
      if (vlim == 0) break;
      const int vz = st.mode[r] != kDone ? myV : 0;
      const float m = st.m[r];
      clear_hist(kHistBuckets, [&](int rr) { return st.mode[rr] != kDone; });
      float zp[LPT][4], seen = -INFINITY;
#pragma unroll
      for (int i = 0; i < LPT; ++i)
#pragma unroll
        for (int q = 0; q < 4; ++q) zp[i][q] = 0.f;
      auto zsum_tile = [&](int c0, auto full) {
        constexpr bool FULL = decltype(full)::value;
#pragma unroll
        for (int k = 0; k < 4; ++k) {
          float lv[LPT];
          load_floats<LPT>(mystg + 32 * k, lv);
#pragma unroll
          for (int i = 0; i < LPT; ++i) {
            // Without branches but the atomic's predicate (as in the key
            // sweep): a key past the row adds +0 (the sums stay their bits)
            // and nothing to the histogram.
            const bool ok = FULL || c0 + 32 * k + c * LPT + i < vz;
            seen = ok ? fmaxf(seen, lv[i]) : seen;
            const float x = ok ? select::ex2_ftz(lv[i] - m) : 0.f;
            if (seq)
              zp[i][0] += x;
            else
              zp[i][k] += x;
            // x in [2^e, 2^(e+1)): adds x * 2^(13 - e), truncated (top-k: counts)
            // An untracked x (bucket 0, or a key past the row) adds to the
            // thread's own slot: a branch around the add cost more.
            const uint32_t xb = __float_as_uint(x);
            const int hb = min((int)(xb >> 21) - kHistBase, kHistBuckets - 1);
            atomicAdd(hb > 0 ? hist + r * kHistBuckets + hb : untracked + t,
                      TOPK ? 1u : ((xb & 0x7fffffu) | 0x800000u) >> 10);
          }
        }
      };
      // A tile every row of the warp sees whole has no key past a row: its
      // body tests none (the warp's rows agree, so the choice is uniform).
      // The key sweep, built the same way, spilled twice the bytes and was
      // 4-6% slower on an H200 at 512K-1M than with the one body it has.
      auto zsum = [&](int c0) {
        if (__all_sync(select::kFull, c0 + kTC <= vz))
          zsum_tile(c0, std::true_type{});
        else
          zsum_tile(c0, std::false_type{});
      };
      const int vz_all = sweep_vmax(vlim);
      sweep(vz_all, 0, (vz_all + kTC - 1) / kTC, zsum);
      PRISM_COUNT_TILES(kCountZ, (vlim + kTC - 1) / kTC);
      seen = row_reduce<TPR>(seen, [](float x, float y) { return fmaxf(x, y); });
      // Per-lane sums, 32 a row, where the row's staging row starts: free
      // after the warp's sweep while other warps may still sweep theirs.
      float* zl = stg;
#pragma unroll
      for (int i = 0; i < LPT; ++i)
        zl[r * kStageStride + c * LPT + i] = (zp[i][0] + zp[i][1]) + (zp[i][2] + zp[i][3]);
      if (c == 0) st.seen[r] = seen;
      __syncthreads();
      for (int rr = warp; rr < nrows; rr += kSelWarps) {
        if (st.mode[rr] == kDone) continue;  // warp-uniform
        const float z = select::warp_sum(zl[rr * kStageStride + lane]);
        if (lane == 0) {
          if (st.seen[rr] > st.m[rr]) {
            st.m[rr] = st.seen[rr];  // guess exceeded: sum again with the true max
          } else {
            st.rz[rr] = 1.f / z;
            st.mode[rr] = kDone;
          }
        }
      }
      __syncthreads();
    }
    __syncthreads();  // every thread has left the loop: modes are rewritten below

    // 3. first bracket from the histogram: estimated weight of each bucket,
    // cumulated from the top, with room for the estimate's error.
    constexpr int HB = kHistBuckets / 32;  // buckets per lane: HB * lane + q
    for (int rr = warp; rr < nrows; rr += kSelWarps) {
      const float rz = st.rz[rr];
      float wb[HB], s = 0.f;
#pragma unroll
      for (int q = 0; q < HB; ++q) {
        const int hb = HB * lane + q;
        const float h = (float)hist[rr * kHistBuckets + hb];
        const int e = ((hb + kHistBase) >> 2) - 127;  // bucket's octave: h counts x * 2^(13 - e)
        wb[q] =
            TOPK ? h : h * __int_as_float((e + 18 + 127) << 23) * rz;  // p * 2^31 = x * rz * 2^31
        s += wb[q];
      }
#pragma unroll
      for (int o = 1; o < 32; o <<= 1) {
        const float v = __shfl_down_sync(select::kFull, s, o);
        if (lane + o < 32) s += v;
      }
      const float tf = (float)T, rel = TOPK ? 0.f : 1.f / 512.f;
      // error: weights round by 1/2, bucket 0 (untracked) weighs < 1 per key
      const float slack = TOPK ? 0.f : 1.5f * (float)st.V[rr] + 16.f;
      int bhi = 0,
          blo = 0;  // v* in buckets [blo, bhi] up to the error (0: below the tracked range)
#pragma unroll
      for (int q = 0; q < HB; ++q) {  // s: weight of the buckets >= HB * lane + q
        const bool tracked = HB * lane + q > 0;
        const uint32_t hi = __ballot_sync(select::kFull, tracked && s * (1.f + rel) + slack >= tf);
        const uint32_t lo = __ballot_sync(select::kFull, tracked && s * (1.f - rel) - slack >= tf);
        if (hi) bhi = max(bhi, HB * (31 - __clz(hi)) + q);
        if (lo) blo = max(blo, HB * (31 - __clz(lo)) + q);
        s -= wb[q];
      }
      // bhi == 0: even the top estimate stays below T, so guess "keep all" (kb = 0:
      // every key above the bracket); like any bracket, the sweep checks it.
      uint32_t ka =
          blo > 0 ? select::prob_key(__uint_as_float((uint32_t)(blo + kHistBase) << 21) * rz) : 1u;
      uint32_t kbr =
          bhi == 0 ? 0u
          : bhi < kHistBuckets - 1
              ? select::prob_key(__uint_as_float((uint32_t)(bhi + 1 + kHistBase) << 21) * rz) - 1u
              : UINT_MAX;
      if (a.stress & kStressLow) ka = kbr = 1u;
      if (a.stress & kStressHigh) ka = kbr = 0xfffffff0u;
      if (lane == 0) {
        st.ka[rr] = ka;
        st.kb[rr] = kbr;
        st.olo[rr] = 1u;
        st.ohi[rr] = UINT_MAX;
        st.sh[rr] = sub_shift(ka, kbr);
        st.mode[rr] = kBracket;
      }
    }
    __syncthreads();

    // 4. key sweeps until every row is resolved
    uint32_t* const bm = mine + bi * W;
    for (;;) {
      const int vlim = open_vmax();
      if (vlim == 0) break;
      clear_hist(kSubBuckets, [](int) { return true; });
      const uint8_t mode = st.mode[r];
      const int vk = mode != kDone ? myV : 0;
      const float m = st.m[r], rz = st.rz[r];
      const uint32_t ka = st.ka[r], kbr = st.kb[r], meq = st.meq[r];
      const int sh = st.sh[r];
      uint32_t wa = 0, wc = 0, kmin = UINT_MAX, kmax = 0, base = 0;
      // Each key classified without branches (selects and predicates only),
      // so the compiler can interleave a thread's keys (11% faster on an H200
      // at 512K than a branch per key). A key past the row reads as key 0,
      // which nothing keeps (0 > kb never holds) and `ok` keeps out of the
      // bracket (the rows past the CTA's last one have no bracket set). The
      // count inside is `base` after the sweep, and the range inside
      // (needed only by a bracket too full to store) is taken from the keys
      // past the stored ones here and from the stored ones in next_sweep.
      auto keys = [&](int c0) {
#pragma unroll
        for (int k = 0; k < 4; ++k) {
          float lv[LPT];
          load_floats<LPT>(mystg + 32 * k, lv);
          uint32_t keep = 0, in = 0, ck[LPT];
#pragma unroll
          for (int i = 0; i < LPT; ++i) {
            const bool ok = c0 + 32 * k + c * LPT + i < vk;
            const float p = select::ex2_ftz(lv[i] - m) * rz;
            const uint32_t key = ok ? select::prob_key(p) : 0u;
            const uint32_t w = TOPK ? 1u : select::topp_weight(p);
            const bool above = key > kbr, inside = ok && !above && key >= ka;
            keep |= (uint32_t)above << i;
            wa += above ? w : 0u;
            in |= (uint32_t)inside << i;
            wc += inside ? w : 0u;
            ck[i] = key;
          }
          // Keys inside the bracket in index order: word k, then thread, then lane.
          if (__any_sync(select::kFull, in)) {
            const uint32_t n = __popc(in);
            uint32_t incl = n;
#pragma unroll
            for (int o = 1; o < TPR; o <<= 1) {
              const uint32_t v = __shfl_up_sync(select::kFull, incl, o, TPR);
              if (c >= o) incl += v;
            }
            const uint32_t pos = base + incl - n;  // of this thread's first key inside
            base += __shfl_sync(select::kFull, incl, TPR - 1, TPR);
            // Key i's rank among this sweep's keys inside the bracket (if inside).
            auto rank = [&](int i) { return pos + __popc(in & ((1u << i) - 1u)); };
            if (mode == kTies) {
#pragma unroll
              for (int i = 0; i < LPT; ++i)
                if (((in >> i) & 1u) && rank(i) < meq) keep |= 1u << i;
            } else {
#pragma unroll
              for (int i = 0; i < LPT; ++i) {
                const uint32_t pi = rank(i);
                if (((in >> i) & 1u) && pi < (uint32_t)a.cap)
                  *reinterpret_cast<uint2*>(cand + 2 * (size_t)pi) =
                      make_uint2(ck[i], (uint32_t)(c0 + 32 * k + c * LPT + i));
              }
              if (mode == kBracket && pos + n > (uint32_t)a.cap) {  // rare: past the stored ones
#pragma unroll
                for (int i = 0; i < LPT; ++i)  // (these join the sub-histogram after the sweep)
                  if (((in >> i) & 1u) && rank(i) >= (uint32_t)a.cap) {
                    atomicAdd(hist + r * kSubBuckets + sub_bucket(ck[i], ka, sh),
                              select::key_weight<TOPK>(ck[i]));
                    kmin = min(kmin, ck[i]);
                    kmax = max(kmax, ck[i]);
                  }
              }
            }
          }
          uint32_t word = keep << (c * LPT);
#pragma unroll
          for (int o = 1; o < TPR; o <<= 1) word |= __shfl_xor_sync(select::kFull, word, o);
          if (c == k && c0 + 32 * k < vk) __stcg(bm + (c0 >> 5) + k, word);
        }
      };
      const int vk_all = sweep_vmax(vlim);
      sweep(vk_all, 0, (vk_all + kTC - 1) / kTC, keys);
      PRISM_COUNT_TILES(kCountKeys, (vlim + kTC - 1) / kTC);
      auto add = [](uint32_t x, uint32_t y) { return x + y; };
      wa = row_reduce<TPR>(wa, add);
      wc = row_reduce<TPR>(wc, add);
      kmin = row_reduce<TPR>(kmin, [](uint32_t x, uint32_t y) { return min(x, y); });
      kmax = row_reduce<TPR>(kmax, [](uint32_t x, uint32_t y) { return max(x, y); });
      if (c == 0 && vk > 0) {
        st.wa[r] = wa;
        st.wc[r] = wc;
        st.nc[r] = base;  // the same on each of the row's threads
        st.kmin[r] = kmin;
        st.kmax[r] = kmax;
      }
      __syncthreads();
      for (int rr = warp; rr < nrows; rr += kSelWarps) {
        if (st.mode[rr] == kDone) continue;  // warp-uniform
        uint32_t* row = a.tscratch + st.qrow[rr] * a.tstride;
        next_sweep<TOPK>(st, rr, T, a.cap, hist + rr * kSubBuckets, row + bi * W,
                         row + tiled_cand_offset(a.nbands, W), scratch + warp * 32);
      }
      __syncthreads();
    }
  }

  // Write stage: the bands' bitmaps, ORed, then mask, indices and count.
  __syncthreads();
  uint32_t* wbuf = reinterpret_cast<uint32_t*>(smem) + (size_t)warp * W;  // host: 8 * W words fit
  for (int rr = warp; rr < nrows; rr += kSelWarps) {
    const int64_t q = st.qrow[rr];
    const int V = st.V[rr], nw = (V + 31) >> 5;
    const uint32_t* src = a.tscratch + q * a.tstride;
    // Four words a lane in flight at once (a word at a time waited out one
    // L2 latency per word: 4% of the kernel's stalls at 512K).
    const bool b0 = a.T[0] != 0u, b1 = a.nbands > 1 && a.T[1] != 0u;
    for (int e0 = 0; e0 < W; e0 += 128) {
      uint32_t v[4];
#pragma unroll
      for (int u = 0; u < 4; ++u) {
        const int e = e0 + 32 * u + lane;
        v[u] = 0u;
        if (e < nw) {
          if (b0) v[u] |= __ldcg(src + e);
          if (b1) v[u] |= __ldcg(src + W + e);
        }
      }
#pragma unroll
      for (int u = 0; u < 4; ++u)
        if (e0 + 32 * u + lane < W) wbuf[e0 + 32 * u + lane] = v[u];
    }
    __syncwarp();  // the whole bitmap is read before write_row overwrites the row
    write_row(a, wbuf, q, V);
    __syncwarp();
  }
}

}  // namespace prism::cuda::sel

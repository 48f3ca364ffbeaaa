// One warp selects one row of block logits (spec step 5): softmax in fp32,
// then the exact top-p / top-k threshold, ORed into the row's bitmap.
//
// Logits arrive pre-multiplied by log2(e), so the softmax is one ex2 per
// element. Probability masses are summed in 2^31 fixed point: integer sums are
// associative, so the decision does not depend on the summation order.
//
// Keys: a valid element's key is bits(p) + 1 (p >= 0, so keys order like p and
// are >= 1); an invalid element (past the row's visible length) has key 0.
// Every search bound is >= 1, so invalid elements never count, never become
// candidates and are never kept, and the hot loops need no validity tests.
//
// Rule: rank by p descending, ties to the lower index; keep iff the weight
// ranked strictly before is < T. With S(v) = W(key >= v), the kept set is every
// key > v* and the first m keys == v* in index order, where v* is the largest v
// with S(v) >= T and m = ceil((T - W(key > v*)) / w(v*)). v* is bracketed by
// bisection on the key bits until at most 32 keys remain inside the bracket;
// those are gathered one per lane and v* is read off exactly. v* and m depend
// only on the keys and weights, so any exact search gives the same kept set.
#pragma once

#include <climits>
#include <cstdint>

namespace prism::cuda::select {

constexpr unsigned kFull = 0xffffffffu;
constexpr float kFix = 2147483648.f;  // probability fixed point: 2^31
constexpr int kRegKeys = 1024;        // longest row of the register path

__device__ __forceinline__ float warp_max(float v) {
#pragma unroll
  for (int o = 16; o; o >>= 1) v = fmaxf(v, __shfl_xor_sync(kFull, v, o));
  return v;
}
// Butterfly: every lane ends with the same bits, in a fixed order.
__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
  for (int o = 16; o; o >>= 1) v += __shfl_xor_sync(kFull, v, o);
  return v;
}

__device__ __forceinline__ float ex2_ftz(float x) {
  float y;
  asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x));
  return y;
}

__device__ __forceinline__ uint32_t prob_key(float p) { return __float_as_uint(p) + 1u; }
__device__ __forceinline__ uint32_t topp_weight(float p) { return __float2uint_rn(p * kFix); }

template <bool TOPK>
__device__ __forceinline__ uint32_t key_weight(uint32_t key) {
  if constexpr (TOPK)
    return key != 0u ? 1u : 0u;
  else
    return key != 0u ? topp_weight(__uint_as_float(key - 1u)) : 0u;
}

// Lower end of the search. Top-p: keys below prob_key(p_lo) weigh less than
// total - T together (< V of them, each at most p_lo * 2^31 + 1/2), so
// S(floor) >= T. Top-k has no such bound.
template <bool TOPK>
__device__ __forceinline__ uint32_t search_floor(uint32_t total, uint32_t T, int V) {
  if constexpr (TOPK) return 1u;
  const float slack = (float)(total - T) - 0.5f * (float)V - 2.f;
  if (!(slack > 0.f)) return 1u;
  return prob_key(0.999f * slack / ((float)V * kFix));
}

// Bracket state (warp-uniform): S(lo) >= T > S(hi) = s_hi.
struct Search {
  uint32_t lo, hi, s_hi;
  uint32_t n_lo, n_hi;  // keys >= lo, keys >= hi
};

// `above`: weight ranked above every searched key (elements decided elsewhere).
__device__ __forceinline__ void search_step(Search& st, uint32_t mid, uint32_t T, uint32_t s,
                                            uint32_t n, uint32_t above) {
  s = __reduce_add_sync(kFull, s) + above;
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

// Appends the keys of one word (one key per lane) that lie in [lo, hi).
__device__ __forceinline__ void gather_word(const Search& st, uint32_t key, uint32_t& run,
                                            uint32_t* scratch) {
  const int lane = threadIdx.x & 31;
  const bool c = key >= st.lo && key < st.hi;
  const uint32_t bal = __ballot_sync(kFull, c);
  if (c) scratch[run + __popc(bal & ((1u << lane) - 1u))] = key;
  run += __popc(bal);
}

struct Decision {
  int mode;     // 0 keep none, 1 keep all valid, 2 threshold
  bool all_eq;  // threshold: every key == v* is kept (no ranking needed)
  uint32_t vstar, meq;
};

// v*, W(key > v*) and the tie count from the <= 32 gathered candidates (run of
// them; none when the bisection closed the bracket to a single key value).
template <bool TOPK>
__device__ __forceinline__ Decision search_finish(const Search& st, const uint32_t* scratch,
                                                  uint32_t run, uint32_t T) {
  const int lane = threadIdx.x & 31;
  Decision dc{2, false, st.lo, 0u};
  uint32_t gs = st.s_hi;             // W(key > v*)
  uint32_t eqn = st.n_lo - st.n_hi;  // keys == v*
  if (st.hi - st.lo > 1) {
    const bool has = lane < (int)run;
    const uint32_t my = has ? scratch[lane] : 0u;
    const uint32_t mw = has ? key_weight<TOPK>(my) : 0u;
    uint32_t acc = st.s_hi;  // S(my)
    for (int i = 0; i < (int)run; ++i) {
      const uint32_t kk = __shfl_sync(kFull, my, i);
      const uint32_t ww = __shfl_sync(kFull, mw, i);
      acc += kk >= my ? ww : 0u;
    }
    const uint32_t v = __reduce_max_sync(kFull, has && acc >= T ? my : 0u);
    dc.vstar = max(v, st.lo);
    gs += __reduce_add_sync(kFull, has && my > dc.vstar ? mw : 0u);
    eqn = __reduce_add_sync(kFull, has && my == dc.vstar ? 1u : 0u);
  }
  const uint32_t ws = key_weight<TOPK>(dc.vstar);
  dc.meq = ws == 0 ? UINT_MAX : (T - gs + ws - 1) / ws;
  dc.all_eq = dc.meq >= eqn;
  return dc;
}

// Keep bits of one word (j = 32 * word + lane). `run` counts the keys == v*
// met in earlier words (ties are kept in index order).
__device__ __forceinline__ uint32_t keep_word(const Decision& dc, uint32_t key, uint32_t& run) {
  const int lane = threadIdx.x & 31;
  bool keep;
  if (dc.mode == 0) {
    keep = false;
  } else if (dc.mode == 1) {
    keep = key != 0u;
  } else if (dc.all_eq) {
    keep = key >= dc.vstar;
  } else {
    const bool eq = key == dc.vstar;
    const uint32_t bal = __ballot_sync(kFull, eq);
    const uint32_t rank = run + __popc(bal & ((1u << lane) - 1u));
    run += __popc(bal);
    keep = key > dc.vstar || (eq && rank < dc.meq);
  }
  return __ballot_sync(kFull, keep);
}

// The decision for one row, whatever holds its keys. sums_ge(v, s, c) gives
// this lane's weight and count of keys >= v; each_word(fn) calls fn(key) on
// every 32-key word, one key per lane, in index order. km: the largest key.
// `above` (< T, included in total): weight of elements ranked above every key
// given here, e.g. the ones the tiled kernel keeps without storing them; V
// counts the keys given here.
template <bool TOPK, class SumsGe, class EachWord>
__device__ __forceinline__ Decision decide(uint32_t total, uint32_t T, int V, uint32_t km,
                                           uint32_t above, SumsGe sums_ge, EachWord each_word,
                                           uint32_t* scratch) {
  Decision dc{0, false, 0u, 0u};
  if (T == 0) return dc;  // keep none
  if (total < T) {
    dc.mode = 1;  // keep all
    return dc;
  }
  Search st{search_floor<TOPK>(total, T, V), km + 1u, above, 0u, 0u};
  if (st.lo >= st.hi) st.lo = 1u;
  uint32_t s, c;
  sums_ge(st.lo, s, c);
  st.n_lo = __reduce_add_sync(kFull, c);
  while (st.hi - st.lo > 1 && st.n_lo - st.n_hi > 32u) {
    const uint32_t mid = st.lo + ((st.hi - st.lo) >> 1);
    sums_ge(mid, s, c);
    search_step(st, mid, T, TOPK ? c : s, c, above);
  }
  uint32_t run = 0;
  if (st.hi - st.lo > 1) {
    each_word([&](uint32_t key) { gather_word(st, key, run, scratch); });
    __syncwarp();
  }
  dc = search_finish<TOPK>(st, scratch, run, T);
  __syncwarp();
  return dc;
}

// The decision for keys (0 = absent) and weights held in registers: key e of
// lane l is element 32 * e + l of the list.
template <int NPL, bool TOPK>
__device__ __forceinline__ Decision decide_regs(const uint32_t (&key)[NPL],
                                                const uint32_t (&w)[TOPK ? 1 : NPL], uint32_t total,
                                                uint32_t T, int V, uint32_t above,
                                                uint32_t* scratch) {
  uint32_t kp[4] = {0u, 0u, 0u, 0u};
#pragma unroll
  for (int e = 0; e < NPL; ++e) kp[e & 3] = max(kp[e & 3], key[e]);
  const uint32_t km = max(max(kp[0], kp[1]), max(kp[2], kp[3]));
  // Four independent partial sums: short dependency chains between the compares.
  auto sums_ge = [&](uint32_t v, uint32_t& s, uint32_t& c) {
    uint32_t sp[4] = {0u, 0u, 0u, 0u}, cp[4] = {0u, 0u, 0u, 0u};
#pragma unroll
    for (int e = 0; e < NPL; ++e) {
      const bool ge = key[e] >= v;
      if constexpr (!TOPK) sp[e & 3] += ge ? w[e] : 0u;
      cp[e & 3] += ge ? 1u : 0u;
    }
    s = (sp[0] + sp[1]) + (sp[2] + sp[3]);
    c = (cp[0] + cp[1]) + (cp[2] + cp[3]);
  };
  auto each_word = [&](auto&& fn) {
#pragma unroll
    for (int e = 0; e < NPL; ++e) fn(key[e]);
  };
  return decide<TOPK>(total, T, V, __reduce_max_sync(kFull, km), above, sums_ge, each_word,
                      scratch);
}

// Rows of V <= 32 * NPL: the row lives in registers. L holds the row's logits
// (times log2 e) and -inf from V up to the next multiple of 32.
template <int NPL, bool TOPK>
__device__ void select_row_reg(const float* L, int V, uint32_t T, uint32_t* bits,
                               uint32_t* scratch) {
  const int lane = threadIdx.x & 31;
  // Reductions in four independent partials: short dependency chains.
  float x[NPL];
  float mp[4] = {-INFINITY, -INFINITY, -INFINITY, -INFINITY};
#pragma unroll
  for (int e = 0; e < NPL; ++e) {
    x[e] = e * 32 < V ? L[e * 32 + lane] : -INFINITY;  // warp-uniform test
    mp[e & 3] = fmaxf(mp[e & 3], x[e]);
  }
  const float m = warp_max(fmaxf(fmaxf(mp[0], mp[1]), fmaxf(mp[2], mp[3])));
  float zp[4] = {0.f, 0.f, 0.f, 0.f};
#pragma unroll
  for (int e = 0; e < NPL; ++e) {
    x[e] = ex2_ftz(x[e] - m);
    zp[e & 3] += x[e];
  }
  const float rz = 1.f / warp_sum((zp[0] + zp[1]) + (zp[2] + zp[3]));
  uint32_t key[NPL];
  uint32_t w[TOPK ? 1 : NPL];
  uint32_t tp[4] = {0u, 0u, 0u, 0u};
#pragma unroll
  for (int e = 0; e < NPL; ++e) {
    const float p = x[e] * rz;
    key[e] = e * 32 + lane < V ? prob_key(p) : 0u;
    if constexpr (!TOPK) {
      w[e] = topp_weight(p);  // 0 for the -inf padding
      tp[e & 3] += w[e];
    }
  }
  const uint32_t tl = (tp[0] + tp[1]) + (tp[2] + tp[3]);
  const uint32_t total = TOPK ? (uint32_t)V : __reduce_add_sync(kFull, tl);
  const Decision dc = decide_regs<NPL, TOPK>(key, w, total, T, V, 0u, scratch);
  uint32_t run = 0, mine = 0;
#pragma unroll
  for (int e = 0; e < NPL; ++e) {
    if (e * 32 >= V) break;  // warp-uniform
    const uint32_t word = keep_word(dc, key[e], run);
    if (lane == e) mine = word;
  }
  if (lane < NPL && lane * 32 < V) bits[lane] |= mine;
}

// Rows longer than the register path: the keys replace the logits in shared
// memory and weights are recomputed from them.
template <bool TOPK>
__device__ void select_row_smem(float* L, int V, uint32_t T, uint32_t* bits, uint32_t* scratch) {
  const int lane = threadIdx.x & 31;
  uint32_t* K = reinterpret_cast<uint32_t*>(L);
  float m = -INFINITY;
  for (int j = lane; j < V; j += 32) m = fmaxf(m, L[j]);
  m = warp_max(m);
  float z = 0.f;
  for (int j = lane; j < V; j += 32) {
    const float ex = ex2_ftz(L[j] - m);
    L[j] = ex;
    z += ex;
  }
  const float rz = 1.f / warp_sum(z);
  uint32_t tl = 0, km = 0;
  for (int j = lane; j < V; j += 32) {
    const float p = L[j] * rz;
    const uint32_t kb = prob_key(p);
    K[j] = kb;
    if constexpr (!TOPK) tl += topp_weight(p);
    km = max(km, kb);
  }
  const uint32_t total = TOPK ? (uint32_t)V : __reduce_add_sync(kFull, tl);
  auto sums_ge = [&](uint32_t v, uint32_t& s, uint32_t& c) {
    s = 0;
    c = 0;
    for (int j = lane; j < V; j += 32) {
      const uint32_t k = K[j];
      if (k >= v) {
        if constexpr (!TOPK) s += key_weight<TOPK>(k);
        ++c;
      }
    }
  };
  auto each_word = [&](auto&& fn) {
    for (int base = 0; base < V; base += 32) fn(base + lane < V ? K[base + lane] : 0u);
  };
  const Decision dc =
      decide<TOPK>(total, T, V, __reduce_max_sync(kFull, km), 0u, sums_ge, each_word, scratch);
  uint32_t run = 0;
  const int nw = (V + 31) / 32;
  for (int e = 0; e < nw; ++e) {
    const int j = e * 32 + lane;
    const uint32_t word = keep_word(dc, j < V ? K[j] : 0u, run);
    if (lane == 0) bits[e] |= word;
  }
}

template <bool TOPK>
__device__ __forceinline__ void select_row(float* L, int V, uint32_t T, uint32_t* bits,
                                           uint32_t* scratch) {
  static_assert(kRegKeys == 32 * 32, "register path: at most 32 keys per lane");
  if (V <= 128)
    select_row_reg<4, TOPK>(L, V, T, bits, scratch);
  else if (V <= 256)
    select_row_reg<8, TOPK>(L, V, T, bits, scratch);
  else if (V <= 512)
    select_row_reg<16, TOPK>(L, V, T, bits, scratch);
  else if (V <= kRegKeys)
    select_row_reg<32, TOPK>(L, V, T, bits, scratch);
  else
    select_row_smem<TOPK>(L, V, T, bits, scratch);
}

}  // namespace prism::cuda::select

// Pieces shared by the two selection kernels: their arguments, the block
// scores on tensor cores (3xTF32 mma over score tiles of 128 key blocks, for
// one to four m16 tiles of query rows) and the writer of one finished row.
#pragma once

#include <cuda_pipeline.h>
#include <cstdint>
#include <type_traits>

#include "common/prism_types.h"
#include "cuda/estimate/async_copy.cuh"
#include "cuda/estimate/tf32_mma.cuh"

namespace prism::cuda::sel {

constexpr int kSelThreads = 256;
constexpr int kSelWarps = kSelThreads / 32;
constexpr int kTC = 128;                // key blocks per score tile
constexpr int kKC = 32;                 // packed band dims per tile chunk (four k-steps of 8)
constexpr int kTileFloats = kTC * kKC;  // [key block][kKC dims], 16-byte chunks XOR-swizzled
constexpr float kLog2e = 1.4426950408889634f;

struct SelArgs {
  const float* qbar;  // packed [B * Hq * nq][pk]
  const float* kbar;  // packed [B * Hkv * nk][pk]
  const float* scales;
  int Hq, Hkv, G, nq, nk, off;
  int pk, poff[2], pw[2];
  int nbands;
  uint32_t T[2];  // keep iff (mass or count ranked before) < T
  int M, upb;     // rows per CTA, CTAs per (b, kv head)
  int LS, W;      // row kernel's logit row stride; bitmap words per row
  int cap;        // tiled kernel: keys per row stored for the exact resolution
  int stress;     // tiled kernel: test switches (select_tiled.cuh)
  int sink, diag;
  int vec_out;    // nk % 4 == 0 and an aligned mask: 4-byte mask stores
  uint8_t* mask;  // optional
  int32_t* counts;
  int32_t* indices;    // triangular layout (BlockMaskOut)
  uint32_t* tscratch;  // tiled kernel: per-row band bitmaps and stored keys, tstride words a row
  int tstride;
  // Tiled kernel, stored path (logit_store.cuh): the logits of the (b, kv
  // head) pairs [bk0, bk0 + chunk), band_floats floats per band and pair.
  float* lstore;
  int64_t bk0, band_floats;
  // Stored path with logits_sm90_kernel: every row's largest stored logit,
  // [packed query row][band], written with the logits; the selection takes
  // it instead of probing for a guess. Null: the selection probes.
  float* rowmax;
};

// Key blocks visible to query block qb: j <= qb + off, and j < nk.
__host__ __device__ __forceinline__ int visible_blocks(int qb, int off, int nk) {
  return min(qb + off + 1, nk);
}

// The rows a CTA of the long-row kernels (logits and tiled selection) takes:
// R consecutive rows (query block * G + query head of the group) of one (b, kv
// head) pair of the launch's chunk, the pair's CTAs longest rows first.
struct CtaRows {
  int64_t bk;  // b * Hkv + kv head
  int row0, nrows, b, hk;
  __device__ CtaRows(const SelArgs& a, int R)
      : bk(a.bk0 + blockIdx.x / a.upb),
        row0((a.upb - 1 - (int)(blockIdx.x % a.upb)) * R),
        nrows(min(R, a.nq * a.G - row0)),
        b((int)(bk / a.Hkv)),
        hk((int)(bk % a.Hkv)) {}
  // Local row r's query block, and its packed query row.
  __device__ int block(const SelArgs& a, int r) const { return (row0 + r) / a.G; }
  __device__ int64_t qrow(const SelArgs& a, int r) const {
    return ((int64_t)b * a.Hq + hk * a.G + (row0 + r) % a.G) * a.nq + block(a, r);
  }
  // Key blocks local row r sees, and the longest (last) row.
  __device__ int visible(const SelArgs& a, int r) const {
    return visible_blocks(block(a, r), a.off, a.nk);
  }
  __device__ int vmax(const SelArgs& a) const { return visible(a, nrows - 1); }
};

// Warp layout of a score tile for MT m16 tiles of query rows: WM warps along
// the rows (MW m-tiles each) times WN warps along the 128 keys (NW n8 tiles each).
template <int MT>
struct TileShape {
  static constexpr int MW = MT >= 2 ? 2 : 1;
  static constexpr int WM = MT / MW;
  static constexpr int WN = kSelWarps / WM;
  static constexpr int NW = kTC / 8 / WN;
  static constexpr int KW = 8 * NW;  // keys per warp
  static_assert(MW * WM == MT && WM * WN == kSelWarps && KW * WN == kTC, "tile layout");
};

// Query fragments of every k-step of one band for the CTA's 16 * MT rows (row r
// at packed row qrow[r]; rows from `rows` on are zero), split into tf32 hi + lo
// (3xTF32 keeps the scores at fp32 accuracy): qf[(s * MT + mt) * 64 + lane] is
// hi, + 32 lo, for k-step s and m-tile mt.
template <int MT>
__device__ __forceinline__ void load_query_frags(float4* qf, const float* qbar, const int64_t* qrow,
                                                 int rows, int pk, int poff, int P) {
  // kBatch fragments' loads in flight before any is split: one at a time, the
  // CTA (alone on its SM in the logits kernel) waited out a memory latency
  // per fragment, up to 12 in a row per band.
  constexpr int kBatch = 4;
  const int n = (P / 8) * MT * 32;
  for (int x0 = threadIdx.x; x0 < n; x0 += kBatch * kSelThreads) {
    float v[kBatch][4];
#pragma unroll
    for (int i = 0; i < kBatch; ++i) {
      const int x = x0 + i * kSelThreads;
      const int lane = x & 31, mt = (x >> 5) % MT, s8 = (x >> 5) / MT * 8;
      const int fg = lane >> 2, ft = lane & 3;
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int r = 16 * mt + fg + (e & 1) * 8, dim = s8 + ft + (e >> 1) * 4;
        v[i][e] = x < n && r < rows ? qbar[qrow[r] * pk + poff + dim] : 0.f;
      }
    }
#pragma unroll
    for (int i = 0; i < kBatch; ++i) {
      const int x = x0 + i * kSelThreads;
      if (x >= n) break;
      float4 hi, lo;
      mma::split_tf32(v[i][0], hi.x, lo.x);
      mma::split_tf32(v[i][1], hi.y, lo.y);
      mma::split_tf32(v[i][2], hi.z, lo.z);
      mma::split_tf32(v[i][3], hi.w, lo.w);
      qf[(x >> 5) * 64 + (x & 31)] = hi;
      qf[(x >> 5) * 64 + 32 + (x & 31)] = lo;
    }
  }
}

// An epilogue of score_tiles that takes a warp's whole accumulator at once:
// epi(acc, rsv, c0, wm, wn), the logit of acc[mw][h][e] being
// acc * rsv[mw][e / 2] for row 16 * (wm * MW + mw) + lane / 4 + 8 * (e / 2) and
// key c0 + wn * 8 * NW + 8 * h + 2 * (lane % 4) + e % 2 (rows and keys past
// the valid ones included: the epilogue knows what it may keep).
struct FragmentEpilogue {};

// Logits (scores times rs[r] = log2(e) / scale) of the CTA's rows against the
// score tiles [t0, t1) of one band (P packed dims at poff; kb: the kv head's
// packed keys), keys below vmax only. Each tile runs its chunks of kKC dims
// through a cp.async double buffer, the next chunk in flight while this one
// feeds the mma; a logit accumulates its k-steps in order, three products per
// step (lo*hi, hi*lo, hi*hi), so a (row, key) pair gets the same bits in either
// kernel and in every sweep. SPLIT: the keys come already split (kb: the
// layout of split_keys_kernel, 2 * pk floats a key; ks then holds
// [2][128 keys][64 floats]). At a tile's
// last chunk epi(r, j, logit) is called for each row r < rows and key j < vmax
// the thread holds (or the FragmentEpilogue once); with CONSUME, a barrier
// follows and consume(c0) may read what epi stored. Ends on a barrier.
template <int MT, bool CONSUME, bool SPLIT = false, class Epi, class Consume>
__device__ __forceinline__ void score_tiles(const float* kb, int pk, int poff, int P, int rows,
                                            const float* rs, int vmax, int t0, int t1,
                                            const float4* qf, float* ks, Epi&& epi,
                                            Consume&& consume) {
  constexpr int kBuf = SPLIT ? 2 * kTileFloats : kTileFloats;  // floats of one buffer
  using S = TileShape<MT>;
  const int nkc = (P + kKC - 1) / kKC;
  const int nsteps = (t1 - t0) * nkc;
  if (nsteps <= 0) return;
  const int t = threadIdx.x, lane = t & 31, warp = t >> 5;
  const int wm = warp / S::WN, wn = warp % S::WN;
  // mma fragment coordinates: rows g and g + 8, k / key index tq.
  const int g = lane >> 2, tq = lane & 3;
  float rsv[S::MW][2];
#pragma unroll
  for (int mw = 0; mw < S::MW; ++mw)
#pragma unroll
    for (int h8 = 0; h8 < 2; ++h8) {
      const int r = 16 * (wm * S::MW + mw) + g + 8 * h8;
      rsv[mw][h8] = r < rows ? rs[r] : 0.f;
    }
  // This thread's 16-byte chunks of a tile: key blocks kc + 32 i, chunk kd4
  // (stored at chunk kd4 ^ (key & 7), so fragment loads hit 32 distinct banks).
  // Chunks past vmax or past P are not copied: their columns are never stored
  // and their dims never read.
  const int kc = t >> 3, kd4 = t & 7;
  const float* ksrc = kb + (int64_t)kc * pk + poff + kd4 * 4;
  float* kdst = ks + kc * kKC + ((kd4 ^ (kc & 7)) * 4);
  // A kv head's packed keys number nk * pk < 2^26 (nk <= 2^18): 32-bit offsets.
  const int row32 = 32 * pk;
  // SPLIT: 16 slots of 4 floats per key and chunk (one per k-step and lane
  // t % 4: hi, hi + 4, lo, lo + 4), slot s stored at s ^ ((key & 1) << 2) so
  // that each quarter warp's 16-byte fragment loads hit 8 distinct bank groups;
  // this thread copies slot t % 16 of keys t / 16 + 16 i. Its addresses are
  // kept as a byte pointer and a shared-window offset, its copies a constant
  // destination offset and a source stride apart: rebuilt for each copy, as
  // the compiler had done under the logits kernel's register pressure, they
  // cost some 30 instructions per 16-byte copy, as many as the mma they feed.
  const int skey = t >> 4, sslot = t & 15;
  const char* ssrc =
      reinterpret_cast<const char*>(kb + (int64_t)skey * 2 * pk + 2 * poff + 4 * sslot);
  const unsigned sdst =
      (unsigned)__cvta_generic_to_shared(ks + skey * 2 * kKC + ((sslot ^ ((skey & 1) << 2)) * 4));
  const int row16 = 16 * 2 * pk * (int)sizeof(float);  // SPLIT: bytes between a thread's keys
  auto issue = [&](int tc, int kcn, int buf) {
    const int c0 = tc * kTC, k0 = kcn * kKC;
    constexpr int kBufBytes = kBuf * (int)sizeof(float);
    if constexpr (SPLIT) {
      if (k0 + 8 * (sslot >> 2) < P) {
        const char* src = ssrc + (int64_t)(c0 * 2 * pk + 2 * k0) * sizeof(float);
        const unsigned dst = sdst + buf * kBufBytes;
        const int left = vmax - c0 - skey;
#pragma unroll
        for (int i = 0; i < kTC / 16; ++i)
          if (16 * i < left)
            copy16_cg(dst + 16 * i * 2 * kKC * (int)sizeof(float), src + (int64_t)i * row16);
      }
    } else if (k0 + kd4 * 4 < P) {
      const float* src = ksrc + (c0 * pk + k0);
      float* dst = kdst + buf * kBuf;
      const int left = vmax - c0 - kc;  // this thread's keys of the tile below vmax: 32 i < left
#pragma unroll
      for (int i = 0; i < kTC / 32; ++i) {
        if (32 * i < left) __pipeline_memcpy_async(dst + 32 * i * kKC, src + i * row32, 16);
      }
    }
    __pipeline_commit();
  };
  float acc[S::MW][S::NW][4] = {};
  int cur_t = t0, cur_k = 0, nxt_t = t0, nxt_k = 1;
  if (nxt_k == nkc) {
    nxt_k = 0;
    ++nxt_t;
  }
  issue(t0, 0, 0);
  for (int step = 0; step < nsteps; ++step) {
    const int buf = step & 1;
    if (step + 1 < nsteps) {
      issue(nxt_t, nxt_k, buf ^ 1);
      if (++nxt_k == nkc) {
        nxt_k = 0;
        ++nxt_t;
      }
      __pipeline_wait_prior(1);
    } else {
      __pipeline_wait_prior(0);
    }
    __syncthreads();
    const int c0 = cur_t * kTC, k0 = cur_k * kKC;
    const bool last = ++cur_k == nkc;
    if (last) {
      cur_k = 0;
      ++cur_t;
    }
    if (k0 == 0) {
#pragma unroll
      for (int mw = 0; mw < S::MW; ++mw)
#pragma unroll
        for (int h = 0; h < S::NW; ++h)
#pragma unroll
          for (int e = 0; e < 4; ++e) acc[mw][h][e] = 0.f;
    }
    if (c0 + wn * S::KW < vmax) {  // warp-uniform: this warp's keys
      const int nks = min(kKC, P - k0) / 8;
      const float* kt = SPLIT ? ks + buf * kBuf + (wn * S::KW + g) * 2 * kKC
                              : ks + buf * kBuf + (wn * S::KW + g) * kKC + tq;
      const float4* qk = qf + ((k0 / 8) * MT + wm * S::MW) * 64 + lane;
      // One m-tile (the row kernel) or split keys (no registers for the
      // split): unrolled, so the swizzled offsets below are constants XOR g;
      // otherwise more m-tiles need the registers more.
      constexpr int kUnroll = MT == 1 || SPLIT ? kKC / 8 : 1;
#pragma unroll kUnroll
      for (int st = 0; st < kKC / 8; ++st) {
        if (st >= nks) break;  // warp-uniform
        float4 ahi[S::MW], alo[S::MW];
#pragma unroll
        for (int mw = 0; mw < S::MW; ++mw) {
          ahi[mw] = qk[(st * MT + mw) * 64];
          alo[mw] = qk[(st * MT + mw) * 64 + 32];
        }
        if constexpr (SPLIT) {
          // Every key fragment first, then each product over all the tiles:
          // consecutive mma feed different accumulators (each accumulator
          // still takes lo*hi, hi*lo, hi*hi in that order: the same bits).
          float4 b[S::NW];
#pragma unroll
          for (int h = 0; h < S::NW; ++h)
            b[h] = *reinterpret_cast<const float4*>(kt + h * 8 * 2 * kKC +
                                                    (((4 * st + tq) ^ ((g & 1) << 2)) * 4));
#pragma unroll
          for (int mw = 0; mw < S::MW; ++mw)
#pragma unroll
            for (int h = 0; h < S::NW; ++h) mma::mma_tf32(acc[mw][h], alo[mw], b[h].x, b[h].y);
#pragma unroll
          for (int mw = 0; mw < S::MW; ++mw)
#pragma unroll
            for (int h = 0; h < S::NW; ++h) mma::mma_tf32(acc[mw][h], ahi[mw], b[h].z, b[h].w);
#pragma unroll
          for (int mw = 0; mw < S::MW; ++mw)
#pragma unroll
            for (int h = 0; h < S::NW; ++h) mma::mma_tf32(acc[mw][h], ahi[mw], b[h].x, b[h].y);
        } else {
#pragma unroll
          for (int h = 0; h < S::NW; ++h) {
            float bhi[2], blo[2];
            const float* kp = kt + h * 8 * kKC;  // key (h * 8 + g) & 7 == g
            mma::split_tf32(kp[((2 * st) ^ g) * 4], bhi[0], blo[0]);
            mma::split_tf32(kp[((2 * st + 1) ^ g) * 4], bhi[1], blo[1]);
#pragma unroll
            for (int mw = 0; mw < S::MW; ++mw) {
              mma::mma_tf32(acc[mw][h], alo[mw], bhi[0], bhi[1]);
              mma::mma_tf32(acc[mw][h], ahi[mw], blo[0], blo[1]);
              mma::mma_tf32(acc[mw][h], ahi[mw], bhi[0], bhi[1]);
            }
          }
        }
      }
      if constexpr (std::is_base_of_v<FragmentEpilogue, std::decay_t<Epi>>) {
        if (last) epi(acc, rsv, c0, wm, wn);
      } else if (last) {
#pragma unroll
        for (int mw = 0; mw < S::MW; ++mw)
#pragma unroll
          for (int h = 0; h < S::NW; ++h)
#pragma unroll
            for (int e = 0; e < 4; ++e) {
              const int r = 16 * (wm * S::MW + mw) + g + (e >> 1) * 8;
              const int j = c0 + wn * S::KW + h * 8 + 2 * tq + (e & 1);
              if (r < rows && j < vmax) epi(r, j, __fmul_rn(acc[mw][h][e], rsv[mw][e >> 1]));
            }
      }
    }
    if constexpr (CONSUME) {
      if (last) {
        __syncthreads();
        consume(c0);
      }
    }
    __syncthreads();  // buffer buf is refilled by the next step's issue
  }
}

// Writes one finished row: mask bytes (when asked for), the ascending indices
// into the row's slot of the triangular layout (room for V), the count. The
// sink and diagonal are forced into the bitmap first.
__device__ __forceinline__ void write_row(const SelArgs& a, uint32_t* br, int64_t rowid, int V) {
  const int lane = threadIdx.x & 31;
  if (lane == 0) {
    if (a.sink) br[0] |= 1u;
    if (a.diag) br[(V - 1) >> 5] |= 1u << ((V - 1) & 31);  // j = i + off = V - 1
  }
  __syncwarp();
  if (a.mask != nullptr) {
    const int64_t base = rowid * a.nk;
    if (a.vec_out) {  // 4 mask bytes per store (bits past V are 0)
      uint32_t* m4 = reinterpret_cast<uint32_t*>(a.mask + base);
      for (int j = lane * 4; j < a.nk; j += 128) {
        const uint32_t nib = (br[j >> 5] >> (j & 31)) & 0xfu;
        m4[j >> 2] = (nib & 1u) | ((nib & 2u) << 7) | ((nib & 4u) << 14) | ((nib & 8u) << 21);
      }
    } else {
      for (int j = lane; j < a.nk; j += 32) a.mask[base + j] = (br[j >> 5] >> (j & 31)) & 1u;
    }
  }
  const uint32_t lt = (1u << lane) - 1u;
  int32_t* const ind = a.indices + tri_row_start(rowid, a.nq, a.off);
  // A pointer that moves past each word's entries: the store's address is one
  // 32-bit offset from it (a 64-bit sum per store cost 4 instructions).
  int32_t* out = ind;
  const int nw = (V + 31) >> 5;
  for (int e = 0, j = lane; e < nw; ++e, j += 32) {
    const uint32_t word = br[e];
    if ((word >> lane) & 1u) out[__popc(word & lt)] = j;
    out += __popc(word);
  }
  if (lane == 0) a.counts[rowid] = (int32_t)(out - ind);
}

}  // namespace prism::cuda::sel

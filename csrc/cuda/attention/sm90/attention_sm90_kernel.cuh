// The sm_90a block-sparse causal attention forward kernel (FlashAttention-3
// style). One CTA computes BLOCK_M = 128 query rows of one (batch, head) over
// the key tiles (BLOCK_N = 128 keys) of the key blocks selected for its query
// block, or over every visible key tile when dense. Three warpgroups:
//   - warpgroup 0, the producer (registers lowered with setmaxnreg): one thread
//     walks the tile list and brings Q once and each K and V tile by TMA
//     (4-D tensor maps, 128-byte swizzle, out-of-range rows zero-filled) into a
//     kStages-deep shared-memory ring; full/empty mbarriers per stage, separate
//     for K and V so a K buffer is recycled as soon as its scores exist;
//   - warpgroups 1 and 2, the consumers (registers raised): 64 query rows each.
//     S = Q K^T by wgmma with both operands in shared memory (K-major
//     descriptors), O += P V by wgmma with P from registers and V in shared
//     memory (MN-major descriptor, transpose bit). Online softmax in fp32, exp2
//     domain. Software pipelined: the scores of tile t are computed while the
//     P V product of tile t-1 runs on the tensor cores. Optional ping-pong
//     (Sm90Params::pingpong, PRISM_TUNING_VARIANTS builds only): the two
//     warpgroups take turns issuing GEMMs.
// Work order: items (query tile, head) grouped by (batch, kv head), longest
// query tiles first. Persistent mode (Sm90Params::work_counter set): one CTA
// per SM takes items from an atomic counter in that order; the producer fetches
// the next item, and loads its Q and first K/V tiles, while the consumers
// finish the previous one (the K/V ring and its phases carry across items; Q is
// released after its last QK GEMM and the output is stored from registers).
// Otherwise one CTA per item.
// Semantics are those of the sm80 kernel (attention_fwd_kernel.cuh).
#pragma once
#include <cuda.h>
#include <cuda_runtime.h>
#include <math_constants.h>
#include <cstdint>
#include "cuda/attention/attention_fwd.h"
#include "cuda/attention/attention_ptx.cuh"
#include "cuda/attention/key_tiles.cuh"
#include "cuda/attention/online_softmax.cuh"
#include "cuda/attention/sm90/attention_sm90_ptx.cuh"

#ifndef PRISM_SM90_STAGES_D128
#define PRISM_SM90_STAGES_D128 3
#endif

namespace prism::cuda::attn::sm90 {

template <int D>
struct Sm90Traits {
  static constexpr int kD = D;
  static constexpr int kBlockM = 128;  // two consumer warpgroups x 64 rows
  static constexpr int kBlockN = 128;
  static constexpr int kStages = D == 128 ? PRISM_SM90_STAGES_D128 : 3;
  static constexpr int kThreads = 384;
  static constexpr int kColBlocks = D / 64;         // 64-element (128-byte) column blocks
  static constexpr int kColBytesQ = kBlockM * 128;  // one column block of the Q tile
  static constexpr int kColBytesKV = kBlockN * 128;
  static constexpr int kTileBytesQ = kBlockM * D * 2;
  static constexpr int kTileBytesKV = kBlockN * D * 2;
  static constexpr int kSmemBytes = kTileBytesQ + 2 * kStages * kTileBytesKV + 1024;  // + align
  static constexpr int kNumBars = 1 + 4 * kStages + 5;  // + q_empty, item_full[2], item_empty[2]
  static_assert(D == 64 || D == 128, "head_dim 64 or 128");
};

struct Sm90Params {
  CUtensorMap tq;  // (d, nq, hq, batch), box (64, 128, 1, 1)
  CUtensorMap tk;  // (d, nk, hkv, batch)
  CUtensorMap tv;
  FwdParams p;
  int32_t pingpong = 0;  // consumer warpgroups take turns issuing their GEMMs (not persistent;
                         // read only in PRISM_TUNING_VARIANTS builds)
  int32_t* work_counter = nullptr;  // persistent: zeroed item counter; null: one CTA per item
  int32_t n_items = 0;
};

template <typename T, int D>
__global__ void __launch_bounds__(384, 1)
    attn_fwd_sm90_kernel(const __grid_constant__ Sm90Params prm) {
#if PRISM_SM90_ENABLED
  using KT = Sm90Traits<D>;
  using E = ElemTraits<T>;
  constexpr int S = KT::kStages;
  constexpr int kBlockM = KT::kBlockM, kBlockN = KT::kBlockN;
  constexpr int kCB = KT::kColBlocks;

  // Static: its presence is how the host tells a real sm_90a image from the
  // empty body of the other passes (cudaFuncAttributes::sharedSizeBytes).
  __shared__ __align__(8) uint64_t bars[KT::kNumBars];
  extern __shared__ __align__(1024) unsigned char smem_dyn[];
  const uint32_t mis = smem_addr(smem_dyn) & 1023u;
  unsigned char* base = smem_dyn + ((1024u - mis) & 1023u);
  unsigned char* sQ = base;
  unsigned char* sK = sQ + KT::kTileBytesQ;
  unsigned char* sV = sK + S * KT::kTileBytesKV;
  uint64_t* bar_q = bars;
  uint64_t* kfull = bars + 1;
  uint64_t* vfull = kfull + S;
  uint64_t* kempty = vfull + S;
  uint64_t* vempty = kempty + S;
  uint64_t* q_empty = vempty + S;
  uint64_t* item_full = q_empty + 1;
  uint64_t* item_empty = item_full + 2;
  __shared__ int item_slot[2];

  const FwdParams& p = prm.p;
  const int tid = threadIdx.x;
  const int lane = tid & 31;
  const int warp = tid >> 5;
  const int wg = warp >> 2;

  const bool persistent = prm.work_counter != nullptr;
  // ---- work items -------------------------------------------------------------------
  // Order: (batch, kv head) groups one after the other, so the CTAs running at
  // any time share one head's K/V and find its tiles in L2 (measured on H100:
  // dense -1..4%, 20%-sparse -3..13% time against the sm80 order of query tiles
  // over all heads / list-length sort); inside a group the last (longest) query
  // tiles first, the query heads of the GQA group side by side. p.order is not
  // used.
  struct Item {
    int bh, b, h, hk, row0;
  };
  auto decode = [&](int item) {
    const int per = p.group * p.n_mtiles;
    const int grp = item / per;  // b * hkv + hk
    const int y = item - grp * per;
    const int qt = p.n_mtiles - 1 - y / p.group;
    Item w;
    w.bh = grp * p.group + (y % p.group);  // b * hq + h
    w.b = w.bh / p.hq;
    w.h = w.bh - w.b * p.hq;
    w.hk = w.h / p.group;
    w.row0 = tile_row0(qt, p.nq, p.nk,
                       kBlockM);  // < 0 for a chunk's partial first tile: TMA fills zeros
    return w;
  };

  if (tid == 0) {
    mbar_init(bar_q, 1);
#pragma unroll
    for (int s = 0; s < S; ++s) {
      mbar_init(&kfull[s], 1);
      mbar_init(&vfull[s], 1);
      mbar_init(&kempty[s], 8);  // one arrival per consumer warp
      mbar_init(&vempty[s], 8);
    }
    mbar_init(q_empty, 8);
    mbar_init(&item_full[0], 1);
    mbar_init(&item_full[1], 1);
    mbar_init(&item_empty[0], 256);  // every consumer thread that read the slot
    mbar_init(&item_empty[1], 256);
    mbar_fence_init();
  }
  __syncthreads();

  if (wg == 0) {
    // ================================ producer ================================
    setmaxnreg_dec<24>();
    if (warp == 0 && lane == 0) {
      tma_prefetch_desc(&prm.tk);
      tma_prefetch_desc(&prm.tv);
      int kv = 0;  // position in the K/V ring, carried across items
      for (int it = 0;; ++it) {
        int item;
        if (persistent) {
          const int slot = it & 1;
          if (it >= 2) mbar_wait(&item_empty[slot], ((it >> 1) - 1) & 1);
          item = atomicAdd(prm.work_counter, 1);
          if (item >= prm.n_items) item = -1;
          item_slot[slot] = item;
          mbar_arrive(&item_full[slot]);  // release: the consumers read item_slot after their wait
        } else {
          item = it == 0 ? static_cast<int>(blockIdx.x) : -1;
        }
        if (item < 0) break;
        const Item w = decode(item);
        const KeyTiles<kBlockM, kBlockN> keys(p, w.bh, w.row0, p.counts != nullptr);
        if (it >= 1) mbar_wait(q_empty, (it - 1) & 1);
        mbar_arrive_expect_tx(bar_q, KT::kTileBytesQ);
#pragma unroll
        for (int cb = 0; cb < kCB; ++cb)
          tma_load_4d(sQ + cb * KT::kColBytesQ, &prm.tq, bar_q, cb * 64, w.row0, w.h, w.b);
        for (int t = 0; t < keys.count; ++t, ++kv) {
          const int s = kv % S;
          const int r = kv / S;
          const int start = keys.start(t);
          if (kv >= S) mbar_wait(&kempty[s], (r - 1) & 1);
          mbar_arrive_expect_tx(&kfull[s], KT::kTileBytesKV);
#pragma unroll
          for (int cb = 0; cb < kCB; ++cb)
            tma_load_4d(sK + s * KT::kTileBytesKV + cb * KT::kColBytesKV, &prm.tk, &kfull[s],
                        cb * 64, start, w.hk, w.b);
          if (kv >= S) mbar_wait(&vempty[s], (r - 1) & 1);
          mbar_arrive_expect_tx(&vfull[s], KT::kTileBytesKV);
#pragma unroll
          for (int cb = 0; cb < kCB; ++cb)
            tma_load_4d(sV + s * KT::kTileBytesKV + cb * KT::kColBytesKV, &prm.tv, &vfull[s],
                        cb * 64, start, w.hk, w.b);
        }
      }
    }
  } else {
    // ================================ consumers ===============================
    setmaxnreg_inc<240>();
    const int cw = wg - 1;    // consumer warpgroup: tile rows [64 cw, 64 cw + 64)
    const int wq = warp & 3;  // warp inside the warpgroup: 16 rows each
    const int rloc = cw * 64 + wq * 16 + (lane >> 2);  // tile row of the hf = 0 registers
    const float sl2 = p.scale_log2;
    const uint32_t q_base = smem_addr(sQ) + cw * 64 * 128;
    const uint32_t k_base = smem_addr(sK);
    const uint32_t v_base = smem_addr(sV);

    auto issue_qk = [&](float(&sc)[kBlockN / 2], int stage) {
      wgmma_fence();
#pragma unroll
      for (int kk = 0; kk < D / 16; ++kk) {
        const uint64_t da =
            make_desc_sw128(q_base + (kk >> 2) * KT::kColBytesQ + (kk & 3) * 32, 16, 1024);
        const uint64_t db = make_desc_sw128(
            k_base + stage * KT::kTileBytesKV + (kk >> 2) * KT::kColBytesKV + (kk & 3) * 32, 16,
            1024);
        Wgmma<T>::ss128(sc, da, db, kk > 0 ? 1 : 0);
      }
      wgmma_commit();
    };
    auto release = [&](uint64_t* bar) {
      __syncwarp();
      if (lane == 0) mbar_arrive(bar);
    };
    // Ping-pong: named barrier 3 + w is warpgroup w's turn to issue GEMMs.
    // Compiled only in PRISM_TUNING_VARIANTS builds (the plan sets it there only).
#if PRISM_TUNING_BUILD
    const bool pp = prm.pingpong != 0 && !persistent;
#else
    constexpr bool pp = false;
#endif
    auto my_turn = [&]() {
      if (pp) named_bar_sync(3 + cw, 256);
    };
    auto your_turn = [&]() {
      if (pp) named_bar_arrive(3 + (cw ^ 1), 256);
    };

    int kv = 0;  // position in the K/V ring, carried across items
    for (int it = 0;; ++it) {
      int item;
      if (persistent) {
        const int slot = it & 1;
        mbar_wait(&item_full[slot], (it >> 1) & 1);
        item = item_slot[slot];
        mbar_arrive(&item_empty[slot]);  // each reader releases its own read
      } else {
        item = it == 0 ? static_cast<int>(blockIdx.x) : -1;
      }
      if (item < 0) break;
      const Item w = decode(item);
      const KeyTiles<kBlockM, kBlockN> keys(p, w.bh, w.row0, p.counts != nullptr);
      const int key_end = keys.key_end;
      const int ntiles = keys.count;
      const int s_row0 = keys.s_lo + rloc;      // absolute position of the hf = 0 row (hf = 1: + 8)
      const int s_wg_lo = keys.s_lo + cw * 64;  // first position of this warpgroup

      float o[D / 2];
#pragma unroll
      for (int i = 0; i < D / 2; ++i) o[i] = 0.f;
      float m[2] = {-CUDART_INF_F, -CUDART_INF_F};
      float l[2] = {0.f, 0.f};

      auto issue_pv = [&](uint32_t(&pk)[kBlockN / 16][4], int stage) {
        wgmma_fence();
#pragma unroll
        for (int j = 0; j < kBlockN / 16; ++j) {
          const uint64_t db = make_desc_sw128(v_base + stage * KT::kTileBytesKV + j * 16 * 128,
                                              KT::kColBytesKV, 1024);
          if constexpr (D == 128)
            Wgmma<T>::rs128(o, pk[j], db);
          else
            Wgmma<T>::rs64(o, pk[j], db);
        }
        wgmma_commit();
      };
      // Masks, then turns the scores into exp2 probabilities in place; returns the
      // rescale factor of the previous accumulators per row half.
      auto softmax = [&](float(&sc)[kBlockN / 2], int start, float(&alpha)[2]) {
        const bool need_mask = (start + kBlockN - 1 > s_wg_lo) || (start + kBlockN > key_end);
        if (need_mask) {
          const int key0 = start + (lane & 3) * 2;
#pragma unroll
          for (int hf = 0; hf < 2; ++hf) {
            const int lim = min(s_row0 + hf * 8 + 1, key_end);
#pragma unroll
            for (int i = 0; i < kBlockN / 8; ++i)
#pragma unroll
              for (int e = 0; e < 2; ++e)
                if (key0 + i * 8 + e >= lim) sc[4 * i + 2 * hf + e] = -CUDART_INF_F;
          }
        }
#pragma unroll
        for (int hf = 0; hf < 2; ++hf) {
          float mx = m[hf];
#pragma unroll
          for (int i = 0; i < kBlockN / 8; ++i)
            mx = fmaxf(mx, fmaxf(sc[4 * i + 2 * hf], sc[4 * i + 2 * hf + 1]));
          mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
          mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
          const float ms = (mx == -CUDART_INF_F) ? 0.f : mx * sl2;
          alpha[hf] = exp2_approx(m[hf] * sl2 - ms);
          m[hf] = mx;
          float sum = 0.f;
#pragma unroll
          for (int i = 0; i < kBlockN / 8; ++i)
#pragma unroll
            for (int e = 0; e < 2; ++e) {
              const float v = exp2_approx(fmaf(sc[4 * i + 2 * hf + e], sl2, -ms));
              sc[4 * i + 2 * hf + e] = v;
              sum += v;
            }
          l[hf] = l[hf] * alpha[hf] + sum;
        }
      };
      auto to_p = [&](const float(&sc)[kBlockN / 2], uint32_t(&pk)[kBlockN / 16][4]) {
#pragma unroll
        for (int j = 0; j < kBlockN / 16; ++j)
#pragma unroll
          for (int x = 0; x < 4; ++x) pk[j][x] = E::pack(sc[8 * j + 2 * x], sc[8 * j + 2 * x + 1]);
      };
      // After the wgmma that read them has completed: pin the registers it
      // wrote or read in place, then hand the shared-memory stage back.
      auto qk_done = [&](float(&sc)[kBlockN / 2], int stage) {
#pragma unroll
        for (int i = 0; i < kBlockN / 2; ++i) reg_fence(sc[i]);
        release(&kempty[stage]);
      };
      auto pv_done = [&](uint32_t(&pk)[kBlockN / 16][4], int stage) {
#pragma unroll
        for (int i = 0; i < D / 2; ++i) reg_fence(o[i]);
#pragma unroll
        for (int j = 0; j < kBlockN / 16; ++j)
#pragma unroll
          for (int x = 0; x < 4; ++x) reg_fence(pk[j][x]);
        release(&vempty[stage]);
      };
      if (cw == 1 && ntiles > 0) your_turn();  // warpgroup 0 goes first

      mbar_wait(bar_q, it & 1);
      if (ntiles > 0) {
        float sc[kBlockN / 2];
        uint32_t pk[kBlockN / 16][4];
        float alpha[2];
        mbar_wait(&kfull[kv % S], (kv / S) & 1);
        my_turn();
        issue_qk(sc, kv % S);
        your_turn();
        int cur_start = keys.start(0);
        wgmma_wait<0>();
        qk_done(sc, kv % S);
        softmax(sc, cur_start, alpha);
        to_p(sc, pk);

        for (int t = 1; t < ntiles; ++t) {
          const int c = kv + t;
          const int st = c % S, pt = (c / S) & 1;
          const int sp = (c - 1) % S, ph = ((c - 1) / S) & 1;
          cur_start = keys.start(t);
          mbar_wait(&kfull[st], pt);
          mbar_wait(&vfull[sp], ph);
          my_turn();
          issue_qk(sc, st);
          issue_pv(pk, sp);
          your_turn();
          wgmma_wait<1>();
          qk_done(sc, st);
          softmax(sc, cur_start, alpha);
          wgmma_wait<0>();
          pv_done(pk, sp);
#pragma unroll
          for (int i = 0; i < D / 8; ++i) {
            o[4 * i + 0] *= alpha[0];
            o[4 * i + 1] *= alpha[0];
            o[4 * i + 2] *= alpha[1];
            o[4 * i + 3] *= alpha[1];
          }
          to_p(sc, pk);
        }
        if (persistent) release(q_empty);  // the last QK GEMM has completed: Q may be replaced
        {
          const int c = kv + ntiles - 1;
          const int sp = c % S, ph = (c / S) & 1;
          mbar_wait(&vfull[sp], ph);
          my_turn();
          issue_pv(pk, sp);
          your_turn();
          if (cw == 0) my_turn();  // takes warpgroup 1's last hand-over: barriers end balanced
          wgmma_wait<0>();
          pv_done(pk, sp);
        }
      } else if (persistent) {
        release(q_empty);
      }
      kv += ntiles;

      const int row_lo = keys.row_lo;
      const int rows_valid = keys.rows_valid;
      T* gO = static_cast<T*>(p.o) + w.b * p.o_sb + w.h * p.o_sh + int64_t(w.row0) * p.o_sn;
      float inv[2];
#pragma unroll
      for (int hf = 0; hf < 2; ++hf) {
        float sum = l[hf];
        sum += __shfl_xor_sync(0xffffffffu, sum, 1);
        sum += __shfl_xor_sync(0xffffffffu, sum, 2);
        inv[hf] = sum > 0.f ? 1.f / sum : 0.f;
        const int r = rloc + hf * 8;
        if (p.lse != nullptr && (lane & 3) == 0 && r >= row_lo && r < rows_valid)
          p.lse[int64_t(w.bh) * p.nq + w.row0 + r] = row_lse(m[hf], sum, sl2);
      }
      if (persistent) {
        // ---- epilogue from registers (sQ may already hold the next item's Q) ----
#pragma unroll
        for (int hf = 0; hf < 2; ++hf) {
          const int r = rloc + hf * 8;
          if (r >= row_lo && r < rows_valid) {
            T* orow = gO + int64_t(r) * p.o_sn + (lane & 3) * 2;
#pragma unroll
            for (int i = 0; i < D / 8; ++i)
              *reinterpret_cast<uint32_t*>(orow + i * 8) =
                  E::pack(o[4 * i + 2 * hf] * inv[hf], o[4 * i + 2 * hf + 1] * inv[hf]);
          }
        }
        continue;
      }
      // ---- epilogue: normalise, stage over this warpgroup's Q rows, 16-byte stores ----
      named_bar_sync(1 + cw, 128);  // every warp of the warpgroup is done reading its Q rows
#pragma unroll
      for (int hf = 0; hf < 2; ++hf) {
        const int r = rloc + hf * 8;
#pragma unroll
        for (int i = 0; i < D / 8; ++i) {
          const int cb = i >> 3, ch = i & 7;
          const uint32_t v = E::pack(o[4 * i + 2 * hf] * inv[hf], o[4 * i + 2 * hf + 1] * inv[hf]);
          *reinterpret_cast<uint32_t*>(sQ + cb * KT::kColBytesQ + r * 128 + ((ch ^ (r & 7)) << 4) +
                                       (lane & 3) * 4) = v;
        }
      }
      named_bar_sync(1 + cw, 128);
      const int tw = tid - 128 * wg;
      constexpr int kChunks = D / 8;
#pragma unroll
      for (int x_it = 0; x_it < 64 * kChunks / 128; ++x_it) {
        const int x = tw + x_it * 128;
        const int r = cw * 64 + x / kChunks;
        const int c = x % kChunks;
        if (r >= row_lo && r < rows_valid) {
          const int cb = c >> 3, ch = c & 7;
          *reinterpret_cast<uint4*>(gO + int64_t(r) * p.o_sn + c * 8) =
              *reinterpret_cast<const uint4*>(sQ + cb * KT::kColBytesQ + r * 128 +
                                              ((ch ^ (r & 7)) << 4));
        }
      }
    }
  }
#else
  __trap();
#endif
}

}  // namespace prism::cuda::attn::sm90

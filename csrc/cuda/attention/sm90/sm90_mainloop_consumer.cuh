// The consumers of the sm_90a attention kernel: warpgroups 1 and 2, registers
// raised with setmaxnreg, 64 query rows each (consumer warpgroup cw: tile rows
// [64 cw, 64 cw + 64); warp wq of it: 16 rows). Per work item, over its key
// tiles:
//   S = Q K^T   wgmma, both operands in shared memory (K-major descriptors);
//   softmax     causal mask on the tiles that cross the diagonal or the key
//               end, online softmax in fp32 in the exp2 domain
//               (online_softmax.cuh, the steps the portable kernel shares);
//   O += P V    wgmma, P from registers, V in shared memory (MN-major
//               descriptor, transpose bit).
// Software pipelined: the scores of tile t are computed while the P V product
// of tile t-1 runs on the tensor cores. Each stage goes back to the producer as
// soon as the GEMM reading it has completed (k_empty after QK, v_empty after
// PV); on a persistent schedule so does the Q tile, after the item's last QK
// GEMM (q_empty). Ping-pong (single-tile schedule, Sm90Params::pingpong,
// PRISM_TUNING_VARIANTS builds only): the two warpgroups take turns issuing
// GEMMs, ordered by the NamedBarrier::kTurn barriers.
// The result stays in registers (ConsumerAccum) for the epilogue.
#pragma once
#include <math_constants.h>
#include <cstdint>
#include "cuda/attention/attention_ptx.cuh"
#include "cuda/attention/key_tiles.cuh"
#include "cuda/attention/online_softmax.cuh"
#include "cuda/attention/sm90/attention_sm90_ptx.cuh"
#include "cuda/attention/sm90/sm90_shared_storage.cuh"
#include "cuda/attention/sm90/sm90_traits.cuh"

namespace prism::cuda::attn::sm90 {

#if PRISM_SM90_ENABLED

// What a consumer thread holds of its rows: the O fragment of the m64nD wgmma
// accumulator and the online-softmax state of its two row halves (rows rloc
// and rloc + 8 of the tile; a quad of lanes shares a row).
template <int D>
struct ConsumerAccum {
  float o[D / 2];
  float off[2];  // running exp2 offset: max raw score * scale_log2 (online_softmax.cuh)
  float l[2];    // thread-partial softmax denominator (the epilogue sums the quad)
};

// Which rows a consumer thread owns.
struct ConsumerThread {
  int cw;    // consumer warpgroup: tile rows [64 cw, 64 cw + 64)
  int lane;  // lane in the warp
  int rloc;  // tile row of the hf = 0 registers (hf = 1: + 8)
  int tw;    // thread in the warpgroup
  __device__ __forceinline__ explicit ConsumerThread(int tid) {
    lane = tid & 31;
    const int warp = tid >> 5;
    const int wg = warp >> 2;
    cw = wg - 1;
    rloc = cw * 64 + (warp & 3) * 16 + (lane >> 2);
    tw = tid - Sm90Roles::kWarpgroupThreads * wg;
  }
};

template <typename T, class KT, class Scheduler>
struct ConsumerMainloop {
  static constexpr int D = KT::kD;
  static constexpr int S = KT::kStages;
  static constexpr int kBlockN = KT::kBlockN;
  using E = ElemTraits<T>;
#if PRISM_TUNING_BUILD
  static constexpr bool kPingPong = !Scheduler::kPersistent;
#else
  static constexpr bool kPingPong = false;
#endif

  const ConsumerThread th;
  PipelineBarriers<S>& bar;
  const float sl2;
  const uint32_t q_base, k_base, v_base;  // this warpgroup's Q rows; stage 0 of K and V
  const bool pingpong;
  int kv = 0;  // position in the K/V ring, carried across items
  int n = 0;   // items of this CTA before the current one (q_full's phase)

  __device__ __forceinline__ ConsumerMainloop(const Sm90Params& prm, const SmemTiles<KT>& smem,
                                              PipelineBarriers<S>& bars, const ConsumerThread& t)
      : th(t),
        bar(bars),
        sl2(prm.p.scale_log2),
        q_base(smem_addr(smem.q) + t.cw * KT::kConsumerRows * 128),
        k_base(smem_addr(smem.k)),
        v_base(smem_addr(smem.v)),
        pingpong(kPingPong && prm.pingpong != 0) {}

  // One item: acc gets its unnormalised O, running offsets and partial sums.
  __device__ __forceinline__ void run(const KeyTiles<KT::kBlockM, kBlockN>& keys,
                                      ConsumerAccum<D>& acc) {
    const int ntiles = keys.count;
    const int s_row0 = keys.s_lo + th.rloc;  // absolute position of the hf = 0 row (hf = 1: + 8)
    const int s_wg_lo = keys.s_lo + th.cw * KT::kConsumerRows;  // first position of the warpgroup
#pragma unroll
    for (int i = 0; i < D / 2; ++i) acc.o[i] = 0.f;
    acc.off[0] = acc.off[1] = -CUDART_INF_F;
    acc.l[0] = acc.l[1] = 0.f;
    if (th.cw == 1 && ntiles > 0) your_turn();  // warpgroup 0 goes first

    mbar_wait(&bar.q_full, n & 1);
    if (ntiles > 0) {
      float sc[kBlockN / 2];
      uint32_t pk[kBlockN / 16][4];
      float alpha[2];
      mbar_wait(&bar.k_full[kv % S], (kv / S) & 1);
      my_turn();
      issue_qk(sc, kv % S);
      your_turn();
      int cur_start = keys.visit_start(0);
      wgmma_wait<0>();
      qk_done(sc, kv % S);
      softmax(acc, sc, cur_start, s_row0, s_wg_lo, keys.key_end, alpha);
      to_p(sc, pk);

      for (int t = 1; t < ntiles; ++t) {
        const int c = kv + t;
        const int st = c % S, pt = (c / S) & 1;
        const int sp = (c - 1) % S, ph = ((c - 1) / S) & 1;
        cur_start = keys.visit_start(t);
        mbar_wait(&bar.k_full[st], pt);
        mbar_wait(&bar.v_full[sp], ph);
        my_turn();
        issue_qk(sc, st);
        issue_pv(acc.o, pk, sp);
        your_turn();
        wgmma_wait<1>();
        qk_done(sc, st);
        softmax(acc, sc, cur_start, s_row0, s_wg_lo, keys.key_end, alpha);
        wgmma_wait<0>();
        pv_done(acc.o, pk, sp);
        rescale_rows<D / 8>([&](int i, int j) -> float& { return acc.o[4 * i + j]; }, alpha[0],
                            alpha[1]);
        to_p(sc, pk);
      }
      // The last QK GEMM has completed: Q may be replaced.
      if constexpr (Scheduler::kPersistent) release(&bar.q_empty);
      {
        const int c = kv + ntiles - 1;
        const int sp = c % S, ph = (c / S) & 1;
        mbar_wait(&bar.v_full[sp], ph);
        my_turn();
        issue_pv(acc.o, pk, sp);
        your_turn();
        if (th.cw == 0) my_turn();  // takes warpgroup 1's last hand-over: barriers end balanced
        wgmma_wait<0>();
        pv_done(acc.o, pk, sp);
      }
    } else if constexpr (Scheduler::kPersistent) {
      release(&bar.q_empty);
    }
    kv += ntiles;
    ++n;
  }

 private:
  // One arrival per warp on an empty barrier.
  __device__ __forceinline__ void release(uint64_t* b) const {
    __syncwarp();
    if (th.lane == 0) mbar_arrive(b);
  }
  // Ping-pong: wait for this warpgroup's turn / hand the turn to the other one.
  __device__ __forceinline__ void my_turn() const {
    if (pingpong) named_bar_sync(barrier_id(NamedBarrier::kTurn, th.cw), KT::kConsumerThreads);
  }
  __device__ __forceinline__ void your_turn() const {
    if (pingpong)
      named_bar_arrive(barrier_id(NamedBarrier::kTurn, th.cw ^ 1), KT::kConsumerThreads);
  }

  __device__ __forceinline__ void issue_qk(float (&sc)[kBlockN / 2], int stage) const {
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
  }
  __device__ __forceinline__ void issue_pv(float (&o)[D / 2], uint32_t (&pk)[kBlockN / 16][4],
                                           int stage) const {
    wgmma_fence();
#pragma unroll
    for (int j = 0; j < kBlockN / 16; ++j) {
      const uint64_t db =
          make_desc_sw128(v_base + stage * KT::kTileBytesKV + j * 16 * 128, KT::kColBytesKV, 1024);
      if constexpr (D == 128)
        Wgmma<T>::rs128(o, pk[j], db);
      else
        Wgmma<T>::rs64(o, pk[j], db);
    }
    wgmma_commit();
  }

  // Masks, then turns the scores into exp2 probabilities in place; alpha gets
  // the rescale factor of the previous accumulators per row half.
  __device__ __forceinline__ void softmax(ConsumerAccum<D>& acc, float (&sc)[kBlockN / 2],
                                          int start, int s_row0, int s_wg_lo, int key_end,
                                          float (&alpha)[2]) const {
    auto frag = [&](int i, int j) -> float& { return sc[4 * i + j]; };
    constexpr int kNT = kBlockN / 8;
    if (tile_needs_mask<kBlockN>(start, s_wg_lo, key_end)) {
      const int key0 = start + (th.lane & 3) * 2;
#pragma unroll
      for (int hf = 0; hf < 2; ++hf) mask_row_half<kNT>(frag, hf, key0, s_row0 + hf * 8, key_end);
    }
#pragma unroll
    for (int hf = 0; hf < 2; ++hf) {
      const float off = row_offset_quad<kNT>(frag, hf, acc.off[hf], sl2);
      const float ms = exp2_offset(off);
      alpha[hf] = rescale_factor(acc.off[hf], ms);
      acc.off[hf] = off;
      float sum = 0.f;
#pragma unroll
      for (int i = 0; i < kNT; ++i)
#pragma unroll
        for (int e = 0; e < 2; ++e) {
          const float v = exp2_prob(sc[4 * i + 2 * hf + e], sl2, ms);
          sc[4 * i + 2 * hf + e] = v;
          sum += v;
        }
      acc.l[hf] = acc.l[hf] * alpha[hf] + sum;
    }
  }
  static __device__ __forceinline__ void to_p(const float (&sc)[kBlockN / 2],
                                              uint32_t (&pk)[kBlockN / 16][4]) {
#pragma unroll
    for (int j = 0; j < kBlockN / 16; ++j)
#pragma unroll
      for (int x = 0; x < 4; ++x) pk[j][x] = E::pack(sc[8 * j + 2 * x], sc[8 * j + 2 * x + 1]);
  }
  // After the wgmma that read them has completed: pin the registers it wrote
  // or read in place, then hand the shared-memory stage back.
  __device__ __forceinline__ void qk_done(float (&sc)[kBlockN / 2], int stage) const {
#pragma unroll
    for (int i = 0; i < kBlockN / 2; ++i) reg_fence(sc[i]);
    release(&bar.k_empty[stage]);
  }
  __device__ __forceinline__ void pv_done(float (&o)[D / 2], uint32_t (&pk)[kBlockN / 16][4],
                                          int stage) const {
#pragma unroll
    for (int i = 0; i < D / 2; ++i) reg_fence(o[i]);
#pragma unroll
    for (int j = 0; j < kBlockN / 16; ++j)
#pragma unroll
      for (int x = 0; x < 4; ++x) reg_fence(pk[j][x]);
    release(&bar.v_empty[stage]);
  }
};

#endif  // PRISM_SM90_ENABLED

}  // namespace prism::cuda::attn::sm90

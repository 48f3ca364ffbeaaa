// The epilogue of the sm_90a attention kernel, run by each consumer thread
// after its item's mainloop: normalises its O rows by the softmax denominator
// (summed over the quad), writes the row LSE when asked, and stores O (rows
// outside [row_lo, rows_valid) are not real and never stored). Where O goes
// through is the scheduler's property, fixed at compile time:
//   single tile  the CTA's Q tile is free once the mainloop ends: each consumer
//                warpgroup stages its 64 rows over its own Q rows (swizzled, as
//                loaded) between two NamedBarrier::kWarpgroup syncs, then
//                stores them in 16-byte chunks;
//   persistent   the producer may already have loaded the next item's Q into
//                that tile: stores straight from registers (4 bytes a thread).
#pragma once
#include <cstdint>
#include "cuda/attention/attention_ptx.cuh"
#include "cuda/attention/key_tiles.cuh"
#include "cuda/attention/online_softmax.cuh"
#include "cuda/attention/sm90/attention_sm90_ptx.cuh"
#include "cuda/attention/sm90/sm90_mainloop_consumer.cuh"
#include "cuda/attention/sm90/sm90_shared_storage.cuh"
#include "cuda/attention/sm90/sm90_tile_scheduler.cuh"
#include "cuda/attention/sm90/sm90_traits.cuh"

namespace prism::cuda::attn::sm90 {

#if PRISM_SM90_ENABLED

template <typename T, class KT, class Scheduler>
struct Epilogue {
  static constexpr int D = KT::kD;
  using E = ElemTraits<T>;

  static __device__ __forceinline__ void store(const FwdParams& p, const WorkTile& w,
                                               const KeyTiles<KT::kBlockM, KT::kBlockN>& keys,
                                               const ConsumerAccum<D>& acc,
                                               const SmemTiles<KT>& smem,
                                               const ConsumerThread& th) {
    const int row_lo = keys.row_lo;
    const int rows_valid = keys.rows_valid;
    T* gO = static_cast<T*>(p.o) + w.b * p.o_sb + w.h * p.o_sh + int64_t(w.row0) * p.o_sn;
    float inv[2];
#pragma unroll
    for (int hf = 0; hf < 2; ++hf) {
      const float sum = quad_sum(acc.l[hf]);
      inv[hf] = inv_row_sum(sum);
      const int r = th.rloc + hf * 8;
      if (p.lse != nullptr && (th.lane & 3) == 0 && r >= row_lo && r < rows_valid)
        p.lse[int64_t(w.bh) * p.lse_sh + w.row0 + r] = row_lse(acc.off[hf], sum);
    }
    if constexpr (Scheduler::kPersistent)
      store_from_registers(p, gO, acc, inv, row_lo, rows_valid, th);
    else
      store_staged(p, gO, acc, inv, row_lo, rows_valid, smem, th);
  }

 private:
  static __device__ __forceinline__ void store_from_registers(const FwdParams& p, T* gO,
                                                              const ConsumerAccum<D>& acc,
                                                              const float (&inv)[2], int row_lo,
                                                              int rows_valid,
                                                              const ConsumerThread& th) {
#pragma unroll
    for (int hf = 0; hf < 2; ++hf) {
      const int r = th.rloc + hf * 8;
      if (r >= row_lo && r < rows_valid) {
        T* orow = gO + int64_t(r) * p.o_sn + (th.lane & 3) * 2;
#pragma unroll
        for (int i = 0; i < D / 8; ++i)
          *reinterpret_cast<uint32_t*>(orow + i * 8) =
              E::pack(acc.o[4 * i + 2 * hf] * inv[hf], acc.o[4 * i + 2 * hf + 1] * inv[hf]);
      }
    }
  }

  static __device__ __forceinline__ void store_staged(const FwdParams& p, T* gO,
                                                      const ConsumerAccum<D>& acc,
                                                      const float (&inv)[2], int row_lo,
                                                      int rows_valid, const SmemTiles<KT>& smem,
                                                      const ConsumerThread& th) {
    unsigned char* sQ = smem.q;
    const int bar = barrier_id(NamedBarrier::kWarpgroup, th.cw);
    named_bar_sync(bar, KT::kWarpgroupThreads);  // every warp of the warpgroup is done reading Q
#pragma unroll
    for (int hf = 0; hf < 2; ++hf) {
      const int r = th.rloc + hf * 8;
#pragma unroll
      for (int i = 0; i < D / 8; ++i) {
        const int cb = i >> 3, ch = i & 7;
        const uint32_t v =
            E::pack(acc.o[4 * i + 2 * hf] * inv[hf], acc.o[4 * i + 2 * hf + 1] * inv[hf]);
        *reinterpret_cast<uint32_t*>(sQ + cb * KT::kColBytesQ + r * 128 + ((ch ^ (r & 7)) << 4) +
                                     (th.lane & 3) * 4) = v;
      }
    }
    named_bar_sync(bar, KT::kWarpgroupThreads);  // the warpgroup's rows are staged
    constexpr int kChunks = D / 8;
#pragma unroll
    for (int x_it = 0; x_it < KT::kConsumerRows * kChunks / KT::kWarpgroupThreads; ++x_it) {
      const int x = th.tw + x_it * KT::kWarpgroupThreads;
      const int r = th.cw * KT::kConsumerRows + x / kChunks;
      const int c = x % kChunks;
      if (r >= row_lo && r < rows_valid) {
        const int cb = c >> 3, ch = c & 7;
        *reinterpret_cast<uint4*>(gO + int64_t(r) * p.o_sn + c * 8) =
            *reinterpret_cast<const uint4*>(sQ + cb * KT::kColBytesQ + r * 128 +
                                            ((ch ^ (r & 7)) << 4));
      }
    }
  }
};

#endif  // PRISM_SM90_ENABLED

}  // namespace prism::cuda::attn::sm90

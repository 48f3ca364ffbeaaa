// Shared memory of the sm_90a attention kernel: the Q, K and V tiles (dynamic
// shared memory) and the mbarriers of the load pipeline (static).
//
// Which barrier orders what (S = kStages, ring position kv: stage kv % S,
// phase (kv / S) & 1, carried across the items of a persistent CTA):
//   q_full      producer -> consumers: the item's Q tile has landed (TMA bytes);
//               phase: the CTA's item count & 1.
//   k_full[s]   producer -> consumers: K of ring position kv has landed in stage s.
//   v_full[s]   the same for V.
//   k_empty[s]  consumers -> producer: both warpgroups' QK GEMMs reading stage s
//               have completed (one arrival per consumer warp), so the
//               producer may load the K of position kv + S there.
//   v_empty[s]  the same for V, after the PV GEMM.
//   q_empty     consumers -> producer, persistent schedule only: the item's last
//               QK GEMM has completed, so the next item's Q may be loaded.
// The item mailbox of the persistent schedule is the scheduler's
// (sm90_tile_scheduler.cuh); the named barriers are in sm90_traits.cuh.
#pragma once
#include <cstdint>
#include "cuda/attention/sm90/attention_sm90_ptx.cuh"
#include "cuda/attention/sm90/sm90_traits.cuh"

namespace prism::cuda::attn::sm90 {

#if PRISM_SM90_ENABLED

// The tiles in dynamic shared memory, from its first 1024-byte boundary (the
// 128-byte swizzle of TMA and wgmma): every tile is kColBlocks column blocks
// of rows x 128 bytes, swizzled.
//   q   one Q tile (kBlockM rows); the single-tile epilogue stages O over it;
//   k   kStages K tiles (kBlockN rows each);
//   v   kStages V tiles.
template <class KT>
struct SmemTiles {
  unsigned char* q;
  unsigned char* k;
  unsigned char* v;
  __device__ __forceinline__ explicit SmemTiles(unsigned char* dyn) {
    const uint32_t mis = smem_addr(dyn) & 1023u;
    q = dyn + ((1024u - mis) & 1023u);
    k = q + KT::kTileBytesQ;
    v = k + KT::kStages * KT::kTileBytesKV;
  }
};

template <int kStages>
struct PipelineBarriers {
  uint64_t q_full;
  uint64_t k_full[kStages];
  uint64_t v_full[kStages];
  uint64_t k_empty[kStages];
  uint64_t v_empty[kStages];
  uint64_t q_empty;

  // By one thread, before the CTA-wide sync that publishes them.
  __device__ __forceinline__ void init() {
    mbar_init(&q_full, Sm90Roles::kFullArrivals);
#pragma unroll
    for (int s = 0; s < kStages; ++s) {
      mbar_init(&k_full[s], Sm90Roles::kFullArrivals);
      mbar_init(&v_full[s], Sm90Roles::kFullArrivals);
      mbar_init(&k_empty[s], Sm90Roles::kEmptyArrivals);
      mbar_init(&v_empty[s], Sm90Roles::kEmptyArrivals);
    }
    mbar_init(&q_empty, Sm90Roles::kEmptyArrivals);
  }
};

// Everything in static shared memory: the pipeline's barriers and the
// scheduler's storage.
template <int kStages, class Scheduler>
struct SharedBarriers {
  PipelineBarriers<kStages> pipe;
  typename Scheduler::SharedStorage sched;
};

#endif  // PRISM_SM90_ENABLED

}  // namespace prism::cuda::attn::sm90

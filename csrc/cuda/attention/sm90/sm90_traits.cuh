// Compile-time shape of the sm_90a attention kernel: tiles, K/V stages, warp
// roles and their register budgets, shared-memory bytes; the ids of its named
// barriers and the arrival counts of its mbarriers; its launch parameters.
// Host code (the launcher) and device code include it.
#pragma once
#include <cuda.h>
#include <cstdint>
#include "cuda/attention/attention_fwd.h"

#ifndef PRISM_SM90_STAGES_D128
#define PRISM_SM90_STAGES_D128 3
#endif

namespace prism::cuda::attn::sm90 {

// Warp roles, the same for every head dim. Warpgroup 0 is the producer (one
// thread issues every TMA load); warpgroups 1 and 2 are the consumers, each
// computing kConsumerRows = 64 query rows (one wgmma M) of the 128-row tile.
struct Sm90Roles {
  static constexpr int kWarpgroupThreads = 128;
  static constexpr int kConsumerWarpgroups = 2;
  static constexpr int kConsumerWarps = kConsumerWarpgroups * kWarpgroupThreads / 32;  // 8
  static constexpr int kConsumerThreads = kConsumerWarpgroups * kWarpgroupThreads;     // 256
  static constexpr int kThreads = kWarpgroupThreads + kConsumerThreads;                // 384
  // setmaxnreg budgets: the producer gives registers up, the consumers take them.
  static constexpr int kProducerRegs = 24;
  static constexpr int kConsumerRegs = 240;
  static_assert(kProducerRegs * kWarpgroupThreads + kConsumerRegs * kConsumerThreads <= 65536,
                "register file");

  // mbarrier arrival counts (sm90_shared_storage.cuh, sm90_tile_scheduler.cuh):
  // a full barrier completes on the producer thread's arrive.expect_tx plus
  // the TMA bytes; an empty barrier on one arrival per consumer warp (lane 0,
  // after __syncwarp); an item slot on every consumer thread that read it.
  static constexpr uint32_t kFullArrivals = 1;
  static constexpr uint32_t kEmptyArrivals = kConsumerWarps;
  static constexpr uint32_t kItemReadArrivals = kConsumerThreads;
};

template <int D>
struct Sm90Traits : Sm90Roles {
  static constexpr int kD = D;
  static constexpr int kBlockM = 128;  // two consumer warpgroups x 64 rows
  static constexpr int kBlockN = 128;
  static constexpr int kConsumerRows = kBlockM / kConsumerWarpgroups;  // 64: one wgmma M
  static constexpr int kStages = D == 128 ? PRISM_SM90_STAGES_D128 : 3;
  static constexpr int kColBlocks = D / 64;         // 64-element (128-byte) column blocks
  static constexpr int kColBytesQ = kBlockM * 128;  // one column block of the Q tile
  static constexpr int kColBytesKV = kBlockN * 128;
  static constexpr int kTileBytesQ = kBlockM * D * 2;
  static constexpr int kTileBytesKV = kBlockN * D * 2;
  static constexpr int kSmemBytes = kTileBytesQ + 2 * kStages * kTileBytesKV + 1024;  // + align
  static_assert(D == 64 || D == 128, "head_dim 64 or 128");
  static_assert(kConsumerRows == 64, "one wgmma M per consumer warpgroup");
};

// Named barriers (bar.sync / bar.arrive ids; 0 is __syncthreads). Only the
// consumer warpgroups use them; the producer never waits on one.
enum class NamedBarrier : int {
  // Consumer warpgroup cw's own 128 threads (id kWarpgroup + cw): in the
  // single-tile epilogue, every warp is done reading its Q rows before they
  // are overwritten with output, and the output is staged before the stores.
  kWarpgroup = 1,  // 1, 2
  // Ping-pong turn of consumer warpgroup cw (id kTurn + cw), 256 threads: cw
  // syncs on it before issuing its GEMMs, the other warpgroup arrives on it
  // after issuing its own.
  kTurn = 3,  // 3, 4
};
// The id of `first`'s barrier of consumer warpgroup cw.
__host__ __device__ constexpr int barrier_id(NamedBarrier first, int cw) {
  return static_cast<int>(first) + cw;
}

struct Sm90Params {
  CUtensorMap tq;  // (d, nq, hq, batch), box (64, 128, 1, 1)
  CUtensorMap tk;  // (d, nk, hkv, batch); paged: the pool (d, page, hkv, pages), box rows
  CUtensorMap tv;  // min(page, 128)
  // Paged only: the sequence's last page alone, (d, keys in it, hkv, 1), the
  // same box: its slots past the last key, and the boxes of a tile past that
  // page, arrive as zeros (a pool holds anything there, NaN included).
  CUtensorMap tk_last;
  CUtensorMap tv_last;
  FwdParams p;
  int32_t pingpong = 0;  // consumer warpgroups take turns issuing their GEMMs (single-tile
                         // schedule; read only in PRISM_TUNING_VARIANTS builds)
  int32_t* work_counter = nullptr;  // persistent schedule: the zeroed item counter
  int32_t n_items = 0;              // persistent schedule: items in all
};

}  // namespace prism::cuda::attn::sm90

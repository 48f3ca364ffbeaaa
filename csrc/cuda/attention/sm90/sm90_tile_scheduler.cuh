// Tile schedulers of the sm_90a attention kernel: which work items a CTA runs.
// A work item is one query tile (kBlockM rows) of one (batch, query head); its
// id maps to those by decode_item(). Order: (batch, kv head) groups one after
// the other, so the CTAs running at any time share one head's K/V and find its
// tiles in L2 (measured on H100: dense -1..4%, 20%-sparse -3..13% time against
// the sm80 order of query tiles over all heads / list-length sort); inside a
// group one query head after the other, each from its last (longest) query
// tile down. Neighbouring query tiles of one head select nearly the same key
// blocks (92% shared on the structured workload at 512K) where the heads of a
// group do not (their lists at one tile overlap little), so the CTAs running
// together re-read what L2 holds: with the heads side by side the sparse kernel
// hit L2 on 40% of its reads at 512K on an H200. Where the plan sorts windows
// (sort_window), FwdParams::order permutes the slots of each window of that
// order longest list first (launch_order_windows), so the CTAs running
// together hold lists of about one length: at 512K, 84% of the reads hit L2.
//
// Two schedulers with one interface, chosen at compile time: the launcher
// instantiates the kernel with the one the plan's `persistent` flag names.
//   SingleTileScheduler      one item per CTA, item blockIdx.x (grid = items).
//   PersistentTileScheduler  grid CTAs take items from the zeroed workspace
//                            counter until it passes n_items. The producer
//                            thread takes each item and hands it to the
//                            consumers through a two-slot mailbox, so it can
//                            start loading the next item while they finish the
//                            current one.
// Interface (device side):
//   SharedStorage                 its static shared memory; init(storage) by one
//                                 thread before the CTA-wide sync;
//   Scheduler(params, storage)    one per thread;
//   initial_work<kProducer>()     the CTA's first item id, or -1;
//   next_work<kProducer>()        the next one, or -1 when the CTA is done.
// The producer thread (kProducer = true) and every consumer thread each walk
// the same sequence of ids.
//   kPersistent                   a CTA may run several items, so the Q tile is
//                                 not the CTA's own to the end: the consumers
//                                 release it after an item's last QK GEMM
//                                 (q_empty), the epilogue stores O from
//                                 registers, and there is no ping-pong.
#pragma once
#include <cstdint>
#include "cuda/attention/attention_fwd.h"
#include "cuda/attention/sm90/attention_sm90_ptx.cuh"
#include "cuda/attention/sm90/sm90_traits.cuh"

namespace prism::cuda::attn::sm90 {

// The coordinates of a work item.
struct WorkTile {
  int bh;    // b * hq + h
  int b, h;  // batch, query head
  int hk;    // kv head
  int row0;  // first query row of the tile, < 0 for a chunk's partial first
             // tile (the TMA unit fills the rows before 0 with zeros)
};

template <int kBlockM>
__device__ __forceinline__ WorkTile decode_item(const FwdParams& p, int item) {
  if (p.order != nullptr) item = __ldg(p.order + item);  // a slot of a sorted window
  const int per = p.group * p.n_mtiles;
  const int grp = item / per;  // b * hkv + hk
  const int y = item - grp * per;
  const int head_in_group = y / p.n_mtiles;
  const int qt = p.n_mtiles - 1 - (y - head_in_group * p.n_mtiles);
  WorkTile w;
  w.bh = grp * p.group + head_in_group;  // b * hq + h
  w.b = w.bh / p.hq;
  w.h = w.bh - w.b * p.hq;
  w.hk = w.h / p.group;
  w.row0 = tile_row0(qt, p.nq, p.nk, kBlockM);
  return w;
}

struct SingleTileScheduler {
  static constexpr bool kPersistent = false;
  struct SharedStorage {};

#if PRISM_SM90_ENABLED
  static __device__ __forceinline__ void init(SharedStorage&) {}
  __device__ __forceinline__ SingleTileScheduler(const Sm90Params&, SharedStorage&) {}
  template <bool kProducer>
  __device__ __forceinline__ int initial_work() {
    return static_cast<int>(blockIdx.x);
  }
  template <bool kProducer>
  __device__ __forceinline__ int next_work() {
    return -1;
  }
#endif
};

struct PersistentTileScheduler {
  static constexpr bool kPersistent = true;
  // The mailbox: item n goes through slot n & 1. item_full[s] (producer ->
  // consumers) publishes item_slot[s]; item_empty[s] (consumers -> producer:
  // every consumer thread that read it) frees the slot for item n + 2.
  struct SharedStorage {
    uint64_t item_full[2];
    uint64_t item_empty[2];
    int item_slot[2];
  };

#if PRISM_SM90_ENABLED
  static __device__ __forceinline__ void init(SharedStorage& s) {
    mbar_init(&s.item_full[0], Sm90Roles::kFullArrivals);
    mbar_init(&s.item_full[1], Sm90Roles::kFullArrivals);
    mbar_init(&s.item_empty[0], Sm90Roles::kItemReadArrivals);
    mbar_init(&s.item_empty[1], Sm90Roles::kItemReadArrivals);
  }
  __device__ __forceinline__ PersistentTileScheduler(const Sm90Params& prm, SharedStorage& s)
      : s_(s), counter_(prm.work_counter), n_items_(prm.n_items) {}
  template <bool kProducer>
  __device__ __forceinline__ int initial_work() {
    return fetch<kProducer>();
  }
  template <bool kProducer>
  __device__ __forceinline__ int next_work() {
    ++n_;
    return fetch<kProducer>();
  }

 private:
  template <bool kProducer>
  __device__ __forceinline__ int fetch() {
    const int slot = n_ & 1;
    if constexpr (kProducer) {
      if (n_ >= 2) mbar_wait(&s_.item_empty[slot], ((n_ >> 1) - 1) & 1);
      int item = atomicAdd(counter_, 1);
      if (item >= n_items_) item = -1;
      s_.item_slot[slot] = item;
      mbar_arrive(&s_.item_full[slot]);  // release: the consumers read item_slot after their wait
      return item;
    } else {
      mbar_wait(&s_.item_full[slot], (n_ >> 1) & 1);
      const int item = s_.item_slot[slot];
      mbar_arrive(&s_.item_empty[slot]);  // each reader releases its own read
      return item;
    }
  }

  SharedStorage& s_;
  int32_t* counter_;
  int n_items_;
  int n_ = 0;  // items fetched before the current one
#endif
};

}  // namespace prism::cuda::attn::sm90

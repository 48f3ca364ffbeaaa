// The producer of the sm_90a attention kernel: warpgroup 0, registers lowered
// with setmaxnreg; one thread does all of its work. For each work item the
// scheduler gives it (SingleTileScheduler: one; PersistentTileScheduler: until
// the counter runs out, fetching and handing each item to the consumers), it
//   - loads the item's Q tile by TMA on q_full, once the consumers released the
//     previous item's Q (q_empty; only a persistent CTA has a previous item);
//   - walks the item's key tiles (KeyTiles: every visible tile when dense, the
//     selected blocks' tiles when sparse) and loads K and V of each into the
//     next stage of the kStages-deep ring, K on k_full and V on v_full, each
//     after the consumers released that stage's previous tile (k_empty,
//     v_empty; separate for K and V, so a K buffer is recycled as soon as its
//     scores exist).
// TMA: 4-D tensor maps (d, n, heads, batch), 64-column boxes, 128-byte swizzle;
// rows outside [0, n) arrive as zeros (the partial first query tile of a chunk
// has row0 < 0). The ring position carries across items.
// Paged K/V (p.kv_pages): a key tile is loaded page by page (boxes of
// min(page, 128) rows, each at its 1024-byte aligned place in the swizzled
// tile, so the tile is laid out as one box would lay it), full pages from the
// pool's map, the last page and anything past it from the last page's map.
#pragma once
#include "cuda/attention/key_tiles.cuh"
#include "cuda/attention/sm90/attention_sm90_ptx.cuh"
#include "cuda/attention/sm90/sm90_shared_storage.cuh"
#include "cuda/attention/sm90/sm90_tile_scheduler.cuh"
#include "cuda/attention/sm90/sm90_traits.cuh"

namespace prism::cuda::attn::sm90 {

#if PRISM_SM90_ENABLED

// The pages of one paged key tile (keys [start, start + kBlockN)): one box of
// min(page, 128) rows each, at most kMaxBoxes. Their ids are loaded together,
// before the producer waits for the stage (one load latency a tile, hidden by
// the wait, where one after the other they held the loads back: 2.2x packed
// at 16-key pages on an H200); K and V read the same ids.
struct TilePages {
  static constexpr int kMaxBoxes = 8;  // 128 keys in pages of 16
  int id[kMaxBoxes];                   // pool page of each box; -1: the last page or past it
  TilePages() = default;               // not paged: never read
  __device__ __forceinline__ TilePages(const FwdParams& p, int start) {
    const int shift = p.page_shift;
    const int boxes = 128 >> min(shift, 7);
    const int last_page = (p.nk - 1) >> shift;
#pragma unroll
    for (int b = 0; b < kMaxBoxes; ++b) {
      const int page = (start >> shift) + b;
      id[b] = b < boxes && page < last_page ? __ldg(p.kv_pages + page) : -1;
    }
  }
};

// One paged K or V tile into `dst`: each box at its 1024-byte aligned place in
// the swizzled tile, full pages from the pool's map, the last page and any box
// past it from the last page's map (rows past its keys: zeros).
template <class KT>
__device__ __forceinline__ void load_pages(const FwdParams& p, const TilePages& pages,
                                           unsigned char* dst, const CUtensorMap* pool,
                                           const CUtensorMap* last, uint64_t* full, int start,
                                           int hk) {
  static_assert(KT::kBlockN == 128, "boxes of min(page, 128) rows");
  const int shift = p.page_shift;
  const int box = 1 << min(shift, 7);
  const int last_page = (p.nk - 1) >> shift;
#pragma unroll
  for (int b = 0; b < TilePages::kMaxBoxes; ++b) {
    const int r = b * box;
    if (r >= KT::kBlockN) break;
    const int t = start + r;
    const int slot = t & ((1 << shift) - 1);
    const bool in_pool = pages.id[b] >= 0;
    const int row = in_pool ? slot : slot + (((t >> shift) - last_page) << shift);
#pragma unroll
    for (int cb = 0; cb < KT::kColBlocks; ++cb)
      tma_load_4d(dst + cb * KT::kColBytesKV + r * 128, in_pool ? pool : last, full, cb * 64, row,
                  hk, in_pool ? pages.id[b] : 0);
  }
}

template <class KT, class Scheduler>
struct ProducerMainloop {
  // By the producer thread only (the rest of warpgroup 0 has nothing to do).
  static __device__ __forceinline__ void run(const Sm90Params& prm, const SmemTiles<KT>& smem,
                                             PipelineBarriers<KT::kStages>& bar, Scheduler& sched) {
    constexpr int S = KT::kStages;
    constexpr int kCB = KT::kColBlocks;
    const FwdParams& p = prm.p;
    tma_prefetch_desc(&prm.tk);
    tma_prefetch_desc(&prm.tv);
    if (p.kv_pages != nullptr) {
      tma_prefetch_desc(&prm.tk_last);
      tma_prefetch_desc(&prm.tv_last);
    }
    int kv = 0;  // position in the K/V ring, carried across items
    int n = 0;   // items of this CTA before the current one
    for (int item = sched.template initial_work<true>(); item >= 0;
         item = sched.template next_work<true>(), ++n) {
      const WorkTile w = decode_item<KT::kBlockM>(p, item);
      const KeyTiles<KT::kBlockM, KT::kBlockN> keys(p, w.bh, w.row0, p.counts != nullptr);
      if (n >= 1) mbar_wait(&bar.q_empty, (n - 1) & 1);
      mbar_arrive_expect_tx(&bar.q_full, KT::kTileBytesQ);
#pragma unroll
      for (int cb = 0; cb < kCB; ++cb)
        tma_load_4d(smem.q + cb * KT::kColBytesQ, &prm.tq, &bar.q_full, cb * 64, w.row0, w.h, w.b);
      for (int t = 0; t < keys.count; ++t, ++kv) {
        const int s = kv % S;
        const int r = kv / S;
        const int start = keys.visit_start(t);
        const TilePages pages = p.kv_pages != nullptr ? TilePages(p, start) : TilePages{};
        // K, then V: once the consumers have released the stage's previous tile
        // (from the second round on), by TMA on the stage's full barrier.
        auto load = [&](unsigned char* tiles, const CUtensorMap* tmap, const CUtensorMap* last,
                        uint64_t* full, uint64_t* empty) {
          if (kv >= S) mbar_wait(&empty[s], (r - 1) & 1);
          mbar_arrive_expect_tx(&full[s], KT::kTileBytesKV);
          unsigned char* dst = tiles + s * KT::kTileBytesKV;
          if (p.kv_pages == nullptr) {
#pragma unroll
            for (int cb = 0; cb < kCB; ++cb)
              tma_load_4d(dst + cb * KT::kColBytesKV, tmap, &full[s], cb * 64, start, w.hk, w.b);
          } else {
            load_pages<KT>(p, pages, dst, tmap, last, &full[s], start, w.hk);
          }
        };
        load(smem.k, &prm.tk, &prm.tk_last, bar.k_full, bar.k_empty);
        load(smem.v, &prm.tv, &prm.tv_last, bar.v_full, bar.v_empty);
      }
    }
  }
};

#endif  // PRISM_SM90_ENABLED

}  // namespace prism::cuda::attn::sm90

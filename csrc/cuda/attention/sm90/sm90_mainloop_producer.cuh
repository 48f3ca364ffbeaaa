// The producer of the sm_90a attention kernel: warpgroup 0, registers lowered
// with setmaxnreg; its first warp does all of its work (lane 0 most of it).
// For each work item the scheduler gives it (SingleTileScheduler: one;
// PersistentTileScheduler: until the counter runs out, fetching and handing
// each item to the consumers), it
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
// pool's map, the last page and anything past it from the last page's map;
// the boxes are issued by several lanes at once.
#pragma once
#include "cuda/attention/key_tiles.cuh"
#include "cuda/attention/sm90/attention_sm90_ptx.cuh"
#include "cuda/attention/sm90/sm90_shared_storage.cuh"
#include "cuda/attention/sm90/sm90_tile_scheduler.cuh"
#include "cuda/attention/sm90/sm90_traits.cuh"

namespace prism::cuda::attn::sm90 {

#if PRISM_SM90_ENABLED

// One lane's TMA load of a paged key tile (keys [start, start + kBlockN)):
// the tile is min(page, 128)-row boxes, each 64-column half of a box one load,
// issued by lanes 0 .. boxes x halves - 1 of the producer warp at once (issued
// one after the other by one thread, 16-key pages took the kernel to 1.96x
// packed on an H200). Each load lands at its 1024-byte aligned place in the
// swizzled tile, so the tile is laid out as one box would lay it: full pages
// from the pool's map, the last page and any box past it from the last page's
// map (rows past its keys: zeros). The page id is loaded before the producer
// waits for its stage (one load latency a tile, hidden by the wait); K and V
// read the same ids.
template <class KT>
struct PagedTileLoad {
  static_assert(KT::kBlockN == 128, "boxes of min(page, 128) rows");
  static constexpr int kMaxLoads = 8 * KT::kColBlocks;  // 128 keys in pages of 16
  static_assert(kMaxLoads <= 32, "one load a lane");
  bool active = false;  // this lane issues a load
  int page = -1;        // its box's pool page; -1: the last page or past it
  int row = 0;          // its box's first row in that page (or in the last page's map)
  int col = 0;          // its half's first column
  int offset = 0;       // bytes from the tile's start in shared memory

  PagedTileLoad() = default;  // not paged: never read
  __device__ __forceinline__ PagedTileLoad(const FwdParams& p, int start, int lane) {
    const int shift = p.page_shift;
    const int box = 1 << min(shift, 7);
    const int b = lane / KT::kColBlocks;
    const int cb = lane - b * KT::kColBlocks;
    const int r = b * box;
    active = r < KT::kBlockN;
    if (!active) return;
    const int t = start + r;
    const int last_page = (p.nk - 1) >> shift;
    const int slot = t & ((1 << shift) - 1);
    const bool in_pool = (t >> shift) < last_page;
    page = in_pool ? __ldg(p.kv_pages + (t >> shift)) : -1;
    row = in_pool ? slot : slot + (((t >> shift) - last_page) << shift);
    col = cb * 64;
    offset = cb * KT::kColBytesKV + r * 128;
  }
  __device__ __forceinline__ void issue(unsigned char* tile, const CUtensorMap* pool,
                                        const CUtensorMap* last, uint64_t* full, int hk) const {
    if (active)
      tma_load_4d(tile + offset, page >= 0 ? pool : last, full, col, row, hk, page >= 0 ? page : 0);
  }
};

template <class KT, class Scheduler>
struct ProducerMainloop {
  // By the producer warp (warp 0; the rest of warpgroup 0 has nothing to do).
  // Lane 0 takes the items, arrives on the barriers and loads Q and packed
  // tiles; a paged tile's loads come from several lanes (PagedTileLoad).
  static __device__ __forceinline__ void run(const Sm90Params& prm, const SmemTiles<KT>& smem,
                                             PipelineBarriers<KT::kStages>& bar, Scheduler& sched,
                                             int lane) {
    constexpr int S = KT::kStages;
    constexpr int kCB = KT::kColBlocks;
    const FwdParams& p = prm.p;
    const bool leader = lane == 0;
    const bool paged = p.kv_pages != nullptr;
    if (leader) {
      tma_prefetch_desc(&prm.tk);
      tma_prefetch_desc(&prm.tv);
      if (paged) {
        tma_prefetch_desc(&prm.tk_last);
        tma_prefetch_desc(&prm.tv_last);
      }
    }
    // Lane 0 walks the scheduler; the warp follows its items.
    auto take = [&](bool first) {
      int item = 0;
      if (leader)
        item = first ? sched.template initial_work<true>() : sched.template next_work<true>();
      return __shfl_sync(0xffffffffu, item, 0);
    };
    int kv = 0;  // position in the K/V ring, carried across items
    int n = 0;   // items of this CTA before the current one
    for (int item = take(true); item >= 0; item = take(false), ++n) {
      const WorkTile w = decode_item<KT::kBlockM>(p, item);
      const KeyTiles<KT::kBlockM, KT::kBlockN> keys(p, w.bh, w.row0, p.counts != nullptr);
      if (leader) {
        if (n >= 1) mbar_wait(&bar.q_empty, (n - 1) & 1);
        mbar_arrive_expect_tx(&bar.q_full, KT::kTileBytesQ);
#pragma unroll
        for (int cb = 0; cb < kCB; ++cb)
          tma_load_4d(smem.q + cb * KT::kColBytesQ, &prm.tq, &bar.q_full, cb * 64, w.row0, w.h,
                      w.b);
      }
      for (int t = 0; t < keys.count; ++t, ++kv) {
        const int s = kv % S;
        const int r = kv / S;
        const int start = keys.visit_start(t);
        const PagedTileLoad<KT> pages =
            paged ? PagedTileLoad<KT>(p, start, lane) : PagedTileLoad<KT>{};
        // K, then V: once the consumers have released the stage's previous tile
        // (from the second round on), by TMA on the stage's full barrier. The
        // whole warp waits, so that every lane that loads sees the stage free;
        // lane 0's expected bytes come first.
        auto load = [&](unsigned char* tiles, const CUtensorMap* tmap, const CUtensorMap* last,
                        uint64_t* full, uint64_t* empty) {
          if (kv >= S) mbar_wait(&empty[s], (r - 1) & 1);
          unsigned char* dst = tiles + s * KT::kTileBytesKV;
          if (leader) mbar_arrive_expect_tx(&full[s], KT::kTileBytesKV);
          __syncwarp();
          if (paged) {
            pages.issue(dst, tmap, last, &full[s], w.hk);
          } else if (leader) {
#pragma unroll
            for (int cb = 0; cb < kCB; ++cb)
              tma_load_4d(dst + cb * KT::kColBytesKV, tmap, &full[s], cb * 64, start, w.hk, w.b);
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

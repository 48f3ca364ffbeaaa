// Segment-major work order of the persistent Hopper kernel (plan.segment_tiles
// > 0). A query tile's key tiles (its sparse list) are cut at multiples of
// seg_keys = segment_tiles * 128 keys into runs; each non-empty run is one work
// item {bh, query tile, first key tile, end key tile}. Order of the items:
// sequences n = bh * windows + w (a window: up to seg_window query tiles of
// one (b, h), from the last tile down), inside a sequence the segments from
// the last (the diagonal's) down to 0, so the CTAs running together read the
// K/V of one segment, and inside a segment the window's tiles in one fixed
// order (from the last down). That order is the same in every segment, so a
// tile's next item comes about one segment's worth of items after its
// previous one and rarely waits for it (with the atomics' order it waited in
// about one item in eight: 132 CTAs running out of ~1000 items a segment). A
// tile with no key tile gets one empty item. Built by four small kernels:
//   mark   each run sets its tile's mark in the (sequence, segment) row;
//   rank   one warp per row: exclusive scan of the marks (the tile's rank in
//          its segment) and the row's item count;
//   scan   the counts into each row's first item (and the item count, next
//          to the kernel's counter);
//   place  each run writes its item at first + rank.
#include <cuda_runtime.h>
#include <climits>
#include <cstdint>
#include "cuda/attention/attention_fwd.h"
#include "cuda/attention/key_tiles.cuh"
#include "cuda/common/block_scan.cuh"

namespace prism::cuda::attn {
namespace {

constexpr int kWalkWarps = 8;  // tiles (mark, place) or rows (rank) per CTA
constexpr int kScanThreads = 1024;

struct SegmentGrid {
  int32_t seg_blocks;  // list blocks per segment
  int32_t nsegs;       // segments of the key range
  int32_t window;      // query tiles per window
  int32_t windows;     // windows per (b, h)
  // Counter slot of (sequence n, segment g): segments descending inside a sequence.
  __device__ __forceinline__ int64_t slot(int64_t n, int g) const {
    return n * nsegs + (nsegs - 1 - g);
  }
};

// Calls fn(entry_begin, entry_end, segment) on lane 0 or the lane that found
// the run, for every run of the tile's list entries in one segment, and
// fn(0, 0, 0) once for a tile with no key tile. count / sub_shift: KeyTiles'.
// A tile has at most one run per segment (its list is ascending).
template <class Fn>
__device__ __forceinline__ void for_each_run(const int32_t* idx, int count, int sub_shift,
                                             int seg_blocks, Fn&& fn) {
  const int lane = threadIdx.x & 31;
  if (count == 0) {
    if (lane == 0) fn(0, 0, 0);
    return;
  }
  const int n_entries = (count + (1 << sub_shift) - 1) >> sub_shift;
  int pending = -1, pending_seg = 0;  // the last run started, not yet closed (warp-uniform)
  for (int base = 0; base < n_entries; base += 32) {
    const int e = base + lane;
    const bool valid = e < n_entries;
    const int seg = valid ? __ldg(idx + e) / seg_blocks : INT_MAX;
    int prev = __shfl_up_sync(0xffffffffu, seg, 1);
    if (lane == 0) prev = base > 0 ? __ldg(idx + base - 1) / seg_blocks : -1;
    const bool starts = valid && seg != prev;
    const unsigned mask = __ballot_sync(0xffffffffu, starts);
    if (mask == 0) continue;
    if (pending >= 0 && lane == 0) fn(pending, base + __ffs(mask) - 1, pending_seg);
    if (starts) {
      const unsigned later = mask & ~((2u << lane) - 1u);  // lane 31: 2u << 31 == 0, later == 0
      if (later != 0) fn(e, base + __ffs(later) - 1, seg);
    }
    const int last = 31 - __clz(mask);
    pending = base + last;
    pending_seg = __shfl_sync(0xffffffffu, seg, last);
  }
  if (lane == 0) fn(pending, n_entries, pending_seg);
}

template <bool kPlace>
__global__ void __launch_bounds__(kWalkWarps * 32)
    segment_walk_kernel(const FwdParams p, const SegmentGrid g, uint16_t* __restrict__ ranks,
                        const int32_t* __restrict__ first, int4* __restrict__ items) {
  const int64_t tile = int64_t(blockIdx.x) * kWalkWarps + (threadIdx.x >> 5);
  const int64_t tiles = int64_t(p.batch) * p.hq * p.n_mtiles;
  if (tile >= tiles) return;
  const int bh = static_cast<int>(tile / p.n_mtiles);
  const int qt = static_cast<int>(tile - int64_t(bh) * p.n_mtiles);
  const KeyTiles<kHopperBlockM, kHopperBlockN> keys(p, bh, tile_row0(qt, p.nq, p.nk, kHopperBlockM),
                                                    true);
  const int y = p.n_mtiles - 1 - qt;  // tiles run from the last down
  const int64_t seq = int64_t(bh) * g.windows + y / g.window;
  const int pos = y % g.window;
  const int count = keys.count, sub_shift = keys.sub_shift;
  for_each_run(keys.idx, count, sub_shift, g.seg_blocks, [&](int eb, int ee, int seg) {
    const int64_t row = g.slot(seq, seg);
    uint16_t* rank = ranks + row * g.window + pos;
    if constexpr (kPlace) {
      const int tb = eb << sub_shift;
      const int te = min(ee << sub_shift, count);
      items[first[row] + *rank] = make_int4(bh, qt, tb, te);
    } else {
      *rank = 1;
    }
  });
}

// One warp per (sequence, segment) row: marks -> ranks in place, the row's
// count into counts[row].
__global__ void __launch_bounds__(kWalkWarps * 32)
    segment_rank_kernel(uint16_t* __restrict__ ranks, int64_t rows, int window,
                        int32_t* __restrict__ counts) {
  const int64_t row = int64_t(blockIdx.x) * kWalkWarps + (threadIdx.x >> 5);
  if (row >= rows) return;
  const int lane = threadIdx.x & 31;
  uint16_t* r = ranks + row * window;
  int run = 0;
  for (int base = 0; base < window; base += 32) {
    const int i = base + lane;
    const int mark = i < window ? r[i] : 0;
    int incl = mark;
#pragma unroll
    for (int o = 1; o < 32; o <<= 1) {
      const int y = __shfl_up_sync(0xffffffffu, incl, o);
      if (lane >= o) incl += y;
    }
    if (i < window) r[i] = static_cast<uint16_t>(run + incl - mark);
    run += __shfl_sync(0xffffffffu, incl, 31);
  }
  if (lane == 0) counts[row] = run;
}

// Counts -> exclusive cursors, in place; the total goes to *n_items.
__global__ void __launch_bounds__(kScanThreads)
    segment_scan_kernel(int32_t* __restrict__ counts, int64_t n, int32_t* __restrict__ n_items) {
  __shared__ int32_t warp_sums[32];
  const int64_t per = (n + kScanThreads - 1) / kScanThreads;
  const int64_t lo = min(n, per * threadIdx.x), hi = min(n, lo + per);
  int32_t mine = 0;
  for (int64_t i = lo; i < hi; ++i) mine += counts[i];
  int32_t run = block_exclusive_scan(mine, warp_sums);
  for (int64_t i = lo; i < hi; ++i) {
    const int32_t c = counts[i];
    counts[i] = run;
    run += c;
  }
  if (threadIdx.x == kScanThreads - 1) *n_items = run;
}

}  // namespace

cudaError_t launch_segment_items(FwdParams& p, const AttentionPlan& plan, char* ws,
                                 cudaStream_t stream) {
  const WorkspaceLayout& w = plan.workspace;
  SegmentGrid g;
  g.seg_blocks = plan.segment_tiles * kHopperBlockN / p.blk;
  g.nsegs = plan.seg_count;
  g.window = plan.seg_window;
  g.windows = plan.seg_windows;
  const int64_t rows = int64_t(p.batch) * p.hq * g.windows * g.nsegs;
  int32_t* first = reinterpret_cast<int32_t*>(ws + w.seg_hist_offset);
  uint16_t* ranks = reinterpret_cast<uint16_t*>(ws + w.seg_rank_offset);
  int4* items = reinterpret_cast<int4*>(ws + w.seg_items_offset);
  int32_t* n_items = reinterpret_cast<int32_t*>(ws + w.counter_offset) + 1;
  const size_t rank_bytes = size_t(rows) * g.window * sizeof(uint16_t);
  if (size_t(rows) * sizeof(int32_t) > w.seg_hist_bytes || rank_bytes > w.seg_rank_bytes ||
      plan.seg_window != w.seg_window)
    return cudaErrorInvalidValue;
  cudaError_t e = cudaMemsetAsync(ranks, 0, rank_bytes, stream);
  if (e == cudaSuccess) e = cudaMemsetAsync(ws + w.seg_flags_offset, 0, w.seg_flags_bytes, stream);
  if (e != cudaSuccess) return e;
  const int64_t tiles = int64_t(p.batch) * p.hq * p.n_mtiles;
  const unsigned tile_blocks = static_cast<unsigned>((tiles + kWalkWarps - 1) / kWalkWarps);
  const unsigned row_blocks = static_cast<unsigned>((rows + kWalkWarps - 1) / kWalkWarps);
  segment_walk_kernel<false>
      <<<tile_blocks, kWalkWarps * 32, 0, stream>>>(p, g, ranks, first, items);
  segment_rank_kernel<<<row_blocks, kWalkWarps * 32, 0, stream>>>(ranks, rows, g.window, first);
  segment_scan_kernel<<<1, kScanThreads, 0, stream>>>(first, rows, n_items);
  segment_walk_kernel<true><<<tile_blocks, kWalkWarps * 32, 0, stream>>>(p, g, ranks, first, items);
  e = cudaGetLastError();
  if (e != cudaSuccess) return e;
  p.seg_items = items;
  p.seg_n_items = n_items;
  p.seg_flags = reinterpret_cast<unsigned long long*>(ws + w.seg_flags_offset);
  p.seg_state = reinterpret_cast<float*>(ws + w.seg_state_offset);
  p.seg_window = g.window;
  p.seg_windows = g.windows;
  return cudaSuccess;
}

}  // namespace prism::cuda::attn

// Which keys one query tile of BLOCK_M rows visits: shared by the portable and
// the Hopper attention kernels, so both read the block lists the same way.
#pragma once
#include <cstdint>
#include "cuda/attention/attention_fwd.h"

namespace prism::cuda::attn {

// The tile (rows [row0, row0 + BLOCK_M), row0 from tile_row0, possibly < 0)
// lies in one query block qb, since tiles and blocks share the token grid
// (BLOCK_M divides blk). Its visible key blocks are j <= qb + (nkb - nqb), the
// last one holding the tile's own positions, and each row sees keys t <= s.
// Rows outside [row_lo, rows_valid) are not real: loaded as zeros, never stored.
// Key tile t (kBlockN keys) starts at start(t): every visible tile when dense;
// when sparse, sub-tile (t & sub_mask) of selected block idx[t >> sub_shift],
// with the tiles past the last needed key dropped.
template <int kBlockM, int kBlockN>
struct KeyTiles {
  int row_lo;      // first real row of the tile (> 0 only for the first tile of a chunk)
  int rows_valid;  // one past the last real row of the tile
  int s_lo;        // absolute position of tile row 0
  int qb;          // query block of the tile
  int key_end;     // keys >= key_end: never visible
  int key_lim;     // keys >= key_lim: needed by no row of the tile
  int count;       // key tiles to visit
  const int32_t* idx = nullptr;  // selected key blocks (sparse), ascending
  int blk;
  int sub_shift = 0;

  __device__ __forceinline__ KeyTiles(const FwdParams& p, int bh, int row0, bool sparse) {
    row_lo = max(0, -row0);
    rows_valid = min(kBlockM, p.nq - row0);
    s_lo = (p.nk - p.nq) + row0;             // >= 0: row0 >= -((nk - nq) % kBlockM)
    const int s_hi = s_lo + rows_valid - 1;  // of the last real row
    qb = s_lo / p.blk - (p.nkb - p.nqb);
    key_end = min(p.nk, (qb + p.nkb - p.nqb + 1) * p.blk);
    key_lim = min(s_hi + 1, key_end);
    blk = p.blk;
    if (sparse) {
      const int64_t row_id = int64_t(bh) * p.nqb + qb;
      int cnt = p.counts[row_id];
      cnt = max(0, min(cnt, p.nkb));
      idx = p.indices + list_row_start(p.row_start, row_id, p.nqb, p.nkb - p.nqb);
      sub_shift = __ffs(p.blk / kBlockN) - 1;
      count = cnt << sub_shift;
      // Ascending list: tiles past the diagonal / key end form a suffix.
      while (count > 0) {
        const int t = count - 1;
        const int start = idx[t >> sub_shift] * p.blk + ((t & ((1 << sub_shift) - 1)) * kBlockN);
        if (start < key_lim) break;
        --count;
      }
    } else {
      count = (key_lim + kBlockN - 1) / kBlockN;
    }
  }

  __device__ __forceinline__ int start(int t) const {
    return idx == nullptr
               ? t * kBlockN
               : __ldg(idx + (t >> sub_shift)) * blk + (t & ((1 << sub_shift) - 1)) * kBlockN;
  }

  // The Hopper kernel's visiting order: dense tiles ascending, selected tiles
  // from the diagonal down. Its CTAs run neighbouring query tiles of one head
  // together (sm90_tile_scheduler.cuh), whose lists share most blocks; read from
  // the diagonal down they meet the shared blocks at about the same time, while
  // L2 still holds them (an LRU model of L2 on the structured workload's
  // selections at 512K: 76% of reads hit ascending, 88% descending).
  __device__ __forceinline__ int visit_start(int t) const {
    return idx == nullptr ? start(t) : start(count - 1 - t);
  }
};

}  // namespace prism::cuda::attn

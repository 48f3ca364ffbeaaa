// Work ordering for sparse lists, into the order's room in the workspace (the
// plan's, workspace_layout in attention_plan.cu):
// - portable path (the plan's sort_items): the (query tile, b, h) items sorted
//   by their selected-block count, descending, so the longest CTAs start first
//   and the tail of the launch is short. One CTA: counting sort in shared memory.
// - Hopper kernel (the plan's sort_window): its own order kept, each window of
//   item slots permuted longest list first. One CTA a window.
#include <cuda_runtime.h>
#include <cstdint>
#include "cuda/attention/attention_fwd.h"
#include "cuda/attention/key_tiles.cuh"
#include "cuda/attention/sm90/sm90_tile_scheduler.cuh"
#include "cuda/common/block_scan.cuh"

namespace prism::cuda::attn {
namespace {

constexpr int kSortThreads = 1024;
constexpr int kBuckets = 4096;  // counts are bucketed (count >> shift) beyond this

__global__ void __launch_bounds__(kSortThreads)
    order_items_kernel(const int32_t* __restrict__ counts, int32_t bh_count, int32_t nqb,
                       int32_t nkb, int32_t nq, int32_t nk, int32_t n_mtiles, int32_t block_m,
                       int32_t blk, int32_t shift, int32_t* __restrict__ order) {
  __shared__ int32_t hist[kBuckets];
  __shared__ int32_t warp_tot[kSortThreads / 32];
  const int tid = threadIdx.x;
  const int64_t n_items = int64_t(n_mtiles) * bh_count;
  for (int i = tid; i < kBuckets; i += kSortThreads) hist[i] = 0;
  __syncthreads();

  auto bucket_of = [&](int64_t item) {
    const int qt = static_cast<int>(item / bh_count);
    const int bh = static_cast<int>(item - int64_t(qt) * bh_count);
    // tiles and blocks share the token grid (as in KeyTiles)
    const int qb = ((nk - nq) + tile_row0(qt, nq, nk, block_m)) / blk - (nkb - nqb);
    int c = counts[int64_t(bh) * nqb + qb];
    c = max(c, 0) >> shift;
    return kBuckets - 1 - min(c, kBuckets - 1);  // descending count = ascending bucket
  };
  for (int64_t it = tid; it < n_items; it += kSortThreads) atomicAdd(&hist[bucket_of(it)], 1);
  __syncthreads();

  // Exclusive scan of hist: each thread owns kBuckets / kSortThreads consecutive buckets.
  constexpr int kPer = kBuckets / kSortThreads;
  int local[kPer];
  int run = 0;
#pragma unroll
  for (int j = 0; j < kPer; ++j) {
    local[j] = run;
    run += hist[tid * kPer + j];
  }
  const int base = block_exclusive_scan(run, warp_tot);
#pragma unroll
  for (int j = 0; j < kPer; ++j) hist[tid * kPer + j] = base + local[j];
  __syncthreads();

  for (int64_t it = tid; it < n_items; it += kSortThreads) {
    const int pos = atomicAdd(&hist[bucket_of(it)], 1);
    order[pos] = static_cast<int32_t>(it);
  }
}

constexpr int kWindowThreads = 256;

// Slot s of the Hopper kernel's order (its decode_item, p.order still null)
// is ranked by the key tiles its item visits (its KeyTiles) among its
// window's; a window is at most kMaxSortWindow slots, so the quadratic rank is
// a few thousand compares a thread.
__global__ void __launch_bounds__(kWindowThreads)
    order_windows_kernel(FwdParams p, int32_t window, int64_t items, int32_t* __restrict__ order) {
  constexpr int kM = kHopperBlockM;
  constexpr int kN = kHopperBlockN;
  __shared__ int32_t cnt[kMaxSortWindow];
  const int64_t w0 = int64_t(blockIdx.x) * window;
  const int n = static_cast<int>(min(int64_t(window), items - w0));
  for (int i = threadIdx.x; i < n; i += blockDim.x) {
    const sm90::WorkTile w = sm90::decode_item<kM>(p, static_cast<int>(w0 + i));
    cnt[i] = KeyTiles<kM, kN>(p, w.bh, w.row0, true).count;
  }
  __syncthreads();
  for (int i = threadIdx.x; i < n; i += blockDim.x) {
    const int c = cnt[i];
    int rank = 0;
    for (int j = 0; j < n; ++j) rank += (cnt[j] > c) || (cnt[j] == c && j < i);
    order[w0 + rank] = static_cast<int32_t>(w0 + i);
  }
}

}  // namespace

cudaError_t launch_order_windows(const FwdParams& p, int window, int64_t items, int32_t* order,
                                 cudaStream_t stream) {
  if (window <= 0 || window > kMaxSortWindow || p.counts == nullptr || p.order != nullptr ||
      items <= 0)
    return cudaErrorInvalidValue;
  const int64_t grid = (items + window - 1) / window;
  order_windows_kernel<<<static_cast<unsigned>(grid), kWindowThreads, 0, stream>>>(p, window, items,
                                                                                   order);
  return cudaGetLastError();
}

cudaError_t launch_order_items(const FwdParams& p, int block_m, int32_t* order,
                               cudaStream_t stream) {
  int shift = 0;
  while ((p.nkb >> shift) >= kBuckets) ++shift;
  order_items_kernel<<<1, kSortThreads, 0, stream>>>(
      p.counts, p.batch * p.hq, p.nqb, p.nkb, p.nq, p.nk, p.n_mtiles, block_m, p.blk, shift, order);
  return cudaGetLastError();
}

}  // namespace prism::cuda::attn

// Compact rows (CSR) from an estimation's triangular selection (see
// BlockMaskOut in prism_types.h).
// scan_counts: row_ptr = exclusive prefix sums of counts, in int64, in two
// launches (chunk sums, then each chunk scans with the sum of the chunks
// before it); scan_segments does the same for many row sets in the same two
// launches (a ragged batch's sequences). gather_selection: one warp per row
// copies its indices; gather_segments does it for many selections in one
// launch, a block per unit of kGatherRows rows.
#include <cuda_runtime.h>

#include <cstdint>

#include "cuda/common/block_scan.cuh"
#include "cuda/common/cuda_check.h"
#include "cuda/cuda_backend.h"

namespace prism::cuda {
namespace {

constexpr int kScanThreads = 1024;
constexpr int kScanPer = 4;  // rows per thread
constexpr int kScanChunk = kScanThreads * kScanPer;

__device__ __forceinline__ int64_t block_sum(int64_t v, int64_t* red) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  for (int o = 16; o; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  if (lane == 0) red[warp] = v;
  __syncthreads();
  int64_t t = lane < (int)(blockDim.x >> 5) ? red[lane] : 0;
  for (int o = 16; o; o >>= 1) t += __shfl_xor_sync(0xffffffffu, t, o);
  __syncthreads();  // red is reused by the caller
  return t;
}

// The sum of counts over chunk `chunk` of rows [0, rows), in every thread.
__device__ __forceinline__ int64_t chunk_sum(const int32_t* __restrict__ counts, int64_t rows,
                                             int64_t chunk, int64_t* red) {
  const int64_t r0 = chunk * kScanChunk + threadIdx.x * kScanPer;
  int64_t s = 0;
#pragma unroll
  for (int e = 0; e < kScanPer; ++e)
    if (r0 + e < rows) s += counts[r0 + e];
  return block_sum(s, red);
}

// row_ptr over chunk `chunk`, after the chunks before it (their sums in
// partial[0, chunk)); the thread holding the last row also writes
// row_ptr[rows] and, when `total` is given, *total.
__device__ __forceinline__ void scan_chunk(const int32_t* __restrict__ counts, int64_t rows,
                                           const int64_t* __restrict__ partial, int64_t chunk,
                                           int64_t* __restrict__ row_ptr, int64_t* total,
                                           int64_t* red, int64_t* warp_excl) {
  int64_t before = 0;
  for (int64_t c = threadIdx.x; c < chunk; c += kScanThreads) before += partial[c];
  before = block_sum(before, red);

  const int64_t r0 = chunk * kScanChunk + threadIdx.x * kScanPer;
  int32_t v[kScanPer];
  int64_t mine = 0;
#pragma unroll
  for (int e = 0; e < kScanPer; ++e) {
    v[e] = r0 + e < rows ? counts[r0 + e] : 0;
    mine += v[e];
  }
  int64_t run = before + block_exclusive_scan(mine, warp_excl);
#pragma unroll
  for (int e = 0; e < kScanPer; ++e) {
    if (r0 + e < rows) row_ptr[r0 + e] = run;
    run += v[e];
  }
  if (r0 < rows && r0 + kScanPer >= rows) {  // the thread holding the last row
    row_ptr[rows] = run;
    if (total) *total = run;
  }
}

// Where a scan block's chunk lies: its row set, the chunk's index in the set,
// the set's chunk sums and where the set's total goes (or nowhere).
struct ChunkAt {
  const int32_t* counts;
  int64_t* row_ptr;
  int64_t rows, chunk;
  int64_t* partial;
  int64_t* total;
};

// One row set: block b scans chunk b.
struct OneSet {
  const int32_t* counts;
  int64_t* row_ptr;
  int64_t rows;
  int64_t* partial;
  __device__ ChunkAt at(int64_t c) const { return {counts, row_ptr, rows, c, partial, nullptr}; }
};

// Many row sets (ScanSegment, in chunk order): block b scans chunk b of all.
// The CTA's segment: the last of `count` segments whose first unit (start(i))
// is at or before `unit`, found by thread 0 and shared with the CTA.
template <class Start>
__device__ int cta_segment(int count, int64_t unit, Start start) {
  __shared__ int found;
  if (threadIdx.x == 0) {
    int lo = 0, hi = count - 1;
    while (lo < hi) {
      const int mid = (lo + hi + 1) / 2;
      if (start(mid) <= unit)
        lo = mid;
      else
        hi = mid - 1;
    }
    found = lo;
  }
  __syncthreads();
  return found;
}

struct ManySets {
  const ScanSegment* segs;
  int count;
  int64_t* partial;
  int64_t* totals;
  __device__ ChunkAt at(int64_t c) const {
    const int found = cta_segment(count, c, [&](int i) { return segs[i].chunk0; });
    const ScanSegment g = segs[found];
    return {g.counts, g.row_ptr, g.rows, c - g.chunk0, partial + g.chunk0, totals + found};
  }
};

template <class Sets>
__global__ void __launch_bounds__(kScanThreads) chunk_sums_kernel(Sets sets) {
  __shared__ int64_t red[32];
  const ChunkAt a = sets.at(blockIdx.x);
  const int64_t s = chunk_sum(a.counts, a.rows, a.chunk, red);
  if (threadIdx.x == 0) a.partial[a.chunk] = s;
}

template <class Sets>
__global__ void __launch_bounds__(kScanThreads) scan_chunks_kernel(Sets sets) {
  __shared__ int64_t red[32];
  __shared__ int64_t warp_excl[32];
  const ChunkAt a = sets.at(blockIdx.x);
  scan_chunk(a.counts, a.rows, a.partial, a.chunk, a.row_ptr, a.total, red, warp_excl);
}

// Both scan launches over `chunks` blocks.
template <class Sets>
cudaError_t launch_scan(const Sets& sets, int64_t chunks, cudaStream_t stream) {
  if (chunks <= 0 || chunks > 0x7fffffff) return cudaErrorInvalidValue;
  chunk_sums_kernel<<<static_cast<unsigned>(chunks), kScanThreads, 0, stream>>>(sets);
  PRISM_CUDA_TRY(cudaGetLastError());
  scan_chunks_kernel<<<static_cast<unsigned>(chunks), kScanThreads, 0, stream>>>(sets);
  return cudaGetLastError();
}

// Row r of a selection: its counts[r] indices from the triangular slot to
// the compact row, by one warp.
__device__ __forceinline__ void gather_row(const int32_t* __restrict__ counts,
                                           const int32_t* __restrict__ tri, int64_t r, int64_t nq,
                                           int64_t off, const int64_t* __restrict__ row_ptr,
                                           int32_t* __restrict__ indices, int lane) {
  const int32_t* src = tri + tri_row_start(r, nq, off);
  int32_t* dst = indices + row_ptr[r];
  const int c = counts[r];
  for (int t = lane; t < c; t += 32) dst[t] = src[t];
}

__global__ void gather_kernel(const int32_t* __restrict__ counts, const int32_t* __restrict__ tri,
                              int64_t rows, int64_t nq, int64_t off,
                              const int64_t* __restrict__ row_ptr, int32_t* __restrict__ indices) {
  const int64_t warps = int64_t(gridDim.x) * (blockDim.x >> 5);
  for (int64_t r = int64_t(blockIdx.x) * (blockDim.x >> 5) + (threadIdx.x >> 5); r < rows;
       r += warps)
    gather_row(counts, tri, r, nq, off, row_ptr, indices, threadIdx.x & 31);
}

constexpr int kGatherThreads = 256;
constexpr int kGatherRows = 64;  // rows per block of gather_segments: 8 per warp

__global__ void __launch_bounds__(kGatherThreads)
    gather_segments_kernel(const GatherSegment* __restrict__ segs, int count) {
  const int64_t unit = blockIdx.x;
  const GatherSegment g = segs[cta_segment(count, unit, [&](int i) { return segs[i].unit0; })];
  const int64_t r0 = (unit - g.unit0) * kGatherRows;
  const int64_t r_end = min(g.rows, r0 + kGatherRows);
  for (int64_t r = r0 + (threadIdx.x >> 5); r < r_end; r += kGatherThreads / 32)
    gather_row(g.counts, g.tri_indices, r, g.nq, g.off, g.row_ptr, g.indices, threadIdx.x & 31);
}

unsigned grid_for(int64_t items, int per_block) {
  const int64_t g = (items + per_block - 1) / per_block;
  return static_cast<unsigned>(g < 1 ? 1 : (g > 65535 ? 65535 : g));
}

}  // namespace

size_t scan_workspace_bytes(int64_t rows) {
  return sizeof(int64_t) * static_cast<size_t>(scan_chunks(rows) + 1);
}

cudaError_t scan_counts(const int32_t* counts, int64_t rows, int64_t* row_ptr, void* workspace,
                        cudaStream_t stream) {
  if (rows <= 0) return cudaMemsetAsync(row_ptr, 0, sizeof(int64_t), stream);
  return launch_scan(OneSet{counts, row_ptr, rows, static_cast<int64_t*>(workspace)},
                     scan_chunks(rows), stream);
}

int64_t scan_chunks(int64_t rows) { return (rows + kScanChunk - 1) / kScanChunk; }

cudaError_t scan_segments(const ScanSegment* segments, int count, int64_t chunks,
                          int64_t* workspace, int64_t* totals, cudaStream_t stream) {
  if (count <= 0) return cudaSuccess;
  return launch_scan(ManySets{segments, count, workspace, totals}, chunks, stream);
}

int64_t gather_units(int64_t rows) { return (rows + kGatherRows - 1) / kGatherRows; }

cudaError_t gather_segments(const GatherSegment* segments, int count, int64_t units,
                            cudaStream_t stream) {
  if (count <= 0 || units <= 0) return cudaSuccess;
  if (units > 0x7fffffff) return cudaErrorInvalidValue;
  gather_segments_kernel<<<static_cast<unsigned>(units), kGatherThreads, 0, stream>>>(segments,
                                                                                      count);
  return cudaGetLastError();
}

cudaError_t gather_selection(const int32_t* counts, const int32_t* tri_indices, int64_t rows,
                             int64_t nq, int64_t off, const int64_t* row_ptr, int32_t* indices,
                             cudaStream_t stream) {
  if (rows <= 0) return cudaSuccess;
  gather_kernel<<<grid_for(rows, 8), 256, 0, stream>>>(counts, tri_indices, rows, nq, off, row_ptr,
                                                       indices);
  return cudaGetLastError();
}

}  // namespace prism::cuda

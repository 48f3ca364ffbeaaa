// Compact rows (CSR) from an estimation's triangular selection, and the row
// starts of the triangular layout itself (see BlockMaskOut in prism_types.h).
// scan_counts: row_ptr = exclusive prefix sums of counts, in int64, in two
// launches (chunk sums, then each chunk scans with the sum of the chunks
// before it). gather_selection: one warp per row copies its indices.
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

__global__ void __launch_bounds__(kScanThreads)
    chunk_sums_kernel(const int32_t* __restrict__ counts, int64_t rows,
                      int64_t* __restrict__ partial) {
  __shared__ int64_t red[32];
  const int64_t r0 = int64_t(blockIdx.x) * kScanChunk + threadIdx.x * kScanPer;
  int64_t s = 0;
#pragma unroll
  for (int e = 0; e < kScanPer; ++e)
    if (r0 + e < rows) s += counts[r0 + e];
  s = block_sum(s, red);
  if (threadIdx.x == 0) partial[blockIdx.x] = s;
}

__global__ void __launch_bounds__(kScanThreads)
    scan_chunks_kernel(const int32_t* __restrict__ counts, int64_t rows,
                       const int64_t* __restrict__ partial, int64_t* __restrict__ row_ptr) {
  __shared__ int64_t red[32];
  __shared__ int64_t warp_excl[32];
  // sum of the chunks before this one
  int64_t before = 0;
  for (int c = threadIdx.x; c < (int)blockIdx.x; c += kScanThreads) before += partial[c];
  before = block_sum(before, red);

  const int64_t r0 = int64_t(blockIdx.x) * kScanChunk + threadIdx.x * kScanPer;
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
  if (r0 < rows && r0 + kScanPer >= rows) row_ptr[rows] = run;  // the thread holding the last row
}

__global__ void gather_kernel(const int32_t* __restrict__ counts, const int32_t* __restrict__ tri,
                              int64_t rows, int64_t nq, int64_t off,
                              const int64_t* __restrict__ row_ptr, int32_t* __restrict__ indices) {
  const int lane = threadIdx.x & 31;
  const int64_t warps = int64_t(gridDim.x) * (blockDim.x >> 5);
  for (int64_t r = int64_t(blockIdx.x) * (blockDim.x >> 5) + (threadIdx.x >> 5); r < rows;
       r += warps) {
    const int32_t* src = tri + tri_row_start(r, nq, off);
    int32_t* dst = indices + row_ptr[r];
    const int c = counts[r];
    for (int t = lane; t < c; t += 32) dst[t] = src[t];
  }
}

__global__ void tri_starts_kernel(int64_t rows, int64_t nq, int64_t off,
                                  int64_t* __restrict__ row_start) {
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  for (int64_t r = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; r < rows; r += stride)
    row_start[r] = tri_row_start(r, nq, off);
}

unsigned grid_for(int64_t items, int per_block) {
  const int64_t g = (items + per_block - 1) / per_block;
  return static_cast<unsigned>(g < 1 ? 1 : (g > 65535 ? 65535 : g));
}

}  // namespace

size_t scan_workspace_bytes(int64_t rows) {
  return sizeof(int64_t) * static_cast<size_t>((rows + kScanChunk - 1) / kScanChunk + 1);
}

cudaError_t scan_counts(const int32_t* counts, int64_t rows, int64_t* row_ptr, void* workspace,
                        cudaStream_t stream) {
  if (rows <= 0) return cudaMemsetAsync(row_ptr, 0, sizeof(int64_t), stream);
  const int64_t chunks = (rows + kScanChunk - 1) / kScanChunk;
  if (chunks > 0x7fffffff) return cudaErrorInvalidValue;
  int64_t* partial = static_cast<int64_t*>(workspace);
  chunk_sums_kernel<<<static_cast<unsigned>(chunks), kScanThreads, 0, stream>>>(counts, rows,
                                                                                partial);
  PRISM_CUDA_TRY(cudaGetLastError());
  scan_chunks_kernel<<<static_cast<unsigned>(chunks), kScanThreads, 0, stream>>>(counts, rows,
                                                                                 partial, row_ptr);
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

cudaError_t tri_row_starts(int64_t rows, int64_t nq, int64_t off, int64_t* row_start,
                           cudaStream_t stream) {
  if (rows <= 0) return cudaSuccess;
  tri_starts_kernel<<<grid_for(rows, 256), 256, 0, stream>>>(rows, nq, off, row_start);
  return cudaGetLastError();
}

}  // namespace prism::cuda

// prism::cuda::gather_pages (see paged_gather.h). One launch for keys and
// values: grid (token groups, heads, pools). A row of d elements is copied by
// consecutive threads in chunks of 16 (or 4) bytes; each thread has
// kRowsInFlight rows in flight and finds their pages with 32-bit arithmetic.
// (One chunk per thread with 64-bit index divisions copied at 2.5-2.8 TB/s
// on an H200; this copies at 3.7-4.2 TB/s, a device-to-device memcpy of the
// same bytes at 3.7-4.3: gather_check.)
#include <cuda_runtime.h>

#include <algorithm>
#include <climits>
#include <cstdint>
#include <string>

#include "cuda/common/cuda_check.h"
#include "cuda/paged/paged_gather.h"

namespace prism::cuda {
namespace {

constexpr int kThreads = 256;
constexpr int kRowsInFlight = 4;

struct GatherArgs {
  const char* src[2];  // key pool, value pool
  char* dst[2];
  const int32_t* pages;
  int64_t num_pages;
  int page_size, n;
  int page_shift;               // log2(page_size) for a power of two, else -1
  int64_t sb[2], sh[2], sn[2];  // pool strides in bytes
  int row_chunks;               // chunks per row of d elements
  int row_threads;              // threads per row (<= row_chunks), kThreads / row_threads rows
};

template <class Chunk>
__global__ void __launch_bounds__(kThreads) gather_kernel(const GatherArgs a) {
  const int z = blockIdx.z, h = blockIdx.y;
  const int rows_per_pass = kThreads / a.row_threads;
  const int r = threadIdx.x / a.row_threads, c0 = threadIdx.x % a.row_threads;
  if (r >= rows_per_pass) return;
  // Selected, not indexed by z: an indexed parameter array goes to local memory.
  const char* const src = (z ? a.src[1] : a.src[0]) + h * (z ? a.sh[1] : a.sh[0]);
  const int64_t sb = z ? a.sb[1] : a.sb[0], sn = z ? a.sn[1] : a.sn[0];
  Chunk* const dst =
      reinterpret_cast<Chunk*>(z ? a.dst[1] : a.dst[0]) + (int64_t)h * a.n * a.row_chunks;
  // 32-bit token arithmetic (n <= INT_MAX), a shift for the power-of-two page
  // sizes: 64-bit divisions per row cost more than the copy.
  const int t0 = blockIdx.x * rows_per_pass * kRowsInFlight + r;
  const Chunk* from[kRowsInFlight];
#pragma unroll
  for (int i = 0; i < kRowsInFlight; ++i) {
    const int t = t0 + i * rows_per_pass;
    from[i] = nullptr;
    if (t < a.n) {
      const int pi = a.page_shift >= 0 ? t >> a.page_shift : t / a.page_size;
      const int slot = a.page_shift >= 0 ? t & (a.page_size - 1) : t - pi * a.page_size;
      const int64_t page = a.pages[pi];
      if (page >= 0 && page < a.num_pages)  // a bad id is skipped (checked before)
        from[i] = reinterpret_cast<const Chunk*>(src + page * sb + slot * sn);
    }
  }
  for (int c = c0; c < a.row_chunks; c += a.row_threads) {
    Chunk v[kRowsInFlight];
#pragma unroll
    for (int i = 0; i < kRowsInFlight; ++i)
      if (from[i]) v[i] = from[i][c];
#pragma unroll
    for (int i = 0; i < kRowsInFlight; ++i)
      if (from[i]) dst[(int64_t)(t0 + i * rows_per_pass) * a.row_chunks + c] = v[i];
  }
}

void describe_pool(GatherArgs& a, int z, const QkvView& pool, void* dst) {
  const int64_t esize = dtype_size(pool.dtype);
  a.src[z] = static_cast<const char*>(pool.data);
  a.dst[z] = static_cast<char*>(dst);
  a.sb[z] = pool.stride_b * esize;
  a.sh[z] = pool.stride_h * esize;
  a.sn[z] = pool.stride_n * esize;
}

bool wide_ok(const QkvView& pool, const void* dst) {
  const int64_t esize = dtype_size(pool.dtype);
  return (pool.d * esize) % 16 == 0 && (pool.stride_b * esize) % 16 == 0 &&
         (pool.stride_h * esize) % 16 == 0 && (pool.stride_n * esize) % 16 == 0 &&
         reinterpret_cast<uintptr_t>(pool.data) % 16 == 0 &&
         reinterpret_cast<uintptr_t>(dst) % 16 == 0;
}

}  // namespace

cudaError_t gather_pages(const QkvView& kpool, const QkvView* vpool, const int32_t* pages,
                         int64_t n, void* kdst, void* vdst, cudaStream_t stream) {
  constexpr const char* kWhere = "prism::cuda::gather_pages";
  if (n <= 0) return cudaSuccess;
  require_arg(kpool.data != nullptr && pages != nullptr && kdst != nullptr, kWhere, "null pointer");
  require_arg(!vpool || (vpool->data != nullptr && vdst != nullptr), kWhere, "null pointer");
  require_arg(
      !vpool || (vpool->dtype == kpool.dtype && vpool->d == kpool.d &&
                 vpool->heads == kpool.heads && vpool->n == kpool.n && vpool->batch == kpool.batch),
      kWhere, "the key and value pools differ in shape or dtype");
  const int64_t row_bytes = kpool.d * dtype_size(kpool.dtype);
  if (row_bytes <= 0) return cudaSuccess;  // rows of no bytes: nothing to copy
  require_arg(row_bytes % 4 == 0, kWhere, "a row of d elements must be a multiple of 4 bytes");
  require_arg(n <= INT_MAX - kThreads * kRowsInFlight && kpool.n >= 1 && kpool.n <= INT_MAX &&
                  kpool.heads >= 1 && kpool.heads <= 65535,
              kWhere, "pool or sequence too large");
  GatherArgs a{};
  describe_pool(a, 0, kpool, kdst);
  if (vpool) describe_pool(a, 1, *vpool, vdst);
  a.pages = pages;
  a.num_pages = kpool.batch;
  a.page_size = (int)kpool.n;
  a.page_shift = -1;
  for (int s = 0; s < 31; ++s)
    if ((1 << s) == a.page_size) a.page_shift = s;
  a.n = (int)n;
  const bool wide = wide_ok(kpool, kdst) && (!vpool || wide_ok(*vpool, vdst));
  a.row_chunks = (int)(row_bytes / (wide ? 16 : 4));
  a.row_threads = std::min(a.row_chunks, kThreads);
  const int64_t rows_per_block = (int64_t)(kThreads / a.row_threads) * kRowsInFlight;
  const int64_t want = (n + rows_per_block - 1) / rows_per_block;
  require_arg(want <= INT_MAX, kWhere, "sequence too long");
  const dim3 grid((unsigned)want, (unsigned)kpool.heads, vpool ? 2u : 1u);
  if (wide)
    gather_kernel<uint4><<<grid, kThreads, 0, stream>>>(a);
  else
    gather_kernel<uint32_t><<<grid, kThreads, 0, stream>>>(a);
  return cudaGetLastError();
}

}  // namespace prism::cuda

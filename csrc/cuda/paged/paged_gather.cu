// prism::cuda::gather_pages (see paged_gather.h): one thread per (head,
// token, chunk of a row), chunks of 16 or 4 bytes.
#include <cuda_runtime.h>

#include <climits>
#include <cstdint>
#include <string>

#include "cuda/common/cuda_check.h"
#include "cuda/paged/paged_gather.h"

namespace prism::cuda {
namespace {

struct GatherArgs {
  const char* src;
  char* dst;
  const int32_t* pages;
  int64_t num_pages, page_size, heads, n;
  int64_t sb, sh, sn;  // pool strides in bytes
  int64_t row_chunks;  // chunks per row of d elements
};

template <class Chunk>
__global__ void gather_kernel(GatherArgs a) {
  const int64_t total = a.heads * a.n * a.row_chunks;
  for (int64_t x = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; x < total;
       x += (int64_t)gridDim.x * blockDim.x) {
    const int64_t c = x % a.row_chunks;
    const int64_t t = (x / a.row_chunks) % a.n;
    const int64_t h = x / (a.row_chunks * a.n);
    const int64_t page = a.pages[t / a.page_size];
    if (page < 0 || page >= a.num_pages) continue;
    const Chunk* from =
        reinterpret_cast<const Chunk*>(a.src + page * a.sb + h * a.sh + (t % a.page_size) * a.sn) +
        c;
    Chunk* to = reinterpret_cast<Chunk*>(a.dst) + x;
    *to = *from;
  }
}

}  // namespace

cudaError_t gather_pages(const QkvView& pool, const int32_t* pages, int64_t n, void* dst,
                         cudaStream_t stream) {
  constexpr const char* kWhere = "prism::cuda::gather_pages";
  if (n <= 0) return cudaSuccess;
  require_arg(pool.data != nullptr && pages != nullptr && dst != nullptr, kWhere, "null pointer");
  const int64_t esize = dtype_size(pool.dtype);
  const int64_t row_bytes = pool.d * esize;
  require_arg(row_bytes % 4 == 0, kWhere, "a row of d elements must be a multiple of 4 bytes");
  GatherArgs a{};
  a.src = static_cast<const char*>(pool.data);
  a.dst = static_cast<char*>(dst);
  a.pages = pages;
  a.num_pages = pool.batch;
  a.page_size = pool.n;
  a.heads = pool.heads;
  a.n = n;
  a.sb = pool.stride_b * esize;
  a.sh = pool.stride_h * esize;
  a.sn = pool.stride_n * esize;
  const bool wide = row_bytes % 16 == 0 && a.sb % 16 == 0 && a.sh % 16 == 0 && a.sn % 16 == 0 &&
                    reinterpret_cast<uintptr_t>(pool.data) % 16 == 0 &&
                    reinterpret_cast<uintptr_t>(dst) % 16 == 0;
  a.row_chunks = row_bytes / (wide ? 16 : 4);
  const int64_t total = a.heads * a.n * a.row_chunks;
  const int threads = 256;
  const int64_t want = (total + threads - 1) / threads;
  const unsigned blocks = static_cast<unsigned>(want < 65535 * 8 ? want : 65535 * 8);
  if (wide)
    gather_kernel<uint4><<<blocks, threads, 0, stream>>>(a);
  else
    gather_kernel<uint32_t><<<blocks, threads, 0, stream>>>(a);
  return cudaGetLastError();
}

}  // namespace prism::cuda

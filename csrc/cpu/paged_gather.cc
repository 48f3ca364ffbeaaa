// prism::cpu::gather_pages (see paged_gather.h).
#include "paged_gather.h"

#include <cstring>
#include <stdexcept>
#include <string>

namespace prism::cpu {

void gather_pages(const QkvView& pool, const int32_t* pages, int64_t n, void* dst) {
  if (n <= 0) return;
  if (pool.data == nullptr || dst == nullptr || pages == nullptr)
    throw std::invalid_argument("prism::cpu::gather_pages: null pointer");
  const int64_t page_size = pool.n, heads = pool.heads, d = pool.d;
  const int64_t esize = dtype_size(pool.dtype);
  const size_t row_bytes = static_cast<size_t>(d * esize);
  const char* src = static_cast<const char*>(pool.data);
  char* out = static_cast<char*>(dst);
  const int64_t num_pages = (n + page_size - 1) / page_size;
  for (int64_t p = 0; p < num_pages; ++p) {
    const int64_t page = pages[p];
    if (page < 0 || page >= pool.batch)
      throw std::invalid_argument("prism::cpu::gather_pages: page id " + std::to_string(page) +
                                  " out of range [0, " + std::to_string(pool.batch) + ")");
    const int64_t t0 = p * page_size;
    const int64_t t1 = t0 + page_size < n ? t0 + page_size : n;
    for (int64_t h = 0; h < heads; ++h) {
      for (int64_t t = t0; t < t1; ++t) {
        const int64_t from = page * pool.stride_b + h * pool.stride_h + (t - t0) * pool.stride_n;
        std::memcpy(out + static_cast<size_t>((h * n + t) * d * esize),
                    src + static_cast<size_t>(from * esize), row_bytes);
      }
    }
  }
}

}  // namespace prism::cpu

// Compact rows (CSR) from an estimation's triangular selection, and the row
// starts of the triangular layout itself (see BlockMaskOut in prism_types.h).
#include <stdexcept>

#include "cpu_backend.h"

namespace prism::cpu {

int64_t scan_counts(const int32_t* counts, int64_t rows, int64_t* row_ptr) {
  if (rows < 0) throw std::invalid_argument("prism::cpu::scan_counts: rows < 0");
  int64_t total = 0;
  for (int64_t r = 0; r < rows; ++r) {
    row_ptr[r] = total;
    total += counts[r];
  }
  row_ptr[rows] = total;
  return total;
}

void gather_selection(const int32_t* counts, const int32_t* tri_indices, int64_t rows, int64_t nq,
                      int64_t off, const int64_t* row_ptr, int32_t* indices) {
  for (int64_t r = 0; r < rows; ++r) {
    const int32_t* src = tri_indices + tri_row_start(r, nq, off);
    int32_t* dst = indices + row_ptr[r];
    for (int32_t t = 0; t < counts[r]; ++t) dst[t] = src[t];
  }
}

}  // namespace prism::cpu

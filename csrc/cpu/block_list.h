// Which key blocks a query block row attends to, from a BlockList: the
// selected blocks of (b, h, i) as flags (duplicates collapse, order becomes
// ascending), or every visible block j <= i + (nk - nq) for a dense list.
#pragma once
#include <cstdint>
#include <vector>

#include "common/prism_types.h"

namespace prism::cpu::detail {

// flags[j] = 1 for the key blocks row (b, h, i) uses, j in [0, nk).
// row = (b * Hq + h) * nq + i. The list must have passed check_list.
inline void row_block_flags(const BlockList& list, int64_t row, int64_t i, int64_t nq, int64_t nk,
                            std::vector<uint8_t>& flags) {
  flags.assign(static_cast<size_t>(nk), 0);
  if (list.counts == nullptr) {
    const int64_t visible = visible_blocks(i, nq, nk);
    for (int64_t j = 0; j < visible; ++j) flags[static_cast<size_t>(j)] = 1;
    return;
  }
  const int32_t count = list.counts[row];
  const int32_t* idx = list.indices + list_row_start(list.row_start, row, nq, nk - nq);
  for (int32_t t = 0; t < count; ++t) flags[static_cast<size_t>(idx[t])] = 1;
}

}  // namespace prism::cpu::detail

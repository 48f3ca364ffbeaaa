// Step 1 of estimation: mean pooling of every block of B rows.
#pragma once
#include <cstdint>
#include <vector>

#include "common/prism_types.h"

namespace prism::cpu::detail {

// out = [batch, heads, ceil((n + shift) / block), d] in double: block i is the
// mean of its VALID rows [i*block - shift, (i+1)*block - shift) clipped to
// [0, n) (divided by their number, not by block; identical to zero padding +
// /block when the rows fill the block). shift = (Nk - Nq) % block for queries
// (blocks on the absolute token grid, see BlockGrid), 0 for keys. Only blocks
// i >= first are pooled (the others stay 0: the caller fills them); each
// block's arithmetic depends on its own rows only.
void pool_blocks(const QkvView& v, int64_t block, int64_t shift, int threads,
                 std::vector<double>& out, int64_t first = 0);

}  // namespace prism::cpu::detail

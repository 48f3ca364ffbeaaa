// Step 1 of estimation: mean pooling of every block of B rows.
#pragma once
#include <cstdint>
#include <vector>

#include "common/prism_types.h"

namespace prism::cpu::detail {

// out = [batch, heads, ceil(n / block), d] in double: block i is the mean of
// its VALID rows [i*block, min(n, (i+1)*block)) (divided by their number, not
// by block; identical to zero padding + /block when n % block == 0).
void pool_blocks(const QkvView& v, int64_t block, int threads, std::vector<double>& out);

}  // namespace prism::cpu::detail

// Step 5 of estimation: per-row, per-band block selection (top-p / top-k) and
// the compact (count, ascending indices) form of a selected row. One copy,
// shared by every caller.
#pragma once
#include <cstdint>
#include <vector>

#include "common/prism_types.h"

namespace prism::cpu::detail {

// Orders [0, n) by probability descending, ties to the lower index. NaN
// probabilities rank last (keeps the ordering strict-weak for std::sort).
void rank_by_probability(const double* probs, int64_t n, std::vector<int32_t>& order);

// Top-p: walking the ranked blocks, keep a block iff the sum of the
// probabilities ranked strictly before it is < tau (so the first is always
// kept when tau > 0). Sets keep[j] = 1 for kept j; never clears.
void select_top_p(const double* probs, int64_t n, double tau, uint8_t* keep,
                  std::vector<int32_t>& order);

// Top-k: keep the k most probable blocks (ties to the lower index); all n
// when k >= n; none when k <= 0. Sets keep[j] = 1 for kept j; never clears.
void select_top_k(const double* probs, int64_t n, int64_t k, uint8_t* keep,
                  std::vector<int32_t>& order);

// Dispatch on the selection mode with the band's tau / k.
void select_band(const double* probs, int64_t n, Selection mode, double tau, int64_t k,
                 uint8_t* keep, std::vector<int32_t>& order);

// Writes the selected j of mask_row[0..nk) ascending into indices[0..count)
// and -1 into the rest; returns count.
int32_t compact_row(const uint8_t* mask_row, int64_t nk, int32_t* indices);

}  // namespace prism::cpu::detail

// Top-p / top-k block selection (see selection.h).
#include "selection.h"

#include <algorithm>
#include <cmath>
#include <limits>

namespace prism::cpu::detail {

void rank_by_probability(const double* probs, int64_t n, std::vector<int32_t>& order) {
  order.resize(static_cast<size_t>(n));
  for (int64_t j = 0; j < n; ++j) order[static_cast<size_t>(j)] = static_cast<int32_t>(j);
  auto key = [probs](int32_t j) {
    const double p = probs[j];
    return std::isnan(p) ? -std::numeric_limits<double>::infinity() : p;
  };
  // (key descending, index ascending) is a strict total order, so std::sort is
  // deterministic here.
  std::sort(order.begin(), order.end(), [&](int32_t a, int32_t b) {
    const double ka = key(a), kb = key(b);
    if (ka != kb) return ka > kb;
    return a < b;
  });
}

void select_top_p(const double* probs, int64_t n, double tau, uint8_t* keep,
                  std::vector<int32_t>& order) {
  rank_by_probability(probs, n, order);
  double before = 0.0;  // mass of the blocks ranked strictly before the current one
  for (int64_t t = 0; t < n; ++t) {
    const int32_t j = order[static_cast<size_t>(t)];
    if (!(before < tau)) break;  // cumulative mass only grows: nothing later is kept
    keep[j] = 1;
    before += probs[j];
  }
}

void select_top_k(const double* probs, int64_t n, int64_t k, uint8_t* keep,
                  std::vector<int32_t>& order) {
  if (k <= 0) return;
  if (k >= n) {
    for (int64_t j = 0; j < n; ++j) keep[j] = 1;
    return;
  }
  rank_by_probability(probs, n, order);
  for (int64_t t = 0; t < k; ++t) keep[order[static_cast<size_t>(t)]] = 1;
}

void select_band(const double* probs, int64_t n, Selection mode, double tau, int64_t k,
                 uint8_t* keep, std::vector<int32_t>& order) {
  if (mode == Selection::TopK)
    select_top_k(probs, n, k, keep, order);
  else
    select_top_p(probs, n, tau, keep, order);
}

int32_t compact_row(const uint8_t* mask_row, int64_t nk, int32_t* indices) {
  int32_t count = 0;
  for (int64_t j = 0; j < nk; ++j)
    if (mask_row[j]) indices[count++] = static_cast<int32_t>(j);
  for (int64_t t = count; t < nk; ++t) indices[t] = -1;
  return count;
}

}  // namespace prism::cpu::detail

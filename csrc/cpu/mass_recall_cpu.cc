// prism::cpu::mass_recall: for sampled query rows, the exact softmax mass of
// the full causal row (all keys t <= s, no block restriction) that falls in
// the row's selected key blocks. Computed in double, one row per item.
#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>
#include <vector>

#include "block_list.h"
#include "cpu_backend.h"
#include "parallel_for.h"
#include "tensor_access.h"
#include "view_checks.h"

namespace prism::cpu {

void mass_recall(const QkvView& q, const QkvView& k, const BlockList& list,
                 const AttentionParams& p, const int64_t* rows, int64_t num_rows, float* recall,
                 int threads) {
  detail::check_qk(q, k, "mass_recall");
  detail::check_block(p.block, "mass_recall");
  if (num_rows < 0) throw std::invalid_argument("prism::cpu::mass_recall: num_rows < 0");
  if (num_rows == 0) return;
  if (rows == nullptr || recall == nullptr)
    throw std::invalid_argument("prism::cpu::mass_recall: null rows or recall");
  const int64_t hq = q.heads, group = q.heads / k.heads, d = q.d;
  const int64_t block = p.block;
  const BlockGrid grid(q.n, k.n, block);
  const int64_t nq = grid.nq, nk = grid.nk;
  const int64_t tok_off = k.n - q.n;
  const double scale = p.softmax_scale != 0.f ? static_cast<double>(p.softmax_scale)
                                              : 1.0 / std::sqrt(static_cast<double>(d));
  detail::check_list(list, q.batch * hq * nq, nq, nk, "mass_recall");
  for (int64_t n = 0; n < num_rows; ++n) {
    const int64_t b = rows[3 * n], h = rows[3 * n + 1], r = rows[3 * n + 2];
    if (b < 0 || b >= q.batch || h < 0 || h >= hq || r < 0 || r >= q.n)
      throw std::invalid_argument("prism::cpu::mass_recall: row " + std::to_string(n) + " (" +
                                  std::to_string(b) + ", " + std::to_string(h) + ", " +
                                  std::to_string(r) + ") is out of range");
  }

  struct Scratch {
    std::vector<double> q, k, logits;
    std::vector<uint8_t> flags;
  };
  std::vector<Scratch> scratch(static_cast<size_t>(detail::resolve_threads(threads, num_rows)));
  detail::parallel_for(num_rows, threads, [&](int64_t n, int worker) {
    const int64_t b = rows[3 * n], h = rows[3 * n + 1], r = rows[3 * n + 2];
    const int64_t i = grid.block_of_row(r), pos = tok_off + r;
    const int64_t keys = std::min(pos + 1, k.n);
    Scratch& sc = scratch[static_cast<size_t>(worker)];
    sc.q.resize(static_cast<size_t>(d));
    sc.k.resize(static_cast<size_t>(d));
    sc.logits.resize(static_cast<size_t>(keys));
    detail::row_block_flags(list, (b * hq + h) * nq + i, i, nq, nk, sc.flags);
    detail::load_row(q, b, h, r, sc.q.data());
    double mx = -HUGE_VAL;
    for (int64_t t = 0; t < keys; ++t) {
      detail::load_row(k, b, h / group, t, sc.k.data());
      double dot = 0.0;
      for (int64_t e = 0; e < d; ++e)
        dot += sc.q[static_cast<size_t>(e)] * sc.k[static_cast<size_t>(e)];
      sc.logits[static_cast<size_t>(t)] = dot * scale;
      mx = std::max(mx, dot * scale);
    }
    double total = 0.0, selected = 0.0;
    for (int64_t t = 0; t < keys; ++t) {
      const double w = std::exp(sc.logits[static_cast<size_t>(t)] - mx);
      total += w;
      if (sc.flags[static_cast<size_t>(t / block)]) selected += w;
    }
    recall[n] = static_cast<float>(selected / total);
  });
}

}  // namespace prism::cpu

// prism::cpu::attention: block-sparse causal attention, fp32 accumulation.
// One work item per (query block i, batch, head); query blocks lie on the
// absolute token grid (BlockGrid). Inside it the block's rows
// are processed in tiles of up to kRowTile rows against tiles of up to
// kKeyTile keys of each selected key block (ascending), with an online
// softmax per row.
#include <algorithm>
#include <cmath>
#include <limits>
#include <stdexcept>
#include <string>
#include <vector>

#include "attention_kernels.h"
#include "block_list.h"
#include "cpu_backend.h"
#include "parallel_for.h"
#include "tensor_access.h"
#include "view_checks.h"

namespace prism::cpu {
namespace {

constexpr int64_t kRowTile = 64;   // query rows per tile (multiple of 4)
constexpr int64_t kKeyTile = 128;  // keys per tile

[[noreturn]] void fail(const std::string& what) {
  throw std::invalid_argument("prism::cpu::attention: " + what);
}

void check_args(const QkvView& q, const QkvView& k, const QkvView& v, const OutView& o,
                const AttentionParams& p) {
  detail::check_qk(q, k, "attention");
  detail::check_view(v, "attention", "v");
  detail::check_view(o, "attention", "o");
  if (v.batch != k.batch || v.heads != k.heads || v.n != k.n || v.d != k.d)
    fail("v must have the shape of k");
  if (o.batch != q.batch || o.heads != q.heads || o.n != q.n || o.d != q.d)
    fail("o must have the shape of q");
  if (o.lse_rows_overlap()) fail("lse rows must not overlap (lse_stride >= n)");
  detail::check_block(p.block, "attention");
}

struct Scratch {
  std::vector<float> q, kt, v, s, acc, m, l, out;
  std::vector<uint8_t> flags;
  void init(int64_t d) {
    q.resize(static_cast<size_t>(kRowTile * d));
    kt.resize(static_cast<size_t>(d * kKeyTile));
    v.resize(static_cast<size_t>(kKeyTile * d));
    s.resize(static_cast<size_t>(kRowTile * kKeyTile));
    acc.resize(static_cast<size_t>(kRowTile * d));
    m.resize(static_cast<size_t>(kRowTile));
    l.resize(static_cast<size_t>(kRowTile));
    out.resize(static_cast<size_t>(d));
  }
};

}  // namespace

void attention(const QkvView& q, const QkvView& k, const QkvView& v, const OutView& o,
               const BlockList& list, const AttentionParams& p, int threads) {
  check_args(q, k, v, o, p);
  const int64_t batch = q.batch, hq = q.heads, group = q.heads / k.heads, d = q.d;
  const int64_t nq_rows = q.n, nk_rows = k.n, block = p.block;
  const BlockGrid grid(nq_rows, nk_rows, block);
  const int64_t nq = grid.nq, nk = grid.nk;
  const int64_t tok_off = nk_rows - nq_rows;  // absolute position of query row r is tok_off + r
  const int64_t lse_stride = o.lse_stride > 0 ? o.lse_stride : nq_rows;
  const float scale = p.softmax_scale != 0.f
                          ? p.softmax_scale
                          : static_cast<float>(1.0 / std::sqrt(static_cast<double>(d)));
  detail::check_list(list, batch * hq * nq, nq, nk, "attention");

  const int64_t items = batch * hq * nq;
  std::vector<Scratch> scratch(static_cast<size_t>(detail::resolve_threads(threads, items)));
  for (auto& sc : scratch) sc.init(d);

  detail::parallel_for(items, threads, [&](int64_t item, int worker) {
    const int64_t i = nq - 1 - item / (batch * hq);  // longest rows first
    const int64_t bh = item % (batch * hq);
    const int64_t b = bh / hq, h = bh % hq, hk = h / group;
    Scratch& sc = scratch[static_cast<size_t>(worker)];
    detail::row_block_flags(list, bh * nq + i, i, nq, nk, sc.flags);

    const int64_t row_end = grid.row_end(i);
    for (int64_t r0 = grid.row_begin(i); r0 < row_end; r0 += kRowTile) {
      const int64_t r1 = std::min(row_end, r0 + kRowTile);
      const int64_t nr = r1 - r0;
      const int64_t nr4 = (nr + 3) / 4 * 4;
      float* qt = sc.q.data();
      for (int64_t rr = 0; rr < nr; ++rr) detail::load_row(q, b, h, r0 + rr, qt + rr * d);
      std::fill(qt + nr * d, qt + nr4 * d, 0.f);
      std::fill(sc.acc.begin(), sc.acc.begin() + nr4 * d, 0.f);
      std::fill(sc.m.begin(), sc.m.begin() + nr, -std::numeric_limits<float>::infinity());
      std::fill(sc.l.begin(), sc.l.begin() + nr, 0.f);
      const int64_t last_pos = tok_off + r1 - 1;  // largest query position in the tile

      for (int64_t j = 0; j < nk; ++j) {
        if (!sc.flags[static_cast<size_t>(j)]) continue;
        const int64_t kb0 = j * block;
        const int64_t kend = std::min({nk_rows, kb0 + block, last_pos + 1});
        for (int64_t t0 = kb0; t0 < kend; t0 += kKeyTile) {
          const int64_t t1 = std::min(kend, t0 + kKeyTile);
          const int64_t nc = t1 - t0;
          // K tile transposed to [d, nc]; V tile [nc, d].
          float* vt = sc.v.data();
          float* ktt = sc.kt.data();
          for (int64_t c = 0; c < nc; ++c) {
            float* row = sc.out.data();
            detail::load_row(k, b, hk, t0 + c, row);
            for (int64_t e = 0; e < d; ++e) ktt[e * nc + c] = row[e];
            detail::load_row(v, b, hk, t0 + c, vt + c * d);
          }
          // Per group of 4 rows: S = Q K^T over the columns some row of the group
          // may see (causal), online softmax update per row (P overwrites S),
          // then acc += P V over those columns.
          float* s = sc.s.data();
          for (int64_t g = 0; g < nr4; g += 4) {
            int64_t lims[4];
            int64_t group_lim = 0;
            for (int u = 0; u < 4; ++u) {
              const int64_t rr = g + u;
              const int64_t pos = tok_off + r0 + rr;
              lims[u] = rr < nr ? std::max<int64_t>(0, std::min(nc, pos - t0 + 1)) : 0;
              group_lim = std::max(group_lim, lims[u]);
            }
            if (group_lim == 0) continue;
            detail::gemm4(qt + g * d, d, ktt, nc, s + g * nc, nc, d, group_lim, false);
            for (int u = 0; u < 4; ++u) {
              const int64_t rr = g + u;
              float* srow = s + rr * nc;
              const int64_t lim = lims[u];
              if (lim == 0) {
                std::fill(srow, srow + group_lim, 0.f);
                continue;
              }
              float mx = -std::numeric_limits<float>::infinity();
              for (int64_t c = 0; c < lim; ++c) {
                srow[c] *= scale;
                mx = std::max(mx, srow[c]);
              }
              const float m_old = sc.m[static_cast<size_t>(rr)];
              const float m_new = std::max(m_old, mx);
              float sum = 0.f;
              for (int64_t c = 0; c < lim; ++c) {
                srow[c] = std::exp(srow[c] - m_new);
                sum += srow[c];
              }
              std::fill(srow + lim, srow + group_lim, 0.f);  // causal mask
              if (m_new != m_old) {
                const float alpha = std::exp(m_old - m_new);  // 0 on the first tile
                float* a = sc.acc.data() + rr * d;
                for (int64_t e = 0; e < d; ++e) a[e] *= alpha;
                sc.l[static_cast<size_t>(rr)] *= alpha;
              }
              sc.l[static_cast<size_t>(rr)] += sum;
              sc.m[static_cast<size_t>(rr)] = m_new;
            }
            detail::gemm4(s + g * nc, nc, vt, d, sc.acc.data() + g * d, d, group_lim, d, true);
          }
        }
      }

      for (int64_t rr = 0; rr < nr; ++rr) {
        const float l = sc.l[static_cast<size_t>(rr)];
        const float* a = sc.acc.data() + rr * d;
        float* out = sc.out.data();
        if (l != 0.f) {
          for (int64_t e = 0; e < d; ++e) out[e] = a[e] / l;
        } else {
          std::fill(out, out + d, 0.f);  // the row met no key: zeros
        }
        detail::store_row(o, b, h, r0 + rr, out);
        if (o.lse != nullptr) {
          o.lse[bh * lse_stride + r0 + rr] = l != 0.f ? sc.m[static_cast<size_t>(rr)] + std::log(l)
                                                      : -std::numeric_limits<float>::infinity();
        }
      }
    }
  });
}

}  // namespace prism::cpu

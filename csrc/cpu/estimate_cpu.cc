// prism::cpu::estimate: pooling, bands, temperatures, dual-band block softmax,
// selection, sink/diagonal forcing, block mask and compact lists.
#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>
#include <vector>

#include "block_scores.h"
#include "cpu_backend.h"
#include "parallel_for.h"
#include "pooling.h"
#include "selection.h"
#include "view_checks.h"

namespace prism::cpu {
namespace {

using detail::Band;

void check_params(const EstimateParams& p, int64_t d) {
  detail::check_block(p.block, "estimate");
  if (p.method != Method::Prism && p.method != Method::MeanPool)
    throw std::invalid_argument("prism::cpu::estimate: unknown method " +
                                std::to_string(static_cast<int>(p.method)));
  if (p.selection != Selection::TopP && p.selection != Selection::TopK)
    throw std::invalid_argument("prism::cpu::estimate: unknown selection " +
                                std::to_string(static_cast<int>(p.selection)));
  if (p.method == Method::Prism) detail::check_bands(p, d, "estimate");
}

// Per-band softmax scale and the temperature reported for it.
struct BandScale {
  double scale = 1.0;
  double temp = 1.0;
};

// Guard: a scale that comes out 0 or non-finite (all-zero pooled Q or K makes
// the calibrated temperature 0; a user temperature of 0, inf or NaN does the
// same) would turn every logit into NaN/inf. Fall back to temperature 1, i.e.
// scale = sqrt(band dims), and report t = 1.
BandScale guarded_scale(double temp, int64_t band_dims) {
  const double base = std::sqrt(static_cast<double>(band_dims));
  const double scale = base * temp;
  if (scale == 0.0 || !std::isfinite(scale)) return {base, 1.0};
  return {scale, temp};
}

}  // namespace

void estimate(const QkvView& q, const QkvView& k, const EstimateParams& p, const BlockMaskOut& out,
              int threads, const KeySummaries* keys) {
  detail::check_qk(q, k, "estimate");
  check_params(p, q.d);
  if (out.counts == nullptr || out.indices == nullptr)
    throw std::invalid_argument("prism::cpu::estimate: counts and indices outputs are required");

  const int64_t batch = q.batch, hq = q.heads, hkv = k.heads, d = q.d;
  const int64_t block = p.block;
  const BlockGrid grid(q.n, k.n, block);
  const int64_t nq = grid.nq, nk = grid.nk;
  const int64_t off = grid.off;
  const int64_t group = hq / hkv;

  // Step 1: pooled blocks, [batch, heads, blocks, d] in double; the first
  // keys->blocks key blocks copied from the summaries.
  std::vector<double> qbar, kbar;
  detail::pool_blocks(q, block, grid.shift, threads, qbar);
  const int64_t stored = keys ? keys->blocks : 0;
  if (stored < 0 || stored > k.n / block || (stored > 0 && keys->capacity < stored))
    throw std::invalid_argument("prism::cpu::estimate: key summaries cover more blocks than k");
  const int64_t full = k.n / block;  // a partial last block is never written back
  const bool append = keys && keys->append && full > stored;
  if (append && (keys->rows == nullptr || keys->capacity < full))
    throw std::invalid_argument("prism::cpu::estimate: key summaries without room for the " +
                                std::to_string(full) + " full key blocks to append");
  detail::pool_blocks(k, block, 0, threads, kbar, stored);
  if (stored > 0) {
    const double* rows = static_cast<const double*>(keys->rows);
    for (int64_t bh = 0; bh < batch * hkv; ++bh)
      std::copy(rows + bh * keys->capacity * d, rows + (bh * keys->capacity + stored) * d,
                kbar.data() + bh * nk * d);
  }
  if (append) {  // the block means summarize_keys computes for the same blocks
    double* rows = static_cast<double*>(keys->rows);
    for (int64_t bh = 0; bh < batch * hkv; ++bh)
      std::copy(kbar.data() + (bh * nk + stored) * d, kbar.data() + (bh * nk + full) * d,
                rows + (bh * keys->capacity + stored) * d);
  }

  // Step 2: bands. MeanPool scores one band of all d dims.
  const bool prism = p.method == Method::Prism;
  const int nbands = prism ? 2 : 1;
  Band bands[2];
  if (prism) {
    bands[0] = detail::high_band(d, p.high_dims, p.layout);
    bands[1] = detail::low_band(d, p.low_dims, p.layout);
  } else {
    bands[0] = detail::full_band(d);
  }
  const double taus[2] = {static_cast<double>(p.tau_high), static_cast<double>(p.tau_low)};
  const int64_t topks[2] = {p.topk_high, p.topk_low};

  // Step 3: per (batch, query head) scales. Energies (sums of squares over all
  // pooled blocks) of each kv head are computed once.
  const bool need_energy = prism && p.calibrate;
  std::vector<double> k_energy;  // [batch, hkv, 3]: all dims, high band, low band
  if (need_energy) {
    k_energy.assign(static_cast<size_t>(batch * hkv * 3), 0.0);
    detail::parallel_for(batch * hkv, threads, [&](int64_t bh, int) {
      double* e = k_energy.data() + bh * 3;
      for (int64_t j = 0; j < nk; ++j) {
        const double* x = kbar.data() + (bh * nk + j) * d;
        e[0] += detail::band_sum_sq(x, detail::full_band(d));
        e[1] += detail::band_sum_sq(x, bands[0]);
        e[2] += detail::band_sum_sq(x, bands[1]);
      }
    });
  }
  std::vector<BandScale> scales(static_cast<size_t>(batch * hq * 2));
  detail::parallel_for(batch * hq, threads, [&](int64_t bh, int) {
    BandScale* s = scales.data() + bh * 2;
    if (!prism) {
      // One band of all dims: scale = sqrt(d) * (calibrate ? 1 : temp_high).
      s[0] = guarded_scale(p.calibrate ? 1.0 : static_cast<double>(p.temp_high), d);
      s[1] = s[0];
    } else if (!p.calibrate) {
      s[0] = guarded_scale(static_cast<double>(p.temp_high), bands[0].dims);
      s[1] = guarded_scale(static_cast<double>(p.temp_low), bands[1].dims);
    } else {
      double qe[3] = {0.0, 0.0, 0.0};
      for (int64_t i = 0; i < nq; ++i) {
        const double* x = qbar.data() + (bh * nq + i) * d;
        qe[0] += detail::band_sum_sq(x, detail::full_band(d));
        qe[1] += detail::band_sum_sq(x, bands[0]);
        qe[2] += detail::band_sum_sq(x, bands[1]);
      }
      const int64_t b = bh / hq, h = bh % hq;
      const double* ke = k_energy.data() + (b * hkv + h / group) * 3;
      for (int band = 0; band < 2; ++band) {
        const double t = detail::band_temperature(qe[1 + band], qe[0], nq, ke[1 + band], ke[0], nk,
                                                  d, bands[band].dims);
        s[band] = guarded_scale(t, bands[band].dims);
      }
    }
    if (out.temps != nullptr) {
      out.temps[bh * 2 + 0] = static_cast<float>(s[0].temp);
      out.temps[bh * 2 + 1] = static_cast<float>(s[1].temp);
    }
  });

  // Steps 4-6, one item per (query block row, batch, head); the longest rows
  // (largest i) are scheduled first.
  struct Scratch {
    std::vector<double> probs;
    std::vector<int32_t> order;
    std::vector<uint8_t> keep;
    std::vector<int32_t> indices;
  };
  const int64_t rows = batch * hq * nq;
  std::vector<Scratch> scratch(static_cast<size_t>(detail::resolve_threads(threads, rows)));
  detail::parallel_for(rows, threads, [&](int64_t item, int worker) {
    const int64_t i = nq - 1 - item / (batch * hq);
    const int64_t bh = item % (batch * hq);
    const int64_t b = bh / hq, h = bh % hq;
    Scratch& sc = scratch[static_cast<size_t>(worker)];
    sc.probs.resize(static_cast<size_t>(nk));
    sc.keep.assign(static_cast<size_t>(nk), 0);
    sc.indices.resize(static_cast<size_t>(nk));

    const int64_t visible = i + off + 1;  // key blocks j <= i + off (always <= nk)
    const double* qrow = qbar.data() + (bh * nq + i) * d;
    const double* kblocks = kbar.data() + (b * hkv + h / group) * nk * d;
    for (int band = 0; band < nbands; ++band) {
      detail::band_logits(qrow, kblocks, visible, d, bands[band], scales[bh * 2 + band].scale,
                          sc.probs.data());
      detail::softmax_inplace(sc.probs.data(), visible);
      detail::select_band(sc.probs.data(), visible, p.selection, taus[band], topks[band],
                          sc.keep.data(), sc.order);
    }
    if (p.force_sink) sc.keep[0] = 1;
    if (p.force_diag) sc.keep[static_cast<size_t>(i + off)] = 1;

    const int64_t row = bh * nq + i;
    const int32_t count = detail::compact_row(sc.keep.data(), nk, sc.indices.data());
    if (out.mask != nullptr)
      for (int64_t j = 0; j < nk; ++j) out.mask[row * nk + j] = sc.keep[static_cast<size_t>(j)];
    out.counts[row] = count;
    int32_t* dst = out.indices + tri_row_start(row, nq, off);  // room for `visible` >= count
    for (int32_t t = 0; t < count; ++t) dst[t] = sc.indices[static_cast<size_t>(t)];
  });
}

void summarize_keys(const QkvView& k, const EstimateParams& p, int64_t nblocks,
                    const KeySummaries& out, int64_t first, int threads) {
  detail::check_block(p.block, "summarize_keys");
  if (nblocks <= 0) return;
  if (k.n < nblocks * p.block || first < 0 || first + nblocks > out.capacity)
    throw std::invalid_argument("prism::cpu::summarize_keys: blocks outside k or the summaries");
  QkvView v = k;
  v.n = nblocks * p.block;  // full blocks only
  std::vector<double> kbar;
  detail::pool_blocks(v, p.block, 0, threads, kbar);
  double* rows = static_cast<double*>(out.rows);
  const int64_t d = k.d;
  for (int64_t bh = 0; bh < k.batch * k.heads; ++bh)
    std::copy(kbar.data() + bh * nblocks * d, kbar.data() + (bh + 1) * nblocks * d,
              rows + (bh * out.capacity + first) * d);
}

}  // namespace prism::cpu

// Bands, temperatures, block logits and softmax (see block_scores.h).
#include "block_scores.h"

#include <algorithm>
#include <cmath>

namespace prism::cpu::detail {
namespace {

Band two_ranges(int64_t b0, int64_t e0, int64_t b1, int64_t e1) {
  Band band;
  band.ranges = 2;
  band.begin[0] = b0;
  band.end[0] = e0;
  band.begin[1] = b1;
  band.end[1] = e1;
  band.dims = (e0 - b0) + (e1 - b1);
  return band;
}

Band one_range(int64_t b0, int64_t e0) {
  Band band;
  band.ranges = 1;
  band.begin[0] = b0;
  band.end[0] = e0;
  band.dims = e0 - b0;
  return band;
}

}  // namespace

Band high_band(int64_t d, int64_t h, RopeLayout layout) {
  if (layout == RopeLayout::Interleaved) return one_range(0, h);
  return two_ranges(0, h / 2, d / 2, d / 2 + h / 2);
}

Band low_band(int64_t d, int64_t l, RopeLayout layout) {
  if (layout == RopeLayout::Interleaved) return one_range(d - l, d);
  return two_ranges(d / 2 - l / 2, d / 2, d - l / 2, d);
}

Band full_band(int64_t d) { return one_range(0, d); }

double band_sum_sq(const double* x, const Band& band) {
  double s = 0.0;
  for (int r = 0; r < band.ranges; ++r)
    for (int64_t e = band.begin[r]; e < band.end[r]; ++e) s += x[e] * x[e];
  return s;
}

double band_temperature(double q_band_sq, double q_all_sq, int64_t nq, double k_band_sq,
                        double k_all_sq, int64_t nk, int64_t d, int64_t band_dims) {
  const double eps = 1e-6;
  const double dd = static_cast<double>(d), bd = static_cast<double>(band_dims);
  const double rq_band = std::sqrt(q_band_sq / (static_cast<double>(nq) * bd));
  const double rq_all = std::sqrt(q_all_sq / (static_cast<double>(nq) * dd));
  const double rk_band = std::sqrt(k_band_sq / (static_cast<double>(nk) * bd));
  const double rk_all = std::sqrt(k_all_sq / (static_cast<double>(nk) * dd));
  return std::sqrt(bd / dd) * (rq_band / std::max(rq_all, eps)) * (rk_band / std::max(rk_all, eps));
}

void band_logits(const double* q, const double* kbar, int64_t count, int64_t d, const Band& band,
                 double scale, double* logits) {
  int64_t j = 0;
  // Four key blocks at a time: four independent sequential dot products
  // (same summation order as one at a time, better instruction-level parallelism).
  for (; j + 4 <= count; j += 4) {
    const double* k0 = kbar + j * d;
    const double* k1 = k0 + d;
    const double* k2 = k1 + d;
    const double* k3 = k2 + d;
    double s0 = 0.0, s1 = 0.0, s2 = 0.0, s3 = 0.0;
    for (int r = 0; r < band.ranges; ++r) {
      for (int64_t e = band.begin[r]; e < band.end[r]; ++e) {
        const double x = q[e];
        s0 += x * k0[e];
        s1 += x * k1[e];
        s2 += x * k2[e];
        s3 += x * k3[e];
      }
    }
    logits[j] = s0 / scale;
    logits[j + 1] = s1 / scale;
    logits[j + 2] = s2 / scale;
    logits[j + 3] = s3 / scale;
  }
  for (; j < count; ++j) {
    const double* kj = kbar + j * d;
    double s = 0.0;
    for (int r = 0; r < band.ranges; ++r)
      for (int64_t e = band.begin[r]; e < band.end[r]; ++e) s += q[e] * kj[e];
    logits[j] = s / scale;
  }
}

void softmax_inplace(double* x, int64_t n) {
  double m = x[0];
  for (int64_t j = 1; j < n; ++j) m = std::max(m, x[j]);
  double sum = 0.0;
  for (int64_t j = 0; j < n; ++j) {
    x[j] = std::exp(x[j] - m);
    sum += x[j];
  }
  for (int64_t j = 0; j < n; ++j) x[j] /= sum;
}

}  // namespace prism::cpu::detail

// Steps 2-4 of estimation: RoPE frequency bands, energy-based temperatures,
// block logits and the per-row softmax over visible key blocks. All in double
// (block-level work, cheap), so results track a float64 reference closely.
#pragma once
#include <cstdint>

#include "common/prism_types.h"

namespace prism::cpu::detail {

// A set of head dims: the union of at most two [begin, end) ranges.
struct Band {
  int64_t begin[2] = {0, 0};
  int64_t end[2] = {0, 0};
  int ranges = 0;
  int64_t dims = 0;  // total number of dims
};

// "half" layout (dim i pairs with i + d/2):
//   high = pairs [0, h/2)         -> dims [0, h/2) u [d/2, d/2 + h/2)
//   low  = pairs [d/2 - l/2, d/2) -> dims [d/2 - l/2, d/2) u [d - l/2, d)
// "interleaved" layout (pair p = dims 2p, 2p+1):
//   high -> dims [0, h);  low -> dims [d - l, d)
Band high_band(int64_t d, int64_t h, RopeLayout layout);
Band low_band(int64_t d, int64_t l, RopeLayout layout);
Band full_band(int64_t d);  // all d dims (Method::MeanPool)

// Sum of x[e]^2 over the band's dims (sequential, in dim order).
double band_sum_sq(const double* x, const Band& band);

// Energy-based temperature of one band (spec step 3), from sums of squares
// over all pooled blocks of the query head (nq blocks) and of its kv head
// (nk blocks):
//   t = sqrt(dims/d) * (rms(qbar_band)/max(rms(qbar), eps)) * (rms(kbar_band)/max(rms(kbar), eps))
double band_temperature(double q_band_sq, double q_all_sq, int64_t nq, double k_band_sq,
                        double k_all_sq, int64_t nk, int64_t d, int64_t band_dims);

// logits[j] = <q[band], kbar_j[band]> / scale for j in [0, count); kbar rows
// are d doubles apart. Each dot is summed sequentially in dim order.
void band_logits(const double* q, const double* kbar, int64_t count, int64_t d, const Band& band,
                 double scale, double* logits);

// In-place numerically stable softmax over x[0..n) (max-subtracted), n >= 1.
void softmax_inplace(double* x, int64_t n);

}  // namespace prism::cpu::detail

// CPU implementation of the whole method (spec: docs/algorithm.md). Same
// semantics as the CUDA backend; fp32 accumulation for every input dtype.
// Functions throw std::invalid_argument for inconsistent arguments.
#pragma once
#include "common/prism_types.h"

namespace prism::cpu {

// threads <= 0 means std::thread::hardware_concurrency().
void estimate(const QkvView& q, const QkvView& k, const EstimateParams& p,
              const BlockMaskOut& out, int threads);

void attention(const QkvView& q, const QkvView& k, const QkvView& v,
               const OutView& o, const BlockList& list,
               const AttentionParams& p, int threads);

}  // namespace prism::cpu

namespace prism::cpu {

// Exact attention-mass recall for sampled query rows: for each (b, h, r) in
// `rows` (3 int64 per row), the softmax mass of the full causal row that falls
// inside the row's selected key blocks (dense list: 1). recall[n] in [0, 1].
void mass_recall(const QkvView& q, const QkvView& k, const BlockList& list,
                 const AttentionParams& p, const int64_t* rows, int64_t num_rows,
                 float* recall, int threads);

// Squared norms for relative error: out[0] = sum (a - b)^2, out[1] = sum b^2,
// over two views of the same logical shape (fp32 accumulation in double).
void diff_norms(const QkvView& a, const QkvView& b, double* out, int threads);

}  // namespace prism::cpu

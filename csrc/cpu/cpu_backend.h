// CPU implementation of the whole method (spec: docs/algorithm.md). Same
// semantics as the CUDA backend; fp32 accumulation for every input dtype.
// Functions throw std::invalid_argument for inconsistent arguments.
#pragma once
#include "common/prism_types.h"

namespace prism::cpu {

// threads <= 0 means std::thread::hardware_concurrency(). With `keys`, key
// blocks [0, keys->blocks) come from those summaries (summarize_keys of the
// same keys) instead of being pooled from k; keys->blocks <= Nk / block. With
// keys->append, the full blocks pooled from k ([keys->blocks, Nk / block)) are
// also written to those rows of the summaries (capacity >= Nk / block).
void estimate(const QkvView& q, const QkvView& k, const EstimateParams& p, const BlockMaskOut& out,
              int threads, const KeySummaries* keys = nullptr);

// float32 words of one key-summary row (KeySummaries): d doubles.
inline int64_t key_summary_row_floats(int64_t d) { return 2 * d; }

// Pools key blocks [0, nblocks) of k [batch, Hkv, >= nblocks * block, d] (the
// view starts at a block boundary) into rows [first, first + nblocks) of out
// (float64 rows, see KeySummaries), as estimate() pools them.
void summarize_keys(const QkvView& k, const EstimateParams& p, int64_t nblocks,
                    const KeySummaries& out, int64_t first, int threads);

void attention(const QkvView& q, const QkvView& k, const QkvView& v, const OutView& o,
               const BlockList& list, const AttentionParams& p, int threads);

// Compact rows from an estimation's triangular selection (BlockMaskOut):
// row_ptr[0..rows] = exclusive prefix sums of counts (row_ptr[rows] = total),
// returned; then gather_selection copies each row to indices[row_ptr[r] ...].
int64_t scan_counts(const int32_t* counts, int64_t rows, int64_t* row_ptr);
void gather_selection(const int32_t* counts, const int32_t* tri_indices, int64_t rows, int64_t nq,
                      int64_t off, const int64_t* row_ptr, int32_t* indices);

}  // namespace prism::cpu

namespace prism::cpu {

// Exact attention-mass recall for sampled query rows: for each (b, h, r) in
// `rows` (3 int64 per row), the softmax mass of the full causal row that falls
// inside the row's selected key blocks (dense list: 1). recall[n] in [0, 1].
void mass_recall(const QkvView& q, const QkvView& k, const BlockList& list,
                 const AttentionParams& p, const int64_t* rows, int64_t num_rows, float* recall,
                 int threads);

// Squared norms for relative error: out[0] = sum (a - b)^2, out[1] = sum b^2,
// over two views of the same logical shape (fp32 accumulation in double).
void diff_norms(const QkvView& a, const QkvView& b, double* out, int threads);

}  // namespace prism::cpu

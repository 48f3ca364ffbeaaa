// Host-side entry points of the CUDA backend. Every function only enqueues
// work on `stream` (no host synchronisation, no host round trip) and returns
// the first CUDA error it met (launch errors included), or throws
// std::invalid_argument for arguments the kernels do not support.
#pragma once
#include <cuda_runtime.h>
#include <cstddef>
#include "common/prism_types.h"

namespace prism::cuda {

// Scratch bytes estimate() needs; the caller allocates them on the stream.
size_t estimate_workspace_bytes(const QkvView& q, const QkvView& k, const EstimateParams& p);

// Pooling, temperatures, dual-band softmax, selection, sink/diagonal, lists.
// q, k: device pointers, dtype F32, F16 or BF16. out: device pointers. With
// `keys`, key blocks [0, keys->blocks) are copied from those summaries
// (summarize_keys of the same keys) instead of pooled; keys->blocks <= Nk / block.
// With keys->append, the full blocks pooled from k ([keys->blocks, Nk / block))
// are also copied from the workspace into those rows of the summaries (rows and
// energies, capacity >= Nk / block), on `stream` right after the pooling.
// With `pages`, k is a page pool whose keys the pooling reads in place through
// the page ids (q batch 1; a block's page looked up once where pages hold
// whole blocks, each row's where they are smaller); the workspace is that of
// the sequence's keys as a plain [1, Hkv, tokens, d] view.
cudaError_t estimate(const QkvView& q, const QkvView& k, const EstimateParams& p,
                     const BlockMaskOut& out, void* workspace, cudaStream_t stream,
                     const KeySummaries* keys = nullptr, const KvPages* pages = nullptr);

// float32 words of one key-summary row (KeySummaries): the band-packed row of
// the pooling kernel for head_dim d and p's method and bands (3 energies go
// to their own array).
int64_t key_summary_row_floats(int64_t d, const EstimateParams& p);

// Pools key blocks [0, nblocks) of k [batch, Hkv, >= nblocks * block, d] (the
// view starts at a block boundary) into rows [first, first + nblocks) of out,
// with estimate()'s pooling kernel and the vector width k's view allows.
// With `pages`, k is the sequence's page pool instead
// and blocks [first, first + nblocks) of its keys are pooled in place.
cudaError_t summarize_keys(const QkvView& k, const EstimateParams& p, int64_t nblocks,
                           const KeySummaries& out, int64_t first, cudaStream_t stream,
                           const KvPages* pages = nullptr);

// Compact rows from an estimation's triangular selection (as prism::cpu::
// scan_counts / gather_selection, device pointers). scan_counts writes
// row_ptr[0..rows] (row_ptr[rows] = total) and needs scan_workspace_bytes.
size_t scan_workspace_bytes(int64_t rows);
cudaError_t scan_counts(const int32_t* counts, int64_t rows, int64_t* row_ptr, void* workspace,
                        cudaStream_t stream);
// scan_counts over many row sets at once, in two launches: segments (device
// memory) are `count` sets of counts -> row_ptr, each starting at chunk0, the
// sum of scan_chunks(rows) of the sets before it; `chunks` is the sum over all,
// `workspace` holds that many int64 and totals[i] gets set i's row_ptr[rows].
// Every set has rows > 0.
struct ScanSegment {
  const int32_t* counts;
  int64_t* row_ptr;
  int64_t rows;
  int64_t chunk0;
};
int64_t scan_chunks(int64_t rows);
cudaError_t scan_segments(const ScanSegment* segments, int count, int64_t chunks,
                          int64_t* workspace, int64_t* totals, cudaStream_t stream);
cudaError_t gather_selection(const int32_t* counts, const int32_t* tri_indices, int64_t rows,
                             int64_t nq, int64_t off, const int64_t* row_ptr, int32_t* indices,
                             cudaStream_t stream);
// gather_selection over many selections in one launch: segments (device
// memory) are `count` selections, each starting at unit0, the sum of
// gather_units(rows) of those before it; `units` is the sum over all.
struct GatherSegment {
  const int32_t* counts;
  const int32_t* tri_indices;
  const int64_t* row_ptr;
  int32_t* indices;
  int64_t rows, nq, off;
  int64_t unit0;
};
int64_t gather_units(int64_t rows);
cudaError_t gather_segments(const GatherSegment* segments, int count, int64_t units,
                            cudaStream_t stream);

// With `pages` (attention's paged K/V): room to gather them when the pages are
// small (attention_gathers_pages).
size_t attention_workspace_bytes(const QkvView& q, const QkvView& k, const BlockList& list,
                                 const AttentionParams& p, const KvPages* pages = nullptr);

// Block-sparse causal attention; q, k, v, o: F16 or BF16 (all the same),
// head_dim 64 or 128. list.counts == nullptr means dense. With `pages`, k and
// v are page pools read in place through the sequence's page ids (q batch 1).
// Whether attention() gathers paged K/V of this page size into its workspace
// (pages under 64 keys) rather than reading the pages in place.
bool attention_gathers_pages(int page_size);

cudaError_t attention(const QkvView& q, const QkvView& k, const QkvView& v, const OutView& o,
                      const BlockList& list, const AttentionParams& p, void* workspace,
                      cudaStream_t stream, const KvPages* pages = nullptr);

// As prism::cpu::mass_recall; rows and recall are device pointers.
cudaError_t mass_recall(const QkvView& q, const QkvView& k, const BlockList& list,
                        const AttentionParams& p, const int64_t* rows, int64_t num_rows,
                        float* recall, cudaStream_t stream);

// As prism::cpu::diff_norms; out points to 2 doubles in device memory, and
// workspace to diff_norms_workspace_bytes(a, b) bytes (per call: concurrent
// calls need their own).
size_t diff_norms_workspace_bytes(const QkvView& a, const QkvView& b);
cudaError_t diff_norms(const QkvView& a, const QkvView& b, double* out, void* workspace,
                       cudaStream_t stream);

// Name of the attention path that attention() takes on this device for the
// configurations the Hopper kernel covers, under the current tuning:
// "sm90-wgmma", "sm80-mma" (the portable tensor-core kernel) or "none" (the
// plan of attention_plan.h decides).
const char* attention_path(int device);

// Architectures whose machine code was compiled in, e.g. "sm_80,sm_90a,compute_90a".
const char* compiled_archs();

// 1 when that list holds sm_90a code (or compute_90a PTX), 0 when it does not,
// -1 when the build did not record its list.
int compiled_for_sm90a();

}  // namespace prism::cuda

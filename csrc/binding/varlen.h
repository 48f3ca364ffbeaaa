// Ragged batches and paged KV caches: the sequence table the TypeScript layer
// builds from cuSeqlens / page tables, checked again here for memory safety,
// and the per-sequence views into the packed tensors that the existing
// per-view backends then run on, one sequence after another.
#pragma once
#include <napi.h>

#include <cstdint>
#include <memory>
#include <vector>

#include "binding/device.h"
#include "binding/storage.h"
#include "common/prism_types.h"

namespace prism::binding {

// One sequence: its queries are packed tokens [q_off, q_off + nq) of Q, its
// keys tokens [k_off, k_off + nk) of K (packed), or, paged, the pages
// pages[page_off ...] of the pool (ceil(nk / page_size) of them).
struct SeqSpan {
  int64_t q_off = 0, nq = 0, k_off = 0, nk = 0, page_off = 0;
};

struct VarlenSpec {
  std::vector<SeqSpan> seqs;
  bool paged = false;
  int64_t page_size = 0;
  std::vector<int32_t> pages;      // every sequence's pages, one after the other
  int64_t max_nq = 0, max_nk = 0;  // over the sequences with queries
};

// spec = { seqs: BigInt64Array [4 * batch] of (qOffset, nq, kOffset, nk),
//          pageTable?: Int32Array [batch * maxPages], maxPages?: number }.
// q is packed [1, Hq, totalQ, d]; k is packed [1, Hkv, totalK, d], or with a
// page table a pool [numPages, Hkv, pageSize, d]. RangeError for a span or a
// page outside the tensors, nq > nk, too few pages.
VarlenSpec read_varlen_spec(Napi::Value spec, const QkvView& q, const QkvView& k);

// Tokens [off, off + n) of a packed view, as a batch-1 view (same strides).
QkvView token_slice(const QkvView& packed, int64_t off, int64_t n);
OutView token_slice(const OutView& packed, int64_t off, int64_t n);

// The views the CUDA attention kernels take: 16-byte aligned data, strides in
// multiples of 8 elements. RangeError naming the sequence otherwise.
void check_gpu_alignment(const QkvView& v, const char* what, size_t seq);

// One sequence's share of the call.
struct SeqWork {
  SeqSpan span;
  QkvView q, k, v;  // k, v: packed slices, or (paged) shapes only (the pools are k_pool, v_pool)
  OutView o;
  BlockGrid grid;
  int64_t rows = 0, tri = 0;
  BlockMaskOut sel;            // caller's counts / temps / mask, or null
  int64_t* row_ptr = nullptr;  // caller's, or null
  BlockList list;              // attention alone: the caller's list (null counts: dense)
  KeySummaries keys;           // estimation: key blocks read instead of pooled (none: blocks 0)
};

struct VarlenArgs {
  int device = kCpuDevice;
  uint64_t stream = 0;
  QkvView k_pool, v_pool;  // paged: the pools
  VarlenSpec spec;
  bool estimate = false, attention = false, want_selection = false;
  EstimateParams ep;
  AttentionParams ap;
  float* lse = nullptr;  // packed [Hq, totalQ]
  int64_t heads = 0, total_q = 0, hkv = 0, d = 0;
  DType dtype = DType::F32;
  std::vector<SeqWork> seqs;
};

// Which stream ("lane", StreamLanes in cuda_sync.h) each sequence of a CUDA
// varlen call runs on, within each of its two phases. Short sequences spread
// over the side lanes 1..: one of them leaves most of the GPU idle (a 4K
// prompt's selection is 64 CTAs; on an H200 four lanes took 8 x 4K from 1.87
// to 1.54 ms and 32 x 1K from 1.95 to 1.40 ms). The rest run one after the
// other on lane 0, the call's stream: from 2048 query tiles (8K queries at 32
// heads) a sequence's kernels fill the GPU (4 x 8K showed no gain), and lanes
// sized for long keys would multiply the workspace (each lane gathers its paged
// keys). The short ones go longest first to the least loaded side
// lane (lane 0 too when no sequence is long), so the lanes end together.
struct LanePlan {
  size_t lanes = 1;
  std::vector<size_t> lane;  // per sequence (0 for those without queries)
};
constexpr int64_t kLaneMaxQueryTiles = 1024;  // heads x 128-query tiles
constexpr int64_t kLaneMaxKeys = 131072;
// Paged: a side lane's gathered bytes at most this (the attention's keys and
// values when its pages are under 64 keys), so three side lanes add at most
// 384 MiB.
constexpr int64_t kLaneMaxGatherBytes = int64_t(128) << 20;
// kv_token_bytes: the gathered bytes of one key (0 when nothing is gathered).
LanePlan plan_lanes(const std::vector<SeqSpan>& seqs, int64_t heads, int64_t kv_token_bytes,
                    size_t max_lanes);

// Reads and checks the arguments of varlen() (ops.h), appending the storages
// the call must keep alive to `keep`.
VarlenArgs read_varlen_args(const Napi::CallbackInfo& info,
                            std::vector<std::shared_ptr<Storage>>& keep);

}  // namespace prism::binding

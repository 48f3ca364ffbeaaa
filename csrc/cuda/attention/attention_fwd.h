// Internal interface of the attention kernels (host side, no device code):
// the kernel parameter block and the launch entry points of the portable path.
// The plan (which kernel, tiles, grid, workspace) is in attention_plan.h.
#pragma once
#include <cuda_runtime.h>
#include <cstddef>
#include <cstdint>
#include "common/prism_types.h"
#include "cuda/attention/attention_plan.h"

namespace prism::cuda::attn {

// Everything a forward kernel needs; strides in elements.
struct FwdParams {
  const void* q = nullptr;
  const void* k = nullptr;
  const void* v = nullptr;
  void* o = nullptr;
  float* lse = nullptr;  // optional natural-log row log-sum-exp: row r of (b, h) at
  int64_t lse_sh = 0;    // lse[(b * hq + h) * lse_sh + r]
  int64_t q_sb = 0, q_sh = 0, q_sn = 0;
  int64_t k_sb = 0, k_sh = 0, k_sn = 0;
  int64_t v_sb = 0, v_sh = 0, v_sn = 0;
  int64_t o_sb = 0, o_sh = 0, o_sn = 0;
  int32_t batch = 0, hq = 0, hkv = 0, group = 1;  // group = hq / hkv
  int32_t nq = 0, nk = 0;                         // tokens
  int32_t blk = 128;                              // list block size
  int32_t nqb = 0, nkb = 0;                       // blocks on the token grid (BlockGrid)
  const int32_t* counts = nullptr;                // null: dense
  const int64_t* row_start = nullptr;  // row r's blocks: indices[row_start[r] ...]; null with
                                       // counts: the triangular layout (list_row_start)
  const int32_t* indices = nullptr;
  // Paged K/V (KvPages): k and v point at the pools, k_sb / v_sb step a page,
  // key t lies in page kv_pages[t >> page_shift]; null: k and v are plain views.
  const int32_t* kv_pages = nullptr;
  int32_t page_shift = 0;
  int32_t last_id = 0;  // kv_pages[(nk - 1) >> page_shift]
  int64_t pool_pages = 0;
  float scale_log2 = 0.f;           // softmax scale * log2(e)
  int32_t n_mtiles = 0;             // query tiles per (b, h): plan.n_mtiles
  const int32_t* order = nullptr;   // work order (plan.sort_items / sort_window), or null
  int32_t* work_counter = nullptr;  // item counter (plan.persistent), or null
};

// Launches the portable kernel of one (dtype, head_dim) family with the plan's
// variant and grid (plan.path == Path::kPortable); defined in the
// instantiation files.
template <typename T, int D>
cudaError_t launch_fwd(const FwdParams& p, const AttentionPlan& plan, cudaStream_t stream);

// Orders sparse work items (query tile, head, batch) by selected-block count,
// descending, into `order` (p.order is ignored): the plan's sort_items step,
// into its workspace.order_offset. One small kernel.
cudaError_t launch_order_items(const FwdParams& p, int block_m, int32_t* order,
                               cudaStream_t stream);
// The Hopper kernel's window sort (plan.sort_window): the item slots of each
// window of `window` in that kernel's order (its decode_item; p.order must be
// null) ranked by the key tiles their items visit, descending (ties keep the
// order), into `order`, a permutation of [0, items). One CTA a window.
cudaError_t launch_order_windows(const FwdParams& p, int window, int64_t items, int32_t* order,
                                 cudaStream_t stream);

// The facts of the current device the plan reads (harnesses use them to name
// the path a case takes).
cudaError_t current_device_facts(DeviceFacts* facts);

// The full operation with an explicit portable-path variant (kAuto: the
// plan's choice, Hopper kernel included); the public prism::cuda::attention()
// is this with kAuto. Harnesses call it to run each variant.
cudaError_t attention_with_variant(const QkvView& q, const QkvView& k, const QkvView& v,
                                   const OutView& o, const BlockList& list,
                                   const AttentionParams& p, void* workspace, cudaStream_t stream,
                                   int variant, const KvPages* pages = nullptr);

}  // namespace prism::cuda::attn

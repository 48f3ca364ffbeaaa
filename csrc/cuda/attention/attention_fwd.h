// Internal interface of the attention kernels (host side, no device code):
// the kernel parameter block, the kernel variants, and the dispatch entry
// points the API file and the native check harness call.
#pragma once
#include <cuda_runtime.h>
#include <cstddef>
#include <cstdint>
#include "common/prism_types.h"

namespace prism::cuda::attn {

// Everything a forward kernel needs; strides in elements.
struct FwdParams {
  const void* q = nullptr;
  const void* k = nullptr;
  const void* v = nullptr;
  void* o = nullptr;
  float* lse = nullptr;  // optional [batch, hq, nq] natural-log row log-sum-exp
  int64_t q_sb = 0, q_sh = 0, q_sn = 0;
  int64_t k_sb = 0, k_sh = 0, k_sn = 0;
  int64_t v_sb = 0, v_sh = 0, v_sn = 0;
  int64_t o_sb = 0, o_sh = 0, o_sn = 0;
  int32_t batch = 0, hq = 0, hkv = 0, group = 1;  // group = hq / hkv
  int32_t nq = 0, nk = 0;                         // tokens
  int32_t blk = 128;                              // list block size
  int32_t nqb = 0, nkb = 0;                       // blocks on the token grid (BlockGrid)
  const int32_t* counts = nullptr;                // null: dense
  const int64_t* row_start = nullptr;             // row r's blocks: indices[row_start[r] ...]
  const int32_t* indices = nullptr;
  float scale_log2 = 0.f;                         // softmax scale * log2(e)
  int32_t n_mtiles = 0;                           // query tiles per (b, h)
  const int32_t* order = nullptr;                 // work order (sparse), or null
  int32_t* work_counter = nullptr;                // sm90 persistent item counter (workspace), or null
};

// Query tiles of block_m rows lie on the token grid like the blocks: tile qt
// holds rows [qt * block_m - shift, (qt + 1) * block_m - shift) clipped to
// [0, nq), shift = (nk - nq) % block_m, so no tile straddles two query blocks
// (block_m divides the block) and the first tile of a chunk may be partial.
__host__ __device__ inline int tile_row0(int qt, int nq, int nk, int block_m) {
  return qt * block_m - (nk - nq) % block_m;
}
inline int32_t query_tiles(int64_t nq, int64_t nk, int block_m) {
  if (nq <= 0) return 0;
  return static_cast<int32_t>((nq + (nk - nq) % block_m + block_m - 1) / block_m);
}

// Workspace bytes of the sm90 kernel's persistent item counter (at offset 0;
// the sm80 work order, when there is one, follows it).
constexpr size_t kCounterBytes = 256;

// Kernel variants of the sm80-mma path. Names: warps, 16-row m-tiles per
// warp, key tile. BLOCK_M = warps * 16 * mtiles.
enum Variant : int {
  kAuto = -1,
  kW4M2N64 = 0,   // BLOCK_M 128, BLOCK_N 64, 4 warps x 32 rows
  kW8M1N64 = 1,   // BLOCK_M 128, BLOCK_N 64, 8 warps x 16 rows
  kW4M2N128 = 2,  // BLOCK_M 128, BLOCK_N 128 (head_dim 64 only)
  kW4M1N64 = 3,   // BLOCK_M 64,  BLOCK_N 64 (any block size, required for 64)
  kW4M2N64U = 4,  // kW4M2N64 with its two 32-key sub-steps unrolled (head_dim 128 only)
  kNumVariants = 5
};

const char* variant_name(int v);
int variant_block_m(int v);
int variant_block_n(int v);
bool variant_supported(int v, int head_dim, int blk);
int default_variant(int head_dim, int blk);

// Launches one (dtype, head_dim) family; defined in the instantiation files.
template <typename T, int D>
cudaError_t launch_fwd(const FwdParams& p, int variant, cudaStream_t stream);

// Orders sparse work items (query tile, head, batch) by selected-block count,
// descending, into `order` (p.order is ignored). One small kernel.
cudaError_t launch_order_items(const FwdParams& p, int block_m, int32_t* order,
                               cudaStream_t stream);

// Workspace bytes for the ordering of any variant.
size_t order_workspace_bytes(int64_t batch, int64_t hq, int64_t nq);

// The full operation with an explicit variant (kAuto = default); the public
// prism::cuda::attention() is this with kAuto.
cudaError_t attention_with_variant(const QkvView& q, const QkvView& k, const QkvView& v,
                                   const OutView& o, const BlockList& list,
                                   const AttentionParams& p, void* workspace,
                                   cudaStream_t stream, int variant);

}  // namespace prism::cuda::attn

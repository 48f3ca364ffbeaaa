// The plan of one attention call: which kernel runs, with which tiles, on
// which grid, and where its scratch lies in the workspace. Computed once per
// call on the host, before anything is launched, by plan_attention(), from
//   - the call (describe_call(): views, block list, options; every argument
//     check of the CUDA attention lives there),
//   - the device (DeviceFacts: compute capability, SMs, whether this binary
//     holds the Hopper kernel),
//   - the tuning (AttentionTuning, attention_tuning.h: defaults unless a test
//     or a measurement set it).
// The launch (attention_api.cu, the two launchers), the workspace size
// (attention_workspace_bytes) and the path info() reports (attention_path)
// all read it; no launcher decides anything by itself.
//
// Plain C++ (no CUDA): included by device code for tile_row0 / query_tiles, and
// compiled into a host-only check (test/native/attention_plan_check.cu) that
// runs without a GPU.
#pragma once
#include <cstddef>
#include <cstdint>
#include "common/prism_types.h"
#include "cuda/attention/attention_support.h"
#include "cuda/attention/attention_tuning.h"

namespace prism::cuda::attn {

// ---- query tiles ----------------------------------------------------------
// Query tiles of block_m rows lie on the token grid like the blocks: tile qt
// holds rows [qt * block_m - shift, (qt + 1) * block_m - shift) clipped to
// [0, nq), shift = (nk - nq) % block_m, so no tile straddles two query blocks
// (block_m divides the block) and the first tile of a chunk may be partial.
PRISM_HD inline int tile_row0(int qt, int nq, int nk, int block_m) {
  return qt * block_m - (nk - nq) % block_m;
}
// Number of such tiles: the only formula for n_mtiles (the plan calls it).
inline int32_t query_tiles(int64_t nq, int64_t nk, int block_m) {
  if (nq <= 0) return 0;
  return static_cast<int32_t>((nq + (nk - nq) % block_m + block_m - 1) / block_m);
}

// ---- kernel variants of the portable (sm80-mma) path -----------------------
// Names: warps, 16-row m-tiles per warp, key tile. BLOCK_M = warps * 16 * mtiles.
// default_variant() picks kW4M2N64 or kW4M1N64; the others are compiled only
// in PRISM_TUNING_VARIANTS builds (the harnesses time and check them).
enum Variant : int {
  kAuto = -1,
  kW4M2N64 = 0,   // BLOCK_M 128, BLOCK_N 64, 4 warps x 32 rows
  kW8M1N64 = 1,   // BLOCK_M 128, BLOCK_N 64, 8 warps x 16 rows (tuning builds)
  kW4M2N128 = 2,  // BLOCK_M 128, BLOCK_N 128, head_dim 64 only (tuning builds)
  kW4M1N64 = 3,   // BLOCK_M 64,  BLOCK_N 64 (any block size, required for 64)
  kW4M2N64U = 4,  // kW4M2N64, 32-key sub-steps unrolled, head_dim 128 only (tuning builds)
  kNumVariants = 5
};

const char* variant_name(int v);
int variant_block_m(int v);
int variant_block_n(int v);
// Whether variant v takes (head_dim, blk) and is compiled in this build.
bool variant_supported(int v, int head_dim, int blk);
int default_variant(int head_dim, int blk);

// The Hopper kernel's tiles (sm90/sm90_traits.cuh, Sm90Traits).
constexpr int kHopperBlockM = 128;
constexpr int kHopperBlockN = 128;

// ---- inputs ------------------------------------------------------------------
enum class Path : int {
  kNone = 0,      // no kernel for this device (compute capability below 8.0)
  kPortable = 1,  // "sm80-mma": mma.sync, cp.async (sm_80 and newer)
  kHopper = 2,    // "sm90-wgmma": wgmma + TMA, warp-specialized (sm_90a image, cc 9.0)
};
const char* path_name(Path p);  // "none", "sm80-mma", "sm90-wgmma" (info().attentionPath)

struct DeviceFacts {
  int major = 0, minor = 0;   // compute capability
  int sms = 0;                // multiprocessors
  bool hopper_image = false;  // this binary's sm_90a kernel image loads here, and the
                              // driver has the tensor-map encoder
};

// What the plan needs to know of a call (describe_call() fills it from the views).
struct PlanRequest {
  DType dtype = DType::BF16;
  int head_dim = 0;
  int block = 0;
  int64_t batch = 0, hq = 0, hkv = 0, nq = 0, nk = 0;
  bool sparse = false;         // a block list (else dense: every visible block)
  bool tma_ok = false;         // q, k and v can each be described by a TMA map (tma_describable)
  bool has_workspace = false;  // the launch gets attention_workspace_bytes() of workspace
  int variant = kAuto;         // a portable-path variant asked for by a harness, or kAuto
  bool paged = false;          // k and v are page pools (KvPages)
  int page_size = 0;           // paged: keys a page
};

// ---- paged K/V ----------------------------------------------------------------
// Pages of at least this many keys are read in place by the kernels; smaller
// ones are first gathered into the workspace (one copy of the sequence's K
// and V). On an H200, with the Hopper producer's boxes issued by several
// lanes at once, in place cost 1.38-1.40x packed at 16-key pages and
// 1.12-1.14x at 32, where the gather costs 1.05-1.10x; from 64 keys reading
// in place is as fast (1.04-1.06x) and needs no copy (docs/benchmarks.md).
// The same rule on every path, so the workspace does not depend on the device.
constexpr int kInPlaceMinPage = 64;
inline bool gathers_pages(int page_size) { return page_size < kInPlaceMinPage; }
// Bytes of one of the gathered K and V of a paged sequence (0 when its pages
// are read in place): the workspace's gather part is twice that, aligned.
inline size_t kv_gather_bytes(int page_size, int64_t hkv, int64_t nk, int64_t d, DType dtype) {
  return gathers_pages(page_size) ? static_cast<size_t>(hkv * nk * d * dtype_size(dtype)) : 0;
}

// ---- output ------------------------------------------------------------------
// Workspace: [counter | sparse work order | gathered K | gathered V]. It
// depends on the shape, the list being sparse and the pages, never on the
// device, the path, the variant or the tuning, so a workspace sized once fits
// every plan the same call can get.
constexpr size_t kCounterBytes = 256;  // int32 item counter of a persistent Hopper launch
struct WorkspaceLayout {
  size_t counter_offset = 0, counter_bytes = 0;
  size_t order_offset = 0, order_bytes = 0;    // int32 items, longest rows first (portable, sparse)
  size_t gather_offset = 0, gather_bytes = 0;  // small pages: K, then V at gather_offset + kv_bytes
  size_t kv_bytes = 0;                         // one of the two, 256-aligned
  size_t total = 0;
};
// kv_gather_bytes: the bytes of the sequence's K (or V) when its pages are
// gathered, else 0.
WorkspaceLayout workspace_layout(int64_t batch, int64_t hq, int64_t nq, bool sparse,
                                 size_t kv_gather_bytes = 0);

// The plan sorts windows by default from this many keys, where a kv head's
// K/V (512 bytes a key at d = 128: 128 MB at 256K keys) is at least twice the
// L2 (50-60 MB on Hopper). On an H200 the sort gained nothing beyond noise at
// 32K-256K and 6-9% at 512K-1M, and at 256K it costs nothing either.
constexpr int64_t kSortWindowMinKeys = 262144;

struct AttentionPlan {
  Path path = Path::kNone;
  const char* reason = "";  // why this path (one line, for readers and harness logs)
  int variant = kAuto;      // portable path: the kernel variant; Hopper: kAuto
  int block_m = 0, block_n = 0;
  int32_t n_mtiles = 0;       // query tiles per (batch, head): query_tiles(nq, nk, block_m)
  int64_t items = 0;          // batch * hq * n_mtiles work items
  bool persistent = false;    // Hopper: grid CTAs take items from the workspace counter
  int64_t grid = 0;           // CTAs launched (0: nothing to do)
  bool pingpong = false;      // Hopper consumer ping-pong (tuning builds only)
  int32_t sort_window = 0;    // Hopper persistent, sparse: > 0 orders each window of this many
                              // items longest list first (launch_order_windows) before the
                              // kernel
  bool sort_items = false;    // portable, sparse, workspace: order items longest first
                              // (launch_order_items) before the kernel
  bool gather_pages = false;  // paged with small pages: K and V gathered into the workspace
                              // first, then the kernel runs on them as plain views
  WorkspaceLayout workspace;
};

// ---- functions ----------------------------------------------------------------
// Checks a call's arguments (std::invalid_argument naming the problem) and
// reduces it to a PlanRequest. variant: kAuto, or a portable-path variant.
PlanRequest describe_call(const QkvView& q, const QkvView& k, const QkvView& v, const OutView& o,
                          const BlockList& list, const AttentionParams& ap, int variant,
                          bool has_workspace, const KvPages* pages = nullptr);

// Whether the TMA unit can describe a 16-bit [batch, heads, n, d] view as the
// Hopper kernel's 4-D map: 16-byte aligned base, every stride of an extent > 1
// positive, a multiple of 16 bytes and below 2^40 bytes, extents up to 2^32.
bool tma_describable(const QkvView& t);

// THE decision: which kernel runs for this call, and why; tiles, query tiles,
// scheduling, grid, workspace layout. Pure (no CUDA call); throws
// std::invalid_argument when the requested variant does not take the call or
// the call has too many query tiles.
AttentionPlan plan_attention(const PlanRequest& call, const DeviceFacts& device,
                             const AttentionTuning& tuning);

}  // namespace prism::cuda::attn

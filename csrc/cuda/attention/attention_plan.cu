// The attention plan (attention_plan.h): argument checks, the kernel variants'
// table, the tuning switches, and plan_attention(), the one function that
// decides how a call runs. Host code only; no CUDA call.
#include <cmath>
#include <cstdint>
#include <mutex>
#include <stdexcept>
#include <string>
#include "cuda/attention/attention_plan.h"

namespace prism::cuda::attn {

// ---- kernel variants --------------------------------------------------------

const char* variant_name(int v) {
  switch (v) {
    case kW4M2N64: return "w4m2n64";
    case kW8M1N64: return "w8m1n64";
    case kW4M2N128: return "w4m2n128";
    case kW4M1N64: return "w4m1n64";
    case kW4M2N64U: return "w4m2n64u";
    default: return "?";
  }
}
int variant_block_m(int v) { return v == kW4M1N64 ? 64 : 128; }
int variant_block_n(int v) { return v == kW4M2N128 ? 128 : 64; }

namespace {
// The variants default_variant() can return: the only ones in a release build.
bool default_kind(int v) { return v == kW4M2N64 || v == kW4M1N64; }
}  // namespace

bool variant_supported(int v, int head_dim, int blk) {
  if (v < 0 || v >= kNumVariants) return false;
  if (!PRISM_TUNING_BUILD && !default_kind(v)) return false;
  if (head_dim != 64 && head_dim != 128) return false;
  if (v == kW4M2N128 && head_dim != 64) return false;
  if (v == kW4M2N64U && head_dim != 128) return false;
  return blk % variant_block_m(v) == 0 && blk % variant_block_n(v) == 0;
}

int default_variant(int head_dim, int blk) {
  (void)head_dim;
  return blk < 128 ? kW4M1N64 : kW4M2N64;
}

const char* path_name(Path p) {
  switch (p) {
    case Path::kPortable: return "sm80-mma";
    case Path::kHopper: return "sm90-wgmma";
    default: return "none";
  }
}

// ---- tuning -------------------------------------------------------------------

namespace {
std::mutex g_tuning_mutex;
AttentionTuning g_tuning;  // guarded by g_tuning_mutex
}  // namespace

AttentionTuning attention_tuning() {
  std::lock_guard<std::mutex> lock(g_tuning_mutex);
  return g_tuning;
}

void set_attention_tuning(const AttentionTuning& t) {
  if (t.path != PathChoice::kAuto && t.path != PathChoice::kPortable)
    throw std::invalid_argument("attention tuning: path must be auto or portable");
  if (t.persistent < -1 || t.persistent > 1)
    throw std::invalid_argument("attention tuning: persistent must be -1, 0 or 1");
  if (t.max_ctas < 0) throw std::invalid_argument("attention tuning: max_ctas must be >= 0");
  if (t.sort_window < -1 || t.sort_window > kMaxSortWindow)
    throw std::invalid_argument("attention tuning: sort_window must be -1, 0 or at most " +
                                std::to_string(kMaxSortWindow));
  if (t.pingpong && !PRISM_TUNING_BUILD)
    throw std::invalid_argument(
        "attention tuning: pingpong is compiled only in PRISM_TUNING_VARIANTS builds (the native "
        "harnesses)");
  std::lock_guard<std::mutex> lock(g_tuning_mutex);
  g_tuning = t;
}

bool tuning_variants_compiled() { return PRISM_TUNING_BUILD != 0; }

// ---- argument checks ------------------------------------------------------------

namespace {

const char* dtype_name(DType t) {
  switch (t) {
    case DType::F32: return "f32";
    case DType::F16: return "f16";
    case DType::BF16: return "bf16";
    case DType::U8: return "u8";
    case DType::I32: return "i32";
    case DType::I64: return "i64";
  }
  return "unknown";
}

[[noreturn]] void bad(const std::string& what) {
  throw std::invalid_argument("prism::cuda::attention: " + what);
}

template <class View>
void check_view(const View& t, const char* name) {
  if (t.batch < 0 || t.heads < 0 || t.n < 0) bad(std::string(name) + ": negative extent");
  const uintptr_t ptr = reinterpret_cast<uintptr_t>(t.data);
  if (t.batch * t.heads * t.n > 0 && ptr == 0) bad(std::string(name) + ": null data pointer");
  if (ptr % 16 != 0) bad(std::string(name) + ": data pointer must be 16-byte aligned");
  if (t.stride_b % 8 || t.stride_h % 8 || t.stride_n % 8)
    bad(std::string(name) + ": strides must be multiples of 8 elements (16 bytes)");
  if (t.n > 0x3fffffff || t.heads > 0x7fffffff || t.batch > 0x7fffffff)
    bad(std::string(name) + ": extent too large");
}

// A sequence's page pools: one query batch, power-of-two pages (whole pages
// per key tile, or whole tiles per page), a last page id inside the pool.
void check_pages(const KvPages& pg, const QkvView& q, const QkvView& k) {
  if (pg.page_size < 16 || pg.page_size > 256 || (pg.page_size & (pg.page_size - 1)) != 0)
    bad("page size " + std::to_string(pg.page_size) + " (a power of two in 16..256)");
  if (k.n != pg.page_size) bad("paged k and v must be pools of page_size rows a page");
  if (q.batch != 1) bad("paged k and v take one sequence (q batch 1)");
  if (pg.tokens > 0x3fffffff) bad("paged keys: too many tokens");
  if (pg.tokens > 0 && pg.ids == nullptr) bad("paged keys: null page ids");
  if (pg.tokens > 0 && (pg.last_id < 0 || pg.last_id >= k.batch))
    bad("paged keys: last page id " + std::to_string(pg.last_id) + " outside the pool of " +
        std::to_string(k.batch) + " pages");
}

}  // namespace

PlanRequest describe_call(const QkvView& q, const QkvView& k, const QkvView& v, const OutView& o,
                          const BlockList& list, const AttentionParams& ap, int variant,
                          bool has_workspace, const KvPages* pages) {
  if (!contains(kSupportedDTypes, q.dtype))
    bad(std::string("unsupported dtype ") + dtype_name(q.dtype) + " (f16 or bf16)");
  if (k.dtype != q.dtype || v.dtype != q.dtype || o.dtype != q.dtype)
    bad(std::string("q, k, v and o must share one dtype (q is ") + dtype_name(q.dtype) + ", k " +
        dtype_name(k.dtype) + ", v " + dtype_name(v.dtype) + ", o " + dtype_name(o.dtype) + ")");
  if (!contains(kSupportedHeadDims, static_cast<int>(q.d)) || q.d != static_cast<int>(q.d))
    bad("unsupported head_dim " + std::to_string(q.d) + " (64 or 128)");
  if (k.d != q.d || v.d != q.d || o.d != q.d) bad("head_dim of q, k, v and o differ");
  if (!contains(kSupportedBlocks, static_cast<int>(ap.block)))
    bad("unsupported block size " + std::to_string(ap.block) + " (64, 128 or 256)");
  if (o.batch != q.batch || (pages == nullptr && (k.batch != q.batch || v.batch != q.batch)))
    bad("batch of q, k, v and o differ");
  if (k.heads != v.heads || k.n != v.n || (pages != nullptr && k.batch != v.batch))
    bad("k and v shapes differ");
  if (pages != nullptr) check_pages(*pages, q, k);
  const int64_t nk = pages != nullptr ? pages->tokens : k.n;
  if (o.heads != q.heads || o.n != q.n) bad("o shape differs from q");
  if (k.heads <= 0 && q.heads > 0) bad("k has no heads");
  if (k.heads > 0 && q.heads % k.heads != 0)
    bad("query heads (" + std::to_string(q.heads) + ") not a multiple of kv heads (" +
        std::to_string(k.heads) + ")");
  if (q.n > nk) bad("Nq > Nk (queries must be the last Nq of the Nk positions)");
  if ((list.counts == nullptr) != (list.indices == nullptr) ||
      (list.counts != nullptr && (list.row_start == nullptr) != list.triangular) ||
      (list.counts == nullptr && (list.row_start != nullptr || list.triangular)))
    bad("list.counts and list.indices must both be set or both be null, with row starts exactly "
        "when set and not triangular");
  if (o.lse_rows_overlap()) bad("lse rows must not overlap (lse_stride >= n)");
  if (!(ap.softmax_scale >= 0.f) || !std::isfinite(ap.softmax_scale))
    bad("softmax_scale must be finite and >= 0 (0 = 1/sqrt(d))");
  check_view(q, "q");
  check_view(k, "k");
  check_view(v, "v");
  check_view(o, "o");
  if (variant != kAuto && (variant < 0 || variant >= kNumVariants))
    bad("kernel variant " + std::to_string(variant) + " does not exist");

  PlanRequest r;
  r.dtype = q.dtype;
  r.head_dim = static_cast<int>(q.d);
  r.block = ap.block;
  r.batch = q.batch;
  r.hq = q.heads;
  r.hkv = k.heads;
  r.nq = q.n;
  r.nk = nk;
  r.paged = pages != nullptr;
  r.page_size = pages != nullptr ? pages->page_size : 0;
  if (r.paged && gathers_pages(r.page_size) && !has_workspace)
    bad("paged k and v with pages under " + std::to_string(kInPlaceMinPage) +
        " keys need the workspace (they are gathered there)");
  r.sparse = list.counts != nullptr;
  r.tma_ok = tma_describable(q) && tma_describable(k) && tma_describable(v);
  r.has_workspace = has_workspace;
  r.variant = variant;
  return r;
}

bool tma_describable(const QkvView& t) {
  if (dtype_size(t.dtype) != 2) return false;
  if (reinterpret_cast<uintptr_t>(t.data) % 16 != 0) return false;
  constexpr int64_t kMaxExtent = int64_t(1) << 32;
  constexpr int64_t kMaxStrideBytes = int64_t(1) << 40;
  // Strides of extent-1 dimensions are never used (the launcher encodes a
  // placeholder for them).
  auto dim_ok = [&](int64_t stride, int64_t extent) {
    if (extent > kMaxExtent) return false;
    if (extent <= 1) return true;
    return stride > 0 && stride < kMaxStrideBytes / 2 && (stride * 2) % 16 == 0;
  };
  return t.d > 0 && t.d <= kMaxExtent && dim_ok(t.stride_n, t.n) && dim_ok(t.stride_h, t.heads) &&
         dim_ok(t.stride_b, t.batch);
}

// ---- workspace --------------------------------------------------------------------

WorkspaceLayout workspace_layout(int64_t batch, int64_t hq, int64_t nq, bool sparse,
                                 size_t kv_gather_bytes) {
  WorkspaceLayout w;
  w.counter_offset = 0;
  w.counter_bytes = kCounterBytes;
  w.order_offset = kCounterBytes;
  if (sparse) {
    // Items of the smallest BLOCK_M of any variant (64), + 1 for a partial
    // first tile (query_tiles): the order fits every variant.
    const int64_t items = batch * hq * ((nq + 63) / 64 + 1);
    w.order_bytes = static_cast<size_t>(items) * sizeof(int32_t);
  }
  const size_t end = w.order_offset + w.order_bytes;
  w.gather_offset = (end + 255) / 256 * 256;
  w.kv_bytes = (kv_gather_bytes + 255) / 256 * 256;
  w.gather_bytes = 2 * w.kv_bytes;
  w.total = kv_gather_bytes > 0 ? w.gather_offset + w.gather_bytes : end;
  return w;
}

// ---- the plan -----------------------------------------------------------------------

AttentionPlan plan_attention(const PlanRequest& c, const DeviceFacts& dev,
                             const AttentionTuning& tuning) {
  AttentionPlan plan;
  plan.gather_pages = c.paged && gathers_pages(c.page_size);
  const size_t kv_gather =
      c.paged ? kv_gather_bytes(c.page_size, c.hkv, c.nk, c.head_dim, c.dtype) : 0;
  plan.workspace = workspace_layout(c.batch, c.hq, c.nq, c.sparse, kv_gather);

  // 1. Path: the Hopper kernel when every condition below holds, in this
  // order; otherwise the portable kernel, which takes every supported call on
  // sm_80 and newer.
  if (dev.major < 8) {
    plan.path = Path::kNone;
    plan.reason = "compute capability below 8.0: no attention kernel for this device";
    return plan;
  }
  plan.path = Path::kPortable;
  if (c.variant != kAuto)
    plan.reason = "a portable-path kernel variant was asked for";
  else if (tuning.path == PathChoice::kPortable)
    plan.reason = "the tuning forces the portable path";
  else if (dev.major != 9 || dev.minor != 0)
    plan.reason = "not a compute capability 9.0 device";
  else if (!dev.hopper_image)
    plan.reason = "this binary has no sm_90a image of the Hopper kernel (or no tensor-map encoder)";
  else if (!hopper_covers(c.head_dim, c.block))
    plan.reason = "head_dim / block outside the Hopper kernel (64 or 128 with 128 or 256)";
  else if (!c.tma_ok)
    plan.reason = "q, k or v has strides the TMA unit cannot describe";
  else {
    plan.path = Path::kHopper;
    plan.reason = "compute capability 9.0 with the sm_90a image, a covered configuration";
  }

  // 2. Tiles and query tiles.
  if (plan.path == Path::kHopper) {
    plan.variant = kAuto;
    plan.block_m = kHopperBlockM;
    plan.block_n = kHopperBlockN;
  } else {
    const int v = c.variant == kAuto ? default_variant(c.head_dim, c.block) : c.variant;
    if (!variant_supported(v, c.head_dim, c.block))
      throw std::invalid_argument(
          std::string("prism::cuda::attention: kernel variant ") + variant_name(v) +
          " does not support head_dim " + std::to_string(c.head_dim) + " with block " +
          std::to_string(c.block) +
          (PRISM_TUNING_BUILD || default_kind(v) ? ""
                                                 : " in this build (PRISM_TUNING_VARIANTS only)"));
    plan.variant = v;
    plan.block_m = variant_block_m(v);
    plan.block_n = variant_block_n(v);
  }
  plan.n_mtiles = query_tiles(c.nq, c.nk, plan.block_m);
  plan.items = c.batch * c.hq * plan.n_mtiles;
  if (plan.items > 0x7fffffff)
    throw std::invalid_argument("prism::cuda::attention: too many query tiles");
  if (plan.items <= 0) return plan;  // nothing to launch

  // 3. Scheduling.
  if (plan.path == Path::kPortable) {
    // One CTA per item; on sparse calls the items are ordered longest row
    // first when there is a workspace to hold the order (else the kernel
    // walks the query tiles in reverse).
    plan.grid = plan.items;
    plan.sort_items = c.sparse && c.has_workspace;
    return plan;
  }
  // Hopper. Persistent (one CTA per SM taking items from the workspace
  // counter) by default on block-sparse calls with more items than SMs (H100,
  // 20% sparse: 1-13% faster); dense calls keep one CTA per item (1-4% faster
  // at 32K-128K, where items are long and gain nothing from the overlap).
  const bool by_default = c.sparse && plan.items > dev.sms;
  const bool wanted = tuning.persistent == 1 || (tuning.persistent == -1 && by_default);
  const int64_t ctas = tuning.max_ctas > 0 && tuning.max_ctas < dev.sms ? tuning.max_ctas : dev.sms;
  // The work counter is an int that each CTA takes once past the last item.
  plan.persistent = wanted && c.has_workspace && dev.sms > 0 && plan.items <= 0x7fffffff - ctas;
  if (plan.persistent) {
    plan.grid = plan.items < ctas ? plan.items : ctas;
  } else {
    plan.grid = plan.items;
  }
  // Ping-pong: measured within noise of the default on H100 (d=128: dense
  // -1..2%, 20% sparse +1..-4%), so only a tuning switch; never persistent.
  plan.pingpong = PRISM_TUNING_BUILD && tuning.pingpong && !plan.persistent;
  // Window sort: the items of each window of one grid's worth (in the order
  // above) run longest list first. The CTAs that run together then hold
  // neighbouring query tiles with lists of about one length, which start and
  // end together and read their shared K/V tiles while L2 still holds them.
  // On an H200 at 512K (structured workload, 18.5% density) L2 hits rose from
  // 62% to 84%, DRAM reads fell from 1.02 TB to 344 GB and the SM clock under
  // the power cap from 1.37 to 1.45 GHz at the same cycle count: 6.5% faster,
  // 9.4% at 1M; within noise at 32K-256K, so only from kSortWindowMinKeys keys
  // on (benchmarks.md, "items sorted by list length in windows").
  if (plan.persistent && c.sparse) {
    const int64_t by_default = c.nk >= kSortWindowMinKeys ? plan.grid : 0;
    const int64_t w = tuning.sort_window >= 0 ? tuning.sort_window : by_default;
    plan.sort_window = static_cast<int32_t>(w < kMaxSortWindow ? w : kMaxSortWindow);
  }
  return plan;
}

}  // namespace prism::cuda::attn

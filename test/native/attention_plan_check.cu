// Host-only check of the attention plan (csrc/cuda/attention/attention_plan.h):
// the path choice and its reasons, tiles and query tiles, scheduling and grid,
// the TMA stride rules, the workspace layout, the tuning switches and the
// argument checks. No CUDA call: it runs on machines without a GPU (CI runs it
// wherever nvcc is present, scripts/native-harnesses.js).
//
//   attention_plan_check      all checks; exit status 1 on any failure
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <functional>
#include <stdexcept>
#include <string>

#include "cuda/attention/attention_plan.h"

using namespace prism;
using namespace prism::cuda::attn;

static int g_checks = 0, g_failures = 0;

#define EXPECT(cond)                                              \
  do {                                                            \
    ++g_checks;                                                   \
    if (!(cond)) {                                                \
      ++g_failures;                                               \
      std::printf("FAIL %s:%d: %s\n", __FILE__, __LINE__, #cond); \
    }                                                             \
  } while (0)

// Expects fn() to throw std::invalid_argument whose message contains `part`.
static void expect_invalid(const char* what, const std::function<void()>& fn, const char* part) {
  ++g_checks;
  try {
    fn();
  } catch (const std::invalid_argument& e) {
    if (std::strstr(e.what(), part) != nullptr) return;
    ++g_failures;
    std::printf("FAIL %s: message \"%s\" lacks \"%s\"\n", what, e.what(), part);
    return;
  }
  ++g_failures;
  std::printf("FAIL %s: no std::invalid_argument\n", what);
}

static DeviceFacts hopper(int sms = 132) { return DeviceFacts{9, 0, sms, true}; }
static DeviceFacts ampere() { return DeviceFacts{8, 0, 108, false}; }

static PlanRequest request(int d, int blk, int64_t nq, int64_t nk, bool sparse, int64_t batch = 1,
                           int64_t hq = 8, int64_t hkv = 2) {
  // dtype, head_dim, block, batch, hq, hkv, nq, nk, sparse, tma_ok, has_workspace
  return PlanRequest{DType::BF16, d, blk, batch, hq, hkv, nq, nk, sparse, true, true};
}

static AttentionTuning tuned(std::function<void(AttentionTuning&)> edit) {
  AttentionTuning t;
  edit(t);
  return t;
}

// Every query row lies in exactly one of the query_tiles() tiles of tile_row0().
static bool tiles_cover(int nq, int nk, int bm) {
  const int n = query_tiles(nq, nk, bm);
  std::string seen(static_cast<size_t>(nq), '\0');
  for (int qt = 0; qt < n; ++qt) {
    const int r0 = tile_row0(qt, nq, nk, bm);
    if (qt > 0 && r0 < 0) return false;  // only the first tile may start before row 0
    for (int r = r0 < 0 ? 0 : r0; r < r0 + bm && r < nq; ++r) {
      if (seen[r]) return false;
      seen[r] = 1;
    }
    // every tile starts on the token grid, so it never straddles a block that bm divides
    if (((nk - nq) + r0) % bm != 0) return false;
  }
  for (char c : seen)
    if (!c) return false;
  return true;
}

static void check_query_tiles() {
  EXPECT(query_tiles(0, 100, 128) == 0);
  EXPECT(query_tiles(1, 1, 128) == 1);
  EXPECT(query_tiles(128, 128, 128) == 1);
  EXPECT(query_tiles(129, 129, 128) == 2);
  EXPECT(query_tiles(100, 1000, 128) == 1);  // shift 1000-100 = 900 % 128 = 4: rows -4..123
  EXPECT(query_tiles(130, 300, 128) == 2);   // shift 170 % 128 = 42: 130 + 42 = 172 -> 2
  const int shapes[][2] = {{1, 1},     {77, 77},  {100, 1000}, {513, 2100},
                           {300, 556}, {1, 1000}, {4097, 4097}};
  for (auto& s : shapes)
    for (int bm : {64, 128}) EXPECT(tiles_cover(s[0], s[1], bm));
}

static void check_paths() {
  const AttentionTuning dflt;
  // Hopper: covered configurations take the wgmma kernel.
  for (int d : {64, 128})
    for (int blk : {128, 256}) {
      const AttentionPlan p = plan_attention(request(d, blk, 1000, 1000, false), hopper(), dflt);
      EXPECT(p.path == Path::kHopper);
      EXPECT(p.block_m == 128 && p.block_n == 128 && p.variant == kAuto);
    }
  // ... the others the portable kernel, with the reason.
  AttentionPlan p = plan_attention(request(128, 64, 1000, 1000, false), hopper(), dflt);
  EXPECT(p.path == Path::kPortable && p.variant == kW4M1N64 && p.block_m == 64);
  EXPECT(std::strstr(p.reason, "outside the Hopper kernel") != nullptr);
  PlanRequest r = request(128, 128, 1000, 1000, false);
  r.tma_ok = false;
  p = plan_attention(r, hopper(), dflt);
  EXPECT(p.path == Path::kPortable && std::strstr(p.reason, "TMA") != nullptr);
  r = request(128, 128, 1000, 1000, false);
  r.variant = kW4M2N64;
  EXPECT(plan_attention(r, hopper(), dflt).path == Path::kPortable);
  p = plan_attention(request(128, 128, 1000, 1000, false), hopper(),
                     tuned([](AttentionTuning& t) { t.path = PathChoice::kPortable; }));
  EXPECT(p.path == Path::kPortable && p.variant == kW4M2N64);
  EXPECT(std::strstr(p.reason, "tuning") != nullptr);
  DeviceFacts no_image = hopper();
  no_image.hopper_image = false;
  EXPECT(plan_attention(request(128, 128, 1000, 1000, false), no_image, dflt).path ==
         Path::kPortable);
  EXPECT(plan_attention(request(128, 128, 1000, 1000, false), ampere(), dflt).path ==
         Path::kPortable);
  EXPECT(plan_attention(request(128, 128, 1000, 1000, false), DeviceFacts{10, 0, 148, false}, dflt)
             .path == Path::kPortable);
  EXPECT(plan_attention(request(128, 128, 1000, 1000, false), DeviceFacts{9, 0, 132, false}, dflt)
             .path == Path::kPortable);
  EXPECT(plan_attention(request(128, 128, 1000, 1000, false), DeviceFacts{7, 5, 40, false}, dflt)
             .path == Path::kNone);
  EXPECT(std::strcmp(path_name(Path::kHopper), "sm90-wgmma") == 0);
  EXPECT(std::strcmp(path_name(Path::kPortable), "sm80-mma") == 0);
  EXPECT(std::strcmp(path_name(Path::kNone), "none") == 0);
  // default variants on the portable path
  EXPECT(plan_attention(request(64, 256, 1000, 1000, true), ampere(), dflt).variant == kW4M2N64);
  EXPECT(plan_attention(request(64, 64, 1000, 1000, true), ampere(), dflt).variant == kW4M1N64);
}

static void check_scheduling() {
  const AttentionTuning dflt;
  // Dense: one CTA per item, never persistent by default.
  AttentionPlan p =
      plan_attention(request(128, 128, 32768, 32768, false, 1, 32, 8), hopper(), dflt);
  EXPECT(p.path == Path::kHopper && !p.persistent);
  EXPECT(p.n_mtiles == 256 && p.items == 32 * 256 && p.grid == p.items);
  // Block-sparse with more items than SMs: persistent, one CTA per SM.
  p = plan_attention(request(128, 128, 32768, 32768, true, 1, 32, 8), hopper(), dflt);
  EXPECT(p.persistent && p.grid == 132 && p.items == 32 * 256);
  // Block-sparse with items <= SMs: one CTA per item.
  p = plan_attention(request(128, 128, 1000, 1000, true, 1, 8, 2), hopper(), dflt);
  EXPECT(p.items == 8 * 8 && !p.persistent && p.grid == 64);
  p = plan_attention(request(128, 128, 128 * 132, 128 * 132, true, 1, 1, 1), hopper(), dflt);
  EXPECT(p.items == 132 && !p.persistent);  // items == SMs: not more
  p = plan_attention(request(128, 128, 128 * 133, 128 * 133, true, 1, 1, 1), hopper(), dflt);
  EXPECT(p.items == 133 && p.persistent && p.grid == 132);
  // Items so many that the work counter (an int every CTA takes once past the
  // last item) would wrap: one CTA per item instead. 257 * 8355967 = 2^31 - 129.
  p = plan_attention(request(128, 128, 8355967 * 128, 8355967 * 128, true, 1, 257, 1), hopper(),
                     dflt);
  EXPECT(p.items == 257LL * 8355967 && !p.persistent && p.grid == p.items);
  p = plan_attention(request(128, 128, 8355967 * 128, 8355967 * 128, true, 1, 257, 1), hopper(),
                     tuned([](AttentionTuning& t) { t.max_ctas = 100; }));
  EXPECT(p.persistent && p.grid == 100);  // 2^31 - 129 + 100 fits
  // No workspace: never persistent.
  PlanRequest r = request(128, 128, 32768, 32768, true, 1, 32, 8);
  r.has_workspace = false;
  EXPECT(!plan_attention(r, hopper(), dflt).persistent);
  EXPECT(
      !plan_attention(r, hopper(), tuned([](AttentionTuning& t) { t.persistent = 1; })).persistent);
  // Forced on, capped: the GPU tests' setting.
  p = plan_attention(request(128, 128, 700, 1300, false, 2, 8, 2), hopper(),
                     tuned([](AttentionTuning& t) {
                       t.persistent = 1;
                       t.max_ctas = 3;
                     }));
  EXPECT(p.persistent && p.grid == 3 && p.items == 2 * 8 * 7);  // shift 600 % 128 = 88: 7 tiles
  // A cap above the SM count changes nothing.
  p = plan_attention(request(128, 128, 32768, 32768, true, 1, 32, 8), hopper(),
                     tuned([](AttentionTuning& t) { t.max_ctas = 1000; }));
  EXPECT(p.persistent && p.grid == 132);
  // Forced off.
  p = plan_attention(request(128, 128, 32768, 32768, true, 1, 32, 8), hopper(),
                     tuned([](AttentionTuning& t) { t.persistent = 0; }));
  EXPECT(!p.persistent && p.grid == p.items);
  // Few items with the cap: the grid never exceeds the items.
  p = plan_attention(request(128, 128, 100, 100, false, 1, 1, 1), hopper(),
                     tuned([](AttentionTuning& t) {
                       t.persistent = 1;
                       t.max_ctas = 3;
                     }));
  EXPECT(p.persistent && p.items == 1 && p.grid == 1);
  // Ping-pong: tuning builds only, never with persistence.
  p = plan_attention(request(128, 128, 1000, 1000, false), hopper(),
                     tuned([](AttentionTuning& t) { t.pingpong = true; }));
  EXPECT(p.pingpong == tuning_variants_compiled());
  p = plan_attention(request(128, 128, 32768, 32768, true, 1, 32, 8), hopper(),
                     tuned([](AttentionTuning& t) { t.pingpong = true; }));
  EXPECT(p.persistent && !p.pingpong);
  // Window sort: persistent block-sparse calls from kSortWindowMinKeys keys,
  // one window per grid; the tuning sets the window (0: never) where the call
  // is persistent and sparse, and nothing else.
  p = plan_attention(request(128, 128, 262144, 262144, true, 1, 32, 8), hopper(), dflt);
  EXPECT(p.persistent && p.grid == 132 && p.sort_window == 132);
  p = plan_attention(request(128, 128, 8192, 262144, true, 1, 32, 8), hopper(), dflt);
  EXPECT(p.persistent && p.sort_window == 132);  // a chunk over long keys
  p = plan_attention(request(128, 128, 262143, 262143, true, 1, 32, 8), hopper(), dflt);
  EXPECT(p.persistent && p.sort_window == 0);
  p = plan_attention(request(128, 128, 262144, 262144, false, 1, 32, 8), hopper(), dflt);
  EXPECT(!p.persistent && p.sort_window == 0);  // dense
  p = plan_attention(request(128, 128, 262144, 262144, true, 1, 32, 8), hopper(),
                     tuned([](AttentionTuning& t) { t.max_ctas = 100; }));
  EXPECT(p.grid == 100 && p.sort_window == 100);
  p = plan_attention(request(128, 128, 262144, 262144, true, 1, 32, 8), hopper(),
                     tuned([](AttentionTuning& t) { t.sort_window = 0; }));
  EXPECT(p.persistent && p.sort_window == 0);
  p = plan_attention(request(128, 128, 32768, 32768, true, 1, 32, 8), hopper(),
                     tuned([](AttentionTuning& t) { t.sort_window = 7; }));
  EXPECT(p.persistent && p.sort_window == 7);
  p = plan_attention(request(128, 128, 262144, 262144, true, 1, 32, 8), hopper(),
                     tuned([](AttentionTuning& t) {
                       t.persistent = 0;
                       t.sort_window = 7;
                     }));
  EXPECT(!p.persistent && p.sort_window == 0);
  p = plan_attention(request(128, 128, 700, 1300, false, 2, 8, 2), hopper(),
                     tuned([](AttentionTuning& t) {
                       t.persistent = 1;
                       t.sort_window = 7;
                     }));
  EXPECT(p.persistent && p.sort_window == 0);  // dense, forced persistent: no lists to sort
  EXPECT(plan_attention(request(128, 128, 262144, 262144, true), ampere(), dflt).sort_window == 0);
  // Portable path: sorted items on sparse calls with a workspace only.
  p = plan_attention(request(128, 128, 1000, 1000, true), ampere(), dflt);
  EXPECT(p.sort_items && !p.persistent && p.grid == p.items);
  EXPECT(!plan_attention(request(128, 128, 1000, 1000, false), ampere(), dflt).sort_items);
  r = request(128, 128, 1000, 1000, true);
  r.has_workspace = false;
  EXPECT(!plan_attention(r, ampere(), dflt).sort_items);
  // Nothing to do.
  p = plan_attention(request(128, 128, 0, 10, false), hopper(), dflt);
  EXPECT(p.items == 0 && p.grid == 0);
  // Too many query tiles.
  expect_invalid(
      "too many tiles",
      [] {
        plan_attention(request(128, 64, 1 << 29, 1 << 29, false, 1 << 10, 1 << 10, 1), ampere(),
                       {});
      },
      "too many query tiles");
}

static void check_workspace() {
  const WorkspaceLayout dense = workspace_layout(2, 8, 1000, false);
  EXPECT(dense.counter_offset == 0 && dense.counter_bytes == kCounterBytes);
  EXPECT(dense.order_bytes == 0 && dense.total == kCounterBytes);
  const WorkspaceLayout sparse = workspace_layout(2, 8, 1000, true);
  EXPECT(sparse.order_offset == kCounterBytes);
  EXPECT(sparse.order_bytes == size_t(2 * 8 * ((1000 + 63) / 64 + 1)) * 4);
  EXPECT(sparse.total == sparse.order_offset + sparse.order_bytes);
  // Every plan of a call, whatever the device and tuning, uses that layout,
  // and the order holds the items of any variant.
  const DeviceFacts devs[] = {hopper(), ampere(), DeviceFacts{9, 0, 132, false}};
  for (const DeviceFacts& dev : devs)
    for (int forced : {0, 1}) {
      AttentionTuning t;
      if (forced) t.path = PathChoice::kPortable;
      for (int blk : {64, 128, 256}) {
        const AttentionPlan p =
            plan_attention(request(128, blk, 1000, 1777, true, 2, 8, 2), dev, t);
        EXPECT(p.workspace.total == workspace_layout(2, 8, 1000, true).total);
        EXPECT(size_t(p.items) * 4 <= p.workspace.order_bytes);
      }
    }
  for (int var : {kW4M2N64, kW8M1N64, kW4M2N128, kW4M1N64, kW4M2N64U}) {
    if (!variant_supported(var, 64, 128) && !variant_supported(var, 128, 128)) continue;
    const int bm = variant_block_m(var);
    for (int nq : {1, 63, 64, 65, 1000, 4097})
      EXPECT(size_t(3) * 5 * query_tiles(nq, nq + 77, bm) * 4 <=
             workspace_layout(3, 5, nq, true).order_bytes);
  }
}

static void check_tma() {
  alignas(16) static uint16_t buf[64];
  QkvView v;
  v.data = buf;
  v.dtype = DType::BF16;
  v.batch = 2;
  v.heads = 8;
  v.n = 1000;
  v.d = 128;
  v.stride_b = 8 * 1000 * 128;
  v.stride_h = 1000 * 128;
  v.stride_n = 128;  // bhnd
  EXPECT(tma_describable(v));
  v.stride_b = 1000 * 8 * 128;
  v.stride_h = 128;
  v.stride_n = 8 * 128;  // bnhd
  EXPECT(tma_describable(v));
  QkvView w = v;
  w.stride_h = 0;  // broadcast heads
  EXPECT(!tma_describable(w));
  w = v;
  w.stride_n = -128;
  EXPECT(!tma_describable(w));
  w = v;
  w.stride_n = 136;  // 272 bytes: a multiple of 16
  EXPECT(tma_describable(w));
  w.stride_n = 132;  // 264 bytes: not
  EXPECT(!tma_describable(w));
  w = v;
  w.data = reinterpret_cast<const char*>(buf) + 8;
  EXPECT(!tma_describable(w));
  w = v;
  w.stride_b = int64_t(1) << 40;  // 2^41 bytes
  EXPECT(!tma_describable(w));
  w = v;
  w.batch = 1;
  w.stride_b = 0;  // extent 1: unused
  EXPECT(tma_describable(w));
  w = v;
  w.dtype = DType::F32;
  EXPECT(!tma_describable(w));
}

static void check_arguments() {
  alignas(16) static uint16_t buf[64];
  auto view = [](DType dt, int64_t d) {
    QkvView v;
    v.data = buf;
    v.dtype = dt;
    v.batch = 1;
    v.heads = 2;
    v.n = 4;
    v.d = d;
    v.stride_b = 2 * 4 * d;
    v.stride_h = 4 * d;
    v.stride_n = d;
    return v;
  };
  auto out = [](const QkvView& q) {
    OutView o;
    o.data = const_cast<void*>(q.data);
    o.dtype = q.dtype;
    o.batch = q.batch;
    o.heads = q.heads;
    o.n = q.n;
    o.d = q.d;
    o.stride_b = q.stride_b;
    o.stride_h = q.stride_h;
    o.stride_n = q.stride_n;
    return o;
  };
  AttentionParams ap;
  const QkvView q = view(DType::BF16, 128);
  const PlanRequest r = describe_call(q, q, q, out(q), BlockList{}, ap, kAuto, true);
  EXPECT(r.head_dim == 128 && r.block == 128 && r.tma_ok && !r.sparse && r.hq == 2 && r.nq == 4);
  const QkvView f = view(DType::F32, 128);
  expect_invalid(
      "f32", [&] { describe_call(f, f, f, out(f), BlockList{}, ap, kAuto, true); },
      "unsupported dtype f32");
  const QkvView odd = view(DType::BF16, 96);
  expect_invalid(
      "d96", [&] { describe_call(odd, odd, odd, out(odd), BlockList{}, ap, kAuto, true); },
      "unsupported head_dim 96");
  AttentionParams b96;
  b96.block = 96;
  expect_invalid(
      "block 96", [&] { describe_call(q, q, q, out(q), BlockList{}, b96, kAuto, true); },
      "unsupported block size 96");
  expect_invalid(
      "variant 9", [&] { describe_call(q, q, q, out(q), BlockList{}, ap, 9, true); },
      "does not exist");
  // Block lists: counts and indices together; row starts exactly when not
  // triangular (a triangular list's starts are computed where read).
  static const int32_t counts[1] = {1}, indices[1] = {0};
  static const int64_t starts[1] = {0};
  const BlockList csr{counts, starts, indices, 1, false};
  const BlockList tri{counts, nullptr, indices, 1, true};
  EXPECT(describe_call(q, q, q, out(q), csr, ap, kAuto, true).sparse);
  EXPECT(describe_call(q, q, q, out(q), tri, ap, kAuto, true).sparse);
  const BlockList bad_lists[] = {{counts, nullptr, indices, 1, false},
                                 {counts, starts, indices, 1, true},
                                 {counts, starts, nullptr, 1, false},
                                 {nullptr, nullptr, indices, 1, false},
                                 {nullptr, nullptr, nullptr, 0, true}};
  for (const BlockList& l : bad_lists)
    expect_invalid(
        "block list", [&] { describe_call(q, q, q, out(q), l, ap, kAuto, true); },
        "list.counts and list.indices");
  // LSE rows: contiguous (stride 0 or n) or further apart, never overlapping.
  OutView wide = out(q);
  wide.lse_stride = q.n + 5;
  EXPECT(!describe_call(q, q, q, wide, BlockList{}, ap, kAuto, true).sparse);
  OutView tight = out(q);
  tight.lse_stride = q.n - 1;
  expect_invalid(
      "lse stride", [&] { describe_call(q, q, q, tight, BlockList{}, ap, kAuto, true); },
      "lse rows must not overlap");
  // Paged K/V: pools of page_size rows (here 3 pages of 16), one sequence.
  QkvView pool = q;
  pool.batch = 3;
  pool.n = 16;
  pool.stride_b = 2 * 16 * 128;
  pool.stride_h = 16 * 128;
  static const int32_t ids[2] = {2, 0};
  KvPages pg;
  pg.ids = ids;
  pg.tokens = 20;
  pg.page_size = 16;
  pg.last_id = 0;
  const PlanRequest paged = describe_call(q, pool, pool, out(q), BlockList{}, ap, kAuto, true, &pg);
  EXPECT(paged.paged && paged.nk == 20 && paged.nq == 4 && paged.tma_ok);
  EXPECT(!r.paged);
  auto paged_invalid = [&](const char* name, KvPages bad, QkvView kq, QkvView qq,
                           const char* what) {
    expect_invalid(
        name, [&] { describe_call(qq, kq, kq, out(qq), BlockList{}, ap, kAuto, true, &bad); },
        what);
  };
  KvPages bad = pg;
  bad.page_size = 24;
  paged_invalid("page 24", bad, pool, q, "page size 24");
  bad.page_size = 512;
  paged_invalid("page 512", bad, pool, q, "page size 512");
  bad = pg;
  bad.page_size = 32;  // the pools hold 16 rows a page
  paged_invalid("page rows", bad, pool, q, "pools of page_size rows");
  bad = pg;
  bad.last_id = 3;
  paged_invalid("last id", bad, pool, q, "last page id 3 outside the pool of 3 pages");
  bad.last_id = -1;
  paged_invalid("last id -1", bad, pool, q, "last page id -1");
  bad = pg;
  bad.ids = nullptr;
  paged_invalid("null ids", bad, pool, q, "null page ids");
  bad = pg;
  bad.tokens = 3;  // fewer keys than the 4 queries
  paged_invalid("tokens", bad, pool, q, "Nq > Nk");
  QkvView two = q;
  two.batch = 2;
  paged_invalid("batch 2", pg, pool, two, "one sequence");
  // Pages under 64 keys are gathered into the workspace (K, then V), larger
  // ones read in place; the workspace size never depends on the device.
  const AttentionPlan gathered = plan_attention(paged, hopper(), {});
  const size_t kv = 2 * 20 * 128 * 2;  // 2 kv heads x 20 keys x d 128, bf16
  EXPECT(gathered.gather_pages && gathered.workspace.kv_bytes == kv &&
         gathered.workspace.gather_offset % 256 == 0 &&
         gathered.workspace.gather_offset >= kCounterBytes &&
         gathered.workspace.total == gathered.workspace.gather_offset + 2 * kv);
  EXPECT(plan_attention(paged, ampere(), {}).workspace.total == gathered.workspace.total);
  expect_invalid(
      "gather without workspace",
      [&] { describe_call(q, pool, pool, out(q), BlockList{}, ap, kAuto, false, &pg); },
      "need the workspace");
  // The smallest page of each side of the rule: 32 keys gathered, 64 in place.
  for (const int ps : {32, 64, 128}) {
    QkvView big = pool;
    big.n = ps;
    big.stride_b = 2 * ps * 128;
    big.stride_h = ps * 128;
    KvPages pgs = pg;
    pgs.page_size = ps;
    const PlanRequest req = describe_call(q, big, big, out(q), BlockList{}, ap, kAuto, true, &pgs);
    const AttentionPlan plan = plan_attention(req, hopper(), {});
    if (ps < 64) {
      EXPECT(plan.gather_pages && plan.workspace.kv_bytes == kv &&
             plan.workspace.gather_bytes == 2 * kv);
    } else {
      EXPECT(!plan.gather_pages && plan.path == Path::kHopper && plan.workspace.gather_bytes == 0 &&
             plan.workspace.total == workspace_layout(1, 2, 4, false).total);
      const PlanRequest bare =
          describe_call(q, big, big, out(q), BlockList{}, ap, kAuto, false, &pgs);
      EXPECT(!plan_attention(bare, hopper(), {}).gather_pages);  // no workspace needed
    }
  }
  // The support table agrees with the checks.
  EXPECT(attention_unsupported(DType::BF16, 128, 128) == Unsupported::kNone);
  EXPECT(attention_unsupported(DType::F32, 96, 16) == Unsupported::kHeadDim);
  EXPECT(attention_unsupported(DType::F32, 64, 16) == Unsupported::kDType);
  EXPECT(attention_unsupported(DType::F16, 64, 16) == Unsupported::kBlock);
  // A variant that does not take the call.
  PlanRequest pr = request(128, 128, 100, 100, false);
  pr.variant = kW4M2N128;  // head_dim 64 only
  expect_invalid(
      "w4m2n128 d128", [&] { plan_attention(pr, ampere(), {}); }, "does not support");
  pr.variant = kW8M1N64;
  if (tuning_variants_compiled())
    EXPECT(plan_attention(pr, ampere(), {}).variant == kW8M1N64);
  else
    expect_invalid(
        "w8m1n64 release", [&] { plan_attention(pr, ampere(), {}); }, "PRISM_TUNING_VARIANTS");
}

static void check_tuning() {
  const AttentionTuning dflt = attention_tuning();
  EXPECT(dflt.path == PathChoice::kAuto && dflt.persistent == -1 && dflt.max_ctas == 0 &&
         !dflt.pingpong && dflt.sort_window == -1);
  AttentionTuning t;
  t.persistent = 1;
  t.max_ctas = 3;
  set_attention_tuning(t);
  EXPECT(attention_tuning().persistent == 1 && attention_tuning().max_ctas == 3);
  expect_invalid(
      "persistent 2",
      [] { set_attention_tuning(tuned([](AttentionTuning& x) { x.persistent = 2; })); },
      "persistent");
  expect_invalid(
      "max_ctas -1",
      [] { set_attention_tuning(tuned([](AttentionTuning& x) { x.max_ctas = -1; })); }, "max_ctas");
  expect_invalid(
      "sort_window 2049",
      [] { set_attention_tuning(tuned([](AttentionTuning& x) { x.sort_window = 2049; })); },
      "sort_window");
  expect_invalid(
      "sort_window -2",
      [] { set_attention_tuning(tuned([](AttentionTuning& x) { x.sort_window = -2; })); },
      "sort_window");
  EXPECT(attention_tuning().persistent == 1);  // a refused value changes nothing
  if (!tuning_variants_compiled())
    expect_invalid(
        "pingpong",
        [] { set_attention_tuning(tuned([](AttentionTuning& x) { x.pingpong = true; })); },
        "PRISM_TUNING_VARIANTS");
  set_attention_tuning(AttentionTuning{});
  EXPECT(attention_tuning().persistent == -1 && attention_tuning().max_ctas == 0);
}

int main() {
  check_query_tiles();
  check_paths();
  check_scheduling();
  check_workspace();
  check_tma();
  check_arguments();
  check_tuning();
  std::printf("attention plan: %d failure(s) in %d check(s) (tuning variants %s)\n", g_failures,
              g_checks, tuning_variants_compiled() ? "compiled" : "not compiled");
  return g_failures ? 1 : 0;
}

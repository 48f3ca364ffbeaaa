// Standalone check and timing of the sm_90a (wgmma + TMA) attention path,
// reached through prism::cuda::attention's automatic dispatch (head_dim 64/128,
// blocks 128/256 on a compute capability 9.0 device), compared with the
// portable sm80-mma path (PRISM_ATTENTION_PATH=sm80, set by this program).
//
//   attention_sm90_check           correctness sweep, then timings
//   attention_sm90_check --small   small dense + sparse cases (for compute-sanitizer)
//   attention_sm90_check --check   correctness sweep only
//   attention_sm90_check --time    timings only
//   attention_sm90_check --quick   timings at 8K and 32K only
//
// Inputs are random (never zeros), drawn on the device; the output is poisoned
// with NaN bits before every run and checked to be fully written; results are
// compared with a float64 host reference computed from the quantized inputs
// (all rows for small shapes, a random sample of rows for large ones).
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "cuda/attention/sm90/attention_sm90.h"
#include "attention_harness.cuh"

static bool g_sm90 = false;  // the device runs the sm90 path

static void set_path(bool sm80) {
  if (sm80) setenv("PRISM_ATTENTION_PATH", "sm80", 1);
  else unsetenv("PRISM_ATTENTION_PATH");
}
static const char* path_of(const Case& c) {
  const char* e = std::getenv("PRISM_ATTENTION_PATH");
  const bool forced = e && !std::strcmp(e, "sm80");
  if (c.variant == cuda::attn::kAuto && g_sm90 && !forced &&
      cuda::attn::sm90::config_supported(int(c.D), c.blk))
    return "sm90";
  return "sm80";
}

// The path that ran, for the log.
static void run_path_case(const Case& c, uint64_t seed) { run_case(c, seed, path_of(c)); }

static void check_sweep() {
  struct Shape { int64_t Nq, Nk; };
  const Shape shapes[] = {{1, 1},      {77, 77},     {129, 129},  {1000, 1000}, {4097, 4097},
                          {100, 1000}, {1, 1000},    {513, 2100}, {300, 556},   {200, 333},
                          {128, 128},  {256, 384},   {640, 1000}, {2048, 2048}};
  const int blks[] = {128, 256, 128, 256, 64};
  const int gq[][2] = {{4, 4}, {8, 2}, {8, 1}};  // Hq, Hkv: GQA 1, 4, 8
  uint64_t seed = 1;
  int idx = 0;
  for (int dtype = 0; dtype < 2; ++dtype)
    for (int D : {64, 128})
      for (const Shape& s : shapes)
        for (int sparse = 0; sparse < 2; ++sparse) {
          ++idx;
          Case c;
          c.B = (idx % 3 == 0) ? 2 : 1;
          c.Hq = gq[idx % 3][0];
          c.Hkv = gq[idx % 3][1];
          c.Nq = s.Nq; c.Nk = s.Nk; c.D = D;
          c.bf16 = dtype == 0;
          c.bnhd = (idx / 2) % 2 == 1;
          c.sparse = sparse == 1;
          c.blk = blks[(idx + idx / 5) % 5];
          c.scale = (idx % 7 == 0) ? 0.05f : 0.f;
          c.rows_per_head = (s.Nq * c.Hq * c.B > 20000) ? 48 : 0;
          c.variant = cuda::attn::kAuto;
          run_path_case(c, seed++);
        }
}

static void check_small() {
  // small shapes for compute-sanitizer: dense + sparse, both block sizes, both head dims
  Case c{1, 4, 2, 200, 300, 128, true, false, false, 128, 0.f, cuda::attn::kAuto, 0};
  run_path_case(c, 11);
  c.sparse = true;
  run_path_case(c, 12);
  c.blk = 256; c.D = 64; c.bf16 = false; c.bnhd = true;
  run_path_case(c, 13);
  c.sparse = false;
  c.Nq = 300;
  run_path_case(c, 14);
}

// ------------------------------------------------------------------ timing
static bool g_sm90_only = false;
static bool g_quick = false, g_quick_sm90_only = false, g_skip_sm80_long = false;

static void timing() {
  struct TCase { int64_t N; int64_t D; };
  std::vector<TCase> tc = {{8192, 128}, {32768, 128}, {131072, 128}, {32768, 64}};
  if (g_quick) tc = {{8192, 128}, {32768, 128}};
  const int64_t Hq = 32, Hkv = 8, B = 1;
  const int blk = 128;
  std::printf("\n== timing: B=1 Hq=32 Hkv=8 bf16 bhnd blk=128, causal; median of >=10 after warm-up\n");
  std::vector<std::string> summary;
  for (const TCase& t : tc) {
    const bool save_quick = g_quick_sm90_only;
    if (t.N >= 131072) g_quick_sm90_only = g_skip_sm80_long;
    const int64_t N = t.N, D = t.D;
    Tensor4 q, k, v, o;
    q.alloc(B, Hq, N, D, false);
    k.alloc(B, Hkv, N, D, false);
    v.alloc(B, Hkv, N, D, false);
    o.alloc(B, Hq, N, D, false);
    fill(q, 101 + N, 1.5f, true);
    fill(k, 202 + N, 1.0f, true);
    fill(v, 303 + N, 1.0f, true);
    // ~20% structured list: sink + diagonal + local window 2 + random far blocks
    const int64_t nb = num_blocks(N, blk);
    double fixed = 0, far = 0, vis_tot = 0;
    for (int64_t i = 0; i < nb; ++i) {
      const int64_t vis = i + 1;
      const int64_t f = std::min<int64_t>(vis, std::min<int64_t>(i, 1) + 1 + std::min<int64_t>(2, std::max<int64_t>(i - 1, 0)));
      fixed += f; far += vis - f; vis_tot += vis;
    }
    const double p_far = std::clamp((0.20 * vis_tot - fixed) / std::max(far, 1.0), 0.0, 1.0);
    HostList L = make_list(B, Hq, N, N, blk, 1, p_far, 2, 999 + N);
    DevList dl;
    dl.upload(L);
    BlockList sl;
    sl.counts = dl.counts;
    sl.indices = dl.indices;
    const double density = double(L.selected) / double(L.visible);
    AttentionParams ap;
    ap.block = blk;
    const size_t ws_bytes = cuda::attention_workspace_bytes(q.qkv(DType::BF16), k.qkv(DType::BF16), sl, ap);
    void* ws = nullptr;
    CK(cudaMalloc(&ws, ws_bytes));
    const double flops = 4.0 * double(N) * double(N) * double(D) * double(Hq) / 2.0;
    const int iters = N >= 131072 ? 10 : 20;
    for (int pi = 0; pi < 2; ++pi) {
      const int path = 1 - pi;  // sm80 first: the spot check below reads the sm90 output
      if (path == 0 && !g_sm90) continue;
      if (path == 1 && (g_quick_sm90_only || g_sm90_only)) continue;
      set_path(path == 1);
      const int var = cuda::attn::kAuto;
      poison(o);
      const float dms = time_op(q, k, v, o, BlockList{}, blk, nullptr, var, true, iters);
      const unsigned long long bad_d = count_bad(o, true);
      poison(o);
      const float sms = time_op(q, k, v, o, sl, blk, ws, var, true, iters);
      const unsigned long long bad_s = count_bad(o, true);
      char line[512];
      std::snprintf(line, sizeof line,
                    "N=%-6lld d=%-3lld %-9s dense %9.3f ms %6.1f TFLOP/s | sparse %.1f%% %9.3f ms "
                    "ratio %.3f (%.1f TFLOP/s on selected)%s",
                    (long long)N, (long long)D, path == 0 ? "sm90" : "sm80", dms, flops / dms * 1e-9,
                    100 * density, sms, sms / dms, flops * density / sms * 1e-9,
                    (bad_d || bad_s) ? " NONFINITE!" : "");
      std::printf("%s\n", line);
      std::fflush(stdout);
      summary.push_back(line);
      if (bad_d || bad_s) ++g_failures;
    }
    // Spot check of the timed output (sparse, last path run) against the reference.
    {
      std::vector<RowId> rows;
      std::mt19937_64 rng(N);
      for (int64_t h = 0; h < Hq; h += 5) {
        rows.push_back({0, h, N - 1});
        rows.push_back({0, h, static_cast<int64_t>(rng() % N)});
      }
      const std::vector<uint16_t> hk = to_host(k), hv = to_host(v);
      ErrAcc acc = reference_compare(rows, q, k, v, o, hk, hv, &L, blk, 1.0 / std::sqrt(double(D)), true);
      const double rel = std::sqrt(acc.e2 / acc.r2);
      std::printf("N=%lld d=%lld sparse spot check: rel %.2e over %zu rows %s\n", (long long)N,
                  (long long)D, rel, rows.size(), rel <= 1e-2 ? "ok" : "FAIL");
      if (!(rel <= 1e-2)) ++g_failures;
    }
    CK(cudaFree(ws));
    dl.release();
    q.release(); k.release(); v.release(); o.release();
    g_quick_sm90_only = save_quick;
    set_path(false);
  }
  std::printf("\n== timing summary\n");
  for (auto& s : summary) std::printf("%s\n", s.c_str());
}

int main(int argc, char** argv) {
  bool small = false, check = true, time = true;
  for (int a = 1; a < argc; ++a) {
    if (!std::strcmp(argv[a], "--small")) small = true;
    else if (!std::strcmp(argv[a], "--check")) time = false;
    else if (!std::strcmp(argv[a], "--time")) check = false;
    else if (!std::strcmp(argv[a], "--quick")) { check = false; g_quick = true; }
    else if (!std::strcmp(argv[a], "--no-sm80-128k")) g_skip_sm80_long = true;
    else if (!std::strcmp(argv[a], "--sm90-only")) g_sm90_only = true;
  }
  int dev = 0;
  CK(cudaSetDevice(dev));
  cudaDeviceProp prop;
  CK(cudaGetDeviceProperties(&prop, dev));
  g_sm90 = !std::strcmp(cuda::attention_path(dev), "sm90-wgmma");
  std::printf("device: %s (sm_%d%d, %d SMs), attention path: %s, compiled: %s\n", prop.name,
              prop.major, prop.minor, prop.multiProcessorCount, cuda::attention_path(dev),
#ifdef PRISM_CUDA_ARCH_LIST
              PRISM_CUDA_ARCH_LIST
#else
              "?"
#endif
  );
  // argument checks throw std::invalid_argument
  {
    Tensor4 q;
    q.alloc(1, 1, 8, 96, false);
    bool threw = false;
    try {
      AttentionParams ap;
      (void)cuda::attention(q.qkv(DType::BF16), q.qkv(DType::BF16), q.qkv(DType::BF16),
                            q.out(DType::BF16), BlockList{}, ap, nullptr, 0);
    } catch (const std::invalid_argument& e) {
      threw = true;
      std::printf("invalid head_dim -> std::invalid_argument: %s\n", e.what());
    }
    try {
      Tensor4 r; r.alloc(1, 1, 8, 64, false);
      AttentionParams ap; ap.block = 96;
      (void)cuda::attention(r.qkv(DType::BF16), r.qkv(DType::BF16), r.qkv(DType::BF16),
                            r.out(DType::BF16), BlockList{}, ap, nullptr, 0);
      threw = false;
      r.release();
    } catch (const std::invalid_argument& e) {
      std::printf("invalid block -> std::invalid_argument: %s\n", e.what());
    }
    if (!threw) { std::printf("FAIL: argument checks\n"); ++g_failures; }
    q.release();
  }
  if (small) {
    check_small();
  } else {
    if (check) check_sweep();
    if (time) timing();
  }
  std::printf("\n%d failure(s) in %d checked case(s)\n", g_failures, g_cases);
  return g_failures ? 1 : 0;
}

// Standalone check and timing of the sm_90a (wgmma + TMA) attention path,
// reached through prism::cuda::attention's plan (head_dim 64/128, blocks
// 128/256 on a compute capability 9.0 device), compared with the portable
// sm80-mma path (the tuning's path switch, set by this program).
//
//   attention_sm90_check           correctness sweep, then timings
//   attention_sm90_check --small   small dense + sparse cases (for compute-sanitizer)
//   attention_sm90_check --check   correctness sweep only
//   attention_sm90_check --time    timings only
//   attention_sm90_check --quick   timings at 8K and 32K only
// Tuning for the whole run (AttentionTuning; the plan's defaults otherwise):
//   --persistent=0|1   Hopper scheduling never / always persistent
//   --ctas=N           cap the persistent grid at N CTAs
//   --pingpong         consumer ping-pong (this build has PRISM_TUNING_VARIANTS)
//   --hash             every case writes the LSE too and logs a hash of O and LSE
//                      (and the timings a hash of each timed output), to compare builds
//   --no-reference     skip the float64 host reference of the checked cases
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

#include "attention_harness.cuh"
#include "attention_timing.cuh"
#include "cuda/attention/attention_plan.h"

static bool g_sm90 = false;  // the device runs the sm90 path

// The tuning every case starts from (command-line flags; defaults otherwise).
static cuda::attn::AttentionTuning g_base_tuning;

// sm80: the portable kernel for every call (the tuning's path switch).
static void set_path(bool sm80) {
  cuda::attn::AttentionTuning t = g_base_tuning;
  t.path = sm80 ? cuda::attn::PathChoice::kPortable : cuda::attn::PathChoice::kAuto;
  cuda::attn::set_attention_tuning(t);
}

// The path the plan picks for this case on this device, under the current tuning.
static const char* path_of(const Case& c) {
  cuda::attn::DeviceFacts facts;
  CK(cuda::attn::current_device_facts(&facts));
  cuda::attn::PlanRequest r;
  r.dtype = c.bf16 ? DType::BF16 : DType::F16;
  r.head_dim = int(c.D);
  r.block = c.blk;
  r.batch = c.B;
  r.hq = c.Hq;
  r.hkv = c.Hkv;
  r.nq = c.Nq;
  r.nk = c.Nk;
  r.sparse = c.sparse;
  r.tma_ok = true;  // the harness's tensors are contiguous bhnd / bnhd
  r.has_workspace = true;
  r.variant = c.variant;
  const cuda::attn::AttentionPlan plan =
      cuda::attn::plan_attention(r, facts, cuda::attn::attention_tuning());
  if (plan.path != cuda::attn::Path::kHopper) return "sm80";
  return plan.persistent ? "sm90p" : "sm90";
}

// The path that ran, for the log.
static void run_path_case(const Case& c, uint64_t seed) { run_case(c, seed, path_of(c)); }

// Runs `c` under the base tuning changed by `edit`, then restores the base.
static void run_tuned_case(const Case& c, uint64_t seed, void (*edit)(cuda::attn::AttentionTuning&),
                           const char* what) {
  cuda::attn::AttentionTuning t = g_base_tuning;
  edit(t);
  cuda::attn::set_attention_tuning(t);
  std::string label = std::string(path_of(c)) + "/" + what;
  run_case(c, seed, label.c_str());
  cuda::attn::set_attention_tuning(g_base_tuning);
}
// Persistent on any call with 3 CTAs: each CTA runs several items and carries
// its K/V ring across them, on small shapes too (dense included).
static void persistent3(cuda::attn::AttentionTuning& t) {
  t.persistent = 1;
  t.max_ctas = 3;
}
static void pingpong(cuda::attn::AttentionTuning& t) {
  t.persistent = 0;
  t.pingpong = true;
}

// The scheduling switches on a few shapes (each shape dense and sparse).
static void check_tuned(uint64_t seed) {
  if (!g_sm90) return;
  const bool pp = cuda::attn::tuning_variants_compiled();
  const Case base{2, 8, 2, 700, 1300, 128, true, true, false, 128, 0.f, cuda::attn::kAuto, 0};
  for (int s = 0; s < 2; ++s) {
    Case c = base;
    c.sparse = s == 1;
    run_tuned_case(c, seed++, persistent3, "pers3");
    if (pp) run_tuned_case(c, seed++, pingpong, "pingpong");
    c.blk = 256;
    c.D = 64;
    c.bf16 = false;
    c.bnhd = false;
    run_tuned_case(c, seed++, persistent3, "pers3");
    if (pp) run_tuned_case(c, seed++, pingpong, "pingpong");
  }
}

static void check_sweep() {
  uint64_t seed = 1;
  // the common shapes, then whole tiles of 128 and 64 rows
  std::vector<SweepShape> shapes = kSweepShapes;
  shapes.insert(shapes.end(), {{128, 128}, {256, 384}, {640, 1000}, {2048, 2048}});
  for_each_sweep_case(shapes, {128, 256, 128, 256, 64}, [&](Case& c) { run_path_case(c, seed++); });
  check_tuned(seed);
}

static void check_small() {
  // small shapes for compute-sanitizer: dense + sparse, both block sizes, both head dims
  Case c = run_small_cases(
      256, [](Case& c) { c.Nq = 300; }, run_path_case);
  if (g_sm90) {
    c.sparse = true;
    run_tuned_case(c, 15, persistent3, "pers3");
    if (cuda::attn::tuning_variants_compiled()) run_tuned_case(c, 16, pingpong, "pingpong");
  }
}

// ------------------------------------------------------------------ timing
static bool g_sm90_only = false;
static bool g_quick = false, g_skip_sm80_long = false;

static void timing() {
  std::vector<TimingShape> shapes = {{8192, 128}, {32768, 128}, {131072, 128}, {32768, 64}};
  if (g_quick) shapes = {{8192, 128}, {32768, 128}};
  timing_sweep(shapes, [](int64_t N, int64_t) {
    // sm80 first: the spot check reads the output of the last kernel, sm90
    std::vector<TimedKernel> ks;
    const bool skip_sm80 = g_sm90_only || (N >= 131072 && g_skip_sm80_long);
    if (!skip_sm80) ks.push_back({"sm80", cuda::attn::kAuto, [] { set_path(true); }});
    if (g_sm90) ks.push_back({"sm90", cuda::attn::kAuto, [] { set_path(false); }});
    return ks;
  });
  set_path(false);
}

int main(int argc, char** argv) {
  HarnessFlags flags;
  for (int a = 1; a < argc; ++a) {
    if (flags.parse(argv[a]))
      continue;
    else if (!std::strcmp(argv[a], "--quick")) {
      flags.check = false;
      g_quick = true;
    } else if (!std::strcmp(argv[a], "--no-sm80-128k"))
      g_skip_sm80_long = true;
    else if (!std::strcmp(argv[a], "--sm90-only"))
      g_sm90_only = true;
    else if (!std::strncmp(argv[a], "--persistent=", 13))
      g_base_tuning.persistent = std::atoi(argv[a] + 13);
    else if (!std::strncmp(argv[a], "--ctas=", 7))
      g_base_tuning.max_ctas = std::atoi(argv[a] + 7);
    else if (!std::strcmp(argv[a], "--pingpong"))
      g_base_tuning.pingpong = true;
    else {
      std::fprintf(stderr, "unknown argument %s\n", argv[a]);
      return 2;
    }
  }
  cuda::attn::set_attention_tuning(g_base_tuning);  // throws for out-of-range values
  std::printf("tuning: persistent %d, max ctas %d, pingpong %d\n", g_base_tuning.persistent,
              g_base_tuning.max_ctas, int(g_base_tuning.pingpong));
  int dev = 0;
  CK(cudaSetDevice(dev));
  g_sm90 = !std::strcmp(cuda::attention_path(dev), "sm90-wgmma");
  return run_harness(dev, flags, check_small, check_sweep, timing);
}

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
  uint64_t seed = 1;
  for_each_sweep_case(
      {{1, 1}, {77, 77}, {129, 129}, {1000, 1000}, {4097, 4097}, {100, 1000}, {1, 1000},
       {513, 2100}, {300, 556}, {200, 333}, {128, 128}, {256, 384}, {640, 1000}, {2048, 2048}},
      {128, 256, 128, 256, 64}, [&](Case& c) { run_path_case(c, seed++); });
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
  g_sm90 = !std::strcmp(cuda::attention_path(dev), "sm90-wgmma");
  print_device(dev);
  check_argument_errors();
  if (small) {
    check_small();
  } else {
    if (check) check_sweep();
    if (time) timing();
  }
  std::printf("\n%d failure(s) in %d checked case(s)\n", g_failures, g_cases);
  return g_failures ? 1 : 0;
}

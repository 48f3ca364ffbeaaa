// Standalone check and timing of prism::cuda::attention on the portable
// sm80-mma path (forced through the tuning on every device), each variant; the
// variants default_variant() never picks exist in PRISM_TUNING_VARIANTS builds
// only (test/native/build.sh, -DPRISM_NATIVE_HARNESSES=ON).
//
//   attention_check           correctness sweep, then timings
//   attention_check --small   one small dense + sparse case (for compute-sanitizer)
//   attention_check --check   correctness sweep only
//   attention_check --time    timings only
//   --hash                    every case writes the LSE too and logs a hash of O and LSE
//   --no-reference            skip the float64 host reference of the checked cases
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

// The variant that ran, for the log.
static void run_variant_case(const Case& c, uint64_t seed) {
  const int var =
      c.variant == cuda::attn::kAuto ? cuda::attn::default_variant(int(c.D), c.blk) : c.variant;
  run_case(c, seed, cuda::attn::variant_name(var));
}

static void check_sweep() {
  uint64_t seed = 1;
  for_each_sweep_case({{1, 1},
                       {77, 77},
                       {129, 129},
                       {1000, 1000},
                       {4097, 4097},
                       {100, 1000},
                       {1, 1000},
                       {513, 2100},
                       {300, 556},
                       {200, 333}},
                      {64, 128, 256}, [&](Case& c) {
                        // the default variant (kAuto) and every other variant that takes the case
                        for (int var = -1; var < cuda::attn::kNumVariants; ++var) {
                          if (var >= 0 && !cuda::attn::variant_supported(var, int(c.D), c.blk))
                            continue;
                          if (var >= 0 && var == cuda::attn::default_variant(int(c.D), c.blk))
                            continue;
                          c.variant = var;
                          run_variant_case(c, seed++);
                        }
                      });
}

static void check_small() {
  // small shapes for compute-sanitizer: dense + sparse, both block sizes
  Case c{1, 4, 2, 200, 300, 128, true, false, false, 128, 0.f, cuda::attn::kAuto, 0};
  run_variant_case(c, 11);
  c.sparse = true;
  run_variant_case(c, 12);
  c.blk = 64;
  c.D = 64;
  c.bf16 = false;
  c.bnhd = true;
  run_variant_case(c, 13);
  c.sparse = false;
  c.blk = 256;
  run_variant_case(c, 14);
}

static void timing() {
  timing_sweep({{8192, 128}, {32768, 128}, {131072, 128}, {32768, 64}}, [](int64_t, int64_t D) {
    std::vector<TimedKernel> ks;
    for (int var = 0; var < cuda::attn::kNumVariants; ++var)
      if (cuda::attn::variant_supported(var, int(D), 128))
        ks.push_back({cuda::attn::variant_name(var), var, [] {}});
    return ks;
  });
}

int main(int argc, char** argv) {
  bool small = false, check = true, time = true;
  for (int a = 1; a < argc; ++a) {
    if (!std::strcmp(argv[a], "--small"))
      small = true;
    else if (!std::strcmp(argv[a], "--check"))
      time = false;
    else if (!std::strcmp(argv[a], "--time"))
      check = false;
    else if (!std::strcmp(argv[a], "--hash"))
      g_hash = true;
    else if (!std::strcmp(argv[a], "--no-reference"))
      g_no_reference = true;
  }
  // Every case on the portable kernel, Hopper included (its default variant
  // for kAuto); attention_sm90_check covers the Hopper path.
  cuda::attn::AttentionTuning portable;
  portable.path = cuda::attn::PathChoice::kPortable;
  cuda::attn::set_attention_tuning(portable);
  int dev = 0;
  CK(cudaSetDevice(dev));
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

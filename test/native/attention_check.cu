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
  for_each_sweep_case(kSweepShapes, {64, 128, 256}, [&](Case& c) {
    // the default variant (kAuto) and every other variant that takes the case
    for (int var = -1; var < cuda::attn::kNumVariants; ++var) {
      if (var >= 0 && !cuda::attn::variant_supported(var, int(c.D), c.blk)) continue;
      if (var >= 0 && var == cuda::attn::default_variant(int(c.D), c.blk)) continue;
      c.variant = var;
      run_variant_case(c, seed++);
    }
  });
}

static void check_small() {
  // small shapes for compute-sanitizer: dense + sparse, block sizes 128, 64 and 256
  run_small_cases(
      64, [](Case& c) { c.blk = 256; }, run_variant_case);
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
  HarnessFlags flags;
  for (int a = 1; a < argc; ++a) flags.parse(argv[a]);
  // Every case on the portable kernel, Hopper included (its default variant
  // for kAuto); attention_sm90_check covers the Hopper path.
  cuda::attn::AttentionTuning portable;
  portable.path = cuda::attn::PathChoice::kPortable;
  cuda::attn::set_attention_tuning(portable);
  int dev = 0;
  CK(cudaSetDevice(dev));
  return run_harness(dev, flags, check_small, check_sweep, timing);
}

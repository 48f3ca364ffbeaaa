// Reads the option objects that lib/ops.ts passes to the addon. The TS layer
// resolves defaults; here every field is required and range-checked again.
#pragma once
#include <napi.h>

#include "common/prism_types.h"

namespace prism::binding {

// { block, highDims, lowDims, ropeLayout: 0|1, method: 0|1, calibrate, tempHigh,
//   tempLow, selection: 0|1, tauHigh, tauLow, topkHigh, topkLow, forceSink, forceDiagonal }
// for a head_dim that must be even (estimation pools RoPE pairs); checked first.
EstimateParams read_estimate_params(Napi::Value v, int64_t head_dim);

// { block, softmaxScale }  (softmaxScale 0 = 1/sqrt(d))
AttentionParams read_attention_params(Napi::Value v);

// { warmup, iters } or undefined (= run once).
struct Timing {
  int warmup = 0;
  int iters = 1;
};
Timing read_timing(Napi::Value v);

}  // namespace prism::binding

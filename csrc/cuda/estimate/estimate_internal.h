// Internal knobs of the estimation kernels, for the native test harness only.
#pragma once

namespace prism::cuda::est_internal {

// Run only the first `n` stages of estimate() (1 = pooling, 2 = + temperatures,
// 3 or more = everything). Lets a harness time the stages separately. Not
// thread-safe; default 3.
void set_stage_limit(int n);

}  // namespace prism::cuda::est_internal

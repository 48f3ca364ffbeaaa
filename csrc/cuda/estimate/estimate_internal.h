// Internal knobs of the estimation kernels, for the native test harness only.
// None is thread-safe.
#pragma once

namespace prism::cuda::est_internal {

// Run only the first `n` stages of estimate() (1 = pooling, 2 = + temperatures,
// 3 or more = everything). Lets a harness time the stages separately. Default 3.
void set_stage_limit(int n);

// Selection kernel: 0 automatic (the tiled kernel once rows may outgrow the row
// kernel's register path), 1 always the row kernel, 2 always the tiled kernel
// (which needs nk >= 2; with nk == 1 the row kernel runs). Default 0.
void set_select_path(int path);

// Tiled kernel stress switches: `flags` bits 1 skip the max probe (every row
// sums z twice), 2 / 4 start every search from a bracket below / above the
// threshold; cap >= 0 bounds the keys stored per row; mtiles in {1, 2, 4}
// forces 16 * mtiles rows per CTA. (0, -1, 0) restores the defaults.
void set_tiled_stress(int flags, int cap, int mtiles);

}  // namespace prism::cuda::est_internal

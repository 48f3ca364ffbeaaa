// Internal knobs of the estimation kernels, for the native test harness only.
// They exist in PRISM_TUNING_VARIANTS builds (the native harnesses,
// test/native/build.sh and the CMake target prism_native_harnesses); the
// addon reads the defaults, a constant. The setters are not thread-safe.
#pragma once

namespace prism::cuda::est_internal {

struct EstimateKnobs {
  // Run only the first `stage_limit` stages of estimate() (1 = pooling,
  // 2 = + temperatures, 3 or more = everything).
  int stage_limit = 3;
  // Selection kernel: 0 automatic (the tiled kernel reading stored logits once
  // rows may outgrow the row kernel's register path), 1 always the row kernel,
  // 2 always the tiled kernel recomputing its logits, 3 always the tiled
  // kernel reading stored logits (2 and 3 need nk >= 2; with nk == 1 the row
  // kernel runs).
  int select_path = 0;
  // Bytes the logit store may take (< 0: the default budget); a small budget
  // splits the call into several kv-head chunks.
  long long store_budget = -1;
  // Rows per CTA of the logits kernel / 16 (0: the most that fit).
  int logits_mt = 0;
  // 1: the logits kernel on mma.sync even where the sm_90a one (warpgroup
  // mma) could run; a logits_mt also picks the mma.sync kernel.
  int logits_mma = 0;
  // Key ring stages of the sm_90a logits kernel, 3 or 4 (0: the deepest that fits).
  int logits_stages = 0;
  // Tiled kernel stress switches (see set_tiled_stress).
  int stress = 0, stress_cap = -1, stress_mt = 0;
  // Row kernel: rows per CTA, at most what fits (0: plan_selection's choice).
  int row_rows = 0;
  // 1: the sm_90a logits kernel writes each row's largest logit and the tiled
  // kernel takes it (SelArgs::rowmax); 0: the tiled kernel probes for a guess.
  int stored_rowmax = 1;
};

// The knobs in force: the defaults, unless a tuning build's harness set them.
const EstimateKnobs& knobs();

#ifdef PRISM_TUNING_VARIANTS
// Run only the first `n` stages of estimate(). Lets a harness time the stages
// separately. Default 3.
void set_stage_limit(int n);

// The selection kernel (EstimateKnobs::select_path). Default 0.
void set_select_path(int path);

// Tiled kernel stress switches: `flags` bits 1 skip the max probe (every row
// sums z twice), 2 / 4 start every search from a bracket below / above the
// threshold; cap >= 0 bounds the keys stored per row; mtiles in {1, 2, 4}
// forces 16 * mtiles rows per CTA. (0, -1, 0) restores the defaults.
void set_tiled_stress(int flags, int cap, int mtiles);

// Rows per CTA of the row kernel (EstimateKnobs::row_rows; 0 restores the
// automatic choice).
void set_row_rows(int m);

// Bytes the logit store may take (EstimateKnobs::store_budget); -1 restores
// the default.
void set_store_budget(long long bytes);

// The logits kernel's rows per CTA / 16, in {1, 2, 4} (0: automatic).
void set_logits_mt(int mt);

// 1: the mma.sync logits kernel even on sm_90a (EstimateKnobs::logits_mma).
void set_logits_mma(int on);

// Key ring stages of the sm_90a logits kernel (EstimateKnobs::logits_stages).
void set_logits_stages(int n);

// 0: the tiled kernel probes for each row's largest logit even where the
// sm_90a logits kernel could write it (EstimateKnobs::stored_rowmax; 1 restores).
void set_stored_rowmax(int on);

// Score tiles the tiled kernel swept since the last call (which resets them):
// one full pass over every row group's tiles, then those of the max probes,
// the z sweeps and the key sweeps.
void tiled_sweep_counts(unsigned long long out[4]);

// The logit store's slab geometry (logit_store.cuh), for a host-side check:
// tiles of slab s, and the tiles of slabs [0, s0) counted by tile.
int slab_tiles(int s, int rows, int G, int off, int nk);
long long slab_prefix_tiles(int s0, int rows, int G, int off, int nk);
#endif

}  // namespace prism::cuda::est_internal

// The tuning switches of the attention plan: one process-wide struct, set only
// by tests and measurements (the addon's internal `tuning.setAttention`, the
// native harnesses), read once per call by the plan (attention_plan.h). Nothing
// reads environment variables. Plain C++ (the binding includes it).
#pragma once

// Builds that define PRISM_TUNING_VARIANTS (the native harnesses,
// test/native/build.sh and -DPRISM_NATIVE_HARNESSES=ON) also compile the kernel
// variants and the ping-pong schedule that the plan never picks by itself;
// the release addon does not carry them.
#ifdef PRISM_TUNING_VARIANTS
#define PRISM_TUNING_BUILD 1
#else
#define PRISM_TUNING_BUILD 0
#endif

namespace prism::cuda::attn {

enum class PathChoice : int {
  kAuto = 0,      // the plan's own choice (Hopper kernel where it applies)
  kPortable = 1,  // every call takes the portable sm80-mma kernel
};

// The largest window of the Hopper kernel's window sort (one CTA sorts a window
// in shared memory).
constexpr int kMaxSortWindow = 2048;

struct AttentionTuning {
  PathChoice path = PathChoice::kAuto;
  // Hopper scheduling: -1 the plan's default (persistent on block-sparse calls
  // with more work items than SMs), 0 never persistent, 1 always (when the call
  // has a workspace).
  int persistent = -1;
  // > 0: at most this many persistent CTAs (default 0: one per SM). Tests use
  // a small cap to give each CTA several items on small shapes.
  int max_ctas = 0;
  // Hopper: the two consumer warpgroups take turns issuing their GEMMs (not on
  // persistent launches). Only in PRISM_TUNING_VARIANTS builds.
  bool pingpong = false;
  // Hopper, persistent block-sparse calls: the items of each window of this
  // many (in the kernel's order) run longest list first (attention_plan.cu,
  // "Window sort"). -1: the plan's default, 0: never, 1 .. kMaxSortWindow.
  int sort_window = -1;
};

// The current tuning (a copy taken under a mutex).
AttentionTuning attention_tuning();

// Replaces the tuning for every later call of the process (calls already
// planned keep theirs). Throws std::invalid_argument for a value out of range,
// or pingpong in a build without PRISM_TUNING_VARIANTS.
void set_attention_tuning(const AttentionTuning& t);

// Whether this build compiled the tuning-only kernels (PRISM_TUNING_VARIANTS).
bool tuning_variants_compiled();

}  // namespace prism::cuda::attn

// Which calls the CUDA attention kernels take: the one table of dtypes, head
// dims and block sizes. Plain C++ (no CUDA): the plan's argument checks
// (attention_plan.cu) and the addon's supports() answer (binding/supports.cc,
// which lib/ops.ts turns into its TypeError / RangeError messages) both read it,
// in CUDA and CPU-only builds alike.
#pragma once
#include "common/prism_types.h"

namespace prism::cuda::attn {

// Every CUDA attention path (the portable kernel covers all of these).
inline constexpr DType kSupportedDTypes[] = {DType::F16, DType::BF16};
inline constexpr int kSupportedHeadDims[] = {64, 128};
// Whole 64-key tiles per block (the portable kernel's smallest query tile is 64 rows).
inline constexpr int kSupportedBlocks[] = {64, 128, 256};

// The first rule a call breaks, checked in this order (the order of lib's messages).
enum class Unsupported { kNone = 0, kHeadDim, kDType, kBlock };

template <class T, int N>
constexpr bool contains(const T (&list)[N], T x) {
  for (int i = 0; i < N; ++i)
    if (list[i] == x) return true;
  return false;
}

constexpr Unsupported attention_unsupported(DType dtype, int head_dim, int block) {
  if (!contains(kSupportedHeadDims, head_dim)) return Unsupported::kHeadDim;
  if (!contains(kSupportedDTypes, dtype)) return Unsupported::kDType;
  if (!contains(kSupportedBlocks, block)) return Unsupported::kBlock;
  return Unsupported::kNone;
}

// The configurations the Hopper (sm_90a wgmma + TMA) kernel covers: a subset of
// the table above (its query and key tiles are 128 rows). Others run the
// portable kernel on every device.
constexpr bool hopper_covers(int head_dim, int block) {
  return (head_dim == 64 || head_dim == 128) && (block == 128 || block == 256);
}

}  // namespace prism::cuda::attn

// Launch templates of the sm80-mma forward kernel: per variant, raise the
// dynamic shared-memory limit, launch the plan's grid, return the first error.
// Included by the per-(dtype, head_dim) instantiation files only.
#pragma once
#include <cuda_runtime.h>
#include "cuda/attention/attention_fwd.h"
#include "cuda/attention/attention_fwd_kernel.cuh"
#include "cuda/common/dynamic_smem.h"

namespace prism::cuda::attn {

// Traits of each variant for head dim D. Register budgets: kMinBlocks 2 caps a
// 128-thread CTA at 255 registers and a 256-thread CTA at 128.
template <int D, int V>
struct VariantTraits;
template <int D>
struct VariantTraits<D, kW4M2N64> {  // d128: 32-key compute steps
  using type = FwdTraits<D, 4, 2, 64, (D == 128 ? 32 : 64), /*Q in regs*/ (D == 64), 2>;
};
template <int D>
struct VariantTraits<D, kW8M1N64> {
  using type = FwdTraits<D, 8, 1, 64, 64, (D == 64), (D == 64 ? 2 : 1)>;
};
template <int D>
struct VariantTraits<D, kW4M2N128> {
  using type = FwdTraits<D, 4, 2, 128, 64, (D == 64), (D == 64 ? 2 : 1)>;
};
template <int D>
struct VariantTraits<D, kW4M2N64U> {  // kW4M2N64, sub-steps unrolled
  using type = FwdTraits<D, 4, 2, 64, 32, false, 2, true>;
};
template <int D>
struct VariantTraits<D, kW4M1N64> {
  using type = FwdTraits<D, 4, 1, 64, 64, true, 2>;
};

template <class KT, typename T>
cudaError_t launch_traits(const FwdParams& p, int64_t grid, cudaStream_t stream) {
  if (grid <= 0) return cudaSuccess;
  if (grid > 0x7fffffff) return cudaErrorInvalidConfiguration;
  const bool sparse = p.counts != nullptr, paged = p.kv_pages != nullptr;
  auto kernel = sparse ? (paged ? attn_fwd_sm80_kernel<KT, T, true, true>
                                : attn_fwd_sm80_kernel<KT, T, true, false>)
                       : (paged ? attn_fwd_sm80_kernel<KT, T, false, true>
                                : attn_fwd_sm80_kernel<KT, T, false, false>);
  constexpr int smem = KT::kSmemTotal;
  if (smem > 48 * 1024) {
    cudaError_t e = fixed_smem_limit(reinterpret_cast<const void*>(kernel), smem);
    if (e != cudaSuccess) return e;
  }
  kernel<<<static_cast<unsigned>(grid), KT::kThreads, smem, stream>>>(p);
  return cudaGetLastError();
}

// The variants default_variant() never picks are instantiated only in
// PRISM_TUNING_VARIANTS builds (variant_supported() rejects them elsewhere).
template <typename T, int D>
cudaError_t launch_fwd_impl(const FwdParams& p, const AttentionPlan& plan, cudaStream_t stream) {
  const int64_t grid = plan.grid;
  switch (plan.variant) {
    case kW4M2N64:
      return launch_traits<typename VariantTraits<D, kW4M2N64>::type, T>(p, grid, stream);
    case kW4M1N64:
      return launch_traits<typename VariantTraits<D, kW4M1N64>::type, T>(p, grid, stream);
#if PRISM_TUNING_BUILD
    case kW8M1N64:
      return launch_traits<typename VariantTraits<D, kW8M1N64>::type, T>(p, grid, stream);
    case kW4M2N128:
      if constexpr (D == 64)
        return launch_traits<typename VariantTraits<D, kW4M2N128>::type, T>(p, grid, stream);
      else
        return cudaErrorInvalidValue;
    case kW4M2N64U:
      if constexpr (D == 128)
        return launch_traits<typename VariantTraits<D, kW4M2N64U>::type, T>(p, grid, stream);
      else
        return cudaErrorInvalidValue;
#endif
    default: return cudaErrorInvalidValue;
  }
}

}  // namespace prism::cuda::attn

namespace prism::cuda::attn {
template <typename T, int D>
cudaError_t launch_fwd(const FwdParams& p, const AttentionPlan& plan, cudaStream_t stream) {
  return launch_fwd_impl<T, D>(p, plan, stream);
}
}  // namespace prism::cuda::attn

// One explicit instantiation file per (dtype, head dim) keeps compile units small.
#define PRISM_ATTN_INSTANTIATE(T, D)                        \
  template cudaError_t prism::cuda::attn::launch_fwd<T, D>( \
      const prism::cuda::attn::FwdParams&, const prism::cuda::attn::AttentionPlan&, cudaStream_t);

// Launch template of the sm_90a forward kernel: TMA tensor maps (encoded with
// the driver's cuTensorMapEncodeTiled, reached through the runtime's
// driver-entry-point query since libcuda is not linked), shared-memory limit,
// and the launch of the plan's grid with the kernel of one tile scheduler
// (attention_sm90.h's launch_fwd picks it from the plan's `persistent`).
// Included by the per-(dtype, head_dim, scheduler) instantiation files only.
#pragma once
#include <cuda.h>
#include <cudaTypedefs.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <type_traits>
#include "cuda/attention/sm90/attention_sm90.h"
#include "cuda/attention/sm90/attention_sm90_kernel.cuh"
#include "cuda/attention/sm90/sm90_tile_scheduler.cuh"
#include "cuda/attention/sm90/sm90_traits.cuh"
#include "cuda/common/dynamic_smem.h"
#include "cuda/common/kernel_image.h"

namespace prism::cuda::attn::sm90 {

// The driver's tensor-map encoder, or null (defined in attention_sm90_host.cu).
PFN_cuTensorMapEncodeTiled_v12000 tensor_map_encoder();

// 4-D map over a [batch, heads, n, d] tensor with element strides (sb, sh, sn),
// box (64 elements, box_rows rows, 1, 1), 128-byte swizzle, zero fill outside.
inline bool encode_qkv_map(CUtensorMap* map, CUtensorMapDataType dt, const void* ptr, int64_t d,
                           int64_t n, int64_t heads, int64_t batch, int64_t sn, int64_t sh,
                           int64_t sb, int box_rows = 128) {
  PFN_cuTensorMapEncodeTiled_v12000 enc = tensor_map_encoder();
  if (enc == nullptr) return false;
  const cuuint64_t dims[4] = {cuuint64_t(d), cuuint64_t(n), cuuint64_t(heads), cuuint64_t(batch)};
  // Strides of extent-1 dimensions are never used: keep them valid for the encoder.
  auto fix = [](int64_t stride, int64_t extent) -> cuuint64_t {
    if (extent <= 1 && (stride <= 0 || stride % 16 != 0)) return 16;
    return cuuint64_t(stride);
  };
  const cuuint64_t strides[3] = {fix(sn * 2, n), fix(sh * 2, heads), fix(sb * 2, batch)};
  const cuuint32_t box[4] = {64, cuuint32_t(box_rows), 1, 1};
  const cuuint32_t estr[4] = {1, 1, 1, 1};
  const CUresult r = enc(map, dt, 4, const_cast<void*>(ptr), dims, strides, box, estr,
                         CU_TENSOR_MAP_INTERLEAVE_NONE, CU_TENSOR_MAP_SWIZZLE_128B,
                         CU_TENSOR_MAP_L2_PROMOTION_L2_256B, CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE);
  return r == CUDA_SUCCESS;
}

// A page pool's two maps (Sm90Params::tk / tk_last): the whole pool, (d,
// page, hkv, pages), and the sequence's last page alone, (d, keys in it, hkv,
// 1); boxes of min(page, 128) rows.
inline bool encode_page_maps(CUtensorMap& pool, CUtensorMap& last, CUtensorMapDataType dt,
                             const void* ptr, int64_t d, const FwdParams& p, int64_t sn, int64_t sh,
                             int64_t sb) {
  const int64_t page = int64_t(1) << p.page_shift;
  const int box = static_cast<int>(page < 128 ? page : 128);
  const int64_t last_page = (int64_t(p.nk) - 1) >> p.page_shift;
  const int64_t in_last = int64_t(p.nk) - last_page * page;
  const void* last_ptr = static_cast<const char*>(ptr) + int64_t(p.last_id) * sb * 2;
  return encode_qkv_map(&pool, dt, ptr, d, page, p.hkv, p.pool_pages, sn, sh, sb, box) &&
         encode_qkv_map(&last, dt, last_ptr, d, in_last, p.hkv, 1, sn, sh, sb, box);
}

template <typename T, int D, class Scheduler>
cudaError_t launch_fwd_impl(const FwdParams& p, const AttentionPlan& plan, cudaStream_t stream) {
  using KT = Sm90Traits<D>;
  if (plan.grid <= 0) return cudaSuccess;
  if (plan.persistent != Scheduler::kPersistent) return cudaErrorInvalidConfiguration;
  if (plan.items > 0x7fffffff || plan.grid > plan.items) return cudaErrorInvalidConfiguration;
  Sm90Params prm;
  prm.p = p;  // p.n_mtiles: the plan's kBlockM-row tiles
  const CUtensorMapDataType dt = std::is_same_v<T, __nv_bfloat16> ? CU_TENSOR_MAP_DATA_TYPE_BFLOAT16
                                                                  : CU_TENSOR_MAP_DATA_TYPE_FLOAT16;
  // The plan only takes this path for views tma_describable() accepts: a
  // refusal here is a real error, reported as such.
  if (!encode_qkv_map(&prm.tq, dt, p.q, D, p.nq, p.hq, p.batch, p.q_sn, p.q_sh, p.q_sb))
    return cudaErrorNotSupported;
  if (p.kv_pages == nullptr) {
    if (!encode_qkv_map(&prm.tk, dt, p.k, D, p.nk, p.hkv, p.batch, p.k_sn, p.k_sh, p.k_sb) ||
        !encode_qkv_map(&prm.tv, dt, p.v, D, p.nk, p.hkv, p.batch, p.v_sn, p.v_sh, p.v_sb))
      return cudaErrorNotSupported;
  } else if (!encode_page_maps(prm.tk, prm.tk_last, dt, p.k, D, p, p.k_sn, p.k_sh, p.k_sb) ||
             !encode_page_maps(prm.tv, prm.tv_last, dt, p.v, D, p, p.v_sn, p.v_sh, p.v_sb)) {
    return cudaErrorNotSupported;
  }
  prm.pingpong = plan.pingpong ? 1 : 0;
  if constexpr (Scheduler::kPersistent) {
    // One CTA per SM (or the tuning's cap) takes items from the zeroed counter.
    if (p.work_counter == nullptr) return cudaErrorInvalidValue;
    cudaError_t e = cudaMemsetAsync(p.work_counter, 0, sizeof(int32_t), stream);
    if (e != cudaSuccess) return e;
    prm.work_counter = p.work_counter;
    prm.n_items = static_cast<int32_t>(plan.items);
  }
  auto kernel = attn_fwd_sm90_kernel<T, D, Scheduler>;
  constexpr int smem = KT::kSmemBytes;
  cudaError_t e = fixed_smem_limit(reinterpret_cast<const void*>(kernel), smem);
  if (e != cudaSuccess) return e;
  kernel<<<static_cast<unsigned>(plan.grid), KT::kThreads, smem, stream>>>(prm);
  return cudaGetLastError();
}

template <typename T, int D, class Scheduler>
cudaError_t kernel_image_ok_impl(bool* ok) {
  cudaFuncAttributes a{};
  cudaError_t e = cudaFuncGetAttributes(&a, attn_fwd_sm90_kernel<T, D, Scheduler>);
  if (e != cudaSuccess) {
    *ok = false;
    return e;
  }
  *ok = has_sm90a_image(a);
  return cudaSuccess;
}

}  // namespace prism::cuda::attn::sm90

namespace prism::cuda::attn::sm90 {
template <typename T, int D, class Scheduler>
cudaError_t launch_fwd_scheduled(const FwdParams& p, const AttentionPlan& plan,
                                 cudaStream_t stream) {
  return launch_fwd_impl<T, D, Scheduler>(p, plan, stream);
}
template <typename T, int D, class Scheduler>
cudaError_t kernel_image_ok(bool* ok) {
  return kernel_image_ok_impl<T, D, Scheduler>(ok);
}
}  // namespace prism::cuda::attn::sm90

// One explicit instantiation file per (dtype, head dim, scheduler) keeps
// compile units small. S: SingleTileScheduler or PersistentTileScheduler.
#define PRISM_ATTN_SM90_INSTANTIATE(T, D, S)                                                       \
  template cudaError_t                                                                             \
  prism::cuda::attn::sm90::launch_fwd_scheduled<T, D, prism::cuda::attn::sm90::S>(                 \
      const prism::cuda::attn::FwdParams&, const prism::cuda::attn::AttentionPlan&, cudaStream_t); \
  template cudaError_t prism::cuda::attn::sm90::kernel_image_ok<T, D, prism::cuda::attn::sm90::S>( \
      bool*);

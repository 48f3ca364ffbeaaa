// prism::cuda attention entry points (cuda_backend.h): describe the call and
// the device, take the plan (attention_plan.h), carry it out. Every decision
// is the plan's; this file only gathers its inputs and launches.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <cmath>
#include <cstdint>
#include "cuda/attention/attention_fwd.h"
#include "cuda/attention/attention_plan.h"
#include "cuda/attention/sm90/attention_sm90.h"
#include "cuda/cuda_backend.h"
#include "cuda/paged/paged_gather.h"

namespace prism::cuda {
namespace attn {

namespace {

// What the plan needs to know of `device`. Cheap: attribute reads, and the
// Hopper image check is cached per device (sm90::device_supported).
cudaError_t device_facts(int device, DeviceFacts* f) {
  cudaError_t e = cudaDeviceGetAttribute(&f->major, cudaDevAttrComputeCapabilityMajor, device);
  if (e == cudaSuccess)
    e = cudaDeviceGetAttribute(&f->minor, cudaDevAttrComputeCapabilityMinor, device);
  if (e == cudaSuccess) e = cudaDeviceGetAttribute(&f->sms, cudaDevAttrMultiProcessorCount, device);
  if (e != cudaSuccess) {
    cudaGetLastError();  // leave no error state behind
    return e;
  }
  f->hopper_image = f->major == 9 && f->minor == 0 && sm90::device_supported(device);
  return cudaSuccess;
}

FwdParams fwd_params(const QkvView& q, const QkvView& k, const QkvView& v, const OutView& o,
                     const BlockList& list, const AttentionParams& ap, const AttentionPlan& plan,
                     const KvPages* pages) {
  FwdParams p;
  p.q = q.data;
  p.k = k.data;
  p.v = v.data;
  p.o = o.data;
  p.lse = o.lse;
  p.lse_sh = o.lse_stride > 0 ? o.lse_stride : q.n;
  p.q_sb = q.stride_b;
  p.q_sh = q.stride_h;
  p.q_sn = q.stride_n;
  p.k_sb = k.stride_b;
  p.k_sh = k.stride_h;
  p.k_sn = k.stride_n;
  p.v_sb = v.stride_b;
  p.v_sh = v.stride_h;
  p.v_sn = v.stride_n;
  p.o_sb = o.stride_b;
  p.o_sh = o.stride_h;
  p.o_sn = o.stride_n;
  p.batch = static_cast<int32_t>(q.batch);
  p.hq = static_cast<int32_t>(q.heads);
  p.hkv = static_cast<int32_t>(k.heads);
  p.group = p.hkv > 0 ? p.hq / p.hkv : 1;
  p.nq = static_cast<int32_t>(q.n);
  const int64_t nk = pages != nullptr ? pages->tokens : k.n;
  p.nk = static_cast<int32_t>(nk);
  if (pages != nullptr) {
    p.kv_pages = pages->ids;
    p.page_shift = pages->shift();
    p.last_id = pages->last_id;
    p.pool_pages = k.batch;
  }
  p.blk = ap.block;
  const BlockGrid grid(q.n, nk, ap.block);
  p.nqb = static_cast<int32_t>(grid.nq);
  p.nkb = static_cast<int32_t>(grid.nk);
  p.counts = list.counts;
  p.row_start = list.row_start;
  p.indices = list.indices;
  const float scale = ap.softmax_scale > 0.f ? ap.softmax_scale : 1.f / std::sqrt(float(q.d));
  p.scale_log2 = scale * 1.4426950408889634f;
  p.n_mtiles = plan.n_mtiles;
  return p;
}

template <template <typename, int> class Launch>
cudaError_t dispatch(DType dtype, int d, const FwdParams& p, const AttentionPlan& plan,
                     cudaStream_t stream) {
  if (dtype == DType::BF16)
    return d == 128 ? Launch<__nv_bfloat16, 128>::run(p, plan, stream)
                    : Launch<__nv_bfloat16, 64>::run(p, plan, stream);
  return d == 128 ? Launch<__half, 128>::run(p, plan, stream)
                  : Launch<__half, 64>::run(p, plan, stream);
}
template <typename T, int D>
struct PortableLaunch {
  static cudaError_t run(const FwdParams& p, const AttentionPlan& plan, cudaStream_t s) {
    return launch_fwd<T, D>(p, plan, s);
  }
};
template <typename T, int D>
struct HopperLaunch {
  static cudaError_t run(const FwdParams& p, const AttentionPlan& plan, cudaStream_t s) {
    return sm90::launch_fwd<T, D>(p, plan, s);
  }
};

}  // namespace

cudaError_t current_device_facts(DeviceFacts* facts) {
  int dev = 0;
  cudaError_t e = cudaGetDevice(&dev);
  if (e != cudaSuccess) {
    cudaGetLastError();
    return e;
  }
  return device_facts(dev, facts);
}

cudaError_t attention_with_variant(const QkvView& q, const QkvView& k, const QkvView& v,
                                   const OutView& o, const BlockList& list,
                                   const AttentionParams& ap, void* workspace, cudaStream_t stream,
                                   int variant, const KvPages* pages) {
  const PlanRequest call =
      describe_call(q, k, v, o, list, ap, variant, workspace != nullptr, pages);
  DeviceFacts facts;
  cudaError_t e = current_device_facts(&facts);
  if (e != cudaSuccess) return e;
  const AttentionPlan plan = plan_attention(call, facts, attention_tuning());
  if (plan.path == Path::kNone) return cudaErrorNoKernelImageForDevice;
  if (plan.grid == 0) return cudaSuccess;

  char* ws = static_cast<char*>(workspace);
  QkvView kv[2] = {k, v};
  if (plan.gather_pages) {
    // Small pages: the sequence's K and V into the workspace, then plain views.
    void* dst[2] = {ws + plan.workspace.gather_offset,
                    ws + plan.workspace.gather_offset + plan.workspace.kv_bytes};
    e = gather_pages(k, &v, pages->ids, pages->tokens, dst[0], dst[1], stream);
    if (e != cudaSuccess) return e;
    for (int i = 0; i < 2; ++i)
      kv[i] = contiguous_view(dst[i], kv[i].dtype, kv[i].heads, pages->tokens, kv[i].d);
    pages = nullptr;
  }
  FwdParams p = fwd_params(q, kv[0], kv[1], o, list, ap, plan, pages);
  const int d = call.head_dim;
  if (plan.path == Path::kHopper) {
    // Its own work order (kv-head groups, longest query tiles first), which
    // p.order permutes within windows where the plan sorts them.
    if (plan.persistent)
      p.work_counter = reinterpret_cast<int32_t*>(ws + plan.workspace.counter_offset);
    if (plan.sort_window > 0) {
      int32_t* order = reinterpret_cast<int32_t*>(ws + plan.workspace.order_offset);
      e = launch_order_windows(p, plan.sort_window, plan.items, order, stream);
      if (e != cudaSuccess) return e;
      p.order = order;
    }
    return dispatch<HopperLaunch>(call.dtype, d, p, plan, stream);
  }
  if (plan.sort_items) {
    int32_t* order = reinterpret_cast<int32_t*>(ws + plan.workspace.order_offset);
    e = launch_order_items(p, plan.block_m, order, stream);
    if (e != cudaSuccess) return e;
    p.order = order;
  }
  return dispatch<PortableLaunch>(call.dtype, d, p, plan, stream);
}

}  // namespace attn

size_t attention_workspace_bytes(const QkvView& q, const QkvView& k, const BlockList& list,
                                 const AttentionParams& p, const KvPages* pages) {
  (void)p;
  // The plan's workspace layout depends on the shape, the list kind and the
  // pages only, so this size fits whichever plan the call gets.
  const size_t kv_gather = pages != nullptr ? attn::kv_gather_bytes(pages->page_size, k.heads,
                                                                    pages->tokens, k.d, k.dtype)
                                            : 0;
  return attn::workspace_layout(q.batch, q.heads, q.n, list.counts != nullptr, kv_gather).total;
}

cudaError_t attention(const QkvView& q, const QkvView& k, const QkvView& v, const OutView& o,
                      const BlockList& list, const AttentionParams& p, void* workspace,
                      cudaStream_t stream, const KvPages* pages) {
  return attn::attention_with_variant(q, k, v, o, list, p, workspace, stream, attn::kAuto, pages);
}

bool attention_gathers_pages(int page_size) { return attn::gathers_pages(page_size); }

const char* attention_path(int device) {
  attn::DeviceFacts facts;
  if (attn::device_facts(device, &facts) != cudaSuccess) return "none";
  // The plan of a call the Hopper kernel covers (bf16, head_dim 128, block
  // 128, dense, contiguous): the path every such call takes on this device
  // under the current tuning. Other configurations take the portable kernel.
  attn::PlanRequest typical;
  typical.dtype = DType::BF16;
  typical.head_dim = 128;
  typical.block = 128;
  typical.batch = typical.hq = typical.hkv = 1;
  typical.nq = typical.nk = 128;
  typical.tma_ok = true;
  typical.has_workspace = true;
  return attn::path_name(attn::plan_attention(typical, facts, attn::attention_tuning()).path);
}

}  // namespace prism::cuda

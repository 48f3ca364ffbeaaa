// Host interface of the sm_90a (Hopper: wgmma + TMA) attention forward path.
// No device code: included by attention_api.cu and the native harnesses. The
// plan (attention_plan.h) decides when this path runs, its grid and whether
// it is persistent; the launcher only carries that out, with the kernel
// instantiated for that tile scheduler.
#pragma once
#include <cuda_runtime.h>
#include "cuda/attention/attention_fwd.h"

namespace prism::cuda::attn::sm90 {

constexpr int kBlockM = kHopperBlockM;  // query rows per CTA (the plan's block_m on this path)

// True when `device` is compute capability 9.0, the driver has the tensor-map
// encoder and this binary holds the sm_90a image of the kernel, as its
// architecture list says (cached per device after the first call). Creates
// no CUDA context. DeviceFacts::hopper_image.
bool device_supported(int device);

// The kernel's tile schedulers (sm90_tile_scheduler.cuh), its template
// parameter: one work item per CTA, or CTAs taking items from a counter.
struct SingleTileScheduler;
struct PersistentTileScheduler;

// Launches the (dtype, head_dim) kernel of one scheduler as `plan` says
// (plan.path == Path::kHopper, plan.persistent == Scheduler::kPersistent):
// p.n_mtiles = plan.n_mtiles (kBlockM-row tiles), plan.grid CTAs, the
// persistent one with p.work_counter. The plan checked that the strides can be
// described to the TMA unit (tma_describable), so a tensor map the driver
// refuses is an error: cudaErrorNotSupported. One instantiation file each.
template <typename T, int D, class Scheduler>
cudaError_t launch_fwd_scheduled(const FwdParams& p, const AttentionPlan& plan,
                                 cudaStream_t stream);

// Launches one (dtype, head_dim) family: the scheduler is the plan's choice.
template <typename T, int D>
cudaError_t launch_fwd(const FwdParams& p, const AttentionPlan& plan, cudaStream_t stream) {
  return plan.persistent ? launch_fwd_scheduled<T, D, PersistentTileScheduler>(p, plan, stream)
                         : launch_fwd_scheduled<T, D, SingleTileScheduler>(p, plan, stream);
}

// Whether the sm_90a image of the (T, D, Scheduler) kernel is the real one
// (not the empty body the other architecture passes compile).
template <typename T, int D, class Scheduler>
cudaError_t kernel_image_ok(bool* ok);

}  // namespace prism::cuda::attn::sm90

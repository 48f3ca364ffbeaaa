// The sm_90a block-sparse causal attention forward kernel (FlashAttention-3
// style), composed of its parts the way FlashAttention-3's hopper/ is. One
// work item is BLOCK_M = 128 query rows of one (batch, head) over the key tiles
// (BLOCK_N = 128 keys) of the key blocks selected for its query block, or over
// every visible key tile when dense. Semantics are those of the portable
// kernel (attention_fwd_kernel.cuh). The parts:
//   sm90_traits.cuh             tiles, stages, warp roles, register budgets,
//                               named-barrier ids, mbarrier arrival counts,
//                               launch parameters
//   sm90_shared_storage.cuh     the Q/K/V tiles and the pipeline's mbarriers
//                               (which barrier orders what)
//   sm90_tile_scheduler.cuh     work items and their order; SingleTileScheduler
//                               (one item per CTA) or PersistentTileScheduler
//                               (items from the workspace counter), the
//                               Scheduler template parameter
//   sm90_mainloop_producer.cuh  warpgroup 0: TMA loads of Q and the K/V ring
//   sm90_mainloop_consumer.cuh  warpgroups 1-2: QK wgmma, online softmax, PV wgmma
//   sm90_epilogue.cuh           normalise, LSE, store O
//   attention_sm90_ptx.cuh      the inline PTX they use
// On a persistent schedule the producer fetches the next item, and loads its Q
// and first K/V tiles, while the consumers finish the previous one (the K/V
// ring and its phases carry across items).
#pragma once
#include <cuda.h>
#include <cuda_runtime.h>
#include "cuda/attention/key_tiles.cuh"
#include "cuda/attention/sm90/attention_sm90_ptx.cuh"
#include "cuda/attention/sm90/sm90_epilogue.cuh"
#include "cuda/attention/sm90/sm90_mainloop_consumer.cuh"
#include "cuda/attention/sm90/sm90_mainloop_producer.cuh"
#include "cuda/attention/sm90/sm90_shared_storage.cuh"
#include "cuda/attention/sm90/sm90_tile_scheduler.cuh"
#include "cuda/attention/sm90/sm90_traits.cuh"

namespace prism::cuda::attn::sm90 {

template <typename T, int D, class Scheduler>
__global__ void __launch_bounds__(Sm90Roles::kThreads, 1)
    attn_fwd_sm90_kernel(const __grid_constant__ Sm90Params prm) {
#if PRISM_SM90_ENABLED
  using KT = Sm90Traits<D>;
  // Static: its presence is how the host tells a real sm_90a image from the
  // empty body of the other passes (cudaFuncAttributes::sharedSizeBytes).
  __shared__ SharedBarriers<KT::kStages, Scheduler> bars;
  extern __shared__ __align__(1024) unsigned char smem_dyn[];
  const SmemTiles<KT> smem(smem_dyn);

  if (threadIdx.x == 0) {
    bars.pipe.init();
    Scheduler::init(bars.sched);
    mbar_fence_init();
  }
  __syncthreads();

  Scheduler sched(prm, bars.sched);
  if (threadIdx.x < KT::kWarpgroupThreads) {
    setmaxnreg_dec<KT::kProducerRegs>();
    if (threadIdx.x < 32)
      ProducerMainloop<KT, Scheduler>::run(prm, smem, bars.pipe, sched, threadIdx.x);
  } else {
    setmaxnreg_inc<KT::kConsumerRegs>();
    const ConsumerThread th(threadIdx.x);
    ConsumerMainloop<T, KT, Scheduler> mainloop(prm, smem, bars.pipe, th);
    for (int item = sched.template initial_work<false>(); item >= 0;
         item = sched.template next_work<false>()) {
      const WorkTile w = decode_item<KT::kBlockM>(prm.p, item);
      const KeyTiles<KT::kBlockM, KT::kBlockN> keys(prm.p, w.bh, w.row0, prm.p.counts != nullptr);
      ConsumerAccum<D> acc;
      mainloop.run(keys, acc);
      Epilogue<T, KT, Scheduler>::store(prm.p, w, keys, acc, smem, th);
    }
  }
#else
  __trap();
#endif
}

}  // namespace prism::cuda::attn::sm90

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
#include "cuda/attention/sm90/sm90_segment_carry.cuh"
#include "cuda/attention/sm90/sm90_shared_storage.cuh"
#include "cuda/attention/sm90/sm90_tile_scheduler.cuh"
#include "cuda/attention/sm90/sm90_traits.cuh"

namespace prism::cuda::attn::sm90 {

#if PRISM_SM90_ENABLED
// Whole-tile items carry no state.
struct NoCarry {
  static constexpr bool load_in = false;
  template <class Acc>
  __device__ __forceinline__ void load(Acc&, int) const {}
};
#endif

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
    if (threadIdx.x == 0) ProducerMainloop<KT, Scheduler>::run(prm, smem, bars.pipe, sched);
  } else {
    setmaxnreg_inc<KT::kConsumerRegs>();
    const ConsumerThread th(threadIdx.x);
    ConsumerMainloop<T, KT, Scheduler> mainloop(prm, smem, bars.pipe, th);
    for (int item = sched.template initial_work<false>(); item >= 0;
         item = sched.template next_work<false>()) {
      const WorkItem it = decode_item<KT::kBlockM, Scheduler::kSegments>(prm.p, item);
      KeyTiles<KT::kBlockM, KT::kBlockN> keys(prm.p, it.w.bh, it.w.row0, prm.p.counts != nullptr);
      ConsumerAccum<D> acc;
      if constexpr (Scheduler::kSegments) {
        // A run of the tile's key tiles: it takes the tile's state from the
        // run before (load_in) and hands it to the next one, or, the tile's
        // last run, runs the epilogue.
        const int cwarp = th.cw * 4 + ((threadIdx.x >> 5) & 3);
        const bool load_in = it.te < keys.count;
        keys.restrict(it.tb, it.te);
        mainloop.run(keys, acc, SegmentLoad<D>{prm.p, it, load_in, cwarp});
        const SegmentCarry<D> carry(prm.p, it, load_in, cwarp);
        if (carry.save_out) {
          carry.save(acc, th.lane);
        } else {
          Epilogue<T, KT, Scheduler>::store(prm.p, it.w, keys, acc, smem, th);
          carry.finish(th.lane);
        }
      } else {
        mainloop.run(keys, acc, NoCarry{});
        Epilogue<T, KT, Scheduler>::store(prm.p, it.w, keys, acc, smem, th);
      }
    }
  }
#else
  __trap();
#endif
}

}  // namespace prism::cuda::attn::sm90

// The softmax state a query tile carries between its work items in the
// segment-major order (attention_segments.cu builds the items): each consumer
// thread's O fragment, running max and partial sum, saved exactly (fp32) to a
// slot of the workspace after one segment and loaded by the next one, so the
// arithmetic, and every output bit, is that of one item over all the tile's
// key tiles.
//
// Slots: the query tiles of two windows (sequence n uses slot parity n & 1,
// position s in its window). Each consumer warp has its own part of a slot and
// its own flag, so no warp waits for another. A flag holds enc(n, tb): the
// sequence and first key tile of the item that last wrote the slot, so
//   - an item continuing a tile (te < count) waits for enc(n, te), written by
//     the item before it (which the counter handed out earlier, to a CTA that is
//     running: no deadlock), then loads;
//   - a tile's first item, before writing the slot, waits until the slot's
//     previous user (the sequence before of the same parity that has position
//     s) wrote its last item, enc(m, 0): that one has loaded what it needed.
// Stores are fenced by every lane, then lane 0 releases the flag; readers
// acquire it on every lane and load through L2 (ld.global.cg).
#pragma once
#include <cstdint>
#include "cuda/attention/attention_fwd.h"
#include "cuda/attention/attention_plan.h"
#include "cuda/attention/sm90/sm90_mainloop_consumer.cuh"
#include "cuda/attention/sm90/sm90_tile_scheduler.cuh"

namespace prism::cuda::attn::sm90 {

#if PRISM_SM90_ENABLED

__device__ __forceinline__ unsigned long long ld_acquire_u64(const unsigned long long* p) {
  unsigned long long v;
  asm volatile("ld.acquire.gpu.global.u64 %0, [%1];" : "=l"(v) : "l"(p) : "memory");
  return v;
}
__device__ __forceinline__ void st_release_u64(unsigned long long* p, unsigned long long v) {
  asm volatile("st.release.gpu.global.u64 [%0], %1;" ::"l"(p), "l"(v) : "memory");
}

template <int D>
struct SegmentCarry {
  // float4 chunks of a thread's state: D/2 floats of O, then (m0, m1, l0, l1).
  static constexpr int kChunks = D / 8 + 1;
  static constexpr int kWarpFloat4s = 32 * kSegmentStateFloats / 4;  // a warp's part of a slot
  static_assert(D / 2 + 4 <= kSegmentStateFloats, "slot too small");

  bool load_in = false;   // a previous item of the tile saved the state
  bool save_out = false;  // a later item follows: save instead of the epilogue
  unsigned long long* flag = nullptr;
  float4* state = nullptr;
  unsigned long long want = 0;  // load_in: enc(n, te); else the slot's previous user's last
  unsigned long long done = 0;  // written after this item: enc(n, tb)

  static __device__ __forceinline__ unsigned long long enc(int64_t n, int tb) {
    return (static_cast<unsigned long long>(n + 1) << 32) | static_cast<unsigned>(tb);
  }

  // load_in: the item does not start the tile (te < the tile's key tiles);
  // cwarp: consumer warp 0..7.
  __device__ __forceinline__ SegmentCarry(const FwdParams& p, const WorkItem& it, bool load_in_,
                                          int cwarp) {
    const SegmentSlot sl = segment_slot(p, it);
    const int s = sl.pos;
    const int64_t n = sl.seq;
    const int64_t slot = sl.slot;
    flag = p.seg_flags + slot * kSegmentFlagsPerSlot + cwarp;
    state = reinterpret_cast<float4*>(p.seg_state) +
            (slot * kSegmentFlagsPerSlot + cwarp) * int64_t(kWarpFloat4s);
    load_in = load_in_;
    save_out = it.tb > 0;
    done = enc(n, it.tb);
    if (load_in) {
      want = enc(n, it.te);
    } else {
      // Only the last window of a (b, h) can be short, so n - 2 or n - 4 has s.
      int64_t m = n - 2;
      auto has_s = [&](int64_t q) {
        const int wq = static_cast<int>(q % p.seg_windows);
        return s < min(p.seg_window, p.n_mtiles - wq * p.seg_window);
      };
      while (m >= 0 && !has_s(m)) m -= 2;
      want = m >= 0 ? enc(m, 0) : 0ull;  // flags start at 0
    }
  }

  // Continuing item: wait for the previous item's state, then take it.
  __device__ __forceinline__ void load(ConsumerAccum<D>& acc, int lane) const {
    while (ld_acquire_u64(flag) != want) __nanosleep(64);
#pragma unroll
    for (int c = 0; c < kChunks; ++c) {
      const float4 v = __ldcg(state + c * 32 + lane);
      if (c < D / 8) {
        acc.o[4 * c] = v.x;
        acc.o[4 * c + 1] = v.y;
        acc.o[4 * c + 2] = v.z;
        acc.o[4 * c + 3] = v.w;
      } else {
        acc.m[0] = v.x;
        acc.m[1] = v.y;
        acc.l[0] = v.z;
        acc.l[1] = v.w;
      }
    }
  }

  // Not the tile's last item: hand the state to the next one.
  __device__ __forceinline__ void save(const ConsumerAccum<D>& acc, int lane) const {
    if (!load_in)
      while (ld_acquire_u64(flag) != want) __nanosleep(64);
#pragma unroll
    for (int c = 0; c < kChunks; ++c) {
      const float4 v = c < D / 8 ? make_float4(acc.o[4 * c], acc.o[4 * c + 1], acc.o[4 * c + 2],
                                               acc.o[4 * c + 3])
                                 : make_float4(acc.m[0], acc.m[1], acc.l[0], acc.l[1]);
      __stcg(state + c * 32 + lane, v);
    }
    __threadfence();
    __syncwarp();
    if (lane == 0) st_release_u64(flag, done);
  }

  // The tile's last item, after its epilogue: the slot is free again.
  __device__ __forceinline__ void finish(int lane) const {
    if (!load_in)
      while (ld_acquire_u64(flag) != want) __nanosleep(64);
    __syncwarp();
    if (lane == 0) st_release_u64(flag, done);
  }
};

// What the mainloop needs of a run (ConsumerMainloop::run's Carry): whether
// it takes the state, and the load. The slot's addresses are worked out only
// there, so nothing of them stays in registers through the mainloop.
template <int D>
struct SegmentLoad {
  const FwdParams& p;
  WorkItem it;
  bool load_in;
  int cwarp;
  __device__ __forceinline__ void load(ConsumerAccum<D>& acc, int lane) const {
    SegmentCarry<D>(p, it, true, cwarp).load(acc, lane);
  }
};

#endif  // PRISM_SM90_ENABLED

}  // namespace prism::cuda::attn::sm90

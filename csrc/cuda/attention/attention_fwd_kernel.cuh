// The sm80-mma block-sparse causal attention forward kernel (FlashAttention-2
// style). One CTA computes BLOCK_M query rows of one (batch, head) over the key
// tiles of the key blocks selected for its query block (or every visible key
// tile when dense):
//   - Q tile and K/V tiles arrive by 16-byte cp.async into XOR-swizzled shared
//     memory; K/V are double-buffered (tile t+1 loads while tile t computes);
//   - S = Q K^T and O += P V with mma.sync m16n8k16 (fp32 accumulate);
//     operands by ldmatrix (V with .trans); P stays in registers;
//   - online softmax in registers, exp2 with the scale folded into log2 units;
//   - only tiles that cross the diagonal or the key end apply the token mask;
//     the mask and the softmax steps are online_softmax.cuh's, shared with the
//     Hopper kernel;
//   - the output is staged through shared memory for 16-byte stores.
#pragma once
#include <cuda_runtime.h>
#include <math_constants.h>
#include <cstdint>
#include "cuda/attention/attention_fwd.h"
#include "cuda/attention/attention_ptx.cuh"
#include "cuda/attention/attention_traits.cuh"
#include "cuda/attention/key_tiles.cuh"
#include "cuda/attention/online_softmax.cuh"

namespace prism::cuda::attn {

// Copies `KT::kBlockN or kBlockM` rows (rows [rows_lo, rows_valid) real, the
// rest zero) of kD elements from gmem (row stride `stride`) into a swizzled
// smem tile. Rows outside the real range are never read.
template <class KT, int kRows, typename T>
__device__ __forceinline__ void copy_tile(T* smem, const T* g, int64_t stride, int rows_valid,
                                          int tid, int rows_lo = 0) {
  constexpr int kPasses = kRows / KT::kRowStep;
  const int r0 = tid / KT::kChunks;
  const int ch = tid % KT::kChunks;
  const int soff = r0 * KT::kD + ((ch ^ (r0 & 7)) << 3);
  const uint32_t sbase = smem_u32(smem + soff);
  const T* src = g + r0 * stride + ch * 8;
#pragma unroll
  for (int i = 0; i < kPasses; ++i) {
    const int r = r0 + i * KT::kRowStep;
    const bool ok = r >= rows_lo && r < rows_valid;
    cp_async_16(sbase + i * KT::kRowStep * KT::kD * 2, ok ? src : g + int64_t(rows_lo) * stride,
                ok);
    src += KT::kRowStep * stride;
  }
}

// A K or V tile of kRows keys from `start` (keys [start, start + rows_valid)
// real, the rest zero): rows of a plain view (base: the head's key 0), or,
// kPaged, of a page pool (base: the head's slot 0 of page 0), each key's page
// looked up in p.kv_pages (a row never straddles two pages).
template <class KT, int kRows, bool kPaged, typename T>
__device__ __forceinline__ void copy_kv_tile(T* smem, const T* base, int start, int64_t sn,
                                             int64_t sb, const FwdParams& p, int rows_valid,
                                             int tid) {
  if constexpr (!kPaged) {
    (void)sb;
    copy_tile<KT, kRows>(smem, base + int64_t(start) * sn, sn, rows_valid, tid);
  } else {
    constexpr int kPasses = kRows / KT::kRowStep;
    const int r0 = tid / KT::kChunks;
    const int ch = tid % KT::kChunks;
    const int soff = r0 * KT::kD + ((ch ^ (r0 & 7)) << 3);
    const uint32_t sbase = smem_u32(smem + soff);
    const int slot_mask = (1 << p.page_shift) - 1;
#pragma unroll
    for (int i = 0; i < kPasses; ++i) {
      const int r = r0 + i * KT::kRowStep;
      const bool ok = r < rows_valid;
      const int t = start + (ok ? r : 0);
      const int64_t page = __ldg(p.kv_pages + (t >> p.page_shift));
      const T* src = base + page * sb + int64_t(t & slot_mask) * sn + ch * 8;
      cp_async_16(sbase + i * KT::kRowStep * KT::kD * 2, src, ok);
    }
  }
}

template <class KT, typename T, bool kSparse, bool kPaged>
__global__ void __launch_bounds__(KT::kThreads, KT::kMinBlocks)
    attn_fwd_sm80_kernel(const FwdParams p) {
  using E = ElemTraits<T>;
  constexpr int kD = KT::kD, kBlockM = KT::kBlockM, kBlockN = KT::kBlockN;
  constexpr int kMT = KT::kMTiles, kSubN = KT::kSubN, kNT = KT::kNT, kDT = KT::kDT, kKS = KT::kKS,
                kKP = KT::kKP;

  extern __shared__ __align__(1024) unsigned char smem_raw[];
  T* sQ = reinterpret_cast<T*>(smem_raw);
  T* sK = sQ + KT::kElemsQ;                 // [stage][kBlockN][kD]
  T* sV = sK + KT::kStages * KT::kElemsKV;  // [stage][kBlockN][kD]

  // The ldmatrix addressing below XORs absolute shared addresses.
  if (smem_u32(smem_raw) & 1023u) __trap();

  const int tid = threadIdx.x;
  const int lane = tid & 31;
  const int warp = tid >> 5;

  // ---- work item: (query tile, b*hq + h) ------------------------------------
  const int BH = p.batch * p.hq;
  int qt, bh;
  if (kSparse && p.order != nullptr) {
    const int item = p.order[blockIdx.x];
    qt = item / BH;
    bh = item - qt * BH;
  } else {  // dense: longest rows (last query tiles) first
    qt = blockIdx.x / BH;
    bh = blockIdx.x - qt * BH;
    qt = p.n_mtiles - 1 - qt;
  }
  const int b = bh / p.hq;
  const int h = bh - b * p.hq;
  const int hk = h / p.group;

  const int row0 = tile_row0(qt, p.nq, p.nk, kBlockM);
  const KeyTiles<kBlockM, kBlockN> keys(p, bh, row0, kSparse);
  const int row_lo = keys.row_lo;
  const int rows_valid = keys.rows_valid;
  const int s_lo = keys.s_lo;
  const int key_end = keys.key_end;
  const int ntiles = keys.count;
  auto tile_start = [&](int t) -> int { return keys.start(t); };

  const T* gQ = static_cast<const T*>(p.q) + b * p.q_sb + h * p.q_sh + int64_t(row0) * p.q_sn;
  // Paged: the pools' page 0 (the page ids step from there); q batch is 1.
  const T* gK = static_cast<const T*>(p.k) + (kPaged ? 0 : b * p.k_sb) + hk * p.k_sh;
  const T* gV = static_cast<const T*>(p.v) + (kPaged ? 0 : b * p.v_sb) + hk * p.v_sh;

  // ---- prologue: Q and the first K/V tile ------------------------------------
  copy_tile<KT, kBlockM>(sQ, gQ, p.q_sn, rows_valid, tid, row_lo);
  int cur_start = 0, next_start = 0;
  if (ntiles > 0) {
    cur_start = tile_start(0);
    const int nvalid = p.nk - cur_start;
    copy_kv_tile<KT, kBlockN, kPaged>(sK, gK, cur_start, p.k_sn, p.k_sb, p, nvalid, tid);
    copy_kv_tile<KT, kBlockN, kPaged>(sV, gV, cur_start, p.v_sn, p.v_sb, p, nvalid, tid);
  }
  cp_async_commit();
  if (ntiles > 1) next_start = tile_start(1);
  // K/V base pointers are parked in shared memory (after the tiles) and re-read
  // once per key tile: keeps two 64-bit values out of the register file of the
  // hot loop (the 4-warp, 32-row d=128 kernel otherwise spills).
  const T** s_ptr = reinterpret_cast<const T**>(smem_raw + KT::kSmemBytes);
  if (tid == 0) {
    s_ptr[0] = gK;
    s_ptr[1] = gV;
  }

  float acc[kMT][kDT][4];
  float row_off[kMT][2];  // running exp2 offsets (online_softmax.cuh)
  float row_sum[kMT][2];  // thread-partial sums; reduced over the quad at the end
#pragma unroll
  for (int mt = 0; mt < kMT; ++mt) {
#pragma unroll
    for (int dt = 0; dt < kDT; ++dt)
#pragma unroll
      for (int e = 0; e < 4; ++e) acc[mt][dt][e] = 0.f;
    row_off[mt][0] = row_off[mt][1] = -CUDART_INF_F;
    row_sum[mt][0] = row_sum[mt][1] = 0.f;
  }

  const int warp_row = warp * 16 * kMT;  // first tile row of this warp
  // ldmatrix lane addressing (fragment layouts of mma.m16n8k16). With the
  // swizzle, chunk c of row r sits at chunk c ^ (r & 7); every row a lane
  // addresses has the same r & 7, so moving to logical chunk c ^ 2m is a XOR of
  // the byte address with m << 5 (tiles are 1024-byte aligned).
  const int a_row = lane & 15, a_chunk = lane >> 4;                                // A (Q)
  const int bk_row = (lane & 7) + ((lane >> 4) << 3), bk_chunk = (lane >> 3) & 1;  // B (K)
  const int bv_row = (lane & 7) + (((lane >> 3) & 1) << 3), bv_chunk = lane >> 4;  // B (V^T)
  const uint32_t q_addr = smem_u32(sQ + swz<kD>(warp_row + a_row, a_chunk));
  const uint32_t k_addr = smem_u32(sK + swz<kD>(bk_row, bk_chunk));
  const uint32_t v_addr = smem_u32(sV + swz<kD>(bv_row, bv_chunk));
  constexpr uint32_t kRow16 = 16 * kD * 2;  // bytes of 16 rows
  constexpr uint32_t kStageBytes = KT::kElemsKV * 2;

  uint32_t qf[KT::kQInRegs ? kMT : 1][KT::kQInRegs ? kKS : 1][4];
  const float sl2 = p.scale_log2;

  for (int t = 0; t < ntiles; ++t) {
    cp_async_wait<0>();
    __syncthreads();  // tile t landed for all; everyone is done with tile t-1
    const int stage = t & 1;
    if (t + 1 < ntiles) {
      const int nvalid = p.nk - next_start;
      const int ns = stage ^ 1;
      const T* k_base = s_ptr[0];
      const T* v_base = s_ptr[1];
      copy_kv_tile<KT, kBlockN, kPaged>(sK + ns * KT::kElemsKV, k_base, next_start, p.k_sn, p.k_sb,
                                        p, nvalid, tid);
      copy_kv_tile<KT, kBlockN, kPaged>(sV + ns * KT::kElemsKV, v_base, next_start, p.v_sn, p.v_sb,
                                        p, nvalid, tid);
    }
    cp_async_commit();
    const int start = cur_start;
    cur_start = next_start;
    if (t + 2 < ntiles) next_start = tile_start(t + 2);

    if constexpr (KT::kQInRegs) {
      if (t == 0) {
#pragma unroll
        for (int mt = 0; mt < kMT; ++mt)
#pragma unroll
          for (int ks = 0; ks < kKS; ++ks)
            ldmatrix_x4(qf[mt][ks], (q_addr ^ (ks << 5)) + mt * kRow16);
      }
    }

    const uint32_t k_st = k_addr + stage * kStageBytes;
    const uint32_t v_st = v_addr + stage * kStageBytes;
    // Only tiles that cross the diagonal or the key end apply the token mask.
    const bool need_mask = tile_needs_mask<kBlockN>(start, s_lo, key_end);

    // Rolled by default: unrolling the sub-steps makes the 32-row d=128 kernel spill.
#pragma unroll(KT::kUnrollSub ? KT::kBlockN / KT::kSubN : 1)
    for (int sub = 0; sub < kBlockN / kSubN; ++sub) {
      // ---- S = Q K^T over keys [sub * kSubN, (sub + 1) * kSubN) of the tile ----
      float s[kMT][kNT][4];
#pragma unroll
      for (int mt = 0; mt < kMT; ++mt)
#pragma unroll
        for (int nt = 0; nt < kNT; ++nt)
#pragma unroll
          for (int e = 0; e < 4; ++e) s[mt][nt][e] = 0.f;

#pragma unroll
      for (int ks = 0; ks < kKS; ++ks) {
        uint32_t a[kMT][4];
#pragma unroll
        for (int mt = 0; mt < kMT; ++mt) {
          if constexpr (KT::kQInRegs) {
#pragma unroll
            for (int e = 0; e < 4; ++e) a[mt][e] = qf[mt][ks][e];
          } else {
            ldmatrix_x4(a[mt], (q_addr ^ (ks << 5)) + mt * kRow16);
          }
        }
        const uint32_t kk = (k_st ^ (ks << 5)) + sub * kSubN * kD * 2;
#pragma unroll
        for (int np = 0; np < kNT / 2; ++np) {
          uint32_t bf[4];
          ldmatrix_x4(bf, kk + np * kRow16);
#pragma unroll
          for (int mt = 0; mt < kMT; ++mt) {
            E::mma(s[mt][2 * np], a[mt], bf[0], bf[1]);
            E::mma(s[mt][2 * np + 1], a[mt], bf[2], bf[3]);
          }
        }
      }

      if (need_mask) {
        const int key_base = start + sub * kSubN + (lane & 3) * 2;
#pragma unroll
        for (int mt = 0; mt < kMT; ++mt)
#pragma unroll
          for (int hf = 0; hf < 2; ++hf) {
            const int srow = s_lo + warp_row + mt * 16 + (lane >> 2) + hf * 8;
            mask_row_half<kNT>([&](int nt, int j) -> float& { return s[mt][nt][j]; }, hf, key_base,
                               srow, key_end);
          }
      }

      // ---- online softmax (log2 domain); P packed to 16-bit pairs ----
      uint32_t pk[kMT][kNT][2];
      bool rescale = false;
      float alpha[kMT][2];
#pragma unroll
      for (int mt = 0; mt < kMT; ++mt)
#pragma unroll
        for (int hf = 0; hf < 2; ++hf) {
          const float off = row_offset_quad<kNT>(
              [&](int nt, int j) -> float& { return s[mt][nt][j]; }, hf, row_off[mt][hf], sl2);
          const float ms = exp2_offset(off);
          alpha[mt][hf] = rescale_factor(row_off[mt][hf], ms);
          rescale |= (off != row_off[mt][hf]);
          row_off[mt][hf] = off;
          float sum = 0.f;
#pragma unroll
          for (int nt = 0; nt < kNT; ++nt) {
            const float p0 = exp2_prob(s[mt][nt][hf * 2], sl2, ms);
            const float p1 = exp2_prob(s[mt][nt][hf * 2 + 1], sl2, ms);
            sum += p0 + p1;
            pk[mt][nt][hf] = E::pack(p0, p1);
          }
          row_sum[mt][hf] = row_sum[mt][hf] * alpha[mt][hf] + sum;
        }
      // The running max rarely moves once a row has seen many keys: skip the
      // O rescale when no row of the warp changed.
      if (__any_sync(0xffffffffu, rescale)) {
#pragma unroll
        for (int mt = 0; mt < kMT; ++mt)
          rescale_rows<kDT>([&](int dt, int j) -> float& { return acc[mt][dt][j]; }, alpha[mt][0],
                            alpha[mt][1]);
      }

      // ---- O += P V  (P from registers as the A operand) ----
#pragma unroll
      for (int kp = 0; kp < kKP; ++kp) {
        uint32_t a[kMT][4];
#pragma unroll
        for (int mt = 0; mt < kMT; ++mt) {
          a[mt][0] = pk[mt][2 * kp][0];
          a[mt][1] = pk[mt][2 * kp][1];
          a[mt][2] = pk[mt][2 * kp + 1][0];
          a[mt][3] = pk[mt][2 * kp + 1][1];
        }
        const uint32_t vv = v_st + (sub * kSubN + kp * 16) * kD * 2;
#pragma unroll
        for (int dp = 0; dp < kDT / 2; ++dp) {
          uint32_t bf[4];
          ldmatrix_x4_trans(bf, vv ^ (dp << 5));
#pragma unroll
          for (int mt = 0; mt < kMT; ++mt) {
            E::mma(acc[mt][2 * dp], a[mt], bf[0], bf[1]);
            E::mma(acc[mt][2 * dp + 1], a[mt], bf[2], bf[3]);
          }
        }
      }
    }
  }

  // ---- epilogue: normalise, stage in smem (over Q), 16-byte stores ----
  cp_async_wait<0>();
  __syncthreads();
#pragma unroll
  for (int mt = 0; mt < kMT; ++mt)
#pragma unroll
    for (int hf = 0; hf < 2; ++hf) {
      const float l = quad_sum(row_sum[mt][hf]);
      const float inv = inv_row_sum(l);
      const int r = warp_row + mt * 16 + (lane >> 2) + hf * 8;
      if (p.lse != nullptr && (lane & 3) == 0 && r >= row_lo && r < rows_valid)
        p.lse[int64_t(bh) * p.lse_sh + row0 + r] = row_lse(row_off[mt][hf], l);
#pragma unroll
      for (int dt = 0; dt < kDT; ++dt) {
        const uint32_t v = E::pack(acc[mt][dt][hf * 2] * inv, acc[mt][dt][hf * 2 + 1] * inv);
        *reinterpret_cast<uint32_t*>(sQ + swz<kD>(r, dt) + (lane & 3) * 2) = v;
      }
    }
  __syncthreads();
  T* gO = static_cast<T*>(p.o) + b * p.o_sb + h * p.o_sh + int64_t(row0) * p.o_sn;
  {
    const int r0 = tid / KT::kChunks;
    const int ch = tid % KT::kChunks;
#pragma unroll
    for (int i = 0; i < kBlockM / KT::kRowStep; ++i) {
      const int r = r0 + i * KT::kRowStep;
      if (r >= row_lo && r < rows_valid)
        *reinterpret_cast<uint4*>(gO + int64_t(r) * p.o_sn + ch * 8) =
            *reinterpret_cast<const uint4*>(sQ + swz<kD>(r, ch));
    }
  }
}

}  // namespace prism::cuda::attn

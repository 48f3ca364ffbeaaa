// The logits kernel of the stored path on sm_90a: the same logits as
// logits_kernel (logit_store.cuh), bit for bit, with the 3xTF32 products on
// warpgroup mma instead of mma.sync. Each k-step of a wgmma.m64n128k8.tf32
// accumulates exactly like the m16n8k8 mma.sync it replaces (a harness check
// compares the two on scattered magnitudes), so feeding it lo*hi, hi*lo,
// hi*hi per k-step, from zeroed accumulators, gives the same bits; mma.sync
// TF32 on Hopper runs at half the tensor rate wgmma reaches, and the
// mma.sync kernel was bound by it.
//
// One CTA of two warpgroups per 128 rows of a pair: warpgroup w owns rows
// [64 w, 64 w + 64) against all 128 keys of a tile. Shared memory holds the
// band's query rows split into tf32 hi and lo, and a ring of STAGES split key
// chunks (32 dims; STAGES - 2 copies in flight ahead of the chunk read, since
// with one the wgmma waited for them; a tile's chunks accumulate back to back,
// the tensor pipe drained only at a tile's end), every tile [128 rows][32 floats] with the 128-byte
// swizzle wgmma reads (16-byte unit c of row r at r * 128 + (c ^ (r & 7)) * 16).
// Keys come split once per call in rows (split_keys_kernel<true>: a key's pk
// hi floats, then its pk lo floats), copied with cp.async. Bands are whole
// chunks (P % 32 == 0, choose_logits_kernel): a k-step loop of run-time length
// made ptxas serialise the wgmma.
#pragma once

#include <cuda_pipeline.h>
#include <cstdint>
#include <type_traits>

#include "cuda/attention/sm90/attention_sm90_ptx.cuh"
#include "cuda/estimate/async_copy.cuh"
#include "cuda/estimate/logit_store.cuh"
#include "cuda/estimate/pdl.cuh"

namespace prism::cuda::sel {

constexpr int kSm90Rows = 128;              // rows per CTA: two warpgroups of m64
constexpr int kSm90TileFloats = kTC * kKC;  // one [128][32] tf32 tile: 16 KB
constexpr int kSm90TileBytes = kSm90TileFloats * 4;
// Key chunks in shared memory: STAGES - 2 copies in flight ahead of the chunk
// the wgmma read, whose stage and the previous step's stay untouched. Four
// where they fit (the default bands), else three.
constexpr int kSm90MaxStages = 4, kSm90MinStages = 3;

// Dynamic shared memory: the query tiles of the widest band (hi and lo per
// chunk of 32 dims), `stages` stages of key tiles (hi and lo), and room to
// align the tiles to 1024 bytes.
__host__ __device__ constexpr size_t logits_sm90_smem_bytes(int pmax, int stages) {
  return 1024 + (size_t)((pmax + kKC - 1) / kKC) * 2 * kSm90TileBytes +
         (size_t)stages * 2 * kSm90TileBytes;
}

template <int STAGES>
__global__ void __launch_bounds__(kSelThreads, 1)
    logits_sm90_kernel(const SelArgs a, const float* krows) {
#if PRISM_SM90_ENABLED
  using namespace attn::sm90;
  static_assert(STAGES >= 3, "a stage read, one waited out, at least one loading");
  constexpr int kAhead = STAGES - 2;  // copy groups in flight ahead of the step's chunk
  constexpr int R = kSm90Rows, MT = R / 16;
  static_assert(kSelThreads == 2 * 128, "two warpgroups");
  // Aligned to 1024 by hand: an __align__(1024) on this extern array raised
  // the dynamic shared memory's alignment for every kernel of the file, and
  // the row kernel, sized to the last byte, no longer launched.
  extern __shared__ __align__(16) unsigned char smem_raw[];
  __shared__ int64_t qrow[R];
  __shared__ float rs[R];
  __shared__ Slabs<MT> sl;
  const uint32_t raw = smem_addr(smem_raw);
  const uint32_t qs = (raw + 1023u) & ~1023u;  // [chunk][hi, lo][128 rows][32]
  float* const qsp = reinterpret_cast<float*>(smem_raw + (qs - raw));
  const int pmax = max(a.pw[0], a.pw[1]);
  const uint32_t ks = qs + (uint32_t)((pmax + kKC - 1) / kKC) * 2 * kSm90TileBytes;
  const int t = threadIdx.x, lane = t & 31, warp = t >> 5, wg = warp >> 2;
  const CtaRows cr(a, R);
  const int64_t bk = cr.bk;
  const int nrows = cr.nrows, vmax = cr.vmax(a);
  if (t < R) qrow[t] = t < nrows ? cr.qrow(a, t) : 0;
  find_slabs<MT>(a, cr.row0, sl);
  const int pk = a.pk;
  const float* kr = krows + bk * a.nk * 2 * pk;
  // This thread's key copies of a chunk: 16-byte unit c of keys j0 + 32 i,
  // hi for i < 4 and lo after; a key's swizzled unit is the same for all i.
  const int c = t & 7, j0 = t >> 3;
  const uint32_t kdst = ks + (uint32_t)(j0 * 128 + ((c ^ (j0 & 7)) * 16));
  const char* ksrc = reinterpret_cast<const char*>(kr + (int64_t)j0 * 2 * pk + 4 * c);
  const int key32 = 32 * 2 * pk * (int)sizeof(float);  // bytes between a thread's keys
  dependent_wait();  // scales, pooled rows; the previous chunk has read the store
  for (int bi = 0; bi < a.nbands; ++bi) {
    if (a.T[bi] == 0) continue;  // the selection skips the band
    const int P = a.pw[bi], poff = a.poff[bi], nkc = (P + kKC - 1) / kKC;
    __syncthreads();  // the previous band's tiles are read
    if (t < R) rs[t] = t < nrows ? kLog2e / a.scales[(qrow[t] / a.nq) * 2 + bi] : 0.f;
    // Query rows, split: 16-byte units (row r, unit q of the band), all of a
    // thread's loads in flight before the first split.
    {
      const int units = R * (P / 4);
      for (int x0 = t; x0 < units; x0 += 4 * kSelThreads) {
        float4 v[4];
#pragma unroll
        for (int i = 0; i < 4; ++i) {
          const int x = x0 + i * kSelThreads, r = x / (P / 4), q = x % (P / 4);
          v[i] = x < units && r < nrows
                     ? *reinterpret_cast<const float4*>(a.qbar + qrow[r] * pk + poff + 4 * q)
                     : make_float4(0.f, 0.f, 0.f, 0.f);
        }
#pragma unroll
        for (int i = 0; i < 4; ++i) {
          const int x = x0 + i * kSelThreads, r = x / (P / 4), q = x % (P / 4);
          if (x >= units) break;
          float4 hi, lo;
          mma::split_tf32(v[i].x, hi.x, lo.x);
          mma::split_tf32(v[i].y, hi.y, lo.y);
          mma::split_tf32(v[i].z, hi.z, lo.z);
          mma::split_tf32(v[i].w, hi.w, lo.w);
          float* tile = qsp + (size_t)(q / 8) * 2 * kSm90TileFloats;
          const int off = r * kKC + (((q & 7) ^ (r & 7)) * 4);
          *reinterpret_cast<float4*>(tile + off) = hi;
          *reinterpret_cast<float4*>(tile + kSm90TileFloats + off) = lo;
        }
      }
    }
    // Chunk kcn of tile tc into stage buf: keys past vmax and units past the
    // band's dims are not copied (their logits are never read, their dims
    // never multiplied).
    auto issue = [&](int tc, int kcn, int buf) {
      const int c0 = tc * kTC, k0 = kcn * kKC;
      if (k0 + 4 * c < P) {
        const char* src = ksrc + (int64_t)(c0 * 2 * pk + poff + k0) * sizeof(float);
        const uint32_t dst = kdst + (uint32_t)(buf * 2 * kSm90TileBytes);
        const int left = vmax - c0 - j0;
#pragma unroll
        for (int i = 0; i < 4; ++i)
          if (32 * i < left) {
            copy16_cg(dst + 32 * i * 128, src + (int64_t)i * key32);
            copy16_cg(dst + kSm90TileBytes + 32 * i * 128,
                      src + (int64_t)i * key32 + pk * sizeof(float));
          }
      }
      __pipeline_commit();
    };
    const int ntiles = (vmax + kTC - 1) / kTC, nsteps = ntiles * nkc;
    float acc[64];
    float rlo = 0.f, rhi = 0.f;                              // this thread's rows' scales
    const int rg = 64 * wg + 16 * (warp & 3) + (lane >> 2);  // rows rg, rg + 8
    const int m = rg / 16;                                   // their slab
    float* const st = band_store(a, bk, bi);
    // The largest stored logit of each of this thread's rows (a.rowmax), over
    // the keys the row sees: the selection's z sweep then needs no probe for
    // it, and never sums a row twice.
    const bool want_max = a.rowmax != nullptr;
    const int vlo = rg < nrows ? cr.visible(a, rg) : 0;
    const int vhi = rg + 8 < nrows ? cr.visible(a, rg + 8) : 0;
    float mlo = -INFINITY, mhi = -INFINITY;
    // Step x's chunk, or an empty copy group past the last step: the waits
    // below count kAhead groups either way.
    auto issue_step = [&](int x) {
      if (x < nsteps)
        issue(x / nkc, x % nkc, x % STAGES);
      else
        __pipeline_commit();
    };
#pragma unroll
    for (int x = 0; x < kAhead; ++x) issue_step(x);
    // The query tiles and the scales are written: visible to the async proxy
    // (wgmma) and to every thread after the first step's barrier.
    asm volatile("fence.proxy.async.shared::cta;" ::: "memory");
    // A tile's chunks accumulate back to back (only step - 1's wgmma is
    // waited for, its stage refilled after the next barrier); the registers
    // are read only after the tile's last wait, so that no use of them makes
    // the compiler wait for the wgmma in flight.
    for (int tc = 0, step = 0; tc < ntiles; ++tc) {
#pragma unroll
      for (int i = 0; i < 64; ++i) {
        acc[i] = 0.f;
        reg_fence(acc[i]);  // zeroed before the first wgmma_fence
      }
      for (int kcn = 0; kcn < nkc; ++kcn, ++step) {
        const int buf = step % STAGES;
        __pipeline_wait_prior(kAhead - 1);  // this step's chunk; the later ones may fly
        asm volatile("fence.proxy.async.shared::cta;" ::: "memory");
        // The chunk has landed for every thread, and every warpgroup has
        // waited out the wgmma of step - 2, whose stage the next copy refills.
        __syncthreads();
        if (step == 0) {
          rlo = rs[rg];
          rhi = rs[rg + 8];
        }
        issue_step(step + kAhead);
        wgmma_fence();
        const uint32_t qa = qs + (uint32_t)(kcn * 2 * kSm90TileBytes + wg * 64 * 128);
        const uint32_t kb = ks + (uint32_t)(buf * 2 * kSm90TileBytes);
#pragma unroll
        for (int s = 0; s < kKC / 8; ++s) {  // whole chunks: the host asks P % 32 == 0
          const uint64_t ahi = make_desc_sw128(qa + 32 * s, 16, 1024);
          const uint64_t alo = make_desc_sw128(qa + kSm90TileBytes + 32 * s, 16, 1024);
          const uint64_t bhi = make_desc_sw128(kb + 32 * s, 16, 1024);
          const uint64_t blo = make_desc_sw128(kb + kSm90TileBytes + 32 * s, 16, 1024);
          wgmma_tf32_m64n128k8(acc, alo, bhi);
          wgmma_tf32_m64n128k8(acc, ahi, blo);
          wgmma_tf32_m64n128k8(acc, ahi, bhi);
        }
        wgmma_commit();
        if (kcn < nkc - 1) wgmma_wait<1>();
      }
      wgmma_wait<0>();
#pragma unroll
      for (int i = 0; i < 64; ++i) reg_fence(acc[i]);
      if (tc < sl.nt[m]) {
        // acc[4 j + e]: row rg + 8 (e / 2), key c0 + 8 j + 2 (lane % 4) + e % 2.
        float* p = st + (sl.base[m] + tc) * kSlabTileFloats + (lane >> 2) * kTC + 2 * (lane & 3);
        const int key0 = tc * kTC + 2 * (lane & 3);
        // Stores, and with rows' maxima the pairs' maxima (MODE 1: every key
        // seen by both rows, 2: keys past a row masked), then a tree (a chain
        // of 16 dependent maxima a row left the tile's end waiting on it).
        auto store_tile = [&](auto mode) {
          constexpr int MODE = decltype(mode)::value;
          float plo[16], phi[16];
#pragma unroll
          for (int j = 0; j < 16; ++j) {
            const float s0 = __fmul_rn(acc[4 * j], rlo), s1 = __fmul_rn(acc[4 * j + 1], rlo);
            const float s2 = __fmul_rn(acc[4 * j + 2], rhi), s3 = __fmul_rn(acc[4 * j + 3], rhi);
            *reinterpret_cast<float2*>(p + 8 * j) = make_float2(s0, s1);
            *reinterpret_cast<float2*>(p + 8 * kTC + 8 * j) = make_float2(s2, s3);
            if constexpr (MODE == 1) {
              plo[j] = fmaxf(s0, s1);
              phi[j] = fmaxf(s2, s3);
            } else if constexpr (MODE == 2) {
              const int key = key0 + 8 * j;
              plo[j] = fmaxf(key < vlo ? s0 : -INFINITY, key + 1 < vlo ? s1 : -INFINITY);
              phi[j] = fmaxf(key < vhi ? s2 : -INFINITY, key + 1 < vhi ? s3 : -INFINITY);
            }
          }
          if constexpr (MODE != 0) {
            auto level = [&](auto width) {
              constexpr int w = decltype(width)::value;
#pragma unroll
              for (int j = 0; j < w; ++j) {
                plo[j] = fmaxf(plo[j], plo[j + w]);
                phi[j] = fmaxf(phi[j], phi[j + w]);
              }
            };
            level(std::integral_constant<int, 8>{});
            level(std::integral_constant<int, 4>{});
            level(std::integral_constant<int, 2>{});
            level(std::integral_constant<int, 1>{});
            mlo = fmaxf(mlo, plo[0]);
            mhi = fmaxf(mhi, phi[0]);
          }
        };
        if (!want_max)
          store_tile(std::integral_constant<int, 0>{});
        else if (tc * kTC + kTC <= min(vlo, vhi))
          store_tile(std::integral_constant<int, 1>{});
        else
          store_tile(std::integral_constant<int, 2>{});
      }
    }
    if (want_max) {  // a row's four threads hold its keys; every thread is here
#pragma unroll
      for (int o = 1; o <= 2; o <<= 1) {
        mlo = fmaxf(mlo, __shfl_xor_sync(0xffffffffu, mlo, o));
        mhi = fmaxf(mhi, __shfl_xor_sync(0xffffffffu, mhi, o));
      }
      if ((lane & 3) == 0) {
        if (rg < nrows) a.rowmax[qrow[rg] * 2 + bi] = mlo;
        if (rg + 8 < nrows) a.rowmax[qrow[rg + 8] * 2 + bi] = mhi;
      }
    }
  }
#endif
}

}  // namespace prism::cuda::sel

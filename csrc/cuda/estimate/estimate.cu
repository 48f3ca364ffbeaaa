// Prism block-mask estimation on the GPU: pooling, energy temperatures,
// dual-band block scores, top-p / top-k selection, sink/diagonal, lists.
//
// Three launches, no host synchronisation:
//  1. pool_kernel: one CTA per (b, head, block) of Q and of K (each kv head
//     pooled once). Streams the rows (a full block through cp.async into
//     shared memory, else with vector loads), fp32 sums, writes the
//     block mean band-packed (band 0 dims, then band 1 dims, each zero-padded
//     to a multiple of 8) and the block's per-band sums of squares.
//  2. temps_kernel: one CTA per (b, query head) reduces the energy partials in
//     a fixed order and writes the per-band logit scales (and temps).
//  3. one of two selection kernels (plan_selection picks it), both on
//     consecutive (query block, query head of the group) rows of one kv head,
//     both computing the block scores on tensor cores (select_common.cuh) and
//     applying the same exact rule to the same bits:
//     select_kernel (rows up to 1024 key blocks): per band the logit tile
//     [M x visible] of M <= 16 rows stays in shared memory, then one warp per
//     row does the softmax and the threshold search of select_row.cuh and ORs
//     the kept set into a per-row bitmap; finally every row writes mask, count
//     and ascending indices.
//     select_tiled_kernel (longer rows, select_tiled.cuh): 32 rows per CTA and
//     two CTAs per SM where they fit (else 64 or 16 rows, one per SM), logits
//     never held whole: a logits kernel first stores them (logit_store.cuh,
//     or logits_sm90.cuh on sm_90a; kv-head chunks that fit its budget) and the sweeps read them
//     back, or where even one kv head's logits would not fit, each sweep recomputes them tile by
//     tile.
// The call's geometry and workspace layout: estimate_geometry.cuh; the first
// two kernels: pool_kernels.cuh; the internal knobs of the harnesses
// (PRISM_TUNING_VARIANTS builds only): estimate_internal.h.
#include <cuda_runtime.h>
#include <algorithm>
#include <climits>
#include <cmath>
#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <utility>

#include "cuda/common/cuda_check.h"
#include "cuda/common/dtype_traits.cuh"
#include "cuda/common/dynamic_smem.h"
#include "cuda/common/kernel_image.h"
#include "cuda/common/view_args.cuh"
#include "cuda/cuda_backend.h"
#include "cuda/estimate/estimate_geometry.cuh"
#include "cuda/estimate/estimate_internal.h"
#include "cuda/estimate/logit_store.cuh"
#include "cuda/estimate/logits_sm90.cuh"
#include "cuda/estimate/pdl.cuh"
#include "cuda/estimate/pool_kernels.cuh"
#include "cuda/estimate/select_common.cuh"
#include "cuda/estimate/select_row.cuh"
#include "cuda/estimate/select_tiled.cuh"

namespace prism::cuda {
namespace {

using namespace sel;
using namespace est;

// Launches `kernel` on `stream`, overlapping its start with the previous
// kernel's tail when `pdl` is set (the kernel must call dependent_wait()).
template <class... Params, class... Args>
cudaError_t launch_pdl(bool pdl, void (*kernel)(Params...), unsigned grid, unsigned threads,
                       size_t smem, cudaStream_t stream, Args&&... args) {
  cudaLaunchConfig_t cfg{};
  cfg.gridDim = dim3(grid);
  cfg.blockDim = dim3(threads);
  cfg.dynamicSmemBytes = smem;
  cfg.stream = stream;
  cudaLaunchAttribute attr[1];
  attr[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
  attr[0].val.programmaticStreamSerializationAllowed = 1;
  cfg.attrs = attr;
  cfg.numAttrs = pdl ? 1 : 0;
  return cudaLaunchKernelEx(&cfg, kernel, std::forward<Args>(args)...);
}

// ----------------------------------------------------------------------------
// 3. scores + selection
constexpr int kMaxRows = 16;  // row kernel: one m16 tile of query rows

// Row bookkeeping of one CTA, in shared memory so the loops need no divisions.
struct RowInfo {
  int64_t qrow[kMaxRows];  // (b * Hq + head) * nq + query block
  int V[kMaxRows];         // visible key blocks
  float rs[kMaxRows];      // log2(e) / scale of the current band
};

template <bool TOPK>
__global__ void __launch_bounds__(kSelThreads, 2) select_kernel(const SelArgs a) {
  extern __shared__ __align__(16) float smem[];
  float4* qf = reinterpret_cast<float4*>(smem);  // [max pw / 8][hi, lo][32 lanes]
  float* ks = smem + (size_t)max(a.pw[0], a.pw[1]) * 2 * kMaxRows;        // [2][kTileFloats]
  float* lg = ks + 2 * kTileFloats;                                       // [M][LS]
  uint32_t* bits = reinterpret_cast<uint32_t*>(lg + (size_t)a.M * a.LS);  // [M][W]
  uint32_t* scratch = bits + (size_t)a.M * a.W;                           // [warps][32]
  __shared__ RowInfo ri;
  const int t = threadIdx.x, lane = t & 31, warp = t >> 5;
  const int64_t bk = blockIdx.x / a.upb;                // b * Hkv + kv head
  const int u = a.upb - 1 - (int)(blockIdx.x % a.upb);  // long rows first
  const int b = (int)(bk / a.Hkv), hk = (int)(bk % a.Hkv);
  const int row0 = u * a.M;
  const int nrows = min(a.M, a.nq * a.G - row0);
  const int vmax = visible_blocks((row0 + nrows - 1) / a.G, a.off, a.nk);
  for (int x = t; x < a.M * a.W; x += kSelThreads) bits[x] = 0u;
  if (t < nrows) {
    const int head = hk * a.G + (row0 + t) % a.G, blk = (row0 + t) / a.G;
    ri.qrow[t] = ((int64_t)b * a.Hq + head) * a.nq + blk;
    ri.V[t] = visible_blocks(blk, a.off, a.nk);
  }
  dependent_wait();  // scales, pooled rows: written by the previous kernels
  const float* kb = a.kbar + bk * a.nk * a.pk;

  for (int bi = 0; bi < a.nbands; ++bi) {
    const int P = a.pw[bi], poff = a.poff[bi];  // P is a multiple of 8
    __syncthreads();                            // ri written; previous band's rows selected
    if (t < nrows) {
      const int64_t bh = ri.qrow[t] / a.nq;
      ri.rs[t] = kLog2e / a.scales[bh * 2 + bi];
    }
    __syncthreads();
    load_query_frags<1>(qf, a.qbar, ri.qrow, nrows, a.pk, poff, P);
    score_tiles<1, false>(
        kb, a.pk, poff, P, nrows, ri.rs, vmax, 0, (vmax + kTC - 1) / kTC, qf, ks,
        [&](int r, int j, float l) { lg[(size_t)r * a.LS + j] = l; }, [](int) {});
    for (int r = warp; r < nrows; r += kSelWarps) {
      const int V = ri.V[r];
      float* L = lg + (size_t)r * a.LS;
      if (V <= select::kRegKeys && (V & 31) && lane >= (V & 31))
        L[(V & ~31) + lane] = -INFINITY;  // pad the last word
      __syncwarp();
      select::select_row<TOPK>(L, V, a.T[bi], bits + (size_t)r * a.W, scratch + warp * 32);
    }
  }
  __syncthreads();
  for (int r = warp; r < nrows; r += kSelWarps)
    write_row(a, bits + (size_t)r * a.W, ri.qrow[r], ri.V[r]);
}

using SelKernel = void (*)(SelArgs);

template <bool STORED>
SelKernel tiled_kernel(bool topk, int mt) {
  if (topk)
    return mt == 4   ? select_tiled_kernel<true, 4, STORED>
           : mt == 2 ? select_tiled_kernel<true, 2, STORED>
                     : select_tiled_kernel<true, 1, STORED>;
  return mt == 4   ? select_tiled_kernel<false, 4, STORED>
         : mt == 2 ? select_tiled_kernel<false, 2, STORED>
                   : select_tiled_kernel<false, 1, STORED>;
}

// The logits kernel of the stored path, 16 * mt rows per CTA: query
// fragments and a double buffer of split key tiles in shared memory.
using LogitsKernel = void (*)(SelArgs, const float*);
LogitsKernel logits_kernel_for(int mt) {
  return mt == 8   ? logits_kernel<8>
         : mt == 4 ? logits_kernel<4>
         : mt == 2 ? logits_kernel<2>
                   : logits_kernel<1>;
}
size_t logits_smem_bytes(int mt, int pmax) {
  return sizeof(float) * ((size_t)pmax * mt * 32 + 4u * kTileFloats);
}

// The stored path's logits kernel on the current device: the most rows per
// CTA that fit its shared memory (128 rows, one CTA per SM: each key tile
// copied serves four times the selection kernel's 32, and the kernel is bound
// by those copies through L2; on an H200 at 512K it took 1.75 ms against 1.90
// with 64 rows and two CTAs per SM), or rows = 0 where none fits (wide bands on a GPU
// with little shared memory: the tiled kernel then recomputes its logits).
// The one place that decides; the workspace size and the launch both ask it.
struct LogitsChoice {
  LogitsKernel kernel = nullptr;
  size_t smem = 0;
  int rows = 0;
  bool key_rows = false;  // logits_sm90_kernel: the keys split in rows (split_keys_kernel<true>)
};
// What the plans ask of the current device (its shared-memory limits and
// compute capability) and of a kernel on it (its static shared memory, its
// image): asked of the runtime once per device and kernel, then kept, since
// none of it can change while the process runs. Every call and workspace
// query used to ask again, up to a dozen runtime calls on the host path of
// each estimate.
struct DeviceLimits {
  int optin = 0, per_sm = 0, cc_major = 0, sms = 0;
};
// The memo both use: ask(value) runs, outside the lock, only when `known`
// has no entry for `key` yet.
template <class Key, class Value, class Ask>
cudaError_t remembered(std::mutex& mu, std::map<Key, Value>& known, const Key& key, Value& out,
                       Ask&& ask) {
  {
    const std::lock_guard<std::mutex> lock(mu);
    const auto it = known.find(key);
    if (it != known.end()) {
      out = it->second;
      return cudaSuccess;
    }
  }
  Value v{};
  PRISM_CUDA_TRY(ask(v));
  const std::lock_guard<std::mutex> lock(mu);
  known[key] = v;
  out = v;
  return cudaSuccess;
}
cudaError_t device_limits(DeviceLimits& lim) {
  int dev = 0;
  PRISM_CUDA_TRY(cudaGetDevice(&dev));
  static std::mutex mu;
  static std::map<int, DeviceLimits> known;
  return remembered(mu, known, dev, lim, [dev](DeviceLimits& l) {
    PRISM_CUDA_TRY(cudaDeviceGetAttribute(&l.optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev));
    PRISM_CUDA_TRY(
        cudaDeviceGetAttribute(&l.per_sm, cudaDevAttrMaxSharedMemoryPerMultiprocessor, dev));
    PRISM_CUDA_TRY(cudaDeviceGetAttribute(&l.sms, cudaDevAttrMultiProcessorCount, dev));
    return cudaDeviceGetAttribute(&l.cc_major, cudaDevAttrComputeCapabilityMajor, dev);
  });
}
// A kernel's attributes on the current device (static shared memory, the
// binary version of the image that runs).
cudaError_t kernel_attributes(const void* kernel, cudaFuncAttributes& fa) {
  int dev = 0;
  PRISM_CUDA_TRY(cudaGetDevice(&dev));
  static std::mutex mu;
  static std::map<std::pair<int, const void*>, cudaFuncAttributes> known;
  return remembered(mu, known, std::make_pair(dev, kernel), fa,
                    [kernel](cudaFuncAttributes& a) { return cudaFuncGetAttributes(&a, kernel); });
}
cudaError_t static_smem(const void* kernel, size_t& bytes) {
  cudaFuncAttributes fa{};
  PRISM_CUDA_TRY(kernel_attributes(kernel, fa));
  bytes = fa.sharedSizeBytes;
  return cudaSuccess;
}

// sm_90a: the logits on warpgroup mma, where this build has its image (its
// static shared memory exists only in the sm_90a pass), the bands are whole
// chunks of 32 dims (the default bands of d 64, 128 and 256 are) and its
// tiles fit, with the deepest key ring that fits (four stages for the
// default bands of d 128). lc.rows stays 0 where it cannot run.
cudaError_t choose_sm90_logits(const Geometry& g, const DeviceLimits& lim, LogitsChoice& lc) {
  lc = LogitsChoice{};
  const est_internal::EstimateKnobs& kn = est_internal::knobs();
  if (lim.cc_major != 9 || kn.logits_mma || kn.logits_mt || g.pw[0] % kKC != 0 ||
      g.pw[1] % kKC != 0)
    return cudaSuccess;
  const int Dmax = std::max(g.pw[0], g.pw[1]);
  for (int stages = kSm90MaxStages; stages >= kSm90MinStages; --stages) {
    if (kn.logits_stages && stages != kn.logits_stages) continue;
    const LogitsKernel lk = stages == kSm90MaxStages ? logits_sm90_kernel<kSm90MaxStages>
                                                     : logits_sm90_kernel<kSm90MinStages>;
    cudaFuncAttributes fa{};
    PRISM_CUDA_TRY(kernel_attributes(reinterpret_cast<const void*>(lk), fa));
    const size_t smem = logits_sm90_smem_bytes(Dmax, stages);
    if (has_sm90a_image(fa) && smem + fa.sharedSizeBytes <= (size_t)lim.optin) {
      lc = LogitsChoice{lk, smem, kSm90Rows, true};
      return cudaSuccess;
    }
  }
  return cudaSuccess;
}

// The path of g's rows on the current device, and the logits kernel where
// it stores logits (rows = 0 otherwise). The tiled kernel takes rows from
// kStoredEarlyFrom key blocks where the sm_90a logits kernel runs
// (stored_early_shape), else past the row kernel's register path
// (g.tiled_from). The one place that decides; the workspace size and the
// launch both ask it.
cudaError_t choose_logits_kernel(Geometry& g, LogitsChoice& lc) {
  lc = LogitsChoice{};
  const bool early = stored_early_shape(g);
  if (!early && !store_wanted(g)) return cudaSuccess;
  DeviceLimits lim;
  PRISM_CUDA_TRY(device_limits(lim));
  LogitsChoice sm90;
  PRISM_CUDA_TRY(choose_sm90_logits(g, lim, sm90));
  if (early && sm90.rows > 0) g.tiled_from = kStoredEarlyFrom;
  if (!store_wanted(g)) return cudaSuccess;
  if (sm90.rows > 0) {
    lc = sm90;
    return cudaSuccess;
  }
  const int Dmax = std::max(g.pw[0], g.pw[1]);
  const est_internal::EstimateKnobs& kn = est_internal::knobs();
  for (int mt : {8, 4, 2, 1}) {
    if (kn.logits_mt && mt != kn.logits_mt) continue;
    const LogitsKernel lk = logits_kernel_for(mt);
    size_t fixed = 0;
    PRISM_CUDA_TRY(static_smem(reinterpret_cast<const void*>(lk), fixed));
    const size_t smem = logits_smem_bytes(mt, Dmax);
    if (smem + fixed <= (size_t)lim.optin) {
      lc = LogitsChoice{lk, smem, 16 * mt, false};
      return cudaSuccess;
    }
  }
  return cudaSuccess;
}

// Shared memory the driver keeps per resident CTA (1 KiB on sm_80-sm_90).
constexpr size_t kSmemReservedPerCta = 1024;

// The selection kernel and its launch shape.
struct SelPlan {
  SelKernel kernel;
  size_t smem;  // dynamic shared memory
  int M;        // rows per CTA
  int LS, W;    // row kernel's logit row stride; bitmap words per row
  int cap;      // tiled kernel: keys stored per row
  bool stored;  // tiled kernel: logits_kernel stores the logits first
  LogitsChoice logits;
};

// Rows per CTA of the row kernel, at most `fit` (what its shared memory
// holds). Each of its warps selects rows [warp, warp + 8, ...] one after the
// other, so a CTA takes about ceil(M / 8) row times. 16 rows share each key
// tile and stay the choice of any launch of more than one wave; a short chunk
// of queries over long keys (less than one wave of 16-row CTAs) runs on 8 rows
// per CTA, one per warp, on twice the CTAs, where that still fits in one wave.
// A wave: the CTAs all SMs hold at once, at most two each (__launch_bounds__)
// and as many as their shared memory allows (smem(m): a CTA's bytes with m
// rows). Each row is selected the same way whatever M is, so the selections
// do not depend on it.
template <class Smem>
int row_kernel_rows(const Geometry& g, int fit, int sms, int per_sm, Smem&& smem) {
  const int knob = est_internal::knobs().row_rows;
  if (knob > 0) return std::min(fit, knob);
  if (fit <= kSelWarps || sms <= 0) return fit;
  const int64_t rows = (int64_t)g.nq * g.G, pairs = (int64_t)g.B * g.Hkv;
  auto one_wave = [&](int m) {
    const int64_t per = std::min<int64_t>(2, (int64_t)per_sm / (smem(m) + kSmemReservedPerCta));
    return pairs * ((rows + m - 1) / m) <= std::max<int64_t>(1, per) * sms;
  };
  return one_wave(fit) && one_wave(kSelWarps) ? kSelWarps : fit;
}

// The row kernel keeps M whole logit rows in shared memory, which is fastest
// while every row fits its register path; beyond that M would shrink with the
// rows, and the tiled kernel (whose shared memory does not grow with them)
// takes over. Throws for shapes neither can take. `stored`: the workspace
// holds a logit store, filled by `logits` (choose_logits_kernel).
cudaError_t plan_selection(const Geometry& g, bool topk, bool stored, const LogitsChoice& logits,
                           int optin, int per_sm, int sms, SelPlan& sp) {
  const int Dmax = std::max(g.pw[0], g.pw[1]);
  sp.W = (g.nk + 31) / 32;
  if (!uses_tiled_kernel(g)) {
    sp.kernel = topk ? select_kernel<true> : select_kernel<false>;
    sp.LS = (g.nk + 31) & ~31;  // rows padded to whole 32-key words
    const size_t fixed = sizeof(float) * ((size_t)Dmax * 2 * kMaxRows + 2u * kTileFloats) +
                         sizeof(uint32_t) * 32u * kSelWarps;  // + per-warp search scratch
    const size_t per_row = sizeof(float) * (size_t)sp.LS + sizeof(uint32_t) * (size_t)sp.W;
    const size_t cap = (size_t)optin - sizeof(RowInfo);
    int M = 0;
    if (cap > fixed) M = (int)std::min<size_t>(kMaxRows, (cap - fixed) / per_row);
    // prefer 2 CTAs per SM on big rows when it costs little
    const size_t two_per_sm = 112u * 1024u - sizeof(RowInfo);
    if (M == kMaxRows && fixed + kMaxRows * per_row > two_per_sm)
      M = (int)std::max<size_t>(1, (two_per_sm - fixed) / per_row);
    require_arg(M >= 1, kWhere,
                "too many key blocks for shared memory (nk=" + std::to_string(g.nk) + ")");
    M = row_kernel_rows(g, M, sms, per_sm,
                        [&](int m) { return fixed + (size_t)m * per_row + sizeof(RowInfo); });
    sp.M = M;
    sp.smem = fixed + (size_t)M * per_row;
    return cudaSuccess;
  }
  require_arg(g.nk <= kMaxTiledKeys, kWhere,
              "too many key blocks (nk=" + std::to_string(g.nk) + ")");
  sp.LS = 0;
  const size_t dyn_min =
      sizeof(uint32_t) * kSelWarps * (size_t)sp.W;  // write stage: a bitmap per warp
  sp.M = 0;
  sp.stored = stored && logits.rows > 0;
  sp.logits = logits;
  // 32 rows per CTA with at least two CTAs per SM first (two were 14% faster
  // than 64 rows with one at 256K-1M on an H200: twice the warps hide the
  // per-key dependency chains; tiled_ctas_per_sm), then the most rows per
  // CTA that fit.
  for (int mt : {2, 4, 1}) {
    if (est_internal::knobs().stress_mt && mt != est_internal::knobs().stress_mt) continue;
    const SelKernel kern = sp.stored ? tiled_kernel<true>(topk, mt) : tiled_kernel<false>(topk, mt);
    size_t fixed = 0;
    PRISM_CUDA_TRY(static_smem(reinterpret_cast<const void*>(kern), fixed));
    const size_t dyn = std::max(tiled_smem_bytes(mt, Dmax, sp.stored), dyn_min);
    const size_t per_cta = dyn + fixed;
    const bool two_per_sm = 2 * (per_cta + kSmemReservedPerCta) <= (size_t)per_sm;
    if (mt == 2 && !two_per_sm && !est_internal::knobs().stress_mt) continue;
    if (per_cta <= (size_t)optin) {
      sp.kernel = kern;
      sp.smem = dyn;
      sp.M = 16 * mt;
      break;
    }
  }
  require_arg(sp.M > 0, kWhere,
              "too many key blocks or dims for shared memory (nk=" + std::to_string(g.nk) + ")");
  // Stored keys sit in the row's workspace scratch after the band bitmaps.
  sp.cap = tiled_cap(g);
  return cudaSuccess;
}

uint32_t topp_threshold(float tau) {
  if (!(tau > 0.f)) return 0u;  // NaN or <= 0: nothing ranked first is < tau
  const double x = std::ceil((double)tau * 2147483648.0);
  return x >= 4294967295.0 ? 0xffffffffu : (uint32_t)x;
}
uint32_t topk_threshold(int32_t k) { return k <= 0 ? 0u : (uint32_t)k; }

// The workspace's scratch of one call (ws_layout()).
struct Scratch {
  float* qbar;
  float* kbar;
  float* eq;
  float* ek;
  float* scales;
  uint32_t* tiled;
  float* ksplit;
  float* logits;
  float* rowmax;
};

Scratch carve(void* workspace, const WsLayout& wl) {
  char* ws = static_cast<char*>(workspace);
  const auto at = [&](size_t offset) { return reinterpret_cast<float*>(ws + offset); };
  return {at(wl.qbar),   at(wl.kbar),   at(wl.eq),
          at(wl.ek),     at(wl.scales), reinterpret_cast<uint32_t*>(ws + wl.tiled),
          at(wl.ksplit), at(wl.logits), at(wl.rowmax)};
}

// 1. pooling: one CTA per (b, head, block) of Q and of K.
PoolArgs pool_args(const Geometry& g) {
  PoolArgs a{};
  static_cast<QkShape&>(a) = g;
  a.b0 = g.band[0];
  a.b1 = g.band[1];
  a.pk = g.pk;
  a.poff1 = g.poff[1];
  return a;
}

// One pool_kernel launch over the units of `a`, vector width `vec`.
cudaError_t launch_pool_units(const PoolArgs& a, DType dtype, int vec, cudaStream_t stream) {
  const int64_t units = a.nqu + (int64_t)a.B * a.Hkv * a.nkb;
  if (units == 0) return cudaSuccess;
  require_arg(units < INT_MAX, kWhere, "too many blocks");
  const int cpr = a.d / vec;
  const int threads = cpr <= 256 ? 256 : 512;
  // Row-group sums [RG][d] floats; where full blocks go through shared
  // memory, also a block's rows, [8 * RG][d] elements (pool_kernel).
  const int elem = dtype == DType::F32 ? 4 : 2, rg = threads / cpr;
  const size_t rg_d = (size_t)rg * a.d;
  const bool rows_in_smem = pool_rows_in_smem(threads, vec * elem, rg, a.blk);
  const size_t smem = rg_d * (sizeof(float) + (rows_in_smem ? 8 * elem : 0));
  const bool row_pages = a.row_pages();
  dispatch_float_dtype(dtype, [&](auto tag) {
    using Tag = decltype(tag);
    dispatch_vec(vec, [&](auto v) {
      constexpr int V = decltype(v)::value;
      auto launch = [&](auto kernel) { kernel<<<(unsigned)units, threads, smem, stream>>>(a); };
      if (threads == 512)
        launch(row_pages ? pool_kernel<Tag, V, 512, true> : pool_kernel<Tag, V, 512, false>);
      else
        launch(row_pages ? pool_kernel<Tag, V, 256, true> : pool_kernel<Tag, V, 256, false>);
    });
  });
  return cudaGetLastError();
}

// A key page pool the pooling reads in place: power-of-two pages of 16 to
// 256 keys, k of page_size rows, page ids.
void require_key_pages(const QkvView& k, const KvPages& pages) {
  const int ps = pages.page_size;
  require_arg(ps >= 16 && ps <= 256 && (ps & (ps - 1)) == 0 && k.n == ps &&
                  (pages.tokens == 0 || pages.ids != nullptr),
              kWhere, "paged keys: a pool of power-of-two pages of 16 to 256 keys, page ids");
}

// The pooling kernel's page lookup (PoolArgs::k_pages), or none.
void set_key_pages(PoolArgs& a, const KvPages* pages) {
  if (pages == nullptr) return;
  a.k_pages = pages->ids;
  a.page_shift = pages->shift();
}

// Every query block, and key blocks [stored, nk) (the others come from key
// summaries). Q and K units take their own view's vector width, so a key
// block's sums do not depend on q (summarize_keys pools it the same way).
cudaError_t launch_pool(const QkvView& q, const QkvView& k, const Geometry& g, const Scratch& s,
                        int stored, cudaStream_t stream, const KvPages* pages) {
  PoolArgs a = pool_args(g);
  a.q = view_arg(q);
  a.k = view_arg(k);
  set_key_pages(a, pages);
  a.nqu = (int64_t)g.B * g.Hq * g.nq;
  a.kb0 = stored;
  a.nkb = g.nk - stored;
  a.kstride = g.nk;
  a.kout = 0;
  a.qbar = s.qbar;
  a.kbar = s.kbar;
  a.eq = s.eq;
  a.ek = s.ek;
  const int vq = view_vec(q), vk = view_vec(k);
  if (vq == vk) return launch_pool_units(a, q.dtype, vq, stream);
  PoolArgs qa = a, ka = a;
  qa.nkb = 0;
  ka.nqu = 0;
  PRISM_CUDA_TRY(launch_pool_units(qa, q.dtype, vq, stream));
  return launch_pool_units(ka, k.dtype, vk, stream);
}

// Key blocks [0, keys.blocks) of every (b, kv head) from the summaries into
// the workspace rows the pooling would have written.
cudaError_t copy_summaries(const KeySummaries& keys, const Geometry& g, const Scratch& s,
                           cudaStream_t stream) {
  const size_t rows = (size_t)g.B * g.Hkv;
  const size_t row = sizeof(float) * (size_t)g.pk, erow = sizeof(float) * 3;
  const size_t n = (size_t)keys.blocks, cap = (size_t)keys.capacity, nk = (size_t)g.nk;
  PRISM_CUDA_TRY(cudaMemcpy2DAsync(s.kbar, nk * row, keys.rows, cap * row, n * row, rows,
                                   cudaMemcpyDeviceToDevice, stream));
  return cudaMemcpy2DAsync(s.ek, nk * erow, keys.energies, cap * erow, n * erow, rows,
                           cudaMemcpyDeviceToDevice, stream);
}

// With keys.append: key blocks [keys.blocks, full) that launch_pool just wrote
// to the workspace, copied into the same rows of the summaries (what
// summarize_keys writes for them: a full key block's pooling depends only on
// its keys and k's vector width, see PoolArgs).
cudaError_t write_back_summaries(const KeySummaries& keys, int64_t full, const Geometry& g,
                                 const Scratch& s, cudaStream_t stream) {
  const size_t rows = (size_t)g.B * g.Hkv;
  const size_t row = sizeof(float) * (size_t)g.pk, erow = sizeof(float) * 3;
  const size_t b0 = (size_t)keys.blocks, n = (size_t)(full - keys.blocks);
  const size_t cap = (size_t)keys.capacity, nk = (size_t)g.nk;
  char* dst = static_cast<char*>(keys.rows) + b0 * row;
  const char* src = reinterpret_cast<const char*>(s.kbar) + b0 * row;
  PRISM_CUDA_TRY(cudaMemcpy2DAsync(dst, cap * row, src, nk * row, n * row, rows,
                                   cudaMemcpyDeviceToDevice, stream));
  char* edst = reinterpret_cast<char*>(keys.energies) + b0 * erow;
  const char* esrc = reinterpret_cast<const char*>(s.ek) + b0 * erow;
  return cudaMemcpy2DAsync(edst, cap * erow, esrc, nk * erow, n * erow, rows,
                           cudaMemcpyDeviceToDevice, stream);
}

// 2. temperatures: one CTA per (b, query head).
cudaError_t launch_temps(const EstimateParams& p, const Geometry& g, const Scratch& s, float* temps,
                         bool pdl, cudaStream_t stream) {
  TempArgs a{};
  static_cast<QkShape&>(a) = g;
  a.eq = s.eq;
  a.ek = s.ek;
  a.prism = g.nbands == 2 ? 1 : 0;
  a.calibrate = p.calibrate ? 1 : 0;
  a.temp_high = p.temp_high;
  a.temp_low = p.temp_low;
  a.D0 = g.band[0].w0 + g.band[0].w1;
  a.D1 = g.band[1].w0 + g.band[1].w1;
  a.scales = s.scales;
  a.temps = temps;
  return launch_pdl(pdl, temps_kernel, (unsigned)(g.B * g.Hq), 256, 0, stream, a);
}

// 3. scores + selection + outputs: the kernel sp planned, M rows per CTA.
cudaError_t launch_select(const EstimateParams& p, const Geometry& g, const SelPlan& sp,
                          const Scratch& s, const WsLayout& wl, const BlockMaskOut& out, bool pdl,
                          cudaStream_t stream) {
  SelArgs a{};
  a.qbar = s.qbar;
  a.kbar = s.kbar;
  a.scales = s.scales;
  a.Hq = g.Hq;
  a.Hkv = g.Hkv;
  a.G = g.G;
  a.nq = g.nq;
  a.nk = g.nk;
  a.off = g.off;
  a.pk = g.pk;
  for (int bi = 0; bi < 2; ++bi) {
    a.poff[bi] = g.poff[bi];
    a.pw[bi] = g.pw[bi];
  }
  a.nbands = g.nbands;
  const bool topk = p.selection == Selection::TopK;
  a.T[0] = topk ? topk_threshold(p.topk_high) : topp_threshold(p.tau_high);
  a.T[1] = topk ? topk_threshold(p.topk_low) : topp_threshold(p.tau_low);
  a.M = sp.M;
  a.vec_out = (g.nk % 4 == 0 && reinterpret_cast<uintptr_t>(out.mask) % 4 == 0) ? 1 : 0;
  const int64_t upb = ((int64_t)g.nq * g.G + sp.M - 1) / sp.M;
  a.upb = (int)upb;
  a.LS = sp.LS;
  a.W = sp.W;
  a.cap = sp.cap;
  a.stress = est_internal::knobs().stress;
  a.sink = p.force_sink ? 1 : 0;
  a.diag = p.force_diag ? 1 : 0;
  a.mask = out.mask;
  a.counts = out.counts;
  a.indices = out.indices;
  a.tscratch = s.tiled;
  a.tstride = wl.tiled_stride;
  const int64_t pairs = (int64_t)g.B * g.Hkv;
  const int64_t grid = pairs * upb;
  require_arg(grid < INT_MAX, kWhere, "too many rows");
  size_t room = 0;  // the plans keep within it
  if (sp.smem > 48u * 1024u)
    PRISM_CUDA_TRY(dynamic_smem_room(reinterpret_cast<const void*>(sp.kernel), room));
  if (!sp.stored)
    return launch_pdl(pdl, sp.kernel, (unsigned)grid, kSelThreads, sp.smem, stream, a);

  // Stored path: per chunk of pairs, their logits, then their selection.
  a.lstore = s.logits;
  a.band_floats = wl.band_floats;
  const LogitsChoice& lc = sp.logits;
  // Only logits_sm90_kernel writes the rows' maxima; after the mma.sync
  // logits kernel the selection probes for them.
  a.rowmax = lc.key_rows && est_internal::knobs().stored_rowmax ? s.rowmax : nullptr;
  SelArgs la = a;
  la.upb = (int)(((int64_t)g.nq * g.G + lc.rows - 1) / lc.rows);
  if (lc.smem > 48u * 1024u)
    PRISM_CUDA_TRY(dynamic_smem_room(reinterpret_cast<const void*>(lc.kernel), room));
  const int64_t nsplit = pairs * g.nk * g.pk;
  PRISM_CUDA_TRY(launch_pdl(pdl, lc.key_rows ? split_keys_kernel<true> : split_keys_kernel<false>,
                            (unsigned)std::min<int64_t>((nsplit + 255) / 256, 4096), 256, 0, stream,
                            (const float*)s.kbar, s.ksplit, nsplit, g.pk));
  for (int64_t bk0 = 0; bk0 < pairs; bk0 += wl.store_pairs) {
    const int64_t n = std::min<int64_t>(wl.store_pairs, pairs - bk0);
    a.bk0 = la.bk0 = bk0;
    PRISM_CUDA_TRY(launch_pdl(pdl, lc.kernel, (unsigned)(n * la.upb), kSelThreads, lc.smem, stream,
                              la, (const float*)s.ksplit));
    PRISM_CUDA_TRY(
        launch_pdl(pdl, sp.kernel, (unsigned)(n * upb), kSelThreads, sp.smem, stream, a));
  }
  return cudaSuccess;
}

}  // namespace

namespace est_internal {
#ifdef PRISM_TUNING_VARIANTS
namespace {
EstimateKnobs g_knobs;  // set by the harnesses only
}  // namespace
const EstimateKnobs& knobs() { return g_knobs; }
void set_stage_limit(int n) { g_knobs.stage_limit = n; }
void set_select_path(int path) { g_knobs.select_path = path; }
void set_store_budget(long long bytes) { g_knobs.store_budget = bytes; }
void set_row_rows(int m) { g_knobs.row_rows = m; }
void set_logits_mt(int mt) { g_knobs.logits_mt = mt; }
void set_logits_mma(int on) { g_knobs.logits_mma = on; }
void set_logits_stages(int n) { g_knobs.logits_stages = n; }
void set_stored_rowmax(int on) { g_knobs.stored_rowmax = on; }
void tiled_sweep_counts(unsigned long long out[4]) {
  unsigned long long zero[kCountKinds] = {};
  cudaMemcpyFromSymbol(out, g_tiles_swept, sizeof(zero));
  cudaMemcpyToSymbol(g_tiles_swept, zero, sizeof(zero));
}
int slab_tiles(int s, int rows, int G, int off, int nk) {
  return sel::slab_tiles(s, rows, G, off, nk);
}
long long slab_prefix_tiles(int s0, int rows, int G, int off, int nk) {
  return sel::slab_prefix_tiles(s0, rows, G, off, nk);
}
void set_tiled_stress(int flags, int cap, int mtiles) {
  g_knobs.stress = flags;
  g_knobs.stress_cap = cap;
  g_knobs.stress_mt = mtiles;
}
#else
const EstimateKnobs& knobs() {
  static constexpr EstimateKnobs kDefaults{};
  return kDefaults;
}
#endif
}  // namespace est_internal

size_t estimate_workspace_bytes(const QkvView& q, const QkvView& k, const EstimateParams& p) {
  Geometry g = make_geometry(q, k, p);
  LogitsChoice lc;
  // A device that cannot be asked gets room for the store (and the stored
  // path where it may run): estimate() then reports the error, or takes no
  // more than this.
  if (choose_logits_kernel(g, lc) != cudaSuccess) {
    cudaGetLastError();  // leave no error state behind
    if (stored_early_shape(g)) g.tiled_from = kStoredEarlyFrom;
    return ws_layout(g, true).total;
  }
  return ws_layout(g, lc.rows > 0).total;
}

cudaError_t estimate(const QkvView& q, const QkvView& k, const EstimateParams& p,
                     const BlockMaskOut& out, void* workspace, cudaStream_t stream,
                     const KeySummaries* keys, const KvPages* pages) {
  if (pages != nullptr) {
    require_arg(q.batch == 1, kWhere, "paged keys: one sequence (q batch 1)");
    require_key_pages(k, *pages);
  }
  // Paged: the geometry of the sequence's keys; the pool's data and strides.
  QkvView kl = k;
  if (pages != nullptr) {
    kl.batch = 1;
    kl.n = pages->tokens;
  }
  Geometry g = make_geometry(q, kl, p);
  require_arg(q.data != nullptr && k.data != nullptr, kWhere, "q or k data is null");
  require_arg(out.counts && out.indices, kWhere, "counts and indices must be non-null");
  require_arg(workspace != nullptr, kWhere, "workspace is null");
  const int64_t stored = keys ? keys->blocks : 0;
  require_arg(stored >= 0 && stored <= g.Nk / g.blk, kWhere,
              "key summaries cover more blocks than k has full blocks");
  require_arg(stored == 0 || (keys->rows && keys->energies && keys->capacity >= stored), kWhere,
              "key summaries without room for their blocks");
  const int64_t full = g.Nk / g.blk;  // a partial last block is never written back
  const bool append = keys && keys->append && full > stored;
  require_arg(
      !append || (keys->rows && keys->energies && keys->capacity >= full), kWhere,
      "key summaries without room for the " + std::to_string(full) + " full key blocks to append");
  LogitsChoice lc;
  PRISM_CUDA_TRY(choose_logits_kernel(g, lc));
  const WsLayout wl = ws_layout(g, lc.rows > 0);
  const Scratch s = carve(workspace, wl);

  DeviceLimits lim;
  PRISM_CUDA_TRY(device_limits(lim));
  const bool pdl = lim.cc_major >= 9;
  SelPlan sp{};
  PRISM_CUDA_TRY(plan_selection(g, p.selection == Selection::TopK, wl.store_pairs > 0, lc,
                                lim.optin, lim.per_sm, lim.sms, sp));

  const int stages = est_internal::knobs().stage_limit;
  if (stored > 0) PRISM_CUDA_TRY(copy_summaries(*keys, g, s, stream));
  PRISM_CUDA_TRY(launch_pool(q, k, g, s, (int)stored, stream, pages));
  if (append) PRISM_CUDA_TRY(write_back_summaries(*keys, full, g, s, stream));
  if (stages <= 1) return cudaGetLastError();
  // After the write-back copies the temperatures follow a copy, not the
  // pooling kernel: launched plainly (nothing to overlap).
  PRISM_CUDA_TRY(launch_temps(p, g, s, out.temps, pdl && !append, stream));
  if (stages <= 2) return cudaGetLastError();
  PRISM_CUDA_TRY(launch_select(p, g, sp, s, wl, out, pdl, stream));
  return cudaGetLastError();
}

int64_t key_summary_row_floats(int64_t d, const EstimateParams& p) {
  QkvView v{};
  v.dtype = DType::F32;
  v.batch = v.heads = v.n = 1;
  v.d = d;
  return make_geometry(v, v, p).pk;
}

cudaError_t summarize_keys(const QkvView& k, const EstimateParams& p, int64_t nblocks,
                           const KeySummaries& out, int64_t first, cudaStream_t stream,
                           const KvPages* pages) {
  if (nblocks <= 0) return cudaSuccess;
  require_arg(k.data != nullptr && out.rows != nullptr && out.energies != nullptr, kWhere,
              "k or summaries data is null");
  require_arg(p.block >= 1 && first >= 0 && first + nblocks <= out.capacity, kWhere,
              "key blocks outside k or the summaries");
  // Plain: k's view starts at block `first`, so its blocks [0, nblocks) go to
  // rows [first, ...). Paged: the pool through the sequence's page ids, its
  // blocks [first, first + nblocks) by their own index.
  if (pages != nullptr) {
    require_key_pages(k, *pages);
    require_arg(pages->tokens >= (first + nblocks) * p.block, kWhere,
                "key blocks outside the paged keys");
  } else {
    require_arg(k.n >= nblocks * p.block, kWhere, "key blocks outside k or the summaries");
  }
  const int64_t b0 = pages != nullptr ? first : 0;
  QkvView v = k;
  v.batch = pages != nullptr ? 1 : k.batch;
  v.n = (b0 + nblocks) * p.block;  // full blocks only
  const Geometry g = make_geometry(v, v, p);
  PoolArgs a = pool_args(g);
  a.q = a.k = view_arg(v);
  set_key_pages(a, pages);
  a.nqu = 0;
  a.kb0 = (int)b0;
  a.nkb = (int)nblocks;
  a.kstride = out.capacity;
  a.kout = first - b0;
  a.kbar = static_cast<float*>(out.rows);
  a.ek = out.energies;
  return launch_pool_units(a, k.dtype, view_vec(k), stream);
}

}  // namespace prism::cuda

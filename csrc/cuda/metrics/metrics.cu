// Quality metrics on the GPU: attention-mass recall of a block list for
// sampled query rows, and the two squared norms of a relative error.
#include <cuda_runtime.h>
#include <climits>
#include <cmath>
#include <cstdint>
#include <string>

#include "cuda/common/cuda_check.h"
#include "cuda/common/dtype_traits.cuh"
#include "cuda/common/dynamic_smem.h"
#include "cuda/common/view_args.cuh"
#include "cuda/cuda_backend.h"

namespace prism::cuda {
namespace {

constexpr unsigned kFull = 0xffffffffu;

// ----------------------------------------------------------------------------
// mass_recall: one CTA per sampled row; 32 groups of 8 lanes, each group owns
// keys t = group, group + 32, ...; online softmax (max, total, selected) per
// group, merged in a fixed order by thread 0. Deterministic.
struct RecallArgs : QkShape {
  ViewArg q, k;
  const int32_t* counts;
  const int64_t* row_start;
  const int32_t* indices;
  const int64_t* rows;
  float scale;
  float* recall;
};

constexpr int kRecallThreads = 256;
constexpr int kLanesPerKey = 8;
constexpr int kGroups = kRecallThreads / kLanesPerKey;

__device__ __forceinline__ void online_add(float x, bool sel, float& m, float& s, float& ss) {
  if (x > m) {
    const float c = expf(m - x);  // m = -inf: c = 0
    s = s * c + 1.f;
    ss = ss * c + (sel ? 1.f : 0.f);
    m = x;
  } else {
    const float e = expf(x - m);
    s += e;
    if (sel) ss += e;
  }
}

template <class Tag, int VEC>
__global__ void __launch_bounds__(kRecallThreads) recall_kernel(const RecallArgs a) {
  using S = typename Tag::storage;
  extern __shared__ __align__(16) float qv[];  // [d], then nk flag bytes
  __shared__ float gm[kGroups], gs[kGroups], gss[kGroups];
  uint8_t* fl = reinterpret_cast<uint8_t*>(qv + a.d);
  const int t = threadIdx.x;
  const int64_t n = blockIdx.x;
  const int64_t b = a.rows[n * 3], h = a.rows[n * 3 + 1], r = a.rows[n * 3 + 2];
  if (b < 0 || b >= a.B || h < 0 || h >= a.Hq || r < 0 || r >= a.Nq) {
    if (t == 0) a.recall[n] = NAN;
    return;
  }
  const int i = (int)((r + a.shift) / a.blk);
  const int off = a.nk - a.nq;
  const S* qrow = a.q.row<S>(b, h, r);
  for (int kk = t; kk < a.d; kk += kRecallThreads) qv[kk] = load_one<Tag>(qrow + kk);
  const int64_t rowid = (b * a.Hq + h) * a.nq + i;
  if (a.counts == nullptr) {
    for (int j = t; j < a.nk; j += kRecallThreads) fl[j] = j <= i + off ? 1 : 0;
  } else {
    for (int j = t; j < a.nk; j += kRecallThreads) fl[j] = 0;
    __syncthreads();
    const int cnt = a.counts[rowid];
    const int32_t* idx = a.indices + a.row_start[rowid];
    for (int c = t; c < cnt && c < a.nk; c += kRecallThreads) {
      const int j = idx[c];
      if (j >= 0 && j < a.nk) fl[j] = 1;
    }
  }
  __syncthreads();
  const int64_t s_last = (int64_t)(a.Nk - a.Nq) + r;  // keys t <= s_last
  const int group = t / kLanesPerKey, sub = t % kLanesPerKey;
  const S* kbase = a.k.row<S>(b, h / a.G, 0);
  const int nch = a.d / VEC;
  float m = -INFINITY, s = 0.f, ss = 0.f;
  auto dot_key = [&](int64_t tk) {
    const S* kr = kbase + tk * a.k.sn;
    float dot = 0.f;
    for (int c = sub; c < nch; c += kLanesPerKey) {
      float x[VEC];
      load_vec<Tag, VEC>(kr + c * VEC, x);
#pragma unroll
      for (int v = 0; v < VEC; ++v) dot = fmaf(x[v], qv[c * VEC + v], dot);
    }
    return dot;
  };
  // The loop bound is uniform per CTA, so every lane reaches the shuffles.
  for (int64_t base = 0; base <= s_last; base += 2 * kGroups) {
    const int64_t t0 = base + group, t1 = base + kGroups + group;
    const bool l0 = t0 <= s_last, l1 = t1 <= s_last;
    float d0 = l0 ? dot_key(t0) : 0.f;  // two keys in flight per group
    float d1 = l1 ? dot_key(t1) : 0.f;
#pragma unroll
    for (int o = kLanesPerKey / 2; o; o >>= 1) {
      d0 += __shfl_xor_sync(kFull, d0, o);
      d1 += __shfl_xor_sync(kFull, d1, o);
    }
    if (l0) online_add(d0 * a.scale, fl[t0 / a.blk] != 0, m, s, ss);
    if (l1) online_add(d1 * a.scale, fl[t1 / a.blk] != 0, m, s, ss);
  }
  if (sub == 0) {
    gm[group] = m;
    gs[group] = s;
    gss[group] = ss;
  }
  __syncthreads();
  if (t == 0) {
    float M = -INFINITY;
    for (int g = 0; g < kGroups; ++g)
      if (gs[g] > 0.f) M = fmaxf(M, gm[g]);
    float tot = 0.f, sel = 0.f;
    for (int g = 0; g < kGroups; ++g) {
      if (!(gs[g] > 0.f)) continue;
      const float c = expf(gm[g] - M);
      tot += gs[g] * c;
      sel += gss[g] * c;
    }
    a.recall[n] = tot > 0.f ? sel / tot : NAN;
  }
}

// ----------------------------------------------------------------------------
// diff_norms: stage 1, a fixed number of CTAs each reduces a fixed range of
// rows into 2 doubles; stage 2, one CTA adds the partials in order.
struct DiffArgs {
  ViewArg a, b;
  int64_t H, N, D, rows, rows_per;
};

constexpr int kDiffThreads = 256;
constexpr int kMaxPartials = 1024;

// Stage-1 CTAs: depends on the shape only, so the results are reproducible.
int diff_blocks(int64_t rows) {
  const int64_t want = (rows + 7) / 8;
  return static_cast<int>(want < kMaxPartials ? want : kMaxPartials);
}

template <class TA, class TB>
__global__ void __launch_bounds__(kDiffThreads)
    diff_partial_kernel(const DiffArgs a, double* partials) {
  using SA = typename TA::storage;
  using SB = typename TB::storage;
  __shared__ double red[2][kDiffThreads / 32];
  const int t = threadIdx.x, lane = t & 31, warp = t >> 5;
  const int64_t r0 = (int64_t)blockIdx.x * a.rows_per;
  const int64_t r1 = min(r0 + a.rows_per, a.rows);
  double dd = 0.0, bb = 0.0;
  for (int64_t row = r0 + warp; row < r1; row += kDiffThreads / 32) {
    const int64_t n = row % a.N, bh = row / a.N;
    const int64_t h = bh % a.H, b = bh / a.H;
    const SA* pa = a.a.row<SA>(b, h, n);
    const SB* pb = a.b.row<SB>(b, h, n);
    for (int64_t c = lane; c < a.D; c += 32) {
      const double x = load_one<TA>(pa + c), y = load_one<TB>(pb + c);
      const double df = x - y;
      dd = fma(df, df, dd);
      bb = fma(y, y, bb);
    }
  }
#pragma unroll
  for (int o = 16; o; o >>= 1) {
    dd += __shfl_xor_sync(kFull, dd, o);
    bb += __shfl_xor_sync(kFull, bb, o);
  }
  if (lane == 0) {
    red[0][warp] = dd;
    red[1][warp] = bb;
  }
  __syncthreads();
  if (t == 0) {
    double sd = 0.0, sb = 0.0;
    for (int w = 0; w < kDiffThreads / 32; ++w) {
      sd += red[0][w];
      sb += red[1][w];
    }
    partials[2 * blockIdx.x] = sd;
    partials[2 * blockIdx.x + 1] = sb;
  }
}

__global__ void __launch_bounds__(kDiffThreads)
    diff_final_kernel(const double* partials, int nb, double* out) {
  __shared__ double red[2][kDiffThreads];
  const int t = threadIdx.x;
  double sd = 0.0, sb = 0.0;
  for (int i = t; i < nb; i += kDiffThreads) {
    sd += partials[2 * i];
    sb += partials[2 * i + 1];
  }
  red[0][t] = sd;
  red[1][t] = sb;
  __syncthreads();
  for (int w = kDiffThreads / 2; w > 0; w >>= 1) {
    if (t < w) {
      red[0][t] += red[0][t + w];
      red[1][t] += red[1][t + w];
    }
    __syncthreads();
  }
  if (t == 0) {
    out[0] = red[0][0];
    out[1] = red[1][0];
  }
}

bool is_float_dtype(DType t) { return t == DType::F32 || t == DType::F16 || t == DType::BF16; }

}  // namespace

cudaError_t mass_recall(const QkvView& q, const QkvView& k, const BlockList& list,
                        const AttentionParams& p, const int64_t* rows, int64_t num_rows,
                        float* recall, cudaStream_t stream) {
  constexpr const char* where = "prism::cuda::mass_recall";
  require_arg(is_float_dtype(q.dtype) && k.dtype == q.dtype, where,
              "q and k must share dtype F32, F16 or BF16");
  require_arg(q.data && k.data, where, "q or k data is null");
  require_arg(q.batch >= 1 && q.batch == k.batch, where, "q and k need the same batch >= 1");
  require_arg(q.heads >= 1 && k.heads >= 1 && q.heads % k.heads == 0, where,
              "q heads must be a multiple of k heads");
  require_arg(q.d == k.d && q.d >= 1 && q.d <= 1024, where,
              "head_dim must match and be in [1, 1024]");
  require_arg(q.n >= 1 && k.n >= q.n && k.n <= INT_MAX / 2, where,
              "need 1 <= q length <= k length");
  require_arg(p.block >= 1, where, "block must be >= 1");
  require_arg(num_rows >= 0 && num_rows < INT_MAX, where, "num_rows out of range");
  require_arg((list.counts == nullptr) == (list.indices == nullptr) &&
                  (list.counts == nullptr) == (list.row_start == nullptr),
              where, "counts, row_start and indices must all be set or all be null");
  if (num_rows == 0) return cudaGetLastError();
  require_arg(rows != nullptr && recall != nullptr, where, "rows or recall is null");
  RecallArgs a{};
  static_cast<QkShape&>(a) = qk_shape(q, k, p.block);
  a.q = view_arg(q);
  a.k = view_arg(k);
  a.counts = list.counts;
  a.row_start = list.row_start;
  a.indices = list.indices;
  a.rows = rows;
  a.recall = recall;
  a.scale = p.softmax_scale != 0.f ? p.softmax_scale : (float)(1.0 / std::sqrt((double)q.d));
  const int vec = view_vec(k);
  // The query row and one selection flag per key block: past the default 48
  // KB (about 48K key blocks: 1M tokens at block 16) the kernel opts in to
  // the device's larger shared memory (dynamic_smem_room).
  const size_t smem = sizeof(float) * (size_t)a.d + (size_t)a.nk;
  cudaError_t e = cudaSuccess;
  bool fits = true;
  dispatch_float_dtype(q.dtype, [&](auto tag) {
    using Tag = decltype(tag);
    dispatch_vec(vec, [&](auto v) {
      auto kernel = recall_kernel<Tag, decltype(v)::value>;
      size_t room = 0;
      e = dynamic_smem_room(reinterpret_cast<const void*>(kernel), room);
      fits = e != cudaSuccess || smem <= room;
      if (e == cudaSuccess && fits) kernel<<<(unsigned)num_rows, kRecallThreads, smem, stream>>>(a);
    });
  });
  PRISM_CUDA_TRY(e);
  require_arg(fits, where, "too many key blocks for this device's shared memory");
  return cudaGetLastError();
}

size_t diff_norms_workspace_bytes(const QkvView& a, const QkvView& b) {
  (void)b;
  const int64_t rows = a.batch * a.heads * a.n;
  if (rows <= 0 || a.d <= 0) return 0;
  return 2 * sizeof(double) * static_cast<size_t>(diff_blocks(rows));
}

cudaError_t diff_norms(const QkvView& a, const QkvView& b, double* out, void* workspace,
                       cudaStream_t stream) {
  constexpr const char* where = "prism::cuda::diff_norms";
  require_arg(is_float_dtype(a.dtype) && is_float_dtype(b.dtype), where,
              "dtypes must be F32, F16 or BF16");
  require_arg(a.batch == b.batch && a.heads == b.heads && a.n == b.n && a.d == b.d, where,
              "a and b shapes differ");
  require_arg(a.batch >= 0 && a.heads >= 0 && a.n >= 0 && a.d >= 0, where, "negative shape");
  require_arg(out != nullptr, where, "out is null");
  const int64_t rows = a.batch * a.heads * a.n;
  if (rows == 0 || a.d == 0) {
    PRISM_CUDA_TRY(cudaMemsetAsync(out, 0, 2 * sizeof(double), stream));
    return cudaGetLastError();
  }
  require_arg(a.data && b.data, where, "a or b data is null");
  require_arg(workspace != nullptr, where, "workspace is null (diff_norms_workspace_bytes)");
  const int nb = diff_blocks(rows);
  const DiffArgs d{view_arg(a), view_arg(b), a.heads, a.n, a.d, rows, (rows + nb - 1) / nb};
  // The caller's per-call workspace: concurrent calls never share partials.
  double* partials = static_cast<double*>(workspace);
  dispatch_float_dtype(a.dtype, [&](auto ta) {
    dispatch_float_dtype(b.dtype, [&](auto tb) {
      diff_partial_kernel<decltype(ta), decltype(tb)><<<nb, kDiffThreads, 0, stream>>>(d, partials);
    });
  });
  PRISM_CUDA_TRY(cudaGetLastError());
  diff_final_kernel<<<1, kDiffThreads, 0, stream>>>(partials, nb, out);
  return cudaGetLastError();
}

}  // namespace prism::cuda

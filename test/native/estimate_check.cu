// GPU harness for prism::cuda::estimate: compares both selection kernels (row
// and tiled) against a double-precision host reference (exact masks on rows
// whose selection is well separated from the thresholds), checks invariants
// and determinism on every row, checks the tiled kernel bit for bit against
// the row kernel (stress switches included), then times the estimate at long
// contexts. `--small`: reduced shapes, no timing (sanitizers). `--long`: only
// the path equality on mid-size shapes and the 128K..1M timing and equality.
// `--data rope|random|const`: the input of the long-context timing and
// equality (default rope; const: every score of a row ties).
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <functional>
#include <numeric>
#include <stdexcept>
#include <string>
#include <vector>

#include "check_common.h"
#include "cuda/attention/sm90/attention_sm90_ptx.cuh"
#include "cuda/common/view_args.cuh"
#include "cuda/cuda_backend.h"
#include "cuda/estimate/estimate_internal.h"
#include "cuda/estimate/tf32_mma.cuh"

using namespace prism;
using check::HostTensor;

namespace {

struct Case {
  std::string name;
  int B, Hq, Hkv, Nq, Nk, d;
  DType dt;
  int layout;  // memory layout of the test tensors
  int gen;     // 0 random normal, 1 RoPE structured
  EstimateParams p;

  // Options changed from mk's defaults, one group each, chained in a case table.
  Case interleaved() const {
    Case c = *this;
    c.p.layout = RopeLayout::Interleaved;
    return c;
  }
  Case mean_pool() const {
    Case c = *this;
    c.p.method = Method::MeanPool;
    return c;
  }
  Case top_k(int high, int low) const {
    Case c = *this;
    c.p.selection = Selection::TopK;
    c.p.topk_high = high;
    c.p.topk_low = low;
    return c;
  }
  Case top_p(float high, float low = EstimateParams().tau_low) const {
    Case c = *this;
    c.p.tau_high = high;
    c.p.tau_low = low;
    return c;
  }
  // Uncalibrated: the given temperatures.
  Case fixed_temps(float high, float low = EstimateParams().temp_low) const {
    Case c = *this;
    c.p.calibrate = false;
    c.p.temp_high = high;
    c.p.temp_low = low;
    return c;
  }
  // Neither the sink block nor the diagonal block forced into the selection.
  Case unforced() const {
    Case c = *this;
    c.p.force_sink = false;
    c.p.force_diag = false;
    return c;
  }
  Case bands(int high_dims, int low_dims) const {
    Case c = *this;
    c.p.high_dims = high_dims;
    c.p.low_dims = low_dims;
    return c;
  }
};

struct Ref {
  std::vector<uint8_t> mask;
  std::vector<int> counts;
  std::vector<uint8_t> sep;
  std::vector<double> temps;
};

std::vector<int> band_dims(const EstimateParams& p, int d, int bi) {
  std::vector<int> v;
  if (p.method == Method::MeanPool) {
    for (int k = 0; k < d; ++k) v.push_back(k);
    return v;
  }
  const int w = bi == 0 ? p.high_dims : p.low_dims;
  if (p.layout == RopeLayout::Half) {
    if (bi == 0) {
      for (int k = 0; k < w / 2; ++k) v.push_back(k);
      for (int k = d / 2; k < d / 2 + w / 2; ++k) v.push_back(k);
    } else {
      for (int k = d / 2 - w / 2; k < d / 2; ++k) v.push_back(k);
      for (int k = d - w / 2; k < d; ++k) v.push_back(k);
    }
  } else {
    if (bi == 0)
      for (int k = 0; k < w; ++k) v.push_back(k);
    else
      for (int k = d - w; k < d; ++k) v.push_back(k);
  }
  return v;
}

Ref reference(const Case& c, const HostTensor& Q, const HostTensor& K) {
  const EstimateParams& p = c.p;
  const int blk = p.block, d = c.d, G = c.Hq / c.Hkv;
  // Spec step 1: blocks on the absolute token grid. Query block i holds rows
  // [i*B - shift, (i+1)*B - shift) clipped to [0, Nq); key block j rows [j*B, (j+1)*B).
  const int shift = (c.Nk - c.Nq) % blk;
  const int nk = (c.Nk + blk - 1) / blk, nq = nk - (c.Nk - c.Nq) / blk, off = nk - nq;
  std::vector<double> qb((size_t)c.B * c.Hq * nq * d, 0.0), kb((size_t)c.B * c.Hkv * nk * d, 0.0);
  auto pool = [&](const HostTensor& X, int H, int N, int nb, int sh, std::vector<double>& out) {
    for (int b = 0; b < c.B; ++b)
      for (int h = 0; h < H; ++h)
        for (int i = 0; i < nb; ++i) {
          const int r0 = std::max(0, i * blk - sh), r1 = std::min(N, (i + 1) * blk - sh);
          double* o = &out[(((size_t)b * H + h) * nb + i) * d];
          for (int r = r0; r < r1; ++r)
            for (int k = 0; k < d; ++k) o[k] += X.at(b, h, r, k);
          for (int k = 0; k < d; ++k) o[k] /= (r1 - r0);
        }
  };
  pool(Q, c.Hq, c.Nq, nq, shift, qb);
  pool(K, c.Hkv, c.Nk, nk, 0, kb);
  const bool prism = p.method == Method::Prism;
  const int nb = prism ? 2 : 1;
  std::vector<int> dims[2] = {band_dims(p, d, 0), band_dims(p, d, 1)};
  Ref R;
  R.mask.assign((size_t)c.B * c.Hq * nq * nk, 0);
  R.counts.assign((size_t)c.B * c.Hq * nq, 0);
  R.sep.assign((size_t)c.B * c.Hq * nq, 1);
  R.temps.assign((size_t)c.B * c.Hq * 2, 0.0);
  std::vector<double> lg(nk), pr(nk);
  std::vector<int> idx(nk);
  for (int b = 0; b < c.B; ++b)
    for (int h = 0; h < c.Hq; ++h) {
      const int hk = h / G;
      const double* qh = &qb[(((size_t)b * c.Hq + h) * nq) * d];
      const double* kh = &kb[(((size_t)b * c.Hkv + hk) * nk) * d];
      double sc[2], tt[2];
      if (!prism) {
        tt[0] = p.calibrate ? 1.0 : p.temp_high;
        sc[0] = std::sqrt((double)d) * tt[0];
        if (!(sc[0] > 0) || !std::isfinite(sc[0])) {
          sc[0] = std::sqrt((double)d);
          tt[0] = 1.0;
        }
        sc[1] = sc[0];
        tt[1] = tt[0];
      } else {
        auto energy = [&](const double* x, int n, const std::vector<int>* dl) {
          double s = 0;
          for (int i = 0; i < n; ++i) {
            if (!dl) {
              for (int k = 0; k < d; ++k) s += x[(size_t)i * d + k] * x[(size_t)i * d + k];
            } else
              for (int k : *dl) s += x[(size_t)i * d + k] * x[(size_t)i * d + k];
          }
          return s;
        };
        const double rq = std::sqrt(energy(qh, nq, nullptr) / (nq * (double)d));
        const double rk = std::sqrt(energy(kh, nk, nullptr) / (nk * (double)d));
        for (int bi = 0; bi < 2; ++bi) {
          const double Db = (double)dims[bi].size();
          double t;
          if (p.calibrate) {
            const double rqb = std::sqrt(energy(qh, nq, &dims[bi]) / (nq * Db));
            const double rkb = std::sqrt(energy(kh, nk, &dims[bi]) / (nk * Db));
            t = std::sqrt(Db / d) * (rqb / std::max(rq, 1e-6)) * (rkb / std::max(rk, 1e-6));
          } else {
            t = bi == 0 ? p.temp_high : p.temp_low;
          }
          double s = std::sqrt(Db) * t;
          if (!(s > 0) || !std::isfinite(s)) {
            s = std::sqrt(Db);
            t = 1.0;
          }
          sc[bi] = s;
          tt[bi] = t;
        }
      }
      R.temps[((size_t)b * c.Hq + h) * 2] = tt[0];
      R.temps[((size_t)b * c.Hq + h) * 2 + 1] = tt[1];
      for (int i = 0; i < nq; ++i) {
        const size_t row = ((size_t)b * c.Hq + h) * nq + i;
        uint8_t* mrow = &R.mask[row * nk];
        const int V = i + off + 1;
        bool sep = true;
        for (int bi = 0; bi < nb; ++bi) {
          double mx = -1e300;
          for (int j = 0; j < V; ++j) {
            double s = 0;
            for (int k : dims[bi]) s += qh[(size_t)i * d + k] * kh[(size_t)j * d + k];
            lg[j] = s / sc[bi];
            mx = std::max(mx, lg[j]);
          }
          double z = 0;
          for (int j = 0; j < V; ++j) {
            pr[j] = std::exp(lg[j] - mx);
            z += pr[j];
          }
          for (int j = 0; j < V; ++j) pr[j] /= z;
          for (int j = 0; j < V; ++j) idx[j] = j;
          std::sort(idx.begin(), idx.begin() + V,
                    [&](int a, int bb) { return pr[a] != pr[bb] ? pr[a] > pr[bb] : a < bb; });
          int Kk = 0;
          if (p.selection == Selection::TopP) {
            const double tau = bi == 0 ? p.tau_high : p.tau_low;
            double S = 0, margin = 1e300;
            for (int r = 0; r < V; ++r) {
              margin = std::min(margin, std::fabs(S - tau));
              if (S < tau) {
                mrow[idx[r]] = 1;
                ++Kk;
              }
              S += pr[idx[r]];
            }
            margin = std::min(margin, std::fabs(S - tau));
            if (margin < 2e-4) sep = false;
          } else {
            const int kk = bi == 0 ? p.topk_high : p.topk_low;
            Kk = std::max(0, std::min(kk, V));
            for (int r = 0; r < Kk; ++r) mrow[idx[r]] = 1;
          }
          if (Kk > 0 && Kk < V) {
            const double a = pr[idx[Kk - 1]], bb = pr[idx[Kk]];
            if (!(a - bb > 2e-4 * a + 1e-30)) sep = false;
          }
        }
        if (p.force_sink) mrow[0] = 1;
        if (p.force_diag) mrow[i + off] = 1;
        int cnt = 0;
        for (int j = 0; j < nk; ++j) cnt += mrow[j];
        R.counts[row] = cnt;
        R.sep[row] = sep;
      }
    }
  return R;
}

struct GpuOut {
  std::vector<uint8_t> mask;
  std::vector<int> counts, indices;
  std::vector<float> temps;
  bool operator==(const GpuOut& o) const {
    return mask == o.mask && counts == o.counts && indices == o.indices &&
           std::memcmp(temps.data(), o.temps.data(), temps.size() * 4) == 0;
  }
};

// Selection kernels (est_internal::set_select_path).
// kTiledPath recomputes its logits in every sweep, kStoredPath reads them from
// the logit store (the automatic choice for long rows).
constexpr int kAutoPath = 0, kRowPath = 1, kTiledPath = 2, kStoredPath = 3;

// The workspace depends on the selection kernel (the tiled one keeps per-row
// scratch there, the stored path also its logits); the checks switch kernels
// after allocating, so size for the stored path, the largest.
size_t tiled_workspace_bytes(const QkvView& q, const QkvView& k, const EstimateParams& p) {
  cuda::est_internal::set_select_path(kStoredPath);
  const size_t bytes = cuda::estimate_workspace_bytes(q, k, p);
  cuda::est_internal::set_select_path(kAutoPath);
  return bytes;
}
const char* path_name(int path) {
  return path == kRowPath      ? "row"
         : path == kTiledPath  ? "tiled"
         : path == kStoredPath ? "stored"
                               : "auto";
}

GpuOut run_gpu(const Case& c, const HostTensor& Q, const HostTensor& K, void* ws, size_t wsb,
               uint8_t* dm, int* dc, int* di, float* dt) {
  const BlockGrid grid(c.Nq, c.Nk, c.p.block);
  const int nq = (int)grid.nq, nk = (int)grid.nk;
  const size_t rows = (size_t)c.B * c.Hq * nq;
  CK(cudaMemset(dm, 0xCD, rows * nk));
  CK(cudaMemset(dc, 0x7B, rows * 4));
  CK(cudaMemset(di, 0x5A, rows * nk * 4));
  CK(cudaMemset(dt, 0xFF, (size_t)c.B * c.Hq * 2 * 4));
  CK(cudaMemset(ws, 0xFF, wsb));
  BlockMaskOut out;
  out.mask = dm;
  out.counts = dc;
  out.indices = di;
  out.temps = dt;
  CK(cuda::estimate(Q.view(), K.view(), c.p, out, ws, 0));
  CK(cudaDeviceSynchronize());
  GpuOut g;
  g.mask.resize(rows * nk);
  g.counts.resize(rows);
  g.indices.resize(rows * nk);
  g.temps.resize((size_t)c.B * c.Hq * 2);
  CK(cudaMemcpy(g.mask.data(), dm, g.mask.size(), cudaMemcpyDeviceToHost));
  CK(cudaMemcpy(g.counts.data(), dc, rows * 4, cudaMemcpyDeviceToHost));
  CK(cudaMemcpy(g.indices.data(), di, rows * nk * 4, cudaMemcpyDeviceToHost));
  CK(cudaMemcpy(g.temps.data(), dt, g.temps.size() * 4, cudaMemcpyDeviceToHost));
  return g;
}

// Both selection kernels on one case: each against the reference, invariants
// and determinism; then the two outputs must be identical.
bool run_case(const Case& c) {
  HostTensor Q, K;
  const bool half = c.p.layout == RopeLayout::Half;
  check::RopeGen rg(c.d, c.Hkv, half, 1234 + c.Nq * 7 + c.d, 1.0, 1.0);
  const int G = c.Hq / c.Hkv;
  std::mt19937_64 rng(42 + c.Nk);
  std::normal_distribution<float> nd;
  if (c.gen == 0) {
    Q.make(c.B, c.Hq, c.Nq, c.d, c.dt, c.layout, [&](int64_t, int64_t, int64_t, float* o) {
      for (int k = 0; k < c.d; ++k) o[k] = nd(rng);
    });
    K.make(c.B, c.Hkv, c.Nk, c.d, c.dt, c.layout, [&](int64_t, int64_t, int64_t, float* o) {
      for (int k = 0; k < c.d; ++k) o[k] = nd(rng);
    });
  } else {
    Q.make(c.B, c.Hq, c.Nq, c.d, c.dt, c.layout, [&](int64_t b, int64_t h, int64_t n, float* o) {
      rg.row(h / G, 1 + b * 1000 + h, (c.Nk - c.Nq) + n, o);
    });
    K.make(c.B, c.Hkv, c.Nk, c.d, c.dt, c.layout, [&](int64_t b, int64_t h, int64_t n, float* o) {
      rg.row(h, 500000 + b * 1000 + h, n, o);
    });
  }
  Q.upload();
  K.upload();
  const BlockGrid grid(c.Nq, c.Nk, c.p.block);
  const int nq = (int)grid.nq, nk = (int)grid.nk, off = (int)grid.off;
  const size_t rows = (size_t)c.B * c.Hq * nq;
  const size_t wsb = tiled_workspace_bytes(Q.view(), K.view(), c.p);
  void* ws;
  uint8_t* dm;
  int* dc;
  int* di;
  float* dt;
  CK(cudaMalloc(&ws, wsb));
  CK(cudaMalloc(&dm, rows * nk));
  CK(cudaMalloc(&dc, rows * 4));
  CK(cudaMalloc(&di, rows * nk * 4));
  CK(cudaMalloc(&dt, (size_t)c.B * c.Hq * 8));
  const Ref R = reference(c, Q, K);
  bool all = true;
  GpuOut first;
  for (int path : {kRowPath, kTiledPath, kStoredPath}) {
    if (path != kRowPath && nk < 2) continue;  // the tiled kernel needs two key blocks
    cuda::est_internal::set_select_path(path);
    GpuOut g1 = run_gpu(c, Q, K, ws, wsb, dm, dc, di, dt);
    GpuOut g2 = run_gpu(c, Q, K, ws, wsb, dm, dc, di, dt);
    const bool determ = g1 == g2;
    // invariants on every row
    size_t inv_bad = 0, sep_rows = 0, sep_bad = 0, unsep_diff = 0;
    double sel = 0, vis = 0;
    for (int b = 0; b < c.B; ++b)
      for (int h = 0; h < c.Hq; ++h)
        for (int i = 0; i < nq; ++i) {
          const size_t row = ((size_t)b * c.Hq + h) * nq + i;
          const int V = i + off + 1;
          const uint8_t* m = &g1.mask[row * nk];
          const int* ix = &g1.indices[tri_row_start((int64_t)row, nq, off)];  // triangular layout
          bool ok = true;
          int cnt = 0;
          for (int j = 0; j < nk; ++j) {
            if (m[j] > 1 || (j >= V && m[j])) ok = false;
            if (m[j] == 1) {
              if (cnt >= V || ix[cnt] != j) ok = false;
              ++cnt;
            }
          }
          if (g1.counts[row] != cnt) ok = false;
          if (c.p.force_sink && !m[0]) ok = false;
          if (c.p.force_diag && !m[i + off]) ok = false;
          if (!ok) ++inv_bad;
          sel += cnt;
          vis += V;
          const bool same =
              std::memcmp(m, &R.mask[row * nk], nk) == 0 && g1.counts[row] == R.counts[row];
          if (R.sep[row]) {
            ++sep_rows;
            if (!same) ++sep_bad;
          } else if (!same)
            ++unsep_diff;
        }
    double tmax = 0;
    for (size_t x = 0; x < g1.temps.size(); ++x) {
      const double r = R.temps[x];
      const double e = std::fabs(g1.temps[x] - r) / std::max(std::fabs(r), 1e-6);
      if (!(e <= tmax)) tmax = std::isnan(e) ? 1e9 : std::max(tmax, e);
    }
    const bool second = path != kRowPath && !first.mask.empty();
    const bool equal = !second || g1 == first;
    const bool pass = determ && equal && inv_bad == 0 && sep_bad == 0 && tmax <= 1e-4 &&
                      (sep_rows * 10 >= rows || unsep_diff == 0);
    std::printf(
        "%-4s %-20s %-5s B%d Hq%-2d Hkv%d Nq%-6d Nk%-6d d%-3d %-4s blk%-3d nq%-4d nk%-5d rows %6zu "
        "sep %6zu bad %zu "
        "unsep-diff %zu inv-bad %zu temps-rel %.1e det %s density %.3f%s\n",
        pass ? "PASS" : "FAIL", c.name.c_str(), path_name(path), c.B, c.Hq, c.Hkv, c.Nq, c.Nk, c.d,
        check::dtype_name(c.dt), c.p.block, nq, nk, rows, sep_rows, sep_bad, unsep_diff, inv_bad,
        tmax, determ ? "yes" : "NO", sel / vis, second ? (equal ? " =row yes" : " =row NO") : "");
    all = all && pass;
    if (path == kRowPath) first = std::move(g1);
  }
  cuda::est_internal::set_select_path(kAutoPath);
  check::cuda_free_all({ws, dm, dc, di, dt});
  Q.free_dev();
  K.free_dev();
  return all;
}

bool check_errors() {
  // invalid arguments must throw std::invalid_argument before any launch
  QkvView q, k;
  q.dtype = k.dtype = DType::BF16;
  q.batch = k.batch = 1;
  q.heads = 6;
  k.heads = 4;
  q.n = k.n = 128;
  q.d = k.d = 64;
  q.data = k.data = reinterpret_cast<void*>(256);
  EstimateParams p;
  p.high_dims = 32;
  p.low_dims = 48;
  int thrown = 0;
  auto expect = [&](const char* what, auto fn) {
    try {
      fn();
      std::printf("FAIL no exception for %s\n", what);
    } catch (const std::invalid_argument& e) {
      ++thrown;
      std::printf("     invalid_argument ok (%s): %s\n", what, e.what());
    }
  };
  expect("Hq % Hkv", [&] { cuda::estimate_workspace_bytes(q, k, p); });
  q.heads = 8;
  q.n = 256;
  expect("Nq > Nk", [&] { cuda::estimate_workspace_bytes(q, k, p); });
  q.n = 128;
  q.d = 63;
  k.d = 63;
  expect("odd d", [&] { cuda::estimate_workspace_bytes(q, k, p); });
  q.d = k.d = 64;
  p.high_dims = 80;
  expect("high_dims > d", [&] { cuda::estimate_workspace_bytes(q, k, p); });
  p.high_dims = 32;
  q.dtype = DType::I32;
  expect("dtype", [&] { cuda::estimate_workspace_bytes(q, k, p); });
  return thrown == 5;
}

// ---------------------------------------------------------------- device-generated inputs
__device__ uint32_t hash3(uint32_t a, uint32_t b, uint32_t c) {
  uint32_t h = a * 0x9E3779B1u ^ (b + 0x7F4A7C15u) * 0x85EBCA77u ^ (c + 0x165667B1u) * 0xC2B2AE3Du;
  h ^= h >> 15;
  h *= 0x2C1B3C6Du;
  h ^= h >> 12;
  h *= 0x297A2D39u;
  h ^= h >> 15;
  return h;
}
__device__ float gauss(uint32_t a, uint32_t b, uint32_t c) {
  const float u1 = (hash3(a, b, c) >> 8) * (1.f / 16777216.f) + 1e-7f;
  const float u2 = (hash3(a ^ 0x5bd1e995u, b, c) >> 8) * (1.f / 16777216.f);
  return sqrtf(-2.f * logf(u1)) * cospif(2.f * u2);
}
// Input kinds: random normal, RoPE (half) of u(kv head) + noise at positions
// pos0 + n, or the same row at every position (all scores of a row tie).
enum Gen { kRandom = 0, kRope = 1, kConstant = 2 };
// bf16 [1, H, N, d] bhnd
__global__ void fill_kernel(uint16_t* out, int H, int G, long long N, int d, long long pos0,
                            uint32_t salt, int gen) {
  const long long tid = (long long)blockIdx.x * blockDim.x + threadIdx.x;
  const int P = d / 2;
  const long long total = (long long)H * N * P;
  if (tid >= total) return;
  const int p = (int)(tid % P);
  const long long hn = tid / P;
  const long long n = hn % N;
  const int h = (int)(hn / N);
  const uint32_t hk = (uint32_t)(h / G);
  const uint32_t pos = gen == kConstant ? 0u : (uint32_t)n;
  float x0 = gauss(salt + h, pos, p), x1 = gauss(salt + h, pos, p + P);
  float y0 = x0, y1 = x1;
  if (gen == kRope) {
    x0 += gauss(777u, hk, p);
    x1 += gauss(777u, hk, p + P);
    const double th = pow(10000.0, -2.0 * p / d);
    double s, c;
    sincos((double)(pos0 + n) * th, &s, &c);
    y0 = (float)(x0 * c - x1 * s);
    y1 = (float)(x0 * s + x1 * c);
  }
  __nv_bfloat16 b0 = __float2bfloat16_rn(y0), b1 = __float2bfloat16_rn(y1);
  uint16_t* row = out + hn * d;
  row[p] = *reinterpret_cast<uint16_t*>(&b0);
  row[p + P] = *reinterpret_cast<uint16_t*>(&b1);
}

// Counts the mask bytes, list entries and counts that differ between two outputs.
__global__ void diff_kernel(const uint8_t* m1, const uint8_t* m2, const int* i1, const int* i2,
                            size_t n, const int* c1, const int* c2, size_t rows,
                            unsigned long long* out) {
  unsigned long long bad = 0;
  const size_t stride = (size_t)gridDim.x * blockDim.x;
  for (size_t x = (size_t)blockIdx.x * blockDim.x + threadIdx.x; x < n; x += stride)
    bad += (m1[x] != m2[x]) + (i1[x] != i2[x]);
  for (size_t x = (size_t)blockIdx.x * blockDim.x + threadIdx.x; x < rows; x += stride)
    bad += c1[x] != c2[x];
  if (bad) atomicAdd(out, bad);
}

// Q and K of one shape (batch 1, bf16 bhnd) on the device; queries are the last Nq positions.
struct DevInputs {
  uint16_t* q = nullptr;
  uint16_t* k = nullptr;
  QkvView qv, kv;
  DevInputs(long long Nq, long long Nk, int Hq, int Hkv, int d, int gen) {
    CK(cudaMalloc(&q, (size_t)Hq * Nq * d * 2));
    CK(cudaMalloc(&k, (size_t)Hkv * Nk * d * 2));
    const long long tq = (long long)Hq * Nq * (d / 2), tk = (long long)Hkv * Nk * (d / 2);
    fill_kernel<<<(unsigned)((tq + 255) / 256), 256>>>(q, Hq, Hq / Hkv, Nq, d, Nk - Nq, 11, gen);
    fill_kernel<<<(unsigned)((tk + 255) / 256), 256>>>(k, Hkv, 1, Nk, d, 0, 99, gen);
    CK(cudaGetLastError());
    qv = check::strided_view<QkvView>(q, DType::BF16, 1, Hq, Nq, d, Hq * Nq * d, Nq * d, d);
    kv = check::strided_view<QkvView>(k, DType::BF16, 1, Hkv, Nk, d, Hkv * Nk * d, Nk * d, d);
  }
  ~DevInputs() {
    CK(cudaFree(q));
    CK(cudaFree(k));
  }
};

// Outputs and workspace of one estimate on the device.
struct DevOut {
  uint8_t* mask = nullptr;
  int* counts = nullptr;
  int* indices = nullptr;
  float* temps = nullptr;
  void* ws = nullptr;
  size_t rows, nk, wsb;
  DevOut(const DevInputs& in, const EstimateParams& p) {
    const BlockGrid grid(in.qv.n, in.kv.n, p.block);
    rows = (size_t)in.qv.heads * grid.nq;
    nk = (size_t)grid.nk;
    wsb = tiled_workspace_bytes(in.qv, in.kv, p);
    CK(cudaMalloc(&ws, wsb));
    CK(cudaMalloc(&mask, rows * nk));
    CK(cudaMalloc(&counts, rows * 4));
    CK(cudaMalloc(&indices, rows * nk * 4));
    CK(cudaMalloc(&temps, (size_t)in.qv.heads * 8));
  }
  ~DevOut() {
    CK(cudaFree(ws));
    CK(cudaFree(mask));
    CK(cudaFree(counts));
    CK(cudaFree(indices));
    CK(cudaFree(temps));
  }
  BlockMaskOut out() const {
    BlockMaskOut o;
    o.mask = mask;
    o.counts = counts;
    o.indices = indices;
    o.temps = temps;
    return o;
  }
  // One estimate with the given selection kernel, over garbage-filled outputs.
  void run(const DevInputs& in, const EstimateParams& p, int path) {
    CK(cudaMemset(mask, 0xCD, rows * nk));
    CK(cudaMemset(counts, 0x7B, rows * 4));
    CK(cudaMemset(indices, 0x5A, rows * nk * 4));
    cuda::est_internal::set_select_path(path);
    CK(cuda::estimate(in.qv, in.kv, p, out(), ws, 0));
    cuda::est_internal::set_select_path(kAutoPath);
    CK(cudaDeviceSynchronize());
  }
  unsigned long long diff(const DevOut& o) const {
    unsigned long long* d;
    CK(cudaMalloc(&d, sizeof(*d)));
    CK(cudaMemset(d, 0, sizeof(*d)));
    diff_kernel<<<1024, 256>>>(mask, o.mask, indices, o.indices, rows * nk, counts, o.counts, rows,
                               d);
    unsigned long long h = 0;
    CK(cudaMemcpy(&h, d, sizeof(h), cudaMemcpyDeviceToHost));
    CK(cudaFree(d));
    return h;
  }
  // selected / visible blocks
  double density(long long nq_) const {
    std::vector<int> c(rows);
    CK(cudaMemcpy(c.data(), counts, rows * 4, cudaMemcpyDeviceToHost));
    const long long off = (long long)nk - nq_;
    double sel = 0, vis = 0;
    for (size_t r = 0; r < rows; ++r) {
      sel += c[r];
      vis += (double)((long long)(r % nq_) + off + 1);
    }
    return sel / vis;
  }
};

// ---------------------------------------------------------------- path equality
// The tiled kernel against the row kernel on device-generated inputs, including
// its stress switches (est_internal::set_tiled_stress): the outputs must be
// identical, bit for bit. Rows past 1024 key blocks compare with the row
// kernel's shared-memory path, shorter ones with its register path.
struct Stress {
  std::string name;
  long long Nq, Nk;
  int Hq, Hkv, d, block, gen;
  int flags = 0, cap = -1, mtiles = 0;
  long long budget = -1;  // logit store budget (bytes; -1 default)
  int logits_mt = 0;      // logits kernel rows per CTA / 16 (0 automatic)
  int logits_mma = 0;     // 1: the mma.sync logits kernel even on sm_90a
  EstimateParams p;
};

Stress mks(const std::string& name, long long Nq, long long Nk, int Hq, int Hkv, int d, int block,
           int gen) {
  Stress s{name, Nq, Nk, Hq, Hkv, d, block, gen};
  s.p.block = block;
  s.p.high_dims = d / 2;
  s.p.low_dims = (3 * d / 4) & ~1;
  return s;
}

bool run_stress(const Stress& s) {
  DevInputs in(s.Nq, s.Nk, s.Hq, s.Hkv, s.d, s.gen);
  DevOut row(in, s.p), tiled(in, s.p);
  row.run(in, s.p, kRowPath);
  const BlockGrid grid(s.Nq, s.Nk, s.block);
  const double density = row.density(grid.nq);
  bool ok = true;
  for (int path : {kTiledPath, kStoredPath}) {
    cuda::est_internal::set_tiled_stress(s.flags, s.cap, s.mtiles);
    cuda::est_internal::set_store_budget(s.budget);
    cuda::est_internal::set_logits_mt(s.logits_mt);
    cuda::est_internal::set_logits_mma(s.logits_mma);
    tiled.run(in, s.p, path);
    cuda::est_internal::set_tiled_stress(0, -1, 0);
    cuda::est_internal::set_store_budget(-1);
    cuda::est_internal::set_logits_mt(0);
    cuda::est_internal::set_logits_mma(0);
    const unsigned long long bad = row.diff(tiled);
    std::printf(
        "%-4s %-6s == row %-22s Hq%-2d Hkv%d Nq%-7lld Nk%-7lld d%-3d blk%-3d nk%-5lld stress %d "
        "cap %-4d mt %d budget %lld logits mt %d mma %d density %.3f diffs %llu\n",
        bad == 0 ? "PASS" : "FAIL", path_name(path), s.name.c_str(), s.Hq, s.Hkv, s.Nq, s.Nk, s.d,
        s.block, (long long)grid.nk, s.flags, s.cap, s.mtiles, s.budget, s.logits_mt, s.logits_mma,
        density, bad);
    ok = ok && bad == 0;
  }
  return ok;
}

// Stress shapes: `scale` = 1 mid-size (rows up to 1500 key blocks), smaller
// for --small (sanitizers).
std::vector<Stress> stress_suite(bool small) {
  const long long N = small ? 6000 : 96000;  // nk 1500 (375 small) at the block below
  const int blk = small ? 16 : 64, H = small ? 4 : 8, Hk = small ? 1 : 2;
  std::vector<Stress> v;
  // One case: its shape and input kind, then what it changes from the defaults.
  auto add = [&](const char* name, long long Nq, long long Nk, int Hq, int Hkv, int d, int gen,
                 const std::function<void(Stress&)>& change = {}) {
    Stress s = mks(name, Nq, Nk, Hq, Hkv, d, blk, gen);
    if (change) change(s);
    v.push_back(s);
  };
  // The tiled kernel's stress switches (est_internal::set_tiled_stress).
  const auto stress = [](int flags, int cap, int mtiles) {
    return [=](Stress& s) {
      s.flags = flags;
      s.cap = cap;
      s.mtiles = mtiles;
    };
  };
  const auto topk = [](int high, int low) {
    return [=](Stress& s) {
      s.p.selection = Selection::TopK;
      s.p.topk_high = high;
      s.p.topk_low = low;
    };
  };
  const auto tau = [](float high, float low) {
    return [=](Stress& s) {
      s.p.tau_high = high;
      s.p.tau_low = low;
    };
  };
  add("rope", N, N, H, Hk, 128, kRope);
  add("rope-chunk", N * 3 / 4 + 1, N + 37, H, Hk, 128, kRope);
  add("random", N, N, H, Hk, 128, kRandom);
  add("constant-ties", N, N, H, Hk, 64, kConstant);
  add("constant-ties-cap3", N, N, H, Hk, 64, kConstant, stress(0, 3, 0));
  add("rope-topk", N, N, H, Hk, 128, kRope, topk(37, 11));
  add("rope-topk-all", N, N, H, Hk, 128, kRope, topk(5000, 0));
  add("rope-meanpool", N, N, H, Hk, 128, kRope, [](Stress& s) { s.p.method = Method::MeanPool; });
  add("rope-tau.999", N, N, H, Hk, 128, kRope, tau(0.999f, 0.99f));
  add("rope-tau1-noforce", N, N, H, Hk, 128, kRope, [&](Stress& s) {
    tau(1.f, 0.5f)(s);
    s.p.force_sink = false;
    s.p.force_diag = false;
  });
  add("random-tau.3", N, N, H, Hk, 128, kRandom, tau(0.3f, 0.f));
  add("rope-d64", N, N, H, Hk, 64, kRope);
  add("rope-d256", N, N, H, Hk, 256, kRope);
  add("rope-g1", N, N, H, H, 128, kRope);
  add("rope-short-rows", N / 3, N / 3, H, Hk, 128, kRope);  // every row on the register path
  add("rope-1025", 1025LL * blk, 1025LL * blk, H, Hk, 128, kRope);
  add("rope-no-probe", N, N, H, Hk, 128, kRope, stress(1, -1, 0));
  add("rope-start-low", N, N, H, Hk, 128, kRope, stress(2, -1, 0));
  add("rope-start-high", N, N, H, Hk, 128, kRope, stress(4, -1, 0));
  add("random-start-high-cap0", N, N, H, Hk, 128, kRandom, stress(4, 0, 0));
  add("rope-cap0", N, N, H, Hk, 128, kRope, stress(0, 0, 0));
  // Caps that some brackets fit and others overflow (the sub-histogram of
  // a bracket holding more keys than fit), and ties at the threshold among
  // the stored keys of rows of every length.
  add("rope-cap64", N, N, H, Hk, 128, kRope, stress(0, 64, 0));
  add("constant-ties-cap40-mt1", N, N, H, Hk, 64, kConstant, stress(0, 40, 1));
  add("rope-cap5-topk", N, N, H, Hk, 128, kRope, [&](Stress& s) {
    stress(0, 5, 0)(s);
    topk(20, 3)(s);
  });
  add("rope-mt2", N, N, H, Hk, 128, kRope, stress(0, -1, 2));
  add("rope-mt1-no-probe", N, N, H, Hk, 128, kRope, stress(1, -1, 1));
  // The stored path in chunks of one (b, kv head) pair (a budget of 1 byte):
  // two chunks.
  add("rope-chunked", N / 2, N / 2, H, Hk, 128, kRope, [](Stress& s) { s.budget = 1; });
  add("rope-chunked-chunk", N / 2, N * 2 / 3 + 5, H, Hk, 64, kRope, [&](Stress& s) {
    s.budget = 1;
    stress(2, -1, 1)(s);
  });
  // The logits kernel with 16 and 32 rows per CTA (GPUs with less shared memory).
  add("rope-logits-mt1", N, N + 100, H, Hk, 128, kRope, [](Stress& s) { s.logits_mt = 1; });
  add("rope-logits-mt2-d256", N / 2, N / 2, H, Hk, 256, kRope, [](Stress& s) { s.logits_mt = 2; });
  // The mma.sync logits kernel where sm_90a would take warpgroup mma (the
  // default there), and the sm_90a one on a chunked store, rows off the block
  // grid, and one band (mean pooling: 128 dims, the widest its tiles fit).
  add("rope-logits-mma", N, N + 100, H, Hk, 128, kRope, [](Stress& s) { s.logits_mma = 1; });
  add("rope-chunked-offgrid", N / 2 + 3, N / 2 + 70, H, Hk, 128, kRope,
      [](Stress& s) { s.budget = 1; });
  add("rope-meanpool-g1", N / 2, N / 2 + 9, H, H, 128, kRope,
      [](Stress& s) { s.p.method = Method::MeanPool; });
  // A warp's rows (r = t / TPR) span query blocks of different lengths (two
  // heads a block) or share one block (eight heads a block, 64 rows a CTA):
  // each warp sweeps as far as its own longest open row.
  add("rope-g2-offgrid-mt1", N / 2 + 3, N / 2 + 70, H, H / 2, 128, kRope, stress(0, -1, 1));
  add("rope-g8-mt4", N / 2, N / 2, 2 * H, H / 4, 128, kRope, stress(0, -1, 4));
  return v;
}

// ---------------------------------------------------------------- long contexts
// B=1, 32 q / 8 kv heads, d 128, bf16, block 128, Prism defaults. Times the
// stages (pooling, temperatures, selection) with each path in `paths`
// (mtiles: the tiled kernel's rows per CTA / 16, 0 = automatic); with
// `compare`, also checks both tiled paths against the row kernel bit for bit.
struct Timed {
  int path, mtiles;
};

const char* gen_name(int gen) {
  return gen == kRope ? "rope" : gen == kRandom ? "random" : "const";
}

// --logits-mma: the stored path's logits on mma.sync, whose kernel writes no
// row maxima (the selection then probes for them).
bool g_logits_mma = false;
// --no-rowmax: the stored path probes for them even after the sm_90a kernel.
int g_stored_rowmax = 1;

// The current device's compute capability major (9: the sm_90a kernels run).
int device_major() {
  int dev = 0, major = 0;
  CK(cudaGetDevice(&dev));
  CK(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev));
  return major;
}

// Nq: queries, the last Nq of the N keys (0: N).
bool long_context(long long N, int gen, int iters, const std::vector<Timed>& paths, bool compare,
                  long long Nq = 0) {
  const int Hq = 32, Hkv = 8, d = 128;
  if (Nq <= 0 || Nq > N) Nq = N;
  DevInputs in(Nq, N, Hq, Hkv, d, gen);
  EstimateParams p;
  DevOut out(in, p);
  const long long nq = BlockGrid(Nq, N, 128).nq;
  const double gb = ((double)Hq * Nq + (double)Hkv * N) * d * 2 / 1e9;
  double base[2] = {0, 0};
  for (size_t v = 0; v < paths.size(); ++v) {
    cuda::est_internal::set_select_path(paths[v].path);
    cuda::est_internal::set_tiled_stress(0, -1, paths[v].mtiles);
    double ms[3];
    for (int stage = v == 0 ? 1 : 3; stage <= 3; ++stage) {
      cuda::est_internal::set_stage_limit(stage);
      ms[stage - 1] = check::median_ms(
          [&] { CK(cuda::estimate(in.qv, in.kv, p, out.out(), out.ws, 0)); }, iters);
    }
    cuda::est_internal::set_stage_limit(3);
    if (v == 0) {
      base[0] = ms[0];
      base[1] = ms[1];
    }
    char label[32];
    std::snprintf(label, sizeof(label), "%s%s", path_name(paths[v].path),
                  paths[v].mtiles ? (paths[v].mtiles == 1   ? " mt1"
                                     : paths[v].mtiles == 2 ? " mt2"
                                                            : " mt4")
                                  : "");
    std::printf("| %8lld | %-6s | %-9s | %5lld | %8.3f | %8.3f | %8.3f | %8.3f | %6.0f | %6.3f |\n",
                N, gen_name(gen), label, nq, ms[2], base[0], base[1] - base[0], ms[2] - base[1],
                gb / (base[0] * 1e-3), out.density(nq));
    std::fflush(stdout);
  }
  cuda::est_internal::set_select_path(kAutoPath);
  cuda::est_internal::set_tiled_stress(0, -1, 0);
  if (!compare) return true;
  DevOut other(in, p);
  out.run(in, p, kRowPath);
  bool ok = true;
  for (int path : {kTiledPath, kStoredPath}) {
    other.run(in, p, path);
    const unsigned long long bad = out.diff(other);
    std::printf("%-4s %s == row at N=%lld (%lld x %lld blocks, 32 heads): %llu differing entries\n",
                bad == 0 ? "PASS" : "FAIL", path_name(path), N, nq, nq, bad);
    std::fflush(stdout);
    ok = ok && bad == 0;
  }
  // Elsewhere the stored path compared above already probed for the rows'
  // largest logits.
  if (device_major() != 9 || g_logits_mma || !g_stored_rowmax) return ok;
  // Where the sm_90a logits kernel writes each row's largest logit, the
  // stored path sums every row's z once (a largest logit that were too small
  // would show as a second sum here; one too large, as differing entries
  // above); probing for it instead selects the same.
  unsigned long long tiles[4];
  cuda::est_internal::tiled_sweep_counts(tiles);  // from zero
  other.run(in, p, kStoredPath);
  cuda::est_internal::tiled_sweep_counts(tiles);
  const bool once = tiles[0] > 0 && tiles[2] == tiles[0];
  std::printf(
      "%-4s stored path with the rows' maxima at N=%lld: z sweeps per pass %.4f (1 expected)\n",
      once ? "PASS" : "FAIL", N, tiles[0] > 0 ? (double)tiles[2] / tiles[0] : 0.0);
  cuda::est_internal::set_stored_rowmax(0);
  other.run(in, p, kStoredPath);
  cuda::est_internal::set_stored_rowmax(g_stored_rowmax);
  const unsigned long long bad = out.diff(other);
  std::printf(
      "%-4s stored path probing for the rows' maxima == row at N=%lld: %llu differing entries\n",
      bad == 0 ? "PASS" : "FAIL", N, bad);
  std::fflush(stdout);
  return ok && once && bad == 0;
}

// The row kernel's rows per CTA change how rows are grouped, never a row's
// selection: a chunk of queries over long keys (the shape that takes 8 rows
// per CTA automatically) selects the same with 16, 8 and 4 rows per CTA.
int g_row_rows = 0;  // --row-rows M, restored after checks that set the knob

bool row_rows_equal() {
  DevInputs in(8192 + 77, 131072 - 50, 32, 8, 128, kRope);
  EstimateParams p;
  DevOut ref(in, p), other(in, p);
  cuda::est_internal::set_row_rows(16);
  ref.run(in, p, kRowPath);
  bool ok = true;
  for (int m : {0, 8, 4}) {
    cuda::est_internal::set_row_rows(m);
    other.run(in, p, kRowPath);
    const unsigned long long bad = ref.diff(other);
    std::printf(
        "%-4s row kernel, %s rows per CTA == 16, chunk of 8269 queries over 130972 keys: "
        "%llu differing entries\n",
        bad == 0 ? "PASS" : "FAIL", m == 0 ? "automatic" : std::to_string(m).c_str(), bad);
    ok = ok && bad == 0;
  }
  cuda::est_internal::set_row_rows(g_row_rows);
  return ok;
}

Case mk(const std::string& name, int B, int Hq, int Hkv, int Nq, int Nk, int d, DType dt,
        int layout, int gen, int block = 128) {
  Case c{name, B, Hq, Hkv, Nq, Nk, d, dt, layout, gen, EstimateParams()};
  c.p.block = block;
  c.p.high_dims = d / 2;
  c.p.low_dims = (3 * d / 4) & ~1;
  return c;
}

}  // namespace

// The logit store's slab prefix (slab_prefix_tiles, counted by tile) against
// the sum of slab_tiles over the slabs, on the host: grid offsets, group sizes
// and partial last slabs.
static bool check_slab_prefix() {
  long long checks = 0, bad = 0;
  for (int G : {1, 2, 3, 4, 5, 7, 8, 16})
    for (int nq : {1, 2, 15, 16, 17, 100, 127, 128, 129, 1000, 2049})
      for (int extra : {0, 1, 5, 127, 128, 300, 1000}) {
        const int nk = nq + extra, off = nk - nq, rows = nq * G, slabs = (rows + 15) / 16;
        int64_t run = 0;
        for (int s0 = 0; s0 <= slabs; ++s0) {
          ++checks;
          if (cuda::est_internal::slab_prefix_tiles(s0, rows, G, off, nk) != run && bad++ < 5)
            std::printf("FAIL slab prefix G=%d nq=%d nk=%d s0=%d\n", G, nq, nk, s0);
          if (s0 < slabs) run += cuda::est_internal::slab_tiles(s0, rows, G, off, nk);
        }
      }
  std::printf("slab prefix: %lld checks, %lld differ\n", checks, bad);
  return bad == 0;
}

// The sm_90a logits kernel (logits_sm90.cuh) takes the 3xTF32 products on
// wgmma m64n128k8 where the other kernels use mma.sync m16n8k8; it gives the
// same logits only if each k-step accumulates to the same bits. Both chains
// (lo*hi, hi*lo, hi*hi per k-step over 96 dims) on operands of scattered
// magnitudes, compared bit for bit; skipped where the GPU or the build has no
// sm_90a.
namespace tf32_bits {
constexpr int kM = 64, kN = 128, kK = 96;

__global__ void chain_mma_sync(const float* qh, const float* ql, const float* kh, const float* kl,
                               float* out) {
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
  const int r0 = 16 * warp;
  for (int h = 0; h < kN / 8; ++h) {
    float acc[4] = {0.f, 0.f, 0.f, 0.f};
    for (int k = 0; k < kK; k += 8) {
      auto frag = [&](const float* x) {
        return make_float4(x[(r0 + g) * kK + k + t], x[(r0 + g + 8) * kK + k + t],
                           x[(r0 + g) * kK + k + t + 4], x[(r0 + g + 8) * kK + k + t + 4]);
      };
      const float4 ah = frag(qh), al = frag(ql);
      const int key = 8 * h + g;
      const float bh0 = kh[key * kK + k + t], bh1 = kh[key * kK + k + t + 4];
      const float bl0 = kl[key * kK + k + t], bl1 = kl[key * kK + k + t + 4];
      cuda::mma::mma_tf32(acc, al, bh0, bh1);
      cuda::mma::mma_tf32(acc, ah, bl0, bl1);
      cuda::mma::mma_tf32(acc, ah, bh0, bh1);
    }
    for (int e = 0; e < 4; ++e)
      out[(r0 + g + 8 * (e >> 1)) * kN + 8 * h + 2 * t + (e & 1)] = acc[e];
  }
}

// Sets sm90 = 1 in the pass that has wgmma (0 elsewhere: the host skips).
__global__ void chain_wgmma(const float* qh, const float* ql, const float* kh, const float* kl,
                            float* out, int* sm90) {
#if PRISM_SM90_ENABLED
  using namespace cuda::attn::sm90;
  extern __shared__ __align__(16) unsigned char raw[];
  const uint32_t base = (smem_addr(raw) + 1023u) & ~1023u;
  float* tiles = reinterpret_cast<float*>(raw + (base - smem_addr(raw)));
  // [qh, ql: 3 chunks x 64 rows][kh, kl: 3 chunks x 128 rows] x 32 floats, 128-byte swizzle
  float* dst[4] = {tiles, tiles + kM * kK, tiles + 2 * kM * kK, tiles + 2 * kM * kK + kN * kK};
  const float* src[4] = {qh, ql, kh, kl};
  for (int m = 0; m < 4; ++m) {
    const int rows = m < 2 ? kM : kN;
    for (int i = threadIdx.x; i < rows * kK / 4; i += blockDim.x) {
      const int r = i / (kK / 4), u = i % (kK / 4), c = u % 8;
      float* d = dst[m] + (u / 8) * rows * 32 + r * 32 + ((c ^ (r & 7)) * 4);
      for (int e = 0; e < 4; ++e) d[e] = src[m][r * kK + 4 * u + e];
    }
  }
  asm volatile("fence.proxy.async.shared::cta;" ::: "memory");
  __syncthreads();
  float d[64];
  for (int i = 0; i < 64; ++i) {
    d[i] = 0.f;
    reg_fence(d[i]);
  }
  wgmma_fence();
  auto desc = [&](int m, int rows, int k) {
    return make_desc_sw128(
        base + 4u * (uint32_t)((dst[m] - tiles) + (k / 32) * rows * 32) + (k % 32) * 4, 16, 1024);
  };
  for (int k = 0; k < kK; k += 8) {
    wgmma_tf32_m64n128k8(d, desc(1, kM, k), desc(2, kN, k));
    wgmma_tf32_m64n128k8(d, desc(0, kM, k), desc(3, kN, k));
    wgmma_tf32_m64n128k8(d, desc(0, kM, k), desc(2, kN, k));
  }
  wgmma_commit();
  wgmma_wait<0>();
  for (int i = 0; i < 64; ++i) reg_fence(d[i]);
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
  for (int j = 0; j < kN / 8; ++j)
    for (int e = 0; e < 4; ++e)
      out[(16 * warp + g + 8 * (e >> 1)) * kN + 8 * j + 2 * t + (e & 1)] = d[4 * j + e];
  if (threadIdx.x == 0) *sm90 = 1;
#endif
}
}  // namespace tf32_bits

static bool check_tf32_products() {
  using namespace tf32_bits;
  if (device_major() != 9) {
    std::printf("tf32 products: skipped (no sm_90 GPU)\n");
    return true;
  }
  const int smem = 1024 + 4 * (2 * kM * kK + 2 * kN * kK);
  CK(cudaFuncSetAttribute(chain_wgmma, cudaFuncAttributeMaxDynamicSharedMemorySize, smem));
  float *dq, *dk, *o1, *o2;
  int* sm90;
  CK(cudaMalloc(&dq, sizeof(float) * 2 * kM * kK));
  CK(cudaMalloc(&dk, sizeof(float) * 2 * kN * kK));
  CK(cudaMalloc(&o1, sizeof(float) * kM * kN));
  CK(cudaMalloc(&o2, sizeof(float) * kM * kN));
  CK(cudaMalloc(&sm90, sizeof(int)));
  CK(cudaMemset(sm90, 0, sizeof(int)));
  std::mt19937 rng(90);
  std::uniform_real_distribution<float> unit(-1.f, 1.f);
  std::uniform_int_distribution<int> expo(-8, 8);
  long long checks = 0, bad = 0;
  int have = 0;
  for (int trial = 0; trial < 64; ++trial) {
    // hi = x rounded to tf32 (cvt.rna), lo = (x - hi) rounded: mma::split_tf32 on the host
    auto tf32 = [](float x) {
      uint32_t u;
      std::memcpy(&u, &x, 4);
      u = (u + 0x1000u) & 0xffffe000u;
      std::memcpy(&x, &u, 4);
      return x;
    };
    std::vector<float> q(2 * kM * kK), k(2 * kN * kK);
    auto fill = [&](std::vector<float>& v, int n, bool spread) {
      for (int i = 0; i < n; ++i) {
        const float x = std::ldexp(unit(rng), spread ? expo(rng) : 0);
        v[i] = tf32(x);
        v[n + i] = tf32(x - v[i]);
      }
    };
    fill(q, kM * kK, trial % 2 == 1);
    fill(k, kN * kK, trial % 4 >= 2);
    CK(cudaMemcpy(dq, q.data(), sizeof(float) * q.size(), cudaMemcpyHostToDevice));
    CK(cudaMemcpy(dk, k.data(), sizeof(float) * k.size(), cudaMemcpyHostToDevice));
    chain_mma_sync<<<1, 128>>>(dq, dq + kM * kK, dk, dk + kN * kK, o1);
    chain_wgmma<<<1, 128, smem>>>(dq, dq + kM * kK, dk, dk + kN * kK, o2, sm90);
    CK(cudaGetLastError());
    CK(cudaDeviceSynchronize());
    CK(cudaMemcpy(&have, sm90, sizeof(int), cudaMemcpyDeviceToHost));
    if (!have) break;
    std::vector<float> a(kM * kN), b(kM * kN);
    CK(cudaMemcpy(a.data(), o1, sizeof(float) * a.size(), cudaMemcpyDeviceToHost));
    CK(cudaMemcpy(b.data(), o2, sizeof(float) * b.size(), cudaMemcpyDeviceToHost));
    for (size_t i = 0; i < a.size(); ++i, ++checks)
      if (std::memcmp(&a[i], &b[i], 4) != 0 && bad++ < 3)
        std::printf("FAIL tf32 products: trial %d entry %zu: mma.sync %.9g, wgmma %.9g\n", trial, i,
                    a[i], b[i]);
  }
  check::cuda_free_all({dq, dk, o1, o2, sm90});
  if (!have) {
    std::printf("tf32 products: skipped (this build has no sm_90a)\n");
    return true;
  }
  std::printf("tf32 products (wgmma against mma.sync): %lld checks, %lld differ\n", checks, bad);
  return bad == 0;
}

// The pooled block means bit for bit against pool_kernel's summation order
// replayed on the host (per thread: its column over the rows g, g + RG, ...
// of its row group, eight, four, then one at a time; then the RG row groups in
// order; then one division), through summarize_keys with mean pooling (the
// packed row is the d means in order). Covers both ways a block is read: a
// block of exactly eight rows per row group in 16-byte chunks through shared
// memory, every other one through registers (partial vector widths, 512-thread
// CTAs). Values of scattered magnitudes, so that another order would show.
static bool check_pool_bits() {
  struct PoolCase {
    const char* name;
    DType dt;
    int d, block, nblocks, offset;  // offset: elements the view starts past an aligned address
  };
  const PoolCase cases[] = {
      {"bf16 d128 block 128 (shared memory)", DType::BF16, 128, 128, 5, 0},
      {"f16 d128 block 128 (shared memory)", DType::F16, 128, 128, 3, 0},
      {"f32 d128 block 64 (shared memory)", DType::F32, 128, 64, 3, 0},
      {"bf16 d64 block 256 (shared memory)", DType::BF16, 64, 256, 2, 0},
      {"bf16 d128 block 64 (registers)", DType::BF16, 128, 64, 4, 0},
      {"f32 d128 block 128 (registers)", DType::F32, 128, 128, 3, 0},
      {"bf16 d128 block 128, 2-byte aligned (registers, vector 1)", DType::BF16, 128, 128, 2, 1},
      {"bf16 d512 block 32, 2-byte aligned (512 threads)", DType::BF16, 512, 32, 3, 1},
  };
  const int H = 2;
  long long checks = 0, bad = 0;
  std::mt19937 rng(2026);
  std::uniform_real_distribution<float> unit(-1.f, 1.f);
  std::uniform_int_distribution<int> expo(-12, 12);
  for (const PoolCase& pc : cases) {
    const int64_t n = (int64_t)pc.nblocks * pc.block, elems = (int64_t)H * n * pc.d;
    const size_t esz = pc.dt == DType::F32 ? 4 : 2;
    std::vector<float> host(elems);
    std::vector<unsigned char> bytes((elems + pc.offset) * esz, 0);
    for (int64_t i = 0; i < elems; ++i) {
      host[i] = check::round_to(std::ldexp(unit(rng), expo(rng)), pc.dt);
      check::store_as(bytes.data(), (size_t)(i + pc.offset), host[i], pc.dt);
    }
    void* dk = nullptr;
    float *rows = nullptr, *energies = nullptr;
    CK(cudaMalloc(&dk, bytes.size()));
    CK(cudaMemcpy(dk, bytes.data(), bytes.size(), cudaMemcpyHostToDevice));
    CK(cudaMalloc(&rows, sizeof(float) * H * pc.nblocks * pc.d));
    CK(cudaMalloc(&energies, sizeof(float) * H * pc.nblocks * 3));
    const QkvView kv = check::strided_view<QkvView>(static_cast<char*>(dk) + pc.offset * esz, pc.dt,
                                                    1, H, n, pc.d, H * n * pc.d, n * pc.d, pc.d);
    EstimateParams p;
    p.method = Method::MeanPool;
    p.block = pc.block;
    KeySummaries out;
    out.rows = rows;
    out.energies = energies;
    out.capacity = pc.nblocks;
    CK(cuda::summarize_keys(kv, p, pc.nblocks, out, 0, 0));
    std::vector<float> got((size_t)H * pc.nblocks * pc.d);
    CK(cudaMemcpy(got.data(), rows, sizeof(float) * got.size(), cudaMemcpyDeviceToHost));
    check::cuda_free_all({dk, rows, energies});
    const int vec = cuda::view_vec(kv), cpr = pc.d / vec, threads = cpr <= 256 ? 256 : 512;
    const int RG = threads / cpr, R = pc.block;
    long long case_bad = 0;
    for (int h = 0; h < H; ++h)
      for (int i = 0; i < pc.nblocks; ++i) {
        const float* blk = host.data() + ((int64_t)h * n + (int64_t)i * R) * pc.d;
        for (int col = 0; col < pc.d; ++col) {
          auto x = [&](int r) { return blk[(int64_t)r * pc.d + col]; };
          float s = 0.f;
          for (int g = 0; g < RG; ++g) {
            float acc = 0.f;
            int r = g;
            for (; r + 7 * RG < R; r += 8 * RG) {
              acc += (x(r) + x(r + RG)) + (x(r + 2 * RG) + x(r + 3 * RG));
              acc += (x(r + 4 * RG) + x(r + 5 * RG)) + (x(r + 6 * RG) + x(r + 7 * RG));
            }
            for (; r + 3 * RG < R; r += 4 * RG)
              acc += (x(r) + x(r + RG)) + (x(r + 2 * RG) + x(r + 3 * RG));
            for (; r < R; r += RG) acc += x(r);
            s += acc;
          }
          const float want = s / (float)R;
          const float have = got[((size_t)h * pc.nblocks + i) * pc.d + col];
          ++checks;
          if (std::memcmp(&want, &have, 4) != 0 && case_bad++ < 3)
            std::printf("FAIL pool bits %s: head %d block %d dim %d: %.9g, host order %.9g\n",
                        pc.name, h, i, col, have, want);
        }
      }
    std::printf("%s %s: vector %d, %d row groups, %lld differing means\n",
                case_bad == 0 ? "PASS" : "FAIL", pc.name, vec, RG, case_bad);
    bad += case_bad;
  }
  std::printf("pool bits: %lld checks, %lld differ\n", checks, bad);
  return bad == 0;
}

int main(int argc, char** argv) {
  bool small = false, no_timing = false, long_only = false;
  long long only_n = 0;       // --time-only N: one timing shape, no correctness (for profilers)
  long long only_q = 0;       // --queries Q: that shape's queries (the last Q of N keys)
  int only_path = kAutoPath;  // --path row|tiled|stored: the selection path --time-only times
  int long_gen = kRope;       // --data rope|random|const: the long contexts' input
  for (int a = 1; a < argc; ++a) {
    if (!std::strcmp(argv[a], "--small")) small = true;
    if (!std::strcmp(argv[a], "--no-timing")) no_timing = true;
    if (!std::strcmp(argv[a], "--long")) long_only = true;
    if (!std::strcmp(argv[a], "--time-only") && a + 1 < argc) only_n = std::atoll(argv[++a]);
    if (!std::strcmp(argv[a], "--queries") && a + 1 < argc) only_q = std::atoll(argv[++a]);
    if (!std::strcmp(argv[a], "--row-rows") && a + 1 < argc)
      cuda::est_internal::set_row_rows(g_row_rows = std::atoi(argv[++a]));
    if (!std::strcmp(argv[a], "--logits-mma")) {
      cuda::est_internal::set_logits_mma(1);
      g_logits_mma = true;
    }
    if (!std::strcmp(argv[a], "--no-rowmax")) {
      g_stored_rowmax = 0;
      cuda::est_internal::set_stored_rowmax(0);
    }
    // --store-budget BYTES: the logit store's budget (kv-head chunks), -1 the default
    if (!std::strcmp(argv[a], "--store-budget") && a + 1 < argc)
      cuda::est_internal::set_store_budget(std::atoll(argv[++a]));
    if (!std::strcmp(argv[a], "--logits-stages") && a + 1 < argc) {
      const int stages = std::atoi(argv[++a]);
      if (stages != 3 && stages != 4) {
        std::fprintf(stderr, "--logits-stages: expected 3 or 4, got '%s'\n", argv[a]);
        return 2;
      }
      cuda::est_internal::set_logits_stages(stages);
    }
    if (!std::strcmp(argv[a], "--data") && a + 1 < argc) {
      const char* name = argv[++a];
      long_gen = -1;
      for (int gen : {kRope, kRandom, kConstant})
        if (!std::strcmp(name, gen_name(gen))) long_gen = gen;
      if (long_gen < 0) {
        std::fprintf(stderr, "--data: expected rope, random or const, got '%s'\n", name);
        return 2;
      }
    }
    if (!std::strcmp(argv[a], "--path") && a + 1 < argc) {
      const char* name = argv[++a];
      only_path = -1;
      for (int path : {kRowPath, kTiledPath, kStoredPath})
        if (!std::strcmp(name, path_name(path))) only_path = path;
      if (only_path < 0) {  // timing under the wrong label is worse than none
        std::fprintf(stderr, "--path: expected row, tiled or stored, got '%s'\n", name);
        return 2;
      }
    }
  }
  cudaDeviceProp prop;
  CK(cudaGetDeviceProperties(&prop, 0));
  std::printf("device: %s (sm_%d%d, %d SMs)\n", prop.name, prop.major, prop.minor,
              prop.multiProcessorCount);
  std::printf("compiled archs: %s\n", cuda::compiled_archs());
  const char* table =
      "| N        | data   | path      | nq    | total ms | pool ms  | temps ms | select ms| pool "
      "GB/s | density |\n"
      "|---|---|---|---|---|---|---|---|---|---|\n";
  const char* title =
      "\nestimate timing, B=1 Hq=32 Hkv=8 d=128 bf16 block=128, Prism defaults (top-p 0.95), "
      "median ms;\n"
      "auto picks the row kernel up to 1024 key blocks (128K here; with the sm_90a logits kernel "
      "up to 767), the tiled kernel on stored logits beyond;\n"
      "tiled: the tiled kernel recomputing its logits in every sweep\n";
  if (only_n > 0) {
    std::printf("%s%s", title, table);
    unsigned long long tiles[4];
    cuda::est_internal::tiled_sweep_counts(tiles);  // from zero
    long_context(only_n, long_gen, 3, {{only_path, 0}}, false, only_q);
    cuda::est_internal::tiled_sweep_counts(tiles);
    if (tiles[0] > 0)
      std::printf("tiled kernel, tiles swept per full pass: probe %.3f, z %.3f, keys %.3f\n",
                  (double)tiles[1] / tiles[0], (double)tiles[2] / tiles[0],
                  (double)tiles[3] / tiles[0]);
    return 0;
  }
  int fails = 0, total = 0;
  auto tally = [&](bool ok) {
    ++total;
    fails += ok ? 0 : 1;
  };
  if (long_only) {
    // Path equality on mid-size stress shapes, then the long contexts: timing
    // of both kernels where both are reasonable, equality at every length.
    std::printf("\ntiled kernel against the row kernel, mid-size shapes\n");
    for (const Stress& s : stress_suite(false)) tally(run_stress(s));
    std::printf("%s%s", title, table);
    tally(long_context(131072, long_gen, 25, {{kAutoPath, 0}, {kStoredPath, 0}, {kTiledPath, 0}},
                       true));
    tally(
        long_context(262144, long_gen, 15, {{kAutoPath, 0}, {kRowPath, 0}, {kTiledPath, 2}}, true));
    tally(long_context(524288, long_gen, 10, {{kAutoPath, 0}, {kStoredPath, 4}, {kTiledPath, 2}},
                       true));
    tally(long_context(1048576, long_gen, 5, {{kAutoPath, 0}, {kStoredPath, 4}, {kTiledPath, 2}},
                       true));
    std::printf("long: %d/%d checks passed\n", total - fails, total);
    return fails == 0 ? 0 : 1;
  }
  bool ok = check_errors();
  ok = check_slab_prefix() && ok;
  ok = check_pool_bits() && ok;
  ok = check_tf32_products() && ok;
  const DType BF = DType::BF16, F16 = DType::F16, F32 = DType::F32;
  // The correctness cases: a shape (mk) and the options each changes from mk's.
  const std::vector<Case> small_cases = {
      mk("rand-basic", 2, 4, 2, 300, 300, 64, BF, 0, 0, 32),
      mk("rope-odd-chunk", 1, 4, 1, 170, 611, 64, F16, 1, 1, 32),
      mk("grid-shift", 1, 4, 2, 100, 357, 64, BF, 0, 1, 16),
      mk("rope-topk-il", 1, 8, 2, 200, 333, 32, F32, 2, 1, 16).interleaved().top_k(3, 5),
      mk("meanpool-nocal", 1, 2, 2, 256, 256, 34, BF, 0, 1, 16).mean_pool().fixed_temps(0.8f),
      mk("bigrow-smem", 1, 2, 1, 64, 4400, 64, BF, 0, 1, 4),
  };
  const std::vector<Case> full_cases = {
      mk("rand-basic", 2, 8, 2, 1000, 1000, 128, BF, 0, 0, 64),
      mk("rope-half", 1, 8, 2, 4096, 4096, 128, BF, 0, 1, 64),
      mk("rope-odd-chunk-g1", 1, 4, 4, 777, 3001, 64, F16, 1, 1, 32),
      mk("grid-shift", 1, 8, 2, 1000, 2637, 128, BF, 0, 1, 64),
      mk("rope-il-gqa8-f32", 1, 16, 2, 2500, 2500, 128, F32, 2, 1, 64).interleaved(),
      mk("rope-topk", 1, 8, 2, 1500, 2100, 128, BF, 0, 1, 32).top_k(5, 7),
      mk("rope-topk-big-k", 1, 4, 1, 1000, 1000, 64, F16, 0, 1, 16).top_k(40, 0),
      mk("rope-calib-off", 2, 8, 4, 2048, 2048, 128, BF, 1, 1, 64).fixed_temps(0.7f, 1.3f),
      mk("meanpool-rope", 1, 8, 2, 3000, 3000, 128, BF, 0, 1, 64).mean_pool().top_p(0.9f),
      mk("meanpool-rand-nocal", 1, 4, 4, 900, 1300, 64, F32, 0, 0, 32)
          .mean_pool()
          .fixed_temps(0.25f),
      mk("rope-noforce-tau.5", 1, 8, 8, 2000, 2000, 64, BF, 0, 1, 32).unforced().top_p(0.5f, 0.6f),
      mk("rope-tau.999", 1, 4, 2, 1024, 1024, 128, F16, 0, 1, 32).top_p(0.999f, 0.99f),
      mk("rope-bigrow-smem", 1, 2, 1, 20000, 20000, 64, BF, 0, 1, 16),
      mk("rope-d34-vec2", 1, 4, 2, 1500, 1500, 34, BF, 0, 1, 32).bands(16, 20),
      mk("rope-d256", 1, 4, 2, 2000, 2000, 256, BF, 0, 1, 64),
      mk("tiny-1x1", 1, 2, 1, 1, 1, 64, BF, 0, 0, 128),
      mk("tiny-5x300", 1, 2, 1, 5, 300, 64, BF, 0, 1, 128),
      mk("timing-shape-8k", 1, 32, 8, 8192, 8192, 128, BF, 0, 1, 128),
  };
  const std::vector<Case>& cs = small ? small_cases : full_cases;
  int case_fails = 0;
  for (const Case& c : cs) case_fails += run_case(c) ? 0 : 1;
  std::printf("correctness: %d/%zu cases passed, error checks %s\n", (int)cs.size() - case_fails,
              cs.size(), ok ? "ok" : "FAILED");
  std::printf("\ntiled kernel against the row kernel%s\n",
              small ? ", small shapes" : ", mid-size shapes");
  for (const Stress& s : stress_suite(small)) tally(run_stress(s));
  if (!small) tally(row_rows_equal());
  std::printf("path equality: %d/%d passed\n", total - fails, total);
  if (!small && !no_timing) {
    std::printf("%s%s", title, table);
    for (long long N : {8192LL, 32768LL, 65536LL})
      long_context(N, kRope, 25, {{kAutoPath, 0}}, false);
    tally(long_context(131072, long_gen, 25, {{kAutoPath, 0}, {kTiledPath, 0}}, true));
    long_context(131072, kRandom, 25, {{kAutoPath, 0}}, false);
    tally(long_context(262144, long_gen, 15, {{kAutoPath, 0}, {kRowPath, 0}}, true));
    tally(long_context(524288, long_gen, 10, {{kAutoPath, 0}}, true));
    tally(long_context(1048576, long_gen, 5, {{kAutoPath, 0}}, true));
  }
  return (fails == 0 && case_fails == 0 && ok) ? 0 : 1;
}

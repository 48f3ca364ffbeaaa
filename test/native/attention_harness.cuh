// Shared part of the attention harnesses (attention_check.cu: the portable
// kernel's variants; attention_sm90_check.cu: the Hopper path): random inputs
// drawn on the device, NaN-poisoned outputs, a float64 host reference on
// chosen rows, one checked case (with --hash, a hash of its output to compare
// builds bit for bit); the timing is attention_timing.cuh's.
#pragma once
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "check_common.h"
#include "cuda/attention/attention_fwd.h"
#include "cuda/cuda_backend.h"

using namespace prism;

// ---------------------------------------------------------------- device utils
__device__ __forceinline__ uint32_t hash32(uint64_t x) {
  x ^= x >> 33;
  x *= 0xff51afd7ed558ccdull;
  x ^= x >> 33;
  x *= 0xc4ceb9fe1a85ec53ull;
  x ^= x >> 33;
  return static_cast<uint32_t>(x);
}

// Roughly normal values (sum of 3 uniforms), times amp; never exactly all zero.
__global__ void fill_kernel(uint16_t* out, int64_t n, uint64_t seed, float amp, int is_bf16) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    float s = 0.f;
    for (int j = 0; j < 3; ++j)
      s += (hash32(seed * 0x9E3779B97F4A7C15ull + uint64_t(i) * 3 + j) >> 8) * (1.f / 16777216.f) -
           0.5f;
    const float v = s * 2.f * amp;
    if (is_bf16) {
      __nv_bfloat16 b = __float2bfloat16_rn(v);
      out[i] = *reinterpret_cast<uint16_t*>(&b);
    } else {
      __half h = __float2half_rn(v);
      out[i] = *reinterpret_cast<uint16_t*>(&h);
    }
  }
}

__global__ void poison_kernel(uint16_t* out, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x)
    out[i] = 0xFFFFu;  // NaN in both bf16 and fp16
}

// Counts non-finite elements (exponent all ones) of a 16-bit float buffer.
__global__ void count_bad_kernel(const uint16_t* in, int64_t n, int is_bf16,
                                 unsigned long long* bad) {
  unsigned long long c = 0;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    const uint16_t v = in[i];
    const bool nonfinite = is_bf16 ? ((v & 0x7F80u) == 0x7F80u) : ((v & 0x7C00u) == 0x7C00u);
    c += nonfinite;
  }
  if (c) atomicAdd(bad, c);
}

// ------------------------------------------------------------------ host utils
static float bits_to_float(uint16_t b, bool bf16) {
  if (bf16) {
    uint32_t u = uint32_t(b) << 16;
    float f;
    std::memcpy(&f, &u, 4);
    return f;
  }
  __half_raw r;
  r.x = b;
  return __half2float(__half(r));
}

struct Tensor4 {
  uint16_t* dev = nullptr;
  int64_t B = 0, H = 0, N = 0, D = 0;
  bool bnhd = false;
  int64_t sb = 0, sh = 0, sn = 0;
  int64_t elems() const { return B * H * N * D; }
  void alloc(int64_t b, int64_t h, int64_t n, int64_t d, bool layout_bnhd) {
    B = b;
    H = h;
    N = n;
    D = d;
    bnhd = layout_bnhd;
    if (bnhd) {
      sn = H * D;
      sh = D;
      sb = N * H * D;
    } else {
      sn = D;
      sh = N * D;
      sb = H * N * D;
    }
    CK(cudaMalloc(&dev, std::max<int64_t>(elems(), 8) * 2));
  }
  void release() {
    if (dev) CK(cudaFree(dev));
    dev = nullptr;
  }
  int64_t off(int64_t b, int64_t h, int64_t n) const { return b * sb + h * sh + n * sn; }
  QkvView qkv(DType dt) const { return view<QkvView>(dt); }
  OutView out(DType dt) const { return view<OutView>(dt); }
  template <class View>
  View view(DType dt) const {
    return check::strided_view<View>(dev, dt, B, H, N, D, sb, sh, sn);
  }
};

static void fill(Tensor4& t, uint64_t seed, float amp, bool bf16) {
  fill_kernel<<<1024, 256>>>(t.dev, t.elems(), seed, amp, bf16 ? 1 : 0);
  CK(cudaGetLastError());
}
static void poison(Tensor4& t) {
  poison_kernel<<<1024, 256>>>(t.dev, t.elems());
  CK(cudaGetLastError());
}
static unsigned long long count_bad(const Tensor4& t, bool bf16) {
  unsigned long long* d;
  CK(cudaMalloc(&d, 8));
  CK(cudaMemset(d, 0, 8));
  count_bad_kernel<<<1024, 256>>>(t.dev, t.elems(), bf16 ? 1 : 0, d);
  CK(cudaGetLastError());
  unsigned long long h = 0;
  CK(cudaMemcpy(&h, d, 8, cudaMemcpyDeviceToHost));
  CK(cudaFree(d));
  return h;
}

static std::vector<uint16_t> to_host(const Tensor4& t) {
  std::vector<uint16_t> h(t.elems());
  CK(cudaMemcpy(h.data(), t.dev, t.elems() * 2, cudaMemcpyDeviceToHost));
  return h;
}

// Host block lists: counts [B*Hq*nq], indices [B*Hq*nq*nk].
struct HostList {
  std::vector<int32_t> counts, indices;
  int64_t nq = 0, nk = 0;
  int64_t selected = 0, visible = 0;  // for density
};

// kind 0: random (sink + diagonal + random blocks, a few empty rows)
// kind 1: structured (sink + diagonal + local window + random far blocks at rate p_far)
static HostList make_list(int64_t B, int64_t Hq, int64_t Nq, int64_t Nk, int blk, int kind,
                          double p_far, int window, uint64_t seed) {
  HostList L;
  const BlockGrid grid(Nq, Nk, blk);
  L.nq = grid.nq;
  L.nk = grid.nk;
  L.counts.assign(B * Hq * L.nq, 0);
  L.indices.assign(B * Hq * L.nq * L.nk, -1);
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> U(0, 1);
  const int64_t off = L.nk - L.nq;
  for (int64_t row = 0; row < B * Hq * L.nq; ++row) {
    const int64_t i = row % L.nq;
    const int64_t vis = visible_blocks(i, L.nq, L.nk);
    L.visible += vis;
    int32_t* idx = &L.indices[row * L.nk];
    int c = 0;
    if (kind == 0 && U(rng) < 0.03) {
      L.counts[row] = 0;
      continue;
    }  // empty row
    for (int64_t j = 0; j < vis; ++j) {
      bool take;
      if (kind == 0)
        take = (j == 0) || (j == i + off) || U(rng) < 0.3;
      else
        take = (j == 0) || (j >= i + off - window) || U(rng) < p_far;
      if (take) idx[c++] = static_cast<int32_t>(j);
    }
    L.counts[row] = c;
    L.selected += c;
  }
  return L;
}

// The host list on the device: rows of nk slots (row_start = row * nk), a
// valid block list with gaps.
struct DevList {
  int32_t* counts = nullptr;
  int64_t* row_start = nullptr;
  int32_t* indices = nullptr;
  int64_t size = 0;
  void upload(const HostList& L) {
    std::vector<int64_t> starts(L.counts.size());
    for (size_t r = 0; r < starts.size(); ++r) starts[r] = int64_t(r) * L.nk;
    size = int64_t(L.indices.size());
    CK(cudaMalloc(&counts, L.counts.size() * 4));
    CK(cudaMalloc(&row_start, starts.size() * 8));
    CK(cudaMalloc(&indices, L.indices.size() * 4));
    CK(cudaMemcpy(counts, L.counts.data(), L.counts.size() * 4, cudaMemcpyHostToDevice));
    CK(cudaMemcpy(row_start, starts.data(), starts.size() * 8, cudaMemcpyHostToDevice));
    CK(cudaMemcpy(indices, L.indices.data(), L.indices.size() * 4, cudaMemcpyHostToDevice));
  }
  BlockList list() const { return BlockList{counts, row_start, indices, size}; }
  void release() {
    if (counts) CK(cudaFree(counts));
    if (row_start) CK(cudaFree(row_start));
    if (indices) CK(cudaFree(indices));
    counts = indices = nullptr;
    row_start = nullptr;
  }
};

struct RowId {
  int64_t b, h, r;
};

// float64 reference of sampled rows; returns (err^2, ref^2, max_abs_err).
struct ErrAcc {
  double e2 = 0, r2 = 0, maxabs = 0;
};

static ErrAcc reference_compare(const std::vector<RowId>& rows, const Tensor4& q, const Tensor4& k,
                                const Tensor4& v, const Tensor4& o, const std::vector<uint16_t>& hk,
                                const std::vector<uint16_t>& hv, const HostList* L, int blk,
                                double scale, bool bf16) {
  const int64_t D = q.D, Nq = q.N, Nk = k.N;
  const int64_t group = q.H / k.H;
  // fetch Q and O rows
  std::vector<uint16_t> hq(rows.size() * D), ho(rows.size() * D);
  for (size_t x = 0; x < rows.size(); ++x) {
    CK(cudaMemcpy(&hq[x * D], q.dev + q.off(rows[x].b, rows[x].h, rows[x].r), D * 2,
                  cudaMemcpyDeviceToHost));
    CK(cudaMemcpy(&ho[x * D], o.dev + o.off(rows[x].b, rows[x].h, rows[x].r), D * 2,
                  cudaMemcpyDeviceToHost));
  }
  unsigned nth = std::max(1u, std::thread::hardware_concurrency());
  nth = std::min<unsigned>(nth, 32);
  std::vector<ErrAcc> part(nth);
  auto work = [&](unsigned tid) {
    std::vector<double> sc(Nk), out(D), qd(D);
    std::vector<int64_t> keys;
    keys.reserve(Nk);
    for (size_t x = tid; x < rows.size(); x += nth) {
      const RowId& R = rows[x];
      const int64_t s = (Nk - Nq) + R.r;
      const BlockGrid grid(Nq, Nk, blk);
      const int64_t i = grid.block_of_row(R.r);
      const int64_t hkv = R.h / group;
      keys.clear();
      auto add_block = [&](int64_t j) {
        for (int64_t t = j * blk; t < std::min<int64_t>((j + 1) * blk, Nk); ++t)
          if (t <= s) keys.push_back(t);
      };
      if (L == nullptr) {
        const int64_t vis = visible_blocks(i, grid.nq, grid.nk);
        for (int64_t j = 0; j < vis; ++j) add_block(j);
      } else {
        const int64_t row = (R.b * q.H + R.h) * L->nq + i;
        for (int c = 0; c < L->counts[row]; ++c) add_block(L->indices[row * L->nk + c]);
      }
      for (int64_t d = 0; d < D; ++d) qd[d] = bits_to_float(hq[x * D + d], bf16);
      double mx = -INFINITY;
      for (size_t a = 0; a < keys.size(); ++a) {
        const uint16_t* kr = &hk[k.off(R.b, hkv, keys[a])];
        double dot = 0;
        for (int64_t d = 0; d < D; ++d) dot += qd[d] * bits_to_float(kr[d], bf16);
        sc[a] = dot * scale;
        mx = std::max(mx, sc[a]);
      }
      double sum = 0;
      std::fill(out.begin(), out.end(), 0.0);
      for (size_t a = 0; a < keys.size(); ++a) {
        const double p = std::exp(sc[a] - mx);
        sum += p;
        const uint16_t* vr = &hv[v.off(R.b, hkv, keys[a])];
        for (int64_t d = 0; d < D; ++d) out[d] += p * bits_to_float(vr[d], bf16);
      }
      for (int64_t d = 0; d < D; ++d) {
        const double ref = keys.empty() ? 0.0 : out[d] / sum;
        const double got = bits_to_float(ho[x * D + d], bf16);
        const double e = std::isnan(got) ? 1e30 : got - ref;
        part[tid].e2 += e * e;
        part[tid].r2 += ref * ref;
        part[tid].maxabs = std::max(part[tid].maxabs, std::fabs(e));
      }
    }
  };
  std::vector<std::thread> th;
  for (unsigned t = 0; t < nth; ++t) th.emplace_back(work, t);
  for (auto& t : th) t.join();
  ErrAcc acc;
  for (auto& p : part) {
    acc.e2 += p.e2;
    acc.r2 += p.r2;
    acc.maxabs = std::max(acc.maxabs, p.maxabs);
  }
  return acc;
}

// ------------------------------------------------------------------ one case
struct Case {
  int64_t B, Hq, Hkv, Nq, Nk, D;
  bool bf16, bnhd, sparse;
  int blk;
  float scale;        // 0 = default
  int variant;        // attn::kAuto or a variant id
  int rows_per_head;  // 0 = all rows
};

static int g_failures = 0, g_cases = 0;

// --hash: every case also writes the row LSE, and the log gets a 64-bit FNV-1a
// hash of the output (and LSE) bytes, so two builds can be compared bit for bit.
static bool g_hash = false;
static bool g_no_reference = false;  // --no-reference: skip the host reference (hash runs only)
static uint64_t fnv1a(const void* data, size_t bytes, uint64_t h = 1469598103934665603ull) {
  const unsigned char* c = static_cast<const unsigned char*>(data);
  for (size_t i = 0; i < bytes; ++i) h = (h ^ c[i]) * 1099511628211ull;
  return h;
}
// Hash of o's elements in (b, h, n, d) order, then of `lse` (n_lse floats on the device).
static uint64_t output_hash(const Tensor4& o, const float* lse, int64_t n_lse) {
  const std::vector<uint16_t> ho = to_host(o);
  std::vector<uint16_t> ordered;
  ordered.reserve(ho.size());
  for (int64_t b = 0; b < o.B; ++b)
    for (int64_t h = 0; h < o.H; ++h)
      for (int64_t n = 0; n < o.N; ++n)
        for (int64_t d = 0; d < o.D; ++d) ordered.push_back(ho[o.off(b, h, n) + d]);
  uint64_t hash = fnv1a(ordered.data(), ordered.size() * 2);
  if (lse != nullptr && n_lse > 0) {
    std::vector<float> hl(n_lse);
    CK(cudaMemcpy(hl.data(), lse, n_lse * 4, cudaMemcpyDeviceToHost));
    hash = fnv1a(hl.data(), hl.size() * 4, hash);
  }
  return hash;
}

// Runs one case through attention_with_variant and checks it; `label` names
// the kernel that ran (printed only).
static void run_case(const Case& c, uint64_t seed, const char* label) {
  const DType dt = c.bf16 ? DType::BF16 : DType::F16;
  Tensor4 q, k, v, o;
  q.alloc(c.B, c.Hq, c.Nq, c.D, c.bnhd);
  k.alloc(c.B, c.Hkv, c.Nk, c.D, c.bnhd);
  v.alloc(c.B, c.Hkv, c.Nk, c.D, !c.bnhd);  // V in the other layout: strides are per tensor
  o.alloc(c.B, c.Hq, c.Nq, c.D, c.bnhd);
  fill(q, seed * 4 + 1, 1.5f, c.bf16);
  fill(k, seed * 4 + 2, 1.0f, c.bf16);
  fill(v, seed * 4 + 3, 1.0f, c.bf16);
  poison(o);
  HostList L;
  DevList dl;
  BlockList list;
  if (c.sparse) {
    L = make_list(c.B, c.Hq, c.Nq, c.Nk, c.blk, 0, 0, 0, seed * 7 + 5);
    dl.upload(L);
    list = dl.list();
  }
  AttentionParams ap;
  ap.block = c.blk;
  ap.softmax_scale = c.scale;
  const size_t ws_bytes = cuda::attention_workspace_bytes(q.qkv(dt), k.qkv(dt), list, ap);
  void* ws = nullptr;
  if (ws_bytes) CK(cudaMalloc(&ws, ws_bytes));
  OutView ov = o.out(dt);
  float* lse = nullptr;
  const int64_t n_lse = c.B * c.Hq * c.Nq;
  if (g_hash) {
    CK(cudaMalloc(&lse, std::max<int64_t>(n_lse, 1) * 4));
    CK(cudaMemset(lse, 0xff, std::max<int64_t>(n_lse, 1) * 4));
    ov.lse = lse;
  }
  cudaError_t e = cuda::attn::attention_with_variant(q.qkv(dt), k.qkv(dt), v.qkv(dt), ov, list, ap,
                                                     ws, 0, c.variant);
  CK(e);
  CK(cudaDeviceSynchronize());
  const unsigned long long bad = count_bad(o, c.bf16);
  char hash_text[40] = "";
  if (g_hash)
    std::snprintf(hash_text, sizeof hash_text, " hash %016llx",
                  (unsigned long long)output_hash(o, lse, n_lse));
  if (lse) CK(cudaFree(lse));

  // rows to check
  std::vector<RowId> rows;
  std::mt19937_64 rng(seed);
  for (int64_t b = 0; b < c.B; ++b)
    for (int64_t h = 0; h < c.Hq; ++h) {
      if (c.rows_per_head == 0 || c.rows_per_head >= c.Nq) {
        for (int64_t r = 0; r < c.Nq; ++r) rows.push_back({b, h, r});
      } else {
        rows.push_back({b, h, 0});
        rows.push_back({b, h, c.Nq - 1});
        for (int x = 2; x < c.rows_per_head; ++x)
          rows.push_back({b, h, static_cast<int64_t>(rng() % c.Nq)});
      }
    }
  const std::vector<uint16_t> hk = to_host(k), hv = to_host(v);
  const double scale = c.scale > 0 ? c.scale : 1.0 / std::sqrt(double(c.D));
  ErrAcc acc;
  if (!g_no_reference)
    acc =
        reference_compare(rows, q, k, v, o, hk, hv, c.sparse ? &L : nullptr, c.blk, scale, c.bf16);
  const double rel = acc.r2 > 0 ? std::sqrt(acc.e2 / acc.r2) : std::sqrt(acc.e2);
  const double tol = c.bf16 ? 1e-2 : 2e-3;
  const bool ok = bad == 0 && rel <= tol && std::isfinite(rel);
  ++g_cases;
  if (!ok) ++g_failures;
  std::printf(
      "%s %-8s %s d%-3lld B%lld Hq%-2lld Hkv%-2lld Nq%-5lld Nk%-5lld blk%-3d %-6s %s%s "
      "rel %.2e maxabs %.2e nonfinite %llu rows %zu%s\n",
      ok ? "ok  " : "FAIL", label, c.bf16 ? "bf16" : "fp16", (long long)c.D, (long long)c.B,
      (long long)c.Hq, (long long)c.Hkv, (long long)c.Nq, (long long)c.Nk, c.blk,
      c.sparse ? "sparse" : "dense", c.bnhd ? "bnhd" : "bhnd", c.scale > 0 ? " scale" : "", rel,
      acc.maxabs, bad, rows.size(), hash_text);
  std::fflush(stdout);
  if (ws) CK(cudaFree(ws));
  dl.release();
  q.release();
  k.release();
  v.release();
  o.release();
}

// ------------------------------------------------------------------ sweep cases
// The correctness sweep: both dtypes, head_dim 64 and 128, every shape, dense
// and sparse, cycling GQA 1/4/8, memory layouts, `blocks`, a custom softmax
// scale and row sampling on big cases. `run` gets each case (variant kAuto).
struct SweepShape {
  int64_t Nq, Nk;
};

// The (Nq, Nk) shapes of every harness's sweep: 1, odd lengths, Nq < Nk.
static const std::vector<SweepShape> kSweepShapes = {
    {1, 1},      {77, 77},  {129, 129},  {1000, 1000}, {4097, 4097},
    {100, 1000}, {1, 1000}, {513, 2100}, {300, 556},   {200, 333}};

static void for_each_sweep_case(const std::vector<SweepShape>& shapes,
                                const std::vector<int>& blocks,
                                const std::function<void(Case&)>& run) {
  const int gq[][2] = {{4, 4}, {8, 2}, {8, 1}};  // Hq, Hkv: GQA 1, 4, 8
  const int nb = int(blocks.size());
  int idx = 0;
  for (int dtype = 0; dtype < 2; ++dtype)
    for (int D : {64, 128})
      for (const SweepShape& s : shapes)
        for (int sparse = 0; sparse < 2; ++sparse) {
          ++idx;
          Case c;
          c.B = (idx % 3 == 0) ? 2 : 1;
          c.Hq = gq[idx % 3][0];
          c.Hkv = gq[idx % 3][1];
          c.Nq = s.Nq;
          c.Nk = s.Nk;
          c.D = D;
          c.bf16 = dtype == 0;
          c.bnhd = (idx / 2) % 2 == 1;
          c.sparse = sparse == 1;
          c.blk = blocks[(idx + idx / nb) % nb];
          c.scale = (idx % 7 == 0) ? 0.05f : 0.f;
          c.rows_per_head = (s.Nq * c.Hq * c.B > 20000) ? 48 : 0;
          c.variant = cuda::attn::kAuto;
          run(c);
        }
}

// The small cases (for compute-sanitizer): B 1, Hq 4, Hkv 2, Nq 200, Nk 300;
// bf16 at d 128, block 128, dense then sparse (seeds 11, 12); fp16 BNHD at
// d 64 with block blk, sparse (seed 13); then dense once `last` has changed
// one more thing (seed 14). Returns that last case.
template <class Last, class Run>
static Case run_small_cases(int blk, Last last, Run run) {
  Case c{1, 4, 2, 200, 300, 128, true, false, false, 128, 0.f, cuda::attn::kAuto, 0};
  run(c, 11);
  c.sparse = true;
  run(c, 12);
  c.blk = blk;
  c.D = 64;
  c.bf16 = false;
  c.bnhd = true;
  run(c, 13);
  c.sparse = false;
  last(c);
  run(c, 14);
  return c;
}

// ------------------------------------------------------------------ main parts
// The arguments every attention harness takes:
//   --small           the small cases only (for compute-sanitizer)
//   --check, --time   the correctness sweep only, the timings only
//   --hash            every case writes the LSE too and logs a hash of O and LSE
//   --no-reference    skip the float64 host reference of the checked cases
struct HarnessFlags {
  bool small = false, check = true, time = true;
  // Takes one argument; false when it is none of the above.
  bool parse(const char* a) {
    if (!std::strcmp(a, "--small"))
      small = true;
    else if (!std::strcmp(a, "--check"))
      time = false;
    else if (!std::strcmp(a, "--time"))
      check = false;
    else if (!std::strcmp(a, "--hash"))
      g_hash = true;
    else if (!std::strcmp(a, "--no-reference"))
      g_no_reference = true;
    else
      return false;
    return true;
  }
};

// Prints the device, the attention path it takes and the compiled archs.
static void print_device(int dev) {
  cudaDeviceProp prop;
  CK(cudaGetDeviceProperties(&prop, dev));
  std::printf("device: %s (sm_%d%d, %d SMs), attention path: %s, compiled: %s\n", prop.name,
              prop.major, prop.minor, prop.multiProcessorCount, cuda::attention_path(dev),
#ifdef PRISM_CUDA_ARCH_LIST
              PRISM_CUDA_ARCH_LIST
#else
              "?"
#endif
  );
}

// Bad head_dim and block size must throw std::invalid_argument.
static void check_argument_errors() {
  Tensor4 q;
  q.alloc(1, 1, 8, 96, false);
  bool threw = false;
  try {
    AttentionParams ap;
    (void)cuda::attention(q.qkv(DType::BF16), q.qkv(DType::BF16), q.qkv(DType::BF16),
                          q.out(DType::BF16), BlockList{}, ap, nullptr, 0);
  } catch (const std::invalid_argument& e) {
    threw = true;
    std::printf("invalid head_dim -> std::invalid_argument: %s\n", e.what());
  }
  try {
    Tensor4 r;
    r.alloc(1, 1, 8, 64, false);
    AttentionParams ap;
    ap.block = 96;
    (void)cuda::attention(r.qkv(DType::BF16), r.qkv(DType::BF16), r.qkv(DType::BF16),
                          r.out(DType::BF16), BlockList{}, ap, nullptr, 0);
    threw = false;
    r.release();
  } catch (const std::invalid_argument& e) {
    std::printf("invalid block -> std::invalid_argument: %s\n", e.what());
  }
  if (!threw) {
    std::printf("FAIL: argument checks\n");
    ++g_failures;
  }
  q.release();
}

// After the device line and the argument checks, what the flags ask for: the
// small cases, or the sweep and / or the timings. Returns the exit status.
static int run_harness(int dev, const HarnessFlags& f, void (*small)(), void (*sweep)(),
                       void (*timing)()) {
  print_device(dev);
  check_argument_errors();
  if (f.small) {
    small();
  } else {
    if (f.check) sweep();
    if (f.time) timing();
  }
  std::printf("\n%d failure(s) in %d checked case(s)\n", g_failures, g_cases);
  return g_failures ? 1 : 0;
}

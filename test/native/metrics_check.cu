// GPU harness for prism::cuda::mass_recall and prism::cuda::diff_norms against
// double-precision host references. `--small` runs reduced shapes.
#include <cuda_runtime.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <random>
#include <stdexcept>
#include <vector>

#include "check_common.h"
#include "cuda/cuda_backend.h"

using namespace prism;
using check::HostTensor;

namespace {

bool recall_case(const char* name, int B, int Hq, int Hkv, int Nq, int Nk, int d, DType dt,
                 int layout, int blk, bool dense, int nsample, float scale) {
  HostTensor Q, K;
  check::RopeGen rg(d, Hkv, true, 77 + Nq, 1.0, 1.0);
  const int G = Hq / Hkv;
  Q.make(B, Hq, Nq, d, dt, layout, [&](int64_t b, int64_t h, int64_t n, float* o) {
    rg.row(h / G, 1 + b * 100 + h, (Nk - Nq) + n, o);
  });
  K.make(B, Hkv, Nk, d, dt, layout,
         [&](int64_t b, int64_t h, int64_t n, float* o) { rg.row(h, 9000 + b * 100 + h, n, o); });
  Q.upload();
  K.upload();
  const BlockGrid grid(Nq, Nk, blk);
  const int nq = (int)grid.nq, nk = (int)grid.nk, off = nk - nq;
  std::mt19937 rng(5);
  std::vector<int> counts((size_t)B * Hq * nq), idx((size_t)B * Hq * nq * nk, -1);
  for (size_t row = 0; row < counts.size(); ++row) {
    const int i = (int)(row % nq);
    int c = 0;
    for (int j = 0; j <= i + off; ++j)
      if (j == i + off || rng() % 3 == 0) idx[row * nk + c++] = j;
    counts[row] = c;
  }
  std::vector<int64_t> rows;
  for (int s = 0; s < nsample; ++s) {
    rows.push_back(rng() % B);
    rows.push_back(rng() % Hq);
    rows.push_back(s == 0 ? Nq - 1 : (s == 1 ? 0 : rng() % Nq));
  }
  rows.push_back(0);
  rows.push_back(Hq);
  rows.push_back(0);  // invalid -> NaN
  const int nr = (int)rows.size() / 3;
  int *dc, *di;
  int64_t* dr;
  float* drec;
  CK(cudaMalloc(&dc, counts.size() * 4));
  CK(cudaMalloc(&di, idx.size() * 4));
  CK(cudaMalloc(&dr, rows.size() * 8));
  CK(cudaMalloc(&drec, nr * 4));
  CK(cudaMemcpy(dc, counts.data(), counts.size() * 4, cudaMemcpyHostToDevice));
  CK(cudaMemcpy(di, idx.data(), idx.size() * 4, cudaMemcpyHostToDevice));
  CK(cudaMemcpy(dr, rows.data(), rows.size() * 8, cudaMemcpyHostToDevice));
  std::vector<int64_t> starts(counts.size());
  for (size_t r = 0; r < starts.size(); ++r) starts[r] = (int64_t)r * nk;
  int64_t* ds;
  CK(cudaMalloc(&ds, starts.size() * 8));
  CK(cudaMemcpy(ds, starts.data(), starts.size() * 8, cudaMemcpyHostToDevice));
  BlockList list;
  if (!dense) list = BlockList{dc, ds, di, (int64_t)idx.size()};
  AttentionParams ap;
  ap.block = blk;
  ap.softmax_scale = scale;
  std::vector<float> g1(nr), g2(nr);
  for (int rep = 0; rep < 2; ++rep) {
    CK(cudaMemset(drec, 0xFF, nr * 4));
    CK(cuda::mass_recall(Q.view(), K.view(), list, ap, dr, nr, drec, 0));
    CK(cudaDeviceSynchronize());
    CK(cudaMemcpy((rep ? g2 : g1).data(), drec, nr * 4, cudaMemcpyDeviceToHost));
  }
  const double sc = scale != 0.f ? scale : 1.0 / std::sqrt((double)d);
  double maxerr = 0, mean_ref = 0;
  for (int s = 0; s < nr - 1; ++s) {
    const int b = (int)rows[s * 3], h = (int)rows[s * 3 + 1], r = (int)rows[s * 3 + 2];
    const int i = (int)grid.block_of_row(r), last = (Nk - Nq) + r;
    std::vector<uint8_t> selb(nk, 0);
    const size_t row = ((size_t)b * Hq + h) * nq + i;
    if (dense)
      for (int j = 0; j <= i + off; ++j) selb[j] = 1;
    else
      for (int c = 0; c < counts[row]; ++c) selb[idx[row * nk + c]] = 1;
    std::vector<double> lg(last + 1);
    double mx = -1e300;
    for (int t = 0; t <= last; ++t) {
      double s2 = 0;
      for (int k = 0; k < d; ++k) s2 += (double)Q.at(b, h, r, k) * K.at(b, h / G, t, k);
      lg[t] = s2 * sc;
      mx = std::max(mx, lg[t]);
    }
    double z = 0, zs = 0;
    for (int t = 0; t <= last; ++t) {
      const double e = std::exp(lg[t] - mx);
      z += e;
      if (selb[t / blk]) zs += e;
    }
    const double ref = zs / z;
    mean_ref += ref;
    maxerr = std::max(maxerr, std::fabs(ref - g1[s]));
    if (std::isnan(g1[s])) maxerr = 1e9;
  }
  mean_ref /= (nr - 1);
  const bool nan_ok = std::isnan(g1[nr - 1]);
  const bool det = std::memcmp(g1.data(), g2.data(), nr * 4) == 0;
  const bool pass = maxerr < 2e-4 && nan_ok && det &&
                    (!dense || (Nk - Nq) % blk != 0 || std::fabs(mean_ref - 1.0) < 1e-12);
  std::printf(
      "%s recall %-16s B%d Hq%d Hkv%d Nq%d Nk%d d%d %s blk%d %s rows %d: max|err| %.2e mean recall "
      "%.4f invalid->NaN %s det %s\n",
      pass ? "PASS" : "FAIL", name, B, Hq, Hkv, Nq, Nk, d, check::dtype_name(dt), blk,
      dense ? "dense" : "list", nr - 1, maxerr, mean_ref, nan_ok ? "yes" : "NO",
      det ? "yes" : "NO");
  check::cuda_free_all({dc, di, ds, dr, drec});
  Q.free_dev();
  K.free_dev();
  return pass;
}

bool diff_case(const char* name, int B, int H, int N, int d, DType da, int la, DType db, int lb) {
  std::mt19937_64 rng(N * 31 + d);
  std::normal_distribution<float> nd;
  HostTensor A, Bt;
  Bt.make(B, H, N, d, db, lb, [&](int64_t, int64_t, int64_t, float* o) {
    for (int k = 0; k < d; ++k) o[k] = nd(rng);
  });
  A.make(B, H, N, d, da, la, [&](int64_t b, int64_t h, int64_t n, float* o) {
    for (int k = 0; k < d; ++k) o[k] = Bt.at(b, h, n, k) + 0.01f * nd(rng);
  });
  A.upload();
  Bt.upload();
  double* dout;
  CK(cudaMalloc(&dout, 16));
  void* ws = nullptr;  // per-call partials (diff_norms_workspace_bytes)
  const size_t ws_bytes = cuda::diff_norms_workspace_bytes(A.view(), Bt.view());
  if (ws_bytes) CK(cudaMalloc(&ws, ws_bytes));
  double g1[2], g2[2];
  for (int rep = 0; rep < 2; ++rep) {
    CK(cudaMemset(dout, 0xFF, 16));
    CK(cuda::diff_norms(A.view(), Bt.view(), dout, ws, 0));
    CK(cudaDeviceSynchronize());
    CK(cudaMemcpy(rep ? g2 : g1, dout, 16, cudaMemcpyDeviceToHost));
  }
  double rd = 0, rb = 0;
  for (size_t x = 0; x < A.f.size(); ++x) {
    const double df = (double)A.f[x] - Bt.f[x];
    rd += df * df;
    rb += (double)Bt.f[x] * Bt.f[x];
  }
  const double e0 = std::fabs(g1[0] - rd) / rd, e1 = std::fabs(g1[1] - rb) / rb;
  const bool det = std::memcmp(g1, g2, 16) == 0;
  const bool pass = e0 < 1e-10 && e1 < 1e-10 && det;
  std::printf("%s diff_norms %-12s [%d,%d,%d,%d] %s/%s: rel err %.1e %.1e det %s\n",
              pass ? "PASS" : "FAIL", name, B, H, N, d, check::dtype_name(da),
              check::dtype_name(db), e0, e1, det ? "yes" : "NO");
  CK(cudaFree(dout));
  if (ws) CK(cudaFree(ws));
  A.free_dev();
  Bt.free_dev();
  return pass;
}

}  // namespace

int main(int argc, char** argv) {
  bool small = argc > 1 && !std::strcmp(argv[1], "--small");
  cudaDeviceProp prop;
  CK(cudaGetDeviceProperties(&prop, 0));
  std::printf("device: %s\n", prop.name);
  const DType BF = DType::BF16, F16 = DType::F16, F32 = DType::F32;
  int fails = 0, n = 0;
  auto R = [&](bool ok) {
    ++n;
    fails += ok ? 0 : 1;
  };
  R(recall_case("list-bf16", 2, 4, 2, 300, 520, 64, BF, 0, 32, false, 40, 0.f));
  R(recall_case("dense-f16", 1, 4, 1, 257, 300, 64, F16, 1, 32, true, 30, 0.f));
  R(recall_case("list-f32-scale", 1, 2, 2, 100, 200, 34, F32, 2, 16, false, 20, 0.05f));
  if (!small) {
    R(recall_case("list-bf16-8k", 1, 8, 2, 8192, 8192, 128, BF, 0, 128, false, 64, 0.f));
    R(recall_case("list-bf16-chunk", 1, 8, 4, 3000, 9000, 128, BF, 1, 128, false, 64, 0.f));
  }
  R(diff_case("bf16-vs-f32", 2, 4, 100, 64, BF, 1, F32, 0));
  R(diff_case("f16-vs-f16", 1, 3, 77, 34, F16, 2, F16, 0));
  if (!small) R(diff_case("bf16-big", 1, 32, 4096, 128, BF, 0, BF, 1));
  try {
    QkvView a, b;
    a.dtype = b.dtype = DType::BF16;
    a.batch = b.batch = 1;
    a.heads = b.heads = 1;
    a.n = 4;
    b.n = 5;
    a.d = b.d = 8;
    double* o = nullptr;
    cuda::diff_norms(a, b, o, nullptr, 0);
    std::printf("FAIL diff_norms shape mismatch not rejected\n");
    ++fails;
  } catch (const std::invalid_argument& e) {
    std::printf("     invalid_argument ok: %s\n", e.what());
  }
  std::printf("metrics: %d/%d cases passed\n", n - fails, n);
  return fails ? 1 : 0;
}

// Timing of the native attention harnesses (attention_check,
// attention_sm90_check): CUDA-event medians of one call, and the sweep of
// dense and ~20%-sparse shapes both harnesses time their kernels on.
#pragma once
#include <algorithm>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "attention_harness.cuh"

// ------------------------------------------------------------------ timing
static float median(std::vector<float> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

static float time_op(const Tensor4& q, const Tensor4& k, const Tensor4& v, Tensor4& o,
                     const BlockList& list, int blk, void* ws, int variant, bool bf16, int iters) {
  const DType dt = bf16 ? DType::BF16 : DType::F16;
  AttentionParams ap;
  ap.block = blk;
  cudaEvent_t e0, e1;
  CK(cudaEventCreate(&e0));
  CK(cudaEventCreate(&e1));
  std::vector<float> ms;
  for (int it = 0; it < iters + 2; ++it) {
    CK(cudaEventRecord(e0));
    CK(cuda::attn::attention_with_variant(q.qkv(dt), k.qkv(dt), v.qkv(dt), o.out(dt), list, ap, ws,
                                          0, variant));
    CK(cudaEventRecord(e1));
    CK(cudaEventSynchronize(e1));
    float t = 0;
    CK(cudaEventElapsedTime(&t, e0, e1));
    if (it >= 2) ms.push_back(t);
  }
  CK(cudaEventDestroy(e0));
  CK(cudaEventDestroy(e1));
  return median(ms);
}

// ------------------------------------------------------------------ timing sweep
// Times dense and ~20%-sparse attention (B=1 Hq=32 Hkv=8 bf16, block 128) at
// each (N, head_dim) of `shapes` for every kernel kernels_for(N, D) lists, in
// order, then checks sampled rows of the last kernel's sparse output.
struct TimedKernel {
  std::string label;
  int variant;                   // attn::kAuto or a variant id
  std::function<void()> select;  // makes the next calls take this kernel
};
struct TimingShape {
  int64_t N;
  int64_t D;
};

static void timing_sweep(
    const std::vector<TimingShape>& shapes,
    const std::function<std::vector<TimedKernel>(int64_t N, int64_t D)>& kernels_for) {
  const int64_t Hq = 32, Hkv = 8, B = 1;
  const int blk = 128;
  std::printf(
      "\n== timing: B=1 Hq=32 Hkv=8 bf16 bhnd blk=128, causal; median of >=10 after warm-up\n");
  std::vector<std::string> summary;
  for (const TimingShape& t : shapes) {
    const int64_t N = t.N, D = t.D;
    Tensor4 q, k, v, o;
    q.alloc(B, Hq, N, D, false);
    k.alloc(B, Hkv, N, D, false);
    v.alloc(B, Hkv, N, D, false);
    o.alloc(B, Hq, N, D, false);
    fill(q, 101 + N, 1.5f, true);
    fill(k, 202 + N, 1.0f, true);
    fill(v, 303 + N, 1.0f, true);
    // ~20% structured list: sink + diagonal + local window 2 + random far blocks
    const int64_t nb = num_blocks(N, blk);
    double fixed = 0, far = 0, vis_tot = 0;
    for (int64_t i = 0; i < nb; ++i) {
      const int64_t vis = i + 1;
      const int64_t f = std::min<int64_t>(
          vis, std::min<int64_t>(i, 1) + 1 + std::min<int64_t>(2, std::max<int64_t>(i - 1, 0)));
      fixed += f;
      far += vis - f;
      vis_tot += vis;
    }
    const double p_far = std::clamp((0.20 * vis_tot - fixed) / std::max(far, 1.0), 0.0, 1.0);
    HostList L = make_list(B, Hq, N, N, blk, 1, p_far, 2, 999 + N);
    DevList dl;
    dl.upload(L);
    const BlockList sl = dl.list();
    const double density = double(L.selected) / double(L.visible);
    AttentionParams ap;
    ap.block = blk;
    const size_t ws_bytes =
        cuda::attention_workspace_bytes(q.qkv(DType::BF16), k.qkv(DType::BF16), sl, ap);
    void* ws = nullptr;
    CK(cudaMalloc(&ws, ws_bytes));
    const double flops = 4.0 * double(N) * double(N) * double(D) * double(Hq) / 2.0;
    const int iters = N >= 131072 ? 10 : 20;
    for (const TimedKernel& kern : kernels_for(N, D)) {
      kern.select();
      poison(o);
      const float dms = time_op(q, k, v, o, BlockList{}, blk, ws, kern.variant, true, iters);
      const unsigned long long bad_d = count_bad(o, true);
      const uint64_t hash_d = g_hash ? output_hash(o, nullptr, 0) : 0;
      poison(o);
      const float sms = time_op(q, k, v, o, sl, blk, ws, kern.variant, true, iters);
      const unsigned long long bad_s = count_bad(o, true);
      if (g_hash)
        std::printf("N=%lld d=%lld %s hash dense %016llx sparse %016llx\n", (long long)N,
                    (long long)D, kern.label.c_str(), (unsigned long long)hash_d,
                    (unsigned long long)output_hash(o, nullptr, 0));
      char line[512];
      std::snprintf(line, sizeof line,
                    "N=%-6lld d=%-3lld %-9s dense %9.3f ms %6.1f TFLOP/s | sparse %.1f%% %9.3f ms "
                    "ratio %.3f (%.1f TFLOP/s on selected)%s",
                    (long long)N, (long long)D, kern.label.c_str(), dms, flops / dms * 1e-9,
                    100 * density, sms, sms / dms, flops * density / sms * 1e-9,
                    (bad_d || bad_s) ? " NONFINITE!" : "");
      std::printf("%s\n", line);
      std::fflush(stdout);
      summary.push_back(line);
      if (bad_d || bad_s) ++g_failures;
    }
    // Spot check of the timed output (sparse, last kernel run) against the reference.
    {
      std::vector<RowId> rows;
      std::mt19937_64 rng(N);
      for (int64_t h = 0; h < Hq; h += 5) {
        rows.push_back({0, h, N - 1});
        rows.push_back({0, h, static_cast<int64_t>(rng() % N)});
      }
      const std::vector<uint16_t> hk = to_host(k), hv = to_host(v);
      ErrAcc acc =
          reference_compare(rows, q, k, v, o, hk, hv, &L, blk, 1.0 / std::sqrt(double(D)), true);
      const double rel = std::sqrt(acc.e2 / acc.r2);
      std::printf("N=%lld d=%lld sparse spot check: rel %.2e over %zu rows %s\n", (long long)N,
                  (long long)D, rel, rows.size(), rel <= 1e-2 ? "ok" : "FAIL");
      if (!(rel <= 1e-2)) ++g_failures;
    }
    CK(cudaFree(ws));
    dl.release();
    q.release();
    k.release();
    v.release();
    o.release();
  }
  std::printf("\n== timing summary\n");
  for (auto& s : summary) std::printf("%s\n", s.c_str());
}

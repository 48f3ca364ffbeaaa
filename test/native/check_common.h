// Host helpers shared by the native GPU harnesses: dtype rounding, strided
// test tensors, deterministic random numbers, CUDA error checks.
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
#include <initializer_list>
#include <random>
#include <vector>

#include "common/prism_types.h"

#define CK(x)                                                                         \
  do {                                                                                \
    cudaError_t e_ = (x);                                                             \
    if (e_ != cudaSuccess) {                                                          \
      std::fprintf(stderr, "CUDA error %s (%s) at %s:%d: %s\n", cudaGetErrorName(e_), \
                   cudaGetErrorString(e_), __FILE__, __LINE__, #x);                   \
      std::exit(2);                                                                   \
    }                                                                                 \
  } while (0)

namespace check {

inline float round_to(float x, prism::DType t) {
  if (t == prism::DType::F16) return __half2float(__float2half_rn(x));
  if (t == prism::DType::BF16) return __bfloat162float(__float2bfloat16_rn(x));
  return x;
}

inline void store_as(void* buf, size_t idx, float x, prism::DType t) {
  if (t == prism::DType::F32) {
    static_cast<float*>(buf)[idx] = x;
  } else if (t == prism::DType::F16) {
    __half h = __float2half_rn(x);
    std::memcpy(static_cast<uint16_t*>(buf) + idx, &h, 2);
  } else {
    __nv_bfloat16 h = __float2bfloat16_rn(x);
    std::memcpy(static_cast<uint16_t*>(buf) + idx, &h, 2);
  }
}

inline const char* dtype_name(prism::DType t) {
  return t == prism::DType::F32 ? "f32" : t == prism::DType::F16 ? "f16" : "bf16";
}

// memory layouts of test tensors: 0 bhnd, 1 bnhd, 2 bhnd with padded rows
// A view (prism::QkvView or OutView) of the [batch, heads, n, d] tensor at
// data, strides (sb, sh, sn) in elements.
template <class View>
View strided_view(void* data, prism::DType dt, int64_t batch, int64_t heads, int64_t n, int64_t d,
                  int64_t sb, int64_t sh, int64_t sn) {
  View v;
  v.data = data;
  v.dtype = dt;
  v.batch = batch;
  v.heads = heads;
  v.n = n;
  v.d = d;
  v.stride_b = sb;
  v.stride_h = sh;
  v.stride_n = sn;
  return v;
}

struct HostTensor {
  int64_t B = 0, H = 0, N = 0, d = 0;
  prism::DType dt = prism::DType::F32;
  int layout = 0;
  int64_t sb = 0, sh = 0, sn = 0, elems = 0;
  std::vector<float> f;      // logical [B,H,N,d], values after dtype rounding
  std::vector<uint8_t> raw;  // storage in the chosen layout
  void* dev = nullptr;

  // gen(b, h, n, row_out[d]) fills one row before rounding
  void make(int64_t B_, int64_t H_, int64_t N_, int64_t d_, prism::DType dt_, int layout_,
            const std::function<void(int64_t, int64_t, int64_t, float*)>& gen) {
    B = B_;
    H = H_;
    N = N_;
    d = d_;
    dt = dt_;
    layout = layout_;
    if (layout == 1) {
      sn = H * d;
      sh = d;
      sb = N * H * d;
    } else if (layout == 2) {
      sn = d + 8;
      sh = N * sn;
      sb = H * sh;
    } else {
      sn = d;
      sh = N * d;
      sb = H * N * d;
    }
    elems = B * sb;
    f.assign((size_t)(B * H * N * d), 0.f);
    raw.assign((size_t)(elems * prism::dtype_size(dt)), 0);
    std::vector<float> row((size_t)d);
    for (int64_t b = 0; b < B; ++b)
      for (int64_t h = 0; h < H; ++h)
        for (int64_t n = 0; n < N; ++n) {
          gen(b, h, n, row.data());
          for (int64_t k = 0; k < d; ++k) {
            const float x = round_to(row[(size_t)k], dt);
            f[(size_t)(((b * H + h) * N + n) * d + k)] = x;
            store_as(raw.data(), (size_t)(b * sb + h * sh + n * sn + k), x, dt);
          }
        }
  }
  void upload() {
    CK(cudaMalloc(&dev, raw.size()));
    CK(cudaMemcpy(dev, raw.data(), raw.size(), cudaMemcpyHostToDevice));
  }
  void free_dev() {
    if (dev) CK(cudaFree(dev));
    dev = nullptr;
  }
  prism::QkvView view() const {
    return strided_view<prism::QkvView>(dev, dt, B, H, N, d, sb, sh, sn);
  }
  float at(int64_t b, int64_t h, int64_t n, int64_t k) const {
    return f[(size_t)(((b * H + h) * N + n) * d + k)];
  }
};

// RoPE-structured rows: a per-kv-head direction u (shared by the query heads
// of the group) plus noise, rotated by the absolute position. Gives local /
// periodic attention so selection keeps a fraction of the blocks.
struct RopeGen {
  int64_t d;
  bool half;
  double amp_u, amp_noise;
  uint64_t seed;
  std::vector<float> u;  // [heads_kv][d]
  RopeGen(int64_t d_, int64_t hkv, bool half_, uint64_t seed_, double amp_u_ = 1.0,
          double amp_noise_ = 1.0)
      : d(d_), half(half_), amp_u(amp_u_), amp_noise(amp_noise_), seed(seed_) {
    std::mt19937_64 rng(seed ^ 0x9e3779b97f4a7c15ull);
    std::normal_distribution<float> nd;
    u.resize((size_t)(hkv * d));
    for (auto& x : u) x = nd(rng);
  }
  void row(int64_t hkv, int64_t salt, int64_t pos, float* out) const {
    std::mt19937_64 rng(seed * 1000003ull + (uint64_t)salt * 7919ull + (uint64_t)pos * 104729ull);
    std::normal_distribution<float> nd;
    std::vector<double> x((size_t)d);
    for (int64_t k = 0; k < d; ++k)
      x[(size_t)k] = amp_u * u[(size_t)(hkv * d + k)] + amp_noise * nd(rng);
    const int64_t P = d / 2;
    for (int64_t p = 0; p < P; ++p) {
      const double th = std::pow(10000.0, -2.0 * (double)p / (double)d);
      const double c = std::cos((double)pos * th), s = std::sin((double)pos * th);
      const int64_t i0 = half ? p : 2 * p, i1 = half ? p + P : 2 * p + 1;
      out[i0] = (float)(x[(size_t)i0] * c - x[(size_t)i1] * s);
      out[i1] = (float)(x[(size_t)i0] * s + x[(size_t)i1] * c);
    }
  }
};

// cudaFree of each device buffer (null ones included).
inline void cuda_free_all(std::initializer_list<void*> bufs) {
  for (void* b : bufs) CK(cudaFree(b));
}

inline double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0.0 : v[v.size() / 2];
}

// Median ms of `iters` runs of `launch` on the default stream (CUDA events),
// after three warm-up runs.
inline double median_ms(const std::function<void()>& launch, int iters) {
  for (int w = 0; w < 3; ++w) launch();
  CK(cudaDeviceSynchronize());
  cudaEvent_t e0, e1;
  CK(cudaEventCreate(&e0));
  CK(cudaEventCreate(&e1));
  std::vector<double> t;
  for (int it = 0; it < iters; ++it) {
    CK(cudaEventRecord(e0));
    launch();
    CK(cudaEventRecord(e1));
    CK(cudaEventSynchronize(e1));
    float f;
    CK(cudaEventElapsedTime(&f, e0, e1));
    t.push_back(f);
  }
  CK(cudaEventDestroy(e0));
  CK(cudaEventDestroy(e1));
  return median(t);
}

}  // namespace check

// Element loads for the storage dtypes the kernels read (f32, f16, bf16),
// converted to fp32. load_vec<Tag, VEC> reads VEC consecutive elements with one
// (or, for 8 x f32, two) vector loads; the caller guarantees the alignment of
// VEC * element size bytes (capped at 16).
#pragma once
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <cstdint>
#include <type_traits>
#include "common/prism_types.h"

namespace prism::cuda {

struct F32Tag {
  using storage = float;
  static constexpr int kBytes = 4;
};
struct F16Tag {
  using storage = uint16_t;
  static constexpr int kBytes = 2;
};
struct BF16Tag {
  using storage = uint16_t;
  static constexpr int kBytes = 2;
};

template <class Tag>
__device__ __forceinline__ float bits16_to_f32(uint32_t b) {
  if constexpr (std::is_same_v<Tag, BF16Tag>) {
    return __uint_as_float(b << 16);
  } else {
    return __half2float(__ushort_as_half(static_cast<unsigned short>(b)));
  }
}

// Two packed 16-bit elements (low half first in memory).
template <class Tag>
__device__ __forceinline__ void unpack2(uint32_t w, float& lo, float& hi) {
  if constexpr (std::is_same_v<Tag, BF16Tag>) {
    lo = __uint_as_float(w << 16);
    hi = __uint_as_float(w & 0xffff0000u);
  } else {
    lo = bits16_to_f32<Tag>(w & 0xffffu);
    hi = bits16_to_f32<Tag>(w >> 16);
  }
}

template <class Tag, int VEC>
__device__ __forceinline__ void load_vec(const typename Tag::storage* p, float (&o)[VEC]) {
  static_assert(VEC == 1 || VEC == 2 || VEC == 4 || VEC == 8, "VEC");
  if constexpr (std::is_same_v<Tag, F32Tag>) {
    if constexpr (VEC >= 4) {
#pragma unroll
      for (int v = 0; v < VEC; v += 4) {
        const float4 x = __ldg(reinterpret_cast<const float4*>(p) + v / 4);
        o[v] = x.x;
        o[v + 1] = x.y;
        o[v + 2] = x.z;
        o[v + 3] = x.w;
      }
    } else if constexpr (VEC == 2) {
      const float2 x = __ldg(reinterpret_cast<const float2*>(p));
      o[0] = x.x;
      o[1] = x.y;
    } else {
      o[0] = __ldg(p);
    }
  } else {
    if constexpr (VEC == 8) {
      const uint4 x = __ldg(reinterpret_cast<const uint4*>(p));
      unpack2<Tag>(x.x, o[0], o[1]);
      unpack2<Tag>(x.y, o[2], o[3]);
      unpack2<Tag>(x.z, o[4], o[5]);
      unpack2<Tag>(x.w, o[6], o[7]);
    } else if constexpr (VEC == 4) {
      const uint2 x = __ldg(reinterpret_cast<const uint2*>(p));
      unpack2<Tag>(x.x, o[0], o[1]);
      unpack2<Tag>(x.y, o[2], o[3]);
    } else if constexpr (VEC == 2) {
      const unsigned int x = __ldg(reinterpret_cast<const unsigned int*>(p));
      unpack2<Tag>(x, o[0], o[1]);
    } else {
      o[0] = bits16_to_f32<Tag>(__ldg(reinterpret_cast<const unsigned short*>(p)));
    }
  }
}

template <class Tag>
__device__ __forceinline__ float load_one(const typename Tag::storage* p) {
  float o[1];
  load_vec<Tag, 1>(p, o);
  return o[0];
}

// Calls f(Tag{}) for a floating storage dtype; returns false for other dtypes.
template <class F>
inline bool dispatch_float_dtype(DType t, F&& f) {
  switch (t) {
    case DType::F32: f(F32Tag{}); return true;
    case DType::F16: f(F16Tag{}); return true;
    case DType::BF16: f(BF16Tag{}); return true;
    default: return false;
  }
}

// Widest VEC in {8,4,2,1} (bytes capped at 16) such that d % VEC == 0 and the
// base pointer and every stride of the view are aligned to VEC elements.
inline int pick_vec(const void* data, int64_t d, int64_t esz, const int64_t* strides,
                    int nstrides) {
  for (int vec = 8; vec >= 1; vec >>= 1) {
    const int64_t bytes = vec * esz > 16 ? 16 : vec * esz;
    if (vec * esz > 16) continue;  // one vector load per step
    if (d % vec) continue;
    if (reinterpret_cast<uintptr_t>(data) % static_cast<uintptr_t>(bytes)) continue;
    bool ok = true;
    for (int s = 0; s < nstrides; ++s) ok = ok && ((strides[s] * esz) % bytes == 0);
    if (ok) return vec;
  }
  return 1;
}

}  // namespace prism::cuda

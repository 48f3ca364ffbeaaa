// Row access for strided [batch, heads, n, d] views: load one row (d
// contiguous elements) as float or double, store a float row in the output
// dtype. Views must have passed view_checks first (dtype F32, F16 or BF16).
#pragma once
#include <cstdint>

#include "common/prism_types.h"
#include "half_convert.h"

namespace prism::cpu::detail {

inline int64_t row_offset(int64_t stride_b, int64_t stride_h, int64_t stride_n, int64_t b,
                          int64_t h, int64_t n) {
  return b * stride_b + h * stride_h + n * stride_n;
}

inline const void* row_ptr(const QkvView& v, int64_t b, int64_t h, int64_t n) {
  return static_cast<const char*>(v.data) +
         row_offset(v.stride_b, v.stride_h, v.stride_n, b, h, n) * dtype_size(v.dtype);
}

inline void* row_ptr(const OutView& v, int64_t b, int64_t h, int64_t n) {
  return static_cast<char*>(v.data) +
         row_offset(v.stride_b, v.stride_h, v.stride_n, b, h, n) * dtype_size(v.dtype);
}

// dst[0..d) = row as T (float or double); conversion to T is exact for every
// supported input dtype.
template <typename T>
inline void load_row(const QkvView& v, int64_t b, int64_t h, int64_t n, T* dst) {
  const void* src = row_ptr(v, b, h, n);
  const int64_t d = v.d;
  switch (v.dtype) {
    case DType::F32: {
      const float* s = static_cast<const float*>(src);
      for (int64_t e = 0; e < d; ++e) dst[e] = static_cast<T>(s[e]);
      break;
    }
    case DType::F16: {
      const uint16_t* s = static_cast<const uint16_t*>(src);
      for (int64_t e = 0; e < d; ++e) dst[e] = static_cast<T>(fp16_to_float(s[e]));
      break;
    }
    case DType::BF16: {
      const uint16_t* s = static_cast<const uint16_t*>(src);
      for (int64_t e = 0; e < d; ++e) dst[e] = static_cast<T>(bf16_to_float(s[e]));
      break;
    }
    default: break;  // rejected by view_checks
  }
}

// Writes src[0..d) to the output row, rounding to nearest even for 16-bit dtypes.
inline void store_row(const OutView& v, int64_t b, int64_t h, int64_t n, const float* src) {
  void* dst = row_ptr(v, b, h, n);
  const int64_t d = v.d;
  switch (v.dtype) {
    case DType::F32: {
      float* o = static_cast<float*>(dst);
      for (int64_t e = 0; e < d; ++e) o[e] = src[e];
      break;
    }
    case DType::F16: {
      uint16_t* o = static_cast<uint16_t*>(dst);
      for (int64_t e = 0; e < d; ++e) o[e] = float_to_fp16(src[e]);
      break;
    }
    case DType::BF16: {
      uint16_t* o = static_cast<uint16_t*>(dst);
      for (int64_t e = 0; e < d; ++e) o[e] = float_to_bf16(src[e]);
      break;
    }
    default: break;  // rejected by view_checks
  }
}

}  // namespace prism::cpu::detail

// fp32 tile kernel of the CPU attention. One routine serves both products
// (S = Q K^T with the K tile stored transposed, and acc += P V). It is written
// as rank-1 updates of 4 output rows over contiguous columns, so -O3
// auto-vectorizes the column loop without reassociating anything: every
// output is still summed in reduction order (same result as a plain dot).
#pragma once
#include <cstdint>

namespace prism::cpu::detail {

// For the 4 rows r of A and the columns c in [0, cols):
//   C[r][c] (+)= sum_{x < k} A[r][x] * Bm[x][c]
// A rows are lda apart, Bm rows ldb apart, C rows ldc apart. accumulate=false
// overwrites C, true adds to it.
inline void gemm4(const float* __restrict a, int64_t lda, const float* __restrict bm, int64_t ldb,
                  float* __restrict c, int64_t ldc, int64_t k, int64_t cols, bool accumulate) {
  float* __restrict c0 = c;
  float* __restrict c1 = c + ldc;
  float* __restrict c2 = c + 2 * ldc;
  float* __restrict c3 = c + 3 * ldc;
  if (!accumulate)
    for (int64_t u = 0; u < cols; ++u) c0[u] = c1[u] = c2[u] = c3[u] = 0.f;
  for (int64_t x = 0; x < k; ++x) {
    const float w0 = a[x], w1 = a[lda + x], w2 = a[2 * lda + x], w3 = a[3 * lda + x];
    if (w0 == 0.f && w1 == 0.f && w2 == 0.f && w3 == 0.f) continue;  // e.g. masked P column
    const float* __restrict b = bm + x * ldb;
    for (int64_t u = 0; u < cols; ++u) {
      const float bv = b[u];
      c0[u] += w0 * bv;
      c1[u] += w1 * bv;
      c2[u] += w2 * bv;
      c3[u] += w3 * bv;
    }
  }
}

}  // namespace prism::cpu::detail

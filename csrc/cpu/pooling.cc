// Mean pooling of query / key blocks (see pooling.h).
#include "pooling.h"

#include "parallel_for.h"
#include "tensor_access.h"

namespace prism::cpu::detail {

void pool_blocks(const QkvView& v, int64_t block, int64_t shift, int threads,
                 std::vector<double>& out, int64_t first) {
  const int64_t nb = num_blocks(v.n + shift, block);
  const int64_t d = v.d;
  out.assign(static_cast<size_t>(v.batch * v.heads * nb * d), 0.0);
  const int64_t pooled = first < nb ? nb - first : 0;  // blocks pooled per (batch, head)
  const int workers = resolve_threads(threads, v.batch * v.heads * pooled);
  std::vector<std::vector<double>> rows(static_cast<size_t>(workers),
                                        std::vector<double>(static_cast<size_t>(d)));
  parallel_for(v.batch * v.heads * pooled, threads, [&](int64_t item, int worker) {
    const int64_t i = first + item % pooled;
    const int64_t bh = item / pooled;
    const int64_t b = bh / v.heads, h = bh % v.heads;
    double* acc = out.data() + (bh * nb + i) * d;
    double* row = rows[static_cast<size_t>(worker)].data();
    const int64_t r0 = i * block - shift > 0 ? i * block - shift : 0;
    const int64_t r1 = (i + 1) * block - shift < v.n ? (i + 1) * block - shift : v.n;
    for (int64_t r = r0; r < r1; ++r) {
      load_row(v, b, h, r, row);
      for (int64_t e = 0; e < d; ++e) acc[e] += row[e];
    }
    const double count = static_cast<double>(r1 - r0);
    for (int64_t e = 0; e < d; ++e) acc[e] /= count;
  });
}

}  // namespace prism::cpu::detail

// prism::cpu::diff_norms: out[0] = sum (a - b)^2, out[1] = sum b^2 in double,
// over two views of the same logical shape (strides and dtypes may differ).
// Partial sums per (batch, head) are reduced in a fixed order, so the result
// does not depend on the thread count.
#include <stdexcept>
#include <vector>

#include "cpu_backend.h"
#include "parallel_for.h"
#include "tensor_access.h"
#include "view_checks.h"

namespace prism::cpu {

void diff_norms(const QkvView& a, const QkvView& b, double* out, int threads) {
  detail::check_view(a, "diff_norms", "a");
  detail::check_view(b, "diff_norms", "b");
  if (a.batch != b.batch || a.heads != b.heads || a.n != b.n || a.d != b.d)
    throw std::invalid_argument("prism::cpu::diff_norms: a and b differ in shape");
  if (out == nullptr) throw std::invalid_argument("prism::cpu::diff_norms: null out");
  const int64_t heads = a.batch * a.heads, d = a.d;
  std::vector<double> partial(static_cast<size_t>(heads * 2), 0.0);
  const int workers = detail::resolve_threads(threads, heads);
  std::vector<std::vector<double>> rows(static_cast<size_t>(workers),
                                        std::vector<double>(static_cast<size_t>(2 * d)));
  detail::parallel_for(heads, threads, [&](int64_t bh, int worker) {
    const int64_t bi = bh / a.heads, h = bh % a.heads;
    double* ra = rows[static_cast<size_t>(worker)].data();
    double* rb = ra + d;
    double diff = 0.0, ref = 0.0;
    for (int64_t n = 0; n < a.n; ++n) {
      detail::load_row(a, bi, h, n, ra);
      detail::load_row(b, bi, h, n, rb);
      for (int64_t e = 0; e < d; ++e) {
        const double x = ra[e] - rb[e];
        diff += x * x;
        ref += rb[e] * rb[e];
      }
    }
    partial[static_cast<size_t>(bh * 2)] = diff;
    partial[static_cast<size_t>(bh * 2 + 1)] = ref;
  });
  double diff = 0.0, ref = 0.0;
  for (int64_t bh = 0; bh < heads; ++bh) {
    diff += partial[static_cast<size_t>(bh * 2)];
    ref += partial[static_cast<size_t>(bh * 2 + 1)];
  }
  out[0] = diff;
  out[1] = ref;
}

}  // namespace prism::cpu

// Validation helpers of the CPU backend (see view_checks.h).
#include "view_checks.h"

#include <stdexcept>
#include <string>

namespace prism::cpu::detail {
namespace {

[[noreturn]] void fail(const char* fn, const std::string& what) {
  throw std::invalid_argument(std::string("prism::cpu::") + fn + ": " + what);
}

template <typename View>
void check_any_view(const View& v, const char* fn, const char* name) {
  const std::string n(name);
  if (v.data == nullptr) fail(fn, n + " has null data");
  if (v.dtype != DType::F32 && v.dtype != DType::F16 && v.dtype != DType::BF16)
    fail(fn, n + " has unsupported dtype " + std::to_string(static_cast<int>(v.dtype)) +
                 " (expected F32, F16 or BF16)");
  if (v.batch < 1 || v.heads < 1 || v.n < 1 || v.d < 1)
    fail(fn, n + " has an empty dimension (batch " + std::to_string(v.batch) + ", heads " +
                 std::to_string(v.heads) + ", n " + std::to_string(v.n) + ", d " +
                 std::to_string(v.d) + ")");
}

}  // namespace

void check_view(const QkvView& v, const char* fn, const char* name) { check_any_view(v, fn, name); }
void check_view(const OutView& v, const char* fn, const char* name) { check_any_view(v, fn, name); }

void check_qk(const QkvView& q, const QkvView& k, const char* fn) {
  check_view(q, fn, "q");
  check_view(k, fn, "k");
  if (q.batch != k.batch)
    fail(fn, "batch mismatch: q " + std::to_string(q.batch) + ", k " + std::to_string(k.batch));
  if (q.d != k.d)
    fail(fn, "head_dim mismatch: q " + std::to_string(q.d) + ", k " + std::to_string(k.d));
  if (q.heads % k.heads != 0)
    fail(fn, "query heads (" + std::to_string(q.heads) + ") must be a multiple of kv heads (" +
                 std::to_string(k.heads) + ")");
  if (q.n > k.n)
    fail(fn, "query length (" + std::to_string(q.n) + ") exceeds key length (" +
                 std::to_string(k.n) + ")");
}

void check_block(int64_t block, const char* fn) {
  if (block < 1) fail(fn, "block must be >= 1, got " + std::to_string(block));
}

void check_bands(const EstimateParams& p, int64_t d, const char* fn) {
  if (d % 2 != 0) fail(fn, "head_dim must be even for the RoPE bands, got " + std::to_string(d));
  if (p.layout != RopeLayout::Half && p.layout != RopeLayout::Interleaved)
    fail(fn, "unknown rope layout " + std::to_string(static_cast<int>(p.layout)));
  const struct {
    const char* name;
    int64_t v;
  } bands[2] = {{"high_dims", p.high_dims}, {"low_dims", p.low_dims}};
  for (const auto& b : bands) {
    if (b.v < 2 || b.v > d || b.v % 2 != 0)
      fail(fn, std::string(b.name) + " must be even and in [2, head_dim=" + std::to_string(d) +
                   "], got " + std::to_string(b.v));
  }
}

void check_list(const BlockList& list, int64_t rows, int64_t nq, int64_t nk, const char* fn) {
  if (list.counts == nullptr) return;
  if (list.indices == nullptr || (list.row_start == nullptr) != list.triangular)
    fail(fn, "block list needs indices and either row starts or the triangular layout");
  for (int64_t row = 0; row < rows; ++row) {
    const int64_t c = list.counts[row];
    if (c < 0 || c > nk)
      fail(fn, "block list count " + std::to_string(c) + " out of range [0, " + std::to_string(nk) +
                   "] at row " + std::to_string(row));
    const int64_t start = list_row_start(list.row_start, row, nq, nk - nq);
    if (start < 0 || start > list.indices_size - c)
      fail(fn, "block list row " + std::to_string(row) + " lies outside its " +
                   std::to_string(list.indices_size) + " indices");
    const int32_t* idx = list.indices + start;
    for (int64_t t = 0; t < c; ++t) {
      if (idx[t] < 0 || idx[t] >= nk)
        fail(fn, "block list index " + std::to_string(idx[t]) + " out of range [0, " +
                     std::to_string(nk) + ") at row " + std::to_string(row));
    }
  }
}

}  // namespace prism::cpu::detail

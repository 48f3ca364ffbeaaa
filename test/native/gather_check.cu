// GPU harness for prism::cuda::gather_pages: a sequence's keys and values
// gathered out of page pools (NHD and HND page layouts, page sizes 16-256,
// 16- and 4-byte chunks, a partial last page, pages shared and in random
// order) compared byte for byte with a host gather; then, unless --no-timing,
// the copy rate of a 128K-token gather of keys and values against a
// device-to-device cudaMemcpy of the same bytes.
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <numeric>
#include <random>
#include <vector>

#include "check_common.h"
#include "cuda/paged/paged_gather.h"

using namespace prism;

namespace {

struct Pool {
  int64_t pages, heads, page_size, d, esize;
  bool nhd;
  std::vector<uint8_t> host;
  void* base = nullptr;
  void* dev = nullptr;  // base + shift: a pool that starts off the 16-byte grid
  Pool(int64_t pages_, int64_t heads_, int64_t ps, int64_t d_, int64_t esize_, bool nhd_,
       uint32_t seed, size_t shift = 0)
      : pages(pages_), heads(heads_), page_size(ps), d(d_), esize(esize_), nhd(nhd_) {
    host.resize((size_t)(pages * heads * page_size * d * esize));
    std::mt19937 rng(seed);
    for (auto& b : host) b = (uint8_t)rng();
    CK(cudaMalloc(&base, host.size() + shift));
    dev = static_cast<char*>(base) + shift;
    CK(cudaMemcpy(dev, host.data(), host.size(), cudaMemcpyHostToDevice));
  }
  ~Pool() { CK(cudaFree(base)); }
  // Strides in elements of the logical [pages, heads, page_size, d] view.
  QkvView view(DType dt) const {
    return check::strided_view<QkvView>(dev, dt, pages, heads, page_size, d, heads * page_size * d,
                                        nhd ? d : page_size * d, nhd ? heads * d : d);
  }
  const uint8_t* row(int64_t page, int64_t h, int64_t slot) const {
    const QkvView v = view(DType::BF16);
    return host.data() + (page * v.stride_b + h * v.stride_h + slot * v.stride_n) * esize;
  }
};

// Host gather of n tokens: [heads, n, d]. The rows of a page id outside the
// pool keep the destination's fill byte (the gather skips them).
std::vector<uint8_t> host_gather(const Pool& p, const std::vector<int32_t>& ids, int64_t n,
                                 uint8_t fill) {
  const size_t row = (size_t)(p.d * p.esize);
  std::vector<uint8_t> out((size_t)p.heads * n * row, fill);
  for (int64_t h = 0; h < p.heads; ++h)
    for (int64_t t = 0; t < n; ++t) {
      const int32_t id = ids[t / p.page_size];
      if (id >= 0 && id < p.pages)
        std::memcpy(out.data() + ((size_t)h * n + t) * row, p.row(id, h, t % p.page_size), row);
    }
  return out;
}

// Options of a case beyond its shape.
struct Extra {
  bool bad_ids = false;  // two page ids outside the pool (-1 and numPages)
  size_t v_shift = 0;    // bytes the value pool starts past a 16-byte boundary
};

bool run_case(const char* name, int64_t heads, int64_t ps, int64_t d, DType dt, bool nhd, int64_t n,
              bool values, Extra x = {}) {
  const int64_t esize = dt == DType::F32 ? 4 : 2;
  const int64_t need = (n + ps - 1) / ps, pages = need + 3;
  Pool kp(pages, heads, ps, d, esize, nhd, 11), vp(pages, heads, ps, d, esize, nhd, 12, x.v_shift);
  std::mt19937 rng(7);
  std::vector<int32_t> ids(pages);
  std::iota(ids.begin(), ids.end(), 0);
  std::shuffle(ids.begin(), ids.end(), rng);
  ids.resize(need);
  if (need > 2) ids[need - 1] = ids[0];  // a page shared (a reused prefix)
  if (x.bad_ids && need > 3) {
    ids[1] = -1;
    ids[need - 2] = (int32_t)pages;
  }
  int32_t* dids = nullptr;
  void *kd = nullptr, *vd = nullptr;
  const size_t bytes = (size_t)(heads * n * d * esize);
  CK(cudaMalloc(&dids, sizeof(int32_t) * ids.size()));
  CK(cudaMemcpy(dids, ids.data(), sizeof(int32_t) * ids.size(), cudaMemcpyHostToDevice));
  CK(cudaMalloc(&kd, bytes));
  CK(cudaMalloc(&vd, bytes));
  CK(cudaMemset(kd, 0xEE, bytes));
  CK(cudaMemset(vd, 0xEE, bytes));
  const QkvView kv = kp.view(dt), vv = vp.view(dt);
  CK(cuda::gather_pages(kv, values ? &vv : nullptr, dids, n, kd, values ? vd : nullptr, 0));
  CK(cudaDeviceSynchronize());
  std::vector<uint8_t> got(bytes);
  CK(cudaMemcpy(got.data(), kd, bytes, cudaMemcpyDeviceToHost));
  bool ok = got == host_gather(kp, ids, n, 0xEE);
  if (values) {
    CK(cudaMemcpy(got.data(), vd, bytes, cudaMemcpyDeviceToHost));
    ok = ok && got == host_gather(vp, ids, n, 0xEE);
  } else {
    std::vector<uint8_t> untouched(bytes);
    CK(cudaMemcpy(untouched.data(), vd, bytes, cudaMemcpyDeviceToHost));
    ok = ok && std::all_of(untouched.begin(), untouched.end(), [](uint8_t b) { return b == 0xEE; });
  }
  std::printf("%s %-28s heads %2lld page %3lld d %3lld %-4s %s n %7lld %s\n", ok ? "PASS" : "FAIL",
              name, (long long)heads, (long long)ps, (long long)d, check::dtype_name(dt),
              nhd ? "NHD" : "HND", (long long)n, values ? "keys+values" : "keys only");
  CK(cudaFree(dids));
  CK(cudaFree(kd));
  CK(cudaFree(vd));
  return ok;
}

// 8 kv heads, d 128, bf16, n tokens in pages of ps in random order.
void timing(int64_t n, int64_t ps, bool nhd) {
  const int64_t heads = 8, d = 128, esize = 2, need = (n + ps - 1) / ps;
  Pool kp(need, heads, ps, d, esize, nhd, 1), vp(need, heads, ps, d, esize, nhd, 2);
  std::vector<int32_t> ids(need);
  std::iota(ids.begin(), ids.end(), 0);
  std::shuffle(ids.begin(), ids.end(), std::mt19937(3));
  int32_t* dids = nullptr;
  void *kd = nullptr, *vd = nullptr;
  const size_t bytes = (size_t)(heads * n * d * esize);
  CK(cudaMalloc(&dids, sizeof(int32_t) * need));
  CK(cudaMemcpy(dids, ids.data(), sizeof(int32_t) * need, cudaMemcpyHostToDevice));
  CK(cudaMalloc(&kd, bytes));
  CK(cudaMalloc(&vd, bytes));
  const QkvView kv = kp.view(DType::BF16), vv = vp.view(DType::BF16);
  const double both =
      check::median_ms([&] { CK(cuda::gather_pages(kv, &vv, dids, n, kd, vd, 0)); }, 20);
  const double keys =
      check::median_ms([&] { CK(cuda::gather_pages(kv, nullptr, dids, n, kd, nullptr, 0)); }, 20);
  const double copy = check::median_ms(
      [&] {
        CK(cudaMemcpyAsync(kd, kp.dev, bytes, cudaMemcpyDeviceToDevice, 0));
        CK(cudaMemcpyAsync(vd, vp.dev, bytes, cudaMemcpyDeviceToDevice, 0));
      },
      20);
  // Bytes moved: read and written once each.
  const double gb = 2.0 * 2.0 * (double)bytes / 1e9;
  std::printf("| %7lld | %4lld | %s | %8.3f | %6.0f | %8.3f | %8.3f | %6.0f |\n", (long long)n,
              (long long)ps, nhd ? "NHD" : "HND", both, gb / (both * 1e-3), keys, copy,
              gb / (copy * 1e-3));
  CK(cudaFree(dids));
  CK(cudaFree(kd));
  CK(cudaFree(vd));
}

}  // namespace

int main(int argc, char** argv) {
  bool timing_on = true;
  for (int a = 1; a < argc; ++a)
    if (!std::strcmp(argv[a], "--no-timing")) timing_on = false;
  int fails = 0, total = 0;
  auto tally = [&](bool ok) {
    ++total;
    fails += ok ? 0 : 1;
  };
  for (bool nhd : {true, false})
    for (int64_t ps : {16, 32, 64, 128, 256})
      tally(run_case("bf16, partial last page", 8, ps, 128, DType::BF16, nhd, 1000 + ps / 2, true));
  tally(run_case("f16 d64, keys only", 4, 16, 64, DType::F16, true, 777, false));
  tally(run_case("f32 d34 (4-byte chunks)", 3, 32, 34, DType::F32, false, 301, true));
  tally(run_case("bf16 d258 (4-byte chunks)", 2, 16, 258, DType::BF16, true, 100, true));
  tally(run_case("f32 d2048 (rows past 256 threads)", 1, 16, 2048, DType::F32, true, 40, true));
  tally(run_case("one token", 8, 64, 128, DType::BF16, false, 1, true));
  tally(run_case("page of 24 (not a power of 2)", 4, 24, 128, DType::BF16, true, 500, true));
  tally(run_case("page ids outside the pool", 4, 16, 128, DType::BF16, false, 300, true,
                 Extra{true, 0}));
  tally(run_case("value pool off the 16-byte grid", 4, 32, 128, DType::BF16, true, 400, true,
                 Extra{false, 4}));
  std::printf("gather: %d/%d cases passed\n", total - fails, total);
  if (timing_on) {
    std::printf(
        "\ngather of keys and values, 8 kv heads, d 128, bf16, pages in random order, median ms\n"
        "| tokens | page | layout | K+V gather | GB/s | K only | K+V memcpy | GB/s |\n"
        "|---|---|---|---|---|---|---|---|\n");
    for (int64_t n : {32768LL, 131072LL, 1048576LL}) timing(n, 128, true);
    timing(131072, 16, true);
    timing(131072, 128, false);
  }
  return fails == 0 ? 0 : 1;
}

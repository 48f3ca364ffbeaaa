#include "binding/storage.h"

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <new>

#include <sys/mman.h>

#include "binding/device.h"
#include "binding/errors.h"
#include "binding/memory.h"

namespace prism::binding {

namespace {
constexpr size_t kHostAlignment = 64;  // cache line; lets backends use aligned vector loads
// From here on host storages are fresh pages from the OS: already zero (no
// memset on the calling thread) and only the pages written take memory.
constexpr size_t kMapBytes = size_t(1) << 20;

size_t round_up(size_t n, size_t to) { return (n + to - 1) / to * to; }

}  // namespace

// Hands fresh memory to a Storage; if the Storage itself cannot be allocated,
// frees the memory before rethrowing. (Past `new`, the shared_ptr deletes the
// Storage on failure, and its destructor frees.)
std::shared_ptr<Storage> Storage::own(int device, void* p, size_t bytes) {
  Storage* s = nullptr;
  try {
    s = new Storage(device, p, bytes, true);
  } catch (...) {
    free_memory(device, p, bytes);
    throw;
  }
  return std::shared_ptr<Storage>(s);
}

std::shared_ptr<Storage> Storage::allocate(int device, size_t bytes) {
  if (bytes == 0) throw_range("cannot allocate an empty tensor");
  if (device == kCpuDevice) {
    void* p = nullptr;
    if (bytes >= kMapBytes) {
      p = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
      if (p == MAP_FAILED) throw std::bad_alloc();
    } else {
      p = std::aligned_alloc(kHostAlignment, round_up(bytes, kHostAlignment));
      if (!p) throw std::bad_alloc();
      std::memset(p, 0, bytes);
    }
    memory_counters(device).allocations.fetch_add(1, std::memory_order_relaxed);
    return own(device, p, bytes);
  }
#if PRISM_WITH_CUDA
  // Stream-ordered allocation on the device stream: ops run on that stream or
  // on a caller's stream made to wait for it, so no host synchronisation is
  // needed here.
  DeviceContext& ctx = device_context(device);
  void* p = nullptr;
  cudaError_t e;
  {
    DeviceScope scope(device);
    // Out of memory, idle workspace buffers go back first (malloc_async).
    e = workspace_pool(device).malloc_async(&p, bytes, ctx.stream());
    if (e == cudaSuccess) {
      e = cudaMemsetAsync(p, 0, bytes, ctx.stream());
      if (e != cudaSuccess) cudaFreeAsync(p, ctx.stream());
    }
  }
  check_cuda(e, e == cudaErrorMemoryAllocation ? "cudaMallocAsync" : "tensor allocation");
  return own(device, p, bytes);
#else
  require_device(device);  // throws: no CUDA in this build
  return nullptr;
#endif
}

std::shared_ptr<Storage> Storage::wrap(int device, void* data, size_t bytes) {
  if (!data) throw_range("cannot wrap a null pointer");
  return std::shared_ptr<Storage>(new Storage(device, data, bytes, false));
}

std::shared_ptr<Storage> Storage::slice(std::shared_ptr<Storage> parent, size_t offset,
                                        size_t bytes) {
  if (!parent || offset > parent->bytes_ || bytes > parent->bytes_ - offset || bytes == 0)
    throw_range("a slice must lie inside its storage");
  auto s = std::shared_ptr<Storage>(
      new Storage(parent->device_, static_cast<char*>(parent->data_) + offset, bytes, false));
  // A slice of a slice holds the root: chains stay one level deep (a chain of
  // a million views would otherwise be freed by as deep a recursion).
  s->parent_ = parent->parent_ ? parent->parent_ : std::move(parent);
  return s;
}

Storage::Storage(int device, void* data, size_t bytes, bool owning)
    : device_(device), data_(data), bytes_(bytes), owning_(owning) {
  if (!owning_) return;
  MemoryCounters& c = memory_counters(device_);
  c.tensor_bytes.fetch_add(static_cast<int64_t>(bytes_), std::memory_order_relaxed);
  c.tensor_count.fetch_add(1, std::memory_order_relaxed);
}

Storage::~Storage() {
  if (!owning_ || !data_) return;
  MemoryCounters& c = memory_counters(device_);
  c.tensor_bytes.fetch_sub(static_cast<int64_t>(bytes_), std::memory_order_relaxed);
  c.tensor_count.fetch_sub(1, std::memory_order_relaxed);
  free_memory(device_, data_, bytes_);
}

void Storage::free_memory(int device, void* data, size_t bytes) noexcept {
  if (device == kCpuDevice) {
    if (bytes >= kMapBytes)
      munmap(data, bytes);
    else
      std::free(data);
    return;
  }
#if PRISM_WITH_CUDA
  // Ordered after all work already on the stream; never blocks the caller.
  // Nothing here may throw (a destructor calls it): failures are reported on stderr.
  try {
    cudaStream_t stream = device_context(device).stream();
    cudaError_t e;
    {
      DeviceScope scope(device);
      e = cudaFreeAsync(data, stream);
    }
    if (e != cudaSuccess)
      std::fprintf(stderr, "prism-attention: %s\n", cuda_error_text(e, "cudaFreeAsync").c_str());
  } catch (const std::exception& x) {
    std::fprintf(stderr, "prism-attention: freeing device memory: %s\n", x.what());
  }
#endif
}

}  // namespace prism::binding

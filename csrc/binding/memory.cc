#include "binding/memory.h"

#include <algorithm>
#include <cstddef>
#include <limits>

#include <array>
#include <memory>
#include <string>

#include "binding/device.h"
#include "binding/errors.h"

namespace prism::binding {

namespace {
constexpr int kMaxDevices = 1024;  // args.cc accepts device indices up to 1023
}

MemoryCounters& memory_counters(int device) {
  static auto* counters = new std::array<MemoryCounters, kMaxDevices + 1>();  // never freed
  if (device < kCpuDevice || device >= kMaxDevices)
    throw_range("invalid device index " + std::to_string(device));
  return (*counters)[static_cast<size_t>(device + 1)];
}

#if PRISM_WITH_CUDA

namespace {
// cudaMallocAsync on `stream`; a success is counted in memory_counters(device).
cudaError_t counted_malloc_async(int device, void** p, size_t bytes, cudaStream_t stream) {
  cudaError_t e = cudaMallocAsync(p, bytes, stream);
  if (e == cudaSuccess) memory_counters(device).allocations.fetch_add(1, std::memory_order_relaxed);
  return e;
}
}  // namespace

WorkspaceLease& WorkspaceLease::operator=(WorkspaceLease&& o) noexcept {
  if (this != &o) {
    reset();
    pool_ = o.pool_;
    data_ = o.data_;
    bytes_ = o.bytes_;
    ready_ = o.ready_;
    stream_ = o.stream_;
    done_ = o.done_;
    o.pool_ = nullptr;
    o.data_ = nullptr;
  }
  return *this;
}

void WorkspaceLease::reset() noexcept {
  if (pool_ != nullptr) pool_->give_back({data_, bytes_, ready_, !done_}, stream_);
  pool_ = nullptr;
  data_ = nullptr;
  done_ = false;
}

namespace {
constexpr size_t kPowerOfTwoClasses = size_t(1) << 30;  // classes up to here: powers of two
}  // namespace

size_t WorkspacePool::size_class(size_t bytes) {
  // Past half the address space no power of two holds it (and the doubling
  // below would wrap to 0 and never end): no device has that much memory.
  if (bytes > (std::numeric_limits<size_t>::max() >> 1))
    throw_error("a workspace of " + std::to_string(bytes) + " bytes is more than any device holds");
  size_t c = size_t(64) << 10;  // small requests share one class
  while (c < bytes) c <<= 1;
  if (c <= kPowerOfTwoClasses) return c;
  // Past 1 GiB, sixteenths of the power of two (at most 1/8 more than asked):
  // whole powers of two left up to half a large request unused, e.g. 10 GB of
  // the 24 GB that a 1M-token prefill at block 64 needs.
  const size_t step = c / 16;
  return (bytes + step - 1) / step * step;
}

std::vector<size_t> WorkspacePool::evictions_before(const std::vector<size_t>& idle, size_t want) {
  // Only the sixteenth-size classes past 1 GiB: below, powers of two of
  // distinct sizes never add up to the next one.
  if (want <= kPowerOfTwoClasses) return {};
  std::vector<size_t> smaller;
  size_t total = 0;
  for (size_t i = 0; i < idle.size(); ++i)
    if (idle[i] > kPowerOfTwoClasses && idle[i] < want) {
      smaller.push_back(i);
      total += idle[i];
    }
  std::stable_sort(smaller.begin(), smaller.end(),
                   [&idle](size_t a, size_t b) { return idle[a] < idle[b]; });
  std::vector<size_t> out;
  for (size_t i : smaller) {
    if (total <= want) break;
    out.push_back(i);
    total -= idle[i];
  }
  return out;
}

WorkspaceLease WorkspacePool::acquire(size_t bytes, cudaStream_t stream) {
  WorkspaceLease lease;
  if (bytes == 0) return lease;
  const size_t want = size_class(bytes);
  Block b{nullptr, 0, nullptr, false};
  {
    std::lock_guard<std::mutex> lock(mutex_);
    auto best = idle_.end();
    for (auto it = idle_.begin(); it != idle_.end(); ++it)
      if (it->bytes >= want && (best == idle_.end() || it->bytes < best->bytes)) best = it;
    if (best != idle_.end()) {
      b = *best;
      idle_.erase(best);
      lent_ += b.bytes;
    }
  }
  if (b.data != nullptr && b.pending) {
    // The previous user's work comes first (a no-op once it has completed).
    cudaError_t e = cudaStreamWaitEvent(stream, b.ready, 0);
    if (e != cudaSuccess) {
      std::lock_guard<std::mutex> lock(mutex_);
      lent_ -= b.bytes;
      idle_.push_back(b);  // unused: its event still marks its last use
      check_cuda(e, "cudaStreamWaitEvent (workspace)");
    }
  } else if (b.data == nullptr) {
    std::vector<Block> evicted;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      std::vector<size_t> sizes;
      for (const Block& x : idle_) sizes.push_back(x.bytes);
      std::vector<size_t> out = evictions_before(sizes, want);
      std::sort(out.rbegin(), out.rend());  // erase from the back
      for (size_t i : out) {
        evicted.push_back(idle_[i]);
        cached_ -= idle_[i].bytes;
        idle_.erase(idle_.begin() + static_cast<std::ptrdiff_t>(i));
      }
    }
    free_blocks(evicted, stream);
    b = allocate(want, stream);
  }
  lease.pool_ = this;
  lease.data_ = b.data;
  lease.bytes_ = b.bytes;
  lease.ready_ = b.ready;
  lease.stream_ = stream;
  return lease;
}

WorkspacePool::Block WorkspacePool::allocate(size_t bytes, cudaStream_t stream) {
  Block b{nullptr, bytes, nullptr, false};  // in this stream's order: nothing to wait for
  check_cuda(cudaEventCreateWithFlags(&b.ready, cudaEventDisableTiming),
             "cudaEventCreateWithFlags (workspace)");
  cudaError_t e = malloc_async(&b.data, bytes, stream);
  if (e != cudaSuccess) {
    cudaEventDestroy(b.ready);
    check_cuda(e, "cudaMallocAsync (workspace)");
  }
  std::lock_guard<std::mutex> lock(mutex_);
  cached_ += bytes;
  lent_ += bytes;
  return b;
}

cudaError_t WorkspacePool::malloc_async(void** p, size_t bytes, cudaStream_t stream) {
  cudaError_t e = counted_malloc_async(device_, p, bytes, stream);
  if (e != cudaErrorMemoryAllocation) return e;
  // Out of memory: give the idle buffers back (in order on this stream) and retry once.
  cudaGetLastError();
  size_t freed = 0;
  try {
    freed = release_idle(stream);
  } catch (...) {
  }
  return freed > 0 ? counted_malloc_async(device_, p, bytes, stream) : e;
}

void WorkspacePool::give_back(Block b, cudaStream_t stream) noexcept {
  if (b.pending && cudaEventRecord(b.ready, stream) != cudaSuccess) {
    // Without the event, wait here so the next user cannot overtake this one.
    cudaStreamSynchronize(stream);
    cudaGetLastError();
    b.pending = false;
  }
  std::lock_guard<std::mutex> lock(mutex_);
  lent_ -= b.bytes;
  idle_.push_back(b);
}

size_t WorkspacePool::release_idle(cudaStream_t stream) {
  std::vector<Block> blocks;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    blocks.swap(idle_);
    for (const Block& b : blocks) cached_ -= b.bytes;
  }
  return free_blocks(blocks, stream);
}

size_t WorkspacePool::free_blocks(const std::vector<Block>& blocks, cudaStream_t stream) {
  size_t freed = 0;
  cudaError_t first = cudaSuccess;
  for (const Block& b : blocks) {
    // Freed in stream order after the buffer's last use.
    cudaError_t e = b.pending ? cudaStreamWaitEvent(stream, b.ready, 0) : cudaSuccess;
    if (e == cudaSuccess) e = cudaFreeAsync(b.data, stream);
    cudaEventDestroy(b.ready);
    if (e == cudaSuccess)
      freed += b.bytes;
    else if (first == cudaSuccess)
      first = e;
  }
  check_cuda(first, "cudaFreeAsync (workspace)");
  return freed;
}

size_t WorkspacePool::cached_bytes() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return cached_;
}

size_t WorkspacePool::lent_bytes() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return lent_;
}

WorkspacePool& workspace_pool(int device) {
  static std::mutex mutex;
  static auto* pools = new std::vector<std::unique_ptr<WorkspacePool>>();  // never freed
  require_device(device);
  std::lock_guard<std::mutex> lock(mutex);
  return per_device_slot(*pools, device);
}

#endif

}  // namespace prism::binding

// Memory accounting per device (process-wide: shared by the main thread and
// every worker) and the per-device cache of CUDA workspace buffers.
#pragma once
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <mutex>
#include <vector>
#if PRISM_WITH_CUDA
#include <cuda_runtime.h>
#endif

namespace prism::binding {

struct MemoryCounters {
  std::atomic<int64_t> tensor_bytes{0};  // owned by live tensor storages
  std::atomic<int64_t> tensor_count{0};
  std::atomic<uint64_t> allocations{0};  // tensor storages + workspace buffers, ever
};

// Counters of `device` (kCpuDevice or a CUDA index < 1024).
MemoryCounters& memory_counters(int device);

#if PRISM_WITH_CUDA
class WorkspacePool;

// A buffer lent by a WorkspacePool; goes back to the pool when destroyed.
// Work enqueued on its stream before then is ordered before the next use,
// unless mark_done() said that work has already completed (then giving it
// back and the next use make no CUDA call).
class WorkspaceLease {
 public:
  WorkspaceLease() = default;
  ~WorkspaceLease() { reset(); }
  WorkspaceLease(WorkspaceLease&& o) noexcept { *this = std::move(o); }
  WorkspaceLease& operator=(WorkspaceLease&& o) noexcept;
  WorkspaceLease(const WorkspaceLease&) = delete;
  WorkspaceLease& operator=(const WorkspaceLease&) = delete;
  void* get() const { return data_; }
  // Everything that used the buffer has completed (its stream was waited for).
  void mark_done() { done_ = true; }
  void reset() noexcept;

 private:
  friend class WorkspacePool;
  WorkspacePool* pool_ = nullptr;
  void* data_ = nullptr;
  size_t bytes_ = 0;
  cudaEvent_t ready_ = nullptr;
  cudaStream_t stream_ = nullptr;
  bool done_ = false;
};

// Workspace buffers of one device, kept for reuse so that a steady stream of
// ops allocates nothing. A request takes the smallest idle buffer that is big
// enough, else a new one (size_class), first freeing idle buffers past 1 GiB
// smaller than the new one while they add up to more than it
// (evictions_before), so that requests that grow step by step do not keep
// every step's buffer. Each buffer
// carries an event recorded where it was last used; the next user's stream
// waits on it, which makes reuse safe across streams without host waits. A
// buffer whose last use is known to have completed skips both.
class WorkspacePool {
 public:
  explicit WorkspacePool(int device) : device_(device) {}
  WorkspacePool(const WorkspacePool&) = delete;
  WorkspacePool& operator=(const WorkspacePool&) = delete;

  // At least `bytes` for work on `stream`; the calling thread's current
  // device must be this pool's. bytes == 0: an empty lease.
  WorkspaceLease acquire(size_t bytes, cudaStream_t stream);
  // Frees the idle buffers in order on `stream`; returns the bytes freed.
  size_t release_idle(cudaStream_t stream);
  // cudaMallocAsync on `stream` (counted in memory_counters); out of memory, the idle
  // buffers go back first (release_idle) and the allocation is tried once more.
  // Workspace buffers and tensors both allocate through it.
  cudaError_t malloc_async(void** p, size_t bytes, cudaStream_t stream);

  size_t cached_bytes() const;  // idle + lent
  size_t lent_bytes() const;

  // The buffer size a request of `bytes` is given: powers of two up to 1 GiB,
  // then sixteenths of one (reused by best fit either way).
  static size_t size_class(size_t bytes);
  // Which idle buffers (indices into `idle`, their sizes) to free before a new
  // buffer of `want` bytes is made: of those past 1 GiB and smaller than
  // `want`, the smallest ones, until the rest add up to at most `want`.
  static std::vector<size_t> evictions_before(const std::vector<size_t>& idle, size_t want);

 private:
  friend class WorkspaceLease;
  struct Block {
    void* data;
    size_t bytes;
    cudaEvent_t ready;
    bool pending;  // `ready` marks a last use that may still be running
  };
  Block allocate(size_t bytes, cudaStream_t stream);
  // Frees `blocks` in order on `stream` after their last uses; returns the bytes freed.
  size_t free_blocks(const std::vector<Block>& blocks, cudaStream_t stream);
  // b.pending: its users may still run on `stream` (an event is recorded);
  // false when they are known to have completed.
  void give_back(Block b, cudaStream_t stream) noexcept;

  int device_;
  mutable std::mutex mutex_;
  std::vector<Block> idle_;
  size_t cached_ = 0;
  size_t lent_ = 0;
};

// The pool of `device`, created on first use (no CUDA call until a buffer is
// needed); lives until the process ends, like the device contexts.
WorkspacePool& workspace_pool(int device);
#endif

}  // namespace prism::binding

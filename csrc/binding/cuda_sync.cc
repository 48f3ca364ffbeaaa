#include "binding/cuda_sync.h"
#if PRISM_WITH_CUDA
#include <cstring>
#include <map>
#include <mutex>
#include <thread>
#include <utility>
#include <vector>

#include "binding/errors.h"
#include "binding/wait_policy.h"

namespace prism::binding {

namespace {
// Events are reused: creating and destroying four per call cost more host
// time than the prefill's own launches. One free list per (device, flags): an
// event belongs to the device current when it was made. A returned event may
// still be pending in a stream; recording it again later is allowed (a wait
// already enqueued on it keeps the record it saw).
std::mutex g_event_mutex;
std::map<std::pair<int, unsigned>, std::vector<cudaEvent_t>> g_free_events;
// Kept per list; more are destroyed (a timed run of many iterations takes two
// events an iteration, and the list should not keep them all for good). Far
// above what one call holds (a handful: a ragged batch takes three and two a fork/join), so that
// steady calls never create events.
constexpr size_t kMaxFreeEvents = 4096;
}  // namespace

CudaEvent::CudaEvent(unsigned flags) : flags_(flags) {
  check_cuda(cudaGetDevice(&device_), "cudaGetDevice");
  {
    std::lock_guard<std::mutex> lock(g_event_mutex);
    auto& free = g_free_events[{device_, flags_}];
    if (!free.empty()) {
      event_ = free.back();
      free.pop_back();
      return;
    }
  }
  check_cuda(cudaEventCreateWithFlags(&event_, flags), "cudaEventCreateWithFlags");
}

CudaEvent::~CudaEvent() {
  if (!event_) return;
  {
    std::lock_guard<std::mutex> lock(g_event_mutex);
    auto& free = g_free_events[{device_, flags_}];
    if (free.size() < kMaxFreeEvents) {
      free.push_back(event_);
      return;
    }
  }
  // Allowed while a record is pending: the event's resources go when it completes.
  cudaEventDestroy(event_);
  cudaGetLastError();
}

float elapsed_ms(const CudaEvent& from, const CudaEvent& to) {
  float ms = 0.f;
  check_cuda(cudaEventElapsedTime(&ms, from.get(), to.get()), "cudaEventElapsedTime");
  return ms;
}

StreamBuffer::StreamBuffer(size_t bytes, cudaStream_t stream) {
  int device = 0;
  check_cuda(cudaGetDevice(&device), "cudaGetDevice");
  lease_ = workspace_pool(device).acquire(bytes, stream);
}

void wait_for_stream(cudaStream_t stream, const char* operation) {
  CudaEvent done(cudaEventBlockingSync | cudaEventDisableTiming);
  check_cuda(cudaEventRecord(done.get(), stream), "cudaEventRecord");
  if (wait_spins()) {
    // Waking from a sleep on the event took 0.05-0.3 ms on the H200 host
    // (longer the longer the sleep); a query loop sees the end within a few us.
    cudaError_t e;
    while ((e = cudaEventQuery(done.get())) == cudaErrorNotReady) std::this_thread::yield();
    check_cuda(e, operation);
    return;
  }
  check_cuda(cudaEventSynchronize(done.get()), operation);
}

namespace {
std::mutex g_pinned_mutex;
std::vector<int64_t*> g_pinned_free;  // never freed: pinned pages live as long as the process
}  // namespace

PinnedValue::PinnedValue() {
  std::lock_guard<std::mutex> lock(g_pinned_mutex);
  if (g_pinned_free.empty()) {
    constexpr size_t kSlots = 512;  // one 4 KiB page
    void* p = nullptr;
    check_cuda(cudaHostAlloc(&p, kSlots * sizeof(int64_t), cudaHostAllocPortable), "cudaHostAlloc");
    for (size_t i = 0; i < kSlots; ++i) g_pinned_free.push_back(static_cast<int64_t*>(p) + i);
  }
  value_ = g_pinned_free.back();
  g_pinned_free.pop_back();
}

PinnedValue::~PinnedValue() {
  std::lock_guard<std::mutex> lock(g_pinned_mutex);
  g_pinned_free.push_back(value_);
}

namespace {
constexpr int kMinPinnedClass = 12;       // 4 KiB
std::vector<void*> g_pinned_buffers[64];  // free buffers by size class (log2 bytes)
}  // namespace

PinnedBuffer::PinnedBuffer(size_t bytes) {
  size_class_ = kMinPinnedClass;
  while ((size_t(1) << size_class_) < bytes) ++size_class_;
  {
    std::lock_guard<std::mutex> lock(g_pinned_mutex);
    auto& free = g_pinned_buffers[size_class_];
    if (!free.empty()) {
      data_ = free.back();
      free.pop_back();
      return;
    }
  }
  check_cuda(cudaHostAlloc(&data_, size_t(1) << size_class_, cudaHostAllocPortable),
             "cudaHostAlloc (staging)");
}

PinnedBuffer::~PinnedBuffer() {
  if (!data_) return;
  std::lock_guard<std::mutex> lock(g_pinned_mutex);
  g_pinned_buffers[size_class_].push_back(data_);
}

void copy_to_device_async(void* dst, const void* src, size_t bytes, cudaStream_t stream,
                          std::unique_ptr<PinnedBuffer>& staging, const char* what) {
  if (bytes == 0) return;
  staging = std::make_unique<PinnedBuffer>(bytes);
  std::memcpy(staging->get(), src, bytes);
  check_cuda(cudaMemcpyAsync(dst, staging->get(), bytes, cudaMemcpyHostToDevice, stream), what);
}

StreamLanes::StreamLanes(int device, cudaStream_t main, size_t count) {
  lanes_.push_back(main);
  DeviceContext& ctx = device_context(device);
  for (size_t i = 1; i < count && i < kMaxLanes; ++i) lanes_.push_back(ctx.side_stream(i));
}

StreamLanes::~StreamLanes() {
  if (!forked_) return;
  try {
    join();
  } catch (...) {
    // An event could not be recorded or waited on: wait on the host instead.
    for (cudaStream_t s : lanes_) drain_stream_quietly(s);
  }
}

void StreamLanes::fork() {
  if (lanes_.size() < 2) return;
  CudaEvent ready(cudaEventDisableTiming);
  check_cuda(cudaEventRecord(ready.get(), lanes_[0]), "cudaEventRecord (fork)");
  forked_ = true;  // from here on the side lanes may hold work
  for (size_t i = 1; i < lanes_.size(); ++i)
    check_cuda(cudaStreamWaitEvent(lanes_[i], ready.get(), 0), "cudaStreamWaitEvent (fork)");
}

void StreamLanes::join() {
  if (!forked_) return;
  for (size_t i = 1; i < lanes_.size(); ++i) {
    CudaEvent done(cudaEventDisableTiming);
    check_cuda(cudaEventRecord(done.get(), lanes_[i]), "cudaEventRecord (join)");
    check_cuda(cudaStreamWaitEvent(lanes_[0], done.get(), 0), "cudaStreamWaitEvent (join)");
  }
  forked_ = false;
}

void drain_stream_quietly(cudaStream_t stream) noexcept {
  cudaStreamSynchronize(stream);
  cudaGetLastError();
}

}  // namespace prism::binding
#endif

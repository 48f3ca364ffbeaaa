#include "binding/cuda_sync.h"
#if PRISM_WITH_CUDA
#include <mutex>
#include <vector>

#include "binding/errors.h"

namespace prism::binding {

CudaEvent::CudaEvent(unsigned flags) {
  check_cuda(cudaEventCreateWithFlags(&event_, flags), "cudaEventCreateWithFlags");
}

CudaEvent::~CudaEvent() {
  if (event_) cudaEventDestroy(event_);
}

StreamBuffer::StreamBuffer(size_t bytes, cudaStream_t stream) {
  int device = 0;
  check_cuda(cudaGetDevice(&device), "cudaGetDevice");
  lease_ = workspace_pool(device).acquire(bytes, stream);
}

void wait_for_stream(cudaStream_t stream, const char* operation) {
  CudaEvent done(cudaEventBlockingSync | cudaEventDisableTiming);
  check_cuda(cudaEventRecord(done.get(), stream), "cudaEventRecord");
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

void drain_stream_quietly(cudaStream_t stream) noexcept {
  cudaStreamSynchronize(stream);
  cudaGetLastError();
}

}  // namespace prism::binding
#endif

#include "binding/cuda_sync.h"
#if PRISM_WITH_CUDA
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

int64_t* thread_pinned_values() {
  thread_local int64_t* values = nullptr;
  if (values == nullptr) {
    void* p = nullptr;
    check_cuda(cudaHostAlloc(&p, 8 * sizeof(int64_t), cudaHostAllocPortable), "cudaHostAlloc");
    values = static_cast<int64_t*>(p);
  }
  return values;
}

void drain_stream_quietly(cudaStream_t stream) noexcept {
  cudaStreamSynchronize(stream);
  cudaGetLastError();
}

}  // namespace prism::binding
#endif

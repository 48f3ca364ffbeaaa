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

void drain_stream_quietly(cudaStream_t stream) noexcept {
  cudaStreamSynchronize(stream);
  cudaGetLastError();
}

}  // namespace prism::binding
#endif

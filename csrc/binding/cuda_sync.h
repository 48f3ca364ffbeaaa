// Small RAII helpers for CUDA objects the binding creates per call: events
// and stream-ordered scratch buffers. Only compiled with CUDA.
#pragma once
#if PRISM_WITH_CUDA
#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

namespace prism::binding {

class CudaEvent {
 public:
  explicit CudaEvent(unsigned flags);
  ~CudaEvent();
  CudaEvent(const CudaEvent&) = delete;
  CudaEvent& operator=(const CudaEvent&) = delete;
  CudaEvent(CudaEvent&& o) noexcept : event_(o.event_) { o.event_ = nullptr; }
  cudaEvent_t get() const { return event_; }

 private:
  cudaEvent_t event_ = nullptr;
};

// Scratch memory allocated and freed in stream order (cudaMallocAsync /
// cudaFreeAsync), so freeing never waits for the work that uses it.
class StreamBuffer {
 public:
  StreamBuffer(size_t bytes, cudaStream_t stream);
  ~StreamBuffer();
  StreamBuffer(const StreamBuffer&) = delete;
  StreamBuffer& operator=(const StreamBuffer&) = delete;
  void* get() const { return data_; }

 private:
  void* data_ = nullptr;
  cudaStream_t stream_;
};

// Blocks the calling (worker) thread until everything enqueued on `stream`
// so far has run, without spinning: records a blocking-sync event and waits on it.
void wait_for_stream(cudaStream_t stream, const char* operation);

// Eight pinned int64 of the calling (worker) thread, for device-to-host copies
// of a few values ordered on a stream; allocated on first use, kept for the
// thread's life.
int64_t* thread_pinned_values();

// Same, but for use on error paths: never throws.
void drain_stream_quietly(cudaStream_t stream) noexcept;

}  // namespace prism::binding
#endif

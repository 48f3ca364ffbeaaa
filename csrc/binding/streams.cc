#include "binding/streams.h"

#include <string>

#include "binding/device.h"
#include "binding/errors.h"
#if PRISM_WITH_CUDA
#include "binding/cuda_sync.h"
#endif

namespace prism::binding {

uint64_t read_stream(Napi::Value v, int device) {
  if (v.IsUndefined() || v.IsNull()) return 0;
  if (!v.IsBigInt()) throw_type("stream must be a bigint (a cudaStream_t)");
  bool lossless = true;
  uint64_t s = v.As<Napi::BigInt>().Uint64Value(&lossless);
  if (!lossless) throw_range("stream must be a 64-bit handle");
  // Work runs on a worker thread: the per-thread stream would be that thread's,
  // and the legacy stream would serialise with every blocking stream.
  if (s == 0)
    throw_range(
        "stream 0n (the legacy default stream) is not supported: pass a stream you created");
  if (s == 1 || s == 2)
    throw_range("stream " + std::to_string(s) + "n (cudaStream" +
                (s == 1 ? "Legacy" : "PerThread") +
                ") is not supported: pass a stream you created");
  if (device == kCpuDevice)
    throw_range("a stream needs tensors on a CUDA device; they are on the cpu");
#if PRISM_WITH_CUDA
  cudaStream_t stream = reinterpret_cast<cudaStream_t>(s);
#if CUDART_VERSION >= 12080
  int owner = -1;
  cudaError_t e = cudaStreamGetDevice(stream, &owner);
  if (e != cudaSuccess) {
    cudaGetLastError();
    throw_range("stream is not a usable CUDA stream: " + cuda_error_text(e, "cudaStreamGetDevice"));
  }
  if (owner != device)
    throw_range("stream belongs to " + device_label(owner) + " but the tensors are on " +
                device_label(device));
#endif
  cudaStreamCaptureStatus capture = cudaStreamCaptureStatusNone;
  check_cuda(cudaStreamIsCapturing(stream, &capture), "cudaStreamIsCapturing");
  if (capture != cudaStreamCaptureStatusNone)
    throw_range(
        "stream is capturing a CUDA graph: ops wait for their work on the host, which capture does "
        "not allow");
#endif
  return s;
}

#if PRISM_WITH_CUDA
cudaStream_t op_stream(int device, uint64_t stream) {
  cudaStream_t own = device_context(device).stream();
  if (stream == 0) return own;
  cudaStream_t theirs = reinterpret_cast<cudaStream_t>(stream);
  CudaEvent ready(cudaEventDisableTiming);
  check_cuda(cudaEventRecord(ready.get(), own), "cudaEventRecord (device stream)");
  check_cuda(cudaStreamWaitEvent(theirs, ready.get(), 0), "cudaStreamWaitEvent (caller stream)");
  return theirs;
}
#endif

}  // namespace prism::binding

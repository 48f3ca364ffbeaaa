// Runs one backend call (or warmup + iters of it) off the event loop and
// resolves to the per-iteration milliseconds: steady clock on the CPU, CUDA
// events on a GPU, where the work is enqueued on the device's stream (or the
// caller's, see streams.h) and the worker thread then waits on an event. The
// GPU workspace comes from the device's workspace pool (memory.h), so
// repeated calls allocate nothing.
#pragma once
#include <functional>
#include <memory>
#include <vector>

#include "binding/params.h"
#include "binding/promise_worker.h"
#include "binding/storage.h"
#include "binding/streams.h"
#if PRISM_WITH_CUDA
#include <cuda_runtime.h>
#endif

namespace prism::binding {

struct OpCall {
  const char* name = "op";
  int device = -1;
  Timing timing;
  // Keeps every tensor's memory alive until the op has finished.
  std::vector<std::shared_ptr<Storage>> keep_alive;
  std::function<void()> cpu;  // used when device == cpu
  // Caller's cudaStream_t (read_stream); 0: the device's own stream.
  uint64_t stream = 0;
#if PRISM_WITH_CUDA
  size_t workspace_bytes = 0;
  std::function<cudaError_t(void* workspace, cudaStream_t stream)> gpu;
#endif
};

// Promise<number[]>
Napi::Promise start_timed_op(Napi::Env env, OpCall call);

std::vector<double> time_on_cpu(const Timing& timing, const std::function<void()>& fn);
#if PRISM_WITH_CUDA
std::vector<double> time_on_gpu(int device, const Timing& timing, size_t workspace_bytes,
                                const std::function<cudaError_t(void*, cudaStream_t)>& fn,
                                const char* name, uint64_t stream = 0);
#endif

}  // namespace prism::binding

#include "binding/op_runner.h"

#include <chrono>
#include <utility>

#include "binding/device.h"
#include "binding/errors.h"
#if PRISM_WITH_CUDA
#include "binding/cuda_sync.h"
#include "binding/memory.h"
#endif

namespace prism::binding {

std::vector<double> time_on_cpu(const Timing& timing, const std::function<void()>& fn) {
  for (int i = 0; i < timing.warmup; ++i) fn();
  std::vector<double> ms;
  for (int i = 0; i < timing.iters; ++i) {
    auto t0 = std::chrono::steady_clock::now();
    fn();
    auto t1 = std::chrono::steady_clock::now();
    ms.push_back(std::chrono::duration<double, std::milli>(t1 - t0).count());
  }
  return ms;
}

#if PRISM_WITH_CUDA
std::vector<double> time_on_gpu(int device, const Timing& timing, size_t workspace_bytes,
                                const std::function<cudaError_t(void*, cudaStream_t)>& fn,
                                const char* name, uint64_t caller_stream) {
  use_device(device);
  cudaStream_t stream = op_stream(device, caller_stream);
  // Given back after the wait below (or the drain on failure).
  WorkspaceLease workspace;
  try {
    workspace = workspace_pool(device).acquire(workspace_bytes, stream);
    for (int i = 0; i < timing.warmup; ++i) check_cuda(fn(workspace.get(), stream), name);
    std::vector<std::pair<CudaEvent, CudaEvent>> marks;
    for (int i = 0; i < timing.iters; ++i) {
      marks.emplace_back(CudaEvent(cudaEventDefault), CudaEvent(cudaEventDefault));
      check_cuda(cudaEventRecord(marks.back().first.get(), stream), "cudaEventRecord");
      check_cuda(fn(workspace.get(), stream), name);
      check_cuda(cudaEventRecord(marks.back().second.get(), stream), "cudaEventRecord");
    }
    wait_for_stream(stream, name);
    workspace.mark_done();
    std::vector<double> ms;
    for (auto& m : marks) ms.push_back(elapsed_ms(m.first, m.second));
    return ms;
  } catch (...) {
    // Work already enqueued may still read tensors and host buffers: let it finish.
    drain_stream_quietly(stream);
    throw;
  }
}
#endif

namespace {

class TimedOpWorker : public PromiseWorker {
 public:
  TimedOpWorker(Napi::Env env, OpCall call)
      : PromiseWorker(env, call.device), call_(std::move(call)) {}

 protected:
  void run() override {
    if (call_.device == kCpuDevice) {
      ms_ = time_on_cpu(call_.timing, call_.cpu);
      return;
    }
#if PRISM_WITH_CUDA
    ms_ = time_on_gpu(call_.device, call_.timing, call_.workspace_bytes, call_.gpu, call_.name,
                      call_.stream);
#else
    require_device(call_.device);
#endif
  }

  Napi::Value result(Napi::Env env) override {
    Napi::Array out = Napi::Array::New(env, ms_.size());
    for (size_t i = 0; i < ms_.size(); ++i)
      out.Set(static_cast<uint32_t>(i), Napi::Number::New(env, ms_[i]));
    return out;
  }

 private:
  OpCall call_;
  std::vector<double> ms_;
};

}  // namespace

Napi::Promise start_timed_op(Napi::Env env, OpCall call) {
  return (new TimedOpWorker(env, std::move(call)))->start();
}

}  // namespace prism::binding

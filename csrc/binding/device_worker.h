// A PromiseWorker of a call that runs either on the CPU backend or on a GPU:
// run() sends the worker thread to run_cpu() or run_gpu() by the device the
// call's tensors are on (a build without CUDA throws for a GPU device).
// Workers whose GPU work the calling thread enqueues itself start through
// start_after_enqueue().
#pragma once
#include <napi.h>

#include "binding/device.h"
#include "binding/promise_worker.h"

namespace prism::binding {

class DeviceWorker : public PromiseWorker {
 public:
  DeviceWorker(Napi::Env env, const char* name, int device)
      : PromiseWorker(env, name), device_(device) {}

 protected:
  void run() final {
    if (device_ == kCpuDevice) {
      run_cpu();
      return;
    }
#if PRISM_WITH_CUDA
    run_gpu();
#else
    require_device(device_);
#endif
  }
  virtual void run_cpu() = 0;
#if PRISM_WITH_CUDA
  virtual void run_gpu() = 0;
#endif

  const int device_;
};

// { estimateMs, attentionMs }: the object an estimation + attention call
// resolves to, before its selection fields.
inline Napi::Object phase_times(Napi::Env env, double est_ms, double att_ms) {
  Napi::Object r = Napi::Object::New(env);
  r.Set("estimateMs", Napi::Number::New(env, est_ms));
  r.Set("attentionMs", Napi::Number::New(env, att_ms));
  return r;
}

// Queues a worker whose GPU work (if its device is a GPU) the calling thread
// enqueues first, with W::enqueue_gpu(); a worker that fails to enqueue was
// never queued and is deleted before the error propagates.
template <class W>
Napi::Promise start_after_enqueue(W* worker, [[maybe_unused]] int device) {
#if PRISM_WITH_CUDA
  if (device != kCpuDevice) {
    try {
      worker->enqueue_gpu();
    } catch (...) {
      delete worker;  // never queued
      throw;
    }
  }
#endif
  return worker->start();
}

}  // namespace prism::binding

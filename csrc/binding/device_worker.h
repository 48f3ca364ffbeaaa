// A PromiseWorker of a call that runs either on the CPU backend or on a GPU:
// run() sends the worker thread to run_cpu() or run_gpu() by the device the
// call's tensors are on (a build without CUDA throws for a GPU device).
// Workers whose GPU work the calling thread enqueues itself start through
// start_after_enqueue().
#pragma once
#include <napi.h>

#include <exception>

#include "binding/device.h"
#include "binding/promise_worker.h"
#if PRISM_WITH_CUDA
#include "binding/cuda_sync.h"
#endif

namespace prism::binding {

class DeviceWorker : public PromiseWorker {
 public:
  DeviceWorker(Napi::Env env, int device) : PromiseWorker(env, device), device_(device) {}

 protected:
  void run() final {
#if PRISM_WITH_CUDA
    if (enqueue_error_) {
      // The enqueue failed on the calling thread: what it did enqueue may
      // still read the call's buffers, so wait for it here, off the event loop.
      if (enqueue_stream_) drain_stream_quietly(enqueue_stream_);
      std::rethrow_exception(enqueue_error_);
    }
#endif
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

  // Calling thread: makes `device` current (until it returns), sets `out` to
  // the op's stream (op_stream) and runs body(), which enqueues on it. If
  // that throws, the error is kept for run(), which waits for `out` first and
  // then rejects: the calling thread never waits for the GPU.
  template <class Body>
  void enqueue_or_defer(int device, uint64_t stream, cudaStream_t& out, Body&& body) {
    try {
      DeviceScope scope(device);
      out = op_stream(device, stream);
      enqueue_stream_ = out;
      body();
    } catch (...) {
      enqueue_error_ = std::current_exception();
      enqueue_stream_ = out;
    }
  }

  void abandon() override {
    if (enqueue_stream_) drain_stream_quietly(enqueue_stream_);
  }
#endif

  const int device_;

 private:
#if PRISM_WITH_CUDA
  std::exception_ptr enqueue_error_;
  cudaStream_t enqueue_stream_ = nullptr;  // where the calling thread enqueued, if it did
#endif
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
// enqueues first, with W::enqueue_gpu() (through enqueue_or_defer, so its
// errors reject the promise from the worker thread); a worker whose
// enqueue_gpu() throws all the same was never queued and is deleted before
// the error propagates (as is one that start() cannot queue).
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

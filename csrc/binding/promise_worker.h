// Base class of every asynchronous native call: runs run() on one of the
// addon's op threads (op_threads.h: CPU calls on the CPU lane, GPU calls on
// the GPU lane) and settles a Promise on the JS thread, rejecting with the
// right JS error class (TypeError / RangeError / Error) when run() throws.
//
// Completion never throws into Node: when a worker_threads Worker is
// terminated, its calls are completed while the environment is torn down,
// and every napi call that would create or settle a JS value then fails.
// Such failures are swallowed (nobody is left to see the promise) and the
// worker is deleted all the same, so the memory the call holds (tensor
// storages, workspace) is released.
#pragma once
#include <napi.h>

#include "binding/device.h"
#include "binding/errors.h"
#include "binding/op_threads.h"

namespace prism::binding {

class PromiseWorker : public OpJob {
 public:
  // `device`: where the call's work runs (kCpuDevice or a CUDA device), which
  // picks its lane.
  PromiseWorker(Napi::Env env, int device)
      : env_(env),
        deferred_(Napi::Promise::Deferred::New(env)),
        lane_(device == kCpuDevice ? OpLane::Cpu : OpLane::Gpu) {}
  PromiseWorker(const PromiseWorker&) = delete;
  PromiseWorker& operator=(const PromiseWorker&) = delete;

  // Queues the work and returns its promise. A worker that cannot be queued
  // (the environment is being torn down) is deleted before the error
  // propagates: callers write `return (new W(...))->start();`.
  Napi::Promise start() {
    Napi::Promise p = deferred_.Promise();
    try {
      Completions::of(env_).submit(env_, this, lane_);
    } catch (...) {
      abandon();
      release_js();
      delete this;
      throw;
    }
    return p;
  }

 protected:
  // Op thread: no JS access here.
  virtual void run() = 0;
  // JS thread, after run() succeeded: the value the promise resolves to.
  virtual Napi::Value result(Napi::Env env) { return env.Undefined(); }
  // JS thread, always, before settling: drop JS references taken for run().
  virtual void release_js() {}
  // JS thread, when start() could not queue the call: make it safe to free
  // the call's buffers (GPU work already enqueued is waited for).
  virtual void abandon() {}

 private:
  void execute() final {
    try {
      run();
    } catch (...) {
      failed_ = true;
      error_ = classify(std::current_exception());
    }
  }

  void complete(napi_env raw, bool cancelled) final {
    Napi::Env env(raw);
    try {
      Napi::HandleScope scope(env);
      try {
        release_js();
      } catch (...) {
        // only reference deletion: nothing to report
      }
      if (cancelled) {
        deferred_.Reject(Napi::Error::New(env, "operation cancelled").Value());
      } else {
        settle(env);
      }
    } catch (...) {
      // The environment is being torn down. Leave no JS exception pending.
      napi_value ignored;
      bool pending = false;
      if (napi_is_exception_pending(env, &pending) == napi_ok && pending)
        napi_get_and_clear_last_exception(env, &ignored);
    }
    delete this;
  }

  void settle(Napi::Env env) {
    if (failed_) {
      deferred_.Reject(make_js_error(env, error_).Value());
      return;
    }
    Napi::Value value;
    try {
      value = result(env);
    } catch (const Napi::Error& e) {
      deferred_.Reject(e.Value());
      return;
    } catch (...) {
      deferred_.Reject(make_js_error(env, classify(std::current_exception())).Value());
      return;
    }
    deferred_.Resolve(value);
  }

  Napi::Env env_;
  Napi::Promise::Deferred deferred_;
  OpLane lane_;
  bool failed_ = false;
  ErrorInfo error_;
};

}  // namespace prism::binding

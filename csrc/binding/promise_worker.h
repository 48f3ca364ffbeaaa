// Base class of every asynchronous native call: runs run() on a libuv worker
// thread and settles a Promise on the main thread, rejecting with the right
// JS error class (TypeError / RangeError / Error) when run() throws.
#pragma once
#include <napi.h>

#include "binding/errors.h"

namespace prism::binding {

class PromiseWorker : public Napi::AsyncWorker {
 public:
  PromiseWorker(Napi::Env env, const char* name)
      : Napi::AsyncWorker(env, name), deferred_(Napi::Promise::Deferred::New(env)) {}

  // Queues the work and returns its promise.
  Napi::Promise start() {
    Napi::Promise p = deferred_.Promise();
    Queue();
    return p;
  }

 protected:
  // Worker thread: no JS access here.
  virtual void run() = 0;
  // Main thread, after run() succeeded: the value the promise resolves to.
  virtual Napi::Value result(Napi::Env env) { return env.Undefined(); }
  // Main thread, always, before settling: drop JS references taken for run().
  virtual void release_js() {}

 private:
  void Execute() final {
    try {
      run();
    } catch (...) {
      failed_ = true;
      error_ = classify(std::current_exception());
    }
  }

  void OnOK() final {
    Napi::Env env = Env();
    release_js_once();
    if (failed_) {
      deferred_.Reject(make_js_error(env, error_).Value());
      return;
    }
    try {
      deferred_.Resolve(result(env));
    } catch (const Napi::Error& e) {
      deferred_.Reject(e.Value());
    } catch (...) {
      deferred_.Reject(make_js_error(env, classify(std::current_exception())).Value());
    }
  }

  void OnError(const Napi::Error& e) final {
    release_js_once();
    deferred_.Reject(e.Value());
  }

  void release_js_once() {
    if (released_) return;
    released_ = true;
    release_js();
  }

  Napi::Promise::Deferred deferred_;
  bool failed_ = false;
  bool released_ = false;
  ErrorInfo error_;
};

}  // namespace prism::binding

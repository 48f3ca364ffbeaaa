// Base class of every asynchronous native call: runs run() on a libuv worker
// thread and settles a Promise on the main thread, rejecting with the right
// JS error class (TypeError / RangeError / Error) when run() throws.
//
// Completion never throws into Node: when a worker_threads Worker is
// terminated, Node still runs the completions of its pending work while it
// tears the environment down, and every napi call that would create or settle
// a JS value then fails. Such failures are swallowed (nobody is left to see the
// promise) and the worker is deleted all the same, so the memory the call holds
// (tensor storages, workspace) is released.
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

  // Replaces AsyncWorker's version, which turns a failed settle into a C++
  // exception thrown through Node's C frames (std::terminate).
  void OnWorkComplete(Napi::Env env, napi_status status) final {
    try {
      Napi::HandleScope scope(env);
      try {
        release_js();
      } catch (...) {
        // only reference deletion: nothing to report
      }
      if (status == napi_cancelled) {
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
    delete this;  // never SuppressDestruct()ed
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

  // Unused: OnWorkComplete settles the promise itself.
  void OnOK() final {}
  void OnError(const Napi::Error&) final {}

  Napi::Promise::Deferred deferred_;
  bool failed_ = false;
  ErrorInfo error_;
};

}  // namespace prism::binding

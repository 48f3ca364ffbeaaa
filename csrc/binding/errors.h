// Error handling for the binding: one exception type that knows which JS error
// class it becomes, the mapping of CUDA and standard exceptions onto it, and
// the guard that turns any C++ exception into a JS exception.
#pragma once
#include <napi.h>
#include <exception>
#include <stdexcept>
#include <string>
#if PRISM_WITH_CUDA
#include <cuda_runtime.h>
#endif

namespace prism::binding {

enum class ErrorKind { Error, TypeError, RangeError };

// Thrown by binding code; `kind` picks the JS class.
struct JsError : std::runtime_error {
  JsError(ErrorKind k, const std::string& message) : std::runtime_error(message), kind(k) {}
  ErrorKind kind;
};

[[noreturn]] inline void throw_type(const std::string& m) {
  throw JsError(ErrorKind::TypeError, m);
}
[[noreturn]] inline void throw_range(const std::string& m) {
  throw JsError(ErrorKind::RangeError, m);
}
[[noreturn]] inline void throw_error(const std::string& m) { throw JsError(ErrorKind::Error, m); }

// A caught exception reduced to what a worker thread may carry back.
struct ErrorInfo {
  ErrorKind kind = ErrorKind::Error;
  std::string message;
};

// JsError keeps its kind; std::invalid_argument / std::out_of_range (thrown by
// the backends for arguments they do not support) become RangeError;
// std::bad_alloc becomes "out of host memory"; anything else an Error.
ErrorInfo classify(std::exception_ptr e);

Napi::Error make_js_error(Napi::Env env, const ErrorInfo& info);

#if PRISM_WITH_CUDA
// "CUDA error cudaErrorXxx (<cudaGetErrorString>) in <operation>"
std::string cuda_error_text(cudaError_t e, const char* operation);

// Throws JsError(Error, cuda_error_text(...)) unless e == cudaSuccess. A
// failed call also stays behind as the thread's last error, which the next
// launch's cudaGetLastError() would report as its own: it is read off here.
inline void check_cuda(cudaError_t e, const char* operation) {
  if (e != cudaSuccess) {
    (void)cudaGetLastError();
    throw_error(cuda_error_text(e, operation));
  }
}
#endif

// Makes `e` the pending JS exception; never throws (while a terminated
// worker's environment is torn down, napi_throw fails and `e` is dropped).
void throw_js_quietly(Napi::Env env, const Napi::Error& e) noexcept;

// Runs body(); rethrows any C++ exception as the matching JS exception.
// Every synchronous entry point goes through it so nothing escapes to terminate().
template <class Body>
Napi::Value js_guard(Napi::Env env, Body&& body) {
  try {
    return body();
  } catch (const Napi::Error&) {
    throw;
  } catch (...) {
    throw make_js_error(env, classify(std::current_exception()));
  }
}

}  // namespace prism::binding

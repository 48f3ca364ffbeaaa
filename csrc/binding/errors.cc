#include "binding/errors.h"

#include <new>

namespace prism::binding {

ErrorInfo classify(std::exception_ptr e) {
  try {
    std::rethrow_exception(e);
  } catch (const JsError& x) {
    return {x.kind, x.what()};
  } catch (const std::invalid_argument& x) {
    return {ErrorKind::RangeError, x.what()};
  } catch (const std::out_of_range& x) {
    return {ErrorKind::RangeError, x.what()};
  } catch (const std::bad_alloc&) {
    return {ErrorKind::Error, "out of host memory"};
  } catch (const std::exception& x) {
    return {ErrorKind::Error, x.what()};
  } catch (...) {
    return {ErrorKind::Error, "unknown native error"};
  }
}

Napi::Error make_js_error(Napi::Env env, const ErrorInfo& info) {
  switch (info.kind) {
    case ErrorKind::TypeError: return Napi::TypeError::New(env, info.message);
    case ErrorKind::RangeError: return Napi::RangeError::New(env, info.message);
    default: return Napi::Error::New(env, info.message);
  }
}

void throw_js_quietly(Napi::Env env, const Napi::Error& e) noexcept {
  try {
    napi_value value = e.Value();
    if (value != nullptr) napi_throw(env, value);
  } catch (...) {
    // the value itself could not be read: the environment is going away
  }
}

#if PRISM_WITH_CUDA
std::string cuda_error_text(cudaError_t e, const char* operation) {
  return std::string("CUDA error ") + cudaGetErrorName(e) + " (" + cudaGetErrorString(e) + ") in " +
         operation;
}
#endif

}  // namespace prism::binding

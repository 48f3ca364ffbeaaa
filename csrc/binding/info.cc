// native.info(): what this binary was built with and what it can use here.
#include <thread>

#include "binding/device.h"
#include "binding/errors.h"
#include "binding/info.h"
#include "cpu/parallel_for.h"
#if PRISM_WITH_CUDA
#include <cuda_runtime.h>

#include "cuda/cuda_backend.h"
#endif

namespace prism::binding {

namespace {

Napi::Array describe_devices(Napi::Env env) {
  const CudaStatus& s = cuda_status();
  Napi::Array devices = Napi::Array::New(env);
#if PRISM_WITH_CUDA
  for (int i = 0; i < s.device_count; ++i) {
    cudaDeviceProp prop{};
    check_cuda(cudaGetDeviceProperties(&prop, i), "cudaGetDeviceProperties");
    Napi::Object d = Napi::Object::New(env);
    d.Set("index", i);
    d.Set("name", prop.name);
    d.Set("major", prop.major);
    d.Set("minor", prop.minor);
    d.Set("multiProcessors", prop.multiProcessorCount);
    d.Set("totalMemory", static_cast<double>(prop.totalGlobalMem));
    d.Set("attentionPath", prism::cuda::attention_path(i));
    devices.Set(static_cast<uint32_t>(i), d);
  }
#else
  (void)s;
#endif
  return devices;
}

}  // namespace

Napi::Value info(const Napi::CallbackInfo& cb) {
  Napi::Env env = cb.Env();
  return js_guard(env, [&]() -> Napi::Value {
    const CudaStatus& s = cuda_status();
    Napi::Object o = Napi::Object::New(env);
    o.Set("napiVersion", NAPI_VERSION);
    o.Set("cudaCompiled", static_cast<bool>(PRISM_WITH_CUDA));
#if PRISM_WITH_CUDA
    o.Set("cudaArchs", prism::cuda::compiled_archs());
#else
    o.Set("cudaArchs", "");
#endif
    o.Set("cudaUnavailableReason",
          s.unavailable_reason.empty() ? env.Null() : Napi::String::New(env, s.unavailable_reason));
    o.Set("cudaRuntimeVersion", s.runtime_version);
    o.Set("cudaDriverVersion", s.driver_version);
    o.Set("minDriverVersion", s.min_driver_version);
    o.Set("minDriver", s.min_driver_version == 0
                           ? env.Null()
                           : Napi::String::New(env, min_driver_text(s.min_driver_version)));
    o.Set("devices", describe_devices(env));
    o.Set("cpuThreads", static_cast<double>(prism::cpu::detail::default_threads()));
    return o;
  });
}

Napi::Value set_cpu_threads(const Napi::CallbackInfo& cb) {
  const int n = cb.Length() > 0 && cb[0].IsNumber() ? cb[0].As<Napi::Number>().Int32Value() : 0;
  prism::cpu::detail::threads_cap().store(n > 0 ? n : 0, std::memory_order_relaxed);
  return cb.Env().Undefined();
}

}  // namespace prism::binding

// native.info(): build and runtime facts (N-API version, CUDA architectures,
// devices, why CUDA is unavailable).
#pragma once
#include <napi.h>

namespace prism::binding {
Napi::Value info(const Napi::CallbackInfo& cb);
// native.setCpuThreads(n): caps the threads of each CPU op (0: every core);
// lib/ checks n (PRISM_CPU_THREADS).
Napi::Value set_cpu_threads(const Napi::CallbackInfo& cb);
}  // namespace prism::binding

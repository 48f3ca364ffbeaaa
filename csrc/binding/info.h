// native.info(): build and runtime facts (N-API version, CUDA architectures,
// devices, why CUDA is unavailable).
#pragma once
#include <napi.h>

namespace prism::binding {
Napi::Value info(const Napi::CallbackInfo& cb);
}

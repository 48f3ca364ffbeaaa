// Per-environment state of the addon (one per Node.js main thread or worker).
#pragma once
#include <napi.h>

namespace prism::binding {

struct AddonData {
  Napi::FunctionReference tensor_constructor;
};

inline AddonData& addon_data(Napi::Env env) { return *env.GetInstanceData<AddonData>(); }

}  // namespace prism::binding

// Per-environment state of the addon (one per Node.js main thread or worker).
#pragma once
#include <napi.h>

namespace prism::binding {

class Completions;

struct AddonData {
  Napi::FunctionReference tensor_constructor;
  Completions* completions = nullptr;  // op_threads.h: made on the first call, deletes itself
};

inline AddonData& addon_data(Napi::Env env) { return *env.GetInstanceData<AddonData>(); }

}  // namespace prism::binding

// Module initialisation: registers the Tensor class and the functions of the
// addon surface described in docs/architecture.md.
#include <napi.h>

#include "binding/addon_data.h"
#include "binding/errors.h"
#include "binding/info.h"
#include "binding/key_summaries.h"
#include "binding/memory_api.h"
#include "binding/ops.h"
#include "binding/supports.h"
#include "binding/tensor.h"
#include "binding/testing.h"
#include "binding/transfer.h"
#include "binding/tuning.h"
#include "binding/wait_policy.h"

namespace prism::binding {

Napi::Object init(Napi::Env env, Napi::Object exports) {
  auto* data = new AddonData();
  env.SetInstanceData<AddonData>(data);  // freed by node-addon-api when the env goes away
  Napi::Function tensor = TensorWrap::define(env);
  data->tensor_constructor = Napi::Persistent(tensor);
  exports.Set("Tensor", tensor);
  exports.Set("info", Napi::Function::New<info>(env, "info"));
  exports.Set("estimate", Napi::Function::New<estimate>(env, "estimate"));
  exports.Set("attention", Napi::Function::New<attention>(env, "attention"));
  exports.Set("prefill", Napi::Function::New<prefill>(env, "prefill"));
  exports.Set("varlen", Napi::Function::New<varlen>(env, "varlen"));
  exports.Set("summarizeKeys", Napi::Function::New<summarize_keys>(env, "summarizeKeys"));
  exports.Set("keySummaryLayout", Napi::Function::New<key_summary_layout>(env, "keySummaryLayout"));
  exports.Set("massRecall", Napi::Function::New<mass_recall>(env, "massRecall"));
  exports.Set("diffNorms", Napi::Function::New<diff_norms>(env, "diffNorms"));
  exports.Set("memoryStats", Napi::Function::New<memory_stats>(env, "memoryStats"));
  exports.Set("releaseCachedMemory",
              Napi::Function::New<release_cached_memory>(env, "releaseCachedMemory"));
  exports.Set("setWaitPolicy", Napi::Function::New<set_wait_policy>(env, "setWaitPolicy"));
  exports.Set("getWaitPolicy", Napi::Function::New<get_wait_policy>(env, "getWaitPolicy"));
  exports.Set("setCpuThreads", Napi::Function::New<set_cpu_threads>(env, "setCpuThreads"));
  exports.Set("copy", Napi::Function::New<copy_tensor>(env, "copy"));
  exports.Set("testing", testing_exports(env));
  exports.Set("supports", Napi::Function::New<supports>(env, "supports"));
  exports.Set("tuning", tuning_exports(env));  // internal: tests and measurements only
  return exports;
}

}  // namespace prism::binding

// NODE_API_MODULE pastes the function name into an identifier: no namespaces.
// A failure here (a worker terminated while it loads the addon) must not reach
// node-addon-api's wrapper, which rethrows as a C++ exception when it cannot
// throw into JS.
static Napi::Object InitPrismAttention(Napi::Env env, Napi::Object exports) {
  try {
    return prism::binding::init(env, exports);
  } catch (const Napi::Error& e) {
    prism::binding::throw_js_quietly(env, e);
  } catch (...) {
    prism::binding::throw_js_quietly(
        env, Napi::Error::New(env, "prism-attention: addon initialisation failed"));
  }
  return exports;
}
NODE_API_MODULE(prism_attention, InitPrismAttention)

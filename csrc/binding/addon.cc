// Module initialisation: registers the Tensor class and the functions of the
// addon surface described in docs/architecture.md.
#include <napi.h>

#include "binding/addon_data.h"
#include "binding/info.h"
#include "binding/ops.h"
#include "binding/supports.h"
#include "binding/tensor.h"
#include "binding/tuning.h"

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
  exports.Set("massRecall", Napi::Function::New<mass_recall>(env, "massRecall"));
  exports.Set("diffNorms", Napi::Function::New<diff_norms>(env, "diffNorms"));
  exports.Set("supports", Napi::Function::New<supports>(env, "supports"));
  exports.Set("tuning", tuning_exports(env));  // internal: tests and measurements only
  return exports;
}

}  // namespace prism::binding

// NODE_API_MODULE pastes the function name into an identifier: no namespaces.
static Napi::Object InitPrismAttention(Napi::Env env, Napi::Object exports) {
  return prism::binding::init(env, exports);
}
NODE_API_MODULE(prism_attention, InitPrismAttention)

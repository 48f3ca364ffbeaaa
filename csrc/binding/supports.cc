// native.supports (supports.h).
#include "binding/supports.h"

#include "binding/args.h"
#include "binding/errors.h"
#include "cuda/attention/attention_support.h"

namespace prism::binding {

namespace {

template <class T, int N>
Napi::Array to_array(Napi::Env env, const T (&list)[N]) {
  Napi::Array a = Napi::Array::New(env, N);
  for (int i = 0; i < N; ++i) a.Set(static_cast<uint32_t>(i), static_cast<double>(list[i]));
  return a;
}

const char* rule_name(prism::cuda::attn::Unsupported u) {
  using prism::cuda::attn::Unsupported;
  switch (u) {
    case Unsupported::kHeadDim: return "headDim";
    case Unsupported::kDType: return "dtype";
    case Unsupported::kBlock: return "block";
    default: return nullptr;
  }
}

}  // namespace

Napi::Value supports(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return js_guard(env, [&]() -> Napi::Value {
    namespace attn = prism::cuda::attn;
    const DType dtype = get_dtype(arg(info, 0));
    const int64_t head_dim = get_integer(arg(info, 1), "headDim", 0, 1 << 20);
    const int64_t block = get_integer(arg(info, 2), "block", 0, 1 << 30);
    const int device = get_device(arg(info, 3));
    Napi::Object o = Napi::Object::New(env);
    if (device < 0) {
      o.Set("supported", true);
      o.Set("unsupported", env.Null());
      o.Set("headDims", Napi::Array::New(env));
      o.Set("dtypes", Napi::Array::New(env));
      o.Set("blocks", Napi::Array::New(env));
      return o;
    }
    const attn::Unsupported u =
        attn::attention_unsupported(dtype, static_cast<int>(head_dim), static_cast<int>(block));
    const char* rule = rule_name(u);
    o.Set("supported", rule == nullptr);
    o.Set("unsupported", rule == nullptr ? env.Null() : Napi::String::New(env, rule));
    o.Set("headDims", to_array(env, attn::kSupportedHeadDims));
    Napi::Array dtypes = Napi::Array::New(env);
    uint32_t n = 0;
    for (DType t : attn::kSupportedDTypes)
      dtypes.Set(n++, static_cast<double>(static_cast<int>(t)));
    o.Set("dtypes", dtypes);
    o.Set("blocks", to_array(env, attn::kSupportedBlocks));
    return o;
  });
}

}  // namespace prism::binding

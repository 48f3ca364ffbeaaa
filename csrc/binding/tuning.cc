// native.tuning (tuning.h): reads and sets the CUDA attention plan's tuning.
#include "binding/tuning.h"

#include <atomic>
#include <string>

#include "binding/args.h"
#include "binding/device.h"
#include "binding/errors.h"
#include "cuda/attention/attention_tuning.h"

namespace prism::binding {

namespace {

using prism::cuda::attn::AttentionTuning;
using prism::cuda::attn::PathChoice;

Napi::Object to_js(Napi::Env env, const AttentionTuning& t) {
  Napi::Object o = Napi::Object::New(env);
  o.Set("path", t.path == PathChoice::kPortable ? "portable" : "auto");
  o.Set("persistent", t.persistent);
  o.Set("maxCtas", t.max_ctas);
  o.Set("pingpong", t.pingpong);
  o.Set("sortWindow", t.sort_window);
  return o;
}

AttentionTuning from_js(Napi::Value v) {
  Napi::Object o = get_object(v, "tuning");
  const Napi::Array keys = o.GetPropertyNames();
  for (uint32_t i = 0; i < keys.Length(); ++i) {
    const std::string k = keys.Get(i).ToString().Utf8Value();
    if (k != "path" && k != "persistent" && k != "maxCtas" && k != "pingpong" && k != "sortWindow")
      throw_type("tuning has no field '" + k +
                 "' (path, persistent, maxCtas, pingpong, sortWindow)");
  }
  AttentionTuning t;
  const Napi::Value path = o.Get("path");
  if (!path.IsUndefined()) {
    if (!path.IsString()) throw_type("tuning.path must be 'auto' or 'portable'");
    const std::string p = path.As<Napi::String>().Utf8Value();
    if (p == "portable")
      t.path = PathChoice::kPortable;
    else if (p != "auto")
      throw_range("tuning.path must be 'auto' or 'portable', got '" + p + "'");
  }
  const Napi::Value persistent = o.Get("persistent");
  if (!persistent.IsUndefined())
    t.persistent = static_cast<int>(get_integer(persistent, "tuning.persistent", -1, 1));
  const Napi::Value ctas = o.Get("maxCtas");
  if (!ctas.IsUndefined())
    t.max_ctas = static_cast<int>(get_integer(ctas, "tuning.maxCtas", 0, 0x7fffffff));
  const Napi::Value pp = o.Get("pingpong");
  if (!pp.IsUndefined()) t.pingpong = get_bool(pp, "tuning.pingpong");
  const Napi::Value window = o.Get("sortWindow");
  if (!window.IsUndefined())
    t.sort_window = static_cast<int>(
        get_integer(window, "tuning.sortWindow", -1, prism::cuda::attn::kMaxSortWindow));
  return t;
}

Napi::Value get_attention(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return js_guard(env, [&]() -> Napi::Value {
#if PRISM_WITH_CUDA
    return to_js(env, prism::cuda::attn::attention_tuning());
#else
    return to_js(env, AttentionTuning{});
#endif
  });
}

Napi::Value set_attention(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return js_guard(env, [&]() -> Napi::Value {
    const AttentionTuning t = from_js(arg(info, 0));
#if PRISM_WITH_CUDA
    prism::cuda::attn::set_attention_tuning(t);  // std::invalid_argument -> RangeError
#else
    if (t.path != PathChoice::kAuto || t.persistent != -1 || t.max_ctas != 0 || t.pingpong ||
        t.sort_window != -1)
      throw_error("attention tuning applies to the CUDA kernels; this build has no CUDA backend");
#endif
    return env.Undefined();
  });
}

std::atomic<size_t> g_varlen_max_lanes{kMaxLanes};

Napi::Value get_varlen(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return js_guard(env, [&]() -> Napi::Value {
    Napi::Object o = Napi::Object::New(env);
    o.Set("maxLanes", static_cast<double>(g_varlen_max_lanes.load()));
    return o;
  });
}

Napi::Value set_varlen(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return js_guard(env, [&]() -> Napi::Value {
    Napi::Object o = get_object(arg(info, 0), "tuning");
    const Napi::Array keys = o.GetPropertyNames();
    for (uint32_t i = 0; i < keys.Length(); ++i) {
      const std::string k = keys.Get(i).ToString().Utf8Value();
      if (k != "maxLanes") throw_type("varlen tuning has no field '" + k + "' (maxLanes)");
    }
    const Napi::Value lanes = o.Get("maxLanes");
    g_varlen_max_lanes = lanes.IsUndefined()
                             ? kMaxLanes
                             : static_cast<size_t>(get_integer(lanes, "tuning.maxLanes", 1,
                                                               static_cast<int64_t>(kMaxLanes)));
    return env.Undefined();
  });
}

}  // namespace

size_t varlen_max_lanes() { return g_varlen_max_lanes.load(); }

Napi::Object tuning_exports(Napi::Env env) {
  Napi::Object o = Napi::Object::New(env);
  o.Set("getAttention", Napi::Function::New<get_attention>(env, "getAttention"));
  o.Set("setAttention", Napi::Function::New<set_attention>(env, "setAttention"));
  o.Set("getVarlen", Napi::Function::New<get_varlen>(env, "getVarlen"));
  o.Set("setVarlen", Napi::Function::New<set_varlen>(env, "setVarlen"));
  return o;
}

}  // namespace prism::binding

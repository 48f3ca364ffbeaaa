#include "binding/wait_policy.h"

#include <atomic>

#include "binding/args.h"
#include "binding/errors.h"

namespace prism::binding {
namespace {
std::atomic<bool> g_wait_spins{true};
}  // namespace

bool wait_spins() { return g_wait_spins.load(std::memory_order_relaxed); }

Napi::Value set_wait_policy(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return js_guard(env, [&]() -> Napi::Value {
    g_wait_spins.store(get_bool(arg(info, 0), "spin"));
    return env.Undefined();
  });
}

Napi::Value get_wait_policy(const Napi::CallbackInfo& info) {
  return Napi::Boolean::New(info.Env(), wait_spins());
}

}  // namespace prism::binding

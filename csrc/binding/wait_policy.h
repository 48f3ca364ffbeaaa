// native.setWaitPolicy(spin) / native.getWaitPolicy(): how a worker thread
// waits for the GPU work of an op (wait_for_stream in cuda_sync.h). One
// process-wide setting; lib/ (setWaitPolicy) checks the argument.
#pragma once
#include <napi.h>

namespace prism::binding {

// true: poll the op's event, yielding between queries (the default: the
// promise resolves within microseconds of the GPU finishing); false: sleep on
// it (blocking sync: no CPU time, later wake-up).
bool wait_spins();

Napi::Value set_wait_policy(const Napi::CallbackInfo& info);  // (spin: boolean) -> undefined
Napi::Value get_wait_policy(const Napi::CallbackInfo& info);  // () -> boolean (spin)

}  // namespace prism::binding

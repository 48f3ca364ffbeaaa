// INTERNAL, for tests and measurements only: native.tuning, the switches of
// the CUDA attention plan (csrc/cuda/attention/attention_tuning.h). Not part of
// the package API (lib/ never calls it; test/gpu-backend.test.ts does).
//
//   tuning.getAttention() -> { path: 'auto' | 'portable', persistent: -1 | 0 | 1,
//                              maxCtas: number, pingpong: boolean }
//   tuning.setAttention({ path?, persistent?, maxCtas?, pingpong? })
//       replaces the whole tuning; a field left out takes its default, so
//       setAttention({}) restores the defaults. Process-wide; calls already
//       started keep the tuning they were planned with.
#pragma once
#include <napi.h>

namespace prism::binding {
// The `tuning` object of the addon's exports.
Napi::Object tuning_exports(Napi::Env env);
}  // namespace prism::binding

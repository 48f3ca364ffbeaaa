// INTERNAL, for tests and measurements only: native.tuning, the switches of
// the CUDA attention plan (csrc/cuda/attention/attention_tuning.h). Not part of
// the package API (lib/ never calls it; test/gpu-backend.test.ts does).
//
//   tuning.getAttention() -> { path: 'auto' | 'portable', persistent: -1 | 0 | 1,
//                              maxCtas: number, pingpong: boolean, sortWindow: number }
//   tuning.setAttention({ path?, persistent?, maxCtas?, pingpong?, sortWindow? })
//       replaces the whole tuning; a field left out takes its default, so
//       setAttention({}) restores the defaults. Process-wide; calls already
//       started keep the tuning they were planned with.
//   tuning.getVarlen() -> { maxLanes: number }
//   tuning.setVarlen({ maxLanes? })
//       how many streams a ragged batch's short sequences may run on at once
//       (1 .. 4, default 4; 1: one after the other on the op's stream).
#pragma once
#include <napi.h>

#include <cstddef>

namespace prism::binding {
// tuning.setVarlen's maxLanes, read by each varlen call as it enqueues.
size_t varlen_max_lanes();

// The `tuning` object of the addon's exports.
Napi::Object tuning_exports(Napi::Env env);
}  // namespace prism::binding

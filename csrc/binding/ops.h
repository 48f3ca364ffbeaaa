// The asynchronous operations exported by the addon. Each validates its
// tensors natively (defence in depth behind lib/ops.ts), builds the backend
// views and runs the CPU backend or enqueues the CUDA backend.
#pragma once
#include <napi.h>

namespace prism::binding {

// estimate(q, k, params, { mask, counts, indices, temps }, timing?, stream?) -> Promise<number[]>
Napi::Value estimate(const Napi::CallbackInfo& info);
// attention(q, k, v, o, counts | null, indices | null, params, timing?, stream?) -> Promise<number[]>
Napi::Value attention(const Napi::CallbackInfo& info);
// massRecall(q, k, counts | null, indices | null, params, rows: BigInt64Array) -> Promise<Float32Array>
Napi::Value mass_recall(const Napi::CallbackInfo& info);
// diffNorms(a, b) -> Promise<[sum (a-b)^2, sum b^2]>
Napi::Value diff_norms(const Napi::CallbackInfo& info);

}  // namespace prism::binding

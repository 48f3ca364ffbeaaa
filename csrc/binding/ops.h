// The asynchronous operations exported by the addon. Each validates its
// tensors natively (defence in depth behind lib/ops.ts), builds the backend
// views and runs the CPU backend or enqueues the CUDA backend.
#pragma once
#include <napi.h>

#include "binding/tensor.h"

namespace prism::binding {

// estimate(q, k, params, { counts, rowPtr, temps, mask? }, timing?, stream?, keys?)
//   -> Promise<{ timesMs: number[], indices: Tensor, selected }>   (ops_estimate.cc)
Napi::Value estimate(const Napi::CallbackInfo& info);
// attention(q, k, v, o, list: { counts, rowPtr, indices } | null, params { block, softmaxScale,
// lse? },
//           timing?, stream?) -> Promise<number[]>
Napi::Value attention(const Napi::CallbackInfo& info);
// prefill(q, k, v, o, estimateParams, attentionParams, out | null, stream?, keys?)
//   -> Promise<{ estimateMs, attentionMs, selected, indices? }>   (ops_prefill.cc)
Napi::Value prefill(const Napi::CallbackInfo& info);
// varlen(q, k, v | null, out | null, spec, estimateParams | null, attentionParams | null,
//        selections | null, lists | null, stream?, keys?): ragged batches and paged KV caches
//   -> Promise<{ estimateMs, attentionMs, selected: number[], indices: (Tensor | null)[] }>
//   (ops_varlen.cc)
Napi::Value varlen(const Napi::CallbackInfo& info);
// The optional `lse` field of attention params: a float32 [b, Hq, Nq, 1]
// tensor on q's device, checked; null when absent.
TensorWrap* read_lse_out(Napi::Env env, Napi::Value params, const QkvView& q);

// massRecall(q, k, list | null, params, rows: BigInt64Array) -> Promise<Float32Array>
Napi::Value mass_recall(const Napi::CallbackInfo& info);
// diffNorms(a, b) -> Promise<[sum (a-b)^2, sum b^2]>
Napi::Value diff_norms(const Napi::CallbackInfo& info);

}  // namespace prism::binding

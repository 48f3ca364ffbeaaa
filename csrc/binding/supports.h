// native.supports(dtype, headDim, block, device): whether attention on `device`
// (-1 = cpu, >= 0 = a CUDA device) takes a call, from the kernels' own table
// (csrc/cuda/attention/attention_support.h), so lib/ops.ts need not repeat it.
//
//   -> { supported: boolean,
//        unsupported: null | 'headDim' | 'dtype' | 'block',   // the first rule broken
//        headDims: number[], dtypes: number[], blocks: number[] }
//
// The lists are those of the device's kernels (dtype codes as prism::DType);
// for the CPU they are empty: it attends with any head_dim, block and float
// dtype the other argument checks allow.
#pragma once
#include <napi.h>

namespace prism::binding {
Napi::Value supports(const Napi::CallbackInfo& info);
}  // namespace prism::binding

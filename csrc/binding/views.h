// Builds the backends' strided views (prism_types.h) from tensors and checks,
// natively, the shape rules the TypeScript layer already enforces.
#pragma once
#include <initializer_list>
#include <memory>
#include <string>
#include <vector>

#include "binding/tensor.h"
#include "common/prism_types.h"

namespace prism::binding {

// [batch, heads, n, d] view; strides follow the tensor's layout:
//   bhnd: b -> h*n*d, h -> n*d, n -> d      bnhd: b -> n*h*d, h -> d, n -> h*d
QkvView input_view(const TensorWrap& t, const char* what);
OutView output_view(const TensorWrap& t, const char* what);

// Error "all tensors must be on the same device (got cpu and cuda:0)" unless they agree.
int common_device(std::initializer_list<const TensorWrap*> tensors);

// Q [b, Hq, Nq, d] against K [b, Hkv, Nk, d]: batch, head_dim and dtype equal,
// Hq % Hkv == 0, Nq <= Nk.
void check_query_key(const QkvView& q, const QkvView& k);

// Attention's four tensors: check_query_key, v with k's shape and q's dtype,
// out with q's shape and dtype.
void check_attention_views(const QkvView& q, const QkvView& k, const QkvView& v, const OutView& o);

// `t` must be a contiguous tensor of `dtype` and exactly `shape`.
void check_plain(const TensorWrap& t, DType dtype, std::initializer_list<int64_t> shape,
                 const char* what);

std::string shape_text(const std::vector<int64_t>& shape);

// Arguments 0 and 1 of a call as q and k: their tensors and input views,
// checked together (check_query_key).
struct QueryKeyArgs {
  TensorWrap& qt;
  TensorWrap& kt;
  QkvView q, k;
  // What a worker keeps alive while it reads q and k.
  std::vector<std::shared_ptr<Storage>> storages() const { return {qt.storage(), kt.storage()}; }
};
QueryKeyArgs read_query_key(const Napi::CallbackInfo& info);

// Arguments 0 to 3 of an attention call as q, k, v and out, checked together
// (check_attention_views).
struct AttentionArgs {
  TensorWrap& qt;
  TensorWrap& kt;
  TensorWrap& vt;
  TensorWrap& ot;
  QkvView q, k, v;
  OutView o;
  // What a worker keeps alive while it reads q, k, v and writes out.
  std::vector<std::shared_ptr<Storage>> storages() const {
    return {qt.storage(), kt.storage(), vt.storage(), ot.storage()};
  }
};
AttentionArgs read_attention_args(const Napi::CallbackInfo& info);

}  // namespace prism::binding

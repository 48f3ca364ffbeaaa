#include "binding/views.h"

#include "binding/args.h"
#include "binding/device.h"
#include "binding/errors.h"

namespace prism::binding {

namespace {
template <class View>
View make_view(const TensorWrap& t, const char* what) {
  const auto& s = t.shape();
  if (s.size() != 4)
    throw_range(std::string(what) + " must have rank 4 [batch, heads, n, d], got " + shape_text(s));
  View v;
  v.dtype = t.dtype();
  v.batch = s[0];
  v.heads = s[1];
  v.n = s[2];
  v.d = s[3];
  if (t.layout() == Layout::BHND) {
    v.stride_b = v.heads * v.n * v.d;
    v.stride_h = v.n * v.d;
    v.stride_n = v.d;
  } else {
    v.stride_b = v.n * v.heads * v.d;
    v.stride_h = v.d;
    v.stride_n = v.heads * v.d;
  }
  v.data = t.storage()->data();
  return v;
}
}  // namespace

std::string shape_text(const std::vector<int64_t>& shape) {
  std::string out = "[";
  for (size_t i = 0; i < shape.size(); ++i) out += (i ? ", " : "") + std::to_string(shape[i]);
  return out + "]";
}

QkvView input_view(const TensorWrap& t, const char* what) { return make_view<QkvView>(t, what); }
OutView output_view(const TensorWrap& t, const char* what) { return make_view<OutView>(t, what); }

int common_device(std::initializer_list<const TensorWrap*> tensors) {
  const TensorWrap* first = nullptr;
  for (const TensorWrap* t : tensors) {
    if (!t) continue;
    if (!first) {
      first = t;
    } else if (t->device() != first->device()) {
      throw_error("all tensors must be on the same device (got " + device_label(first->device()) +
                  " and " + device_label(t->device()) + ")");
    }
  }
  return first ? first->device() : kCpuDevice;
}

void check_query_key(const QkvView& q, const QkvView& k) {
  if (q.batch != k.batch)
    throw_range("batch sizes differ: q has " + std::to_string(q.batch) + ", k has " +
                std::to_string(k.batch));
  if (q.d != k.d)
    throw_range("head_dim differs: q has " + std::to_string(q.d) + ", k has " +
                std::to_string(k.d));
  if (q.heads % k.heads != 0)
    throw_range("query heads (" + std::to_string(q.heads) + ") must be a multiple of kv heads (" +
                std::to_string(k.heads) + ")");
  if (q.n > k.n)
    throw_range("query length (" + std::to_string(q.n) + ") must not exceed key length (" +
                std::to_string(k.n) + ")");
  if (q.dtype != k.dtype)
    throw_type(std::string("dtypes differ: q is ") + dtype_name(q.dtype) + ", k is " +
               dtype_name(k.dtype));
  if (q.dtype != DType::F32 && q.dtype != DType::F16 && q.dtype != DType::BF16)
    throw_type(std::string("q, k, v must be float32, float16 or bfloat16, got ") +
               dtype_name(q.dtype));
}

void check_attention_views(const QkvView& q, const QkvView& k, const QkvView& v, const OutView& o) {
  check_query_key(q, k);
  if (v.batch != k.batch || v.heads != k.heads || v.n != k.n || v.d != k.d)
    throw_range("k and v must have the same shape: k is " +
                shape_text({k.batch, k.heads, k.n, k.d}) + ", v is " +
                shape_text({v.batch, v.heads, v.n, v.d}));
  if (v.dtype != q.dtype) throw_type("v must have the same dtype as q and k");
  if (o.batch != q.batch || o.heads != q.heads || o.n != q.n || o.d != q.d || o.dtype != q.dtype)
    throw_range("out must have the shape and dtype of q");
}

void check_plain(const TensorWrap& t, DType dtype, std::initializer_list<int64_t> shape,
                 const char* what) {
  std::vector<int64_t> want(shape);
  if (t.dtype() != dtype)
    throw_type(std::string(what) + " must be " + dtype_name(dtype) + ", got " +
               dtype_name(t.dtype()));
  if (t.shape() != want)
    throw_range(std::string(what) + " must have shape " + shape_text(want) + ", got " +
                shape_text(t.shape()));
  if (t.layout() != Layout::BHND) throw_range(std::string(what) + " must use the default layout");
}

QueryKeyArgs read_query_key(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  TensorWrap& qt = TensorWrap::unwrap(env, arg(info, 0), "q");
  TensorWrap& kt = TensorWrap::unwrap(env, arg(info, 1), "k");
  QueryKeyArgs a{qt, kt, input_view(qt, "q"), input_view(kt, "k")};
  check_query_key(a.q, a.k);
  return a;
}

AttentionArgs read_attention_args(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  TensorWrap& qt = TensorWrap::unwrap(env, arg(info, 0), "q");
  TensorWrap& kt = TensorWrap::unwrap(env, arg(info, 1), "k");
  TensorWrap& vt = TensorWrap::unwrap(env, arg(info, 2), "v");
  TensorWrap& ot = TensorWrap::unwrap(env, arg(info, 3), "out");
  AttentionArgs a{qt,
                  kt,
                  vt,
                  ot,
                  input_view(qt, "q"),
                  input_view(kt, "k"),
                  input_view(vt, "v"),
                  output_view(ot, "out")};
  check_attention_views(a.q, a.k, a.v, a.o);
  return a;
}

}  // namespace prism::binding

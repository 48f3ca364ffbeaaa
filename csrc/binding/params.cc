#include "binding/params.h"

#include <string>

#include "binding/args.h"
#include "binding/errors.h"

namespace prism::binding {

namespace {
float read_positive(Napi::Object o, const char* key) {
  double x = get_number(field(o, key), key);
  if (x <= 0) throw_range(std::string(key) + " must be > 0");
  return static_cast<float>(x);
}
float read_fraction(Napi::Object o, const char* key) {
  double x = get_number(field(o, key), key);
  if (x <= 0 || x > 1) throw_range(std::string(key) + " must be in (0, 1]");
  return static_cast<float>(x);
}
int32_t read_even_dims(Napi::Object o, const char* key, int64_t head_dim) {
  int64_t x = get_integer(field(o, key), key, 2, head_dim);
  if (x % 2 != 0) throw_range(std::string(key) + " must be even");
  return static_cast<int32_t>(x);
}
}  // namespace

EstimateParams read_estimate_params(Napi::Value v, int64_t head_dim) {
  if (head_dim % 2 != 0)
    throw_range("head_dim must be even (RoPE pairs), got " + std::to_string(head_dim));
  Napi::Object o = get_object(v, "estimate params");
  EstimateParams p;
  p.block = static_cast<int32_t>(get_integer(field(o, "block"), "block", 16, 1024));
  if (p.block % 16 != 0) throw_range("block must be a multiple of 16");
  p.high_dims = read_even_dims(o, "highDims", head_dim);
  p.low_dims = read_even_dims(o, "lowDims", head_dim);
  p.layout = static_cast<RopeLayout>(get_integer(field(o, "ropeLayout"), "ropeLayout", 0, 1));
  p.method = static_cast<Method>(get_integer(field(o, "method"), "method", 0, 1));
  p.calibrate = get_bool(field(o, "calibrate"), "calibrate");
  p.temp_high = read_positive(o, "tempHigh");
  p.temp_low = read_positive(o, "tempLow");
  p.selection = static_cast<Selection>(get_integer(field(o, "selection"), "selection", 0, 1));
  p.tau_high = read_fraction(o, "tauHigh");
  p.tau_low = read_fraction(o, "tauLow");
  p.topk_high = static_cast<int32_t>(get_integer(field(o, "topkHigh"), "topkHigh", 1, INT32_MAX));
  p.topk_low = static_cast<int32_t>(get_integer(field(o, "topkLow"), "topkLow", 1, INT32_MAX));
  p.force_sink = get_bool(field(o, "forceSink"), "forceSink");
  p.force_diag = get_bool(field(o, "forceDiagonal"), "forceDiagonal");
  return p;
}

AttentionParams read_attention_params(Napi::Value v) {
  Napi::Object o = get_object(v, "attention params");
  AttentionParams p;
  p.block = static_cast<int32_t>(get_integer(field(o, "block"), "block", 16, 1024));
  double scale = get_number(field(o, "softmaxScale"), "softmaxScale");
  if (scale < 0) throw_range("softmaxScale must be >= 0 (0 means 1/sqrt(d))");
  p.softmax_scale = static_cast<float>(scale);
  return p;
}

Timing read_timing(Napi::Value v) {
  Timing t;
  if (v.IsUndefined() || v.IsNull()) return t;
  Napi::Object o = get_object(v, "timing");
  t.warmup = static_cast<int>(get_integer(field(o, "warmup"), "timing.warmup", 0, 10000));
  t.iters = static_cast<int>(get_integer(field(o, "iters"), "timing.iters", 1, 100000));
  return t;
}

}  // namespace prism::binding

#include "binding/args.h"

#include <cmath>

#include "binding/errors.h"

namespace prism::binding {

namespace {
constexpr double kMaxSafeInteger = 9007199254740991.0;
}

Napi::Value arg(const Napi::CallbackInfo& info, size_t index) {
  return index < info.Length() ? info[index] : info.Env().Undefined();
}

double get_number(Napi::Value v, const std::string& name) {
  if (!v.IsNumber()) throw_type(name + " must be a number");
  double x = v.As<Napi::Number>().DoubleValue();
  if (!std::isfinite(x)) throw_range(name + " must be finite");
  return x;
}

int64_t get_integer(Napi::Value v, const std::string& name, int64_t min, int64_t max) {
  double x = get_number(v, name);
  if (std::floor(x) != x || std::fabs(x) > kMaxSafeInteger)
    throw_range(name + " must be an integer");
  if (x < static_cast<double>(min) || x > static_cast<double>(max))
    throw_range(name + " must be in [" + std::to_string(min) + ", " + std::to_string(max) + "]");
  return static_cast<int64_t>(x);
}

bool get_bool(Napi::Value v, const std::string& name) {
  if (!v.IsBoolean()) throw_type(name + " must be a boolean");
  return v.As<Napi::Boolean>().Value();
}

Napi::Object get_object(Napi::Value v, const std::string& name) {
  if (!v.IsObject()) throw_type(name + " must be an object");
  return v.As<Napi::Object>();
}

Napi::Value field(Napi::Object obj, const char* key) { return obj.Get(key); }

int get_device(Napi::Value v) { return static_cast<int>(get_integer(v, "device", -1, 1023)); }

DType get_dtype(Napi::Value v) { return static_cast<DType>(get_integer(v, "dtype", 0, 5)); }

std::vector<int64_t> get_shape(Napi::Value v) {
  if (!v.IsArray()) throw_type("shape must be an array");
  Napi::Array a = v.As<Napi::Array>();
  if (a.Length() < 1 || a.Length() > 4) throw_range("shape must have 1 to 4 dimensions");
  std::vector<int64_t> shape;
  double total = 1;
  for (uint32_t i = 0; i < a.Length(); ++i) {
    int64_t n = get_integer(a.Get(i), "shape[" + std::to_string(i) + "]", 1,
                            static_cast<int64_t>(kMaxSafeInteger));
    total *= static_cast<double>(n);
    shape.push_back(n);
  }
  if (total > kMaxSafeInteger) throw_range("shape has too many elements");
  return shape;
}

napi_typedarray_type typed_array_type_for(DType t) {
  switch (t) {
    case DType::F32: return napi_float32_array;
    case DType::F16:
    case DType::BF16: return napi_uint16_array;
    case DType::U8: return napi_uint8_array;
    case DType::I64: return napi_bigint64_array;
    default: return napi_int32_array;
  }
}

const char* typed_array_name(napi_typedarray_type t) {
  switch (t) {
    case napi_float32_array: return "Float32Array";
    case napi_uint16_array: return "Uint16Array";
    case napi_uint8_array: return "Uint8Array";
    case napi_int32_array: return "Int32Array";
    case napi_bigint64_array: return "BigInt64Array";
    default: return "another typed array";
  }
}

const char* dtype_name(DType t) {
  switch (t) {
    case DType::F32: return "float32";
    case DType::F16: return "float16";
    case DType::BF16: return "bfloat16";
    case DType::U8: return "uint8";
    case DType::I64: return "int64";
    default: return "int32";
  }
}

}  // namespace prism::binding

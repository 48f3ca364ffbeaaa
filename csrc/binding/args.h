// Reading JS arguments with clear TypeError / RangeError messages that name
// the argument or field.
#pragma once
#include <napi.h>

#include <cstdint>
#include <string>
#include <vector>

#include "common/prism_types.h"

namespace prism::binding {

Napi::Value arg(const Napi::CallbackInfo& info, size_t index);

int64_t get_integer(Napi::Value v, const std::string& name, int64_t min, int64_t max);
double get_number(Napi::Value v, const std::string& name);
bool get_bool(Napi::Value v, const std::string& name);
Napi::Object get_object(Napi::Value v, const std::string& name);

// Field `key` of `obj` (required).
Napi::Value field(Napi::Object obj, const char* key);

int get_device(Napi::Value v);                  // -1 = cpu, >= 0 = cuda index
DType get_dtype(Napi::Value v);                 // 0..4
std::vector<int64_t> get_shape(Napi::Value v);  // 1..4 positive safe integers

// The typed-array kind that holds elements of `t` (e.g. uint16 for F16/BF16).
napi_typedarray_type typed_array_type_for(DType t);
const char* typed_array_name(napi_typedarray_type t);
const char* dtype_name(DType t);

}  // namespace prism::binding

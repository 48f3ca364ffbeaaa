// native.Tensor: a JS object owning (or viewing) host or device memory with a
// dtype, a logical shape and a layout. Ops read it through views (views.h).
#pragma once
#include <napi.h>

#include <cstdint>
#include <memory>
#include <vector>

#include "binding/storage.h"
#include "common/prism_types.h"

namespace prism::binding {

enum class Layout : int { BHND = 0, BNHD = 1 };

// Largest byte length a tensor may have: 2^53 - 1, exact as a JS number.
constexpr int64_t kMaxSafeBytes = 9007199254740991;

// Bytes reported to V8 (napi_adjust_external_memory) from construction to
// destruction, so that V8 collects garbage knowing about host tensors. Made
// and dropped on the JS thread of `env` (tensors never leave it).
class ExternalBytes {
 public:
  ExternalBytes(napi_env env, int64_t bytes);
  ~ExternalBytes();
  ExternalBytes(const ExternalBytes&) = delete;
  ExternalBytes& operator=(const ExternalBytes&) = delete;

 private:
  napi_env env_;
  int64_t bytes_;
};

class TensorWrap : public Napi::ObjectWrap<TensorWrap> {
 public:
  static Napi::Function define(Napi::Env env);
  // The tensor behind `value`; TypeError naming `what` when it is not one,
  // Error "tensor has been disposed" when it was disposed.
  static TensorWrap& unwrap(Napi::Env env, Napi::Value value, const char* what);
  static bool is_tensor(Napi::Env env, Napi::Value value);
  // A new JS tensor owning `storage` (memory an op allocated once it knew the
  // size), row-major [shape] of `dtype`.
  static Napi::Object adopt(Napi::Env env, std::shared_ptr<Storage> storage, DType dtype,
                            const std::vector<int64_t>& shape);

  explicit TensorWrap(const Napi::CallbackInfo& info);
  ~TensorWrap() override;

  // Memory of a live tensor (throws when disposed).
  std::shared_ptr<Storage> storage() const;
  DType dtype() const { return dtype_; }
  Layout layout() const { return layout_; }
  int device() const { return device_; }
  const std::vector<int64_t>& shape() const { return shape_; }
  size_t byte_length() const { return byte_length_; }
  bool disposed() const { return !storage_; }

 private:
  Napi::Value get_device(const Napi::CallbackInfo& info);
  Napi::Value get_dtype(const Napi::CallbackInfo& info);
  Napi::Value get_shape(const Napi::CallbackInfo& info);
  Napi::Value get_layout(const Napi::CallbackInfo& info);
  Napi::Value get_byte_length(const Napi::CallbackInfo& info);
  Napi::Value get_disposed(const Napi::CallbackInfo& info);
  Napi::Value get_pointer(const Napi::CallbackInfo& info);
  Napi::Value to_host(const Napi::CallbackInfo& info);
  Napi::Value upload(const Napi::CallbackInfo& info);
  Napi::Value dispose(const Napi::CallbackInfo& info);
  Napi::Value view(const Napi::CallbackInfo& info);
  static Napi::Value wrap_pointer(const Napi::CallbackInfo& info);

  void init(const Napi::CallbackInfo& info);
  void release();

  std::shared_ptr<Storage> storage_;
  DType dtype_ = DType::F32;
  Layout layout_ = Layout::BHND;
  int device_ = -1;
  std::vector<int64_t> shape_;
  int64_t count_ = 0;  // elements
  size_t byte_length_ = 0;
  // Host bytes reported to V8 as external memory, shared by a tensor and its
  // views: reported while any of them is alive (a view keeps the memory).
  std::shared_ptr<ExternalBytes> accounted_;
};

}  // namespace prism::binding

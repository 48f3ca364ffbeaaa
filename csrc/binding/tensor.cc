#include "binding/tensor.h"

#include "binding/addon_data.h"
#include "binding/args.h"
#include "binding/device.h"
#include "binding/errors.h"
#include "binding/transfer.h"

namespace prism::binding {

Napi::Function TensorWrap::define(Napi::Env env) {
  return DefineClass(env, "Tensor",
                     {
                         InstanceAccessor<&TensorWrap::get_device>("device"),
                         InstanceAccessor<&TensorWrap::get_dtype>("dtype"),
                         InstanceAccessor<&TensorWrap::get_shape>("shape"),
                         InstanceAccessor<&TensorWrap::get_layout>("layout"),
                         InstanceAccessor<&TensorWrap::get_byte_length>("byteLength"),
                         InstanceAccessor<&TensorWrap::get_disposed>("disposed"),
                         InstanceAccessor<&TensorWrap::get_pointer>("pointer"),
                         InstanceMethod<&TensorWrap::to_host>("toHost"),
                         InstanceMethod<&TensorWrap::upload>("upload"),
                         InstanceMethod<&TensorWrap::dispose>("dispose"),
                         InstanceMethod<&TensorWrap::view>("view"),
                         StaticMethod<&TensorWrap::wrap_pointer>("wrap"),
                     });
}

bool TensorWrap::is_tensor(Napi::Env env, Napi::Value value) {
  return value.IsObject() &&
         value.As<Napi::Object>().InstanceOf(addon_data(env).tensor_constructor.Value());
}

TensorWrap& TensorWrap::unwrap(Napi::Env env, Napi::Value value, const char* what) {
  if (!is_tensor(env, value)) throw_type(std::string(what) + " must be a Tensor");
  TensorWrap* t = Unwrap(value.As<Napi::Object>());
  if (t->disposed()) throw_error(std::string(what) + ": tensor has been disposed");
  return *t;
}

// What an External hands the constructor: the storage, and for a view the
// external-memory report of the tensor it views (shared, not repeated).
struct StorageHolder {
  std::shared_ptr<Storage> storage;
  std::shared_ptr<ExternalBytes> accounted;
};

ExternalBytes::ExternalBytes(napi_env env, int64_t bytes) : env_(env), bytes_(bytes) {
  Napi::MemoryManagement::AdjustExternalMemory(Napi::Env(env), bytes_);
}

ExternalBytes::~ExternalBytes() {
  // Possibly while the environment is torn down: the status is ignored
  // (node-addon-api's wrapper would throw).
  int64_t ignored = 0;
  napi_adjust_external_memory(env_, -bytes_, &ignored);
}

namespace {
// Marks the Externals adopt() makes: a constructor handed any other External
// (another addon's) refuses it instead of reading it as a storage.
constexpr napi_type_tag kStorageTag = {0x9a3c5e1f7b2d4806ULL, 0xd41e8b6fa0c3725bULL};
}  // namespace

Napi::Object TensorWrap::adopt(Napi::Env env, std::shared_ptr<Storage> storage, DType dtype,
                               const std::vector<int64_t>& shape) {
  const int device = storage->device();
  auto ext = Napi::External<StorageHolder>::New(env, new StorageHolder{std::move(storage), nullptr},
                                                [](Napi::Env, StorageHolder* h) { delete h; });
  ext.TypeTag(&kStorageTag);
  Napi::Array dims = Napi::Array::New(env, shape.size());
  for (size_t i = 0; i < shape.size(); ++i)
    dims.Set(static_cast<uint32_t>(i), Napi::Number::New(env, double(shape[i])));
  return addon_data(env).tensor_constructor.New({Napi::Number::New(env, device),
                                                 Napi::Number::New(env, static_cast<int>(dtype)),
                                                 dims, Napi::Number::New(env, 0), ext});
}

// new Tensor(device, dtype, shape, layout[, hostData | pointer | adopted storage])
//   hostData: typed array copied in synchronously; pointer: bigint, non-owning
//   view; an External from adopt(): memory an op allocated.
TensorWrap::TensorWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<TensorWrap>(info) {
  js_guard(info.Env(), [&]() -> Napi::Value {
    init(info);
    return info.Env().Undefined();
  });
}

void TensorWrap::init(const Napi::CallbackInfo& info) {
  device_ = binding::get_device(arg(info, 0));
  dtype_ = binding::get_dtype(arg(info, 1));
  shape_ = binding::get_shape(arg(info, 2));
  layout_ = static_cast<Layout>(get_integer(arg(info, 3), "layout", 0, 1));
  if (layout_ == Layout::BNHD && shape_.size() != 4)
    throw_range("layout bnhd needs a 4-d shape [batch, heads, n, d]");
  int64_t count = 1;
  for (int64_t n : shape_) count *= n;  // <= 2^53: get_shape checked
  // byteLength must be exact as a JS number too.
  if (count > kMaxSafeBytes / dtype_size(dtype_))
    throw_range("a tensor of " + std::to_string(count) + " " + dtype_name(dtype_) +
                " elements is larger than 2^53 - 1 bytes");
  count_ = count;
  byte_length_ = static_cast<size_t>(count * dtype_size(dtype_));
  require_device(device_);

  Napi::Value extra = arg(info, 4);
  if (extra.IsExternal()) {
    if (!extra.As<Napi::External<StorageHolder>>().CheckTypeTag(&kStorageTag))
      throw_type("an External that no tensor of this addon made cannot be adopted");
    StorageHolder* h = extra.As<Napi::External<StorageHolder>>().Data();
    if (h == nullptr || !h->storage || h->storage->bytes() != byte_length_ ||
        h->storage->device() != device_)
      throw_range("adopted storage does not match the shape");
    storage_ = std::move(h->storage);  // the tensor is now its only owner
    if (h->accounted) {
      accounted_ = std::move(h->accounted);  // a view: its tensor's report
    } else if (device_ == kCpuDevice && storage_->owning()) {
      accounted_ = std::make_shared<ExternalBytes>(info.Env(), static_cast<int64_t>(byte_length_));
    }
    return;
  }
  if (extra.IsBigInt()) {
    bool lossless = true;
    uint64_t address = extra.As<Napi::BigInt>().Uint64Value(&lossless);
    if (!lossless || address == 0) throw_range("pointer must be a non-zero 64-bit address");
    storage_ = Storage::wrap(device_, reinterpret_cast<void*>(address), byte_length_);
    return;
  }
  // A GPU tensor's data goes up through upload(), off the event loop: a copy
  // here would wait for the device's stream on the calling thread.
  if (extra.IsTypedArray() && device_ != kCpuDevice)
    throw_type("data for a GPU tensor is copied with upload(), not given to the constructor");
  storage_ = Storage::allocate(device_, byte_length_);
  if (extra.IsTypedArray()) {
    Napi::TypedArray src = extra.As<Napi::TypedArray>();
    if (src.TypedArrayType() != typed_array_type_for(dtype_))
      throw_type(std::string("data for ") + dtype_name(dtype_) + " must be a " +
                 typed_array_name(typed_array_type_for(dtype_)));
    if (src.ByteLength() != byte_length_) throw_range("data length does not match the shape");
    copy_host_to_storage(*storage_, 0,
                         static_cast<const char*>(src.ArrayBuffer().Data()) + src.ByteOffset(),
                         byte_length_);
  } else if (!extra.IsUndefined()) {
    throw_type("the 5th argument must be a typed array or a bigint pointer");
  }
  if (device_ == kCpuDevice) {
    // Lets V8 count host tensors when it decides to collect garbage.
    accounted_ = std::make_shared<ExternalBytes>(info.Env(), static_cast<int64_t>(byte_length_));
  }
}

TensorWrap::~TensorWrap() { release(); }

void TensorWrap::release() {
  storage_.reset();    // memory goes when the last in-flight op lets go of it
  accounted_.reset();  // reported until the last of the tensor and its views goes
}

std::shared_ptr<Storage> TensorWrap::storage() const {
  if (!storage_) throw_error("tensor has been disposed");
  return storage_;
}

Napi::Value TensorWrap::get_device(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), device_);
}
Napi::Value TensorWrap::get_dtype(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), static_cast<int>(dtype_));
}
Napi::Value TensorWrap::get_layout(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), static_cast<int>(layout_));
}
Napi::Value TensorWrap::get_byte_length(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), static_cast<double>(byte_length_));
}
Napi::Value TensorWrap::get_disposed(const Napi::CallbackInfo& info) {
  return Napi::Boolean::New(info.Env(), disposed());
}
Napi::Value TensorWrap::get_shape(const Napi::CallbackInfo& info) {
  Napi::Array a = Napi::Array::New(info.Env(), shape_.size());
  for (size_t i = 0; i < shape_.size(); ++i)
    a.Set(static_cast<uint32_t>(i), Napi::Number::New(info.Env(), static_cast<double>(shape_[i])));
  return a;
}
// Address of the memory as a bigint (for handing device memory to other libraries).
Napi::Value TensorWrap::get_pointer(const Napi::CallbackInfo& info) {
  return js_guard(info.Env(), [&]() -> Napi::Value {
    return Napi::BigInt::New(info.Env(), reinterpret_cast<uint64_t>(storage()->data()));
  });
}

// toHost(offset?, length?): elements [offset, offset + length) in memory
// order (default: all, or all from offset).
Napi::Value TensorWrap::to_host(const Napi::CallbackInfo& info) {
  return js_guard(info.Env(), [&]() -> Napi::Value {
    int64_t offset = 0, length = count_;
    if (!arg(info, 0).IsUndefined()) {
      offset = get_integer(arg(info, 0), "offset", 0, count_);
      length = count_ - offset;
    }
    if (!arg(info, 1).IsUndefined()) {
      length = get_integer(arg(info, 1), "length", 0, count_);
      if (length > count_ - offset)
        throw_range("elements [" + std::to_string(offset) + ", " + std::to_string(offset + length) +
                    ") run past the tensor's " + std::to_string(count_));
    }
    const int64_t size = dtype_size(dtype_);
    return start_download(info.Env(), storage(), static_cast<size_t>(offset * size),
                          static_cast<size_t>(length * size));
  });
}

// upload(data, offset?): without offset, data must fill the tensor; with it,
// data's elements go to [offset, offset + data.length) in memory order.
Napi::Value TensorWrap::upload(const Napi::CallbackInfo& info) {
  return js_guard(info.Env(), [&]() -> Napi::Value {
    Napi::Value v = arg(info, 0);
    napi_typedarray_type want = typed_array_type_for(dtype_);
    if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != want)
      throw_type(std::string("data for ") + dtype_name(dtype_) + " must be a " +
                 typed_array_name(want));
    Napi::TypedArray src = v.As<Napi::TypedArray>();
    if (arg(info, 1).IsUndefined()) {
      if (src.ByteLength() != byte_length_) throw_range("data length does not match the shape");
      return start_upload(info.Env(), storage(), 0, src);
    }
    int64_t offset = get_integer(arg(info, 1), "offset", 0, count_);
    int64_t length = static_cast<int64_t>(src.ElementLength());
    if (length > count_ - offset)
      throw_range(std::to_string(length) + " elements at offset " + std::to_string(offset) +
                  " run past the tensor's " + std::to_string(count_));
    return start_upload(info.Env(), storage(), static_cast<size_t>(offset * dtype_size(dtype_)),
                        src);
  });
}

Napi::Value TensorWrap::dispose(const Napi::CallbackInfo& info) {
  release();
  return info.Env().Undefined();
}

// Views start on this boundary of their tensor's memory (which starts on
// one): the kernels' vector loads and the estimation's summation order count
// on it. The TypeScript layer says it in its own words first.
constexpr int64_t kViewAlignment = 64;

// view(shape, layout, offset): a tensor of this dtype over elements [offset,
// offset + count(shape)) of this one's memory, which it keeps alive.
Napi::Value TensorWrap::view(const Napi::CallbackInfo& info) {
  return js_guard(info.Env(), [&]() -> Napi::Value {
    std::shared_ptr<Storage> parent = storage();
    const std::vector<int64_t> shape = binding::get_shape(arg(info, 0));
    get_integer(arg(info, 1), "layout", 0, 1);
    const int64_t offset = get_integer(arg(info, 2), "offset", 0, count_);
    int64_t count = 1;
    for (int64_t n : shape) count = n > 0 && count > count_ / n ? count_ + 1 : count * n;
    if (count > count_ - offset)
      throw_range("a view of " + std::to_string(count) + " elements at offset " +
                  std::to_string(offset) + " runs past the tensor's " + std::to_string(count_));
    const int64_t size = dtype_size(dtype_);
    if ((offset * size) % kViewAlignment != 0)
      throw_range("offset " + std::to_string(offset) + " must start on a " +
                  std::to_string(kViewAlignment) + "-byte boundary");
    auto ext = Napi::External<StorageHolder>::New(
        info.Env(),
        new StorageHolder{Storage::slice(std::move(parent), static_cast<size_t>(offset * size),
                                         static_cast<size_t>(count * size)),
                          accounted_},
        [](Napi::Env, StorageHolder* h) { delete h; });
    ext.TypeTag(&kStorageTag);
    return addon_data(info.Env())
        .tensor_constructor.New({Napi::Number::New(info.Env(), device_),
                                 Napi::Number::New(info.Env(), static_cast<int>(dtype_)),
                                 arg(info, 0), arg(info, 1), ext});
  });
}

// Tensor.wrap(device, dtype, shape, layout, pointer: bigint): non-owning view.
Napi::Value TensorWrap::wrap_pointer(const Napi::CallbackInfo& info) {
  return js_guard(info.Env(), [&]() -> Napi::Value {
    if (!arg(info, 4).IsBigInt()) throw_type("pointer must be a bigint");
    std::vector<napi_value> args;
    for (size_t i = 0; i < 5; ++i) args.push_back(arg(info, i));
    return addon_data(info.Env()).tensor_constructor.New(args);
  });
}

}  // namespace prism::binding

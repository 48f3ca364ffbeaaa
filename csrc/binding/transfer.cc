#include "binding/transfer.h"

#include <cstring>

#include "binding/args.h"
#include "binding/device.h"
#include "binding/errors.h"
#include "binding/op_runner.h"
#include "binding/promise_worker.h"
#include "binding/tensor.h"
#include "binding/views.h"
#if PRISM_WITH_CUDA
#include "binding/cuda_sync.h"
#endif

namespace prism::binding {

namespace {

// A blocking copy between host memory and the memory of `device` (a memcpy on
// the CPU), on the device's own stream.
void copy_blocking(int device, void* to, const void* from, size_t bytes, bool upload) {
  if (device == kCpuDevice) {
    std::memcpy(to, from, bytes);
    return;
  }
#if PRISM_WITH_CUDA
  cudaStream_t stream = use_device_stream(device);
  check_cuda(cudaMemcpyAsync(to, from, bytes,
                             upload ? cudaMemcpyHostToDevice : cudaMemcpyDeviceToHost, stream),
             upload ? "cudaMemcpyAsync (upload)" : "cudaMemcpyAsync (toHost)");
  wait_for_stream(stream, upload ? "upload" : "toHost");
#endif
}

}  // namespace

void copy_host_to_storage(const Storage& dst, size_t offset, const void* src, size_t bytes) {
  copy_blocking(dst.device(), static_cast<char*>(dst.data()) + offset, src, bytes, true);
}

void copy_storage_to_host(void* dst, const Storage& src, size_t offset, size_t bytes) {
  copy_blocking(src.device(), dst, static_cast<const char*>(src.data()) + offset, bytes, false);
}

namespace {

class UploadWorker : public PromiseWorker {
 public:
  UploadWorker(Napi::Env env, std::shared_ptr<Storage> dst, size_t offset, Napi::TypedArray source)
      : PromiseWorker(env, dst->device()),
        dst_(std::move(dst)),
        offset_(offset),
        source_ref_(Napi::Persistent(source.As<Napi::Object>())),
        source_(static_cast<const char*>(source.ArrayBuffer().Data()) + source.ByteOffset()),
        bytes_(source.ByteLength()) {}

 protected:
  void run() override {
    if (bytes_ > 0) copy_host_to_storage(*dst_, offset_, source_, bytes_);
  }
  void release_js() override { source_ref_.Reset(); }

 private:
  std::shared_ptr<Storage> dst_;
  size_t offset_;
  Napi::ObjectReference source_ref_;  // keeps the typed array's memory alive
  const void* source_;
  size_t bytes_;
};

class DownloadWorker : public PromiseWorker {
 public:
  DownloadWorker(Napi::Env env, std::shared_ptr<Storage> src, size_t offset, size_t bytes)
      : PromiseWorker(env, src->device()), src_(std::move(src)), offset_(offset), bytes_(bytes) {
    Napi::ArrayBuffer buffer = Napi::ArrayBuffer::New(env, bytes_);
    buffer_ref_ = Napi::Persistent(buffer);
    dst_ = buffer.Data();
  }

 protected:
  void run() override {
    if (bytes_ > 0) copy_storage_to_host(dst_, *src_, offset_, bytes_);
  }
  Napi::Value result(Napi::Env) override { return buffer_ref_.Value(); }

 private:
  std::shared_ptr<Storage> src_;
  size_t offset_;
  size_t bytes_;
  Napi::Reference<Napi::ArrayBuffer> buffer_ref_;  // released with the worker
  void* dst_ = nullptr;
};

}  // namespace

Napi::Value copy_tensor(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return js_guard(env, [&]() -> Napi::Value {
    TensorWrap& dst = TensorWrap::unwrap(env, arg(info, 0), "dst");
    TensorWrap& src = TensorWrap::unwrap(env, arg(info, 1), "src");
    if (dst.dtype() != src.dtype())
      throw_type(std::string("dtypes differ: dst is ") + dtype_name(dst.dtype()) + ", src is " +
                 dtype_name(src.dtype()));
    if (dst.shape() != src.shape())
      throw_range("shapes differ: dst is " + shape_text(dst.shape()) + ", src is " +
                  shape_text(src.shape()));
    if (dst.layout() != src.layout())
      throw_range("layouts differ: copy between tensors of the same layout");
    OpCall call;
    call.name = "copy";
    call.device = common_device({&dst, &src});
    call.stream = read_stream(arg(info, 2), call.device);
    call.keep_alive = {dst.storage(), src.storage()};
    void* to = call.keep_alive[0]->data();
    const void* from = call.keep_alive[1]->data();
    size_t bytes = dst.byte_length();
    call.cpu = [to, from, bytes]() {
      if (to != from) std::memmove(to, from, bytes);
    };
#if PRISM_WITH_CUDA
    call.gpu = [to, from, bytes](void*, cudaStream_t stream) {
      return to == from ? cudaSuccess
                        : cudaMemcpyAsync(to, from, bytes, cudaMemcpyDeviceToDevice, stream);
    };
#endif
    return start_timed_op(env, std::move(call));
  });
}

Napi::Promise start_upload(Napi::Env env, std::shared_ptr<Storage> dst, size_t offset,
                           Napi::TypedArray source) {
  return (new UploadWorker(env, std::move(dst), offset, source))->start();
}

Napi::Promise start_download(Napi::Env env, std::shared_ptr<Storage> src, size_t offset,
                             size_t bytes) {
  return (new DownloadWorker(env, std::move(src), offset, bytes))->start();
}

}  // namespace prism::binding

#include "binding/memory_api.h"

#include "binding/args.h"
#include "binding/device.h"
#include "binding/errors.h"
#include "binding/memory.h"
#include "binding/promise_worker.h"

namespace prism::binding {

namespace {

class ReleaseCachedWorker : public PromiseWorker {
 public:
  ReleaseCachedWorker(Napi::Env env, int device) : PromiseWorker(env, device), device_(device) {}

 protected:
  void run() override {
#if PRISM_WITH_CUDA
    // A device the package never used has nothing cached (and no context to create).
    if (device_ == kCpuDevice || !device_context_created(device_)) return;
    cudaStream_t stream = use_device_stream(device_);
    freed_ = workspace_pool(device_).release_idle(stream);
    // Frees enqueued on other streams (callers' streams, other devices' ops)
    // return to the pool only once the pool sees them complete; a trim before
    // that keeps them, and a later allocation quietly reuses them. Wait for
    // the whole device so the trim hands back everything idle.
    check_cuda(cudaDeviceSynchronize(), "releaseCachedMemory (device synchronize)");
    // Tensors are freed into the device's stream-ordered pool; hand that back too.
    cudaMemPool_t pool = nullptr;
    check_cuda(cudaDeviceGetDefaultMemPool(&pool, device_), "cudaDeviceGetDefaultMemPool");
    check_cuda(cudaMemPoolTrimTo(pool, 0), "cudaMemPoolTrimTo");
#endif
  }

  Napi::Value result(Napi::Env env) override {
    return Napi::Number::New(env, static_cast<double>(freed_));
  }

 private:
  int device_;
  size_t freed_ = 0;
};

}  // namespace

Napi::Value memory_stats(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return js_guard(env, [&]() -> Napi::Value {
    int device = get_device(arg(info, 0));
    require_device(device);
    const MemoryCounters& c = memory_counters(device);
    double workspace = 0, lent = 0;
    Napi::Value free_bytes = env.Null(), total_bytes = env.Null();
#if PRISM_WITH_CUDA
    if (device != kCpuDevice) {
      const WorkspacePool& pool = workspace_pool(device);
      workspace = static_cast<double>(pool.cached_bytes());
      lent = static_cast<double>(pool.lent_bytes());
      // Only where the package already has a context: querying would create one.
      if (device_context_created(device)) {
        size_t f = 0, t = 0;
        {
          DeviceScope scope(device);
          check_cuda(cudaMemGetInfo(&f, &t), "cudaMemGetInfo");
        }
        free_bytes = Napi::Number::New(env, static_cast<double>(f));
        total_bytes = Napi::Number::New(env, static_cast<double>(t));
      }
    }
#endif
    Napi::Object o = Napi::Object::New(env);
    o.Set("device", device);
    o.Set("tensorBytes", static_cast<double>(c.tensor_bytes.load()));
    o.Set("tensorCount", static_cast<double>(c.tensor_count.load()));
    o.Set("workspaceBytes", workspace);
    o.Set("workspaceInUseBytes", lent);
    o.Set("allocations", static_cast<double>(c.allocations.load()));
    o.Set("deviceFreeBytes", free_bytes);
    o.Set("deviceTotalBytes", total_bytes);
    return o;
  });
}

Napi::Value release_cached_memory(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return js_guard(env, [&]() -> Napi::Value {
    int device = get_device(arg(info, 0));
    require_device(device);
    return (new ReleaseCachedWorker(env, device))->start();
  });
}

}  // namespace prism::binding

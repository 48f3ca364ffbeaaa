#include "binding/testing.h"

#include <chrono>
#include <cstdint>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "binding/args.h"
#include "binding/device.h"
#include "binding/errors.h"
#include "binding/promise_worker.h"
#include "binding/streams.h"
#include "binding/tensor.h"
#include "binding/varlen.h"
#include "binding/views.h"
#if PRISM_WITH_CUDA
#include "binding/cuda_sync.h"
#include "binding/memory.h"
#endif

namespace prism::binding {

namespace {

#if !PRISM_WITH_CUDA
[[noreturn]] void no_cuda() { throw_error("prism-attention was built without CUDA support"); }
#else
uint64_t get_stream_handle(Napi::Value v) {
  if (!v.IsBigInt()) throw_type("stream must be a bigint");
  bool lossless = true;
  uint64_t s = v.As<Napi::BigInt>().Uint64Value(&lossless);
  if (!lossless || s == 0) throw_range("stream must be a non-zero 64-bit handle");
  return s;
}

// Host work that holds its stream back, standing in for a long kernel.
void CUDART_CB sleep_on_stream(void* ms) {
  std::this_thread::sleep_for(std::chrono::milliseconds(reinterpret_cast<intptr_t>(ms)));
}

// Waits for an event recorded at the call, keeping the tensors' memory alive.
class EventWaitWorker : public PromiseWorker {
 public:
  EventWaitWorker(Napi::Env env, int device, CudaEvent done,
                  std::vector<std::shared_ptr<Storage>> keep)
      : PromiseWorker(env, device),
        device_(device),
        done_(std::move(done)),
        keep_(std::move(keep)) {}

 protected:
  void run() override {
    use_device(device_);
    check_cuda(cudaEventSynchronize(done_.get()), "copyAfterDelay");
  }

 private:
  int device_;
  CudaEvent done_;
  std::vector<std::shared_ptr<Storage>> keep_;
};
#endif

Napi::Value create_stream(const Napi::CallbackInfo& info) {
  return js_guard(info.Env(), [&]() -> Napi::Value {
    int device = static_cast<int>(get_integer(arg(info, 0), "device", 0, 1023));
    require_device(device);
#if PRISM_WITH_CUDA
    DeviceScope scope(device);
    cudaStream_t s = nullptr;
    check_cuda(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking), "cudaStreamCreateWithFlags");
    return Napi::BigInt::New(info.Env(), static_cast<uint64_t>(reinterpret_cast<uintptr_t>(s)));
#else
    no_cuda();
#endif
  });
}

Napi::Value destroy_stream(const Napi::CallbackInfo& info) {
  return js_guard(info.Env(), [&]() -> Napi::Value {
#if PRISM_WITH_CUDA
    uint64_t s = get_stream_handle(arg(info, 0));
    // Returns at once; the stream goes when its work has completed.
    check_cuda(cudaStreamDestroy(reinterpret_cast<cudaStream_t>(s)), "cudaStreamDestroy");
    return info.Env().Undefined();
#else
    no_cuda();
#endif
  });
}

// copyAfterDelay(dst, src, stream, delayMs): enqueues now, from this thread, on
// `stream` (undefined: the device's stream) a host wait of delayMs and then the
// copy of src into dst; resolves once the copy is done. Work enqueued on the
// same stream afterwards sees the copy only if it is ordered after it.
Napi::Value copy_after_delay(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return js_guard(env, [&]() -> Napi::Value {
    TensorWrap& dst = TensorWrap::unwrap(env, arg(info, 0), "dst");
    TensorWrap& src = TensorWrap::unwrap(env, arg(info, 1), "src");
    if (dst.byte_length() != src.byte_length())
      throw_range("dst and src must have the same byte length");
    int device = common_device({&dst, &src});
    uint64_t caller = read_stream(arg(info, 2), device);
    int64_t delay = get_integer(arg(info, 3), "delayMs", 0, 60000);
#if PRISM_WITH_CUDA
    DeviceScope scope(device);
    std::vector<std::shared_ptr<Storage>> keep = {dst.storage(), src.storage()};
    cudaStream_t stream = op_stream(device, caller);
    CudaEvent done(cudaEventBlockingSync | cudaEventDisableTiming);
    try {
      check_cuda(cudaLaunchHostFunc(stream, sleep_on_stream,
                                    reinterpret_cast<void*>(static_cast<intptr_t>(delay))),
                 "cudaLaunchHostFunc");
      check_cuda(cudaMemcpyAsync(keep[0]->data(), keep[1]->data(), dst.byte_length(),
                                 cudaMemcpyDeviceToDevice, stream),
                 "cudaMemcpyAsync (copyAfterDelay)");
      check_cuda(cudaEventRecord(done.get(), stream), "cudaEventRecord");
    } catch (...) {
      drain_stream_quietly(stream);  // the tensors must outlive what was enqueued
      throw;
    }
    return (new EventWaitWorker(env, device, std::move(done), std::move(keep)))->start();
#else
    (void)caller;
    (void)delay;
    no_cuda();
#endif
  });
}

// driverReason(driverVersion, requiredVersion): the message info() gives when
// the driver is too old (old_driver_reason), for unit tests on any machine.
Napi::Value driver_reason(const Napi::CallbackInfo& info) {
  return js_guard(info.Env(), [&]() -> Napi::Value {
    int driver = static_cast<int>(get_integer(arg(info, 0), "driverVersion", 0, 1000000));
    int required = static_cast<int>(get_integer(arg(info, 1), "requiredVersion", 1000, 1000000));
    return Napi::String::New(info.Env(), old_driver_reason(driver, required));
  });
}

// primaryContextActive(device): whether the device's primary CUDA context
// exists in this process, read through the driver without creating one (for
// tests that calls which only describe devices create none).
Napi::Value primary_context_active_js(const Napi::CallbackInfo& info) {
  return js_guard(info.Env(), [&]() -> Napi::Value {
    int device = static_cast<int>(get_integer(arg(info, 0), "device", 0, 1023));
    require_device(device);
#if PRISM_WITH_CUDA
    return Napi::Boolean::New(info.Env(), primary_context_active(device));
#else
    no_cuda();
#endif
  });
}

// workspaceSizeClass(bytes): the size of the workspace buffer a request of
// `bytes` is given (WorkspacePool::size_class); CUDA builds only.
Napi::Value workspace_size_class(const Napi::CallbackInfo& info) {
  return js_guard(info.Env(), [&]() -> Napi::Value {
    const int64_t bytes = get_integer(arg(info, 0), "bytes", 1, int64_t(1) << 52);
#if PRISM_WITH_CUDA
    return Napi::Number::New(
        info.Env(), static_cast<double>(WorkspacePool::size_class(static_cast<size_t>(bytes))));
#else
    (void)bytes;
    no_cuda();
#endif
  });
}

// workspaceEvictions(idleSizes, want): the indices of the idle workspace
// buffers (by size) freed before a new buffer of `want` bytes is made
// (WorkspacePool::evictions_before); CUDA builds only.
Napi::Value workspace_evictions(const Napi::CallbackInfo& info) {
  return js_guard(info.Env(), [&]() -> Napi::Value {
    Napi::Value list = arg(info, 0);
    if (!list.IsArray()) throw_type("idleSizes must be an array of byte counts");
    Napi::Array a = list.As<Napi::Array>();
    std::vector<size_t> idle;
    for (uint32_t i = 0; i < a.Length(); ++i)
      idle.push_back(static_cast<size_t>(
          get_integer(a.Get(i), "idleSizes[" + std::to_string(i) + "]", 1, int64_t(1) << 52)));
    const int64_t want = get_integer(arg(info, 1), "want", 1, int64_t(1) << 52);
#if PRISM_WITH_CUDA
    std::vector<size_t> out = WorkspacePool::evictions_before(idle, static_cast<size_t>(want));
    Napi::Array r = Napi::Array::New(info.Env(), out.size());
    for (size_t i = 0; i < out.size(); ++i)
      r.Set(static_cast<uint32_t>(i), Napi::Number::New(info.Env(), static_cast<double>(out[i])));
    return r;
#else
    (void)want;
    no_cuda();
#endif
  });
}

// currentDevice(): the calling thread's current CUDA device (cudaGetDevice);
// setCurrentDevice(device): cudaSetDevice on the calling thread. For tests
// that the package's calls leave the JS thread's current device as it was.
Napi::Value current_device(const Napi::CallbackInfo& info) {
  return js_guard(info.Env(), [&]() -> Napi::Value {
#if PRISM_WITH_CUDA
    int device = 0;
    check_cuda(cudaGetDevice(&device), "cudaGetDevice");
    return Napi::Number::New(info.Env(), device);
#else
    no_cuda();
#endif
  });
}

Napi::Value set_current_device(const Napi::CallbackInfo& info) {
  return js_guard(info.Env(), [&]() -> Napi::Value {
    int device = static_cast<int>(get_integer(arg(info, 0), "device", 0, 1023));
    require_device(device);
#if PRISM_WITH_CUDA
    use_device(device);
    return info.Env().Undefined();
#else
    no_cuda();
#endif
  });
}

// foreignExternal(): an External this addon's tensors did not make (what
// another addon could hand over), for tests that such a value is refused.
Napi::Value foreign_external(const Napi::CallbackInfo& info) {
  static int payload = 0x5eed;
  return Napi::External<int>::New(info.Env(), &payload);
}

// planLanes(lengths: number[] of [nq, nk] pairs, heads, kvTokenBytes, maxLanes):
// { lanes, lane: number[] }, plan_lanes (varlen.h) for a CUDA varlen call.
Napi::Value plan_lanes_js(const Napi::CallbackInfo& info) {
  return js_guard(info.Env(), [&]() -> Napi::Value {
    Napi::Env env = info.Env();
    if (!arg(info, 0).IsArray()) throw_type("lengths must be an array of [nq, nk] pairs");
    const Napi::Array pairs = arg(info, 0).As<Napi::Array>();
    std::vector<SeqSpan> seqs(pairs.Length());
    for (uint32_t i = 0; i < pairs.Length(); ++i) {
      const Napi::Value pair = pairs.Get(i);
      if (!pair.IsArray() || pair.As<Napi::Array>().Length() != 2)
        throw_type("lengths must be an array of [nq, nk] pairs");
      seqs[i].nq = get_integer(pair.As<Napi::Array>().Get(0u), "nq", 0, int64_t(1) << 40);
      seqs[i].nk = get_integer(pair.As<Napi::Array>().Get(1u), "nk", 0, int64_t(1) << 40);
    }
    const int64_t heads = get_integer(arg(info, 1), "heads", 1, 1 << 20);
    const int64_t kv = get_integer(arg(info, 2), "kvTokenBytes", 0, 1 << 24);
    const int64_t max_lanes =
        get_integer(arg(info, 3), "maxLanes", 1, static_cast<int64_t>(kMaxLanes));
    const LanePlan plan = plan_lanes(seqs, heads, kv, static_cast<size_t>(max_lanes));
    Napi::Object r = Napi::Object::New(env);
    r.Set("lanes", static_cast<double>(plan.lanes));
    Napi::Array lane = Napi::Array::New(env, plan.lane.size());
    for (size_t i = 0; i < plan.lane.size(); ++i)
      lane.Set(static_cast<uint32_t>(i), static_cast<double>(plan.lane[i]));
    r.Set("lane", lane);
    return r;
  });
}

}  // namespace

Napi::Object testing_exports(Napi::Env env) {
  Napi::Object t = Napi::Object::New(env);
  t.Set("createStream", Napi::Function::New<create_stream>(env, "createStream"));
  t.Set("destroyStream", Napi::Function::New<destroy_stream>(env, "destroyStream"));
  t.Set("copyAfterDelay", Napi::Function::New<copy_after_delay>(env, "copyAfterDelay"));
  t.Set("driverReason", Napi::Function::New<driver_reason>(env, "driverReason"));
  t.Set("primaryContextActive",
        Napi::Function::New<primary_context_active_js>(env, "primaryContextActive"));
  t.Set("currentDevice", Napi::Function::New<current_device>(env, "currentDevice"));
  t.Set("setCurrentDevice", Napi::Function::New<set_current_device>(env, "setCurrentDevice"));
  t.Set("foreignExternal", Napi::Function::New<foreign_external>(env, "foreignExternal"));
  t.Set("workspaceSizeClass", Napi::Function::New<workspace_size_class>(env, "workspaceSizeClass"));
  t.Set("workspaceEvictions", Napi::Function::New<workspace_evictions>(env, "workspaceEvictions"));
  t.Set("planLanes", Napi::Function::New<plan_lanes_js>(env, "planLanes"));
  return t;
}

}  // namespace prism::binding

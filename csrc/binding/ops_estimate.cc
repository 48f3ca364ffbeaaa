// estimate(q, k, params, out: { counts, rowPtr, temps, mask? }, timing?, stream?, keys?)
//   -> Promise<{ timesMs: number[], indices: Tensor, selected: number }>
// The selection is made in the triangular layout (scratch), then counted
// (rowPtr) and gathered into compact indices sized by the selection; the
// indices tensor is allocated once the count is known (one host wait).
#include "binding/args.h"
#include "binding/device.h"
#include "binding/device_worker.h"
#include "binding/errors.h"
#include "binding/key_summaries.h"
#include "binding/op_runner.h"
#include "binding/ops.h"
#include "binding/selection.h"
#include "binding/views.h"
#include "cpu/cpu_backend.h"
#if PRISM_WITH_CUDA
#include "binding/cuda_sync.h"
#include "cuda/cuda_backend.h"
#endif

namespace prism::binding {
namespace {

class EstimateWorker : public DeviceWorker {
 public:
  EstimateWorker(Napi::Env env, int device, QkvView q, QkvView k, EstimateParams p,
                 BlockMaskOut out, int64_t* row_ptr, SelectionGeometry geo, Timing timing,
                 uint64_t stream, KeySummaries keys, std::vector<std::shared_ptr<Storage>> keep)
      : DeviceWorker(env, device),
        q_(q),
        k_(k),
        p_(p),
        out_(out),
        row_ptr_(row_ptr),
        geo_(geo),
        timing_(timing),
        stream_(stream),
        keys_(keys),
        keep_(std::move(keep)) {}

 protected:
  Napi::Value result(Napi::Env env) override {
    Napi::Object r = Napi::Object::New(env);
    Napi::Array ms = Napi::Array::New(env, ms_.size());
    for (size_t i = 0; i < ms_.size(); ++i)
      ms.Set(static_cast<uint32_t>(i), Napi::Number::New(env, ms_[i]));
    r.Set("timesMs", ms);
    r.Set("indices", TensorWrap::adopt(env, indices_, DType::I32, {total_ > 0 ? total_ : 1}));
    r.Set("selected", Napi::Number::New(env, static_cast<double>(total_)));
    return r;
  }

 private:
  void run_cpu() override {
    std::vector<int32_t> tri(static_cast<size_t>(geo_.tri > 0 ? geo_.tri : 1));
    BlockMaskOut o = out_;
    o.indices = tri.data();
    ms_ = time_on_cpu(timing_, [&]() { prism::cpu::estimate(q_, k_, p_, o, 0, &keys_); });
    total_ = prism::cpu::scan_counts(o.counts, geo_.rows, row_ptr_);
    indices_ = Storage::allocate(kCpuDevice, indices_bytes(total_));
    prism::cpu::gather_selection(o.counts, tri.data(), geo_.rows, geo_.nq, geo_.off, row_ptr_,
                                 static_cast<int32_t*>(indices_->data()));
  }

#if PRISM_WITH_CUDA
  void run_gpu() override {
    cudaStream_t stream = nullptr;
    // Outlives enqueue_on's drain on an error: the copy into it may be pending.
    PinnedValue total;
    enqueue_on(device_, stream_, stream, [&] {
      const size_t tri_bytes = align256(sizeof(int32_t) * static_cast<size_t>(geo_.tri));
      StreamBuffer scratch(tri_bytes + prism::cuda::scan_workspace_bytes(geo_.rows), stream);
      BlockMaskOut o = out_;
      o.indices = static_cast<int32_t*>(scratch.get());
      void* scan_ws = static_cast<char*>(scratch.get()) + tri_bytes;
      ms_ = time_on_gpu(
          device_, timing_, prism::cuda::estimate_workspace_bytes(q_, k_, p_),
          [&](void* ws, cudaStream_t s) {
            return prism::cuda::estimate(q_, k_, p_, o, ws, s, &keys_);
          },
          "estimate", stream_);
      check_cuda(prism::cuda::scan_counts(o.counts, geo_.rows, row_ptr_, scan_ws, stream),
                 "estimate (count)");
      check_cuda(cudaMemcpyAsync(total.get(), row_ptr_ + geo_.rows, sizeof(int64_t),
                                 cudaMemcpyDeviceToHost, stream),
                 "cudaMemcpyAsync (selection size)");
      wait_for_stream(stream, "estimate");
      total_ = *total.get();
      indices_ = Storage::allocate(device_, indices_bytes(total_));
      stream = op_stream(device_, stream_);  // after the allocation on the device's stream
      check_cuda(
          prism::cuda::gather_selection(o.counts, o.indices, geo_.rows, geo_.nq, geo_.off, row_ptr_,
                                        static_cast<int32_t*>(indices_->data()), stream),
          "estimate (gather)");
      wait_for_stream(stream, "estimate");
      scratch.mark_done();
    });
  }
#endif

  QkvView q_, k_;
  EstimateParams p_;
  BlockMaskOut out_;
  int64_t* row_ptr_;
  SelectionGeometry geo_;
  Timing timing_;
  uint64_t stream_;
  KeySummaries keys_;
  std::vector<std::shared_ptr<Storage>> keep_;
  std::vector<double> ms_;
  int64_t total_ = 0;
  std::shared_ptr<Storage> indices_;
};

}  // namespace

Napi::Value estimate(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return js_guard(env, [&]() -> Napi::Value {
    const QueryKeyArgs in = read_query_key(info);
    const QkvView& q = in.q;
    const QkvView& k = in.k;
    EstimateParams p = read_estimate_params(arg(info, 2), q.d);
    SelectionOut s = read_selection_out(env, arg(info, 3), q, k, p.block);
    const int device = common_device({&in.qt, &in.kt, s.counts, s.row_ptr, s.temps, s.mask});
    const uint64_t stream = read_stream(arg(info, 5), device);
    std::vector<std::shared_ptr<Storage>> keep = in.storages();
    s.keep_alive(keep);
    const KeySummaries keys = read_key_summaries(env, arg(info, 6), k, p, device, keep, "keys");
    return (new EstimateWorker(env, device, q, k, p, s.outputs(), s.row_ptr_data(),
                               SelectionGeometry(q, k, p.block), read_timing(arg(info, 4)), stream,
                               keys, std::move(keep)))
        ->start();
  });
}

}  // namespace prism::binding

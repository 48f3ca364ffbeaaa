// prefill(q, k, v, o, estimateParams, attentionParams { block, softmaxScale, lse? },
//         out: { counts, rowPtr, temps, mask? } | null, stream?, keys?)
//   -> Promise<{ estimateMs, attentionMs, selected, indices?: Tensor }>
// Estimation and block-sparse attention in one call. On a GPU both are
// enqueued back to back on the stream by the calling thread, attention reading
// the selection where the estimation left it (triangular layout, scratch);
// events time each part (the estimation's with its selected-block count, copied
// back before attention starts); a worker
// thread waits once at the end. Only when the caller asks for the selection
// (out) is it gathered into compact indices sized by that count, after a
// second, short wait.
#include <chrono>
#include <memory>

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

struct PrefillArgs {
  int device = kCpuDevice;
  QkvView q, k, v;
  OutView o;
  EstimateParams ep;
  AttentionParams ap;
  BlockMaskOut sel;            // counts / temps / mask given by the caller, or null (scratch)
  int64_t* row_ptr = nullptr;  // caller's, or null
  bool want_selection = false;
  uint64_t stream = 0;  // caller's cudaStream_t, or 0: the device's own
  KeySummaries keys;    // key blocks read instead of pooled (none: blocks 0)
};

class PrefillWorker : public DeviceWorker {
 public:
  PrefillWorker(Napi::Env env, PrefillArgs a, std::vector<std::shared_ptr<Storage>> keep)
      : DeviceWorker(env, a.device), a_(a), geo_(a.q, a.k, a.ep.block), keep_(std::move(keep)) {}

 protected:
  Napi::Value result(Napi::Env env) override {
    Napi::Object r = phase_times(env, est_ms_, att_ms_);
    r.Set("selected", Napi::Number::New(env, static_cast<double>(total_)));
    if (indices_)
      r.Set("indices", TensorWrap::adopt(env, indices_, DType::I32, {total_ > 0 ? total_ : 1}));
    return r;
  }

 private:
  void run_cpu() override {
    using clock = std::chrono::steady_clock;
    const size_t rows = static_cast<size_t>(geo_.rows);
    std::vector<int32_t> counts(a_.sel.counts ? 0 : rows),
        tri(static_cast<size_t>(geo_.tri > 0 ? geo_.tri : 1));
    std::vector<float> temps(a_.sel.temps ? 0 : static_cast<size_t>(a_.q.batch * a_.q.heads * 2));
    std::vector<int64_t> row_ptr(a_.row_ptr ? 0 : rows + 1);
    BlockMaskOut o = a_.sel;
    if (!o.counts) o.counts = counts.data();
    if (!o.temps) o.temps = temps.data();
    o.indices = tri.data();
    const auto t0 = clock::now();
    prism::cpu::estimate(a_.q, a_.k, a_.ep, o, 0, &a_.keys);
    const auto t1 = clock::now();
    const BlockList list{o.counts, nullptr, tri.data(), geo_.tri, /*triangular=*/true};
    prism::cpu::attention(a_.q, a_.k, a_.v, a_.o, list, a_.ap, 0);
    const auto t2 = clock::now();
    est_ms_ = std::chrono::duration<double, std::milli>(t1 - t0).count();
    att_ms_ = std::chrono::duration<double, std::milli>(t2 - t1).count();
    int64_t* rp = a_.row_ptr ? a_.row_ptr : row_ptr.data();
    total_ = prism::cpu::scan_counts(o.counts, geo_.rows, rp);
    if (a_.want_selection) {
      indices_ = Storage::allocate(kCpuDevice, indices_bytes(total_));
      prism::cpu::gather_selection(o.counts, tri.data(), geo_.rows, geo_.nq, geo_.off, rp,
                                   static_cast<int32_t*>(indices_->data()));
    }
  }

#if PRISM_WITH_CUDA
 public:
  // Calling (main) thread: enqueues everything, so the GPU starts without
  // waiting for a worker thread to pick the call up; run() then only waits.
  // Launches do not block; on failure the worker thread drains the stream
  // and the error rejects the call's promise (enqueue_or_defer).
  void enqueue_gpu() {
    enqueue_or_defer(a_.device, a_.stream, stream_, [&] {
      // scratch: estimation workspace | triangular selection |
      // scan workspace | counts, rowPtr, temps unless the caller gave them | attention workspace
      const size_t rows = static_cast<size_t>(geo_.rows);
      const size_t est_ws = align256(prism::cuda::estimate_workspace_bytes(a_.q, a_.k, a_.ep));
      const size_t tri_b = align256(sizeof(int32_t) * static_cast<size_t>(geo_.tri));
      const size_t scan_b = align256(prism::cuda::scan_workspace_bytes(geo_.rows));
      const size_t counts_b = a_.sel.counts ? 0 : align256(sizeof(int32_t) * rows);
      const size_t rowptr_b = a_.row_ptr ? 0 : align256(sizeof(int64_t) * (rows + 1));
      const size_t temps_b =
          a_.sel.temps ? 0 : align256(sizeof(float) * 2 * a_.q.batch * a_.q.heads);
      BlockList sparse;  // only its being sparse matters to the workspace size
      sparse.counts = reinterpret_cast<const int32_t*>(1);
      sparse.indices = reinterpret_cast<const int32_t*>(1);
      sparse.triangular = true;
      const size_t att_ws =
          align256(prism::cuda::attention_workspace_bytes(a_.q, a_.k, sparse, a_.ap));
      scratch_ = std::make_unique<StreamBuffer>(
          est_ws + tri_b + scan_b + counts_b + rowptr_b + temps_b + att_ws, stream_);
      char* p = static_cast<char*>(scratch_->get());
      void* ws_est = p;
      p += est_ws;
      tri_ = reinterpret_cast<int32_t*>(p);
      p += tri_b;
      void* ws_scan = p;
      p += scan_b;
      sel_ = a_.sel;
      if (!sel_.counts) sel_.counts = reinterpret_cast<int32_t*>(p);
      p += counts_b;
      rp_ = a_.row_ptr ? a_.row_ptr : reinterpret_cast<int64_t*>(p);
      p += rowptr_b;
      if (!sel_.temps) sel_.temps = reinterpret_cast<float*>(p);
      p += temps_b;
      void* ws_att = p;
      sel_.indices = tri_;

      for (auto& e : events_) e = std::make_unique<CudaEvent>(cudaEventDefault);
      total_slot_ = std::make_unique<PinnedValue>();
      check_cuda(cudaEventRecord(events_[0]->get(), stream_), "cudaEventRecord");
      check_cuda(prism::cuda::estimate(a_.q, a_.k, a_.ep, sel_, ws_est, stream_, &a_.keys),
                 "prefill (estimate)");
      // The count goes before attention: it is ready then, and what runs after
      // the last event is time the host waits for but the events do not show.
      check_cuda(prism::cuda::scan_counts(sel_.counts, geo_.rows, rp_, ws_scan, stream_),
                 "prefill (count)");
      check_cuda(cudaMemcpyAsync(total_slot_->get(), rp_ + geo_.rows, sizeof(int64_t),
                                 cudaMemcpyDeviceToHost, stream_),
                 "cudaMemcpyAsync (selection size)");
      check_cuda(cudaEventRecord(events_[1]->get(), stream_), "cudaEventRecord");
      const BlockList list{sel_.counts, nullptr, tri_, geo_.tri, /*triangular=*/true};
      check_cuda(prism::cuda::attention(a_.q, a_.k, a_.v, a_.o, list, a_.ap, ws_att, stream_),
                 "prefill (attention)");
      check_cuda(cudaEventRecord(events_[2]->get(), stream_), "cudaEventRecord");
    });
  }

 private:
  // Worker thread: the one wait, the times, and the selection when asked for.
  void run_gpu() override {
    use_device(a_.device);
    drain_on_error(stream_, [&] {
      wait_for_stream(stream_, "prefill");
      total_ = *total_slot_->get();
      est_ms_ = elapsed_ms(*events_[0], *events_[1]);
      att_ms_ = elapsed_ms(*events_[1], *events_[2]);
      if (a_.want_selection) {
        indices_ = Storage::allocate(a_.device, indices_bytes(total_));
        stream_ = op_stream(a_.device, a_.stream);  // after the allocation on the device's stream
        check_cuda(
            prism::cuda::gather_selection(sel_.counts, tri_, geo_.rows, geo_.nq, geo_.off, rp_,
                                          static_cast<int32_t*>(indices_->data()), stream_),
            "prefill (gather)");
        wait_for_stream(stream_, "prefill");
      }
    });
    scratch_->mark_done();  // every use of it was waited for above
  }

  cudaStream_t stream_ = nullptr;
  std::unique_ptr<StreamBuffer> scratch_;
  std::unique_ptr<CudaEvent> events_[3];
  std::unique_ptr<PinnedValue> total_slot_;
  BlockMaskOut sel_;
  int32_t* tri_ = nullptr;
  int64_t* rp_ = nullptr;
#endif

  PrefillArgs a_;
  SelectionGeometry geo_;
  std::vector<std::shared_ptr<Storage>> keep_;
  double est_ms_ = 0, att_ms_ = 0;
  int64_t total_ = 0;
  std::shared_ptr<Storage> indices_;
};

}  // namespace

Napi::Value prefill(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return js_guard(env, [&]() -> Napi::Value {
    const AttentionArgs in = read_attention_args(info);
    TensorWrap& qt = in.qt;
    PrefillArgs a;
    a.q = in.q;
    a.k = in.k;
    a.v = in.v;
    a.o = in.o;
    a.ep = read_estimate_params(arg(info, 4), a.q.d);
    a.ap = read_attention_params(arg(info, 5));
    if (a.ap.block != a.ep.block) throw_range("attention block must equal the estimation block");
    TensorWrap* lse = read_lse_out(env, arg(info, 5), a.q);
    std::vector<std::shared_ptr<Storage>> keep = in.storages();
    if (lse) {
      keep.push_back(lse->storage());
      a.o.lse = static_cast<float*>(lse->storage()->data());
    }
    a.device = common_device({&qt, &in.kt, &in.vt, &in.ot, lse});
    a.stream = read_stream(arg(info, 7), a.device);
    a.keys = read_key_summaries(env, arg(info, 8), a.k, a.ep, a.device, keep, "keys");
    Napi::Value out = arg(info, 6);
    if (!out.IsUndefined() && !out.IsNull()) {
      SelectionOut s = read_selection_out(env, out, a.q, a.k, a.ep.block);
      common_device({&qt, s.counts, s.row_ptr, s.temps, s.mask});
      s.keep_alive(keep);
      a.sel = s.outputs();
      a.row_ptr = s.row_ptr_data();
      a.want_selection = true;
    }
    auto* worker = new PrefillWorker(env, a, std::move(keep));
    return start_after_enqueue(worker, a.device);
  });
}

}  // namespace prism::binding

// Quality measures: attention-mass recall of a block selection and the norms
// behind the relative error of two outputs.
#include <utility>
#include <vector>

#include "binding/args.h"
#include "binding/block_list.h"
#include "binding/device.h"
#include "binding/errors.h"
#include "binding/ops.h"
#include "binding/params.h"
#include "binding/promise_worker.h"
#include "binding/views.h"
#include "cpu/cpu_backend.h"
#if PRISM_WITH_CUDA
#include "binding/cuda_sync.h"
#include "cuda/cuda_backend.h"
#endif

namespace prism::binding {

namespace {

class MassRecallWorker : public PromiseWorker {
 public:
  MassRecallWorker(Napi::Env env, int device, QkvView q, QkvView k, BlockList list,
                   AttentionParams p, std::vector<int64_t> rows,
                   std::vector<std::shared_ptr<Storage>> keep)
      : PromiseWorker(env, device),
        device_(device),
        q_(q),
        k_(k),
        list_(list),
        p_(p),
        rows_(std::move(rows)),
        keep_(std::move(keep)),
        recall_(rows_.size() / 3) {}

 protected:
  void run() override {
    int64_t n = static_cast<int64_t>(recall_.size());
    if (device_ == kCpuDevice) {
      prism::cpu::mass_recall(q_, k_, list_, p_, rows_.data(), n, recall_.data(), 0);
      return;
    }
#if PRISM_WITH_CUDA
    cudaStream_t s = use_device_stream(device_);
    drain_on_error(s, [&] {
      StreamBuffer rows(rows_.size() * sizeof(int64_t), s),
          recall(recall_.size() * sizeof(float), s);
      check_cuda(cudaMemcpyAsync(rows.get(), rows_.data(), rows_.size() * sizeof(int64_t),
                                 cudaMemcpyHostToDevice, s),
                 "cudaMemcpyAsync (rows)");
      check_cuda(
          prism::cuda::mass_recall(q_, k_, list_, p_, static_cast<const int64_t*>(rows.get()), n,
                                   static_cast<float*>(recall.get()), s),
          "massRecall");
      check_cuda(cudaMemcpyAsync(recall_.data(), recall.get(), recall_.size() * sizeof(float),
                                 cudaMemcpyDeviceToHost, s),
                 "cudaMemcpyAsync (recall)");
      wait_for_stream(s, "massRecall");
    });
#endif
  }

  Napi::Value result(Napi::Env env) override {
    Napi::Float32Array out = Napi::Float32Array::New(env, recall_.size());
    std::copy(recall_.begin(), recall_.end(), out.Data());
    return out;
  }

 private:
  int device_;
  QkvView q_, k_;
  BlockList list_;
  AttentionParams p_;
  std::vector<int64_t> rows_;
  std::vector<std::shared_ptr<Storage>> keep_;
  std::vector<float> recall_;
};

class DiffNormsWorker : public PromiseWorker {
 public:
  DiffNormsWorker(Napi::Env env, int device, QkvView a, QkvView b,
                  std::vector<std::shared_ptr<Storage>> keep)
      : PromiseWorker(env, device), device_(device), a_(a), b_(b), keep_(std::move(keep)) {}

 protected:
  void run() override {
    if (device_ == kCpuDevice) {
      prism::cpu::diff_norms(a_, b_, norms_, 0);
      return;
    }
#if PRISM_WITH_CUDA
    cudaStream_t s = use_device_stream(device_);
    drain_on_error(s, [&] {
      StreamBuffer out(2 * sizeof(double), s);
      StreamBuffer ws(prism::cuda::diff_norms_workspace_bytes(a_, b_), s);
      check_cuda(prism::cuda::diff_norms(a_, b_, static_cast<double*>(out.get()), ws.get(), s),
                 "diffNorms");
      check_cuda(cudaMemcpyAsync(norms_, out.get(), sizeof norms_, cudaMemcpyDeviceToHost, s),
                 "cudaMemcpyAsync (norms)");
      wait_for_stream(s, "diffNorms");
    });
#endif
  }

  Napi::Value result(Napi::Env env) override {
    Napi::Array out = Napi::Array::New(env, 2);
    out.Set(0u, Napi::Number::New(env, norms_[0]));
    out.Set(1u, Napi::Number::New(env, norms_[1]));
    return out;
  }

 private:
  int device_;
  QkvView a_, b_;
  std::vector<std::shared_ptr<Storage>> keep_;
  double norms_[2] = {0, 0};
};

std::vector<int64_t> read_rows(Napi::Value v, const QkvView& q) {
  if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != napi_bigint64_array)
    throw_type("rows must be a BigInt64Array of (batch, head, row) triples");
  Napi::TypedArrayOf<int64_t> a = v.As<Napi::TypedArrayOf<int64_t>>();
  if (a.ElementLength() == 0 || a.ElementLength() % 3 != 0)
    throw_range("rows must hold a non-zero number of (batch, head, row) triples");
  std::vector<int64_t> rows(a.Data(), a.Data() + a.ElementLength());
  for (size_t i = 0; i < rows.size(); i += 3) {
    if (rows[i] < 0 || rows[i] >= q.batch || rows[i + 1] < 0 || rows[i + 1] >= q.heads ||
        rows[i + 2] < 0 || rows[i + 2] >= q.n)
      throw_range("row " + std::to_string(i / 3) + " is outside [batch, heads, nq] = [" +
                  std::to_string(q.batch) + ", " + std::to_string(q.heads) + ", " +
                  std::to_string(q.n) + "]");
  }
  return rows;
}

}  // namespace

Napi::Value mass_recall(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return js_guard(env, [&]() -> Napi::Value {
    const QueryKeyArgs in = read_query_key(info);
    const QkvView& q = in.q;
    const QkvView& k = in.k;
    AttentionParams p = read_attention_params(arg(info, 3));
    BlockListArgs list = read_block_list(env, arg(info, 2), q, k, p.block);
    int device = common_device({&in.qt, &in.kt});
    for (const TensorWrap* t : list.tensors) common_device({&in.qt, t});
    std::vector<int64_t> rows = read_rows(arg(info, 4), q);
    std::vector<std::shared_ptr<Storage>> keep = in.storages();
    for (auto& s : list.storages) keep.push_back(s);
    return (new MassRecallWorker(env, device, q, k, list.list, p, std::move(rows), std::move(keep)))
        ->start();
  });
}

Napi::Value diff_norms(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return js_guard(env, [&]() -> Napi::Value {
    TensorWrap& at = TensorWrap::unwrap(env, arg(info, 0), "a");
    TensorWrap& bt = TensorWrap::unwrap(env, arg(info, 1), "b");
    QkvView a = input_view(at, "a");
    QkvView b = input_view(bt, "b");
    if (at.shape() != bt.shape())
      throw_range("a and b must have the same shape: " + shape_text(at.shape()) + " vs " +
                  shape_text(bt.shape()));
    int device = common_device({&at, &bt});
    return (new DiffNormsWorker(env, device, a, b, {at.storage(), bt.storage()}))->start();
  });
}

}  // namespace prism::binding

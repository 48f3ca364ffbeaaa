#include "binding/key_summaries.h"

#include <algorithm>
#include <chrono>
#include <string>

#include "binding/args.h"
#include "binding/device.h"
#include "binding/device_worker.h"
#include "binding/errors.h"
#include "binding/params.h"
#include "binding/streams.h"
#include "binding/tensor.h"
#include "binding/varlen.h"
#include "binding/views.h"
#include "cpu/cpu_backend.h"
#include "cpu/paged_gather.h"
#if PRISM_WITH_CUDA
#include "binding/cuda_sync.h"
#include "cuda/cuda_backend.h"
#endif

namespace prism::binding {

int64_t summary_row_floats(int device, int64_t head_dim, const EstimateParams& p) {
#if PRISM_WITH_CUDA
  if (device != kCpuDevice) return prism::cuda::key_summary_row_floats(head_dim, p);
#endif
  (void)device;
  (void)p;
  return prism::cpu::key_summary_row_floats(head_dim);
}

int64_t summary_energy_floats(int device) { return device == kCpuDevice ? 0 : 3; }

namespace {

// A float32 [batch, heads, >= min_rows, width] tensor in the default layout on `device`.
TensorWrap& summary_tensor(Napi::Env env, Napi::Value v, const std::string& what, int64_t batch,
                           int64_t heads, int64_t min_rows, int64_t width, int device) {
  TensorWrap& t = TensorWrap::unwrap(env, v, what.c_str());
  const std::vector<int64_t>& s = t.shape();
  const bool ok = t.dtype() == DType::F32 && t.layout() == Layout::BHND && s.size() == 4 &&
                  s[0] == batch && s[1] == heads && s[2] >= min_rows && s[3] == width &&
                  t.device() == device;
  if (!ok)
    throw_range(what + " must be float32 [" + std::to_string(batch) + ", " + std::to_string(heads) +
                ", >= " + std::to_string(min_rows) + ", " + std::to_string(width) +
                "] on the keys' device, got " + shape_text(s));
  return t;
}

// The summaries object's tensors, checked against [batch, heads] keys of head_dim d.
KeySummaries read_store(Napi::Env env, Napi::Object o, int64_t batch, int64_t heads, int64_t d,
                        int64_t min_rows, const EstimateParams& p, int device,
                        std::vector<std::shared_ptr<Storage>>& keep, const std::string& what) {
  KeySummaries s;
  TensorWrap& rows = summary_tensor(env, field(o, "rows"), what + ".rows", batch, heads, min_rows,
                                    summary_row_floats(device, d, p), device);
  keep.push_back(rows.storage());
  s.rows = rows.storage()->data();
  s.capacity = rows.shape()[2];
  const int64_t ef = summary_energy_floats(device);
  if (ef > 0) {
    TensorWrap& e = summary_tensor(env, field(o, "energies"), what + ".energies", batch, heads,
                                   s.capacity, ef, device);
    if (e.shape()[2] != s.capacity) throw_range(what + ".energies must have rows' capacity");
    keep.push_back(e.storage());
    s.energies = static_cast<float*>(e.storage()->data());
  }
  return s;
}

}  // namespace

KeySummaries read_key_summaries(Napi::Env env, Napi::Value v, const QkvView& k,
                                const EstimateParams& p, int device,
                                std::vector<std::shared_ptr<Storage>>& keep,
                                const std::string& what) {
  if (v.IsUndefined() || v.IsNull()) return {};
  Napi::Object o = get_object(v, what);
  const int64_t full = k.n / p.block;
  const int64_t blocks = get_integer(field(o, "blocks"), what + ".blocks", 0, full);
  const Napi::Value av = o.Get("append");
  const bool append = !av.IsUndefined() && get_bool(av, what + ".append");
  // appending writes rows [blocks, full): the tensors must hold them
  KeySummaries s =
      read_store(env, o, k.batch, k.heads, k.d, append ? full : blocks, p, device, keep, what);
  s.blocks = blocks;
  s.append = append;
  return s;
}

Napi::Value key_summary_layout(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return js_guard(env, [&]() -> Napi::Value {
    const int device = get_device(arg(info, 0));
    const int64_t d = get_integer(arg(info, 1), "headDim", 2, 1 << 20);
    const EstimateParams p = read_estimate_params(arg(info, 2), d);
    Napi::Object r = Napi::Object::New(env);
    r.Set("rowFloats",
          Napi::Number::New(env, static_cast<double>(summary_row_floats(device, d, p))));
    r.Set("energyFloats",
          Napi::Number::New(env, static_cast<double>(summary_energy_floats(device))));
    return r;
  });
}

namespace {

// Blocks [from, to) of one set of summaries, and where their keys are.
struct SummaryJob {
  KeySummaries out;
  int64_t from = 0, to = 0;
  QkvView k;               // keys of blocks [from, to) (paged: shape only)
  int64_t gather_off = 0;  // paged, CPU: first page entry (into spec.pages) to gather
  int64_t gather_n = 0;    // paged, CPU: tokens gathered from there
  int64_t skip = 0;        // paged, CPU: tokens of the gathered buffer before block `from`
  int64_t page_off = 0;    // paged: the sequence's first page entry (into spec.pages)
};

struct SummarizeArgs {
  int device = kCpuDevice;
  uint64_t stream = 0;
  EstimateParams p;
  QkvView pool;  // paged: the key pages
  VarlenSpec spec;
  std::vector<SummaryJob> jobs;
  int64_t max_gather = 0;  // paged, CPU: most tokens one job gathers
};

// k's tokens [t0, t0 + n) in every batch entry.
QkvView token_range(const QkvView& k, int64_t t0, int64_t n) {
  QkvView v = k;
  v.n = n;
  v.data = static_cast<const char*>(k.data) + t0 * k.stride_n * dtype_size(k.dtype);
  return v;
}

class SummarizeWorker : public DeviceWorker {
 public:
  SummarizeWorker(Napi::Env env, SummarizeArgs a, std::vector<std::shared_ptr<Storage>> keep)
      : DeviceWorker(env, a.device), a_(std::move(a)), keep_(std::move(keep)) {}

 protected:
  Napi::Value result(Napi::Env env) override { return Napi::Number::New(env, ms_); }

 private:
  size_t gather_bytes() const {
    return static_cast<size_t>(a_.pool.heads * a_.max_gather * a_.pool.d *
                               dtype_size(a_.pool.dtype));
  }

  // The gathered keys of a paged job in `buf`, from block `from` on.
  QkvView gathered(const SummaryJob& j, const void* buf) const {
    const QkvView all = contiguous_view(buf, a_.pool.dtype, a_.pool.heads, j.gather_n, a_.pool.d);
    return token_slice(all, j.skip, j.gather_n - j.skip);
  }

  void run_cpu() override {
    const auto t0 = std::chrono::steady_clock::now();
    std::vector<char> buf(a_.spec.paged ? gather_bytes() : 0);
    for (const SummaryJob& j : a_.jobs) {
      if (j.to <= j.from) continue;
      QkvView k = j.k;
      if (a_.spec.paged) {
        prism::cpu::gather_pages(a_.pool, a_.spec.pages.data() + j.gather_off, j.gather_n,
                                 buf.data());
        k = gathered(j, buf.data());
      }
      prism::cpu::summarize_keys(k, a_.p, j.to - j.from, j.out, j.from, 0);
    }
    ms_ = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  }

#if PRISM_WITH_CUDA

 public:
  // Calling thread: enqueues every job on one stream; run_gpu() waits.
  void enqueue_gpu() {
    enqueue_or_defer(a_.device, a_.stream, stream_, [&] { enqueue_all(); });
  }

 private:
  void enqueue_all() {
    // Paged keys are pooled in place, through the page table on the device.
    const bool paged = a_.spec.paged;
    const size_t table = paged ? align256(sizeof(int32_t) * (a_.spec.pages.size() + 1)) : 0;
    scratch_ = std::make_unique<StreamBuffer>(table + 256, stream_);
    int32_t* pages = static_cast<int32_t*>(scratch_->get());
    for (auto& e : events_) e = std::make_unique<CudaEvent>(cudaEventDefault);
    check_cuda(cudaEventRecord(events_[0]->get(), stream_), "cudaEventRecord");
    if (paged && !a_.spec.pages.empty())
      copy_to_device_async(pages, a_.spec.pages.data(), sizeof(int32_t) * a_.spec.pages.size(),
                           stream_, table_staging_, "cudaMemcpyAsync (page table)");
    for (const SummaryJob& j : a_.jobs) {
      if (j.to <= j.from) continue;
      if (paged) {
        prism::KvPages pg;
        pg.ids = pages + j.page_off;
        pg.tokens = j.to * a_.p.block;
        pg.page_size = static_cast<int32_t>(a_.spec.page_size);
        check_cuda(
            prism::cuda::summarize_keys(a_.pool, a_.p, j.to - j.from, j.out, j.from, stream_, &pg),
            "summarizeKeys");
        continue;
      }
      check_cuda(prism::cuda::summarize_keys(j.k, a_.p, j.to - j.from, j.out, j.from, stream_),
                 "summarizeKeys");
    }
    check_cuda(cudaEventRecord(events_[1]->get(), stream_), "cudaEventRecord");
  }

  void run_gpu() override {
    use_device(a_.device);
    drain_on_error(stream_, [&] {
      wait_for_stream(stream_, "summarizeKeys");
      ms_ = elapsed_ms(*events_[0], *events_[1]);
    });
  }

  cudaStream_t stream_ = nullptr;
  std::unique_ptr<StreamBuffer> scratch_;
  std::unique_ptr<PinnedBuffer> table_staging_;  // the page table's copy reads it
  std::unique_ptr<CudaEvent> events_[2];
#endif

  SummarizeArgs a_;
  std::vector<std::shared_ptr<Storage>> keep_;
  double ms_ = 0;
};

}  // namespace

Napi::Value summarize_keys(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return js_guard(env, [&]() -> Napi::Value {
    TensorWrap& kt = TensorWrap::unwrap(env, arg(info, 0), "k");
    const QkvView k = input_view(kt, "k");
    SummarizeArgs a;
    a.device = kt.device();
    a.p = read_estimate_params(arg(info, 1), k.d);
    const int64_t block = a.p.block;
    std::vector<std::shared_ptr<Storage>> keep{kt.storage()};
    Napi::Value jv = arg(info, 2);
    if (!jv.IsArray()) throw_type("jobs must be an array");
    Napi::Array jobs = jv.As<Napi::Array>();
    Napi::Value sv = arg(info, 3);
    const bool varlen = !sv.IsUndefined() && !sv.IsNull();
    std::vector<SeqSpan> seqs;
    if (varlen) {
      QkvView none;  // no queries
      none.batch = 1;
      a.spec = read_varlen_spec(sv, none, k);
      seqs = a.spec.seqs;
    } else {
      seqs.push_back(SeqSpan{0, 0, 0, k.n, 0});  // one job over k
    }
    if (jobs.Length() != seqs.size())
      throw_range("jobs must have " + std::to_string(seqs.size()) + " entries, got " +
                  std::to_string(jobs.Length()));
    a.pool = k;
    const int64_t batch = varlen ? 1 : k.batch;
    for (size_t i = 0; i < seqs.size(); ++i) {
      Napi::Value jo = jobs.Get(static_cast<uint32_t>(i));
      if (jo.IsUndefined() || jo.IsNull()) continue;
      const std::string what = "jobs[" + std::to_string(i) + "]";
      Napi::Object o = get_object(jo, what);
      const SeqSpan& s = seqs[i];
      SummaryJob j;
      j.to = get_integer(field(o, "to"), what + ".to", 0, s.nk / block);
      j.from = get_integer(field(o, "from"), what + ".from", 0, j.to);
      j.out = read_store(env, o, batch, k.heads, k.d, j.to, a.p, a.device, keep, what);
      const int64_t t0 = j.from * block, n = (j.to - j.from) * block;
      if (!varlen) {
        j.k = token_range(k, t0, n);
      } else if (!a.spec.paged) {
        j.k = token_slice(k, s.k_off + t0, n);
      } else {
        const int64_t ps = a.spec.page_size, p0 = t0 / ps;
        j.page_off = s.page_off;
        j.gather_off = s.page_off + p0;
        j.gather_n = j.to * block - p0 * ps;
        j.skip = t0 - p0 * ps;
        a.max_gather = std::max(a.max_gather, j.gather_n);
      }
      a.jobs.push_back(j);
    }
    a.stream = read_stream(arg(info, 4), a.device);
    [[maybe_unused]] const int device = a.device;
    auto* worker = new SummarizeWorker(env, std::move(a), std::move(keep));
    return start_after_enqueue(worker, device);
  });
}

}  // namespace prism::binding

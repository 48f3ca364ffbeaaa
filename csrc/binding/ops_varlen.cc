// varlen(q, k, v | null, out | null, spec, estimateParams | null, attentionParams | null,
//        selections | null, lists | null, stream?, keys?: (summaries | null)[])
//   -> Promise<{ estimateMs, attentionMs, selected: number[], indices: (Tensor | null)[] }>
// Ragged batches and paged KV caches (varlen.h): estimation, attention, or
// both (prefill), run with the existing per-view backends on views offset into
// the packed tensors. Paged keys and values: on CUDA the attention reads pages
// of 64 keys and more in place through the page table (prism::KvPages) and
// gathers smaller ones into its workspace first (one per lane; a lane's only
// sequence gathers them before its estimation, which then reads them there
// too); otherwise the estimation reads pages of every size in place (a
// block's page looked up once, or each row's where pages are smaller than a
// block); on the CPU each sequence's keys and values are gathered first.
//   CPU: a loop over the sequences on the worker thread.
//   CUDA: the calling thread enqueues the work with no host wait: first every
//   sequence's estimation, then every sequence's attention (the first phase's
//   time is estimateMs, the second's attentionMs). Within a phase, short
//   sequences run on up to four streams side by side (StreamLanes, forked
//   from the op's stream and joined back to it; workspaces reused in each
//   lane's stream order; plan_lanes in varlen.h says which), the others one after the
//   other on the op's stream. A worker thread waits once, then, when the selections are asked
//   for, gathers them all into compact indices (one allocation, one launch)
//   after a second, short wait.
// The selection of sequence i goes to selections[i] ({ counts, rowPtr, temps,
// mask? } for its [1, Hq, nq_i, nk_i] geometry); attention alone reads
// lists[i] (null: dense). lse (attention params) is float32 [1, Hq, totalQ, 1].
#include <algorithm>
#include <chrono>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "binding/args.h"
#include "binding/block_list.h"
#include "binding/device.h"
#include "binding/device_worker.h"
#include "binding/errors.h"
#include "binding/ops.h"
#include "binding/promise_worker.h"
#include "binding/selection.h"
#include "binding/streams.h"
#include "binding/tuning.h"
#include "binding/varlen.h"
#include "binding/views.h"
#include "cpu/cpu_backend.h"
#include "cpu/paged_gather.h"
#if PRISM_WITH_CUDA
#include "binding/cuda_sync.h"
#include "cuda/cuda_backend.h"
#include "cuda/paged/paged_gather.h"
#endif

namespace prism::binding {
namespace {

class VarlenWorker : public DeviceWorker {
 public:
  VarlenWorker(Napi::Env env, VarlenArgs a, std::vector<std::shared_ptr<Storage>> keep)
      : DeviceWorker(env, a.device),
        a_(std::move(a)),
        keep_(std::move(keep)),
        totals_(a_.seqs.size(), 0),
        indices_(a_.seqs.size()) {}

 protected:
  Napi::Value result(Napi::Env env) override {
    Napi::Object r = phase_times(env, est_ms_, att_ms_);
    Napi::Array selected = Napi::Array::New(env, totals_.size());
    Napi::Array indices = Napi::Array::New(env, totals_.size());
    for (size_t i = 0; i < totals_.size(); ++i) {
      const uint32_t at = static_cast<uint32_t>(i);
      selected.Set(at, Napi::Number::New(env, static_cast<double>(totals_[i])));
      if (indices_[i])
        indices.Set(
            at, TensorWrap::adopt(env, indices_[i], DType::I32, {totals_[i] > 0 ? totals_[i] : 1}));
      else
        indices.Set(at, env.Null());
    }
    r.Set("selected", selected);
    r.Set("indices", indices);
    return r;
  }

 private:
  // Bytes of one key's (or value's) rows over the kv heads, and of nk of them.
  int64_t kv_token_bytes() const { return a_.hkv * a_.d * dtype_size(a_.dtype); }
  size_t kv_bytes(int64_t nk) const { return static_cast<size_t>(nk * kv_token_bytes()); }

  // Sequence s's output, with its lse rows [Hq, nq] written straight into the
  // packed [1, Hq, totalQ].
  OutView out_of(const SeqWork& s) const {
    OutView out = s.o;
    if (a_.lse) {
      out.lse = a_.lse + s.span.q_off;
      out.lse_stride = a_.total_q;
    }
    return out;
  }

  void run_cpu() override {
    using clock = std::chrono::steady_clock;
    const bool paged = a_.spec.paged;
    // Not zero-filled: each sequence's gather writes what it reads.
    std::unique_ptr<char[]> kbuf(paged ? new char[kv_bytes(a_.spec.max_nk)] : nullptr);
    std::unique_ptr<char[]> vbuf(paged && a_.attention ? new char[kv_bytes(a_.spec.max_nk)]
                                                       : nullptr);
    for (size_t i = 0; i < a_.seqs.size(); ++i) {
      SeqWork& s = a_.seqs[i];
      if (s.span.nq == 0) continue;
      const auto t0 = clock::now();
      QkvView k = s.k, v = s.v;
      if (paged) {
        const int32_t* pages = a_.spec.pages.data() + s.span.page_off;
        prism::cpu::gather_pages(a_.k_pool, pages, s.span.nk, kbuf.get());
        k = contiguous_view(kbuf.get(), a_.dtype, a_.hkv, s.span.nk, a_.d);
        if (a_.attention) {
          prism::cpu::gather_pages(a_.v_pool, pages, s.span.nk, vbuf.get());
          v = contiguous_view(vbuf.get(), a_.dtype, a_.hkv, s.span.nk, a_.d);
        }
      }
      BlockList list = s.list;
      std::vector<int32_t> counts, tri;
      std::vector<float> temps;
      std::vector<int64_t> row_ptr;
      BlockMaskOut o = s.sel;
      if (a_.estimate) {
        tri.resize(static_cast<size_t>(s.tri > 0 ? s.tri : 1));
        if (!o.counts) {
          counts.resize(static_cast<size_t>(s.rows));
          o.counts = counts.data();
        }
        if (!o.temps) {
          temps.resize(static_cast<size_t>(2 * a_.heads));
          o.temps = temps.data();
        }
        o.indices = tri.data();
        prism::cpu::estimate(s.q, k, a_.ep, o, 0, &s.keys);
        if (a_.attention) list = BlockList{o.counts, nullptr, tri.data(), s.tri, true};
      }
      const auto t1 = clock::now();
      if (a_.attention) {
        prism::cpu::attention(s.q, k, v, out_of(s), list, a_.ap, 0);
      }
      const auto t2 = clock::now();
      est_ms_ += std::chrono::duration<double, std::milli>(t1 - t0).count();
      att_ms_ += std::chrono::duration<double, std::milli>(t2 - t1).count();
      if (a_.estimate) {
        int64_t* rp = s.row_ptr;
        if (!rp) {
          row_ptr.resize(static_cast<size_t>(s.rows + 1));
          rp = row_ptr.data();
        }
        totals_[i] = prism::cpu::scan_counts(o.counts, s.rows, rp);
        if (a_.want_selection) {
          indices_[i] = Storage::allocate(kCpuDevice, indices_bytes(totals_[i]));
          prism::cpu::gather_selection(o.counts, tri.data(), s.rows, s.grid.nq, s.grid.off, rp,
                                       static_cast<int32_t*>(indices_[i]->data()));
        }
      }
    }
  }

#if PRISM_WITH_CUDA

 public:
  // Calling thread: enqueues every sequence (see the file comment).
  void enqueue_gpu() {
    enqueue_or_defer(a_.device, a_.stream, stream_, [&] { enqueue_all(); });
  }

 private:
  // plan_lanes (varlen.h) for this call.
  size_t assign_lanes() {
    std::vector<SeqSpan> spans;
    spans.reserve(a_.seqs.size());
    for (const SeqWork& s : a_.seqs) spans.push_back(s.span);
    // Gathered: the attention's keys and values when its pages are small
    // (the estimation reads pages of every size in place).
    int64_t copies = 0;
    if (a_.spec.paged && a_.attention &&
        prism::cuda::attention_gathers_pages(static_cast<int>(a_.spec.page_size)))
      copies = 2;
    const int64_t kv_token = copies * kv_token_bytes();
    LanePlan plan = plan_lanes(spans, a_.heads, kv_token, varlen_max_lanes());
    lane_ = std::move(plan.lane);
    return plan.lanes;
  }

  // Sequence s's pages for the kernels that read them in place (dev_pages: the
  // page table on the device; null while only sizing the workspace).
  prism::KvPages kv_pages(const SeqWork& s, const int32_t* dev_pages) const {
    prism::KvPages pg;
    pg.ids = dev_pages != nullptr ? dev_pages + s.span.page_off : nullptr;
    pg.tokens = s.span.nk;
    pg.page_size = static_cast<int32_t>(a_.spec.page_size);
    pg.last_id =
        s.span.nk > 0 ? a_.spec.pages[s.span.page_off + (s.span.nk - 1) / a_.spec.page_size] : -1;
    return pg;
  }

  // A sequence's own workspace parts (bytes, 256-aligned; 0 where the caller's
  // buffers hold it): its triangular selection, counts, row pointers, temperatures.
  struct SeqParts {
    size_t tri, counts, row_ptr, temps;
    size_t total() const { return tri + counts + row_ptr + temps; }
  };
  SeqParts parts_of(const SeqWork& s) const {
    return {align256(sizeof(int32_t) * static_cast<size_t>(s.tri > 0 ? s.tri : 1)),
            s.sel.counts ? 0 : align256(sizeof(int32_t) * s.rows),
            s.row_ptr ? 0 : align256(sizeof(int64_t) * (s.rows + 1)),
            s.sel.temps ? 0 : align256(sizeof(float) * 2 * a_.heads)};
  }

  void enqueue_all() {
    const bool paged = a_.spec.paged;
    const size_t n = a_.seqs.size();
    const size_t nl = assign_lanes();
    // Workspaces: one set a lane, reused in its stream order, sized for the
    // lane's largest sequence; each sequence's own parts (tri | counts |
    // rowPtr | temps) apart.
    struct LaneSizes {
      size_t est = 0, att = 0, k = 0, v = 0;
    };
    std::vector<LaneSizes> ls(nl);
    // Small pages (gathered for the attention too): a lane's only sequence
    // gathers its values with its keys for the estimation, and its attention
    // reads both from there (one copy of K, not two).
    std::vector<size_t> lane_seqs(nl, 0);
    for (size_t i = 0; i < n; ++i)
      if (a_.seqs[i].span.nq > 0) ++lane_seqs[lane_[i]];
    const bool small_pages =
        paged && prism::cuda::attention_gathers_pages(static_cast<int>(a_.spec.page_size));
    auto kv_early = [&](size_t i) {
      return small_pages && a_.estimate && a_.attention && lane_seqs[lane_[i]] == 1;
    };
    int64_t scan_chunks = 0;  // every estimated sequence's counts, scanned in two launches
    size_t scan_sets = 0;
    size_t own = 0;    // every sequence's own parts
    BlockList sparse;  // only its being sparse matters to the workspace size
    sparse.counts = reinterpret_cast<const int32_t*>(1);
    sparse.indices = reinterpret_cast<const int32_t*>(1);
    sparse.triangular = true;
    for (size_t i = 0; i < n; ++i) {
      const SeqWork& s = a_.seqs[i];
      if (s.span.nq == 0) continue;
      LaneSizes& l = ls[lane_[i]];
      if (a_.estimate) {
        l.est = std::max(l.est, align256(prism::cuda::estimate_workspace_bytes(s.q, s.k, a_.ep)));
        scan_chunks += prism::cuda::scan_chunks(s.rows);
        ++scan_sets;
        own += parts_of(s).total();
      }
      if (a_.attention) {
        const BlockList& bl = a_.estimate ? sparse : s.list;
        const bool in_pages = paged && !kv_early(i);
        const prism::KvPages pg = in_pages ? kv_pages(s, nullptr) : prism::KvPages{};
        l.att = std::max(
            l.att, align256(prism::cuda::attention_workspace_bytes(
                       s.q, in_pages ? a_.k_pool : s.k, bl, a_.ap, in_pages ? &pg : nullptr)));
      }
      if (kv_early(i)) {
        l.k = std::max(l.k, align256(kv_bytes(s.span.nk)));
        l.v = std::max(l.v, align256(kv_bytes(s.span.nk)));
      }
    }
    const size_t table = paged ? align256(sizeof(int32_t) * (a_.spec.pages.size() + 1)) : 0;
    const size_t gather_b =
        a_.want_selection ? align256(sizeof(prism::cuda::GatherSegment) * scan_sets) : 0;
    const size_t scan_b = align256(sizeof(prism::cuda::ScanSegment) * scan_sets) +
                          align256(sizeof(int64_t) * scan_chunks) +
                          align256(sizeof(int64_t) * scan_sets) + gather_b;
    size_t total = scan_b + table;
    for (const LaneSizes& l : ls) total += l.est + l.att + l.k + l.v;
    total += own;
    scratch_ = std::make_unique<StreamBuffer>(total, stream_);
    char* p = static_cast<char*>(scratch_->get());
    char* const end = p + total;
    auto take = [&p, end](size_t bytes) {
      if (bytes > static_cast<size_t>(end - p))
        throw std::logic_error("varlen: workspace carving overran its size (a bug)");
      char* r = p;
      p += bytes;
      return r;
    };
    struct Lane {
      void *est, *att, *kbuf, *vbuf;
    };
    std::vector<Lane> lanes(nl);
    for (size_t l = 0; l < nl; ++l) {
      lanes[l].est = take(ls[l].est);
      lanes[l].att = take(ls[l].att);
      lanes[l].kbuf = take(ls[l].k);
      lanes[l].vbuf = take(ls[l].v);
    }
    auto* scan_sets_dev = reinterpret_cast<prism::cuda::ScanSegment*>(
        take(align256(sizeof(prism::cuda::ScanSegment) * scan_sets)));
    auto* scan_ws = reinterpret_cast<int64_t*>(take(align256(sizeof(int64_t) * scan_chunks)));
    auto* totals_dev = reinterpret_cast<int64_t*>(take(align256(sizeof(int64_t) * scan_sets)));
    gather_sets_dev_ = reinterpret_cast<prism::cuda::GatherSegment*>(take(gather_b));
    int32_t* pages = reinterpret_cast<int32_t*>(take(table));
    if (paged && !a_.spec.pages.empty())
      copy_to_device_async(pages, a_.spec.pages.data(), sizeof(int32_t) * a_.spec.pages.size(),
                           stream_, table_staging_, "cudaMemcpyAsync (page table)");

    // Sequence i's keys and values gathered into its lane's buffers.
    auto gather = [&](SeqWork& s, Lane& l, cudaStream_t on) {
      const int32_t* sp = pages + s.span.page_off;
      check_cuda(
          prism::cuda::gather_pages(a_.k_pool, &a_.v_pool, sp, s.span.nk, l.kbuf, l.vbuf, on),
          "varlen (gather keys and values)");
      return contiguous_view(l.kbuf, a_.dtype, a_.hkv, s.span.nk, a_.d);
    };
    tri_.assign(n, nullptr);
    counts_.assign(n, nullptr);
    rp_.assign(n, nullptr);
    for (auto& e : events_) e.reset();
    events_.clear();
    for (size_t e = 0; e < 3; ++e) events_.push_back(std::make_unique<CudaEvent>(cudaEventDefault));
    StreamLanes run(a_.device, stream_, nl);
    check_cuda(cudaEventRecord(events_[0]->get(), stream_), "cudaEventRecord");
    // body(i, sequence, its lane's buffers, its lane's stream) for every
    // sequence with queries, between a fork and a join of the lanes.
    auto phase = [&](auto&& body) {
      run.fork();
      for (size_t i = 0; i < n; ++i)
        if (a_.seqs[i].span.nq > 0) body(i, a_.seqs[i], lanes[lane_[i]], run[lane_[i]]);
      run.join();
    };
    // Phase 1: every sequence's estimation (a lane's only sequence with small
    // pages gathers its keys and values first).
    if (a_.estimate) {
      phase([&](size_t i, SeqWork& s, Lane& l, cudaStream_t on) {
        // The estimation reads the pages in place, unless the sequence's
        // values come with its keys.
        const QkvView k = kv_early(i) ? gather(s, l, on) : s.k;
        const bool in_pages = paged && !kv_early(i);
        const prism::KvPages pg = in_pages ? kv_pages(s, pages) : prism::KvPages{};
        BlockMaskOut o = s.sel;
        const SeqParts parts = parts_of(s);
        tri_[i] = reinterpret_cast<int32_t*>(take(parts.tri));
        if (!o.counts) o.counts = reinterpret_cast<int32_t*>(take(parts.counts));
        rp_[i] = s.row_ptr ? s.row_ptr : reinterpret_cast<int64_t*>(take(parts.row_ptr));
        if (!o.temps) o.temps = reinterpret_cast<float*>(take(parts.temps));
        o.indices = tri_[i];
        counts_[i] = o.counts;
        check_cuda(prism::cuda::estimate(s.q, in_pages ? a_.k_pool : k, a_.ep, o, l.est, on,
                                         &s.keys, in_pages ? &pg : nullptr),
                   "varlen (estimate)");
      });
    }
    check_cuda(cudaEventRecord(events_[1]->get(), stream_), "cudaEventRecord");
    // Phase 2: every sequence's attention over its selection (or its list).
    if (a_.attention) {
      phase([&](size_t i, SeqWork& s, Lane& l, cudaStream_t on) {
        const BlockList list =
            a_.estimate ? BlockList{counts_[i], nullptr, tri_[i], s.tri, true} : s.list;
        if (kv_early(i)) {
          const QkvView k = contiguous_view(l.kbuf, a_.dtype, a_.hkv, s.span.nk, a_.d);
          const QkvView v = contiguous_view(l.vbuf, a_.dtype, a_.hkv, s.span.nk, a_.d);
          check_cuda(prism::cuda::attention(s.q, k, v, out_of(s), list, a_.ap, l.att, on),
                     "varlen (attention)");
        } else if (paged) {
          const prism::KvPages pg = kv_pages(s, pages);
          check_cuda(prism::cuda::attention(s.q, a_.k_pool, a_.v_pool, out_of(s), list, a_.ap,
                                            l.att, on, &pg),
                     "varlen (attention)");
        } else {
          check_cuda(prism::cuda::attention(s.q, s.k, s.v, out_of(s), list, a_.ap, l.att, on),
                     "varlen (attention)");
        }
      });
    }
    check_cuda(cudaEventRecord(events_[2]->get(), stream_), "cudaEventRecord");
    if (!a_.estimate || scan_sets == 0) return;
    // Every sequence's row pointers and selection size in two launches and
    // one copy back, not three calls a sequence.
    std::vector<prism::cuda::ScanSegment> sets;
    int64_t chunk0 = 0;
    for (size_t i = 0; i < n; ++i) {
      const SeqWork& s = a_.seqs[i];
      if (s.span.nq == 0) continue;
      sets.push_back({counts_[i], rp_[i], s.rows, chunk0});
      chunk0 += prism::cuda::scan_chunks(s.rows);
    }
    copy_to_device_async(scan_sets_dev, sets.data(), sizeof(sets[0]) * sets.size(), stream_,
                         scan_staging_, "cudaMemcpyAsync (scan table)");
    check_cuda(prism::cuda::scan_segments(scan_sets_dev, static_cast<int>(sets.size()), chunk0,
                                          scan_ws, totals_dev, stream_),
               "varlen (count)");
    totals_host_ = std::make_unique<PinnedBuffer>(sizeof(int64_t) * sets.size());
    check_cuda(cudaMemcpyAsync(totals_host_->get(), totals_dev, sizeof(int64_t) * sets.size(),
                               cudaMemcpyDeviceToHost, stream_),
               "cudaMemcpyAsync (selection sizes)");
  }

  // Worker thread: the one wait, the times, and the selections when asked for.
  void run_gpu() override {
    use_device(a_.device);
    drain_on_error(stream_, [&] {
      wait_for_stream(stream_, "varlen");
      est_ms_ = elapsed_ms(*events_[0], *events_[1]);
      att_ms_ = elapsed_ms(*events_[1], *events_[2]);
      if (a_.estimate) {
        const auto* sizes =
            static_cast<const int64_t*>(totals_host_ ? totals_host_->get() : nullptr);
        for (size_t i = 0, k = 0; i < a_.seqs.size(); ++i)
          if (a_.seqs[i].span.nq > 0) totals_[i] = sizes[k++];
      }
      if (!a_.want_selection) return;
      gather_selections();
      wait_for_stream(stream_, "varlen");
    });
    scratch_->mark_done();  // every use of it was waited for above
  }

  // Worker thread: every estimated sequence's compact indices, slices of one
  // allocation, gathered in one launch.
  void gather_selections() {
    std::vector<size_t> at(a_.seqs.size(), 0);
    size_t bytes = 0;
    for (size_t i = 0; i < a_.seqs.size(); ++i)
      if (a_.seqs[i].span.nq > 0) {
        at[i] = bytes;
        bytes += align256(indices_bytes(totals_[i]));
      }
    if (bytes == 0) return;
    std::shared_ptr<Storage> all = Storage::allocate(a_.device, bytes);
    std::vector<prism::cuda::GatherSegment> sets;
    int64_t units = 0;
    for (size_t i = 0; i < a_.seqs.size(); ++i) {
      const SeqWork& s = a_.seqs[i];
      if (s.span.nq == 0) continue;
      indices_[i] = Storage::slice(all, at[i], indices_bytes(totals_[i]));
      sets.push_back({counts_[i], tri_[i], rp_[i], static_cast<int32_t*>(indices_[i]->data()),
                      s.rows, s.grid.nq, s.grid.off, units});
      units += prism::cuda::gather_units(s.rows);
    }
    stream_ = op_stream(a_.device, a_.stream);  // after the allocation on the device's stream
    copy_to_device_async(gather_sets_dev_, sets.data(), sizeof(sets[0]) * sets.size(), stream_,
                         gather_staging_, "cudaMemcpyAsync (gather table)");
    check_cuda(prism::cuda::gather_segments(gather_sets_dev_, static_cast<int>(sets.size()), units,
                                            stream_),
               "varlen (gather)");
  }

  cudaStream_t stream_ = nullptr;
  std::unique_ptr<StreamBuffer> scratch_;
  prism::cuda::GatherSegment* gather_sets_dev_ = nullptr;  // in scratch_, with want_selection
  std::unique_ptr<PinnedBuffer> gather_staging_;           // the gather table's copy reads it
  std::unique_ptr<PinnedBuffer> table_staging_;            // the page table's copy reads it
  std::vector<std::unique_ptr<CudaEvent>> events_;
  std::unique_ptr<PinnedBuffer> scan_staging_;  // the scan table's copy reads it
  std::unique_ptr<PinnedBuffer> totals_host_;   // each estimated sequence's selection size
  std::vector<int32_t*> tri_, counts_;
  std::vector<int64_t*> rp_;
  std::vector<size_t> lane_;  // each sequence's lane (assign_lanes)
#endif

  VarlenArgs a_;
  std::vector<std::shared_ptr<Storage>> keep_;
  double est_ms_ = 0, att_ms_ = 0;
  std::vector<int64_t> totals_;
  std::vector<std::shared_ptr<Storage>> indices_;
};

}  // namespace

Napi::Value varlen(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return js_guard(env, [&]() -> Napi::Value {
    std::vector<std::shared_ptr<Storage>> keep;
    VarlenArgs a = read_varlen_args(info, keep);
    [[maybe_unused]] const int device = a.device;
    auto* worker = new VarlenWorker(env, std::move(a), std::move(keep));
    return start_after_enqueue(worker, device);
  });
}

}  // namespace prism::binding

#include "binding/varlen.h"

#include <algorithm>

#include <string>

#include "binding/args.h"
#include "binding/block_list.h"
#include "binding/device.h"
#include "binding/errors.h"
#include "binding/key_summaries.h"
#include "binding/params.h"
#include "binding/selection.h"
#include "binding/streams.h"
#include "binding/views.h"

namespace prism::binding {

namespace {

std::string seq_name(size_t i) { return "sequence " + std::to_string(i); }

// Entry i of `list` (an array of batch entries) or undefined when `list` is null.
Napi::Value entry(Napi::Value list, size_t i, size_t batch, const char* what) {
  if (list.IsUndefined() || list.IsNull()) return list;
  if (!list.IsArray()) throw_type(std::string(what) + " must be an array (one entry per sequence)");
  Napi::Array a = list.As<Napi::Array>();
  if (a.Length() != batch)
    throw_range(std::string(what) + " must have " + std::to_string(batch) + " entries, got " +
                std::to_string(a.Length()));
  return a.Get(static_cast<uint32_t>(i));
}

}  // namespace

VarlenSpec read_varlen_spec(Napi::Value spec_value, const QkvView& q, const QkvView& k) {
  Napi::Object spec = get_object(spec_value, "spec");
  // Every field is read before any typed array's memory is taken: a getter
  // run later could detach a buffer read earlier.
  Napi::Value sv = field(spec, "seqs");
  Napi::Value pt = spec.Get("pageTable");
  const bool paged = !pt.IsUndefined() && !pt.IsNull();
  Napi::Value max_pages_value = paged ? spec.Get("maxPages") : Napi::Value();
  if (!sv.IsTypedArray() || sv.As<Napi::TypedArray>().TypedArrayType() != napi_bigint64_array)
    throw_type("spec.seqs must be a BigInt64Array of (qOffset, nq, kOffset, nk)");
  Napi::TypedArrayOf<int64_t> a = sv.As<Napi::TypedArrayOf<int64_t>>();
  const size_t len = a.ElementLength();
  if (len == 0 || len % 4 != 0)
    throw_range("spec.seqs must hold 4 entries per sequence, got " + std::to_string(len));
  if (q.batch != 1)
    throw_range("packed q must have batch 1 ([1, Hq, totalQ, d]), got batch " +
                std::to_string(q.batch));
  VarlenSpec s;
  s.paged = paged;
  if (!s.paged && k.batch != 1)
    throw_range("packed k must have batch 1 ([1, Hkv, totalK, d]), got batch " +
                std::to_string(k.batch));
  const size_t batch = len / 4;
  s.seqs.resize(batch);
  const int32_t* table = nullptr;
  int64_t max_pages = 0;
  if (s.paged) {
    if (!pt.IsTypedArray() || pt.As<Napi::TypedArray>().TypedArrayType() != napi_int32_array)
      throw_type("spec.pageTable must be an Int32Array");
    Napi::TypedArrayOf<int32_t> t = pt.As<Napi::TypedArrayOf<int32_t>>();
    max_pages = get_integer(max_pages_value, "spec.maxPages", 0, int64_t(1) << 31);
    if (static_cast<int64_t>(t.ElementLength()) != static_cast<int64_t>(batch) * max_pages)
      throw_range("spec.pageTable must have batch * maxPages = " +
                  std::to_string(static_cast<int64_t>(batch) * max_pages) + " entries, got " +
                  std::to_string(t.ElementLength()));
    table = t.Data();
    s.page_size = k.n;
  }
  int64_t q_end = 0;  // where the queries of the sequences before end
  for (size_t i = 0; i < batch; ++i) {
    SeqSpan& x = s.seqs[i];
    x.q_off = a[4 * i];
    x.nq = a[4 * i + 1];
    x.k_off = a[4 * i + 2];
    x.nk = a[4 * i + 3];
    if (x.q_off < 0 || x.nq < 0 || x.nk < 0 || x.k_off < 0 || x.q_off > q.n - x.nq)
      throw_range(seq_name(i) + ": queries [" + std::to_string(x.q_off) + ", " +
                  std::to_string(x.q_off + x.nq) + ") outside the " + std::to_string(q.n) +
                  " packed query tokens");
    // Sequences may run side by side, writing their outputs at once.
    if (x.nq > 0 && x.q_off < q_end)
      throw_range(seq_name(i) + ": queries [" + std::to_string(x.q_off) + ", " +
                  std::to_string(x.q_off + x.nq) + ") overlap an earlier sequence's (up to " +
                  std::to_string(q_end) + ")");
    if (x.nq > 0) q_end = x.q_off + x.nq;
    if (x.nq > x.nk)
      throw_range(seq_name(i) + ": query length (" + std::to_string(x.nq) +
                  ") must not exceed key length (" + std::to_string(x.nk) + ")");
    if (!s.paged) {
      if (x.k_off > k.n - x.nk)
        throw_range(seq_name(i) + ": keys [" + std::to_string(x.k_off) + ", " +
                    std::to_string(x.k_off + x.nk) + ") outside the " + std::to_string(k.n) +
                    " packed key tokens");
    } else {
      const int64_t need = x.nk / s.page_size + (x.nk % s.page_size != 0 ? 1 : 0);  // no overflow
      if (need > max_pages)
        throw_range(seq_name(i) + ": " + std::to_string(x.nk) + " keys need " +
                    std::to_string(need) + " pages of " + std::to_string(s.page_size) +
                    ", the page table has " + std::to_string(max_pages));
      x.page_off = static_cast<int64_t>(s.pages.size());
      for (int64_t p = 0; p < need; ++p) {
        const int32_t id = table[static_cast<int64_t>(i) * max_pages + p];
        if (id < 0 || id >= k.batch)
          throw_range(seq_name(i) + ": page table entry " + std::to_string(p) + " = " +
                      std::to_string(id) + " outside the pool's " + std::to_string(k.batch) +
                      " pages");
        s.pages.push_back(id);
      }
    }
    // Sequences without queries are skipped: they size no buffer (a long
    // idle sequence in a paged batch would otherwise cost a gather buffer of
    // its whole length on every call).
    if (x.nq > 0) {
      s.max_nq = std::max(s.max_nq, x.nq);
      s.max_nk = std::max(s.max_nk, x.nk);
    }
  }
  return s;
}

QkvView token_slice(const QkvView& packed, int64_t off, int64_t n) {
  QkvView v = packed;
  v.batch = 1;
  v.n = n;
  v.data = static_cast<const char*>(packed.data) + off * packed.stride_n * dtype_size(packed.dtype);
  return v;
}

OutView token_slice(const OutView& packed, int64_t off, int64_t n) {
  OutView v = packed;
  v.batch = 1;
  v.n = n;
  v.data = static_cast<char*>(packed.data) + off * packed.stride_n * dtype_size(packed.dtype);
  v.lse = nullptr;
  return v;
}

void check_gpu_alignment(const QkvView& v, const char* what, size_t seq) {
  const bool ok =
      reinterpret_cast<uintptr_t>(v.data) % 16 == 0 && v.stride_h % 8 == 0 && v.stride_n % 8 == 0;
  if (!ok)
    throw_range(seq_name(seq) + ": " + what +
                " is not 16-byte aligned for the CUDA kernels (data address and token/head "
                "strides must be multiples of 16 bytes)");
}

VarlenArgs read_varlen_args(const Napi::CallbackInfo& info,
                            std::vector<std::shared_ptr<Storage>>& keep) {
  Napi::Env env = info.Env();
  TensorWrap& qt = TensorWrap::unwrap(env, arg(info, 0), "q");
  TensorWrap& kt = TensorWrap::unwrap(env, arg(info, 1), "k");
  VarlenArgs a;
  const QkvView q = input_view(qt, "q");
  const QkvView k = input_view(kt, "k");
  a.estimate = !arg(info, 5).IsNull() && !arg(info, 5).IsUndefined();
  a.attention = !arg(info, 6).IsNull() && !arg(info, 6).IsUndefined();
  if (!a.estimate && !a.attention) throw_type("varlen needs estimate or attention params");
  keep.push_back(qt.storage());
  keep.push_back(kt.storage());
  TensorWrap *vt = nullptr, *ot = nullptr, *lse = nullptr;
  QkvView v = k;
  OutView o;
  if (a.attention) {
    vt = &TensorWrap::unwrap(env, arg(info, 2), "v");
    ot = &TensorWrap::unwrap(env, arg(info, 3), "out");
    v = input_view(*vt, "v");
    o = output_view(*ot, "out");
    // check_attention_views compares batch and n too: pools and packed K share them with v.
    QkvView q1 = q, k1 = k, v1 = v;
    q1.n = k1.n = v1.n = 1;
    q1.batch = k1.batch = v1.batch = 1;
    OutView o1 = o;
    o1.n = 1;
    o1.batch = 1;
    check_attention_views(q1, k1, v1, o1);
    if (v.batch != k.batch || v.n != k.n || v.heads != k.heads)
      throw_range("k and v must have the same shape");
    if (o.n != q.n || o.batch != q.batch) throw_range("out must have the shape and dtype of q");
    keep.push_back(vt->storage());
    keep.push_back(ot->storage());
    a.ap = read_attention_params(arg(info, 6));
    Napi::Object params = arg(info, 6).As<Napi::Object>();
    Napi::Value lv = params.Get("lse");
    if (!lv.IsUndefined() && !lv.IsNull()) {
      lse = &TensorWrap::unwrap(env, lv, "lse");
      check_plain(*lse, DType::F32, {1, q.heads, q.n, 1}, "lse");
      keep.push_back(lse->storage());
      a.lse = static_cast<float*>(lse->storage()->data());
    }
  } else {
    QkvView q1 = q, k1 = k;
    q1.n = k1.n = 1;
    q1.batch = k1.batch = 1;
    check_query_key(q1, k1);
  }
  a.spec = read_varlen_spec(arg(info, 4), q, k);
  if (a.estimate) {
    a.ep = read_estimate_params(arg(info, 5), q.d);
    if (a.attention && a.ap.block != a.ep.block)
      throw_range("attention block must equal the estimation block");
  }
  a.device = common_device({&qt, &kt, vt, ot, lse});
  a.stream = read_stream(arg(info, 9), a.device);
  a.heads = q.heads;
  a.total_q = q.n;
  a.hkv = k.heads;
  a.d = q.d;
  a.dtype = q.dtype;
  a.k_pool = k;
  a.v_pool = v;
  const int32_t block = a.estimate ? a.ep.block : a.ap.block;
  const size_t batch = a.spec.seqs.size();
  Napi::Value selections = arg(info, 7), lists = arg(info, 8);
  a.want_selection = a.estimate && !selections.IsNull() && !selections.IsUndefined();
  if (a.estimate && !a.attention && !a.want_selection)
    throw_type("varlen estimation needs the selections to write");
  for (size_t i = 0; i < batch; ++i) {
    SeqWork s;
    s.span = a.spec.seqs[i];
    s.q = token_slice(q, s.span.q_off, s.span.nq);
    if (a.spec.paged) {
      s.k = contiguous_view(nullptr, k.dtype, k.heads, s.span.nk, k.d);
      s.v = s.k;
    } else {
      s.k = token_slice(k, s.span.k_off, s.span.nk);
      s.v = token_slice(v, s.span.k_off, s.span.nk);
    }
    if (a.attention) s.o = token_slice(o, s.span.q_off, s.span.nq);
    s.grid = BlockGrid(s.span.nq, s.span.nk, block);
    s.rows = q.heads * s.grid.nq;
    s.tri = q.heads * tri_size(s.grid.nq, s.grid.off);
    if (s.span.nq > 0) {
      if (a.want_selection) {
        SelectionOut so =
            read_selection_out(env, entry(selections, i, batch, "selections"), s.q, s.k, block);
        common_device({&qt, so.counts, so.row_ptr, so.temps, so.mask});
        so.keep_alive(keep);
        s.sel = so.outputs();
        s.row_ptr = so.row_ptr_data();
      }
      if (a.estimate)
        s.keys = read_key_summaries(env, entry(arg(info, 10), i, batch, "keys"), s.k, a.ep,
                                    a.device, keep, "keys[" + std::to_string(i) + "]");
      if (a.attention && !a.estimate) {
        BlockListArgs l = read_block_list(env, entry(lists, i, batch, "lists"), s.q, s.k, block);
        for (const TensorWrap* t : l.tensors) common_device({&qt, t});
        for (auto& st : l.storages) keep.push_back(st);
        s.list = l.list;
      }
      if (a.device != kCpuDevice && a.attention) {
        check_gpu_alignment(s.q, "q", i);
        check_gpu_alignment(QkvView{s.o.data, s.o.dtype, 1, s.o.heads, s.o.n, s.o.d, s.o.stride_b,
                                    s.o.stride_h, s.o.stride_n},
                            "out", i);
        if (!a.spec.paged) {
          check_gpu_alignment(s.k, "k", i);
          check_gpu_alignment(s.v, "v", i);
        }
      }
    }
    a.seqs.push_back(s);
  }
  return a;
}

LanePlan plan_lanes(const std::vector<SeqSpan>& seqs, int64_t heads, int64_t kv_token_bytes,
                    size_t max_lanes) {
  LanePlan plan;
  plan.lane.assign(seqs.size(), 0);
  const auto tiles = [](int64_t n) { return (n + 127) / 128; };
  std::vector<size_t> side;  // the short sequences
  bool long_seq = false;
  for (size_t i = 0; i < seqs.size(); ++i) {
    const SeqSpan& sp = seqs[i];
    if (sp.nq == 0) continue;
    const bool short_seq = sp.nk <= kLaneMaxKeys && kv_token_bytes * sp.nk <= kLaneMaxGatherBytes &&
                           heads * tiles(sp.nq) <= kLaneMaxQueryTiles;
    if (short_seq)
      side.push_back(i);
    else
      long_seq = true;
  }
  const size_t first = long_seq ? 1 : 0;  // lane 0 keeps the long sequences
  plan.lanes = std::min(std::max<size_t>(max_lanes, 1), first + side.size());
  if (plan.lanes < 2) {
    plan.lanes = 1;
    return plan;
  }
  // Work of a sequence: query tiles x key tiles (the attention's, at full density).
  const auto work = [&](size_t i) { return tiles(seqs[i].nq) * tiles(seqs[i].nk); };
  std::stable_sort(side.begin(), side.end(), [&](size_t a, size_t b) { return work(a) > work(b); });
  std::vector<int64_t> load(plan.lanes, 0);
  for (size_t i : side) {
    size_t best = first;
    for (size_t l = first + 1; l < plan.lanes; ++l)
      if (load[l] < load[best]) best = l;
    plan.lane[i] = best;
    load[best] += work(i);
  }
  return plan;
}

}  // namespace prism::binding

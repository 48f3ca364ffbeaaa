#include "binding/block_list.h"

#include "binding/errors.h"
#include "binding/views.h"

namespace prism::binding {

BlockListArgs read_block_list(Napi::Env env, Napi::Value counts, Napi::Value indices,
                              const QkvView& q, const QkvView& k, int32_t block) {
  BlockListArgs out;
  bool has_counts = !(counts.IsNull() || counts.IsUndefined());
  bool has_indices = !(indices.IsNull() || indices.IsUndefined());
  if (has_counts != has_indices) throw_type("counts and indices must be given together (or both null for dense)");
  if (!has_counts) return out;
  const TensorWrap& c = TensorWrap::unwrap(env, counts, "counts");
  const TensorWrap& i = TensorWrap::unwrap(env, indices, "indices");
  const BlockGrid grid(q.n, k.n, block);
  const int64_t nq = grid.nq, nk = grid.nk;
  check_plain(c, DType::I32, {q.batch, q.heads, nq}, "counts");
  check_plain(i, DType::I32, {q.batch, q.heads, nq, nk}, "indices");
  out.counts = &c;
  out.indices = &i;
  out.storages = {c.storage(), i.storage()};
  out.list.counts = static_cast<const int32_t*>(out.storages[0]->data());
  out.list.indices = static_cast<const int32_t*>(out.storages[1]->data());
  return out;
}

}  // namespace prism::binding

#include "binding/block_list.h"

#include "binding/args.h"
#include "binding/errors.h"
#include "binding/views.h"

namespace prism::binding {

BlockListArgs read_block_list(Napi::Env env, Napi::Value list, const QkvView& q, const QkvView& k,
                              int32_t block) {
  BlockListArgs out;
  if (list.IsNull() || list.IsUndefined()) return out;
  Napi::Object o = get_object(list, "list");
  const TensorWrap& c = TensorWrap::unwrap(env, field(o, "counts"), "list.counts");
  const TensorWrap& r = TensorWrap::unwrap(env, field(o, "rowPtr"), "list.rowPtr");
  const TensorWrap& i = TensorWrap::unwrap(env, field(o, "indices"), "list.indices");
  const BlockGrid grid(q.n, k.n, block);
  const int64_t rows = q.batch * q.heads * grid.nq;
  check_plain(c, DType::I32, {q.batch, q.heads, grid.nq}, "list.counts");
  check_plain(r, DType::I64, {rows + 1}, "list.rowPtr");
  if (i.dtype() != DType::I32 || i.shape().size() != 1)
    throw_type("list.indices must be a 1-d int32 tensor");
  out.tensors = {&c, &r, &i};
  out.storages = {c.storage(), r.storage(), i.storage()};
  out.list.counts = static_cast<const int32_t*>(out.storages[0]->data());
  out.list.row_start = static_cast<const int64_t*>(out.storages[1]->data());
  out.list.indices = static_cast<const int32_t*>(out.storages[2]->data());
  out.list.indices_size = i.shape()[0];
  return out;
}

}  // namespace prism::binding

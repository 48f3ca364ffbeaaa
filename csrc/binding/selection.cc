#include "binding/selection.h"

#include "binding/args.h"
#include "binding/errors.h"
#include "binding/views.h"

namespace prism::binding {

SelectionOut read_selection_out(Napi::Env env, Napi::Value out, const QkvView& q, const QkvView& k,
                                int32_t block) {
  Napi::Object o = get_object(out, "out");
  SelectionOut s;
  s.counts = &TensorWrap::unwrap(env, field(o, "counts"), "out.counts");
  s.row_ptr = &TensorWrap::unwrap(env, field(o, "rowPtr"), "out.rowPtr");
  s.temps = &TensorWrap::unwrap(env, field(o, "temps"), "out.temps");
  Napi::Value mask = field(o, "mask");
  if (!mask.IsUndefined() && !mask.IsNull()) s.mask = &TensorWrap::unwrap(env, mask, "out.mask");
  const BlockGrid grid(q.n, k.n, block);
  check_plain(*s.counts, DType::I32, {q.batch, q.heads, grid.nq}, "out.counts");
  check_plain(*s.row_ptr, DType::I64, {q.batch * q.heads * grid.nq + 1}, "out.rowPtr");
  check_plain(*s.temps, DType::F32, {q.batch, q.heads, 2}, "out.temps");
  if (s.mask) check_plain(*s.mask, DType::U8, {q.batch, q.heads, grid.nq, grid.nk}, "out.mask");
  return s;
}

BlockMaskOut SelectionOut::outputs() const {
  BlockMaskOut o;
  o.mask = mask ? static_cast<uint8_t*>(mask->storage()->data()) : nullptr;
  o.counts = static_cast<int32_t*>(counts->storage()->data());
  o.temps = static_cast<float*>(temps->storage()->data());
  return o;
}

int64_t* SelectionOut::row_ptr_data() const {
  return static_cast<int64_t*>(row_ptr->storage()->data());
}

void SelectionOut::keep_alive(std::vector<std::shared_ptr<Storage>>& keep) const {
  for (const TensorWrap* t : {counts, row_ptr, temps, mask})
    if (t) keep.push_back(t->storage());
}

SelectionGeometry::SelectionGeometry(const QkvView& q, const QkvView& k, int32_t block) {
  const BlockGrid grid(q.n, k.n, block);
  nq = grid.nq;
  off = grid.off;
  rows = q.batch * q.heads * nq;
  tri = q.batch * q.heads * tri_size(nq, off);
}

size_t indices_bytes(int64_t total) {
  return sizeof(int32_t) * static_cast<size_t>(total > 0 ? total : 1);
}

}  // namespace prism::binding

// Reads the optional block list that selects key blocks for attention and
// mass recall: { counts, rowPtr, indices } in compact rows (CSR), or null for
// dense.
#pragma once
#include <napi.h>

#include <memory>
#include <vector>

#include "binding/tensor.h"
#include "common/prism_types.h"

namespace prism::binding {

struct BlockListArgs {
  BlockList list;                          // device or host pointers, or dense
  std::vector<const TensorWrap*> tensors;  // for the same-device check
  std::vector<std::shared_ptr<Storage>> storages;
};

// counts int32 [b, Hq, nq], rowPtr int64 [b * Hq * nq + 1], indices int32 [n >= 1]
// (nq on the block grid of Nq, Nk and block). Shapes and dtypes are checked
// here; the row contents by the TypeScript layer that built the list.
BlockListArgs read_block_list(Napi::Env env, Napi::Value list, const QkvView& q, const QkvView& k,
                              int32_t block);

}  // namespace prism::binding

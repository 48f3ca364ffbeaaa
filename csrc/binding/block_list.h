// Reads the optional (counts, indices) pair that selects key blocks for
// attention and mass recall; both null means dense.
#pragma once
#include <napi.h>

#include <memory>
#include <vector>

#include "binding/tensor.h"
#include "common/prism_types.h"

namespace prism::binding {

struct BlockListArgs {
  BlockList list;                       // device or host pointers, or dense
  const TensorWrap* counts = nullptr;   // for the same-device check
  const TensorWrap* indices = nullptr;
  std::vector<std::shared_ptr<Storage>> storages;
};

// counts [b, Hq, ceil(Nq/block)] int32, indices [b, Hq, ceil(Nq/block), ceil(Nk/block)] int32.
BlockListArgs read_block_list(Napi::Env env, Napi::Value counts, Napi::Value indices,
                              const QkvView& q, const QkvView& k, int32_t block);

}  // namespace prism::binding

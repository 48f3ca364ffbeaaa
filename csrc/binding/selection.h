// What estimate and prefill share: reading the selection outputs the caller
// passes ({ counts, rowPtr, temps, mask? }), the scratch layout of the
// triangular selection, and turning it into compact rows (CSR) once the
// device has counted them.
#pragma once
#include <napi.h>

#include <cstdint>
#include <memory>
#include <vector>

#include "binding/storage.h"
#include "binding/tensor.h"
#include "common/prism_types.h"

namespace prism::binding {

struct SelectionOut {
  TensorWrap* mask = nullptr;  // optional
  TensorWrap* counts = nullptr;
  TensorWrap* row_ptr = nullptr;
  TensorWrap* temps = nullptr;

  // The backends' outputs (indices left null: the caller's scratch).
  BlockMaskOut outputs() const;
  int64_t* row_ptr_data() const;
  // Appends the storages to keep alive while the op runs.
  void keep_alive(std::vector<std::shared_ptr<Storage>>& keep) const;
};

// { counts: int32 [b, Hq, nq], rowPtr: int64 [rows + 1], temps: float32 [b, Hq, 2],
//   mask?: uint8 [b, Hq, nq, nk] }, checked against the block grid.
SelectionOut read_selection_out(Napi::Env env, Napi::Value out, const QkvView& q, const QkvView& k,
                                int32_t block);

// Sizes of one estimation's selection.
struct SelectionGeometry {
  int64_t rows = 0;  // batch * Hq * nq
  int64_t nq = 0, off = 0;
  int64_t tri = 0;  // int32 entries of the triangular layout
  SelectionGeometry(const QkvView& q, const QkvView& k, int32_t block);
};

// The compact indices: max(total, 1) int32 (a tensor is never empty).
size_t indices_bytes(int64_t total);

}  // namespace prism::binding

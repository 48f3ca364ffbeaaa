// Argument validation shared by the CPU entry points (defense in depth: the
// TypeScript layer validates first). Every check throws std::invalid_argument
// with a message naming the function and the offending argument.
#pragma once
#include <cstdint>

#include "common/prism_types.h"

namespace prism::cpu::detail {

// Non-null data, positive batch/heads/n/d, dtype F32, F16 or BF16.
void check_view(const QkvView& v, const char* fn, const char* name);
void check_view(const OutView& v, const char* fn, const char* name);

// q [B, Hq, Nq, d] against k [B, Hkv, Nk, d]: same batch and d,
// Hq % Hkv == 0, Nq <= Nk.
void check_qk(const QkvView& q, const QkvView& k, const char* fn);

// block >= 1.
void check_block(int64_t block, const char* fn);

// Band sizes of the Prism method: even, in [2, d]; d even.
void check_bands(const EstimateParams& p, int64_t d, const char* fn);

// counts/indices of a non-dense list (counts != nullptr): indices present,
// row starts present unless triangular (then absent), every count in
// [0, nk], the first count indices of each row in [0, nk). nq, nk: the
// block grid; rows = batch * Hq * nq. A null counts pointer (dense) passes.
void check_list(const BlockList& list, int64_t rows, int64_t nq, int64_t nk, const char* fn);

}  // namespace prism::cpu::detail

// Paged KV caches on the CUDA backend (until the kernels read pages natively):
// one sequence's keys (or values) gathered from a page pool into a contiguous
// [Hkv, n, d] workspace, enqueued on a stream, which the per-view estimation
// and attention then read. Same layout rules as prism::cpu::gather_pages.
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

#include "common/prism_types.h"

namespace prism::cuda {

// pool: logical [numPages, Hkv, pageSize, d] device view (NHD pools bnhd
// strides, HND pools bhnd). pages: device pointer to the sequence's
// ceil(n / pageSize) page ids, already checked to lie in [0, numPages) (a bad
// id is skipped, its rows left as they were). dst: device, [Hkv, n, d]
// contiguous of the pool's dtype. Copies in 16-byte chunks when every
// address allows it, else 4 (d * element size must be a multiple of 4).
cudaError_t gather_pages(const QkvView& pool, const int32_t* pages, int64_t n, void* dst,
                         cudaStream_t stream);

// Keys and values of one sequence in one launch: kpool into kdst and, when
// vpool is given (a pool of the same shape and dtype), vpool into vdst.
cudaError_t gather_pages(const QkvView& kpool, const QkvView* vpool, const int32_t* pages,
                         int64_t n, void* kdst, void* vdst, cudaStream_t stream);

}  // namespace prism::cuda

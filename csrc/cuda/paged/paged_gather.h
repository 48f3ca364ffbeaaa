// Paged KV caches on the CUDA backend, for pages the attention kernels do not
// read in place (under 64 keys): one sequence's keys and values gathered from
// their page pools into contiguous [Hkv, n, d] workspaces, enqueued on a
// stream, which the per-view estimation and attention then read. Same layout
// rules as prism::cpu::gather_pages.
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

#include "common/prism_types.h"

namespace prism::cuda {

// kpool: logical [numPages, Hkv, pageSize, d] device view (NHD pools bnhd
// strides, HND pools bhnd). pages: device pointer to the sequence's
// ceil(n / pageSize) page ids, already checked to lie in [0, numPages) (a bad
// id is skipped, its rows left as they were). kdst, vdst: device, [Hkv, n, d]
// contiguous of the pool's dtype. Copies in 16-byte chunks when every
// address allows it, else 4 (d * element size must be a multiple of 4).
// Keys and values in one launch: kpool into kdst and, when vpool is given (a
// pool of the same shape and dtype), vpool into vdst.
cudaError_t gather_pages(const QkvView& kpool, const QkvView* vpool, const int32_t* pages,
                         int64_t n, void* kdst, void* vdst, cudaStream_t stream);

}  // namespace prism::cuda

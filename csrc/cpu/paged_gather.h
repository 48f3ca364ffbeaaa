// Paged KV caches on the CPU backend: one sequence's keys (or values) copied
// out of a page pool into a contiguous buffer, which the per-view estimation
// and attention then read. Pages follow vLLM / FlashInfer: token t of a
// sequence lives in page pages[t / pageSize], slot t % pageSize.
#pragma once
#include <cstdint>

#include "common/prism_types.h"

namespace prism::cpu {

// pool: logical [numPages, Hkv, pageSize, d] (batch = pages, n = page size):
// an NHD pool ([numPages, pageSize, Hkv, d] in memory) has bnhd strides, an
// HND pool ([numPages, Hkv, pageSize, d]) bhnd strides. pages: the
// sequence's ceil(n / pageSize) page ids, each in [0, numPages). dst receives
// [Hkv, n, d] contiguous elements of the pool's dtype. Throws
// std::invalid_argument for a page id out of range.
void gather_pages(const QkvView& pool, const int32_t* pages, int64_t n, void* dst);

}  // namespace prism::cpu

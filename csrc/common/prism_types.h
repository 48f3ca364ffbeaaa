// Shared types of every backend: tensor views, estimation and attention
// parameters, block-mask outputs. Plain structs, no CUDA or N-API here, so the
// CPU backend, the CUDA backend and the binding all compile against them.
#pragma once
#include <cstdint>

// Geometry helpers are also called from CUDA kernels.
#if defined(__CUDACC__)
#define PRISM_HD __host__ __device__
#else
#define PRISM_HD
#endif

namespace prism {

enum class DType : int32_t { F32 = 0, F16 = 1, BF16 = 2, U8 = 3, I32 = 4, I64 = 5 };
enum class RopeLayout : int32_t { Half = 0, Interleaved = 1 };
// Prism: two bands (high/low RoPE frequencies). MeanPool: the single-band
// baseline (pooled dot product over all dims, one softmax, same selection).
enum class Method : int32_t { Prism = 0, MeanPool = 1 };
enum class Selection : int32_t { TopP = 0, TopK = 1 };

inline int64_t dtype_size(DType t) {
  if (t == DType::F16 || t == DType::BF16) return 2;
  if (t == DType::U8) return 1;
  return t == DType::I64 ? 8 : 4;
}

// A read-only strided view of a logical [batch, heads, n, d] tensor whose last
// dim is contiguous. Strides are in elements. Covers both "bhnd" and "bnhd".
struct QkvView {
  const void* data = nullptr;
  DType dtype = DType::F32;
  int64_t batch = 0, heads = 0, n = 0, d = 0;
  int64_t stride_b = 0, stride_h = 0, stride_n = 0;
};

// The same for an output written by attention, plus the optional row
// log-sum-exp: float32 [batch, heads, n], natural log of the softmax
// denominator over the keys attended (-inf for a row that met no key). Row r
// of (b, h) is lse[(b * heads + h) * lse_stride + r]: lse_stride 0 means n
// (contiguous); a ragged batch's sequence writes its rows straight into the
// packed [1, heads, totalQ] with lse_stride = totalQ.
struct OutView {
  void* data = nullptr;
  DType dtype = DType::F32;
  int64_t batch = 0, heads = 0, n = 0, d = 0;
  int64_t stride_b = 0, stride_h = 0, stride_n = 0;
  float* lse = nullptr;
  int64_t lse_stride = 0;
  // Rows of the LSE of one (b, h) may not run into the next one's.
  bool lse_rows_overlap() const { return lse_stride != 0 && lse_stride < n; }
};

// Fully resolved options (the TypeScript layer fills defaults and validates).
struct EstimateParams {
  int32_t block = 128;     // B: rows per query block and per key block
  int32_t high_dims = 64;  // h: dims in the high-frequency band (even)
  int32_t low_dims = 96;   // l: dims in the low-frequency band (even)
  RopeLayout layout = RopeLayout::Half;
  Method method = Method::Prism;
  bool calibrate = true;  // energy-based temperatures
  float temp_high = 1.f;  // used when calibrate == false
  float temp_low = 1.f;
  Selection selection = Selection::TopP;
  float tau_high = 0.95f;  // top-p thresholds
  float tau_low = 0.95f;
  int32_t topk_high = 0;  // top-k counts (Selection::TopK)
  int32_t topk_low = 0;
  bool force_sink = true;  // j = 0
  bool force_diag = true;  // j = i + (nk - nq)
};

// Outputs of estimation. Rows are query-block rows, row = (b * Hq + h) * nq + i.
// The selected key blocks of a row (ascending) go to the row's slot of the
// triangular layout (tri_row_start): room for exactly its visible blocks, so
// the buffer is bounded by the causal block count, never nq * nk. Compact
// rows (CSR, sized by the selection) are made from it by the backends'
// compact-selection step.
struct BlockMaskOut {
  uint8_t* mask = nullptr;     // optional [batch, Hq, nq, nk], 1 = selected
  int32_t* counts = nullptr;   // [batch, Hq, nq], selected blocks per row
  int32_t* indices = nullptr;  // triangular layout, tri_size(nq, off) per (batch, head)
  float* temps = nullptr;      // [batch, Hq, 2]: (t_high, t_low) used; may be null
};

// Selected key blocks per query-block row, as attention consumes them: row r
// holds counts[r] ascending key blocks at indices[row_start[r] ...]. Compact
// rows (CSR: row_start = row pointers, FlashInfer's indptr / FlexAttention's
// kv_num_blocks + kv_indices) and the triangular layout are both such lists.
// counts == nullptr means dense: every visible block. A triangular list
// (an estimation's own output, read by attention in the same call) has no
// row_start: row r starts at tri_row_start(r, nq, off) of the list's block
// grid, computed where it is read rather than written out by a launch.
struct BlockList {
  const int32_t* counts = nullptr;     // [batch, Hq, nq]
  const int64_t* row_start = nullptr;  // [batch * Hq * nq]; null when triangular
  const int32_t* indices = nullptr;
  int64_t indices_size = 0;  // entries in indices (bounds every row)
  bool triangular = false;
};

// Keys and values read in place from page pools (the page tables of vLLM and
// FlashInfer), for one sequence: k and v are then pools of logical shape
// [numPages, Hkv, page_size, d] (QkvView batch = numPages, n = page_size) and
// key t of the sequence lies in page ids[t / page_size], slot t % page_size.
struct KvPages {
  const int32_t* ids = nullptr;  // device: the ceil(tokens / page_size) page ids, in [0, numPages)
  int64_t tokens = 0;            // keys of the sequence (Nk)
  int32_t page_size = 0;         // a power of two in [16, 256]
  int32_t last_id = -1;          // ids[(tokens - 1) / page_size], known on the host
  // log2(page_size): key t lies in ids[t >> shift()], slot t & (page_size - 1).
  int32_t shift() const {
    int32_t s = 0;
    while ((int32_t(1) << (s + 1)) <= page_size) ++s;
    return s;
  }
};

// A contiguous [1, heads, n, d] (bhnd) view of `data`.
inline QkvView contiguous_view(const void* data, DType dtype, int64_t heads, int64_t n, int64_t d) {
  QkvView v;
  v.data = data;
  v.dtype = dtype;
  v.batch = 1;
  v.heads = heads;
  v.n = n;
  v.d = d;
  v.stride_n = d;
  v.stride_h = n * d;
  v.stride_b = heads * n * d;
  return v;
}

// Pooled key blocks kept between calls (summarize_keys): key block j of a
// (batch, kv head) covers keys [jB, (j+1)B) whatever the queries, so the
// summary of a full block is fixed once its keys are written. An estimation
// given summaries reads key blocks [0, blocks) from them instead of pooling
// them from K (the same arithmetic, so the same bits). Rows are in the
// backend's own format (key_summary_row_floats of each backend):
//   CUDA: rows float32 [batch, Hkv, capacity, pk] (the band-packed block
//         means of the pooling kernel), energies float32 [batch, Hkv, capacity, 3]
//         (sums of squares: all dims, band 0, band 1);
//   CPU:  rows float64 [batch, Hkv, capacity, d] (the block means), no energies.
// With `append` an estimation also writes back what it pooled: key blocks
// [blocks, Nk / B) (the full ones; a partial last block never) go into rows
// [blocks, Nk / B) of the summaries, which must have room for them; the
// caller then counts Nk / B blocks valid once the call's work is complete.
struct KeySummaries {
  void* rows = nullptr;
  float* energies = nullptr;
  int64_t blocks = 0;    // valid blocks: [0, blocks) of every (batch, kv head)
  int64_t capacity = 0;  // rows per (batch, kv head)
  bool append = false;   // estimation: write the full blocks it pools back (see above)
};

struct AttentionParams {
  int32_t block = 128;        // block size the list refers to
  float softmax_scale = 0.f;  // 0 means 1/sqrt(d)
};

// Geometry shared by every implementation.
inline int64_t num_blocks(int64_t n, int64_t block) { return (n + block - 1) / block; }

// Blocks are cut on the absolute token grid, the same for queries and keys:
// block j holds positions [jB, (j+1)B), and query row r sits at position
// (Nk - Nq) + r. Query block i is grid block i0 + i, i0 = (Nk - Nq) / B, so
// its first rows may be missing (a chunk that starts inside a block). With
// `shift` = (Nk - Nq) % B, query block i holds rows [iB - shift, (i+1)B - shift)
// clipped to [0, Nq).
struct BlockGrid {
  int64_t n_query = 0, n_key = 0;  // tokens
  int64_t block = 1;
  int64_t nq = 0, nk = 0;  // query and key blocks
  int64_t off = 0;         // i0: key block j is visible to query block i iff j <= i + off
  int64_t shift = 0;       // (Nk - Nq) % B

  BlockGrid() = default;
  BlockGrid(int64_t n_query_, int64_t n_key_, int64_t block_)
      : n_query(n_query_), n_key(n_key_), block(block_) {
    nk = num_blocks(n_key, block);
    off = (n_key - n_query) / block;
    shift = (n_key - n_query) % block;
    nq = n_query > 0 ? num_blocks(n_query + shift, block) : 0;
  }
  int64_t row_begin(int64_t i) const {
    const int64_t r = i * block - shift;
    return r > 0 ? r : 0;
  }
  int64_t row_end(int64_t i) const {
    const int64_t r = (i + 1) * block - shift;
    return r < n_query ? r : n_query;
  }
  // Query block of row r.
  int64_t block_of_row(int64_t r) const { return (r + shift) / block; }
};

// Triangular layout of per-row selections: row i of a (batch, head) has room
// for its i + off + 1 visible blocks.
PRISM_HD inline int64_t tri_size(int64_t nq, int64_t off) {
  return nq * (off + 1) + nq * (nq - 1) / 2;
}
PRISM_HD inline int64_t tri_row_start(int64_t row, int64_t nq, int64_t off) {
  const int64_t bh = row / nq, i = row % nq;
  return bh * tri_size(nq, off) + i * (off + 1) + i * (i - 1) / 2;
}

// Where row `row` of a sparse BlockList starts in its indices: its row_start
// entry, or (triangular list: row_start null) its triangular slot on a grid
// of nq query blocks with offset off.
PRISM_HD inline int64_t list_row_start(const int64_t* row_start, int64_t row, int64_t nq,
                                       int64_t off) {
  return row_start != nullptr ? row_start[row] : tri_row_start(row, nq, off);
}

// Key block j is visible to query block i iff j <= i + off, off = nk - nq.
inline int64_t visible_blocks(int64_t i, int64_t nq, int64_t nk) {
  int64_t last = i + (nk - nq);
  return last + 1 < nk ? last + 1 : nk;
}

}  // namespace prism

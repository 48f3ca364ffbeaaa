// prism::cuda attention entry points (cuda_backend.h): argument checks, the
// choice of path and kernel variant, the work ordering, the launch.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <string>
#include "cuda/attention/attention_fwd.h"
#include "cuda/attention/sm90/attention_sm90.h"
#include "cuda/cuda_backend.h"

namespace prism::cuda {
namespace attn {

const char* variant_name(int v) {
  switch (v) {
    case kW4M2N64: return "w4m2n64";
    case kW8M1N64: return "w8m1n64";
    case kW4M2N128: return "w4m2n128";
    case kW4M1N64: return "w4m1n64";
    case kW4M2N64U: return "w4m2n64u";
    default: return "?";
  }
}
int variant_block_m(int v) { return v == kW4M1N64 ? 64 : 128; }
int variant_block_n(int v) { return v == kW4M2N128 ? 128 : 64; }
bool variant_supported(int v, int head_dim, int blk) {
  if (v < 0 || v >= kNumVariants) return false;
  if (head_dim != 64 && head_dim != 128) return false;
  if (v == kW4M2N128 && head_dim != 64) return false;
  if (v == kW4M2N64U && head_dim != 128) return false;
  return blk % variant_block_m(v) == 0 && blk % variant_block_n(v) == 0;
}
int default_variant(int head_dim, int blk) {
  if (blk < 128) return kW4M1N64;
  (void)head_dim;
  return kW4M2N64;
}

namespace {

const char* dtype_name(DType t) {
  switch (t) {
    case DType::F32: return "f32";
    case DType::F16: return "f16";
    case DType::BF16: return "bf16";
    case DType::U8: return "u8";
    case DType::I32: return "i32";
  }
  return "unknown";
}

[[noreturn]] void bad(const std::string& what) {
  throw std::invalid_argument("prism::cuda::attention: " + what);
}

template <class View>
void check_view(const View& t, const char* name, int64_t align_elems) {
  if (t.batch < 0 || t.heads < 0 || t.n < 0) bad(std::string(name) + ": negative extent");
  const uintptr_t ptr = reinterpret_cast<uintptr_t>(t.data);
  if (t.batch * t.heads * t.n > 0 && ptr == 0) bad(std::string(name) + ": null data pointer");
  if (ptr % 16 != 0) bad(std::string(name) + ": data pointer must be 16-byte aligned");
  if (t.stride_b % align_elems || t.stride_h % align_elems || t.stride_n % align_elems)
    bad(std::string(name) + ": strides must be multiples of 8 elements (16 bytes)");
  if (t.n > 0x3fffffff || t.heads > 0x7fffffff || t.batch > 0x7fffffff)
    bad(std::string(name) + ": extent too large");
}

struct Geometry {
  FwdParams p;
  int variant = 0;
  size_t order_bytes = 0;  // > 0 when the sparse work order is used
};

Geometry plan(const QkvView& q, const QkvView& k, const QkvView& v, const OutView& o,
              const BlockList& list, const AttentionParams& ap, int variant) {
  if (q.dtype != DType::F16 && q.dtype != DType::BF16)
    bad(std::string("unsupported dtype ") + dtype_name(q.dtype) + " (f16 or bf16)");
  if (k.dtype != q.dtype || v.dtype != q.dtype || o.dtype != q.dtype)
    bad(std::string("q, k, v and o must share one dtype (q is ") + dtype_name(q.dtype) +
        ", k " + dtype_name(k.dtype) + ", v " + dtype_name(v.dtype) + ", o " +
        dtype_name(o.dtype) + ")");
  if (q.d != 64 && q.d != 128)
    bad("unsupported head_dim " + std::to_string(q.d) + " (64 or 128)");
  if (k.d != q.d || v.d != q.d || o.d != q.d) bad("head_dim of q, k, v and o differ");
  if (ap.block != 64 && ap.block != 128 && ap.block != 256)
    bad("unsupported block size " + std::to_string(ap.block) + " (64, 128 or 256)");
  if (k.batch != q.batch || v.batch != q.batch || o.batch != q.batch)
    bad("batch of q, k, v and o differ");
  if (k.heads != v.heads || k.n != v.n) bad("k and v shapes differ");
  if (o.heads != q.heads || o.n != q.n) bad("o shape differs from q");
  if (k.heads <= 0 && q.heads > 0) bad("k has no heads");
  if (k.heads > 0 && q.heads % k.heads != 0)
    bad("query heads (" + std::to_string(q.heads) + ") not a multiple of kv heads (" +
        std::to_string(k.heads) + ")");
  if (q.n > k.n) bad("Nq > Nk (queries must be the last Nq of the Nk positions)");
  if ((list.counts == nullptr) != (list.indices == nullptr) || (list.counts == nullptr) != (list.row_start == nullptr))
    bad("list.counts, list.row_start and list.indices must all be set or all be null");
  if (!(ap.softmax_scale >= 0.f) || !std::isfinite(ap.softmax_scale))
    bad("softmax_scale must be finite and >= 0 (0 = 1/sqrt(d))");
  check_view(q, "q", 8);
  check_view(k, "k", 8);
  check_view(v, "v", 8);
  check_view(o, "o", 8);

  const int d = static_cast<int>(q.d);
  const int blk = ap.block;
  if (variant == kAuto) variant = default_variant(d, blk);
  if (!variant_supported(variant, d, blk))
    bad(std::string("kernel variant ") + variant_name(variant) + " does not support head_dim " +
        std::to_string(d) + " with block " + std::to_string(blk));

  Geometry g;
  g.variant = variant;
  FwdParams& p = g.p;
  p.q = q.data; p.k = k.data; p.v = v.data; p.o = o.data; p.lse = o.lse;
  p.q_sb = q.stride_b; p.q_sh = q.stride_h; p.q_sn = q.stride_n;
  p.k_sb = k.stride_b; p.k_sh = k.stride_h; p.k_sn = k.stride_n;
  p.v_sb = v.stride_b; p.v_sh = v.stride_h; p.v_sn = v.stride_n;
  p.o_sb = o.stride_b; p.o_sh = o.stride_h; p.o_sn = o.stride_n;
  p.batch = static_cast<int32_t>(q.batch);
  p.hq = static_cast<int32_t>(q.heads);
  p.hkv = static_cast<int32_t>(k.heads);
  p.group = p.hkv > 0 ? p.hq / p.hkv : 1;
  p.nq = static_cast<int32_t>(q.n);
  p.nk = static_cast<int32_t>(k.n);
  p.blk = blk;
  const BlockGrid grid(q.n, k.n, blk);
  p.nqb = static_cast<int32_t>(grid.nq);
  p.nkb = static_cast<int32_t>(grid.nk);
  p.counts = list.counts;
  p.row_start = list.row_start;
  p.indices = list.indices;
  const float scale = ap.softmax_scale > 0.f ? ap.softmax_scale : 1.f / std::sqrt(float(d));
  p.scale_log2 = scale * 1.4426950408889634f;
  const int bm = variant_block_m(variant);
  p.n_mtiles = query_tiles(q.n, k.n, bm);
  if (int64_t(p.batch) * p.hq * p.n_mtiles > 0x7fffffff) bad("too many query tiles");
  if (list.counts != nullptr) g.order_bytes = order_workspace_bytes(q.batch, q.heads, q.n);
  return g;
}

// PRISM_ATTENTION_PATH=sm80 forces the portable path (read on every call: one
// environment lookup, so a process can switch paths between calls).
bool sm80_forced() {
  const char* e = std::getenv("PRISM_ATTENTION_PATH");
  return e != nullptr && std::strcmp(e, "sm80") == 0;
}

// The sm_90a wgmma/TMA path: compute capability 9.0 (cached per device), a
// binary holding its sm_90a image, and a configuration it covers.
bool use_sm90(int head_dim, int blk) {
  if (!sm90::config_supported(head_dim, blk) || sm80_forced()) return false;
  int dev = 0;
  if (cudaGetDevice(&dev) != cudaSuccess) {
    cudaGetLastError();
    return false;
  }
  return sm90::device_supported(dev);
}

}  // namespace

cudaError_t attention_with_variant(const QkvView& q, const QkvView& k, const QkvView& v,
                                   const OutView& o, const BlockList& list,
                                   const AttentionParams& ap, void* workspace,
                                   cudaStream_t stream, int variant) {
  const bool sm90 = variant == kAuto && use_sm90(static_cast<int>(q.d), ap.block);
  Geometry g = plan(q, k, v, o, list, ap, variant);
  FwdParams& p = g.p;
  if (int64_t(p.batch) * p.hq * p.nq == 0) return cudaSuccess;
  const int d = static_cast<int>(q.d);
  char* ws = static_cast<char*>(workspace);
  if (sm90) {
    // Its own work order (kv-head groups, longest query tiles first): no
    // p.order. n_mtiles counts its 128-row tiles.
    p.n_mtiles = query_tiles(p.nq, p.nk, sm90::kBlockM);
    p.work_counter = ws != nullptr ? reinterpret_cast<int32_t*>(ws) : nullptr;
    cudaError_t e;
    if (q.dtype == DType::BF16)
      e = d == 128 ? sm90::launch_fwd<__nv_bfloat16, 128>(p, stream)
                   : sm90::launch_fwd<__nv_bfloat16, 64>(p, stream);
    else
      e = d == 128 ? sm90::launch_fwd<__half, 128>(p, stream)
                   : sm90::launch_fwd<__half, 64>(p, stream);
    // cudaErrorNotSupported: strides the TMA unit cannot describe; the sm80
    // kernel takes the call.
    if (e != cudaErrorNotSupported) return e;
    p.n_mtiles = query_tiles(p.nq, p.nk, variant_block_m(g.variant));
  }
  if (g.order_bytes > 0 && workspace != nullptr) {
    // Longest rows first; without a workspace the kernel falls back to the
    // reverse query-tile order.
    int32_t* order = reinterpret_cast<int32_t*>(ws + kCounterBytes);
    cudaError_t e = launch_order_items(p, variant_block_m(g.variant), order, stream);
    if (e != cudaSuccess) return e;
    p.order = order;
  }
  if (q.dtype == DType::BF16) {
    return d == 128 ? launch_fwd<__nv_bfloat16, 128>(p, g.variant, stream)
                    : launch_fwd<__nv_bfloat16, 64>(p, g.variant, stream);
  }
  return d == 128 ? launch_fwd<__half, 128>(p, g.variant, stream)
                  : launch_fwd<__half, 64>(p, g.variant, stream);
}

}  // namespace attn

size_t attention_workspace_bytes(const QkvView& q, const QkvView& k, const BlockList& list,
                                 const AttentionParams& p) {
  (void)k;
  (void)p;
  if (list.counts == nullptr) return attn::kCounterBytes;
  return attn::kCounterBytes + attn::order_workspace_bytes(q.batch, q.heads, q.n);
}

cudaError_t attention(const QkvView& q, const QkvView& k, const QkvView& v, const OutView& o,
                      const BlockList& list, const AttentionParams& p, void* workspace,
                      cudaStream_t stream) {
  return attn::attention_with_variant(q, k, v, o, list, p, workspace, stream, attn::kAuto);
}

const char* attention_path(int device) {
  int major = 0;
  if (cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device) != cudaSuccess) {
    cudaGetLastError();  // clear the sticky-free error state
    return "none";
  }
  // Compute capability 9.0 with the sm_90a image in this binary: the
  // wgmma/TMA kernel (head_dim 64/128 with blocks 128/256; other configurations
  // and PRISM_ATTENTION_PATH=sm80 use the portable kernel). sm_80 and newer
  // otherwise: the portable mma.sync kernel.
  if (major == 9 && !attn::sm80_forced() && attn::sm90::device_supported(device))
    return "sm90-wgmma";
  return major >= 8 ? "sm80-mma" : "none";
}

}  // namespace prism::cuda

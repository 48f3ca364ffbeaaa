// Host interface of the sm_90a (Hopper: wgmma + TMA) attention forward path.
// No device code: included by attention_api.cu and the native harnesses.
#pragma once
#include <cuda_runtime.h>
#include "cuda/attention/attention_fwd.h"

namespace prism::cuda::attn::sm90 {

constexpr int kBlockM = 128;  // query rows per CTA (p.n_mtiles and the work order use it)

// Configurations the kernel covers; others stay on the sm80-mma path.
inline bool config_supported(int head_dim, int blk) {
  return (head_dim == 64 || head_dim == 128) && (blk == 128 || blk == 256);
}

// True when `device` is compute capability 9.0 and this binary holds the
// sm_90a image of the kernel (cached per device after the first call).
bool device_supported(int device);

// Launches one (dtype, head_dim) family; p.n_mtiles must count kBlockM-row
// tiles and p.order (sparse, optional) must order kBlockM-row items.
// cudaErrorNotSupported: the tensors cannot be described to the TMA unit
// (the caller then uses the sm80 path); other errors are launch errors.
template <typename T, int D>
cudaError_t launch_fwd(const FwdParams& p, cudaStream_t stream);

// Whether the sm_90a image of the (T, D) kernel is the real one (not the
// empty body the other architecture passes compile).
template <typename T, int D>
cudaError_t kernel_image_ok(bool* ok);

}  // namespace prism::cuda::attn::sm90

// Whether the build holds a kernel's sm_90a image for the current device.
#pragma once
#include <cuda_runtime.h>

namespace prism::cuda {

// The Hopper kernels compile to an empty body outside the sm_90a pass, so a
// device that would run another pass's image (or PTX) sees no static shared
// memory and an older binary version in the kernel's attributes.
inline bool has_sm90a_image(const cudaFuncAttributes& a) {
  return a.sharedSizeBytes > 0 && a.binaryVersion >= 90;
}

}  // namespace prism::cuda

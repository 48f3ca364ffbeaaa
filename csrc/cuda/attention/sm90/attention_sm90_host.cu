// Host side of the sm_90a path shared by every instantiation: the driver's
// tensor-map encoder and the per-device capability check.
#include <cuda.h>
#include <cudaTypedefs.h>
#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <atomic>
#include "cuda/attention/sm90/attention_sm90.h"
#include "cuda/cuda_backend.h"

namespace prism::cuda::attn::sm90 {

PFN_cuTensorMapEncodeTiled_v12000 tensor_map_encoder() {
  static const PFN_cuTensorMapEncodeTiled_v12000 fn = []() -> PFN_cuTensorMapEncodeTiled_v12000 {
    void* f = nullptr;
    cudaDriverEntryPointQueryResult q = cudaDriverEntryPointSymbolNotFound;
    const cudaError_t e = cudaGetDriverEntryPointByVersion("cuTensorMapEncodeTiled", &f, 12000,
                                                           cudaEnableDefault, &q);
    if (e != cudaSuccess || q != cudaDriverEntryPointSuccess || f == nullptr) {
      cudaGetLastError();
      return nullptr;
    }
    return reinterpret_cast<PFN_cuTensorMapEncodeTiled_v12000>(f);
  }();
  return fn;
}

namespace {
constexpr int kMaxDevices = 64;
std::atomic<int> g_state[kMaxDevices];  // 0 unknown, 1 supported, 2 not
}  // namespace

bool device_supported(int device) {
  if (device < 0 || device >= kMaxDevices) return false;
  const int s = g_state[device].load(std::memory_order_relaxed);
  if (s != 0) return s == 1;
  bool ok = false;
  int major = 0, minor = 0;
  if (cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device) == cudaSuccess &&
      cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, device) == cudaSuccess &&
      major == 9 && minor == 0 && tensor_map_encoder() != nullptr) {
    const int listed = compiled_for_sm90a();
    if (listed >= 0) {
      // The build's architecture list decides, with no CUDA context: asking
      // the kernel's attributes would create one on every device that
      // info() describes (hundreds of MB each on a server's other GPUs).
      ok = listed == 1;
    } else {
      // A build that did not record its list (native harnesses): ask the
      // kernel, on a device that is current anyway; another device is
      // answered (uncached) once it is the current one.
      int cur = -1;
      if (cudaGetDevice(&cur) != cudaSuccess || cur != device) {
        cudaGetLastError();
        return false;
      }
      bool img = false;
      ok = kernel_image_ok<__nv_bfloat16, 128, SingleTileScheduler>(&img) == cudaSuccess && img;
    }
  }
  cudaGetLastError();  // leave no error state behind
  g_state[device].store(ok ? 1 : 2, std::memory_order_relaxed);
  return ok;
}

}  // namespace prism::cuda::attn::sm90

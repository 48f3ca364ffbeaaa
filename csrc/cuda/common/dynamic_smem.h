// The dynamic shared memory a kernel may launch with, opted in once.
#pragma once
#include <cuda_runtime.h>

#include <algorithm>
#include <cstddef>
#include <map>
#include <mutex>
#include <utility>

namespace prism::cuda {

// The dynamic shared memory limit set per (device, kernel) in this process.
// cudaFuncSetAttribute's setting is the process's, not a call's: it is only
// ever raised here, once per size, so that a concurrent call on another thread
// never lowers it between one call's set and its launch, and launches after
// the first skip the driver call.
class SmemLimits {
 public:
  struct Entry {
    size_t bytes = 0;
    bool is_room = false;  // the most the kernel may use on the device
  };
  static Entry get(int dev, const void* kernel) {
    const std::lock_guard<std::mutex> lock(mu());
    const auto it = table().find({dev, kernel});
    return it != table().end() ? it->second : Entry{};
  }
  // Raises the limit of `kernel` on the current device `dev` to `bytes`.
  static cudaError_t raise(int dev, const void* kernel, size_t bytes, bool is_room) {
    const cudaError_t e =
        cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)bytes);
    if (e != cudaSuccess) return e;
    const std::lock_guard<std::mutex> lock(mu());
    Entry& x = table()[{dev, kernel}];
    if (bytes >= x.bytes) x = Entry{bytes, is_room || x.is_room};
    return cudaSuccess;
  }

 private:
  static std::mutex& mu() {
    static std::mutex m;
    return m;
  }
  static std::map<std::pair<int, const void*>, Entry>& table() {
    static std::map<std::pair<int, const void*>, Entry> t;
    return t;
  }
};

// Sets `room` to the dynamic shared memory `kernel` may launch with on the
// current device (the device's opt-in limit less the kernel's static shared
// memory) and raises the kernel's limit to it, once per device and kernel.
inline cudaError_t dynamic_smem_room(const void* kernel, size_t& room) {
  int dev = 0;
  cudaError_t e = cudaGetDevice(&dev);
  if (e != cudaSuccess) return e;
  const SmemLimits::Entry known = SmemLimits::get(dev, kernel);
  if (known.is_room) {
    room = known.bytes;
    return cudaSuccess;
  }
  int optin = 0;
  cudaFuncAttributes fa{};
  if ((e = cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev)) !=
          cudaSuccess ||
      (e = cudaFuncGetAttributes(&fa, kernel)) != cudaSuccess)
    return e;
  const size_t limit = (size_t)std::max(optin, 48 * 1024);
  const size_t r = limit > fa.sharedSizeBytes ? limit - fa.sharedSizeBytes : 0u;
  if ((e = SmemLimits::raise(dev, kernel, r, true)) != cudaSuccess) return e;
  room = r;
  return cudaSuccess;
}

// Raises `kernel`'s dynamic shared memory limit to its fixed launch size
// `bytes` on the current device, once per device and kernel.
inline cudaError_t fixed_smem_limit(const void* kernel, int bytes) {
  int dev = 0;
  const cudaError_t e = cudaGetDevice(&dev);
  if (e != cudaSuccess) return e;
  if (SmemLimits::get(dev, kernel).bytes >= (size_t)bytes) return cudaSuccess;
  return SmemLimits::raise(dev, kernel, (size_t)bytes, false);
}

}  // namespace prism::cuda

// The dynamic shared memory a kernel may launch with, opted in once.
#pragma once
#include <cuda_runtime.h>

#include <algorithm>
#include <cstddef>
#include <map>
#include <mutex>
#include <utility>

namespace prism::cuda {

// Sets `room` to the dynamic shared memory `kernel` may launch with on the
// current device (the device's opt-in limit less the kernel's static shared
// memory) and raises the kernel's limit to it, once per device and kernel.
// The limit is the process's, not a call's: set per call to each call's own
// size, a concurrent call on another thread could lower it between one call's
// set and its launch, which would then fail.
inline cudaError_t dynamic_smem_room(const void* kernel, size_t& room) {
  int dev = 0;
  cudaError_t e = cudaGetDevice(&dev);
  if (e != cudaSuccess) return e;
  static std::mutex mu;
  static std::map<std::pair<int, const void*>, size_t> known;
  const auto key = std::make_pair(dev, kernel);
  {
    const std::lock_guard<std::mutex> lock(mu);
    const auto it = known.find(key);
    if (it != known.end()) {
      room = it->second;
      return cudaSuccess;
    }
  }
  int optin = 0;
  cudaFuncAttributes fa{};
  if ((e = cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev)) !=
          cudaSuccess ||
      (e = cudaFuncGetAttributes(&fa, kernel)) != cudaSuccess)
    return e;
  const size_t limit = (size_t)std::max(optin, 48 * 1024);
  const size_t r = limit > fa.sharedSizeBytes ? limit - fa.sharedSizeBytes : 0u;
  if ((e = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)r)) !=
      cudaSuccess)
    return e;
  const std::lock_guard<std::mutex> lock(mu);
  known[key] = r;
  room = r;
  return cudaSuccess;
}

// Raises `kernel`'s dynamic shared memory limit to its fixed launch size
// `bytes` on the current device, once per device and kernel: the setting is
// the process's and never lowered, so later launches skip the driver call.
inline cudaError_t fixed_smem_limit(const void* kernel, int bytes) {
  int dev = 0;
  cudaError_t e = cudaGetDevice(&dev);
  if (e != cudaSuccess) return e;
  static std::mutex mu;
  static std::map<std::pair<int, const void*>, int> known;
  const auto key = std::make_pair(dev, kernel);
  {
    const std::lock_guard<std::mutex> lock(mu);
    const auto it = known.find(key);
    if (it != known.end() && it->second >= bytes) return cudaSuccess;
  }
  if ((e = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, bytes)) !=
      cudaSuccess)
    return e;
  const std::lock_guard<std::mutex> lock(mu);
  int& set = known[key];
  set = std::max(set, bytes);
  return cudaSuccess;
}

}  // namespace prism::cuda

// CUDA device discovery and the per-device context (a non-blocking stream per
// device and a few side streams, created on first use). Compiles to a CPU-only stub when the
// addon is built without CUDA.
#pragma once
#include <array>
#include <cstddef>
#include <memory>
#include <string>
#include <vector>
#if PRISM_WITH_CUDA
#include <cuda_runtime.h>
#endif

namespace prism::binding {

constexpr int kCpuDevice = -1;

// How many streams an op may run its independent parts on at once (its own
// stream and kMaxLanes - 1 side streams; see StreamLanes).
constexpr size_t kMaxLanes = 4;

struct CudaStatus {
  int device_count = 0;
  // Why no GPU can be used (built without CUDA, no driver, no device); empty when usable.
  std::string unavailable_reason;
  int runtime_version = 0;  // e.g. 13000; 0 when unknown
  int driver_version = 0;   // 0 when no driver
  // CUDA version the driver must support (cudaDriverGetVersion form): the
  // major version of the runtime this binary was built with, e.g. 13000
  // (minor version compatibility covers the rest); 0 without CUDA.
  int min_driver_version = 0;
};

// Discovered once per process, thread-safe.
const CudaStatus& cuda_status();

// Lowest Linux driver branch for a CUDA version in cudaDriverGetVersion form:
// "580" for 13000, "525" for 12000; "" when not known.
std::string min_driver_branch(int cuda_version);

// "NVIDIA driver >= 580 (CUDA 13.0)", or "CUDA 14.0 support" without a known branch.
std::string min_driver_text(int cuda_version);

// Why a driver that supports CUDA `driver_version` (0: none found) cannot run
// a binary needing `required_version`, e.g. "the NVIDIA driver supports CUDA
// 12.8; this binary needs CUDA 13.0 (driver >= 580)".
std::string old_driver_reason(int driver_version, int required_version);

// "cpu" or "cuda:N"
std::string device_label(int device);

// Throws a clear Error when `device` is neither the CPU nor a usable GPU.
void require_device(int device);

#if PRISM_WITH_CUDA
class DeviceContext {
 public:
  explicit DeviceContext(int device);
  DeviceContext(const DeviceContext&) = delete;
  DeviceContext& operator=(const DeviceContext&) = delete;
  int device() const { return device_; }
  cudaStream_t stream() const { return stream_; }
  // Side stream i, 1 <= i < kMaxLanes: non-blocking, shared by every op on
  // the device (an op orders its use of one with events, never by owning it).
  cudaStream_t side_stream(size_t i) const { return side_[i - 1]; }

 private:
  int device_;
  cudaStream_t stream_ = nullptr;
  std::array<cudaStream_t, kMaxLanes - 1> side_{};
};

// The context of `device`, created on first use; lives until the process ends
// (destroying streams during static destruction races the driver's teardown).
DeviceContext& device_context(int device);

// Whether device_context(device) has been created (the package used the device).
bool device_context_created(int device);

// cudaSetDevice, checked. Worker threads call it before any other CUDA call.
void use_device(int device);

// Whether `device`'s primary context exists in this process, asked through
// the driver without creating one (cuDevicePrimaryCtxGetState). Throws if the
// driver's entry points cannot be found.
bool primary_context_active(int device);

// Makes `device` current on the calling thread for its lifetime, then makes
// the thread's previous device current again: the JS thread's current device
// belongs to whatever else in the process uses CUDA. Sets nothing when
// `device` is already current. The previous device is set back only when its
// primary context exists: from CUDA 12 setting a device creates its context,
// and a process that only uses cuda:1 should not get one on device 0 (the
// default device of a thread that never chose one).
class DeviceScope {
 public:
  explicit DeviceScope(int device);
  ~DeviceScope();
  DeviceScope(const DeviceScope&) = delete;
  DeviceScope& operator=(const DeviceScope&) = delete;

 private:
  int previous_ = 0;
  bool changed_ = false;
};

// use_device(device), then the device's own stream.
cudaStream_t use_device_stream(int device);
#endif

// Entry `device` of a per-device list that is never freed, made as T(device)
// on first use. The caller holds the list's lock.
template <class T>
T& per_device_slot(std::vector<std::unique_ptr<T>>& slots, int device) {
  if (slots.size() <= static_cast<size_t>(device)) slots.resize(device + 1);
  auto& slot = slots[device];
  if (!slot) slot = std::make_unique<T>(device);
  return *slot;
}

}  // namespace prism::binding

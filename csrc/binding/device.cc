#include "binding/device.h"

#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "binding/errors.h"

#if PRISM_WITH_CUDA
#include <cuda.h>
#endif

namespace prism::binding {

#if PRISM_WITH_CUDA
namespace {

std::string describe_count_failure(cudaError_t e) {
  std::string what = std::string(cudaGetErrorName(e)) + ": " + cudaGetErrorString(e);
  switch (e) {
    case cudaErrorNoDevice: return "no CUDA device found (" + what + ")";
    case cudaErrorInsufficientDriver:
      return "the NVIDIA driver is missing or older than this CUDA runtime (" + what + ")";
    default: return "cudaGetDeviceCount failed (" + what + ")";
  }
}

CudaStatus discover() {
  CudaStatus s;
  cudaRuntimeGetVersion(&s.runtime_version);
  if (cudaDriverGetVersion(&s.driver_version) != cudaSuccess) s.driver_version = 0;
  s.min_driver_version = CUDART_VERSION / 1000 * 1000;
  if (s.driver_version < s.min_driver_version) {
    s.unavailable_reason = old_driver_reason(s.driver_version, s.min_driver_version);
    return s;
  }
  int count = 0;
  cudaError_t e = cudaGetDeviceCount(&count);
  if (e != cudaSuccess) {
    s.unavailable_reason = describe_count_failure(e);
    cudaGetLastError();  // clear the non-sticky error so later calls start clean
    return s;
  }
  if (count == 0) s.unavailable_reason = "no CUDA device found";
  s.device_count = count;
  return s;
}

}  // namespace

DeviceContext::DeviceContext(int device) : device_(device) {
  DeviceScope scope(device);  // first use may come from any thread
  check_cuda(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking),
             "cudaStreamCreateWithFlags");
  for (cudaStream_t& s : side_)
    check_cuda(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking),
               "cudaStreamCreateWithFlags (side stream)");
}

namespace {
std::mutex contexts_mutex;
std::vector<std::unique_ptr<DeviceContext>>* contexts =
    new std::vector<std::unique_ptr<DeviceContext>>();  // never freed, see header
}  // namespace

DeviceContext& device_context(int device) {
  require_device(device);
  std::lock_guard<std::mutex> lock(contexts_mutex);
  return per_device_slot(*contexts, device);
}

bool device_context_created(int device) {
  std::lock_guard<std::mutex> lock(contexts_mutex);
  return device >= 0 && static_cast<size_t>(device) < contexts->size() &&
         (*contexts)[device] != nullptr;
}

void use_device(int device) { check_cuda(cudaSetDevice(device), "cudaSetDevice"); }

DeviceScope::DeviceScope(int device) {
  check_cuda(cudaGetDevice(&previous_), "cudaGetDevice");
  if (previous_ != device) {
    use_device(device);
    changed_ = true;
  }
}

DeviceScope::~DeviceScope() {
  if (!changed_) return;
  try {
    if (primary_context_active(previous_)) cudaSetDevice(previous_);
  } catch (...) {
    // no driver entry points: leave the device set (a destructor must not throw)
  }
}

bool primary_context_active(int device) {
  using GetDevice = CUresult (*)(CUdevice*, int);
  using GetState = CUresult (*)(CUdevice, unsigned int*, int*);
  auto entry = [](const char* name) -> void* {
    void* f = nullptr;
    cudaDriverEntryPointQueryResult q = cudaDriverEntryPointSymbolNotFound;
    if (cudaGetDriverEntryPointByVersion(name, &f, 12000, cudaEnableDefault, &q) != cudaSuccess ||
        q != cudaDriverEntryPointSuccess || f == nullptr) {
      cudaGetLastError();
      throw_error(std::string("driver entry point ") + name + " not found");
    }
    return f;
  };
  static const auto get_device = reinterpret_cast<GetDevice>(entry("cuDeviceGet"));
  static const auto get_state = reinterpret_cast<GetState>(entry("cuDevicePrimaryCtxGetState"));
  CUdevice dev = 0;
  unsigned int flags = 0;
  int active = 0;
  if (get_device(&dev, device) != CUDA_SUCCESS || get_state(dev, &flags, &active) != CUDA_SUCCESS)
    throw_error("cuDevicePrimaryCtxGetState failed");
  return active != 0;
}

cudaStream_t use_device_stream(int device) {
  use_device(device);
  return device_context(device).stream();
}

#else

namespace {
CudaStatus discover() {
  CudaStatus s;
  s.unavailable_reason = "prism-attention was built without CUDA support";
  return s;
}
}  // namespace

#endif

std::string min_driver_branch(int cuda_version) {
  switch (cuda_version / 1000) {
    case 13: return "580";  // CUDA 13.0 GA: 580.65.06
    case 12: return "525";  // CUDA 12.0 GA: 525.60.13
    default: return "";
  }
}

namespace {
std::string cuda_version_text(int v) {
  return std::to_string(v / 1000) + "." + std::to_string(v % 1000 / 10);
}
}  // namespace

std::string min_driver_text(int cuda_version) {
  std::string branch = min_driver_branch(cuda_version);
  if (branch.empty()) return "a driver with CUDA " + cuda_version_text(cuda_version) + " support";
  return "NVIDIA driver >= " + branch + " (CUDA " + cuda_version_text(cuda_version) + ")";
}

std::string old_driver_reason(int driver_version, int required_version) {
  std::string branch = min_driver_branch(required_version);
  std::string needs = "this binary needs CUDA " + cuda_version_text(required_version) +
                      (branch.empty() ? "" : " (driver >= " + branch + ")");
  if (driver_version <= 0) return "no NVIDIA driver found; " + needs;
  return "the NVIDIA driver supports CUDA " + cuda_version_text(driver_version) + "; " + needs;
}

const CudaStatus& cuda_status() {
  static const CudaStatus status = discover();
  return status;
}

std::string device_label(int device) {
  return device == kCpuDevice ? std::string("cpu") : "cuda:" + std::to_string(device);
}

void require_device(int device) {
  if (device == kCpuDevice) return;
  const CudaStatus& s = cuda_status();
  if (device < 0) throw_range("invalid device index " + std::to_string(device));
  if (!s.unavailable_reason.empty())
    throw_error("device " + device_label(device) + " is not available: " + s.unavailable_reason);
  if (device >= s.device_count)
    throw_error("device " + device_label(device) + " is not available: only " +
                std::to_string(s.device_count) + " CUDA device(s) present");
}

}  // namespace prism::binding

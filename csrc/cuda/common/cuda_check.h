// Small error-handling helpers shared by the CUDA backend's translation units.
#pragma once
#include <cuda_runtime.h>
#include <stdexcept>
#include <string>

// Return the error of a CUDA runtime call from the enclosing function.
#define PRISM_CUDA_TRY(expr)                          \
  do {                                                \
    cudaError_t prism_err_ = (expr);                  \
    if (prism_err_ != cudaSuccess) return prism_err_; \
  } while (0)

namespace prism::cuda {

// Throws std::invalid_argument("<where>: <what>") when cond is false.
inline void require_arg(bool cond, const char* where, const std::string& what) {
  if (!cond) throw std::invalid_argument(std::string(where) + ": " + what);
}

}  // namespace prism::cuda

// Which architectures this build compiled machine code / PTX for. The build
// defines PRISM_CUDA_ARCH_LIST, either as a string literal or as bare tokens.
#include <string>
#include "cuda/cuda_backend.h"

#define PRISM_STRINGIFY_(...) #__VA_ARGS__
#define PRISM_STRINGIFY(...) PRISM_STRINGIFY_(__VA_ARGS__)

namespace prism::cuda {

const char* compiled_archs() {
#ifdef PRISM_CUDA_ARCH_LIST
  static const std::string list = [] {
    std::string s = PRISM_STRINGIFY(PRISM_CUDA_ARCH_LIST);
    // A string literal stringifies with its quotes (and escapes): strip them.
    std::string r;
    for (char c : s)
      if (c != '"' && c != '\\' && c != ' ') r.push_back(c);
    return r.empty() ? std::string("unknown") : r;
  }();
  return list.c_str();
#else
  return "unknown";
#endif
}

}  // namespace prism::cuda

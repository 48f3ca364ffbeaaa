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

int compiled_for_sm90a() {
  const std::string list = compiled_archs();
  if (list == "unknown") return -1;
  size_t start = 0;
  while (start <= list.size()) {
    size_t end = list.find_first_of(",;", start);
    if (end == std::string::npos) end = list.size();
    const std::string arch = list.substr(start, end - start);
    // sm_90a machine code, or compute_90a PTX that the driver compiles for it.
    if (arch == "sm_90a" || arch == "compute_90a" || arch == "90a") return 1;
    start = end + 1;
  }
  return 0;
}

}  // namespace prism::cuda

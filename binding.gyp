# CPU-only fallback build of the addon through node-gyp, for machines without
# CMake (scripts/install.js uses it only then). No CUDA here: the CUDA backend
# is built by CMakeLists.txt (cmake-js). See docs/building.md.
{
  "targets": [
    {
      "target_name": "prism_attention",
      "sources": [
        "<!@(node -p \"require('fs').readdirSync('csrc/binding').filter(f => f.endsWith('.cc')).map(f => 'csrc/binding/' + f).join(' ')\")",
        "<!@(node -p \"require('fs').readdirSync('csrc/cpu').filter(f => f.endsWith('.cc')).map(f => 'csrc/cpu/' + f).join(' ')\")"
      ],
      "include_dirs": [
        "csrc",
        "<!(node -p \"require('node-addon-api').include_dir\")"
      ],
      "defines": [
        "NAPI_VERSION=8",
        "NAPI_CPP_EXCEPTIONS",
        "NODE_API_SWALLOW_UNTHROWABLE_EXCEPTIONS",
        "NODE_ADDON_API_DISABLE_DEPRECATED",
        "PRISM_WITH_CUDA=0"
      ],
      "cflags_cc!": ["-fno-exceptions", "-fno-rtti", "-std=gnu++17", "-std=gnu++20"],
      "cflags_cc": ["-std=c++17", "-fexceptions", "-O3"],
      "ldflags": ["-pthread", "-Wl,-z,nodelete"],
      "xcode_settings": {
        "GCC_ENABLE_CPP_EXCEPTIONS": "YES",
        "CLANG_CXX_LANGUAGE_STANDARD": "c++17",
        "MACOSX_DEPLOYMENT_TARGET": "10.15"
      },
      "msvs_settings": {
        "VCCLCompilerTool": { "ExceptionHandling": 1, "AdditionalOptions": ["/std:c++17"] }
      }
    }
  ]
}

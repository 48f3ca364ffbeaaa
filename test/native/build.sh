#!/usr/bin/env bash
# Builds the standalone native GPU harnesses with nvcc, one independent command
# per harness, with nvcc alone (no CMake). Output folder: $PRISM_DEVBIN
# (default build/harnesses-nvcc, ignored with build/).
# PRISM_CUDA_ARCHS: space-separated list of archs, default "90a"
# (e.g. PRISM_CUDA_ARCHS="80 86 89 90a").
# The harnesses are built with PRISM_TUNING_VARIANTS: the kernel variants and
# the ping-pong schedule that the release addon leaves out. The same harnesses
# are also a CMake target (-DPRISM_NATIVE_HARNESSES=ON, scripts/native-harnesses.js);
# attention_plan_check needs no GPU.
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT="${PRISM_DEVBIN:-build/harnesses-nvcc}"
ARCHS="${PRISM_CUDA_ARCHS:-90a}"
NVCC="${NVCC:-nvcc}"
mkdir -p "$OUT"
GENCODE=()
LIST=""
for a in $ARCHS; do GENCODE+=("-gencode=arch=compute_${a},code=sm_${a}"); LIST="${LIST:+$LIST,}sm_${a}"; done
FLAGS=(-O3 -std=c++17 -lineinfo -Xcompiler -Wall -Icsrc -Itest/native "${GENCODE[@]}" "-DPRISM_CUDA_ARCH_LIST=\"$LIST\""
       -DPRISM_TUNING_VARIANTS=1)

"$NVCC" "${FLAGS[@]}" test/native/attention_plan_check.cu csrc/cuda/attention/attention_plan.cu -o "$OUT/attention_plan_check"

"$NVCC" "${FLAGS[@]}" test/native/estimate_check.cu csrc/cuda/estimate/estimate.cu csrc/cuda/build_info.cu -o "$OUT/estimate_check"
"$NVCC" "${FLAGS[@]}" test/native/metrics_check.cu csrc/cuda/metrics/metrics.cu -o "$OUT/metrics_check"
"$NVCC" "${FLAGS[@]}" test/native/gather_check.cu csrc/cuda/paged/paged_gather.cu -o "$OUT/gather_check"
"$NVCC" "${FLAGS[@]}" test/native/attention_check.cu csrc/cuda/attention/*.cu csrc/cuda/attention/sm90/*.cu csrc/cuda/build_info.cu -o "$OUT/attention_check"
"$NVCC" "${FLAGS[@]}" test/native/attention_sm90_check.cu csrc/cuda/attention/*.cu csrc/cuda/attention/sm90/*.cu csrc/cuda/build_info.cu -o "$OUT/attention_sm90_check"

// Caller-provided CUDA streams: reading one from JS (a cudaStream_t as a
// bigint) and ordering the package's own work before work enqueued on it.
#pragma once
#include <napi.h>

#include <cstdint>
#if PRISM_WITH_CUDA
#include <cuda_runtime.h>
#endif

namespace prism::binding {

// undefined / null -> 0 (the device's own stream). Otherwise a bigint naming a
// stream of `device`: TypeError for other values, RangeError for 0n (legacy
// default stream), 1n / 2n (cudaStreamLegacy / cudaStreamPerThread), a CPU
// device, a stream of another device or one capturing a CUDA graph.
uint64_t read_stream(Napi::Value v, int device);

#if PRISM_WITH_CUDA
// The stream work for `device` goes on: the caller's `stream`, made to wait
// first for everything already on the device's own stream (where tensors are
// allocated, zero-filled, uploaded and freed), or the device's stream when
// `stream` is 0. The calling thread's current device must be `device`.
cudaStream_t op_stream(int device, uint64_t stream);
#endif

}  // namespace prism::binding

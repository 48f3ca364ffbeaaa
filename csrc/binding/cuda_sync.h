// Small helpers for the CUDA side of the binding's calls: events, scratch
// buffers, draining a stream on errors and the enqueue of an op. Only
// compiled with CUDA.
#pragma once
#if PRISM_WITH_CUDA
#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <utility>
#include <vector>

#include "binding/device.h"
#include "binding/memory.h"
#include "binding/streams.h"

namespace prism::binding {

// An event of the current device, from a process-wide pool (returned, not
// destroyed, when this goes).
class CudaEvent {
 public:
  explicit CudaEvent(unsigned flags);
  ~CudaEvent();
  CudaEvent(const CudaEvent&) = delete;
  CudaEvent& operator=(const CudaEvent&) = delete;
  CudaEvent(CudaEvent&& o) noexcept : event_(o.event_), device_(o.device_), flags_(o.flags_) {
    o.event_ = nullptr;
  }
  cudaEvent_t get() const { return event_; }

 private:
  cudaEvent_t event_ = nullptr;
  int device_ = 0;
  unsigned flags_ = 0;
};

// Milliseconds between two recorded timing events (both completed), checked.
float elapsed_ms(const CudaEvent& from, const CudaEvent& to);

// `n` rounded up to a multiple of 256 bytes: the alignment of every part
// carved out of one StreamBuffer.
inline size_t align256(size_t n) { return (n + 255) & ~size_t(255); }

// Scratch memory for work on `stream`, lent by the current device's workspace
// pool and given back when destroyed; the work enqueued on `stream` until then
// is ordered before its next use, so giving it back never waits.
class StreamBuffer {
 public:
  StreamBuffer(size_t bytes, cudaStream_t stream);
  void* get() const { return lease_.get(); }
  // The work that used the buffer has completed (after wait_for_stream on
  // its stream): giving it back then costs no CUDA call.
  void mark_done() { lease_.mark_done(); }

 private:
  WorkspaceLease lease_;
};

// Blocks the calling (worker) thread until everything enqueued on `stream`
// so far has run: records an event and either polls it, yielding the core
// between queries (the wait policy 'spin', the default), or sleeps on it
// (blocking sync, 'sleep'). Never called on the JS thread.
void wait_for_stream(cudaStream_t stream, const char* operation);

// The streams one op runs independent parts of its work on side by side (the
// sequences of a ragged batch): lane 0 is the op's own stream `main`, lanes
// 1.. the device's side streams. fork() makes every side lane wait for the
// work on `main` so far; join() makes `main` wait for every lane's. Lanes
// forked and not joined are joined when this goes (quietly, on an error path),
// so what a lane enqueued is always ordered before what follows on `main`:
// the scratch given back there, the worker's wait, a drain on error.
class StreamLanes {
 public:
  // `count` lanes, 1 <= count <= kMaxLanes; the current device is `device`.
  StreamLanes(int device, cudaStream_t main, size_t count);
  ~StreamLanes();
  StreamLanes(const StreamLanes&) = delete;
  StreamLanes& operator=(const StreamLanes&) = delete;
  size_t size() const { return lanes_.size(); }
  cudaStream_t operator[](size_t i) const { return lanes_[i]; }
  void fork();
  void join();

 private:
  std::vector<cudaStream_t> lanes_;
  bool forked_ = false;
};

// One pinned int64 for a device-to-host copy ordered on a stream, owned by one
// call whatever thread enqueues it; slots come from a process-wide pool of
// pinned pages and are reused.
class PinnedValue {
 public:
  PinnedValue();
  ~PinnedValue();
  PinnedValue(const PinnedValue&) = delete;
  PinnedValue& operator=(const PinnedValue&) = delete;
  int64_t* get() const { return value_; }

 private:
  int64_t* value_ = nullptr;
};

// Pinned host memory of at least `bytes`, from a process-wide pool of
// power-of-two sizes (never freed: freeing pinned memory synchronizes the
// device), returned to the pool when this goes. Host-to-device copies from it
// are truly asynchronous; from pageable memory the driver may first wait for
// the stream's earlier work, on the calling thread. Keep it until the copy
// that reads it has completed.
class PinnedBuffer {
 public:
  explicit PinnedBuffer(size_t bytes);
  ~PinnedBuffer();
  PinnedBuffer(const PinnedBuffer&) = delete;
  PinnedBuffer& operator=(const PinnedBuffer&) = delete;
  void* get() const { return data_; }

 private:
  void* data_ = nullptr;
  int size_class_ = 0;
};

// Enqueues the copy of `bytes` of host memory at `src` to `dst` on `stream`
// through a PinnedBuffer, which `staging` keeps until the caller has waited
// for the stream. Never waits for the stream on the calling thread.
void copy_to_device_async(void* dst, const void* src, size_t bytes, cudaStream_t stream,
                          std::unique_ptr<PinnedBuffer>& staging, const char* what);

// Same, but for use on error paths: never throws.
void drain_stream_quietly(cudaStream_t stream) noexcept;

// Runs body(); if it throws, waits for `stream` quietly first (what was
// enqueued must not outlive the buffers it uses), then rethrows. `stream` is
// read when body throws: a member the body reassigns is drained as it is then.
template <class Body>
void drain_on_error(const cudaStream_t& stream, Body&& body) {
  try {
    body();
  } catch (...) {
    drain_stream_quietly(stream);
    throw;
  }
}

// A worker thread's GPU op: makes `device` current, sets `out` to the op's
// stream (op_stream) and runs body(), which enqueues on it, draining `out` if
// body throws. (The calling thread's part of an op uses
// DeviceWorker::enqueue_or_defer, which leaves the drain to the worker.)
template <class Body>
void enqueue_on(int device, uint64_t stream, cudaStream_t& out, Body&& body) {
  use_device(device);
  out = op_stream(device, stream);
  drain_on_error(out, std::forward<Body>(body));
}

}  // namespace prism::binding
#endif

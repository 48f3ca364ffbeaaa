// Where asynchronous calls run: on the addon's own threads, not on libuv's
// pool. A GPU call spends its time waiting for the device, and on libuv's four
// threads four such waits starved the server's file, DNS, crypto and zlib
// work for as long as the GPU ran; a CPU call held a pool thread for its whole
// computation. Two lanes, process-wide:
//  - CPU calls: at most kCpuLaneThreads at once (each already spreads over
//    every core), first come first served;
//  - GPU calls: a thread each while they wait (threads are reused, and made
//    as needed up to kGpuLaneThreads).
// Each environment (the main thread, each worker thread) hands its finished
// calls back to its JS thread through one thread-safe function, referenced
// only while calls are in flight (an idle addon keeps no loop alive). When an
// environment is torn down (a worker terminated, the process exiting), its
// calls still queued are cancelled and the running ones waited for, on its
// JS thread, as libuv does with its own pool's work.
#pragma once
#include <node_api.h>

#include <condition_variable>
#include <deque>
#include <mutex>
#include <vector>

namespace prism::binding {

constexpr int kCpuLaneThreads = 4;
constexpr int kGpuLaneThreads = 256;

enum class OpLane { Cpu, Gpu };

class Completions;

// An asynchronous call: execute() on an op thread, then complete() on the JS
// thread of the environment that started it, which deletes the job.
class OpJob {
 public:
  virtual ~OpJob() = default;
  // An op thread: no JS access.
  virtual void execute() = 0;
  // The JS thread; `cancelled`: execute() never ran (the environment is
  // going away). Deletes this.
  virtual void complete(napi_env env, bool cancelled) = 0;

 private:
  friend class Completions;
  friend class LaneThreads;
  Completions* completions_ = nullptr;
};

// One environment's finished calls, handed back to its JS thread.
class Completions {
 public:
  // The environment's, made on first use (JS thread).
  static Completions& of(napi_env env);
  // JS thread: runs `job` on `lane`, then completes it on this thread.
  void submit(napi_env env, OpJob* job, OpLane lane);

 private:
  friend class LaneThreads;
  explicit Completions(napi_env env);
  void finished(OpJob* job);  // an op thread
  static void call_js(napi_env env, napi_value, void* context, void*);
  static void teardown(void* self);  // the environment's cleanup hook
  static void tsfn_finalized(napi_env, void* self, void*);

  napi_env env_;
  napi_threadsafe_function tsfn_ = nullptr;
  std::mutex mu_;
  std::condition_variable idle_;
  std::vector<OpJob*> done_;  // finished, not yet completed (mu_)
  int running_ = 0;           // submitted, not yet finished (mu_)
  bool closed_ = false;       // torn down: no more calls into tsfn_ (mu_)
  bool tsfn_gone_ = false;    // tsfn_ finalized (mu_)
  int pending_ = 0;           // JS thread only: submitted, not yet completed
};

}  // namespace prism::binding

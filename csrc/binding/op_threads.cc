#include "binding/op_threads.h"

#include <napi.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <memory>
#include <stdexcept>
#include <thread>
#include <utility>

#include "binding/addon_data.h"

namespace prism::binding {

namespace {

// At process exit (process.exit(), or the end of the main script), the CUDA
// runtime tears itself down in its atexit handler while GPU calls may still
// be waiting on their events: a thread inside a CUDA call then crashes. The
// first call of each lane registers a handler of ours (the GPU lane's after the
// runtime initialised, so that it runs first): from then on no call starts, a call
// that finishes is not handed back (nothing is left to take it), and the
// running GPU calls are waited for (their GPU work is already enqueued and
// finishes), at most kExitWait. Running CPU calls are not waited for: they
// touch only their own buffers until they finish.
constexpr auto kExitWait = std::chrono::seconds(30);

struct ExitGuard {
  std::mutex mu;
  std::condition_variable cv;
  int running = 0;
  bool exiting = false;
};

ExitGuard& exit_guard() {
  static ExitGuard* g = new ExitGuard;  // never destroyed: used by threads at exit
  return *g;
}

void wait_at_exit() {
  ExitGuard& g = exit_guard();
  std::unique_lock<std::mutex> lock(g.mu);
  g.exiting = true;
  g.cv.wait_for(lock, kExitWait, [&g] { return g.running == 0; });
}

}  // namespace

// A lane's threads and its queue. Process-wide, never destroyed (threads
// blocked on its condition variable at exit must find it alive).
class LaneThreads {
 public:
  LaneThreads(int max_threads, bool guarded) : max_threads_(max_threads), guarded_(guarded) {}

  void push(OpJob* job) {
    // Once per lane: the GPU lane's first call comes after the CUDA runtime
    // initialised (its tensors are on the device), so that registration runs
    // before the runtime's teardown even when a CPU call registered earlier.
    std::call_once(registered_, [] { std::atexit(wait_at_exit); });
    std::lock_guard<std::mutex> lock(mu_);
    queue_.push_back(job);
    if (idle_ > 0) {
      work_.notify_one();
    } else if (threads_ < max_threads_) {
      ++threads_;
      std::thread([this] { loop(); }).detach();
    }
  }

  // Takes the queued jobs of `c` out of the queue (they will not run).
  void cancel(const Completions* c, std::vector<OpJob*>& out) {
    std::lock_guard<std::mutex> lock(mu_);
    auto keep = std::stable_partition(queue_.begin(), queue_.end(),
                                      [c](OpJob* j) { return j->completions_ != c; });
    out.insert(out.end(), keep, queue_.end());
    queue_.erase(keep, queue_.end());
  }

 private:
  void loop() {
    for (;;) {
      OpJob* job = nullptr;
      {
        std::unique_lock<std::mutex> lock(mu_);
        ++idle_;
        work_.wait(lock, [this] { return !queue_.empty(); });
        --idle_;
        job = queue_.front();
        queue_.pop_front();
      }
      Completions* c = job->completions_;
      ExitGuard& g = exit_guard();
      {
        std::unique_lock<std::mutex> lock(g.mu);
        // Exiting: the job never runs; the thread sleeps until the process ends.
        if (g.exiting) g.cv.wait(lock, [] { return false; });
        if (guarded_) ++g.running;
      }
      job->execute();  // never throws (PromiseWorker keeps the error)
      {
        std::unique_lock<std::mutex> lock(g.mu);
        if (guarded_ && --g.running == 0) g.cv.notify_all();
        // Exiting: nothing is left to complete it on (the job is not freed).
        if (g.exiting) g.cv.wait(lock, [] { return false; });
      }
      c->finished(job);
    }
  }

  std::once_flag registered_;
  const int max_threads_;
  const bool guarded_;  // GPU calls: running ones are waited for at exit (exit_guard)
  std::mutex mu_;
  std::condition_variable work_;
  std::deque<OpJob*> queue_;
  int idle_ = 0, threads_ = 0;
};

namespace {

LaneThreads& lane_threads(OpLane lane) {
  static LaneThreads* cpu = new LaneThreads(kCpuLaneThreads, false);  // never destroyed, see above
  static LaneThreads* gpu = new LaneThreads(kGpuLaneThreads, true);
  return lane == OpLane::Cpu ? *cpu : *gpu;
}

void check(napi_status s, const char* what) {
  if (s != napi_ok) throw std::runtime_error(std::string("prism-attention: ") + what + " failed");
}

}  // namespace

Completions::Completions(napi_env env) : env_(env) {
  napi_value name;
  check(napi_create_string_utf8(env, "prism-attention", NAPI_AUTO_LENGTH, &name),
        "napi_create_string_utf8");
  check(napi_create_threadsafe_function(env, nullptr, nullptr, name, 0, 1, this, tsfn_finalized,
                                        this, call_js, &tsfn_),
        "napi_create_threadsafe_function");
  check(napi_unref_threadsafe_function(env, tsfn_), "napi_unref_threadsafe_function");
  // Added after the thread-safe function: cleanup hooks run in reverse order,
  // so this one runs while the function is still open.
  check(napi_add_env_cleanup_hook(env, teardown, this), "napi_add_env_cleanup_hook");
}

Completions& Completions::of(napi_env env) {
  AddonData& data = addon_data(Napi::Env(env));
  if (data.completions == nullptr) data.completions = new Completions(env);  // deletes itself
  return *data.completions;
}

void Completions::submit(napi_env env, OpJob* job, OpLane lane) {
  job->completions_ = this;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (closed_) throw std::runtime_error("prism-attention: the environment is shutting down");
    ++running_;
  }
  if (pending_++ == 0) napi_ref_threadsafe_function(env, tsfn_);
  lane_threads(lane).push(job);
}

void Completions::finished(OpJob* job) {
  std::lock_guard<std::mutex> lock(mu_);
  --running_;
  done_.push_back(job);
  if (closed_ || tsfn_gone_) {
    idle_.notify_all();  // teardown() completes it
    return;
  }
  // Under the lock: teardown() cannot release the function in between.
  napi_call_threadsafe_function(tsfn_, nullptr, napi_tsfn_nonblocking);
}

void Completions::call_js(napi_env env, napi_value, void* context, void*) {
  if (env == nullptr) return;  // the function is being torn down: teardown() completes the jobs
  auto* self = static_cast<Completions*>(context);
  std::vector<OpJob*> batch;
  {
    std::lock_guard<std::mutex> lock(self->mu_);
    batch.swap(self->done_);
  }
  for (OpJob* job : batch) job->complete(env, false);
  self->pending_ -= static_cast<int>(batch.size());
  if (!batch.empty() && self->pending_ == 0) napi_unref_threadsafe_function(env, self->tsfn_);
}

void Completions::teardown(void* p) {
  auto* self = static_cast<Completions*>(p);
  std::vector<OpJob*> cancelled, batch;
  lane_threads(OpLane::Cpu).cancel(self, cancelled);
  lane_threads(OpLane::Gpu).cancel(self, cancelled);
  bool tsfn_gone = false;
  {
    std::unique_lock<std::mutex> lock(self->mu_);
    self->closed_ = true;
    self->running_ -= static_cast<int>(cancelled.size());
    // The running calls finish on their own (a GPU call waits for its device).
    self->idle_.wait(lock, [self] { return self->running_ == 0; });
    batch.swap(self->done_);
    tsfn_gone = self->tsfn_gone_;
  }
  // The environment is going away: complete() swallows the failures to settle.
  for (OpJob* job : cancelled) job->complete(self->env_, true);
  for (OpJob* job : batch) job->complete(self->env_, false);
  if (tsfn_gone) {
    delete self;  // its finalizer ran before closed_ was set, and left self to us
  } else {
    napi_release_threadsafe_function(self->tsfn_, napi_tsfn_abort);  // its finalizer deletes self
  }
}

void Completions::tsfn_finalized(napi_env, void* p, void*) {
  auto* self = static_cast<Completions*>(p);
  bool torn_down = false;
  {
    std::lock_guard<std::mutex> lock(self->mu_);
    self->tsfn_gone_ = true;
    torn_down = self->closed_;
  }
  if (torn_down) delete self;  // teardown() is over: nothing else holds self
}

}  // namespace prism::binding

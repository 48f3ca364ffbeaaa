// Minimal fork-join helper for the CPU backend: runs fn(item, worker) for every
// item in [0, count) on up to `threads` std::threads that pull items from a
// shared atomic counter (dynamic scheduling: causal rows differ in cost).
// No global state: every call creates and joins its own threads, so concurrent
// calls from several Node worker threads are independent. The first exception
// thrown by fn is re-thrown in the caller after every thread has joined.
#pragma once
#include <algorithm>
#include <atomic>
#include <cstdint>
#include <exception>
#include <mutex>
#include <thread>
#include <vector>

namespace prism::cpu::detail {

// The process-wide cap on a call's workers (0: none). lib/ sets it from
// PRISM_CPU_THREADS (native.setCpuThreads); a server that shares the machine
// caps the CPU backend with it.
inline std::atomic<int>& threads_cap() {
  static std::atomic<int> cap{0};
  return cap;
}

// The workers of a call that asks for the default: the cap, else every core.
inline int default_threads() {
  const int cap = threads_cap().load(std::memory_order_relaxed);
  if (cap > 0) return cap;
  const unsigned hc = std::thread::hardware_concurrency();
  return hc > 0 ? static_cast<int>(hc) : 1;
}

// Number of workers parallel_for uses for `count` items: threads <= 0 means
// default_threads(); never more workers than items.
inline int resolve_threads(int threads, int64_t count) {
  int64_t t = threads;
  if (t <= 0) t = default_threads();
  if (count < t) t = count;
  return t < 1 ? 1 : static_cast<int>(t);
}

// fn(int64_t item, int worker), worker in [0, resolve_threads(threads, count)).
template <typename Fn>
void parallel_for(int64_t count, int threads, Fn&& fn) {
  if (count <= 0) return;
  const int workers = resolve_threads(threads, count);
  if (workers == 1) {
    for (int64_t i = 0; i < count; ++i) fn(i, 0);
    return;
  }
  std::atomic<int64_t> next{0};
  std::atomic<bool> failed{false};
  std::exception_ptr error;
  std::mutex error_mutex;
  auto body = [&](int worker) {
    try {
      for (;;) {
        if (failed.load(std::memory_order_relaxed)) return;
        const int64_t i = next.fetch_add(1, std::memory_order_relaxed);
        if (i >= count) return;
        fn(i, worker);
      }
    } catch (...) {
      std::lock_guard<std::mutex> lock(error_mutex);
      if (!error) error = std::current_exception();
      failed.store(true, std::memory_order_relaxed);
    }
  };
  std::vector<std::thread> pool;
  pool.reserve(static_cast<size_t>(workers - 1));
  try {
    for (int w = 1; w < workers; ++w) pool.emplace_back(body, w);
  } catch (...) {
    // Could not start every thread: the ones that did start, and this one,
    // still drain the counter, so the work completes with fewer workers.
  }
  body(0);
  for (auto& t : pool) t.join();
  if (error) std::rethrow_exception(error);
}

}  // namespace prism::cpu::detail

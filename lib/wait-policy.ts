// How the package waits for the GPU work of an op: the latency / CPU-time
// trade-off a server chooses once for the process.
import { native } from './native';
import { typeName } from './args';

export type WaitPolicy = 'spin' | 'sleep';

/**
 * 'spin' (the default): the worker thread that waits for an op polls its
 * completion event, yielding the core between polls, and the calling thread's
 * event loop keeps turning (it does not sleep in the poll phase) while any GPU
 * op of that thread is in flight, so the promise resolves within microseconds
 * of the GPU finishing. 'sleep': the worker thread sleeps on the event and the
 * event loop sleeps as usual (no CPU time while the GPU works; waking takes
 * 0.05-0.3 ms more on a server CPU).
 * Process-wide (all threads); the event loop is never blocked either way.
 */
export function setWaitPolicy(policy: WaitPolicy): void {
  if (typeof policy !== 'string') throw new TypeError(`wait policy must be 'spin' or 'sleep', got ${typeName(policy)}`);
  if (policy !== 'spin' && policy !== 'sleep') throw new RangeError(`wait policy must be 'spin' or 'sleep', got '${policy as string}'`);
  native().setWaitPolicy(policy === 'spin');
}

export function getWaitPolicy(): WaitPolicy {
  return native().getWaitPolicy() ? 'spin' : 'sleep';
}

// GPU ops of this thread whose promises are still pending, and whether the
// ticker below is scheduled. Module state is per thread (each worker_threads
// Worker loads its own copy), as event loops are.
let gpuOpsInFlight = 0;
let ticking = false;

// One immediate at a time while GPU ops are in flight: a pending immediate
// makes libuv poll for I/O without sleeping, so the completion an op's worker
// thread posts is picked up on the loop's next turn instead of after the
// kernel wakes the thread (30-100 us measured on the H200 host).
function tick(): void {
  if (gpuOpsInFlight > 0) setImmediate(tick);
  else ticking = false;
}

/**
 * The promise of a native op on `device` (-1: the CPU), returned as is; with
 * the 'spin' policy, the event loop keeps turning until it settles when the op
 * runs on a GPU. CPU ops are left alone: their time is host work, and a loop
 * kept busy would compete with it.
 */
export function whileGpuWorks<T>(device: number, work: Promise<T>): Promise<T> {
  if (device < 0 || !native().getWaitPolicy()) return work;
  gpuOpsInFlight++;
  if (!ticking) {
    ticking = true;
    setImmediate(tick);
  }
  return work.finally(() => {
    gpuOpsInFlight--;
  });
}

/** GPU ops of this thread the event loop is kept turning for (tests). */
export function gpuOpsKeepingLoopAwake(): number {
  return gpuOpsInFlight;
}

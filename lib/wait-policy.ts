// How the package's worker threads wait for the GPU work of an op: the
// latency / CPU-time trade-off a server chooses once for the process.
import { native } from './native';
import { typeName } from './args';

export type WaitPolicy = 'spin' | 'sleep';

/**
 * 'spin' (the default): the worker thread that waits for an op polls its
 * completion event, yielding the core between polls, so the promise resolves
 * within microseconds of the GPU finishing (the way CUDA's own default
 * synchronisation waits). 'sleep': it sleeps on the event (no CPU time while
 * the GPU works; waking takes 0.05-0.3 ms more on a server CPU).
 * Process-wide (all worker threads); the event loop is never blocked either way.
 */
export function setWaitPolicy(policy: WaitPolicy): void {
  if (typeof policy !== 'string') throw new TypeError(`wait policy must be 'spin' or 'sleep', got ${typeName(policy)}`);
  if (policy !== 'spin' && policy !== 'sleep') throw new RangeError(`wait policy must be 'spin' or 'sleep', got '${policy as string}'`);
  native().setWaitPolicy(policy === 'spin');
}

export function getWaitPolicy(): WaitPolicy {
  return native().getWaitPolicy() ? 'spin' : 'sleep';
}

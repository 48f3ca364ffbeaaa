// The process-wide wait policy: how worker threads wait for an op's GPU work
// ('spin' polls the completion event and keeps the event loop turning, 'sleep'
// blocks on it). Argument checks
// everywhere; on a GPU, both policies give bit-identical prefill results and
// neither blocks the event loop.
import { describeGpu } from './helpers/gpu';
import { getWaitPolicy, gpuOpsKeepingLoopAwake, setWaitPolicy, whileGpuWorks, type WaitPolicy } from '../lib/wait-policy';
import { prefill } from '../lib/ops';
import { empty, tensor } from '../lib/tensor';
import { Rng } from '../lib/rng';
import { toBFloat16 } from '../lib/dtype';

afterEach(() => setWaitPolicy('spin'));

describe('setWaitPolicy', () => {
  test("defaults to 'spin' and reads back what was set", () => {
    expect(getWaitPolicy()).toBe('spin');
    setWaitPolicy('sleep');
    expect(getWaitPolicy()).toBe('sleep');
    setWaitPolicy('spin');
    expect(getWaitPolicy()).toBe('spin');
  });

  test.each([
    [undefined, TypeError, /must be 'spin' or 'sleep', got undefined/],
    [true, TypeError, /got boolean/],
    [1, TypeError, /got number/],
    ['SPIN', RangeError, /got 'SPIN'/],
    ['', RangeError, /got ''/],
  ])('%p is rejected and the policy is unchanged', (bad, type, message) => {
    setWaitPolicy('sleep');
    expect(() => setWaitPolicy(bad as unknown as WaitPolicy)).toThrow(type);
    expect(() => setWaitPolicy(bad as unknown as WaitPolicy)).toThrow(message);
    expect(getWaitPolicy()).toBe('sleep');
  });
});

// The event loop is kept turning (one pending immediate) while GPU ops are in
// flight under 'spin'; here the "op" is a promise settled by a timer, so the
// bookkeeping is checked on any machine.
describe('whileGpuWorks', () => {
  const immediates = (): number => process.getActiveResourcesInfo().filter((r) => r === 'Immediate').length;
  const later = <T>(ms: number, value: T, fail = false): Promise<T> =>
    new Promise((resolve, reject) => setTimeout(() => (fail ? reject(new Error(String(value))) : resolve(value)), ms));
  // Samples the pending immediates from timers while `work` is pending.
  const sampleWhile = async (work: Promise<unknown>): Promise<number[]> => {
    const seen: number[] = [];
    let done = false;
    void work.then(
      () => (done = true),
      () => (done = true),
    );
    while (!done) {
      await new Promise((r) => setTimeout(r, 2));
      if (!done) seen.push(immediates());
    }
    return seen;
  };
  const settleLoop = () => new Promise((r) => setTimeout(r, 5));

  test("'spin' on a GPU device: exactly one immediate pending while the op runs, none after", async () => {
    setWaitPolicy('spin');
    await settleLoop();
    const before = immediates();
    const work = whileGpuWorks(0, later(40, 'value'));
    expect(gpuOpsKeepingLoopAwake()).toBe(1);
    const seen = await sampleWhile(work);
    await expect(work).resolves.toBe('value');
    expect(seen.length).toBeGreaterThan(3);
    for (const n of seen) expect(n).toBe(before + 1);
    await settleLoop();
    expect(gpuOpsKeepingLoopAwake()).toBe(0);
    expect(immediates()).toBe(before);
  });

  test('many overlapping ops share one ticker, and a rejection is passed on and counted out', async () => {
    setWaitPolicy('spin');
    await settleLoop();
    const before = immediates();
    const ops = Array.from({ length: 24 }, (_, i) => whileGpuWorks(i % 2, later(10 + i * 2, i, i % 5 === 4)));
    expect(gpuOpsKeepingLoopAwake()).toBe(24);
    const seen = await sampleWhile(Promise.allSettled(ops));
    for (const n of seen) expect(n).toBe(before + 1);
    const results = await Promise.allSettled(ops);
    results.forEach((r, i) => {
      if (i % 5 === 4) expect(r).toEqual({ status: 'rejected', reason: new Error(String(i)) });
      else expect(r).toEqual({ status: 'fulfilled', value: i });
    });
    expect(gpuOpsKeepingLoopAwake()).toBe(0);
    await settleLoop();
    expect(immediates()).toBe(before);
    // A new op after the ticker stopped starts it again.
    const again = whileGpuWorks(0, later(15, 'again'));
    const seenAgain = await sampleWhile(again);
    for (const n of seenAgain) expect(n).toBe(before + 1);
    await settleLoop();
    expect(immediates()).toBe(before);
  });

  test("'sleep', and CPU ops under either policy, leave the loop alone", async () => {
    await settleLoop();
    const before = immediates();
    for (const [policy, device] of [
      ['sleep', 0],
      ['spin', -1],
      ['sleep', -1],
    ] as const) {
      setWaitPolicy(policy);
      const work = whileGpuWorks(device, later(20, policy));
      expect(gpuOpsKeepingLoopAwake()).toBe(0);
      const seen = await sampleWhile(work);
      for (const n of seen) expect(n).toBe(before);
      await expect(work).resolves.toBe(policy);
    }
  });
});

describeGpu('wait policy on the GPU', () => {
  const N0 = 1024;
  const make = async (h: number, seed: number, N = N0) => {
    const rng = new Rng(seed);
    const x = Float32Array.from({ length: h * N * 64 }, () => rng.normal());
    return tensor(toBFloat16(x), { shape: [1, h, N, 64], dtype: 'bfloat16', device: 'cuda' });
  };

  test("'spin' keeps the loop turning for a GPU prefill in flight, and stops when it resolves", async () => {
    const [q, k, v] = [await make(8, 4), await make(2, 5), await make(2, 6)];
    const out = empty([1, 8, N0, 64], { dtype: 'bfloat16', device: 'cuda' });
    setWaitPolicy('spin');
    const calls = Array.from({ length: 4 }, () => prefill(q, k, v, { block: 64 }, { out, returnMask: false }));
    expect(gpuOpsKeepingLoopAwake()).toBe(4);
    await Promise.all(calls);
    expect(gpuOpsKeepingLoopAwake()).toBe(0);
    setWaitPolicy('sleep');
    const slept = prefill(q, k, v, { block: 64 }, { out, returnMask: false });
    expect(gpuOpsKeepingLoopAwake()).toBe(0);
    await slept;
    [q, k, v, out].forEach((t) => t.dispose());
  });

  test('spin and sleep give bit-identical prefill outputs; the event loop keeps running', async () => {
    // Long enough (16 calls of ~2-3 ms on an H200) for a 1 ms timer to come due while they run.
    const N = 16384;
    const [q, k, v] = [await make(8, 1, N), await make(2, 2, N), await make(2, 3, N)];
    const results: Record<string, Uint16Array> = {};
    for (const policy of ['sleep', 'spin'] as const) {
      setWaitPolicy(policy);
      const out = empty([1, 8, N, 64], { dtype: 'bfloat16', device: 'cuda' });
      // Timers fire while the calls are in flight: the wait is on worker threads.
      let ticks = 0;
      const timer = setInterval(() => ticks++, 0);
      const calls = Array.from({ length: 16 }, () => prefill(q, k, v, { block: 64 }, { out, returnMask: false }));
      const r = await Promise.all(calls);
      clearInterval(timer);
      expect(ticks).toBeGreaterThan(0);
      for (const x of r) expect(x.stats.density).toBeGreaterThan(0);
      results[policy] = new Uint16Array((await out.toHost()).buffer.slice(0));
      out.dispose();
    }
    expect(Buffer.compare(Buffer.from(results.spin.buffer), Buffer.from(results.sleep.buffer))).toBe(0);
    [q, k, v].forEach((t) => t.dispose());
  });
});

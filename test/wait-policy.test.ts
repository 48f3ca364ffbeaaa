// The process-wide wait policy: how worker threads wait for an op's GPU work
// ('spin' polls the completion event, 'sleep' blocks on it). Argument checks
// everywhere; on a GPU, both policies give bit-identical prefill results and
// neither blocks the event loop.
import { describeGpu } from './helpers/gpu';
import { getWaitPolicy, setWaitPolicy, type WaitPolicy } from '../lib/wait-policy';
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

describeGpu('wait policy on the GPU', () => {
  const N = 1024;
  const make = async (h: number, seed: number) => {
    const rng = new Rng(seed);
    const x = Float32Array.from({ length: h * N * 64 }, () => rng.normal());
    return tensor(toBFloat16(x), { shape: [1, h, N, 64], dtype: 'bfloat16', device: 'cuda' });
  };

  test('spin and sleep give bit-identical prefill outputs; the event loop keeps running', async () => {
    const [q, k, v] = [await make(8, 1), await make(2, 2), await make(2, 3)];
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

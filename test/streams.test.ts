// Ops on a caller's CUDA stream (run.stream), Tensor.copyFrom, and how both
// reject streams they cannot use. On the GPU, work is put on a stream just
// before the op (a host wait of a few hundred ms, then a copy that produces an
// input): the op gives the right result only if it runs after that work.
import * as prism from '../lib/index';
import type { BlockMask, Tensor } from '../lib/index';
import { native } from '../lib/native';
import { checkStream } from '../lib/tensor';
import { describeGpu } from './helpers/gpu';
import { nativeError, values } from './helpers/data';


const bytesOf = async (t: Tensor) => Buffer.from((await t.toHost()).buffer);

describe('stream validation', () => {
  test('run.stream on CPU tensors is a RangeError; a non-bigint a TypeError', async () => {
    const shape = [1, 2, 64, 16] as const;
    const q = await prism.tensor(values(2 * 64 * 16, 1), { shape, device: 'cpu' });
    await expect(prism.estimate(q, q, { block: 16 }, { stream: 1234n })).rejects.toThrow(RangeError);
    await expect(prism.estimate(q, q, { block: 16 }, { stream: 1234n })).rejects.toThrow(/needs tensors on a CUDA device/);
    await expect(prism.attention(q, q, q, null, {}, { stream: 99n })).rejects.toThrow(RangeError);
    await expect(prism.prefill(q, q, q, { block: 16 }, { stream: 99n })).rejects.toThrow(RangeError);
    await expect(prism.attention(q, q, q, null, {}, { stream: 5 as unknown as bigint })).rejects.toThrow(TypeError);
    await expect(prism.attention(q, q, q, null, {}, 'fast' as never)).rejects.toThrow(TypeError);
    q.dispose();
  });

  test('0n, 1n, 2n and out-of-range handles are RangeErrors naming why', () => {
    const check = (s: unknown) => checkStream(s, 'cuda:0', 'run.stream');
    expect(() => check(0n)).toThrow(/0n \(the legacy default stream\) is not supported/);
    expect(() => check(1n)).toThrow(/cudaStreamLegacy/);
    expect(() => check(2n)).toThrow(/cudaStreamPerThread/);
    expect(() => check(-5n)).toThrow(RangeError);
    expect(() => check(2n ** 64n)).toThrow(RangeError);
    expect(check(0x7f00_1234_5678n)).toBe(0x7f00_1234_5678n);
    expect(check(undefined)).toBeUndefined();
  });

  test('the addon checks streams on its own too', async () => {
    const N = native();
    const q = await prism.tensor(values(2 * 64 * 16, 1), { shape: [1, 2, 64, 16], device: 'cpu' });
    const out = new N.Tensor(-1, 0, [1, 2, 64, 16], 0);
    const params = { block: 64, softmaxScale: 0 };
    expect(nativeError(() => N.attention(q.native, q.native, q.native, out, null, params, undefined, 0n))).toBe(
      'RangeError: stream 0n (the legacy default stream) is not supported: pass a stream you created',
    );
    expect(nativeError(() => N.attention(q.native, q.native, q.native, out, null, params, undefined, 2n))).toMatch(
      /^RangeError: stream 2n \(cudaStreamPerThread\)/,
    );
    expect(nativeError(() => N.attention(q.native, q.native, q.native, out, null, params, undefined, 77n))).toBe(
      'RangeError: a stream needs tensors on a CUDA device; they are on the cpu',
    );
    expect(nativeError(() => N.attention(q.native, q.native, q.native, out, null, params, undefined, 7 as never))).toBe(
      'TypeError: stream must be a bigint (a cudaStream_t)',
    );
    expect(nativeError(() => N.copy(out, q.native, 77n))).toMatch(/^RangeError: a stream needs tensors on a CUDA device/);
    out.dispose();
    q.dispose();
  });
});

describe('Tensor.copyFrom on the CPU', () => {
  test('copies the bytes; checks device, dtype, shape, layout', async () => {
    const shape = [1, 2, 8, 4] as const;
    const src = await prism.tensor(values(64, 3), { shape, device: 'cpu' });
    const dst = prism.empty(shape, { device: 'cpu' });
    await dst.copyFrom(src);
    expect(await bytesOf(dst)).toEqual(await bytesOf(src));
    await dst.copyFrom(dst); // onto itself: unchanged
    expect(await bytesOf(dst)).toEqual(await bytesOf(src));
    await expect(dst.copyFrom(prism.empty(shape, { device: 'cpu', dtype: 'float16' }))).rejects.toThrow(TypeError);
    await expect(dst.copyFrom(prism.empty([1, 2, 4, 8], { device: 'cpu' }))).rejects.toThrow(/shapes differ/);
    await expect(dst.copyFrom(prism.empty(shape, { device: 'cpu', layout: 'bnhd' }))).rejects.toThrow(/layouts differ/);
    await expect(dst.copyFrom({} as Tensor)).rejects.toThrow(/^src must be a Tensor \(from tensor\(\), empty\(\), fromDevicePointer\(\) or an op\), got Object$/);
    await expect(dst.copyFrom(Object.create(prism.Tensor.prototype))).rejects.toThrow(/^src must be a Tensor .*, got an object made from Tensor.prototype without a native tensor$/);
    await expect(dst.copyFrom(src, { strem: 5n } as never)).rejects.toThrow(/^unknown copyFrom option field 'strem' \(allowed: stream\)$/);
    await expect(dst.copyFrom(src, 5 as never)).rejects.toThrow(/^opts must be an object \{ stream\? \}, got number$/);
    await dst.copyFrom(src, null); // null: the defaults, as for every options object
    await expect(dst.copyFrom(src, { stream: 123n })).rejects.toThrow(RangeError);
    src.dispose();
    await expect(dst.copyFrom(src)).rejects.toThrow('tensor has been disposed');
    dst.dispose();
  });
});

interface Case {
  q: Tensor;
  k: Tensor;
  v: Tensor;
  mask: BlockMask;
}

async function makeCase(seed: number): Promise<Case> {
  const [b, h, n, d] = [1, 4, 1024, 64];
  const opts = { shape: [b, h, n, d] as const, device: 'cuda' as const, dtype: 'bfloat16' as const };
  const [q, k, v] = await Promise.all([0, 1, 2].map((i) => prism.tensor(prism.toBFloat16(values(b * h * n * d, seed + i)), opts)));
  return { q, k, v, mask: await prism.estimate(q, k, { block: 64 }) };
}

function disposeCase(c: Case): void {
  for (const t of [c.q, c.k, c.v]) t.dispose();
  c.mask.dispose();
}

const DELAY_MS = 300;

describeGpu('ops on a caller stream', () => {
  const T = () => native().testing;

  test('attention waits for work already on its stream (and without the stream it does not)', async () => {
    const c = await makeCase(1);
    const want = await bytesOf(await prism.attention(c.q, c.k, c.v, c.mask));
    const stream = T().createStream(0);
    try {
      // Control: on the package's own stream the op overtakes the delayed copy and reads zeros.
      const early = prism.empty(c.q.shape, { device: 'cuda', dtype: 'bfloat16' });
      const copiedEarly = T().copyAfterDelay(early.native, c.q.native, stream, DELAY_MS);
      const raced = await prism.attention(early, c.k, c.v, c.mask);
      expect((await bytesOf(raced)).equals(want)).toBe(false);
      await copiedEarly;

      const q2 = prism.empty(c.q.shape, { device: 'cuda', dtype: 'bfloat16' });
      const copied = T().copyAfterDelay(q2.native, c.q.native, stream, DELAY_MS);
      const out = await prism.attention(q2, c.k, c.v, c.mask, {}, { stream });
      expect((await bytesOf(out)).equals(want)).toBe(true);
      await copied;
      for (const t of [early, raced, q2, out]) t.dispose();
    } finally {
      T().destroyStream(stream);
      disposeCase(c);
    }
  });

  test('estimate and timed attention on a caller stream', async () => {
    const c = await makeCase(11);
    const wantMask = await c.mask.toHost();
    const wantOut = await bytesOf(await prism.attention(c.q, c.k, c.v, c.mask));
    const stream = T().createStream(0);
    try {
      const k2 = prism.empty(c.k.shape, { device: 'cuda', dtype: 'bfloat16' });
      const copied = T().copyAfterDelay(k2.native, c.k.native, stream, DELAY_MS);
      const mask = await prism.estimate(c.q, k2, { block: 64 }, { stream });
      const got = await mask.toHost();
      expect(Buffer.from(got.mask).equals(Buffer.from(wantMask.mask))).toBe(true);
      expect(Buffer.from(got.indices.buffer).equals(Buffer.from(wantMask.indices.buffer))).toBe(true);
      await copied;
      const out = await prism.attention(c.q, k2, c.v, mask, {}, { stream, timing: { warmup: 1, iters: 3 } });
      expect(out.timesMs).toHaveLength(3);
      expect((await bytesOf(out)).equals(wantOut)).toBe(true);
      const pre = await prism.prefill(c.q, k2, c.v, { block: 64 }, { stream });
      expect((await bytesOf(pre.output)).equals(wantOut)).toBe(true);
      for (const t of [k2, out, pre.output]) t.dispose();
      mask.dispose();
      pre.mask?.dispose();
    } finally {
      T().destroyStream(stream);
      disposeCase(c);
    }
  });

  test('two streams at once, each op after its own stream’s work', async () => {
    const [a, b] = await Promise.all([makeCase(21), makeCase(31)]);
    const want = await Promise.all([a, b].map(async (c) => bytesOf(await prism.attention(c.q, c.k, c.v, c.mask))));
    const streams = [T().createStream(0), T().createStream(0)];
    try {
      const results = await Promise.all(
        [a, b].map(async (c, i) => {
          const q2 = prism.empty(c.q.shape, { device: 'cuda', dtype: 'bfloat16' });
          // Different delays, so the two streams finish out of order.
          const copied = T().copyAfterDelay(q2.native, c.q.native, streams[i], DELAY_MS * (2 - i));
          const outs = await Promise.all(
            [0, 1, 2].map(() => prism.attention(q2, c.k, c.v, c.mask, {}, { stream: streams[i] })),
          );
          await copied;
          const got = await Promise.all(outs.map(bytesOf));
          for (const t of [q2, ...outs]) t.dispose();
          return got;
        }),
      );
      results.forEach((got, i) => got.forEach((g) => expect(g.equals(want[i])).toBe(true)));
    } finally {
      for (const s of streams) T().destroyStream(s);
      disposeCase(a);
      disposeCase(b);
    }
  });

  test('copyFrom on a stream runs after the work on it', async () => {
    const src = await prism.tensor(prism.toBFloat16(values(1 << 20, 5)), { shape: [1, 4, 4096, 64], device: 'cuda', dtype: 'bfloat16' });
    const mid = prism.empty(src.shape, { device: 'cuda', dtype: 'bfloat16' });
    const dst = prism.empty(src.shape, { device: 'cuda', dtype: 'bfloat16' });
    const stream = T().createStream(0);
    try {
      const copied = T().copyAfterDelay(mid.native, src.native, stream, DELAY_MS);
      await dst.copyFrom(mid, { stream });
      expect((await bytesOf(dst)).equals(await bytesOf(src))).toBe(true);
      await copied;
      await expect(dst.copyFrom(src, { stream: 0n })).rejects.toThrow(RangeError);
    } finally {
      T().destroyStream(stream);
      for (const t of [src, mid, dst]) t.dispose();
    }
  });
});

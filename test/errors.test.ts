// Every bad input gets a clear JS error (right class, message naming the
// problem) and the process survives; finalizers free forgotten tensors.
import { execFileSync } from 'child_process';
import * as path from 'path';
import * as prism from '../lib/index';
import type { Tensor } from '../lib/index';
import { native } from '../lib/native';
import { gpu } from './helpers/gpu';

const root = path.resolve(__dirname, '..');

function f32(n: number): Float32Array {
  return new Float32Array(n).map((_, i) => Math.sin(i));
}

async function cpuTensor(shape: [number, number, number, number], dtype: 'float32' | 'bfloat16' = 'float32'): Promise<Tensor> {
  const n = shape.reduce((a, b) => a * b, 1);
  const data = dtype === 'float32' ? f32(n) : prism.toBFloat16(f32(n));
  return prism.tensor(data, { shape, dtype, device: 'cpu' });
}

describe('tensor() rejects bad data and shapes', () => {
  const cases: Array<[string, () => Promise<unknown>, ErrorConstructor, RegExp]> = [
    ['rank 3 shape', () => prism.tensor(f32(8), { shape: [2, 2, 2] as never, device: 'cpu' }), RangeError, /rank 4/],
    ['rank 5 shape', () => prism.tensor(f32(32), { shape: [2, 2, 2, 2, 2] as never, device: 'cpu' }), RangeError, /rank 4/],
    ['zero-length sequence', () => prism.tensor(f32(0), { shape: [1, 1, 0, 8], device: 'cpu' }), RangeError, /sequence length must be >= 1/],
    ['negative dim', () => prism.tensor(f32(8), { shape: [1, -1, 1, 8], device: 'cpu' }), RangeError, /heads must be >= 1/],
    ['fractional dim', () => prism.tensor(f32(8), { shape: [1, 1, 1.5, 8], device: 'cpu' }), RangeError, /must be an integer/],
    ['string dim', () => prism.tensor(f32(8), { shape: [1, 1, '1', 8] as never, device: 'cpu' }), TypeError, /must be a number/],
    ['wrong length', () => prism.tensor(f32(7), { shape: [1, 1, 1, 8], device: 'cpu' }), RangeError, /has 7 elements but shape \[1, 1, 1, 8\] needs 8/],
    ['Float64Array', () => prism.tensor(new Float64Array(8) as never, { shape: [1, 1, 1, 8], device: 'cpu' }), TypeError, /must be a Float32Array, got Float64Array/],
    ['Float32Array for bf16', () => prism.tensor(f32(8), { shape: [1, 1, 1, 8], dtype: 'bfloat16', device: 'cpu' }), TypeError, /bfloat16 must be a Uint16Array/],
    ['Uint16Array for f32', () => prism.tensor(new Uint16Array(8), { shape: [1, 1, 1, 8], device: 'cpu' }), TypeError, /float32 must be a Float32Array/],
    ['plain array', () => prism.tensor([1, 2] as never, { shape: [1, 1, 1, 2], device: 'cpu' }), TypeError, /Float32Array/],
    ['unknown dtype', () => prism.tensor(f32(8), { shape: [1, 1, 1, 8], dtype: 'int8' as never, device: 'cpu' }), TypeError, /dtype must be one of/],
    ['unknown layout', () => prism.tensor(f32(8), { shape: [1, 1, 1, 8], layout: 'nhd' as never, device: 'cpu' }), TypeError, /layout must be/],
    ['bad device', () => prism.tensor(f32(8), { shape: [1, 1, 1, 8], device: 'tpu' as never }), RangeError, /device must be/],
  ];
  test.each(cases)('%s', async (_name, make, kind, message) => {
    const p = make();
    await expect(p).rejects.toThrow(kind);
    await expect(p).rejects.toThrow(message);
  });
});

describe('shape rules of the ops', () => {
  test('mismatched batch, heads, head_dim, lengths, dtypes', async () => {
    const q = await cpuTensor([1, 4, 32, 16]);
    await expect(prism.estimate(q, await cpuTensor([2, 2, 32, 16]))).rejects.toThrow(/batch sizes differ: q has 1, k has 2/);
    await expect(prism.estimate(q, await cpuTensor([1, 3, 32, 16]))).rejects.toThrow(
      'query heads (4) must be a multiple of kv heads (3)',
    );
    await expect(prism.estimate(q, await cpuTensor([1, 2, 32, 8]))).rejects.toThrow(/head_dim differs: q has 16, k has 8/);
    await expect(prism.estimate(q, await cpuTensor([1, 2, 16, 16]))).rejects.toThrow(
      /query length \(32\) must not exceed key length \(16\)/,
    );
    await expect(prism.estimate(q, await cpuTensor([1, 2, 32, 16], 'bfloat16'))).rejects.toThrow(TypeError);
    const k = await cpuTensor([1, 2, 32, 16]);
    await expect(prism.attention(q, k, await cpuTensor([1, 2, 31, 16]))).rejects.toThrow(/k and v must have the same shape/);
    await expect(prism.attention(q, k, await cpuTensor([1, 2, 32, 16], 'bfloat16'))).rejects.toThrow(/dtypes differ/);
    const odd = await cpuTensor([1, 1, 8, 7]);
    await expect(prism.estimate(odd, odd)).rejects.toThrow(/head_dim must be an even integer/);
    await expect(prism.estimate(q, 'k' as never)).rejects.toThrow(TypeError);
    await expect(prism.relativeError(q, k)).rejects.toThrow(/shapes differ/);
  });

  test('a mask must match the tensors it is used with', async () => {
    const q = await cpuTensor([1, 2, 64, 16]);
    const k = await cpuTensor([1, 2, 64, 16]);
    const mask = await prism.estimate(q, k, { block: 16 });
    const q2 = await cpuTensor([1, 2, 32, 16]);
    await expect(prism.attention(q2, k, k, mask)).rejects.toThrow(/mask was estimated for/);
    await expect(prism.attention(q, k, k, {} as never)).rejects.toThrow(TypeError);
    mask.dispose();
    await expect(prism.attention(q, k, k, mask)).rejects.toThrow(/disposed/);
    await expect(mask.toHost()).rejects.toThrow(/disposed/);
  });

  test('massRecall rows are range-checked', async () => {
    const q = await cpuTensor([1, 2, 8, 4]);
    await expect(prism.massRecall(q, q, null, [[0, 2, 0]])).rejects.toThrow(/head must be an integer in \[0, 1\]/);
    await expect(prism.massRecall(q, q, null, [])).rejects.toThrow(TypeError);
  });
});

describe('options', () => {
  const d = 128;
  test('defaults follow head_dim', () => {
    expect(prism.resolveEstimateOptions(undefined, 128)).toMatchObject({ block: 128, highDims: 64, lowDims: 96 });
    expect(prism.resolveEstimateOptions({}, 64)).toMatchObject({ highDims: 32, lowDims: 48, tauHigh: 0.95, topkLow: 16 });
  });
  const bad: Array<[object, ErrorConstructor, RegExp]> = [
    [{ blok: 64 }, TypeError, /unknown estimate option field 'blok'/],
    [{ block: '64' }, TypeError, /block must be a number/],
    [{ block: NaN }, RangeError, /block must be finite/],
    [{ block: 40 }, RangeError, /block must be an integer in \[16, 1024\] and a multiple of 16/],
    [{ block: 2048 }, RangeError, /\[16, 1024\]/],
    [{ highDims: 63 }, RangeError, /highDims must be an even integer in \[2, 128\]/],
    [{ lowDims: 256 }, RangeError, /lowDims must be an integer in \[2, 128\]/],
    [{ tauHigh: 0 }, RangeError, /tauHigh must be in \(0, 1\]/],
    [{ tauLow: 1.5 }, RangeError, /tauLow must be in \(0, 1\]/],
    [{ tempHigh: Infinity }, RangeError, /tempHigh must be finite/],
    [{ tempLow: -1 }, RangeError, /tempLow must be finite and > 0/],
    [{ topkHigh: 0 }, RangeError, /topkHigh must be an integer in \[1,/],
    [{ topkLow: 2.5 }, RangeError, /topkLow/],
    [{ calibrate: 'yes' }, TypeError, /calibrate must be a boolean/],
    [{ ropeLayout: 'gptj' }, RangeError, /ropeLayout must be one of 'half', 'interleaved'/],
    [{ method: 1 }, TypeError, /method must be a string/],
  ];
  test.each(bad)('%j', (opts, kind, message) => {
    expect(() => prism.resolveEstimateOptions(opts as never, d)).toThrow(kind);
    expect(() => prism.resolveEstimateOptions(opts as never, d)).toThrow(message);
  });

  test('estimate and attention reject bad options before running', async () => {
    const q = await cpuTensor([1, 1, 16, 8]);
    await expect(prism.estimate(q, q, { tauHigh: NaN })).rejects.toThrow(RangeError);
    await expect(prism.attention(q, q, q, null, { softmaxScale: -1 })).rejects.toThrow(/softmaxScale must be finite and > 0/);
    await expect(prism.attention(q, q, q, null, { scale: 1 } as never)).rejects.toThrow(/unknown attention option field 'scale'/);
    await expect(prism.prefill(q, q, q, { bogus: 1 } as never)).rejects.toThrow(/unknown prefill option field 'bogus'/);
  });
});

describe('lifetime and devices', () => {
  test('use after dispose', async () => {
    const t = await cpuTensor([1, 1, 4, 4]);
    t.dispose();
    t.dispose(); // idempotent
    expect(t.disposed).toBe(true);
    await expect(t.toHost()).rejects.toThrow('tensor has been disposed');
    await expect(prism.estimate(t, t)).rejects.toThrow(/tensor has been disposed/);
  });

  test('disposing while an op runs is safe', async () => {
    const q = await cpuTensor([1, 2, 256, 32]);
    const k = await cpuTensor([1, 2, 256, 32]);
    const running = prism.attention(q, k, k);
    q.dispose();
    k.dispose();
    const out = await running;
    expect((await out.toFloat32()).every(Number.isFinite)).toBe(true);
  });

  test('asking for CUDA without a usable GPU gives the reason', async () => {
    if (gpu.available) return;
    const reason = prism.info().cudaUnavailableReason ?? 'no CUDA device';
    await expect(prism.tensor(f32(4), { shape: [1, 1, 1, 4], device: 'cuda' })).rejects.toThrow(reason);
    expect(() => prism.empty([1, 1, 1, 4], { device: 'cuda:0' })).toThrow(/is not available/);
    expect(() => prism.fromDevicePointer(1234n, { shape: [1, 1, 1, 4], device: 'cuda' })).toThrow(/is not available/);
  });

  test('mixing devices is rejected', async () => {
    const a = await cpuTensor([1, 1, 16, 8]);
    if (!gpu.available) {
      const fake = { device: 'cuda:0' };
      // Only the device differs: the error names both devices.
      await expect(prism.relativeError(a, Object.assign(Object.create(Object.getPrototypeOf(a)), a, fake))).rejects.toThrow(
        'all tensors must be on the same device (got cpu and cuda:0)',
      );
      return;
    }
    const b = await a.to('cuda');
    await expect(prism.relativeError(a, b)).rejects.toThrow('all tensors must be on the same device (got cpu and cuda:0)');
  });

  test('forgotten tensors are freed by finalizers (RSS stays bounded)', () => {
    const script = `
      const p = require(${JSON.stringify(path.join(root, 'dist', 'lib', 'index.js'))});
      (async () => {
        const data = new Float32Array(256 * 1024); // 1 MiB per tensor
        const rss = () => process.memoryUsage().rss;
        for (let i = 0; i < 50; i++) await p.tensor(data, { shape: [1, 1, 1024, 256], device: 'cpu' });
        global.gc(); await new Promise((r) => setTimeout(r, 20)); global.gc();
        const base = rss();
        for (let i = 0; i < 1500; i++) await p.tensor(data, { shape: [1, 1, 1024, 256], device: 'cpu' });
        global.gc(); await new Promise((r) => setTimeout(r, 20)); global.gc();
        console.log(JSON.stringify({ grewMiB: (rss() - base) / 2 ** 20 }));
      })();
    `;
    const out = execFileSync(process.execPath, ['--expose-gc', '-e', script], { encoding: 'utf8' });
    const { grewMiB } = JSON.parse(out) as { grewMiB: number };
    // 1500 MiB were allocated; without finalizers RSS would grow by about that much.
    expect(grewMiB).toBeLessThan(300);
  });

  test('a rejected call does not disturb others', async () => {
    const q = await cpuTensor([1, 1, 16, 8]);
    const results = await Promise.allSettled([prism.estimate(q, q, { block: 40 }), prism.estimate(q, q)]);
    expect(results[0].status).toBe('rejected');
    expect(results[1].status).toBe('fulfilled');
  });

  test('the addon validates on its own too (defence in depth)', async () => {
    const N = native();
    const q = await cpuTensor([1, 4, 32, 16]);
    const k = await cpuTensor([1, 3, 32, 16]);
    const params = prism.resolveAttentionOptions({});
    const out = new N.Tensor(-1, 0, [1, 4, 32, 16], 0);
    // The addon throws synchronously on bad arguments; only work itself settles the promise.
    expect(() => N.attention(q.native, k.native, k.native, out, null, { block: 128, softmaxScale: params.softmaxScale })).toThrow(
      'query heads (4) must be a multiple of kv heads (3)',
    );
    const small = new N.Tensor(-1, 0, [1, 4, 16, 16], 0);
    expect(() => N.attention(q.native, q.native, q.native, small, null, { block: 128, softmaxScale: params.softmaxScale })).toThrow(
      'out must have the shape and dtype of q',
    );
    // Errors made by the addon belong to Node's main realm, not jest's sandbox: compare names.
    const nameOf = (f: () => unknown): string => {
      try {
        f();
      } catch (e) {
        return `${(e as Error).name}: ${(e as Error).message}`;
      }
      return 'no error';
    };
    expect(nameOf(() => N.diffNorms(q.native, {} as never))).toBe('TypeError: b must be a Tensor');
    expect(nameOf(() => new N.Tensor(-1, 9, [1], 0))).toBe('RangeError: dtype must be in [0, 5]');
    expect(nameOf(() => new N.Tensor(-1, 0, [1, 0], 0))).toMatch(/^RangeError: shape\[1\] must be in \[1, /);
  });
});

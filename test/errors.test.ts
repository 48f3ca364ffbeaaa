// Every bad input gets a clear JS error (right class, message naming the
// problem) and the process survives; finalizers free forgotten tensors.
import { execFileSync } from 'child_process';
import * as path from 'path';
import * as prism from '../lib/index';
import type { Tensor } from '../lib/index';
import { native } from '../lib/native';
import { gpu } from './helpers/gpu';
import { nativeError } from './helpers/data';

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

/** The error `p` rejects with: its class and message are both checked. */
async function rejectsWith(p: Promise<unknown>, kind: ErrorConstructor, message: RegExp | string): Promise<void> {
  const e = await p.then(
    () => new Error('resolved'),
    (err: unknown) => err,
  );
  expect(e).toBeInstanceOf(kind);
  if (typeof message === 'string') expect((e as Error).message).toBe(message);
  else expect((e as Error).message).toMatch(message);
}

function throwsWith(call: () => unknown, kind: ErrorConstructor, message: RegExp): void {
  expect(call).toThrow(kind);
  expect(call).toThrow(message);
}

describe('odd values name the argument instead of failing inside', () => {
  const bare = (): object => Object.create(null) as object;
  const shape: [number, number, number, number] = [1, 1, 1, 8];

  test.each<[string, () => Promise<unknown>, ErrorConstructor, RegExp]>([
    ['null-prototype data', () => prism.tensor(bare() as never, { shape, device: 'cpu' }), TypeError, /data for float32 must be a Float32Array, got object with a null prototype/],
    ['null-prototype dtype', () => prism.tensor(f32(8), { shape, dtype: bare() as never, device: 'cpu' }), TypeError, /dtype must be one of float32, float16, bfloat16, got object with a null prototype/],
    ['null-prototype layout', () => prism.tensor(f32(8), { shape, layout: bare() as never, device: 'cpu' }), TypeError, /layout must be 'bhnd' or 'bnhd', got object with a null prototype/],
    ['symbol dtype', () => prism.tensor(f32(8), { shape, dtype: Symbol('f32') as never, device: 'cpu' }), TypeError, /dtype must be one of .*, got Symbol\(f32\)/],
    ['BigInt dim', () => prism.tensor(f32(8), { shape: [1n, 1, 1, 8] as never, device: 'cpu' }), TypeError, /shape\[0\] \(batch\) must be a number, got bigint/],
    ['BigInt dims of rank 3', () => prism.tensor(f32(8), { shape: [1n, 1, 8] as never, device: 'cpu' }), RangeError, /shape must have rank 4 \[batch, heads, n, d\], got \[1n, 1, 8\]/],
    ['BigInt shape', () => prism.tensor(f32(8), { shape: 4n as never, device: 'cpu' }), TypeError, /shape must be an array \[batch, heads, n, d\], got bigint/],
    ['misspelt option', () => prism.tensor(f32(8), { shape, dtyp: 'float16', device: 'cpu' } as never), TypeError, /unknown tensor option field 'dtyp'/],
    ['options not an object', () => prism.tensor(f32(8), 'cpu' as never), TypeError, /opts must be an object of tensor options/],
    ['a throwing getter', () => prism.tensor(f32(8), { get shape(): never { throw new Error('boom'); } }), TypeError, /opts\.shape could not be read: boom/],
    ['Float32Array over a 16-bit dtype', () => prism.tensor(f32(8), { shape, dtype: 'float16', device: 'cpu' }), TypeError, /float16 must be a Uint16Array/],
  ])('tensor(): %s', async (_name, make, kind, message) => {
    await rejectsWith(make(), kind, message);
  });

  test('empty() takes no shape or unknown field in its options', () => {
    throwsWith(() => prism.empty(shape, { shape } as never), TypeError, /unknown tensor option field 'shape'/);
    throwsWith(() => prism.empty(shape, 5 as never), TypeError, /opts must be an object/);
    expect(prism.empty(shape, null).dtype).toBe('float32'); // null: the defaults
    throwsWith(() => prism.empty([1, 1, 1] as never), RangeError, /shape must have rank 4/);
  });

  test('prefill checks q and k like the other ops', async () => {
    const q = await cpuTensor([1, 1, 16, 8]);
    await rejectsWith(prism.prefill(undefined as never, q, q), TypeError, 'q must be a Tensor (from tensor(), empty(), fromDevicePointer() or an op), got undefined');
    await rejectsWith(prism.prefill(q, null as never, q), TypeError, /^k must be a Tensor .*, got null$/);
    await rejectsWith(prism.prefill(q, q, 3 as never), TypeError, /^v must be a Tensor .*, got number$/);
  });

  test('a forged Tensor or BlockMask is a TypeError in every op', async () => {
    const q = await cpuTensor([1, 1, 16, 8]);
    const forged = Object.create(prism.Tensor.prototype) as Tensor;
    const noHandle = /must be a Tensor .*, got an object made from Tensor\.prototype without a native tensor/;
    await rejectsWith(prism.estimate(forged, q), TypeError, noHandle);
    await rejectsWith(prism.timeEstimate(q, forged), TypeError, /^k must be a Tensor/);
    await rejectsWith(prism.attention(q, q, forged), TypeError, /^v must be a Tensor/);
    await rejectsWith(prism.timeAttention(forged, q, q), TypeError, noHandle);
    await rejectsWith(prism.prefill(forged, q, q), TypeError, noHandle);
    await rejectsWith(prism.massRecall(forged, q, null, [[0, 0, 0]]), TypeError, noHandle);
    await rejectsWith(prism.relativeError(q, forged), TypeError, /^b must be a Tensor .* without a native tensor/);
    // The handle itself cannot be forged from the addon's prototype either.
    const fakeHandle = Object.create(Object.getPrototypeOf(q.native)) as never;
    throwsWith(() => new prism.Tensor(fakeHandle, [1, 1, 16, 8], 'float32', 'bhnd'), TypeError, /handle must be a native tensor/);
    throwsWith(() => new prism.Tensor({} as never, [1, 1, 16, 8], 'float32', 'bhnd'), TypeError, /handle must be a native tensor/);
    const withFakeHandle = Object.assign(Object.create(prism.Tensor.prototype) as object, { native: fakeHandle });
    await rejectsWith(prism.estimate(q, withFakeHandle as never), TypeError, /^k must be a Tensor/);
    const mask = Object.create(prism.BlockMask.prototype) as never;
    await rejectsWith(prism.attention(q, q, q, mask), TypeError, /^mask must be a BlockMask \(from estimate, prefill or blockMask\) or null, got BlockMask$/);
    await rejectsWith(prism.massRecall(q, q, mask, [[0, 0, 0]]), TypeError, /^mask must be a BlockMask/);
    throwsWith(() => new prism.BlockMask(q as never, 'cpu', 0, {} as never), TypeError, /BlockMask is made by estimate\(\), prefill\(\) or blockMask\(\)/);
  });

  test('run options and timing', async () => {
    const q = await cpuTensor([1, 1, 16, 8]);
    await rejectsWith(prism.estimate(q, q, {}, { timing: null as never }), TypeError, 'run.timing must be an object { warmup?, iters }, got null');
    await rejectsWith(prism.attention(q, q, q, null, {}, { timing: null as never }), TypeError, /^run\.timing must be an object/);
    await rejectsWith(prism.timeEstimate(q, q, {}, null as never), TypeError, /^timing must be an object/);
    await rejectsWith(prism.estimate(q, q, {}, 5 as never), TypeError, /^run must be an object of run options, got number$/);
    await rejectsWith(prism.estimate(q, q, {}, { timng: { iters: 1 } } as never), TypeError, /unknown run option field 'timng'/);
    await rejectsWith(prism.estimate(q, q, {}, { timing: { iters: '3' as never } }), TypeError, 'run.timing.iters must be a number, got string');
    await rejectsWith(prism.attention(q, q, q, null, {}, { timing: { iters: 0 } }), RangeError, /run\.timing\.iters must be an integer in \[1, 100000\], got 0/);
    await rejectsWith(prism.timeAttention(q, q, q, null, {}, { iters: 1, warmup: 10001 }), RangeError, /timing\.warmup must be an integer in \[0, 10000\], got 10001/);
    await rejectsWith(prism.timeAttention(q, q, q, null, {}, { iters: 1, warmups: 1 } as never), TypeError, /unknown timing field 'warmups'/);
    // The limits are the addon's: the largest values run.
    const ok = await prism.estimate(q, q, {}, { timing: { warmup: 0, iters: 2 } });
    expect(ok.timesMs).toHaveLength(2);
  });

  test('massRecall rows of the wrong kind', async () => {
    const q = await cpuTensor([1, 2, 8, 4]);
    await rejectsWith(prism.massRecall(q, q, null, [[0, 0, Object.create(null) as never]]), TypeError, 'rows[0]: row must be a number, got object with a null prototype');
    await rejectsWith(prism.massRecall(q, q, null, [Object.create(null) as never]), TypeError, /^rows\[0\]: batch must be a number, got object with a null prototype$/);
    await rejectsWith(prism.massRecall(q, q, null, [[0, 0]] as never), TypeError, /^rows\[0\] must be \[batch, head, row\], got Array$/);
    await rejectsWith(prism.massRecall(q, q, null, [0, 1]), RangeError, /flat rows list must hold \(batch, head, row\) triples, got 2 values/);
    await rejectsWith(prism.massRecall(q, q, null, 'rows' as never), TypeError, /^rows must be a non-empty array/);
    await rejectsWith(prism.massRecall(q, q, null, [0, 1, 8]), RangeError, /^rows\[2\]: row must be an integer in \[0, 7\], got 8$/);
    // Both forms work.
    const flat = await prism.massRecall(q, q, null, new Int32Array([0, 1, 7]));
    expect(Array.from(flat)).toEqual([1]);
  });

  test.each<[string, () => unknown, RegExp]>([
    ['toBFloat16(null)', () => prism.toBFloat16(null as never), /^toBFloat16: x must be a Float32Array, got null$/],
    ['toFloat16(undefined)', () => prism.toFloat16(undefined as never), /^toFloat16: x must be a Float32Array, got undefined$/],
    ['toFloat16(string)', () => prism.toFloat16('abc' as never), /^toFloat16: x must be a Float32Array, got string$/],
    ['fromBFloat16(Float32Array)', () => prism.fromBFloat16(f32(4) as never), /^fromBFloat16: x must be a Uint16Array, got Float32Array$/],
    ['fromFloat16(plain array)', () => prism.fromFloat16([1, 2] as never), /^fromFloat16: x must be a Uint16Array, got Array$/],
    ['toBFloat16 wrong out', () => prism.toBFloat16(f32(4), new Float32Array(4) as never), /^toBFloat16: out must be a Uint16Array, got Float32Array$/],
    ['fromFloat16 short out', () => prism.fromFloat16(new Uint16Array(4), new Float32Array(3)), /^fromFloat16: out is shorter than the input$/],
  ])('%s', (_name, call, message) => {
    throwsWith(call, /shorter/.test(message.source) ? RangeError : TypeError, message);
  });

  test('typed arrays over a SharedArrayBuffer are copied when tensor() is called', async () => {
    const shared = new Float32Array(new SharedArrayBuffer(8 * 4));
    shared.set(f32(8));
    const pending = prism.tensor(shared, { shape, device: 'cpu' });
    shared.fill(-1); // another thread could do this while the upload runs
    expect(Array.from(await (await pending).toHost())).toEqual(Array.from(f32(8)));
    const bits = new Uint16Array(new SharedArrayBuffer(8 * 2));
    bits.set(prism.toBFloat16(f32(8)));
    const t = await prism.tensor(bits, { shape, dtype: 'bfloat16', device: 'cpu' });
    expect(Array.from(await t.toFloat32())).toEqual(Array.from(prism.fromBFloat16(prism.toBFloat16(f32(8)))));
    // The conversions read shared memory as well.
    expect(Array.from(prism.fromBFloat16(bits))).toEqual(Array.from(await t.toFloat32()));
  });

  test('Tensor.write() takes typed arrays over a SharedArrayBuffer too (copied when called)', async () => {
    const t = prism.empty(shape, { device: 'cpu' });
    const whole = new Float32Array(new SharedArrayBuffer(8 * 4));
    whole.set(f32(8));
    const pending = t.write(whole);
    whole.fill(-1); // changed while the upload runs: the copy was taken at the call
    await pending;
    expect(Array.from(await t.toHost())).toEqual(Array.from(f32(8)));
    const part = new Float32Array(new SharedArrayBuffer(3 * 4)).fill(5);
    await t.write(part, 4);
    expect(Array.from(await t.toHost())).toEqual([...Array.from(f32(8)).slice(0, 4), 5, 5, 5, f32(8)[7]]);
    await expect(t.write(part, 6)).rejects.toThrow(/^3 elements at offset 6 run past the tensor's 8$/);
    const b = prism.empty(shape, { device: 'cpu', dtype: 'bfloat16' });
    const bits = new Uint16Array(new SharedArrayBuffer(8 * 2));
    bits.set(prism.toBFloat16(f32(8)));
    await b.write(bits);
    expect(Array.from(await b.toFloat32())).toEqual(Array.from(prism.fromBFloat16(prism.toBFloat16(f32(8)))));
    t.dispose();
    b.dispose();
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
    [{ tauHigh: 0 }, RangeError, /tauHigh must be in \[1\.401298464324817e-45 \(2\^-149, the smallest float32 > 0\), 1\], got 0/],
    [{ tauLow: 1.5 }, RangeError, /tauLow must be in \[1\.401298464324817e-45 .*, 1\], got 1\.5/],
    [{ tempHigh: Infinity }, RangeError, /tempHigh must be finite/],
    [{ tempLow: -1 }, RangeError, /tempLow must be in \[1e-24, 1e\+24\], got -1/],
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
    await expect(prism.attention(q, q, q, null, { softmaxScale: -1 })).rejects.toThrow(/softmaxScale must be in \[1e-24, 1e\+24\], got -1/);
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
    expect(nativeError(() => N.diffNorms(q.native, {} as never))).toBe('TypeError: b must be a Tensor');
    expect(nativeError(() => new N.Tensor(-1, 9, [1], 0))).toBe('RangeError: dtype must be in [0, 5]');
    expect(nativeError(() => new N.Tensor(-1, 0, [1, 0], 0))).toMatch(/^RangeError: shape\[1\] must be in \[1, /);
  });
});

// CUDA backend vs the float64 reference and vs the CPU backend. Skipped with a
// notice when no usable GPU (PRISM_REQUIRE_GPU=1 turns that into a failure).

import { describeGpu } from './helpers/gpu';
import { runCase, validate, prepareCase, TOLERANCES, type ValidationCase } from '../lib/validate';
import { relativeError, maxAbsError, bnhdToBhnd } from '../lib/validate';
import { countNonFinite, mismatchedRows } from './helpers/compare';
import { nativeError } from './helpers/data';
import { tensor, empty } from '../lib/tensor';
import { info, native, type NativeAttentionTuning } from '../lib/native';
import { memoryStats } from '../lib/memory';
import { randomWorkload } from '../lib/workloads/random';
import { estimate, attention, prefill } from '../lib/ops';
import { referenceAttention, referenceEstimate, defaultResolvedOptions } from '../lib/reference';
import { resolveEstimateOptions } from '../lib/options';
import type { EstimateOptions } from '../lib/types';
import { lengthSweep, optionSweep, validationCase, type Sweep } from './helpers/sweep';


const lengths: Array<[number, number]> = [
  [1, 1],
  [17, 257],
  [130, 130],
  [130, 300],
  [257, 257],
  [300, 300],
  [513, 700],
  [1000, 1000],
];
const optionSets: EstimateOptions[] = [
  { block: 64, selection: 'topk', topkHigh: 2, topkLow: 4 },
  { block: 64, calibrate: false, tempHigh: 0.25, tempLow: 3 },
  { block: 64, method: 'meanpool' },
  { block: 128, tauHigh: 0.8, tauLow: 0.6, forceSink: false },
];
const sweep: Sweep[] = [
  ...lengthSweep(lengths, (i) => ({ dtypes: ['float16', 'bfloat16'], block: [64, 128, 256][i % 3], layout: i % 3 === 2 ? 'bnhd' : 'bhnd' })),
  ...optionSweep(optionSets, (i) => ({ nq: 611 + i, nk: 933, dtype: i % 2 ? 'float16' : 'bfloat16', layout: 'bhnd' })),
];

describeGpu('CUDA backend', () => {
  test.each(sweep.map((c, i) => [i, c] as const))('vs reference, case %i', async (i, c) => {
    const vc = validationCase(c, i, `gpu case ${i}`, 200 + i);
    const r = await runCase(vc, 'cuda');
    expect(r.failures).toEqual([]);
    expect(r.sparseRelError).toBeLessThanOrEqual(TOLERANCES[c.dtype]);
    expect(r.denseRelError).toBeLessThanOrEqual(TOLERANCES[c.dtype]);
    expect(r.mask.agreement).toBeGreaterThan(0.97);
  });

  test('CUDA and CPU backends agree (masks on separated rows, outputs)', async () => {
    const c: ValidationCase = {
      name: 'cpu-vs-cuda',
      kind: 'structured',
      dims: { batch: 1, hq: 8, hkv: 2, nq: 777, nk: 1000, d: 128 },
      dtype: 'bfloat16',
      layout: 'bhnd',
      opts: { block: 64 },
      seed: 77,
    };
    const p = prepareCase(c);
    const out: Record<string, { mask: Awaited<ReturnType<Awaited<ReturnType<typeof estimate>>['toHost']>>; o: Float32Array }> = {};
    for (const device of ['cpu', 'cuda'] as const) {
      const q = await tensor(p.native.q, { shape: [1, 8, 777, 128], dtype: c.dtype, device });
      const k = await tensor(p.native.k, { shape: [1, 2, 1000, 128], dtype: c.dtype, device });
      const v = await tensor(p.native.v, { shape: [1, 2, 1000, 128], dtype: c.dtype, device });
      const m = await estimate(q, k, c.opts);
      const o = await attention(q, k, v, m);
      out[device] = { mask: await m.toHost(), o: await o.toFloat32() };
      [q, k, v, o].forEach((t) => t.dispose());
      m.dispose();
    }
    const ref = referenceEstimate(p.ref.q, p.ref.k, c.dims, resolveEstimateOptions(c.opts, 128));
    const sepMismatch = mismatchedRows(ref, out.cuda.mask).filter((r) => ref.scores.margin[r] > 1e-4);
    expect(sepMismatch).toEqual([]);
    const cpuMis = mismatchedRows(ref, out.cpu.mask).filter((r) => ref.scores.margin[r] > 1e-4);
    expect(cpuMis).toEqual([]);
    if (Array.from(out.cpu.mask.mask).every((x, i) => x === out.cuda.mask.mask[i])) {
      expect(relativeError(out.cuda.o, out.cpu.o)).toBeLessThan(2 * TOLERANCES.bfloat16);
    }
  });

  test('every output element is written (poisoned output memory, no NaN)', async () => {
    const dims = { batch: 1, hq: 4, hkv: 4, nq: 200, nk: 200, d: 64 };
    const c: ValidationCase = { name: 'poison', kind: 'random', dims, dtype: 'float16', layout: 'bhnd', opts: { block: 64 }, seed: 5 };
    const p = prepareCase(c);
    // poison the allocator: fill and free a few buffers of the output size with NaN bits
    for (let i = 0; i < 4; i++) {
      const junk = await tensor(new Uint16Array(4 * 200 * 64).fill(0x7e00), { shape: [1, 4, 200, 64], dtype: 'float16', device: 'cuda' });
      junk.dispose();
    }
    const q = await tensor(p.native.q, { shape: [1, 4, 200, 64], dtype: 'float16', device: 'cuda' });
    const k = await tensor(p.native.k, { shape: [1, 4, 200, 64], dtype: 'float16', device: 'cuda' });
    const v = await tensor(p.native.v, { shape: [1, 4, 200, 64], dtype: 'float16', device: 'cuda' });
    const o = await attention(q, k, v, null);
    const got = await o.toFloat32();
    expect(countNonFinite(got)).toBe(0);
    const ref = referenceAttention(p.ref.q, p.ref.k, p.ref.v, dims, null, null, 128);
    expect(relativeError(got, ref)).toBeLessThan(TOLERANCES.float16);
    [q, k, v, o].forEach((t) => t.dispose());
    void empty;
  });

  test.each([
    [2048, 'bfloat16', 128],
    [4096, 'float16', 64],
  ] as const)('larger shape N=%i %s d=%i, block 128: sampled rows vs reference', async (n, dtype, d) => {
    const dims = { batch: 1, hq: 4, hkv: 1, nq: n, nk: n, d };
    const c: ValidationCase = { name: 'large', kind: 'structured', dims, dtype, layout: 'bhnd', opts: { block: 128 }, seed: 9 };
    const p = prepareCase(c);
    const q = await tensor(p.native.q, { shape: [1, 4, n, d], dtype, device: 'cuda' });
    const k = await tensor(p.native.k, { shape: [1, 1, n, d], dtype, device: 'cuda' });
    const v = await tensor(p.native.v, { shape: [1, 1, n, d], dtype, device: 'cuda' });
    const m = await estimate(q, k, c.opts);
    const host = await m.toHost();
    const ref = referenceEstimate(p.ref.q, p.ref.k, dims, defaultResolvedOptions(d, { block: 128 }));
    expect(mismatchedRows(ref, host).filter((r) => ref.scores.margin[r] > 1e-4)).toEqual([]);
    const o = await attention(q, k, v, m);
    const got = await o.toFloat32();
    expect(countNonFinite(got)).toBe(0);
    const rows = [0, 1, 127, 128, 1000, n - 129, n - 1];
    const refOut = referenceAttention(p.ref.q, p.ref.k, p.ref.v, dims, host.counts, host.indices, 128, undefined, rows);
    const pick = (x: ArrayLike<number>): number[] => {
      const r: number[] = [];
      for (let h = 0; h < 4; h++) for (const row of rows) for (let cc = 0; cc < d; cc++) r.push(x[(h * n + row) * d + cc]);
      return r;
    };
    expect(relativeError(pick(got), pick(refOut))).toBeLessThan(TOLERANCES[dtype]);
    expect(maxAbsError(pick(got), pick(refOut))).toBeLessThan(0.1);
    [q, k, v, o].forEach((t) => t.dispose());
    m.dispose();
    void bnhdToBhnd;
  });

  test('small blocks: estimate matches the reference; attention rejects them with a RangeError', async () => {
    const dims = { batch: 1, hq: 4, hkv: 2, nq: 200, nk: 333, d: 64 };
    const c: ValidationCase = { name: 'block16', kind: 'structured', dims, dtype: 'bfloat16', layout: 'bhnd', opts: { block: 16 }, seed: 16 };
    const p = prepareCase(c);
    const q = await tensor(p.native.q, { shape: [1, 4, 200, 64], dtype: 'bfloat16', device: 'cuda' });
    const k = await tensor(p.native.k, { shape: [1, 2, 333, 64], dtype: 'bfloat16', device: 'cuda' });
    const m = await estimate(q, k, { block: 16 });
    const ref = referenceEstimate(p.ref.q, p.ref.k, dims, defaultResolvedOptions(64, { block: 16 }));
    expect(mismatchedRows(ref, await m.toHost()).filter((r) => ref.scores.margin[r] > 1e-4)).toEqual([]);
    await expect(attention(q, k, k, m)).rejects.toThrow(/block 16 is not supported by CUDA attention/);
    await expect(prefill(q, k, k, { block: 32 })).rejects.toThrow(RangeError);
    [q, k].forEach((t) => t.dispose());
    m.dispose();
  });

  // Runs a structured case on the GPU under the given tuning of the attention
  // plan (the addon's internal native.tuning entry, read once per call) and
  // checks it against the reference; the defaults are restored afterwards.
  async function checkUnderTuning(tuning: Partial<NativeAttentionTuning>, vc: ValidationCase): Promise<void> {
    const tuner = native().tuning;
    tuner.setAttention(tuning);
    try {
      expect(tuner.getAttention()).toMatchObject(tuning);
      const r = await runCase(vc, 'cuda');
      expect(r.failures).toEqual([]);
      expect(r.sparseRelError).toBeLessThanOrEqual(TOLERANCES[vc.dtype]);
      expect(r.denseRelError).toBeLessThanOrEqual(TOLERANCES[vc.dtype]);
    } finally {
      tuner.setAttention({});
    }
  }
  const forcedCase = (name: string, block: number, dtype: 'bfloat16' | 'float16', d: number,
    nq: number, nk: number, seed: number): ValidationCase => ({
    name,
    kind: 'structured',
    dims: { batch: 2, hq: 8, hkv: 2, nq, nk, d },
    dtype,
    layout: 'bnhd',
    opts: { block },
    seed,
  });

  // On Hopper the plan takes the sm90 wgmma kernel for blocks 128/256; the
  // tuning's path 'portable' keeps the portable kernel under test there too.
  test.each([
    [128, 'bfloat16', 128],
    [256, 'float16', 64],
  ] as const)('portable sm80 path forced: block %i %s d=%i vs reference', async (block, dtype, d) => {
    await checkUnderTuning({ path: 'portable' }, forcedCase('sm80 forced', block, dtype, d, 517, 901, 31));
  });

  // The Hopper kernel is persistent on block-sparse calls with more query
  // tiles than the GPU has SMs; the tuning { persistent: 1, maxCtas: 3 } forces
  // that mode on a small shape (dense calls too), so each CTA runs several
  // (query tile, head) items and carries its K/V ring across them. On other
  // GPUs the switches are ignored and the case runs the portable kernel.
  test.each([
    [128, 'bfloat16', 128],
    [256, 'float16', 64],
  ] as const)('persistent scheduling forced: block %i %s d=%i vs reference', async (block, dtype, d) => {
    await checkUnderTuning({ persistent: 1, maxCtas: 3 }, forcedCase('persistent forced', block, dtype, d, 700, 1300, 37));
  });

  // From 256K keys the plan sorts each window of one grid's items (in the
  // Hopper kernel's order) longest list first; sortWindow forces windows on a
  // small shape. The same items run, so outputs and LSE must equal the
  // unsorted order's bit for bit, and the reference within tolerance. The call
  // has 2 x 8 heads x 7 query tiles = 112 items; windows of 1 (the order
  // unchanged), 5 (across heads; the last window holds 2), 7 (one head each)
  // and 2048 (the whole call in one).
  test.each([
    [128, 'bfloat16', 128],
    [256, 'float16', 64],
  ] as const)('persistent scheduling with sorted windows: block %i %s d=%i, bits of the unsorted order', async (block, dtype, d) => {
    const vc = forcedCase('sorted windows', block, dtype, d, 700, 1300, 41);
    await checkUnderTuning({ persistent: 1, maxCtas: 3, sortWindow: 5 }, vc);
    const p = prepareCase(vc);
    const [b, hq, hkv] = [2, 8, 2];
    const q = await tensor(p.native.q, { shape: [b, hq, 700, d], dtype, layout: 'bnhd', device: 'cuda' });
    const k = await tensor(p.native.k, { shape: [b, hkv, 1300, d], dtype, layout: 'bnhd', device: 'cuda' });
    const v = await tensor(p.native.v, { shape: [b, hkv, 1300, d], dtype, layout: 'bnhd', device: 'cuda' });
    const m = await estimate(q, k, vc.opts);
    const tuner = native().tuning;
    const runs: Array<{ o: Uint16Array; lse: Float32Array }> = [];
    try {
      for (const sortWindow of [0, 1, 5, 7, 2048]) {
        tuner.setAttention({ persistent: 1, maxCtas: 3, sortWindow });
        const r = await attention(q, k, v, m, { returnLse: true });
        runs.push({ o: (await r.output.toHost()) as Uint16Array, lse: (await r.lse.toHost()) as Float32Array });
        r.output.dispose();
        r.lse.dispose();
      }
    } finally {
      tuner.setAttention({});
      [q, k, v].forEach((t) => t.dispose());
      m.dispose();
    }
    expect(runs[0].lse.some((x) => x !== 0)).toBe(true);
    for (const r of runs.slice(1)) {
      expect(Buffer.from(r.o.buffer).equals(Buffer.from(runs[0].o.buffer))).toBe(true);
      expect(Buffer.from(r.lse.buffer).equals(Buffer.from(runs[0].lse.buffer))).toBe(true);
    }
  });

  test('info() names the attention path the device takes', () => {
    const i = info();
    for (const dev of i.devices) {
      const hopper = dev.major === 9 && dev.minor === 0 && i.cudaArchs.split(',').includes('sm_90a');
      expect(dev.attentionPath).toBe(hopper ? 'sm90-wgmma' : 'sm80-mma');
    }
    // info() reads the same plan as the calls: the portable switch shows there.
    native().tuning.setAttention({ path: 'portable' });
    try {
      for (const dev of info().devices) expect(dev.attentionPath).toBe('sm80-mma');
    } finally {
      native().tuning.setAttention({});
    }
  });

  test('a failed CUDA call leaves no error behind for the next op of the thread', async () => {
    // Twice the device's memory: the allocation fails on this (the JS) thread.
    const total = memoryStats('cuda:0').deviceTotalBytes as number;
    const n = Math.ceil((2 * total) / (4 * 64 * 128));
    expect(() => empty([1, 64, n, 128], { device: 'cuda:0', dtype: 'float32' })).toThrow(/cudaErrorMemoryAllocation/);
    // prefill enqueues its kernels from this thread: it must not report that error as its own
    const w = randomWorkload({ hq: 4, hkv: 2, nq: 300, nk: 300, d: 64, dtype: 'bfloat16', seed: 5 });
    const mk = (x: unknown, h: number) => tensor(x as Uint16Array, { shape: [1, h, 300, 64], dtype: 'bfloat16', device: 'cuda:0' });
    const [q, k, v] = await Promise.all([mk(w.q, 4), mk(w.k, 2), mk(w.v, 2)]);
    try {
      const r = await prefill(q, k, v, { block: 64 });
      expect(countNonFinite(await r.output.toFloat32())).toBe(0);
      r.output.dispose();
      r.mask?.dispose();
    } finally {
      for (const t of [q, k, v]) t.dispose();
    }
  });

  test('the native constructor takes no host data for a GPU tensor (a copy there would wait on the JS thread)', () => {
    const N = native();
    expect(nativeError(() => new N.Tensor(0, 0, [4], 0, new Float32Array(4)))).toMatch(
      /^TypeError: data for a GPU tensor is copied with upload\(\)/,
    );
    expect(() => new N.Tensor(-1, 0, [4], 0, new Float32Array(4))).not.toThrow();
  });

  test('validate() on cuda passes', async () => {
    const rep = await validate({ device: 'cuda', quick: true });
    expect(rep.cases.filter((c) => !c.passed).map((c) => `${c.name} ${c.dtype}: ${c.failures.join('; ')}`)).toEqual([]);
  });
});

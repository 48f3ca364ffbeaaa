// Option values at the edges of their documented ranges. Just inside is
// accepted and honoured (the CPU backend against the float64 reference); just
// outside is a RangeError stating the range. The kernels take these values as
// float32, so the ranges leave out what float32 would change silently: a tau
// rounding to 0 (nothing selected), a temperature or softmax scale rounding to
// 0 or infinity (the backends then use their defaults) or overflowing the
// logits (NaN).
import * as prism from '../lib/index';
import { SCALE_RANGE, TAU_MIN } from '../lib/options';
import { referenceAttention, referenceEstimate, referenceMassRecall } from '../lib/reference';
import type { EstimateOptions } from '../lib/types';
import { maskAgreement, prepareCase, relativeError, TOLERANCES, type ValidationCase } from '../lib/validate';

/** The neighbouring doubles of x. */
function nextDouble(x: number, direction: 1 | -1): number {
  const view = new DataView(new ArrayBuffer(8));
  view.setFloat64(0, x);
  view.setBigUint64(0, view.getBigUint64(0) + BigInt(direction)); // x > 0: the bit pattern orders the values
  return view.getFloat64(0);
}
const above = (x: number): number => nextDouble(x, 1);
const below = (x: number): number => nextDouble(x, -1);

const [SCALE_MIN, SCALE_MAX] = SCALE_RANGE;
const FLOAT32_MAX = 3.4028234663852886e38;
const FLOAT32_MIN_NORMAL = 2 ** -126;

describe('the ranges follow from float32', () => {
  test('tau: 2^-149 is the smallest float32 > 0; anything below rounds to 0 or to it', () => {
    expect(TAU_MIN).toBe(2 ** -149);
    expect(Math.fround(TAU_MIN)).toBe(TAU_MIN);
    expect(Math.fround(2 ** -150)).toBe(0);
    expect(Math.fround(1e-46)).toBe(0);
  });

  test('scales: the folded factors stay finite normal float32 and fp16-range logits stay finite', () => {
    expect(SCALE_RANGE).toEqual([1e-24, 1e24]);
    const log2e = Math.LOG2E;
    for (const s of SCALE_RANGE) {
      // attention: scale * log2(e); estimation: log2(e) / (sqrt(D) t), D in [2, 1024]
      for (const factor of [Math.fround(s) * log2e, log2e / (Math.sqrt(2) * s), log2e / (Math.sqrt(1024) * s)]) {
        expect(Math.fround(factor)).toBeGreaterThanOrEqual(FLOAT32_MIN_NORMAL);
        expect(Math.fround(factor)).toBeLessThan(FLOAT32_MAX);
      }
      // the largest factor times the largest dot product of float16 inputs (|x| <= 65504) at head_dim 1024
      expect(Math.fround(Math.max(s * log2e, log2e / (Math.sqrt(2) * s)) * 1024 * 65504 ** 2)).toBeLessThan(FLOAT32_MAX);
    }
    // What used to happen just outside: 1e39 is infinite in float32, 1e-50 is 0.
    expect(Math.fround(1e39)).toBe(Infinity);
    expect(Math.fround(1e-50)).toBe(0);
  });
});

describe('boundaries: just inside accepted, just outside rejected', () => {
  const tauRange = /must be in \[1\.401298464324817e-45 \(2\^-149, the smallest float32 > 0\), 1\], got /;
  const scaleRange = /must be in \[1e-24, 1e\+24\], got /;
  const cases: Array<[string, number, boolean]> = [];
  for (const field of ['tauHigh', 'tauLow']) {
    cases.push([field, TAU_MIN, true], [field, 1, true], [field, below(TAU_MIN), false], [field, 2 ** -150, false]);
    cases.push([field, 1e-46, false], [field, above(1), false], [field, 0, false]);
  }
  for (const field of ['tempHigh', 'tempLow', 'softmaxScale']) {
    cases.push([field, SCALE_MIN, true], [field, SCALE_MAX, true], [field, below(SCALE_MIN), false], [field, above(SCALE_MAX), false]);
    cases.push([field, 1e-50, false], [field, 1e38, false], [field, 1e39, false], [field, 0, false]);
  }
  test.each(cases)('%s = %p accepted: %p', (field, value, ok) => {
    const resolve = (): unknown =>
      field === 'softmaxScale'
        ? prism.resolveAttentionOptions({ softmaxScale: value })
        : prism.resolveEstimateOptions({ [field]: value }, 64);
    if (ok) {
      expect(resolve()).toMatchObject({ [field]: value });
      return;
    }
    expect(resolve).toThrow(RangeError);
    expect(resolve).toThrow(new RegExp(`^${field} ${(field.startsWith('tau') ? tauRange : scaleRange).source}`));
  });

  test('the ops apply the same checks before running', async () => {
    const q = await prism.tensor(new Float32Array(32 * 8).fill(0.5), { shape: [1, 1, 32, 8], device: 'cpu' });
    await expect(prism.estimate(q, q, { tauLow: 1e-46 })).rejects.toThrow(/^tauLow must be in \[1\.4/);
    await expect(prism.estimate(q, q, { calibrate: false, tempHigh: 1e39 })).rejects.toThrow(/^tempHigh must be in \[1e-24, 1e\+24\], got 1e\+39$/);
    await expect(prism.attention(q, q, q, null, { softmaxScale: 1e-50 })).rejects.toThrow(/^softmaxScale must be in \[1e-24, 1e\+24\], got 1e-50$/);
    await expect(prism.prefill(q, q, q, { softmaxScale: 1e38 })).rejects.toThrow(RangeError);
    await expect(prism.massRecall(q, q, null, [[0, 0, 0]], { softmaxScale: above(SCALE_MAX) })).rejects.toThrow(RangeError);
  });
});

describe('values at the boundaries are honoured (CPU backend vs the float64 reference)', () => {
  const dims = { batch: 1, hq: 4, hkv: 2, nq: 200, nk: 260, d: 64 };
  async function estimateBoth(opts: EstimateOptions, seed: number) {
    const c: ValidationCase = { name: 'edge', kind: 'structured', dims, dtype: 'float32', layout: 'bhnd', opts, seed };
    const p = prepareCase(c);
    const q = await prism.tensor(p.native.q, { shape: [1, dims.hq, dims.nq, dims.d], device: 'cpu' });
    const k = await prism.tensor(p.native.k, { shape: [1, dims.hkv, dims.nk, dims.d], device: 'cpu' });
    const mask = await prism.estimate(q, k, opts);
    const host = await mask.toHost();
    mask.dispose();
    const ref = referenceEstimate(p.ref.q, p.ref.k, dims, prism.resolveEstimateOptions(opts, dims.d));
    return { host, ref, agree: maskAgreement(ref, host) };
  }

  test('tau = 2^-149 keeps the top block of each band (a tau of 0 would keep none)', async () => {
    const opts: EstimateOptions = { block: 16, tauHigh: TAU_MIN, tauLow: TAU_MIN, forceSink: false, forceDiagonal: false };
    const { host, ref, agree } = await estimateBoth(opts, 7);
    // The reference counts every row as close to flipping (the sum before the
    // first block, 0, is within 1e-4 of tau), so the masks are compared whole.
    expect(agree.mismatchedRows).toBe(0);
    expect(agree.listsConsistent).toBe(true);
    // One block per band: one or two per row, never zero.
    expect(Math.min(...host.counts)).toBeGreaterThanOrEqual(1);
    expect(Math.max(...host.counts)).toBeLessThanOrEqual(2);
    expect(Array.from(host.counts)).toEqual(Array.from(ref.counts));
  });

  test.each([
    [SCALE_MIN, SCALE_MAX],
    [SCALE_MAX, SCALE_MIN],
  ])('fixed temperatures %p / %p are used, not replaced by 1', async (tempHigh, tempLow) => {
    const opts: EstimateOptions = { block: 16, calibrate: false, tempHigh, tempLow };
    const { host, ref, agree } = await estimateBoth(opts, 11);
    const expected = Array.from({ length: dims.hq }, () => [Math.fround(tempHigh), Math.fround(tempLow)]).flat();
    expect(Array.from(host.temperatures)).toEqual(expected);
    expect(Array.from(ref.temperatures)).toEqual(expected);
    expect(agree.separatedMismatches).toBe(0);
    expect(agree.listsConsistent).toBe(true);
  });

  test('meanpool with tempHigh at either end', async () => {
    for (const tempHigh of SCALE_RANGE) {
      const { host, agree } = await estimateBoth({ block: 16, method: 'meanpool', calibrate: false, tempHigh }, 13);
      expect(host.temperatures[0]).toBe(Math.fround(tempHigh));
      expect(agree.separatedMismatches).toBe(0);
    }
  });

  test.each(SCALE_RANGE.map((s) => [s]))('softmaxScale %p: attention and mass recall match the reference', async (softmaxScale) => {
    const c: ValidationCase = { name: 'scale', kind: 'random', dims, dtype: 'float32', layout: 'bhnd', opts: { block: 16 }, seed: 5 };
    const p = prepareCase(c);
    const q = await prism.tensor(p.native.q, { shape: [1, dims.hq, dims.nq, dims.d], device: 'cpu' });
    const k = await prism.tensor(p.native.k, { shape: [1, dims.hkv, dims.nk, dims.d], device: 'cpu' });
    const v = await prism.tensor(p.native.v, { shape: [1, dims.hkv, dims.nk, dims.d], device: 'cpu' });

    const dense = await (await prism.attention(q, k, v, null, { softmaxScale })).toFloat32();
    const ref = referenceAttention(p.ref.q, p.ref.k, p.ref.v, dims, null, null, 128, softmaxScale);
    expect(dense.every(Number.isFinite)).toBe(true);
    expect(relativeError(dense, ref)).toBeLessThanOrEqual(TOLERANCES.float32);
    // Not the default scale in disguise.
    const byDefault = referenceAttention(p.ref.q, p.ref.k, p.ref.v, dims, null, null, 128);
    expect(relativeError(dense, byDefault)).toBeGreaterThan(0.05);

    const mask = await prism.estimate(q, k, { block: 16 });
    const host = await mask.toHost();
    const sparse = await (await prism.attention(q, k, v, mask, { softmaxScale })).toFloat32();
    const sparseRef = referenceAttention(p.ref.q, p.ref.k, p.ref.v, dims, host.counts, host.indices, 16, softmaxScale);
    expect(relativeError(sparse, sparseRef)).toBeLessThanOrEqual(TOLERANCES.float32);

    const rows = [0, 1, 50, 120, 199];
    const recall = await prism.massRecall(q, k, mask, rows.flatMap((r) => [0, 3, r]), { softmaxScale });
    const recallRef = referenceMassRecall(p.ref.q, p.ref.k, dims, host.counts, host.indices, 16, softmaxScale, rows);
    rows.forEach((_, i) => expect(recall[i]).toBeCloseTo(recallRef.perRow[3 * rows.length + i], 5));
    mask.dispose();
  });
});

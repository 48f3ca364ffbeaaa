// Native CPU backend vs the float64 reference: masks, temperatures, sparse and
// dense attention, over odd lengths, Nq < Nk, GQA, head dims, dtypes, memory and
// rope layouts, selection modes and block sizes.

import { whenNative } from './helpers/gpu';
import { runCase, validate, TOLERANCES } from '../lib/validate';
import type { DType, EstimateOptions } from '../lib/types';
import { lengthSweep, optionSweep, validationCase, type Sweep } from './helpers/sweep';

const describeNative = whenNative(describe, 'CPU backend tests');


// odd lengths incl. 1 and Nq < Nk, GQA 1/4/8, block 16 (many blocks) / 64 / 128
const lengths: Array<[number, number]> = [
  [1, 1],
  [1, 300],
  [17, 17],
  [17, 257],
  [130, 130],
  [130, 300],
  [257, 257],
  [300, 300],
];
const dtypes: DType[] = ['float32', 'float16', 'bfloat16'];
// options sweep on a structured problem
const optionSets: EstimateOptions[] = [
  { block: 16, tauHigh: 0.8, tauLow: 0.9 },
  { block: 16, tauHigh: 1, tauLow: 0.5 },
  { block: 16, selection: 'topk', topkHigh: 2, topkLow: 4 },
  { block: 32, selection: 'topk', topkHigh: 100, topkLow: 1 },
  { block: 16, calibrate: false, tempHigh: 0.25, tempLow: 3 },
  { block: 16, method: 'meanpool' },
  { block: 16, method: 'meanpool', calibrate: false, tempHigh: 0.5 },
  { block: 16, forceSink: false, forceDiagonal: false, tauHigh: 0.5, tauLow: 0.5 },
  { block: 16, highDims: 32, lowDims: 16, ropeLayout: 'interleaved' },
];
const cases: Sweep[] = [
  ...lengthSweep(lengths, (i) => ({ dtypes: [dtypes[i % 3]], block: [16, 64, 128][i % 3], layout: i % 4 === 3 ? 'bnhd' : 'bhnd' })),
  ...optionSweep(optionSets, (i) => ({ nq: 200 + 13 * i, nk: 260 + 7 * i, dtype: dtypes[i % 3], layout: i % 3 === 1 ? 'bnhd' : 'bhnd' })),
];

describeNative('CPU backend vs float64 reference', () => {
  test.each(cases.map((c, i) => [i, c] as const))('case %i', async (i, c) => {
    const vc = validationCase(c, i, `case ${i}`, 100 + i);
    const r = await runCase(vc, 'cpu');
    const line =
      `${c.kind} ${c.dtype} ${c.layout} b${vc.dims.batch} hq${c.hq}/hkv${c.hkv} Nq${c.nq} Nk${c.nk} d${c.d} ${JSON.stringify(c.opts)}: ` +
      `mask agree ${(r.mask.agreement * 100).toFixed(2)}% (separated rows ${r.mask.separatedRows}, mismatches ${r.mask.separatedMismatches}), ` +
      `density ref ${r.densityRef.toFixed(3)} native ${r.densityNative.toFixed(3)}, ` +
      `sparse rel ${r.sparseRelError.toExponential(2)} max ${r.sparseMaxAbsError.toExponential(2)}, ` +
      `dense rel ${r.denseRelError.toExponential(2)} max ${r.denseMaxAbsError.toExponential(2)}`;
    if (process.env.PRISM_TEST_VERBOSE) console.log(line);
    expect({ line, failures: r.failures }).toEqual({ line, failures: [] });
    expect(r.mask.listsConsistent).toBe(true);
    expect(r.sparseRelError).toBeLessThanOrEqual(TOLERANCES[c.dtype]);
    expect(r.denseRelError).toBeLessThanOrEqual(TOLERANCES[c.dtype]);
    // well-separated rows exist in most cases; overall agreement should be high
    expect(r.mask.agreement).toBeGreaterThan(0.97);
  });

  test('validate() on the CPU passes (quick)', async () => {
    const rep = await validate({ device: 'cpu', quick: true });
    expect(rep.device).toBe('cpu');
    const bad = rep.cases.filter((c) => !c.passed).map((c) => `${c.name} ${c.dtype}: ${c.failures.join('; ')}`);
    expect(bad).toEqual([]);
    expect(rep.passed).toBe(true);
  });
});

import {
  referenceEstimate,
  referenceAttention,
  referenceMassRecall,
  bandDims,
  poolBlocks,
  selectRow,
  defaultResolvedOptions,
  maskDensity,
  type RefDims,
} from '../lib/reference';
import { randomWorkload } from '../lib/workloads/random';
import { relativeError } from '../lib/validate';
import { resolveEstimateOptions } from '../lib/options';

const row = (m: { mask: Uint8Array; nk: number }, r: number): number[] => Array.from(m.mask.subarray(r * m.nk, (r + 1) * m.nk));

describe('pooling', () => {
  test('mean of valid rows, partial last block', () => {
    // 1 head, n = 5, d = 2, block 2: blocks {0,1}, {2,3}, {4}
    const x = Float64Array.from([1, 10, 3, 20, 5, 30, 7, 40, 100, -1]);
    expect(Array.from(poolBlocks(x, 1, 1, 5, 2, 2))).toEqual([2, 15, 6, 35, 100, -1]);
  });
});

describe('bands', () => {
  test('half layout d=8, h=4, l=6', () => {
    const b = bandDims(8, 4, 6, 'half');
    expect(Array.from(b.high)).toEqual([0, 1, 4, 5]);
    expect(Array.from(b.low)).toEqual([1, 2, 3, 5, 6, 7]);
  });
  test('interleaved layout d=8, h=4, l=6', () => {
    const b = bandDims(8, 4, 6, 'interleaved');
    expect(Array.from(b.high)).toEqual([0, 1, 2, 3]);
    expect(Array.from(b.low)).toEqual([2, 3, 4, 5, 6, 7]);
  });
  test('defaults d=128 overlap as documented', () => {
    const b = bandDims(128, 64, 96, 'half');
    expect(b.high.length).toBe(64);
    expect(b.low.length).toBe(96);
    expect(b.high[31]).toBe(31);
    expect(b.high[32]).toBe(64);
    expect(b.low[0]).toBe(16);
    expect(b.low[48]).toBe(80);
  });
});

describe('selection', () => {
  test('top-p keeps iff the mass ranked strictly before is < tau', () => {
    const p = Float64Array.from([0.1, 0.5, 0.3, 0.1]);
    // ranks: j1 (0.5), j2 (0.3), j0 (0.1, tie -> lower j first), j3
    expect(Array.from(selectRow(p, 4, 'topp', 0.8, 0).keep)).toEqual([0, 1, 1, 0]); // before j0: 0.8, not < 0.8
    expect(Array.from(selectRow(p, 4, 'topp', 0.81, 0).keep)).toEqual([1, 1, 1, 0]); // before j3: 0.9
    expect(Array.from(selectRow(p, 4, 'topp', 0.5, 0).keep)).toEqual([0, 1, 0, 0]);
    expect(Array.from(selectRow(p, 4, 'topp', 1, 0).keep)).toEqual([1, 1, 1, 1]);
  });
  test('ties go to the lower j', () => {
    const p = Float64Array.from([0.25, 0.25, 0.25, 0.25]);
    expect(Array.from(selectRow(p, 4, 'topp', 0.3, 0).keep)).toEqual([1, 1, 0, 0]);
    expect(Array.from(selectRow(p, 4, 'topk', 0, 3).keep)).toEqual([1, 1, 1, 0]);
  });
  test('top-k: k largest, all when k >= visible; margin is the k-th gap', () => {
    const p = Float64Array.from([0.1, 0.4, 0.2, 0.3]);
    const s = selectRow(p, 4, 'topk', 0, 2);
    expect(Array.from(s.keep)).toEqual([0, 1, 0, 1]);
    expect(s.margin).toBeCloseTo(0.1, 12);
    expect(Array.from(selectRow(p, 4, 'topk', 0, 9).keep)).toEqual([1, 1, 1, 1]);
  });
  test('margin: distance of prefix sums from tau', () => {
    const p = Float64Array.from([0.6, 0.3, 0.1]);
    expect(selectRow(p, 3, 'topp', 0.95, 0).margin).toBeCloseTo(0.05, 12);
    expect(selectRow(p, 3, 'topp', 0.6, 0).margin).toBe(0); // exact threshold
  });
});

describe('estimate', () => {
  // hand-built problem: d = 4 (h = 2, l = 2 -> half: high {0,2}, low {1,3}), block 1
  const dims: RefDims = { batch: 1, hq: 1, hkv: 1, nq: 3, nk: 3, d: 4 };
  const q = Float64Array.from([1, 0, 0, 0, 0, 1, 0, 0, 2, 0, 0, 0]);
  const k = Float64Array.from([0, 0, 0, 0, 3, 0, 0, 0, 0, 3, 0, 0]);
  const base = defaultResolvedOptions(4, { block: 1, highDims: 2, lowDims: 2, calibrate: false });

  test('uncalibrated softmax per band matches a hand computation', () => {
    const e = referenceEstimate(q, k, dims, base);
    // row 2 (q = [2,0,0,0]) high band dims {0,2}: logits <q,k_j>/sqrt(2) = [0, 6, 0]/sqrt(2)
    const l = 6 / Math.SQRT2;
    const z = 2 + Math.exp(l);
    expect(e.scores.pHigh[2 * 3 + 1]).toBeCloseTo(Math.exp(l) / z, 12);
    expect(e.scores.pHigh[2 * 3 + 0]).toBeCloseTo(1 / z, 12);
    // low band dims {1,3}: q2 has 0 there -> uniform over 3
    expect(e.scores.pLow[2 * 3 + 2]).toBeCloseTo(1 / 3, 12);
    // causal: row 0 sees only j = 0
    expect(row(e, 0)).toEqual([1, 0, 0]);
    expect(Array.from(e.temperatures)).toEqual([1, 1]);
  });

  test('union of bands, then forced sink and diagonal', () => {
    const o = { ...base, tauHigh: 0.5, tauLow: 0.3, forceSink: false, forceDiagonal: false };
    const e = referenceEstimate(q, k, dims, o);
    // row 2: high keeps j1 only; low is uniform: tau 0.3 keeps j0 only -> union {0,1}
    expect(row(e, 2)).toEqual([1, 1, 0]);
    const f = referenceEstimate(q, k, dims, { ...o, forceDiagonal: true });
    expect(row(f, 2)).toEqual([1, 1, 1]);
    expect(f.counts[2]).toBe(3);
    expect(Array.from(f.indices.subarray(f.rowPtr[2], f.rowPtr[3]))).toEqual([0, 1, 2]);
  });

  test('calibrated temperatures follow the energy formula', () => {
    const w = randomWorkload({ hq: 2, hkv: 1, nq: 40, nk: 40, d: 8, seed: 3 });
    const d3: RefDims = { batch: 1, hq: 2, hkv: 1, nq: 40, nk: 40, d: 8 };
    const o = defaultResolvedOptions(8, { block: 16 });
    const e = referenceEstimate(w.q as Float32Array, w.k as Float32Array, d3, o);
    const qb = poolBlocks(w.q as Float32Array, 1, 2, 40, 8, 16);
    const kb = poolBlocks(w.k as Float32Array, 1, 1, 40, 8, 16);
    const rms = (a: Float64Array, off: number, nb: number, dimsList: number[]): number => {
      let s = 0;
      for (let i = 0; i < nb; i++) for (const c of dimsList) s += a[off + i * 8 + c] ** 2;
      return Math.sqrt(s / (nb * dimsList.length));
    };
    const all = [0, 1, 2, 3, 4, 5, 6, 7];
    const high = [0, 1, 4, 5]; // h = 4
    const tHigh = Math.sqrt(4 / 8) * (rms(qb, 0, 3, high) / rms(qb, 0, 3, all)) * (rms(kb, 0, 3, high) / rms(kb, 0, 3, all));
    expect(e.temperatures[0]).toBeCloseTo(tHigh, 6);
    expect(e.scores.scales[0]).toBeCloseTo(2 * tHigh, 10);
  });

  test('zero input falls back to sqrt(band dims), uniform probabilities', () => {
    const z = new Float64Array(1 * 1 * 5 * 8);
    const e = referenceEstimate(z, z, { batch: 1, hq: 1, hkv: 1, nq: 5, nk: 5, d: 8 }, defaultResolvedOptions(8, { block: 1 }));
    expect(e.scores.scaleFallback[0]).toBe(1);
    expect(e.scores.scales[0]).toBeCloseTo(2, 12);
    expect(e.scores.pHigh[4 * 5 + 3]).toBeCloseTo(0.2, 12);
  });

  test('Nq < Nk: offset visibility and diagonal', () => {
    const w = randomWorkload({ hq: 1, hkv: 1, nq: 5, nk: 11, d: 8, seed: 5 });
    const d5: RefDims = { batch: 1, hq: 1, hkv: 1, nq: 5, nk: 11, d: 8 };
    const e = referenceEstimate(w.q as Float32Array, w.k as Float32Array, d5, defaultResolvedOptions(8, { block: 2, tauHigh: 0.01, tauLow: 0.01 }));
    // nq = 3, nk = 6, off = 3: row i sees j <= i + 3; diagonal i + 3 forced
    expect(e.nq).toBe(3);
    expect(e.nk).toBe(6);
    for (let i = 0; i < 3; i++) {
      const r = row(e, i);
      expect(r[i + 3]).toBe(1);
      expect(r[0]).toBe(1);
      for (let j = i + 4; j < 6; j++) expect(r[j]).toBe(0);
    }
  });

  test('meanpool: one band over all dims, temps (t, t)', () => {
    const w = randomWorkload({ hq: 1, hkv: 1, nq: 64, nk: 64, d: 8, seed: 9 });
    const d6: RefDims = { batch: 1, hq: 1, hkv: 1, nq: 64, nk: 64, d: 8 };
    const e = referenceEstimate(w.q as Float32Array, w.k as Float32Array, d6, defaultResolvedOptions(8, { block: 16, method: 'meanpool', calibrate: false, tempHigh: 0.5 }));
    expect(Array.from(e.temperatures)).toEqual([0.5, 0.5]);
    expect(e.scores.pLow).toBe(e.scores.pHigh);
    const qb = poolBlocks(w.q as Float32Array, 1, 1, 64, 8, 16);
    const kb = poolBlocks(w.k as Float32Array, 1, 1, 64, 8, 16);
    let dot = 0;
    for (let c = 0; c < 8; c++) dot += qb[3 * 8 + c] * kb[2 * 8 + c];
    expect(e.scores.logitsHigh[3 * 4 + 2]).toBeCloseTo(dot / (Math.sqrt(8) * 0.5), 10);
  });
});

describe('attention', () => {
  const direct = (q: Float32Array, k: Float32Array, v: Float32Array, dims: RefDims): Float64Array => {
    // straightforward causal softmax, one row at a time, no block logic
    const { hq, hkv, nq, nk, d } = dims;
    const out = new Float64Array(hq * nq * d);
    for (let h = 0; h < hq; h++) {
      const g = Math.floor(h / (hq / hkv));
      for (let r = 0; r < nq; r++) {
        const s = nk - nq + r;
        const w: number[] = [];
        for (let t = 0; t <= s; t++) {
          let dot = 0;
          for (let c = 0; c < d; c++) dot += q[(h * nq + r) * d + c] * k[(g * nk + t) * d + c];
          w.push(dot / Math.sqrt(d));
        }
        const mx = Math.max(...w);
        const e = w.map((x) => Math.exp(x - mx));
        const z = e.reduce((a, b) => a + b, 0);
        for (let c = 0; c < d; c++) {
          let acc = 0;
          for (let t = 0; t <= s; t++) acc += e[t] * v[(g * nk + t) * d + c];
          out[(h * nq + r) * d + c] = acc / z;
        }
      }
    }
    return out;
  };

  test('dense equals a direct causal softmax (GQA 4, Nq < Nk aligned to the block)', () => {
    const dims: RefDims = { batch: 1, hq: 4, hkv: 1, nq: 24, nk: 40, d: 8 };
    const w = randomWorkload({ ...dims, seed: 1 });
    const [q, k, v] = [w.q, w.k, w.v] as Float32Array[];
    const got = referenceAttention(q, k, v, dims, null, null, 8);
    expect(relativeError(got, direct(q, k, v, dims))).toBeLessThan(1e-12);
    // block 1 = every causal key whatever the alignment
    const d2: RefDims = { ...dims, nq: 23 };
    const w2 = randomWorkload({ ...d2, seed: 2 });
    const [q2, k2, v2] = [w2.q, w2.k, w2.v] as Float32Array[];
    expect(relativeError(referenceAttention(q2, k2, v2, d2, null, null, 1), direct(q2, k2, v2, d2))).toBeLessThan(1e-12);
  });

  test('block-sparse with every visible block selected equals dense', () => {
    const dims: RefDims = { batch: 2, hq: 4, hkv: 2, nq: 37, nk: 37, d: 8 };
    const w = randomWorkload({ ...dims, seed: 4 });
    const [q, k, v] = [w.q, w.k, w.v] as Float32Array[];
    const e = referenceEstimate(q, k, dims, defaultResolvedOptions(8, { block: 8, tauHigh: 1, tauLow: 1 }));
    expect(maskDensity(e)).toBe(1);
    const a = referenceAttention(q, k, v, dims, e.counts, e.indices, 8);
    const b = referenceAttention(q, k, v, dims, null, null, 8);
    expect(relativeError(a, b)).toBeLessThan(1e-14);
    const rec = referenceMassRecall(q, k, dims, e.counts, e.indices, 8);
    expect(rec.min).toBeCloseTo(1, 12);
  });

  test('GQA: query head h reads kv head h / (Hq/Hkv)', () => {
    const dims: RefDims = { batch: 1, hq: 4, hkv: 2, nq: 6, nk: 6, d: 4 };
    const w = randomWorkload({ ...dims, seed: 6 });
    const [q, k, v] = [w.q, w.k, w.v] as Float32Array[];
    const out = referenceAttention(q, k, v, dims, null, null, 2);
    // head 3 alone against kv head 1 alone
    const sub = referenceAttention(q.subarray(3 * 24, 4 * 24), k.subarray(24, 48), v.subarray(24, 48), { ...dims, hq: 1, hkv: 1 }, null, null, 2);
    expect(Array.from(out.subarray(3 * 24, 4 * 24))).toEqual(Array.from(sub));
  });

  test('only the selected blocks and t <= s contribute; empty row gives zeros', () => {
    const dims: RefDims = { batch: 1, hq: 1, hkv: 1, nq: 4, nk: 4, d: 2 };
    const q = new Float32Array(8);
    const k = new Float32Array(8);
    const v = Float32Array.from([1, 0, 2, 0, 3, 0, 4, 0]);
    // block 2: row blocks 0, 1; select only key block 1 for query block 1, nothing for block 0
    const counts = Int32Array.from([0, 1]);
    const indices = Int32Array.from([1]); // compact rows: row 0 none, row 1 key block 1
    const out = referenceAttention(q, k, v, dims, counts, indices, 2);
    // rows 0,1: zeros; row 2 (s=2): key 2 only -> 3; row 3: keys 2,3 equal weights -> 3.5
    expect(Array.from(out)).toEqual([0, 0, 0, 0, 3, 0, 3.5, 0]);
    const rec = referenceMassRecall(q, k, dims, counts, indices, 2);
    expect(Array.from(rec.perRow)).toEqual([0, 0, 1 / 3, 0.5]);
  });

  test('softmax scale is honoured', () => {
    const dims: RefDims = { batch: 1, hq: 1, hkv: 1, nq: 2, nk: 2, d: 1 };
    const q = Float32Array.from([0, 1]);
    const k = Float32Array.from([0, 2]);
    const v = Float32Array.from([0, 1]);
    const out = referenceAttention(q, k, v, dims, null, null, 1, 0.5);
    expect(out[1]).toBeCloseTo(Math.exp(1) / (1 + Math.exp(1)), 14);
  });
});

describe('defaultResolvedOptions', () => {
  test.each([2, 6, 8, 20, 64, 100, 128, 256])('head_dim %i: the API defaults, band widths included', (d) => {
    expect(defaultResolvedOptions(d)).toEqual(resolveEstimateOptions({}, d));
  });
});

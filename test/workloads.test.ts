import { structuredWorkload, randomWorkload, assignHeadKinds } from '../lib/workloads/index';
import { toBFloat16, toFloat16 } from '../lib/dtype';
import { referenceEstimate, referenceMassRecall, defaultResolvedOptions, maskDensity } from '../lib/reference';

const same = (a: ArrayLike<number>, b: ArrayLike<number>): boolean => {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i] && !(Number.isNaN(a[i]) && Number.isNaN(b[i]))) return false;
  return true;
};

describe('random workload', () => {
  test('shapes, determinism, seeds differ', () => {
    const a = randomWorkload({ hq: 4, hkv: 2, nq: 10, nk: 20, d: 8, seed: 1 });
    expect(a.q.length).toBe(4 * 10 * 8);
    expect(a.k.length).toBe(2 * 20 * 8);
    expect(a.layout).toBe('bhnd');
    const b = randomWorkload({ hq: 4, hkv: 2, nq: 10, nk: 20, d: 8, seed: 1 });
    const c = randomWorkload({ hq: 4, hkv: 2, nq: 10, nk: 20, d: 8, seed: 2 });
    expect(same(a.q, b.q) && same(a.k, b.k) && same(a.v, b.v)).toBe(true);
    expect(same(a.q, c.q)).toBe(false);
    const h = randomWorkload({ hq: 4, hkv: 2, nq: 10, nk: 20, d: 8, seed: 1, dtype: 'bfloat16' });
    expect(same(h.q, toBFloat16(a.q as Float32Array))).toBe(true);
  });
});

describe('structured workload', () => {
  const small = { seqLen: 1024, hq: 8, hkv: 2, d: 64, segmentLength: 256, slashOffsets: [64, 200] };

  test('same seed gives identical bytes, different seeds differ', () => {
    const a = structuredWorkload({ ...small, seed: 7 });
    const b = structuredWorkload({ ...small, seed: 7 });
    const c = structuredWorkload({ ...small, seed: 8 });
    expect(same(a.q, b.q) && same(a.k, b.k) && same(a.v, b.v)).toBe(true);
    expect(same(a.q, c.q) || same(a.k, c.k)).toBe(false);
    expect(a.shape).toEqual({ batch: 1, hq: 8, hkv: 2, nq: 1024, nk: 1024, d: 64 });
    expect(a.headKinds).toHaveLength(8);
  });

  test('16-bit output equals rounding the float32 output (RNE)', () => {
    const f = structuredWorkload({ ...small, seed: 3 });
    const bf = structuredWorkload({ ...small, seed: 3, dtype: 'bfloat16' });
    const hf = structuredWorkload({ ...small, seed: 3, dtype: 'float16' });
    expect(bf.q).toBeInstanceOf(Uint16Array);
    expect(same(bf.q, toBFloat16(f.q as Float32Array))).toBe(true);
    expect(same(hf.k, toFloat16(f.k as Float32Array))).toBe(true);
    expect(same(hf.v, toFloat16(f.v as Float32Array))).toBe(true);
  });

  test('nq < seqLen gives the last positions', () => {
    const full = structuredWorkload({ ...small, seed: 4 });
    const part = structuredWorkload({ ...small, seed: 4, nq: 100 });
    expect(same(part.k, full.k)).toBe(true);
    expect(part.q.length).toBe(8 * 100 * 64);
  });

  test('values are finite with a sane scale', () => {
    const w = structuredWorkload({ ...small, seed: 5 });
    let s = 0;
    let bad = 0;
    const q = w.q as Float32Array;
    for (let i = 0; i < q.length; i++) {
      if (!Number.isFinite(q[i])) bad++;
      s += q[i] * q[i];
    }
    expect(bad).toBe(0);
    const rms = Math.sqrt(s / w.q.length);
    expect(rms).toBeGreaterThan(0.8);
    expect(rms).toBeLessThan(8);
  });

  test('head kinds follow the mix', () => {
    const k = assignHeadKinds(32, { local: 0.3, slash: 0.3, retrieval: 0.25, diffuse: 0.15 }, 0);
    const count = (x: string): number => k.filter((y) => y === x).length;
    expect(count('local') + count('slash') + count('retrieval') + count('diffuse')).toBe(32);
    expect(count('local')).toBeGreaterThanOrEqual(9);
    expect(count('slash')).toBeGreaterThanOrEqual(9);
    expect(count('diffuse')).toBeGreaterThanOrEqual(4);
    // the default mix is this one
    expect(structuredWorkload({ ...small, hq: 32, hkv: 8, seqLen: 256 }).headKinds).toEqual(assignHeadKinds(32, { local: 0.3, slash: 0.3, retrieval: 0.25, diffuse: 0.15 }, 0));
  });

  test('interleaved RoPE layout is the half layout with dims permuted', () => {
    // noise is drawn in dim order, so compare the structured part only
    const o = { ...small, seqLen: 256, seed: 9, qNoiseStd: 0, kNoiseStd: 0 };
    const h = structuredWorkload(o);
    const i = structuredWorkload({ ...o, ropeLayout: 'interleaved' });
    const d = 64;
    const P = d / 2;
    let bad = 0;
    for (const [x, y] of [[h.q, i.q], [h.k, i.k]]) {
      for (let row = 0; row < x.length / d; row++) {
        for (let p = 0; p < P; p++) {
          if (x[row * d + p] !== y[row * d + 2 * p] || x[row * d + p + P] !== y[row * d + 2 * p + 1]) bad++;
        }
      }
    }
    expect(bad).toBe(0);
    expect(same(h.v, i.v)).toBe(true);
  });

  test('options are validated', () => {
    expect(() => structuredWorkload({ ...small, sharpPairs: 0 })).toThrow(RangeError);
    expect(() => structuredWorkload({ ...small, sharpCorePairs: 20 })).toThrow(RangeError);
    expect(() => structuredWorkload({ ...small, recencyPairs: 33 })).toThrow(RangeError);
    expect(() => structuredWorkload({ ...small, slashOffsets: [] })).toThrow(RangeError);
  });

  // The property the generator exists for: slash diagonals carried by the
  // high-frequency rotary pairs are invisible to a single-band mean pool but
  // found by Prism's calibrated high band.
  test('on slash heads Prism keeps far more attention mass than meanpool at similar density', () => {
    const n = 4096;
    const d = 128;
    const hq = 4;
    const w = structuredWorkload({ seqLen: n, hq, hkv: 1, d, seed: 3, headMix: { local: 0, slash: 1, retrieval: 0, diffuse: 0 } });
    expect(w.headKinds).toEqual(['slash', 'slash', 'slash', 'slash']);
    const dims = { batch: 1, hq, hkv: 1, nq: n, nk: n, d };
    const rows: number[] = [];
    for (let r = n / 2 + 5; r < n; r += 32) rows.push(r);
    const run = (method: 'prism' | 'meanpool'): { density: number; mean: number; min: number } => {
      const e = referenceEstimate(w.q as Float32Array, w.k as Float32Array, dims, defaultResolvedOptions(d, { method }), { keepScores: false });
      const r = referenceMassRecall(w.q as Float32Array, w.k as Float32Array, dims, e.counts, e.indices, 128, undefined, rows);
      return { density: maskDensity(e), mean: r.mean, min: r.min };
    };
    const p = run('prism');
    const m = run('meanpool');
    if (process.env.PRISM_TEST_VERBOSE) console.log('slash heads 4K', p, m);
    expect(Math.abs(p.density - m.density)).toBeLessThan(0.05);
    expect(p.mean).toBeGreaterThan(0.95);
    expect(p.mean).toBeGreaterThan(m.mean + 0.15);
    expect(p.min).toBeGreaterThan(0.5);
    expect(m.min).toBeLessThan(0.1);
  });

  test('structure makes Prism selection sparser than on Gaussian inputs, and sparser as length grows', () => {
    const opts = defaultResolvedOptions(128, { block: 64 });
    const dens = (n: number): number => {
      const w = structuredWorkload({ seqLen: n, hq: 4, hkv: 1, d: 128, seed: 11, headMix: { local: 1, slash: 1, retrieval: 1, diffuse: 1 } });
      const e = referenceEstimate(w.q as Float32Array, w.k as Float32Array, { batch: 1, hq: 4, hkv: 1, nq: n, nk: n, d: 128 }, opts, { keepScores: false });
      return maskDensity(e);
    };
    const r = randomWorkload({ hq: 8, hkv: 2, nq: 2048, nk: 2048, d: 128, seed: 11 });
    const dr = maskDensity(referenceEstimate(r.q as Float32Array, r.k as Float32Array, { batch: 1, hq: 8, hkv: 2, nq: 2048, nk: 2048, d: 128 }, opts, { keepScores: false }));
    const d2 = dens(2048);
    const d8 = dens(6144);
    if (process.env.PRISM_TEST_VERBOSE) console.log(`density random 2K ${dr.toFixed(3)}, structured 2K ${d2.toFixed(3)}, 6K ${d8.toFixed(3)}`);
    expect(d2).toBeLessThan(dr - 0.05);
    expect(d8).toBeLessThan(d2 - 0.2);
    expect(d8).toBeGreaterThan(0.15);
  });
});

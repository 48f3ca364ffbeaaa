// Query blocks on the absolute token grid (chunked prefill: Nq < Nk with Nk - Nq
// off the block grid). Dense attention must be exact causal attention at every
// offset modulo the block, the forced diagonal block must hold each row's own
// position, and the mass recall of a dense (null) mask must be 1. Checked on the
// CPU and, when present, on the GPU, against float64 computed here from scratch
// (not through the block reference, which shares the geometry under test).

import { describeGpu } from './helpers/gpu';
import { relErr, rounded, type Problem } from './helpers/data';
import { blockGrid, blockOfRow, blockRowBegin, blockRowEnd } from '../lib/grid';
import { attention, estimate, massRecall } from '../lib/ops';
import { tensor } from '../lib/tensor';
import { Rng } from '../lib/rng';
import { referenceEstimate } from '../lib/reference';
import { resolveEstimateOptions } from '../lib/options';
import type { DeviceSpec, DType } from '../lib/types';

// ||got - want|| / ||want|| bounds per dtype: fp32 accumulation in every
// backend; the 16-bit outputs are rounded once (bf16: 8 mantissa bits).
const TOL: Record<DType, number> = { float32: 2e-5, float16: 2e-3, bfloat16: 1e-2 };

/** Random normal data rounded to the dtype. */
function randomData(n: number, dtype: DType, rng: Rng, scale = 1): { raw: Float32Array | Uint16Array; values: Float32Array } {
  return rounded(Float32Array.from({ length: n }, () => rng.normal() * scale), dtype);
}

/** Exact causal attention in float64: row r at position (Nk - Nq) + r sees keys t <= that position. */
function causalAttention(p: Problem, q: Float32Array, k: Float32Array, v: Float32Array): Float64Array {
  const { hq, hkv, nq, nk, d } = p;
  const scale = 1 / Math.sqrt(d);
  const out = new Float64Array(hq * nq * d);
  const logits = new Float64Array(nk);
  for (let h = 0; h < hq; h++) {
    const kh = Math.floor(h / (hq / hkv));
    for (let r = 0; r < nq; r++) {
      const s = nk - nq + r;
      let mx = -Infinity;
      for (let t = 0; t <= s; t++) {
        let dot = 0;
        for (let e = 0; e < d; e++) dot += q[(h * nq + r) * d + e] * k[(kh * nk + t) * d + e];
        logits[t] = dot * scale;
        mx = Math.max(mx, logits[t]);
      }
      let total = 0;
      const o = (h * nq + r) * d;
      for (let t = 0; t <= s; t++) {
        const w = Math.exp(logits[t] - mx);
        total += w;
        for (let e = 0; e < d; e++) out[o + e] += w * v[(kh * nk + t) * d + e];
      }
      for (let e = 0; e < d; e++) out[o + e] /= total;
    }
  }
  return out;
}


async function upload(p: Problem, device: DeviceSpec, seed: number) {
  const rng = new Rng(seed);
  const q = randomData(p.hq * p.nq * p.d, p.dtype, rng);
  const k = randomData(p.hkv * p.nk * p.d, p.dtype, rng);
  const v = randomData(p.hkv * p.nk * p.d, p.dtype, rng);
  const opts = (n: number, h: number) => ({ shape: [1, h, n, p.d] as const, dtype: p.dtype, device });
  const tq = await tensor(q.raw, opts(p.nq, p.hq));
  const tk = await tensor(k.raw, opts(p.nk, p.hkv));
  const tv = await tensor(v.raw, opts(p.nk, p.hkv));
  return { q, k, v, tq, tk, tv };
}

function dispose(...ts: Array<{ dispose(): void }>): void {
  for (const t of ts) t.dispose();
}

describe('block grid geometry', () => {
  test('each query row lies in grid block off + its query block; blocks partition the rows', () => {
    const bad: string[] = [];
    const check = (ok: boolean, what: string) => {
      if (!ok && bad.length < 10) bad.push(what);
    };
    for (const block of [1, 3, 16, 128]) {
      for (const nk of [1, 5, 127, 128, 129, 300]) {
        for (let nq = 1; nq <= nk; nq += Math.max(1, Math.floor(nk / 37))) {
          const g = blockGrid(nq, nk, block);
          const at = `Nq=${nq} Nk=${nk} B=${block}`;
          check(g.nq === g.nk - Math.floor((nk - nq) / block), `${at}: nq ${g.nq}`);
          let covered = 0;
          for (let i = 0; i < g.nq; i++) {
            const r0 = blockRowBegin(g, i);
            const r1 = blockRowEnd(g, i);
            check(r1 > r0, `${at}: query block ${i} is empty`);
            check(r0 === covered, `${at}: query block ${i} starts at ${r0}, not ${covered}`);
            covered = r1;
            for (const r of [r0, r1 - 1]) {
              check(blockOfRow(g, r) === i, `${at}: row ${r} not in block ${i}`);
              check(Math.floor((nk - nq + r) / block) === i + g.off, `${at}: row ${r} off its grid block`);
            }
          }
          check(covered === nq, `${at}: blocks cover ${covered} rows`);
        }
      }
    }
    expect(bad).toEqual([]);
  });

  test('the fuzz repro: Nq=200, Nk=256, block 128 gives one partial and one full query block', () => {
    const g = blockGrid(200, 256, 128);
    expect([g.nq, g.nk, g.off, g.shift]).toEqual([2, 2, 0, 56]);
    expect([blockRowBegin(g, 0), blockRowEnd(g, 0), blockRowBegin(g, 1), blockRowEnd(g, 1)]).toEqual([0, 72, 72, 200]);
  });
});

function gridSuite(device: DeviceSpec, dtypes: DType[], blocks: number[], dims: number[]): void {
  test.each(blocks.map((b) => [b] as const))('dense attention is exact causal attention at every offset mod block %i', async (block) => {
    let worst = 0;
    for (let s = 0; s < block; s++) {
      const dtype = dtypes[s % dtypes.length];
      const d = dims[s % dims.length];
      const nq = 1 + ((s * 37) % 61) + (s % 5 === 0 ? block : 0);
      const p: Problem = { hq: 2, hkv: 1, nq, nk: nq + s + block * (s % 2), d, dtype };
      const { q, k, v, tq, tk, tv } = await upload(p, device, 1000 + s);
      const out = await attention(tq, tk, tv, null);
      const got = await out.toFloat32();
      const err = relErr(got, causalAttention(p, q.values, k.values, v.values));
      dispose(tq, tk, tv, out);
      worst = Math.max(worst, err / TOL[dtype]);
      if (err > TOL[dtype]) throw new Error(`Nq=${p.nq} Nk=${p.nk} d=${d} ${dtype}: relative error ${err} > ${TOL[dtype]}`);
    }
    expect(worst).toBeLessThanOrEqual(1);
  });

  test('the fuzz repro (Nq=200, Nk=256, block 128): dense attention and recall', async () => {
    const p: Problem = { hq: 2, hkv: 1, nq: 200, nk: 256, d: dims[0], dtype: dtypes[0] };
    const { q, k, v, tq, tk, tv } = await upload(p, device, 7);
    const out = await attention(tq, tk, tv, null);
    expect(relErr(await out.toFloat32(), causalAttention(p, q.values, k.values, v.values))).toBeLessThanOrEqual(TOL[p.dtype]);
    const rows = Array.from({ length: p.nq }, (_, r) => [0, r % 2, r] as const);
    const recall = await massRecall(tq, tk, null, rows);
    for (const x of recall) expect(x).toBeCloseTo(1, 6);
    dispose(tq, tk, tv, out);
  });

  test.each(blocks.map((b) => [b] as const))('forced diagonal holds each row position; selections match the reference (block %i)', async (block) => {
    for (const s of [1, block >> 1, block - 1]) {
      const p: Problem = { hq: 4, hkv: 2, nq: 2 * block + 5, nk: 2 * block + 5 + s + block, d: dims[0], dtype: dtypes[0] };
      const { q, k, tq, tk } = await upload(p, device, 50 + s);
      // tau tiny: top-p keeps one block per band, so the diagonal comes from forcing
      const opts = { block, tauHigh: 1e-6, tauLow: 1e-6, forceSink: false, forceDiagonal: true };
      const m = await estimate(tq, tk, opts);
      const host = await m.toHost();
      const g = blockGrid(p.nq, p.nk, block);
      expect([m.nq, m.nk]).toEqual([g.nq, g.nk]);
      for (let h = 0; h < p.hq; h++) {
        for (let r = 0; r < p.nq; r++) {
          const i = blockOfRow(g, r);
          const own = Math.floor((p.nk - p.nq + r) / block);
          expect(host.mask[(h * g.nq + i) * g.nk + own]).toBe(1);
        }
      }
      const ref = referenceEstimate(q.values, k.values, { batch: 1, ...p }, resolveEstimateOptions(opts, p.d));
      let differ = 0;
      for (let x = 0; x < ref.mask.length; x++) if (ref.mask[x] !== host.mask[x]) differ++;
      expect(differ).toBe(0);
      // dense recall is 1 on every row, also the partial first block's
      const rows = Array.from({ length: p.nq }, (_, r) => [0, r % p.hq, r] as const);
      for (const x of await massRecall(tq, tk, null, rows)) expect(x).toBeCloseTo(1, 6);
      dispose(tq, tk, m);
    }
  });
}

describe('block grid on the CPU', () => {
  gridSuite('cpu', ['float32', 'bfloat16', 'float16'], [16, 128], [8, 16]);
});

describeGpu('block grid on the GPU', () => {
  gridSuite('cuda', ['bfloat16', 'float16'], [64, 128, 256], [128, 64]);
});


// The Hopper kernel's segment-major work order (long sparse calls): every
// query tile's key tiles are cut into segments and its softmax state is
// carried from one segment's work item to the next through the workspace.
// Carried exactly, it changes no bit: outputs and LSE under every segment
// size (and with 3 CTAs, so items wait on each other) equal the plain
// persistent order's, and sampled rows match a float64 reference. Random
// lists: empty rows, diagonal-only rows, full rows, sparse rows; query chunks
// off the block grid; blocks 128 / 256; head_dim 128 / 64. On GPUs other than
// Hopper the switch is ignored (the equalities still hold). GPU only.
import { describeGpu } from './helpers/gpu';
import { values, rounded } from './helpers/data';
import { tensor, type Tensor } from '../lib/tensor';
import { attention, blockMask } from '../lib/index';
import { native } from '../lib/native';
import { blockGrid } from '../lib/grid';
import { TOLERANCES } from '../lib/validate';
import { fromBFloat16, fromFloat16 } from '../lib/dtype';

interface SegCase {
  batch: number;
  hq: number;
  hkv: number;
  nq: number;
  nk: number;
  d: number;
  block: number;
  dtype: 'bfloat16' | 'float16';
  density: number;
  seed: number;
}

const cases: SegCase[] = [
  // a chunk of 3000 queries at the end of 270001 keys: tiles off the block grid
  { batch: 1, hq: 4, hkv: 1, nq: 3000, nk: 270001, d: 128, block: 128, dtype: 'bfloat16', density: 0.3, seed: 1 },
  { batch: 2, hq: 4, hkv: 2, nq: 1500, nk: 300000, d: 64, block: 256, dtype: 'float16', density: 0.08, seed: 2 },
  // whole causal rows of 256K keys: three windows of query tiles, the last
  // one short, so a window's slots were last used two or four windows before
  { batch: 1, hq: 2, hkv: 1, nq: 262144 + 640, nk: 262144 + 640, d: 64, block: 128, dtype: 'bfloat16', density: 0.02, seed: 3 },
];

/** A seeded uniform in [0, 1). */
function rng(seed: number): () => number {
  let x = (seed * 2654435761) >>> 0;
  return () => {
    x = (Math.imul(x, 1664525) + 1013904223) >>> 0;
    return x / 2 ** 32;
  };
}

/** Random ascending lists: ~5% empty rows, ~5% diagonal only, ~5% full, the rest at `density` (+ sink and diagonal). */
function randomLists(c: SegCase): { rowPtr: number[]; indices: number[] } {
  const { nq: nqb, nk: nkb } = blockGrid(c.nq, c.nk, c.block);
  const rand = rng(c.seed);
  const rowPtr = [0];
  const indices: number[] = [];
  for (let bh = 0; bh < c.batch * c.hq; bh++) {
    for (let i = 0; i < nqb; i++) {
      const diag = i + nkb - nqb;
      const kind = rand();
      for (let j = 0; j <= diag; j++) {
        let keep: boolean;
        if (kind < 0.05) keep = false;
        else if (kind < 0.1) keep = j === diag;
        else if (kind < 0.15) keep = true;
        else keep = j === 0 || j === diag || rand() < c.density;
        if (keep) indices.push(j);
      }
      rowPtr.push(indices.length);
    }
  }
  return { rowPtr, indices };
}

function toFloat(raw: Uint16Array, dtype: SegCase['dtype']): Float32Array {
  return dtype === 'float16' ? fromFloat16(raw) : fromBFloat16(raw);
}

describeGpu('segment-major attention order', () => {
  jest.setTimeout(300_000);
  afterEach(() => native().tuning.setAttention({}));

  test.each(cases.map((c, i) => [i, c] as const))('case %i: bit-identical to the plain order, rows vs float64', async (_i, c) => {
    const qv = rounded(values(c.batch * c.hq * c.nq * c.d, c.seed * 7 + 1).map((x) => 4 * x), c.dtype);
    const kv = rounded(values(c.batch * c.hkv * c.nk * c.d, c.seed * 7 + 2).map((x) => 4 * x), c.dtype);
    const vv = rounded(values(c.batch * c.hkv * c.nk * c.d, c.seed * 7 + 3), c.dtype);
    const q: Tensor = await tensor(qv.raw, { shape: [c.batch, c.hq, c.nq, c.d], dtype: c.dtype, device: 'cuda' });
    const k: Tensor = await tensor(kv.raw, { shape: [c.batch, c.hkv, c.nk, c.d], dtype: c.dtype, device: 'cuda' });
    const v: Tensor = await tensor(vv.raw, { shape: [c.batch, c.hkv, c.nk, c.d], dtype: c.dtype, device: 'cuda' });
    const lists = randomLists(c);
    const mask = await blockMask(lists, { batch: c.batch, heads: c.hq, queryLength: c.nq, keyLength: c.nk, block: c.block, device: 'cuda' });

    const run = async (tuning: Record<string, number>): Promise<{ o: Uint16Array; lse: Float32Array }> => {
      native().tuning.setAttention(tuning);
      const { output, lse } = await attention(q, k, v, mask, { returnLse: true });
      const o = (await output.toHost()) as Uint16Array;
      const l = (await lse.toHost()) as Float32Array;
      output.dispose();
      lse.dispose();
      return { o, lse: l };
    };
    const plain = await run({ persistent: 1, segmentTiles: 0 });
    for (const tuning of [{ persistent: 1, segmentTiles: 128 }, { persistent: 1, segmentTiles: 512 }, { persistent: 1, segmentTiles: 128, maxCtas: 3 }, {}]) {
      const seg = await run(tuning);
      let diff = 0;
      for (let i = 0; i < plain.o.length; i++) if (plain.o[i] !== seg.o[i]) diff++;
      let lseDiff = 0;
      for (let i = 0; i < plain.lse.length; i++) if (!Object.is(plain.lse[i], seg.lse[i])) lseDiff++;
      expect({ tuning, diff, lseDiff }).toEqual({ tuning, diff: 0, lseDiff: 0 });
    }

    // Sampled rows against float64: the first and last rows of the chunk and random ones, every head.
    const { nq: nqb, nk: nkb } = blockGrid(c.nq, c.nk, c.block);
    const out = toFloat(plain.o, c.dtype);
    const scale = 1 / Math.sqrt(c.d);
    const rand = rng(c.seed + 100);
    const sample = [0, 1, c.nq - 1, ...Array.from({ length: 5 }, () => Math.floor(rand() * c.nq))];
    const got: number[] = [];
    const want: number[] = [];
    let emptyRows = 0;
    for (let b = 0; b < c.batch; b++)
      for (let h = 0; h < c.hq; h++)
        for (const i of sample) {
          const s = c.nk - c.nq + i; // absolute position of the query
          const qb = Math.floor(s / c.block) - (nkb - nqb);
          const row = (b * c.hq + h) * nqb + qb;
          const hk = Math.floor(h / (c.hq / c.hkv));
          const qo = ((b * c.hq + h) * c.nq + i) * c.d;
          const keys: number[] = [];
          for (let e = lists.rowPtr[row]; e < lists.rowPtr[row + 1]; e++) {
            const j = lists.indices[e];
            for (let t = j * c.block; t < Math.min((j + 1) * c.block, s + 1); t++) keys.push(t);
          }
          const acc = new Float64Array(c.d);
          if (keys.length > 0) {
            const sc = keys.map((t) => {
              const ko = ((b * c.hkv + hk) * c.nk + t) * c.d;
              let dot = 0;
              for (let x = 0; x < c.d; x++) dot += qv.values[qo + x] * kv.values[ko + x];
              return dot * scale;
            });
            const mx = sc.reduce((a, x) => Math.max(a, x), -Infinity);
            let den = 0;
            keys.forEach((t, n) => {
              const p = Math.exp(sc[n] - mx);
              den += p;
              const vo = ((b * c.hkv + hk) * c.nk + t) * c.d;
              for (let x = 0; x < c.d; x++) acc[x] += p * vv.values[vo + x];
            });
            for (let x = 0; x < c.d; x++) acc[x] /= den;
          } else {
            emptyRows++;
          }
          for (let x = 0; x < c.d; x++) {
            got.push(out[qo + x]);
            want.push(acc[x]);
          }
          if (keys.length === 0) {
            // a row with no visible key: zeros and an LSE of -inf
            expect(Array.from(out.subarray(qo, qo + c.d)).every((y) => y === 0)).toBe(true);
            expect(plain.lse[(b * c.hq + h) * c.nq + i]).toBe(-Infinity);
          }
        }
    let num = 0;
    let den = 0;
    for (let n = 0; n < want.length; n++) {
      num += (got[n] - want[n]) ** 2;
      den += want[n] ** 2;
    }
    expect(Math.sqrt(num / Math.max(den, 1e-30))).toBeLessThanOrEqual(TOLERANCES[c.dtype]);
    expect(emptyRows).toBeLessThan(sample.length * c.batch * c.hq);
    [q, k, v].forEach((t) => t.dispose());
    mask.dispose();
  });
});

// Fresh random cases on every run, on the CPU and (when one is usable) on the
// GPU. The seed is new each run and printed; PRISM_FUZZ_SEED=n replays a run,
// PRISM_FUZZ_CASES=n sets the cases per suite.
//  1. Shapes (queries anywhere on the block grid, GQA groups, batches), dtypes,
//     layouts and estimation options drawn from their documented ranges:
//     estimate, then sparse and dense attention, against the float64 reference
//     (lib/validate's runCase: masks equal on every well-separated row, outputs
//     within the dtype's tolerance).
//  2. prefill() with the row log-sum-exp and a random softmax scale: output and
//     LSE against the float64 reference over the selection it returns.
//  3. Ragged batches, packed or in a paged cache (any page size and layout,
//     pages shuffled, unowned slots NaN): prefillVarlen against each
//     sequence's own prefill, with equal selections, and outputs and LSE bit for
//     bit on the CPU, within the dtype's tolerance on a GPU.
import { describeGpu } from './helpers/gpu';
import { prefill } from '../lib/ops';
import { prefillVarlen, PAGE_SIZES, type PagedBatch, type RaggedBatch } from '../lib/varlen';
import { Rng } from '../lib/rng';
import { bnhdToBhnd, prepareCase, relativeError, runCase, TOLERANCES, type ValidationCase } from '../lib/validate';
import { referenceAttention } from '../lib/reference-attention';
import { tensor } from '../lib/tensor';
import type { DType, EstimateOptions, Layout } from '../lib/types';
import { disposeAll, firstDifference, hostMask, maskParts, packed, pagedKV, raggedCase, rawBhnd, sequence, slice, valuesBhnd } from './helpers/varlen';

const SEED = process.env.PRISM_FUZZ_SEED !== undefined ? Number(process.env.PRISM_FUZZ_SEED) >>> 0 : (Date.now() ^ (process.pid << 16)) >>> 0;
const CASES = process.env.PRISM_FUZZ_CASES !== undefined ? Number(process.env.PRISM_FUZZ_CASES) : 12;
console.log(`fuzz seed ${SEED} (replay: PRISM_FUZZ_SEED=${SEED})`);

type Device = 'cpu' | 'cuda';

/** What each device takes, and sizes that keep the float64 reference quick. */
// `wide`: option values out to the far ends of their ranges (tau down to
// 2^-140, temperatures 1e-6 to 1e6, top-k past the row), run on the CPU.
const SPACE = {
  cpu: { dtypes: ['float32', 'float16', 'bfloat16'] as DType[], dims: [2, 6, 8, 16, 32, 64, 96, 128, 160], blocks: [16, 32, 48, 64, 128, 256, 1024], maxKeys: 400, maxBatch: 2, maxHkv: 2, groups: [1, 2, 4], wide: true },
  cuda: { dtypes: ['float16', 'bfloat16'] as DType[], dims: [64, 128], blocks: [64, 128, 256], maxKeys: 1100, maxBatch: 2, maxHkv: 2, groups: [1, 2, 4], wide: false },
};

function pick<T>(rng: Rng, xs: readonly T[]): T {
  return xs[rng.nextU32() % xs.length];
}
function int(rng: Rng, lo: number, hi: number): number {
  return lo + (rng.nextU32() % (hi - lo + 1));
}
function chance(rng: Rng, p: number): boolean {
  return rng.uniform() < p;
}

/** Log-uniform in [lo, hi]. */
function logUniform(rng: Rng, lo: number, hi: number): number {
  return Math.exp(Math.log(lo) + rng.uniform() * (Math.log(hi) - Math.log(lo)));
}

/** Estimation options anywhere in their documented ranges. */
function randomOptions(rng: Rng, d: number, block: number, wide: boolean): EstimateOptions {
  const o: EstimateOptions = { block };
  if (chance(rng, 0.2)) o.method = 'meanpool';
  if (chance(rng, 0.3)) o.ropeLayout = 'interleaved';
  if (chance(rng, 0.3)) {
    o.highDims = 2 * int(rng, 1, d / 2);
    o.lowDims = 2 * int(rng, 1, d / 2);
  }
  if (chance(rng, 0.25)) {
    o.selection = 'topk';
    o.topkHigh = int(rng, 1, wide ? 2000 : 9);
    o.topkLow = int(rng, 1, wide ? 2000 : 9);
  } else {
    // Exactly 1 at times: every block, whatever the rounding.
    const tau = () => (chance(rng, 0.1) ? 1 : wide && chance(rng, 0.3) ? logUniform(rng, 2 ** -140, 1) : 0.2 + 0.8 * rng.uniform());
    o.tauHigh = tau();
    o.tauLow = tau();
  }
  if (chance(rng, 0.25)) {
    o.calibrate = false;
    o.tempHigh = wide ? logUniform(rng, 1e-6, 1e6) : logUniform(rng, Math.exp(-2), Math.exp(2));
    o.tempLow = wide ? logUniform(rng, 1e-6, 1e6) : logUniform(rng, Math.exp(-2), Math.exp(2));
  }
  if (chance(rng, 0.15)) o.forceSink = false;
  if (chance(rng, 0.15)) o.forceDiagonal = false;
  return o;
}

function randomCase(rng: Rng, device: Device, i: number): ValidationCase {
  const s = SPACE[device];
  const d = pick(rng, s.dims);
  const block = pick(rng, s.blocks);
  const hkv = int(rng, 1, s.maxHkv);
  const nk = int(rng, 1, s.maxKeys);
  // A third of the cases prefill every key; the others a chunk that may start anywhere.
  const nq = chance(rng, 0.33) ? nk : int(rng, 1, nk);
  return {
    name: `fuzz ${device} ${i}`,
    // The structured workload needs two RoPE pairs at least.
    kind: d >= 4 && chance(rng, 0.5) ? 'structured' : 'random',
    dims: { batch: int(rng, 1, s.maxBatch), hq: hkv * pick(rng, s.groups), hkv, nq, nk, d },
    dtype: pick(rng, s.dtypes),
    layout: pick(rng, ['bhnd', 'bnhd'] as Layout[]),
    opts: randomOptions(rng, d, block, s.wide),
    seed: rng.nextU32(),
  };
}

function fuzzSuite(device: Device): void {
  jest.setTimeout(300_000);

  test(`${CASES} random problems against the float64 reference`, async () => {
    const rng = Rng.stream(SEED, device === 'cpu' ? 1 : 2);
    for (let i = 0; i < CASES; i++) {
      const c = randomCase(rng, device, i);
      const r = await runCase(c, device);
      const what = `seed ${SEED}, case ${i}: ${JSON.stringify({ kind: c.kind, dims: c.dims, dtype: c.dtype, layout: c.layout, opts: c.opts })}`;
      expect({ what, failures: r.failures }).toEqual({ what, failures: [] });
    }
  });

  test(`${CASES} random prefills with LSE and a random softmax scale against the float64 reference`, async () => {
    const rng = Rng.stream(SEED, device === 'cpu' ? 5 : 6);
    for (let i = 0; i < CASES; i++) {
      const c = randomCase(rng, device, i);
      const { batch, hq, hkv, nq, nk, d } = c.dims;
      const softmaxScale = Math.exp((rng.uniform() - 0.5) * 3) / Math.sqrt(d);
      const what = `seed ${SEED}, prefill ${i}: ${JSON.stringify({ kind: c.kind, dims: c.dims, dtype: c.dtype, layout: c.layout, opts: c.opts, softmaxScale })}`;
      const p = prepareCase(c);
      const up = (x: Float32Array | Uint16Array, h: number, n: number) => tensor(x, { shape: [batch, h, n, d], dtype: c.dtype, layout: c.layout, device });
      const [q, k, v] = [await up(p.native.q, hq, nq), await up(p.native.k, hkv, nk), await up(p.native.v, hkv, nk)];
      const res = await prefill(q, k, v, { ...c.opts, softmaxScale, returnLse: true });
      const m = (await hostMask(res.mask))!;
      const wantLse = new Float64Array(batch * hq * nq);
      const want = referenceAttention(p.ref.q, p.ref.k, p.ref.v, c.dims, m.counts, m.indices, m.block, softmaxScale, undefined, wantLse);
      const raw = await res.output.toFloat32();
      const got = c.layout === 'bnhd' ? bnhdToBhnd(raw, batch, hq, nq, d) : raw;
      const gotLse = (await res.lse!.toHost()) as Float32Array;
      let lseErr = 0;
      for (let r = 0; r < wantLse.length; r++) {
        const ok = wantLse[r] === gotLse[r] || Math.abs(gotLse[r] - wantLse[r]) <= 2e-4 * Math.max(1, Math.abs(wantLse[r]));
        if (!ok) lseErr++;
      }
      expect({ what, output: relativeError(got, want) <= TOLERANCES[c.dtype], lseRowsOff: lseErr }).toEqual({ what, output: true, lseRowsOff: 0 });
      disposeAll(q, k, v, res.output, res.lse, res.mask);
    }
  });

  test(`${CASES} random ragged batches, packed or paged, against each sequence alone`, async () => {
    const rng = Rng.stream(SEED, device === 'cpu' ? 3 : 4);
    const s = SPACE[device];
    for (let i = 0; i < CASES; i++) {
      const d = pick(rng, s.dims);
      const hkv = int(rng, 1, s.maxHkv);
      const dtype = pick(rng, s.dtypes);
      const batchSize = int(rng, 1, 4);
      // Zero-length queries, whole and partial chunks, lengths off the grid.
      const qLens: number[] = [];
      const kLens: number[] = [];
      for (let b = 0; b < batchSize; b++) {
        const nk = int(rng, 1, s.maxKeys);
        const kind = int(rng, 0, 3);
        kLens.push(nk);
        qLens.push(kind === 0 ? 0 : kind === 1 ? nk : int(rng, 1, nk));
      }
      if (!qLens.some((n) => n > 0)) qLens[0] = kLens[0];
      const c = raggedCase({ hq: hkv * pick(rng, s.groups), hkv, d, dtype, layout: pick(rng, ['bhnd', 'bnhd'] as Layout[]), qLens, kLens, seed: rng.nextU32() });
      const opts = { ...randomOptions(rng, d, pick(rng, s.blocks), s.wide), returnLse: true as const };
      const paging = chance(rng, 0.5) ? { pageSize: pick(rng, PAGE_SIZES), kvLayout: pick(rng, ['NHD', 'HND'] as const) } : null;
      const what = `seed ${SEED}, batch ${i}: ${JSON.stringify({ qLens, kLens, hq: c.hq, hkv, d, dtype, layout: c.layout, opts, paging })}`;

      const t = await packed(c, device);
      let k = t.k;
      let v = t.v;
      let batch: RaggedBatch | PagedBatch = { cuSeqlensQ: c.cuSeqlensQ, cuSeqlensK: c.cuSeqlensK };
      if (paging) {
        const p = await pagedKV(c, paging.pageSize, paging.kvLayout, rng.nextU32(), device);
        k = p.k;
        v = p.v;
        batch = { cuSeqlensQ: c.cuSeqlensQ, kvLens: p.pools.kvLens, pageTable: p.pools.pageTable, kvLayout: paging.kvLayout, pageSize: paging.pageSize };
      }
      const res = await prefillVarlen(t.q, k, v, batch, opts);
      const out = device === 'cpu' ? await rawBhnd(res.output) : await valuesBhnd(res.output);
      const lse = (await res.lse!.toHost()) as Float32Array;
      for (let b = 0; b < batchSize; b++) {
        if (qLens[b] === 0) {
          expect({ what, b, mask: res.masks![b] }).toEqual({ what, b, mask: null });
          continue;
        }
        const sq = await sequence(c, b, device);
        const one = await prefill(sq.q, sq.k, sq.v, opts);
        expect({ what, b, mask: maskParts((await hostMask(res.masks![b]))!) }).toEqual({ what, b, mask: maskParts((await hostMask(one.mask))!) });
        const got = slice(out, c.hq, c.totalQ, d, c.cuSeqlensQ[b], qLens[b]);
        const gotLse = slice(lse, c.hq, c.totalQ, 1, c.cuSeqlensQ[b], qLens[b]);
        const wantLse = (await one.lse!.toHost()) as Float32Array;
        if (device === 'cpu') {
          expect({ what, b, output: firstDifference(got, await rawBhnd(one.output)), lse: firstDifference(gotLse, wantLse) }).toEqual({ what, b, output: -1, lse: -1 });
        } else {
          const eo = relativeError(got as Float32Array, await valuesBhnd(one.output));
          const el = relativeError(gotLse, wantLse);
          expect({ what, b, output: eo <= TOLERANCES[dtype], lse: el <= 1e-5 }).toEqual({ what, b, output: true, lse: true });
        }
        disposeAll(sq.q, sq.k, sq.v, one.output, one.mask, one.lse);
      }
      res.masks!.forEach((m) => m?.dispose());
      disposeAll(t.q, t.k, t.v, k, v, res.output, res.lse);
    }
  });
}

describe('fuzz (CPU)', () => fuzzSuite('cpu'));
describeGpu('fuzz (GPU)', () => fuzzSuite('cuda'));

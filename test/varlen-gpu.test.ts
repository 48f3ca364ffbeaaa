// Ragged batches and paged KV caches on cuda:0 (bf16 / fp16, d 64 / 128,
// blocks 64 / 128): a packed batch equals its sequences run one at a time,
// paged equals packed K/V for every page size and both layouts, and chunked
// prefill over a paged cache equals the one-shot prefill's rows. Selections
// must be equal; outputs agree within the dtype's tolerance (and are reported
// when not bitwise equal). Skipped with a notice without a GPU; fails with
// PRISM_REQUIRE_GPU=1.
import { prefill } from '../lib/ops';
import { attentionVarlen, estimateVarlen, prefillVarlen, type PagedBatch } from '../lib/varlen';
import { referenceVarlenAttention } from '../lib/reference-varlen';
import { relativeError, TOLERANCES } from '../lib/validate';
import type { DType, Layout } from '../lib/types';
import { describeGpu } from './helpers/gpu';
import {
  batchMaskParts,
  disposeAll,
  firstDifference,
  hostMask,
  maskParts,
  packed,
  pagedKV,
  raggedCase,
  randomLengths,
  sequence,
  slice,
  upload,
  valuesBhnd,
  type RaggedCase,
} from './helpers/varlen';

const DEVICE = 'cuda:0';

interface Config {
  dtype: DType;
  d: number;
  block: number;
  layout: Layout;
  seed: number;
}

const configs: Config[] = [
  { dtype: 'bfloat16', d: 128, block: 128, layout: 'bhnd', seed: 1 },
  { dtype: 'float16', d: 64, block: 64, layout: 'bnhd', seed: 2 },
  { dtype: 'bfloat16', d: 64, block: 128, layout: 'bnhd', seed: 3 },
  { dtype: 'float16', d: 128, block: 64, layout: 'bhnd', seed: 4 },
];
const named = (list: Config[]): Array<[string, Config]> => list.map((c) => [`${c.dtype}, d ${c.d}, block ${c.block}, ${c.layout}`, c]);

function caseOf(c: Config): RaggedCase {
  const { qLens, kLens } = randomLengths(6, 1500, c.seed * 7919);
  return raggedCase({ hq: 8, hkv: 2, d: c.d, dtype: c.dtype, layout: c.layout, qLens, kLens, seed: c.seed });
}

/** Within the dtype's tolerance; notes outputs that are not bitwise equal. */
function expectClose(got: Float32Array, want: Float32Array, dtype: DType, what: string): void {
  const at = firstDifference(got, want);
  if (at >= 0) console.info(`${what}: not bitwise equal (first difference at ${at}), relative error ${relativeError(got, want).toExponential(2)}`);
  expect(relativeError(got, want)).toBeLessThanOrEqual(TOLERANCES[dtype]);
}

describeGpu('ragged batches (GPU)', () => {
  test.each(named(configs))('prefillVarlen equals per-sequence prefill (%s)', async (_, cfg) => {
    const c = caseOf(cfg);
    const t = await packed(c, DEVICE);
    const opts = { block: cfg.block, returnLse: true as const };
    const res = await prefillVarlen(t.q, t.k, t.v, { cuSeqlensQ: c.cuSeqlensQ, cuSeqlensK: c.cuSeqlensK }, opts);
    const out = await valuesBhnd(res.output);
    const lse = (await res.lse!.toHost()) as Float32Array;
    for (let i = 0; i < c.qLens.length; i++) {
      if (c.qLens[i] === 0) {
        expect(res.masks![i]).toBeNull();
        continue;
      }
      const s = await sequence(c, i, DEVICE);
      const one = await prefill(s.q, s.k, s.v, opts);
      expect(maskParts((await hostMask(res.masks![i]))!)).toEqual(maskParts((await hostMask(one.mask))!));
      expectClose(slice(out, c.hq, c.totalQ, c.d, c.cuSeqlensQ[i], c.qLens[i]), await valuesBhnd(one.output), cfg.dtype, `sequence ${i} output`);
      const wantLse = (await one.lse!.toHost()) as Float32Array;
      expect(relativeError(slice(lse, c.hq, c.totalQ, 1, c.cuSeqlensQ[i], c.qLens[i]), wantLse)).toBeLessThanOrEqual(1e-5);
      disposeAll(s.q, s.k, s.v, one.output, one.mask, one.lse);
    }
    disposeAll(t.q, t.k, t.v, res.output, res.lse, ...res.masks!);
  });

  test.each(named(configs.slice(0, 2)))('estimateVarlen + attentionVarlen match the float64 reference over the selection (%s)', async (_, cfg) => {
    const c = caseOf(cfg);
    const t = await packed(c, DEVICE);
    const batch = { cuSeqlensQ: c.cuSeqlensQ, cuSeqlensK: c.cuSeqlensK };
    const masks = await estimateVarlen(t.q, t.k, batch, { block: cfg.block });
    const out = await attentionVarlen(t.q, t.k, t.v, batch, masks);
    const hosts = await Promise.all(masks.map(hostMask));
    const problem = { q: c.q.values, k: c.k.values, v: c.v.values, hq: c.hq, hkv: c.hkv, d: c.d, cuSeqlensQ: c.cuSeqlensQ, cuSeqlensK: c.cuSeqlensK };
    const ref = referenceVarlenAttention(problem, hosts.map((h) => (h ? { counts: h.counts, indices: h.indices } : null)), cfg.block);
    expect(relativeError(await valuesBhnd(out), ref.output)).toBeLessThanOrEqual(TOLERANCES[cfg.dtype]);
    disposeAll(t.q, t.k, t.v, out, ...masks);
  });
});

describeGpu('paged KV (GPU)', () => {
  const cfgs = named(configs.slice(0, 2));
  const pages = [16, 32, 64, 128, 256].flatMap((p) => (['NHD', 'HND'] as const).map((l) => [p, l] as const));
  test.each(cfgs.flatMap(([n, cfg]) => pages.map(([p, l]) => [`${n}, page ${p}, ${l}`, cfg, p, l] as const)))(
    'paged equals packed K/V (%s)',
    async (_, cfg, pageSize, kvLayout) => {
      const c = caseOf(cfg);
      const t = await packed(c, DEVICE);
      const { pools, k: kp, v: vp } = await pagedKV(c, pageSize, kvLayout, pageSize, DEVICE);
      const opts = { block: cfg.block, returnLse: true as const };
      const want = await prefillVarlen(t.q, t.k, t.v, { cuSeqlensQ: c.cuSeqlensQ, cuSeqlensK: c.cuSeqlensK }, opts);
      const batch: PagedBatch = { cuSeqlensQ: c.cuSeqlensQ, kvLens: pools.kvLens, pageTable: pools.pageTable, kvLayout };
      const got = await prefillVarlen(t.q, kp, vp, batch, opts);
      expect(await batchMaskParts(got.masks!)).toEqual(await batchMaskParts(want.masks!));
      expectClose(await valuesBhnd(got.output), await valuesBhnd(want.output), cfg.dtype, `page ${pageSize} ${kvLayout} output`);
      expect(relativeError((await got.lse!.toHost()) as Float32Array, (await want.lse!.toHost()) as Float32Array)).toBeLessThanOrEqual(1e-5);
      disposeAll(t.q, t.k, t.v, kp, vp, got.output, got.lse, want.output, want.lse, ...got.masks!, ...want.masks!);
    },
  );

  test.each(named(configs))('chunked prefill over a paged cache equals the one-shot rows (%s)', async (_, cfg) => {
    const B = cfg.block;
    const N = 8 * B + 37;
    const c = raggedCase({ hq: 8, hkv: 2, d: cfg.d, dtype: cfg.dtype, layout: cfg.layout, qLens: [N], kLens: [N], seed: cfg.seed });
    const opts = { block: B, calibrate: false, tempHigh: 0.8, tempLow: 1.2 };
    const t = await packed(c, DEVICE);
    const full = await prefill(t.q, t.k, t.v, opts);
    const fm = (await hostMask(full.mask))!;
    const fullOut = await valuesBhnd(full.output);
    const { pools, k: kp, v: vp } = await pagedKV(c, 64, 'NHD', 5, DEVICE);
    let start = 0;
    for (const len of [3 * B, 2 * B, N - 5 * B]) {
      const end = start + len;
      const q = await upload(slice(c.q.raw, c.hq, N, c.d, start, len), c.hq, len, c.d, c.dtype, c.layout, DEVICE);
      const r = await prefillVarlen(q, kp, vp, { cuSeqlensQ: [0, len], kvLens: [end], pageTable: pools.pageTable }, opts);
      const m = (await hostMask(r.masks![0]))!;
      const first = start / B;
      for (let h = 0; h < c.hq; h++) {
        for (let i = 0; i < m.nq; i++) {
          const row = Array.from(m.indices.subarray(m.rowPtr[h * m.nq + i], m.rowPtr[h * m.nq + i + 1]));
          const want = Array.from(fm.indices.subarray(fm.rowPtr[h * fm.nq + first + i], fm.rowPtr[h * fm.nq + first + i + 1]));
          expect([h, i, row]).toEqual([h, i, want]);
        }
      }
      expectClose(await valuesBhnd(r.output), slice(fullOut, c.hq, N, c.d, start, len), cfg.dtype, `chunk at ${start}`);
      disposeAll(q, r.output, ...r.masks!);
      start = end;
    }
    disposeAll(t.q, t.k, t.v, full.output, full.mask, kp, vp);
  });
});

// Ragged batches and paged KV caches on cuda:0 (bf16 / fp16, d 64 / 128,
// blocks 64 / 128): a packed batch equals its sequences run one at a time,
// paged equals packed K/V bit for bit for every page size and both layouts
// (the pools' unused slots hold NaN), and chunked
// prefill over a paged cache equals the one-shot prefill's rows. Selections
// must be equal; outputs agree within the dtype's tolerance (and are reported
// when not bitwise equal). Skipped with a notice without a GPU; fails with
// PRISM_REQUIRE_GPU=1.
import { prefill } from '../lib/ops';
import { attentionVarlen, estimateVarlen, prefillVarlen, type PagedBatch, type VarlenPrefillResult } from '../lib/varlen';
import { referenceVarlenAttention } from '../lib/reference-varlen';
import { relativeError, TOLERANCES } from '../lib/validate';
import type { DType, Layout } from '../lib/types';
import { native } from '../lib/native';
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

/** Each sequence of a batch's prefill against prefill() of that sequence alone: equal selections, outputs within the dtype's tolerance, lse within 1e-5. */
async function expectEachEqualsPrefill(c: RaggedCase, res: VarlenPrefillResult, opts: { block: number; returnLse: true }): Promise<void> {
  const out = await valuesBhnd(res.output);
  const lse = (await res.lse!.toHost()) as Float32Array;
  for (let i = 0; i < c.qLens.length; i++) {
    if (c.qLens[i] === 0) {
      expect(res.masks![i]).toBeNull();
      continue;
    }
    const s = await sequence(c, i, DEVICE);
    const one = await prefill(s.q, s.k, s.v, opts);
    expect([i, maskParts((await hostMask(res.masks![i]))!)]).toEqual([i, maskParts((await hostMask(one.mask))!)]);
    expectClose(slice(out, c.hq, c.totalQ, c.d, c.cuSeqlensQ[i], c.qLens[i]), await valuesBhnd(one.output), c.dtype, `sequence ${i} output`);
    const wantLse = (await one.lse!.toHost()) as Float32Array;
    expect(relativeError(slice(lse, c.hq, c.totalQ, 1, c.cuSeqlensQ[i], c.qLens[i]), wantLse)).toBeLessThanOrEqual(1e-5);
    disposeAll(s.q, s.k, s.v, one.output, one.mask, one.lse);
  }
}

describeGpu('ragged batches (GPU)', () => {
  test.each(named(configs))('prefillVarlen equals per-sequence prefill (%s)', async (_, cfg) => {
    const c = caseOf(cfg);
    const t = await packed(c, DEVICE);
    const opts = { block: cfg.block, returnLse: true as const };
    const res = await prefillVarlen(t.q, t.k, t.v, { cuSeqlensQ: c.cuSeqlensQ, cuSeqlensK: c.cuSeqlensK }, opts);
    await expectEachEqualsPrefill(c, res, opts);
    disposeAll(t.q, t.k, t.v, res.output, res.lse, ...res.masks!);
  });

  test('selection sizes and row pointers of sequences over several scan chunks (4096 rows each) equal prefill()', async () => {
    // 32 heads x 129 query blocks of 64 = 4128 rows: two chunks, beside sequences of one
    const c = raggedCase({ hq: 32, hkv: 4, d: 64, dtype: 'float16', layout: 'bhnd', qLens: [8200, 300, 0, 12345, 70], kLens: [8200, 5000, 10, 12400, 70], seed: 21 });
    const t = await packed(c, DEVICE);
    const opts = { block: 64, returnLse: true as const };
    const res = await prefillVarlen(t.q, t.k, t.v, { cuSeqlensQ: c.cuSeqlensQ, cuSeqlensK: c.cuSeqlensK }, opts);
    await expectEachEqualsPrefill(c, res, opts);
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

// The attention kernels read paged K/V in place, page by page (the Hopper
// kernel by TMA boxes of min(page, 128) rows, the last page through its own
// map; the portable kernel row by row): the same kernel over the same keys
// as packed K/V, so the same bits. The pools hold NaN wherever no sequence's
// key lies (pagePools), which a read past a sequence's last key would leak.
describeGpu('paged KV (GPU)', () => {
  const pages = [16, 32, 64, 128, 256].flatMap((p) => (['NHD', 'HND'] as const).map((l) => [p, l] as const));
  async function pagedEqualsPacked(cfg: Config, pageSize: number, kvLayout: 'NHD' | 'HND'): Promise<void> {
    const c = caseOf(cfg);
    const t = await packed(c, DEVICE);
    const { pools, k: kp, v: vp } = await pagedKV(c, pageSize, kvLayout, pageSize, DEVICE);
    const opts = { block: cfg.block, returnLse: true as const };
    const want = await prefillVarlen(t.q, t.k, t.v, { cuSeqlensQ: c.cuSeqlensQ, cuSeqlensK: c.cuSeqlensK }, opts);
    const batch: PagedBatch = { cuSeqlensQ: c.cuSeqlensQ, kvLens: pools.kvLens, pageTable: pools.pageTable, kvLayout };
    const got = await prefillVarlen(t.q, kp, vp, batch, opts);
    expect(await batchMaskParts(got.masks!)).toEqual(await batchMaskParts(want.masks!));
    const out = await valuesBhnd(got.output);
    expect(out.every(Number.isFinite)).toBe(true);
    expect(firstDifference(out, await valuesBhnd(want.output))).toBe(-1);
    expect(firstDifference((await got.lse!.toHost()) as Float32Array, (await want.lse!.toHost()) as Float32Array)).toBe(-1);
    disposeAll(t.q, t.k, t.v, kp, vp, got.output, got.lse, want.output, want.lse, ...got.masks!, ...want.masks!);
  }

  test.each(named(configs).flatMap(([n, cfg]) => pages.map(([p, l]) => [`${n}, page ${p}, ${l}`, cfg, p, l] as const)))(
    'paged equals packed K/V, bit for bit (%s)',
    async (_, cfg, pageSize, kvLayout) => pagedEqualsPacked(cfg, pageSize, kvLayout),
  );

  // The Hopper kernel's configurations through the portable kernel too.
  test.each(named(configs.filter((c) => c.block === 128)).flatMap(([n, cfg]) => ([[16, 'NHD'], [128, 'HND'], [256, 'NHD']] as const).map(([p, l]) => [`${n}, page ${p}, ${l}`, cfg, p, l] as const)))(
    'paged equals packed K/V on the portable kernel (%s)',
    async (_, cfg, pageSize, kvLayout) => {
      native().tuning.setAttention({ path: 'portable' });
      try {
        await pagedEqualsPacked(cfg, pageSize, kvLayout);
      } finally {
        native().tuning.setAttention({});
      }
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

// Short sequences (plan_lanes: at most 1024 query tiles of 128 over the heads,
// 128K keys, 128 MiB of gathered paged keys) run on several streams at once within a phase (estimations, then
// attentions), the others on the op's stream; the side streams are the
// device's, shared by every call in flight. Whatever runs beside a sequence,
// it must get what it gets alone.
describeGpu('sequences side by side (GPU)', () => {
  // 8 heads x 129 query tiles: one past the side streams' limit; its keys start off the block grid
  const LONG_Q = 16384 + 77;
  function mixedCase(seed: number): RaggedCase {
    const { qLens, kLens } = randomLengths(9, 3000, seed * 104729);
    return raggedCase({ hq: 8, hkv: 2, d: 128, dtype: 'bfloat16', layout: 'bhnd', qLens: [LONG_Q, ...qLens], kLens: [LONG_Q + 300, ...kLens], seed });
  }

  test.each([
    ['packed', 0],
    ['paged, 64-token pages', 64],
  ] as const)('a long sequence and nine short ones equal per-sequence prefill (%s)', async (_, pageSize) => {
    const c = mixedCase(11);
    const t = await packed(c, DEVICE);
    const paged = pageSize ? await pagedKV(c, pageSize, 'NHD', 3, DEVICE) : null;
    const opts = { block: 128, returnLse: true as const };
    const res = paged
      ? await prefillVarlen(t.q, paged.k, paged.v, { cuSeqlensQ: c.cuSeqlensQ, kvLens: paged.pools.kvLens, pageTable: paged.pools.pageTable }, opts)
      : await prefillVarlen(t.q, t.k, t.v, { cuSeqlensQ: c.cuSeqlensQ, cuSeqlensK: c.cuSeqlensK }, opts);
    expect(res.stats.estimateMs).toBeGreaterThan(0);
    expect(res.stats.attentionMs).toBeGreaterThan(0);
    await expectEachEqualsPrefill(c, res, opts);
    disposeAll(t.q, t.k, t.v, paged?.k, paged?.v, res.output, res.lse, ...res.masks!);
  });

  test('one stream and four give the same bits (packed and paged, with lse)', async () => {
    const c = mixedCase(15);
    const t = await packed(c, DEVICE);
    const paged = await pagedKV(c, 32, 'HND', 4, DEVICE);
    const opts = { block: 128, returnLse: true as const };
    const runBoth = async () => {
      const a = await prefillVarlen(t.q, t.k, t.v, { cuSeqlensQ: c.cuSeqlensQ, cuSeqlensK: c.cuSeqlensK }, opts);
      const b = await prefillVarlen(t.q, paged.k, paged.v, { cuSeqlensQ: c.cuSeqlensQ, kvLens: paged.pools.kvLens, pageTable: paged.pools.pageTable, kvLayout: 'HND' }, opts);
      const e = await estimateVarlen(t.q, paged.k, { cuSeqlensQ: c.cuSeqlensQ, kvLens: paged.pools.kvLens, pageTable: paged.pools.pageTable, kvLayout: 'HND' });
      const d = await attentionVarlen(t.q, t.k, t.v, { cuSeqlensQ: c.cuSeqlensQ, cuSeqlensK: c.cuSeqlensK }, e);
      const host = {
        outs: [await valuesBhnd(a.output), await valuesBhnd(b.output), await valuesBhnd(d)],
        lse: [(await a.lse!.toHost()) as Float32Array, (await b.lse!.toHost()) as Float32Array],
        masks: [await batchMaskParts(a.masks!), await batchMaskParts(b.masks!), await batchMaskParts(e)],
      };
      disposeAll(a.output, a.lse, b.output, b.lse, d, ...a.masks!, ...b.masks!, ...e);
      return host;
    };
    const tuner = native().tuning;
    let one;
    try {
      tuner.setVarlen({ maxLanes: 1 });
      one = await runBoth();
    } finally {
      tuner.setVarlen({});
    }
    const four = await runBoth();
    for (let j = 0; j < 3; j++) expect([j, firstDifference(four.outs[j], one.outs[j])]).toEqual([j, -1]);
    for (let j = 0; j < 2; j++) expect([j, firstDifference(four.lse[j], one.lse[j])]).toEqual([j, -1]);
    expect(four.masks).toEqual(one.masks);
    expect(four.masks[1]).toEqual(four.masks[0]); // paged selects what packed selects
    disposeAll(t.q, t.k, t.v, paged.k, paged.v);
  });

  test('concurrent calls on the shared side streams give the bits each gives alone', async () => {
    const cases = [12, 13, 14].map((seed) => raggedCase({ hq: 8, hkv: 2, d: 128, dtype: 'bfloat16', layout: 'bhnd', ...randomLengths(10, 4000, seed * 31), seed }));
    const inputs = await Promise.all(cases.map((c) => packed(c, DEVICE)));
    const batchOf = (c: RaggedCase) => ({ cuSeqlensQ: c.cuSeqlensQ, cuSeqlensK: c.cuSeqlensK });
    const alone = [];
    for (let j = 0; j < cases.length; j++) {
      const r = await prefillVarlen(inputs[j].q, inputs[j].k, inputs[j].v, batchOf(cases[j]));
      alone.push({ out: await valuesBhnd(r.output), masks: await batchMaskParts(r.masks!) });
      disposeAll(r.output, ...r.masks!);
    }
    // Each case three times, all in flight at once, with estimations beside them.
    const order = [0, 1, 2, 0, 1, 2, 0, 1, 2];
    const [runs, estimates] = await Promise.all([
      Promise.all(order.map((j) => prefillVarlen(inputs[j].q, inputs[j].k, inputs[j].v, batchOf(cases[j])))),
      Promise.all(order.map((j) => estimateVarlen(inputs[j].q, inputs[j].k, batchOf(cases[j])))),
    ]);
    for (let r = 0; r < order.length; r++) {
      const j = order[r];
      const out = await valuesBhnd(runs[r].output);
      expect([r, firstDifference(out, alone[j].out)]).toEqual([r, -1]);
      expect(await batchMaskParts(runs[r].masks!)).toEqual(alone[j].masks);
      expect(await batchMaskParts(estimates[r])).toEqual(alone[j].masks);
      disposeAll(runs[r].output, ...runs[r].masks!, ...estimates[r]);
    }
    for (const t of inputs) disposeAll(t.q, t.k, t.v);
  });
});

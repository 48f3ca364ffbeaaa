// Key summaries on one device: the cases the CPU suite (test/key-summaries.test.ts)
// and the GPU suite (test/key-summaries-gpu.test.ts) share. Selections with
// summaries must equal selections without, bit for bit; summaries built chunk
// by chunk, through packed views or through page tables, must equal the
// summaries built at once.
import type { BlockMask } from '../../lib/block-mask';
import { native } from '../../lib/native';
import { estimate, prefill } from '../../lib/ops';
import { estimateVarlen, prefillVarlen, type PagedBatch } from '../../lib/varlen';
import { summarizeKeys, summarizeKeysVarlen, type KeySummaries } from '../../lib/key-summaries';
import { tensor, type Tensor } from '../../lib/tensor';
import { structuredWorkload } from '../../lib/workloads';
import type { DeviceSpec, DType, EstimateOptions, Layout } from '../../lib/types';
import { bhndToBnhd } from '../../lib/validate';
import { rounded, values } from './data';
import { batchMaskParts, disposeAll, firstDifference, maskParts, packed, pagedKV, raggedCase, rawBhnd, slice, upload, type RaggedCase } from './varlen';

export interface SummaryConfig {
  dtype: DType;
  d: number;
  block: number;
  layout: Layout;
  opts: EstimateOptions;
  seed: number;
}

/** The valid rows (and energies) of summaries, per (batch, kv head), as plain arrays. */
export async function summaryContents(s: KeySummaries): Promise<{ rows: number[][]; energies: number[][] }> {
  const rowsRaw = new Float32Array(await s.parts.rows.toHost());
  const cap = s.parts.rows.shape[2];
  const width = s.parts.rows.shape[3];
  const rows: number[][] = [];
  const energies: number[][] = [];
  const e = s.parts.energies ? new Float32Array(await s.parts.energies.toHost()) : null;
  for (let bh = 0; bh < s.batch * s.kvHeads; bh++) {
    rows.push(Array.from(rowsRaw.subarray(bh * cap * width, (bh * cap + s.blocks) * width)));
    if (e) energies.push(Array.from(e.subarray(bh * cap * 3, (bh * cap + s.blocks) * 3)));
  }
  return { rows, energies };
}

/** A bhnd [b, h, n, d] array as a tensor in layout `c.layout`. */
export async function uploadBhnd(raw: Float32Array | Uint16Array, b: number, h: number, n: number, c: { dtype: DType; d: number; layout: Layout }, device: DeviceSpec): Promise<Tensor> {
  const data = c.layout === 'bhnd' ? raw : (bhndToBnhd(raw, b, h, n, c.d) as Float32Array | Uint16Array);
  return tensor(data, { shape: [b, h, n, c.d], dtype: c.dtype, layout: c.layout, device });
}

/** q [b, hq, nq, d] and k, v [b, hkv, nk, d] of random values in `layout` (kRaw: k in bhnd order). */
export async function contiguousProblem(
  c: { dtype: DType; d: number; layout: Layout; seed: number },
  b: number,
  hq: number,
  hkv: number,
  nq: number,
  nk: number,
  device: DeviceSpec,
): Promise<{ q: Tensor; k: Tensor; v: Tensor; kRaw: Float32Array | Uint16Array }> {
  const gen = (n: number, seed: number) => rounded(values(n, seed), c.dtype).raw;
  const kRaw = gen(b * hkv * nk * c.d, c.seed + 1);
  return {
    q: await uploadBhnd(gen(b * hq * nq * c.d, c.seed), b, hq, nq, c, device),
    k: await uploadBhnd(kRaw, b, hkv, nk, c, device),
    v: await uploadBhnd(gen(b * hkv * nk * c.d, c.seed + 2), b, hkv, nk, c, device),
    kRaw,
  };
}

/** Keys [0, n) of a bhnd [b, h, total, d] array as a new bhnd array. */
export function keyPrefix<T extends Float32Array | Uint16Array>(x: T, b: number, h: number, total: number, d: number, n: number): T {
  const out = new (x.constructor as new (n: number) => T)(b * h * n * d);
  for (let bh = 0; bh < b * h; bh++) out.set(x.subarray(bh * total * d, (bh * total + n) * d), bh * n * d);
  return out;
}

/** Estimation (and, where the device attends, prefill) with and without summaries: equal bitwise. */
export async function expectSameSelection(q: Tensor, k: Tensor, v: Tensor | null, opts: EstimateOptions, s: KeySummaries): Promise<void> {
  const a = await estimate(q, k, opts);
  const b = await estimate(q, k, opts, { keySummaries: s });
  expect(maskParts(await b.toHost({ mask: false }))).toEqual(maskParts(await a.toHost({ mask: false })));
  disposeAll(a, b);
  if (!v) return;
  const pa = await prefill(q, k, v, opts);
  const pb = await prefill(q, k, v, opts, { keySummaries: s });
  expect(maskParts(await pb.mask!.toHost({ mask: false }))).toEqual(maskParts(await pa.mask!.toHost({ mask: false })));
  expect(firstDifference(await rawBhnd(pb.output), await rawBhnd(pa.output))).toBe(-1);
  expect(pb.stats.density).toBe(pa.stats.density);
  disposeAll(pa.output, pa.mask, pb.output, pb.mask);
}

/** A ragged case and its paged batch (flat page table) for `pageSize` / `kvLayout`. */
export async function pagedCase(c: RaggedCase, pageSize: number, kvLayout: 'NHD' | 'HND', device: DeviceSpec) {
  const { pools, k, v } = await pagedKV(c, pageSize, kvLayout, pageSize + 3, device);
  const batch: PagedBatch = { cuSeqlensQ: c.cuSeqlensQ, kvLens: pools.kvLens, pageTable: pools.pageTable, kvLayout, pageSize };
  return { pools, k, v, batch };
}

/**
 * One prompt of 5 blocks + 20 tokens in a paged cache (page size, layout),
 * prefilled in chunks of block + 37 tokens (ending off the block grid): its
 * pools, its packed q / k / v, and per chunk the chunk's queries and paged batch.
 */
async function pagedChunkedPrompt(c: SummaryConfig, pageSize: number, kvLayout: 'NHD' | 'HND', device: DeviceSpec, seed: number) {
  const total = 5 * c.block + 20;
  const chunk = c.block + 37;
  const rc = raggedCase({ hq: 4, hkv: 2, d: c.d, dtype: c.dtype, layout: 'bhnd', qLens: [total], kLens: [total], seed });
  const { k: kp, v: vp, pools } = await pagedCase(rc, pageSize, kvLayout, device);
  const q = await packed(rc, device);
  async function* chunks(): AsyncGenerator<{ qc: Tensor; batch: PagedBatch; end: number }> {
    for (let start = 0; start < total; start += chunk) {
      const end = Math.min(total, start + chunk);
      const qc = await upload(slice(rc.q.raw, rc.hq, rc.totalQ, rc.d, start, end - start), rc.hq, end - start, rc.d, rc.dtype, 'bhnd', device);
      yield { qc, batch: { cuSeqlensQ: [0, end - start], kvLens: [end], pageTable: pools.pageTable, kvLayout }, end };
    }
  }
  return { total, rc, kp, vp, pools, q, chunks };
}

/** The shared cases, registered in the calling describe block. `attend`: the device attends with these configs (prefill checked too). */
export function keySummaryCases(device: DeviceSpec, configs: Array<[string, SummaryConfig]>, attend: boolean, pageSizes: number[]): void {
  test.each(configs)('%s: contiguous, shifted query grid, summaries of every full block', async (_name, c) => {
    const opts = { ...c.opts, block: c.block };
    const nk = 5 * c.block + 7; // not a multiple of the block
    const nq = 3 * c.block + 5; // shifted query grid: Nk - Nq not a multiple of the block
    const t = await contiguousProblem(c, 2, 4, 2, nq, nk, device);
    const s = await summarizeKeys(t.k, opts);
    expect(s.blocks).toBe(5);
    expect(s.keys).toBe(5 * c.block);
    expect(s.capacityBlocks).toBe(5);
    expect(s.timesMs).toHaveLength(1);
    await expectSameSelection(t.q, t.k, attend ? t.v : null, opts, s);
    // Fewer summarized blocks than k holds: the rest is pooled from k.
    const part = await summarizeKeys(t.k, opts);
    await summarizeKeys(t.k, opts, { into: part, from: 0 }); // rewrite from block 0
    expect(await summaryContents(part)).toEqual(await summaryContents(s));
    disposeAll(t.q, t.k, t.v, s, part);
  });

  test.each(configs)('%s: the estimation reads the summaries, not the first blocks of k', async (_name, c) => {
    const opts = { ...c.opts, block: c.block };
    const nk = 4 * c.block + 9;
    const t = await contiguousProblem(c, 1, 2, 1, 2 * c.block, nk, device);
    const s = await summarizeKeys(t.k, opts, { maxKeys: 8 * c.block });
    expect(s.capacityBlocks).toBe(8);
    // k2 = k with its first 3 blocks replaced: with the summaries of k it estimates as k does.
    const raw2 = t.kRaw.slice();
    raw2.set(rounded(values(3 * c.block * c.d, c.seed + 99), c.dtype).raw, 0);
    const k2 = await uploadBhnd(raw2, 1, 1, nk, c, device);
    // Blocks 3.. recomputed from k2 into summaries of k: blocks 0..2 kept, the rest equal k's too.
    const sub = await summarizeKeys(t.k, opts);
    await summarizeKeys(k2, opts, { into: sub, from: 3 });
    expect(await summaryContents(sub)).toEqual(await summaryContents(s));
    const want = await estimate(t.q, t.k, opts);
    const got = await estimate(t.q, k2, opts, { keySummaries: s });
    const plain = await estimate(t.q, k2, opts);
    expect(maskParts(await got.toHost({ mask: false }))).toEqual(maskParts(await want.toHost({ mask: false })));
    // without them k2's new first blocks change the calibrated temperatures
    if (c.opts.calibrate !== false && c.opts.method !== 'meanpool') expect(maskParts(await plain.toHost({ mask: false }))).not.toEqual(maskParts(await want.toHost({ mask: false })));
    disposeAll(t.q, t.k, t.v, k2, s, sub, want, got, plain);
  });

  test.each(configs)('%s: chunked appends equal the summaries built at once', async (_name, c) => {
    const opts = { ...c.opts, block: c.block };
    const total = 6 * c.block + 11;
    const b = 2;
    const hkv = 2;
    const t = await contiguousProblem(c, b, 4, hkv, total, total, device);
    const once = await summarizeKeys(t.k, opts);
    let into: KeySummaries | null = null;
    // chunk ends off the block grid: each append adds the newly full blocks
    for (const end of [c.block - 3, c.block + 5, 3 * c.block, 3 * c.block + 1, 5 * c.block + 2, total]) {
      const kt = await uploadBhnd(keyPrefix(t.kRaw, b, hkv, total, c.d, end), b, hkv, end, c, device);
      const qc = await contiguousProblem({ ...c, seed: c.seed + end }, b, 4, hkv, Math.min(end, c.block + 3), end, device);
      if (into === null) into = await summarizeKeys(kt, opts, { maxKeys: total });
      else {
        const same = await summarizeKeys(kt, opts, { into });
        expect(same).toBe(into);
      }
      expect(into.blocks).toBe(Math.floor(end / c.block));
      // this chunk's estimation over the summaries of the previous chunks equals the plain one
      await expectSameSelection(qc.q, kt, null, opts, into);
      disposeAll(kt, qc.q, qc.k, qc.v);
    }
    expect(await summaryContents(into!)).toEqual(await summaryContents(once));
    disposeAll(t.q, t.k, t.v, once, into);
  });

  test('structured inputs (RoPE, local and slash patterns): same selection with summaries', async () => {
    const w = structuredWorkload({ batch: 1, hq: 4, hkv: 2, seqLen: 1100, nq: 700, d: 64, dtype: 'bfloat16', seed: 5 });
    const q = await tensor(w.q, { shape: [1, 4, 700, 64], dtype: 'bfloat16', device });
    const k = await tensor(w.k, { shape: [1, 2, 1100, 64], dtype: 'bfloat16', device });
    const v = await tensor(w.v, { shape: [1, 2, 1100, 64], dtype: 'bfloat16', device });
    for (const opts of [{ block: 64 }, { block: 64, tauHigh: 0.8, tauLow: 0.7 }, { block: 128, calibrate: false }, { block: 64, method: 'meanpool' as const }]) {
      const s = await summarizeKeys(k, opts);
      await expectSameSelection(q, k, v, opts, s);
      s.dispose();
    }
    disposeAll(q, k, v);
  });

  test.each(configs)('%s: packed ragged batch, one summary per sequence', async (_name, c) => {
    const opts = { ...c.opts, block: c.block };
    const rc = raggedCase({ hq: 4, hkv: 2, d: c.d, dtype: c.dtype, layout: c.layout, qLens: [5, 0, c.block + 1, 40], kLens: [3 * c.block + 2, 30, 2 * c.block + 7, 5 * c.block], seed: c.seed });
    const t = await packed(rc, device);
    const ragged = { cuSeqlensQ: rc.cuSeqlensQ, cuSeqlensK: rc.cuSeqlensK };
    const sums = await summarizeKeysVarlen(t.k, ragged, opts);
    expect(sums.map((s) => s.blocks)).toEqual(rc.kLens.map((n) => Math.floor(n / c.block)));
    const want = await estimateVarlen(t.q, t.k, ragged, opts);
    const got = await estimateVarlen(t.q, t.k, ragged, opts, { keySummaries: [sums[0], null, sums[2], sums[3]] });
    expect(await batchMaskParts(got)).toEqual(await batchMaskParts(want));
    // each sequence's summaries equal summarizeKeys of its keys alone
    for (const i of [0, 3]) {
      const ki = await upload(slice(rc.k.raw, rc.hkv, rc.totalK, rc.d, rc.cuSeqlensK[i], rc.kLens[i]), rc.hkv, rc.kLens[i], rc.d, rc.dtype, rc.layout, device);
      const si = await summarizeKeys(ki, opts);
      expect(await summaryContents(sums[i])).toEqual(await summaryContents(si));
      disposeAll(ki, si);
    }
    if (attend) {
      const pw = await prefillVarlen(t.q, t.k, t.v, ragged, opts);
      const pg = await prefillVarlen(t.q, t.k, t.v, ragged, opts, { keySummaries: sums });
      expect(await batchMaskParts(pg.masks!)).toEqual(await batchMaskParts(pw.masks!));
      expect(firstDifference(await rawBhnd(pg.output), await rawBhnd(pw.output))).toBe(-1);
      disposeAll(pw.output, pg.output, ...pw.masks!, ...pg.masks!);
    }
    disposeAll(t.q, t.k, t.v, ...sums, ...want, ...got);
  });

  const paged = pageSizes.flatMap((p) => [[p, 'NHD'] as const, [p, 'HND'] as const]);
  test.each(paged)('paged KV, page size %i, %s: summaries through the page table equal packed ones; selections equal', async (pageSize, kvLayout) => {
    const c = configs[0][1];
    const opts = { ...c.opts, block: c.block };
    const rc = raggedCase({ hq: 4, hkv: 2, d: c.d, dtype: c.dtype, layout: 'bhnd', qLens: [9, c.block + 3, 0], kLens: [4 * c.block + 5, 2 * c.block + 3, 50], seed: c.seed + pageSize });
    const t = await packed(rc, device);
    const { k: kp, v: vp, batch } = await pagedCase(rc, pageSize, kvLayout, device);
    const viaPages = await summarizeKeysVarlen(kp, batch, opts);
    const viaPacked = await summarizeKeysVarlen(t.k, { cuSeqlensK: rc.cuSeqlensK }, opts);
    for (let i = 0; i < 3; i++) expect(await summaryContents(viaPages[i])).toEqual(await summaryContents(viaPacked[i]));
    const want = attend ? (await prefillVarlen(t.q, kp, vp, batch, opts)).masks! : await estimateVarlen(t.q, kp, batch, opts);
    const got = attend ? (await prefillVarlen(t.q, kp, vp, batch, opts, { keySummaries: viaPages })).masks! : await estimateVarlen(t.q, kp, batch, opts, { keySummaries: viaPages });
    expect(await batchMaskParts(got)).toEqual(await batchMaskParts(want));
    disposeAll(t.q, t.k, t.v, kp, vp, ...viaPages, ...viaPacked, ...want, ...got);
  });

  test.each([[16, 'NHD'], [64, 'HND'], [256, 'NHD']] as const)('chunked prefill over a paged cache (page size %i, %s): appends through the page table', async (pageSize, kvLayout) => {
    const c = configs[0][1];
    const opts = { ...c.opts, block: c.block };
    const { total, rc, kp, vp, q, chunks } = await pagedChunkedPrompt(c, pageSize, kvLayout, device, c.seed + 1);
    let s: KeySummaries[] | null = null;
    for await (const { qc, batch, end } of chunks()) {
      // the chunk's estimation reads the previous chunks' summaries
      const want = attend ? (await prefillVarlen(qc, kp, vp, batch, opts)).masks! : await estimateVarlen(qc, kp, batch, opts);
      const got = attend
        ? (await prefillVarlen(qc, kp, vp, batch, opts, { keySummaries: [s ? s[0] : null] })).masks!
        : await estimateVarlen(qc, kp, batch, opts, { keySummaries: [s ? s[0] : null] });
      expect(await batchMaskParts(got)).toEqual(await batchMaskParts(want));
      // the server step: append the chunk's new full blocks
      s = await summarizeKeysVarlen(kp, batch, opts, s ? { into: s } : { maxKeys: total });
      expect(s[0].blocks).toBe(Math.floor(end / c.block));
      disposeAll(qc, ...want, ...got);
    }
    const once = await summarizeKeysVarlen(q.k, { cuSeqlensK: rc.cuSeqlensK }, opts);
    expect(await summaryContents(s![0])).toEqual(await summaryContents(once[0]));
    disposeAll(kp, vp, q.q, q.k, q.v, ...s!, ...once);
  });
}

/** Every value of the rows (and energies) past `blocks` of every (batch, kv head): 0 until something writes them. */
export async function summaryTail(s: KeySummaries): Promise<number[]> {
  const out: number[] = [];
  const take = async (t: KeySummaries['parts']['rows'] | null) => {
    if (!t) return;
    const raw = new Float32Array(await t.toHost());
    const cap = t.shape[2];
    const width = t.shape[3];
    for (let bh = 0; bh < s.batch * s.kvHeads; bh++) out.push(...raw.subarray((bh * cap + s.blocks) * width, (bh + 1) * cap * width));
  };
  await take(s.parts.rows);
  await take(s.parts.energies);
  return out;
}

/** Summaries equal bitwise (valid rows and energies), and nothing written past their blocks. */
async function expectSameSummaries(got: KeySummaries, want: KeySummaries): Promise<void> {
  expect(got.blocks).toBe(want.blocks);
  expect(await summaryContents(got)).toEqual(await summaryContents(want));
  expect((await summaryTail(got)).every((x) => Object.is(x, 0))).toBe(true);
}

type MaskList = Array<BlockMask | null>;

/**
 * Estimation that writes what it pools back into the summaries
 * (run.appendKeySummaries), registered in the calling describe block: a
 * chunked loop with write-back builds the summaries summarizeKeys builds, bit
 * for bit (the partial last block never written), and selects (and, where the
 * device attends, outputs) what the loop with separate appends and the loop
 * without summaries do; contiguous, packed and paged keys.
 */
export function keySummaryAppendCases(device: DeviceSpec, configs: Array<[string, SummaryConfig]>, attend: boolean, pageSizes: number[]): void {
  const ops = attend ? (['estimate', 'prefill'] as const) : (['estimate'] as const);
  const cases = configs.flatMap(([name, c]) => ops.map((op) => [name, op, c] as const));

  test.each(cases)('%s, %s: chunked write-back equals separate appends, summarizeKeys and no summaries', async (_name, op, c) => {
    const opts = { ...c.opts, block: c.block };
    const total = 6 * c.block + 11;
    const b = 2;
    const hkv = 2;
    const t = await contiguousProblem(c, b, 4, hkv, total, total, device);
    let written: KeySummaries | null = null; // write-back
    let appended: KeySummaries | null = null; // separate appends
    for (const end of [c.block - 3, c.block + 5, 3 * c.block, 3 * c.block + 1, 5 * c.block + 2, total]) {
      const kt = await uploadBhnd(keyPrefix(t.kRaw, b, hkv, total, c.d, end), b, hkv, end, c, device);
      const vt = await uploadBhnd(keyPrefix(t.kRaw, b, hkv, total, c.d, end), b, hkv, end, c, device);
      const qc = await contiguousProblem({ ...c, seed: c.seed + end }, b, 4, hkv, Math.min(end, c.block + 3), end, device);
      if (written === null) {
        // before the first chunk: room for the prompt, nothing valid (the first chunk has no full block)
        written = await summarizeKeys(kt, opts, { maxKeys: total });
        appended = await summarizeKeys(kt, opts, { maxKeys: total });
        expect(written.blocks).toBe(0);
      }
      const before = written.blocks;
      if (op === 'estimate') {
        const plain = await estimate(qc.q, kt, opts);
        const sep = await estimate(qc.q, kt, opts, { keySummaries: appended! });
        const wb = await estimate(qc.q, kt, opts, { keySummaries: written, appendKeySummaries: true });
        const want = maskParts(await plain.toHost({ mask: false }));
        expect(maskParts(await sep.toHost({ mask: false }))).toEqual(want);
        expect(maskParts(await wb.toHost({ mask: false }))).toEqual(want);
        disposeAll(plain, sep, wb);
      } else {
        const plain = await prefill(qc.q, kt, vt, opts);
        const sep = await prefill(qc.q, kt, vt, opts, { keySummaries: appended! });
        const wb = await prefill(qc.q, kt, vt, opts, { keySummaries: written, appendKeySummaries: true });
        const want = maskParts(await plain.mask!.toHost({ mask: false }));
        expect(maskParts(await sep.mask!.toHost({ mask: false }))).toEqual(want);
        expect(maskParts(await wb.mask!.toHost({ mask: false }))).toEqual(want);
        const out = await rawBhnd(plain.output);
        expect(firstDifference(await rawBhnd(sep.output), out)).toBe(-1);
        expect(firstDifference(await rawBhnd(wb.output), out)).toBe(-1);
        disposeAll(plain.output, plain.mask, sep.output, sep.mask, wb.output, wb.mask);
      }
      await summarizeKeys(kt, opts, { into: appended! });
      expect(written.blocks).toBe(Math.floor(end / c.block));
      expect(written.blocks).toBeGreaterThanOrEqual(before);
      await expectSameSummaries(written, appended!);
      disposeAll(kt, vt, qc.q, qc.k, qc.v);
    }
    const once = await summarizeKeys(t.k, opts);
    await expectSameSummaries(written!, once);
    disposeAll(t.q, t.k, t.v, once, written, appended);
  });

  test.each(configs)('%s: write-back of a whole prompt at once, and of nothing new', async (_name, c) => {
    const opts = { ...c.opts, block: c.block };
    const nk = 4 * c.block + c.block / 2; // the partial block is not written
    const t = await contiguousProblem(c, 1, 2, 1, nk, nk, device);
    const s = await summarizeKeys(t.k, opts);
    const k0 = await uploadBhnd(keyPrefix(t.kRaw, 1, 1, nk, c.d, c.block - 1), 1, 1, c.block - 1, c, device);
    const w = await summarizeKeys(k0, opts, { maxKeys: 6 * c.block }); // nothing written yet
    const m = await estimate(t.q, t.k, opts, { keySummaries: w, appendKeySummaries: true });
    await expectSameSummaries(w, s);
    // every full block already summarised: the estimation writes nothing, blocks stay
    const again = await estimate(t.q, t.k, opts, { keySummaries: w, appendKeySummaries: true });
    await expectSameSummaries(w, s);
    expect(maskParts(await again.toHost({ mask: false }))).toEqual(maskParts(await m.toHost({ mask: false })));
    // appendKeySummaries: false reads only
    w.truncate(2);
    const ro = await estimate(t.q, t.k, opts, { keySummaries: w, appendKeySummaries: false });
    expect(w.blocks).toBe(2);
    expect(maskParts(await ro.toHost({ mask: false }))).toEqual(maskParts(await m.toHost({ mask: false })));
    disposeAll(t.q, t.k, t.v, k0, s, w, m, again, ro);
  });

  test.each(configs)('%s: packed ragged batch, each sequence appended to its own summaries', async (_name, c) => {
    const opts = { ...c.opts, block: c.block };
    const rc = raggedCase({ hq: 4, hkv: 2, d: c.d, dtype: c.dtype, layout: c.layout, qLens: [5, 0, c.block + 1, 40, 7], kLens: [3 * c.block + 2, 2 * c.block, 2 * c.block + 7, 5 * c.block, c.block - 5], seed: c.seed });
    const t = await packed(rc, device);
    const ragged = { cuSeqlensQ: rc.cuSeqlensQ, cuSeqlensK: rc.cuSeqlensK };
    const once = await summarizeKeysVarlen(t.k, ragged, opts);
    const want = await estimateVarlen(t.q, t.k, ragged, opts);
    const wantOut = attend ? await prefillVarlen(t.q, t.k, t.v, ragged, opts) : null;
    // summaries of a prefix of each sequence's keys (room for 8 blocks): 1, 1, 0, -, 0 blocks
    const prefixes = [c.block, c.block + 3, 5, 0, 5];
    for (const op of ops) {
      const sums: Array<KeySummaries | null> = [];
      for (let i = 0; i < prefixes.length; i++) {
        if (prefixes[i] === 0) {
          sums.push(null); // sequence 3: no summaries given
          continue;
        }
        const ki = await upload(slice(rc.k.raw, rc.hkv, rc.totalK, rc.d, rc.cuSeqlensK[i], prefixes[i]), rc.hkv, prefixes[i], rc.d, rc.dtype, rc.layout, device);
        sums.push(await summarizeKeys(ki, opts, { maxKeys: 8 * c.block }));
        ki.dispose();
      }
      const run = { keySummaries: sums, appendKeySummaries: true };
      let got: MaskList;
      if (op === 'estimate') got = await estimateVarlen(t.q, t.k, ragged, opts, run);
      else {
        const res = await prefillVarlen(t.q, t.k, t.v, ragged, opts, run);
        expect(firstDifference(await rawBhnd(res.output), await rawBhnd(wantOut!.output))).toBe(-1);
        got = res.masks!;
        res.output.dispose();
      }
      expect(await batchMaskParts(got)).toEqual(await batchMaskParts(want));
      // sequence 1 has no queries: not estimated, its summaries stay; sequence 4 has no full block
      expect(sums.map((s) => (s ? s.blocks : null))).toEqual([3, 1, 2, null, 0]);
      for (const i of [0, 2, 4]) await expectSameSummaries(sums[i]!, once[i]);
      disposeAll(...sums, ...got);
    }
    disposeAll(t.q, t.k, t.v, ...once, ...want, wantOut?.output, ...(wantOut?.masks ?? []));
  });

  test('a failed call leaves blocks as they were', async () => {
    const c = configs[0][1];
    const opts = { ...c.opts, block: c.block };
    const nk = 3 * c.block + 1;
    const t = await contiguousProblem(c, 1, 2, 1, nk, nk, device);
    const s = await summarizeKeys(t.k, opts, { maxKeys: 4 * c.block });
    s.truncate(1);
    // checked after the summaries: a wrong `out`
    const bad = await contiguousProblem(c, 1, 2, 1, nk - 1, nk, device);
    await expect(prefill(t.q, t.k, t.v, opts, { out: bad.q, keySummaries: s, appendKeySummaries: true })).rejects.toThrow();
    expect(s.blocks).toBe(1);
    // the native call fails
    const spy = jest.spyOn(native(), 'estimate').mockImplementationOnce(() => Promise.reject(new Error('device failure')));
    try {
      await expect(estimate(t.q, t.k, opts, { keySummaries: s, appendKeySummaries: true })).rejects.toThrow('device failure');
    } finally {
      spy.mockRestore();
    }
    expect(s.blocks).toBe(1);
    const vspy = jest.spyOn(native(), 'varlen').mockImplementationOnce(() => Promise.reject(new Error('device failure')));
    try {
      const batch = { cuSeqlensQ: [0, nk], cuSeqlensK: [0, nk] };
      await expect(prefillVarlen(t.q, t.k, t.v, batch, opts, { keySummaries: [s], appendKeySummaries: true })).rejects.toThrow('device failure');
    } finally {
      vspy.mockRestore();
    }
    expect(s.blocks).toBe(1);
    // and the same call succeeding appends
    const m = await estimate(t.q, t.k, opts, { keySummaries: s, appendKeySummaries: true });
    expect(s.blocks).toBe(3);
    disposeAll(t.q, t.k, t.v, bad.q, bad.k, bad.v, s, m);
  });

  const paged = pageSizes.flatMap((p) => [[p, 'NHD'] as const, [p, 'HND'] as const]);
  test.each(paged)('chunked prefill over a paged cache (page size %i, %s): write-back through the page table', async (pageSize, kvLayout) => {
    const c = configs[0][1];
    const opts = { ...c.opts, block: c.block };
    const { total, rc, kp, vp, pools, q, chunks } = await pagedChunkedPrompt(c, pageSize, kvLayout, device, c.seed + 2);
    const empty = { kvLens: [0], pageTable: pools.pageTable, kvLayout };
    const [written] = await summarizeKeysVarlen(kp, empty, opts, { maxKeys: total });
    const [appended] = await summarizeKeysVarlen(kp, empty, opts, { maxKeys: total });
    for await (const { qc, batch, end } of chunks()) {
      const outs: Tensor[] = [];
      const call = async (run: object): Promise<MaskList> => {
        if (!attend) return estimateVarlen(qc, kp, batch, opts, run);
        const res = await prefillVarlen(qc, kp, vp, batch, opts, run);
        outs.push(res.output);
        return res.masks!;
      };
      const want = await call({});
      const sep = await call({ keySummaries: [appended] });
      await summarizeKeysVarlen(kp, batch, opts, { into: [appended] });
      const got = await call({ keySummaries: [written], appendKeySummaries: true });
      expect(await batchMaskParts(sep)).toEqual(await batchMaskParts(want));
      expect(await batchMaskParts(got)).toEqual(await batchMaskParts(want));
      if (attend) {
        const out = await rawBhnd(outs[0]);
        expect(firstDifference(await rawBhnd(outs[1]), out)).toBe(-1);
        expect(firstDifference(await rawBhnd(outs[2]), out)).toBe(-1);
      }
      expect(written.blocks).toBe(Math.floor(end / c.block));
      await expectSameSummaries(written, appended);
      disposeAll(qc, ...want, ...sep, ...got, ...outs);
    }
    const once = await summarizeKeysVarlen(q.k, { cuSeqlensK: rc.cuSeqlensK }, opts);
    await expectSameSummaries(written, once[0]);
    disposeAll(kp, vp, q.q, q.k, q.v, written, appended, ...once);
  });
}

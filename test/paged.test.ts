// Paged KV caches on the CPU backend: paged equals contiguous (packed) K/V for
// every page size and both page layouts, bitwise; chunked prefill over a cache
// equals a one-shot prefill row for row; bad page tables fail before any work.
import { prefill } from '../lib/ops';
import { attentionVarlen, estimateVarlen, prefillVarlen, type PagedBatch } from '../lib/varlen';
import { tensor, type Tensor } from '../lib/tensor';
import { pagedToPacked } from '../lib/reference-varlen';
import { TOLERANCES, relativeError } from '../lib/validate';
import { memoryStats, releaseCachedMemory } from '../lib/memory';
import { toBFloat16 } from '../lib/dtype';
import type { DeviceSpec } from '../lib/types';
import { describeGpu } from './helpers/gpu';
import { values } from './helpers/data';
import {
  batchMaskParts,
  disposeAll,
  firstDifference,
  hostMask,
  packed,
  pagedKV,
  raggedCase,
  rawBhnd,
  slice,
  upload,
  valuesBhnd,
} from './helpers/varlen';

const PAGE_SIZES = [16, 32, 64, 128, 256];

describe('paged KV (CPU)', () => {
  // Blocks of 32 and 64 against pages of 16..256: blocks span pages and pages span blocks.
  const c = raggedCase({ hq: 4, hkv: 2, d: 16, dtype: 'bfloat16', layout: 'bnhd', qLens: [7, 0, 64, 100, 1], kLens: [37, 20, 300, 513, 256], seed: 7 });

  test.each(PAGE_SIZES.flatMap((p) => [[p, 'NHD', 32] as const, [p, 'HND', 64] as const]))(
    'page size %i, %s, block %i: equals packed K/V bitwise',
    async (pageSize, kvLayout, block) => {
      const t = await packed(c, 'cpu');
      const { pools, k: kp, v: vp } = await pagedKV(c, pageSize, kvLayout, pageSize + block, 'cpu');
      expect(pagedToPacked(pools.k, kvLayout, c.hkv, pageSize, c.d, pools.pageTable, pools.kvLens).cuSeqlensK).toEqual(c.cuSeqlensK);
      const opts = { block, returnLse: true as const };
      const want = await prefillVarlen(t.q, t.k, t.v, { cuSeqlensQ: c.cuSeqlensQ, cuSeqlensK: c.cuSeqlensK }, opts);
      // The page table flat (row-major, padded with -1) on even sizes, nested on odd.
      const maxPages = Math.max(...pools.pageTable.map((r) => r.length)) + 1;
      const flat = new Int32Array(c.qLens.length * maxPages).fill(-1);
      pools.pageTable.forEach((r, i) => flat.set(r, i * maxPages));
      const batch: PagedBatch =
        pageSize % 32 === 0
          ? { cuSeqlensQ: c.cuSeqlensQ, kvLens: pools.kvLens, pageTable: flat, maxPagesPerSeq: maxPages, kvLayout, pageSize }
          : { cuSeqlensQ: c.cuSeqlensQ, kvLens: Int32Array.from(pools.kvLens), pageTable: pools.pageTable };
      const got = await prefillVarlen(t.q, kp, vp, batch, opts);
      expect(firstDifference(await rawBhnd(got.output), await rawBhnd(want.output))).toBe(-1);
      expect(firstDifference((await got.lse!.toHost()) as Float32Array, (await want.lse!.toHost()) as Float32Array)).toBe(-1);
      expect(await batchMaskParts(got.masks!)).toEqual(await batchMaskParts(want.masks!));
      expect(got.stats.density).toBe(want.stats.density);
      disposeAll(t.q, t.k, t.v, kp, vp, got.output, got.lse, want.output, want.lse, ...got.masks!, ...want.masks!);
    },
  );
});

describe('paged KV through estimateVarlen and attentionVarlen (CPU)', () => {
  test('estimation and attention alone equal them over packed K/V', async () => {
    const c = raggedCase({ hq: 4, hkv: 4, d: 16, dtype: 'float16', layout: 'bhnd', qLens: [0, 33, 80], kLens: [10, 90, 200], seed: 17 });
    const t = await packed(c, 'cpu');
    const { pools, k: kp, v: vp } = await pagedKV(c, 32, 'HND', 2, 'cpu');
    const ragged = { cuSeqlensQ: c.cuSeqlensQ, cuSeqlensK: c.cuSeqlensK };
    const paged = { cuSeqlensQ: c.cuSeqlensQ, kvLens: pools.kvLens, pageTable: pools.pageTable, kvLayout: 'HND' as const };
    const want = await estimateVarlen(t.q, t.k, ragged, { block: 16 });
    const got = await estimateVarlen(t.q, kp, paged, { block: 16 });
    expect(await batchMaskParts(got)).toEqual(await batchMaskParts(want));
    const o1 = await attentionVarlen(t.q, kp, vp, paged, got, { returnLse: true });
    const o2 = await attentionVarlen(t.q, t.k, t.v, ragged, want, { returnLse: true });
    expect(firstDifference(await rawBhnd(o1.output), await rawBhnd(o2.output))).toBe(-1);
    expect(firstDifference((await o1.lse.toHost()) as Float32Array, (await o2.lse.toHost()) as Float32Array)).toBe(-1);
    disposeAll(t.q, t.k, t.v, kp, vp, o1.output, o1.lse, o2.output, o2.lse, ...got, ...want);
  });
});

describe('chunked prefill over a paged cache (CPU)', () => {
  // Fixed temperatures: calibrated ones are computed from the queries present
  // (the chunk's, not the whole prompt's), so only they make the chunk's
  // selection the one-shot's rows.
  const opts = { block: 32, calibrate: false, tempHigh: 0.7, tempLow: 1.3, returnLse: true as const };
  const N = 300;
  const c = raggedCase({ hq: 4, hkv: 1, d: 32, dtype: 'float32', layout: 'bhnd', qLens: [N], kLens: [N], seed: 99 });

  async function oneShot(): Promise<{ out: Float32Array; lse: Float32Array; rows: Array<number[]>; nq: number }> {
    const t = await packed(c, 'cpu');
    const r = await prefill(t.q, t.k, t.v, opts);
    const m = (await hostMask(r.mask))!;
    const rows = Array.from({ length: m.counts.length }, (_, row) => Array.from(m.indices.subarray(m.rowPtr[row], m.rowPtr[row + 1])));
    const res = { out: await valuesBhnd(r.output), lse: (await r.lse!.toHost()) as Float32Array, rows, nq: m.nq };
    disposeAll(t.q, t.k, t.v, r.output, r.mask, r.lse);
    return res;
  }

  test.each([
    ['chunks on the block grid', [96, 64, 140]],
    ['chunks off the block grid', [50, 77, 1, 172]],
  ])('%s: every chunk equals the one-shot rows', async (_, chunks) => {
    const full = await oneShot();
    const pageSize = 16;
    const { pools, k: kp, v: vp } = await pagedKV(c, pageSize, 'NHD', 3, 'cpu');
    let start = 0;
    let compared = 0;
    for (const len of chunks as number[]) {
      const end = start + len;
      // Queries: the chunk's new tokens; keys: the cached prefix and the chunk.
      const q: Tensor = await upload(slice(c.q.raw, c.hq, N, c.d, start, len), c.hq, len, c.d, c.dtype, c.layout, 'cpu');
      const r = await prefillVarlen(q, kp, vp, { cuSeqlensQ: [0, len], kvLens: [end], pageTable: pools.pageTable }, opts);
      const m = (await hostMask(r.masks![0]))!;
      // Chunk block i is the one-shot's block first + i. A block the chunk cuts
      // (its first when the chunk starts inside a block, its last when it ends
      // inside one before the prompt's end) pools other rows (and keys) than the
      // one-shot's: the full blocks are compared.
      const B = opts.block;
      const first = Math.floor(start / B);
      const partialStart = start % B !== 0;
      const partialEnd = end % B !== 0 && end !== N;
      const iLo = partialStart ? 1 : 0;
      const iHi = m.nq - (partialEnd ? 1 : 0);
      for (let i = iLo; i < iHi; i++) {
        for (let h = 0; h < c.hq; h++) {
          const row = Array.from(m.indices.subarray(m.rowPtr[h * m.nq + i], m.rowPtr[h * m.nq + i + 1]));
          expect([h, i, row]).toEqual([h, i, full.rows[h * full.nq + first + i]]);
        }
      }
      const rowsFrom = partialStart ? B - (start % B) : 0;
      const rowsTo = partialEnd ? len - (end % B) : len;
      if (rowsFrom < rowsTo) {
        const n = rowsTo - rowsFrom;
        const got = slice(await valuesBhnd(r.output), c.hq, len, c.d, rowsFrom, n);
        const want = slice(slice(full.out, c.hq, N, c.d, start, len), c.hq, len, c.d, rowsFrom, n);
        expect(relativeError(got, want)).toBeLessThanOrEqual(TOLERANCES.float32);
        const lse = slice((await r.lse!.toHost()) as Float32Array, c.hq, len, 1, rowsFrom, n);
        const wantLse = slice(slice(full.lse, c.hq, N, 1, start, len), c.hq, len, 1, rowsFrom, n);
        expect(relativeError(lse, wantLse)).toBeLessThanOrEqual(1e-6);
        compared += n;
      }
      disposeAll(q, r.output, r.lse, ...r.masks!);
      start = end;
    }
    expect(start).toBe(N);
    expect(compared).toBeGreaterThan(N / 2);
    disposeAll(kp, vp);
  });
});

describe('paged KV errors (before any work)', () => {
  const c = raggedCase({ hq: 2, hkv: 1, d: 16, dtype: 'float32', layout: 'bhnd', qLens: [3, 5], kLens: [20, 40], seed: 1 });
  let q: Tensor;
  let kp: Tensor;
  let vp: Tensor;
  beforeAll(async () => {
    const t = await packed(c, 'cpu');
    q = t.q;
    disposeAll(t.k, t.v);
    ({ k: kp, v: vp } = await pagedKV(c, 16, 'NHD', 1, 'cpu')); // 2 + 3 pages used, 8 in the pool
  });
  afterAll(() => disposeAll(q, kp, vp));
  const good = { cuSeqlensQ: [0, 3, 8], kvLens: [20, 40], pageTable: [[0, 1], [2, 3, 4]] };

  test.each<[string, object, RegExp, ErrorConstructor]>([
    ['page id out of range', { pageTable: [[0, 1], [2, 8, 4]] }, /batch.pageTable: sequence 1, page 1 is 8, outside the pool's 8 pages \[0, 7\]/, RangeError],
    ['negative page id', { pageTable: [[-1, 1], [2, 3, 4]] }, /sequence 0, page 0 is -1/, RangeError],
    ['too few pages', { pageTable: [[0, 1], [2, 3]] }, /sequence 1: 40 keys \(batch.kvLens\[1\]\) need 3 pages of 16, batch.pageTable\[1\] has 2/, RangeError],
    ['too few pages (flat)', { pageTable: new Int32Array([0, 1, 2, 3]), maxPagesPerSeq: 2 }, /sequence 1: 40 keys \(batch.kvLens\[1\]\) need 3 pages of 16, batch.pageTable has 2 per sequence/, RangeError],
    ['flat table without maxPagesPerSeq', { pageTable: new Int32Array([0, 1, 2, 3, 4, 5]) }, /batch.maxPagesPerSeq must be an integer >= 0 with a flat Int32Array pageTable/, TypeError],
    ['maxPagesPerSeq out of range', { pageTable: new Int32Array([0, 1, 2, 3, 4, 5]), maxPagesPerSeq: -1 }, /^batch.maxPagesPerSeq must be an integer >= 0 with a flat Int32Array pageTable, got -1$/, RangeError],
    ['maxPagesPerSeq fractional', { maxPagesPerSeq: 2.5 }, /^batch.maxPagesPerSeq must be an integer >= 0, got 2.5$/, RangeError],
    ['maxPagesPerSeq of the wrong type', { maxPagesPerSeq: '3' }, /^batch.maxPagesPerSeq must be an integer >= 0, got '3'$/, TypeError],
    ['flat table of the wrong size', { pageTable: new Int32Array([0, 1, 2, 3, 4]), maxPagesPerSeq: 3 }, /batch \* maxPagesPerSeq = 2 \* 3 = 6 entries, got 5/, RangeError],
    ['rows per sequence', { pageTable: [[0, 1]] }, /one row per sequence \(2\), got 1/, RangeError],
    ['kvLen below qLen', { kvLens: [2, 40] }, /sequence 0: 3 queries exceed its 2 keys \(batch.kvLens\)/, RangeError],
    ['negative kvLen', { kvLens: [-1, 40] }, /batch.kvLens\[0\] must be >= 0, got -1/, RangeError],
    ['kvLens count', { kvLens: [20] }, /batch.kvLens must have one entry per sequence \(2\), got 1/, RangeError],
    ['no kvLens', { kvLens: undefined }, /batch.kvLens is required with a pageTable/, TypeError],
    ['layout mismatch', { kvLayout: 'HND' }, /batch.kvLayout 'HND' needs k and v in layout 'bhnd'/, RangeError],
    ['bad layout name', { kvLayout: 'nhd' }, /batch.kvLayout must be 'NHD' or 'HND'/, TypeError],
    ['page size mismatch', { pageSize: 32 }, /batch.pageSize 32 differs from the pools' page size 16/, RangeError],
    ['page size of the wrong type', { pageSize: '16' }, /^batch.pageSize must be a number, got string$/, TypeError],
    ['a row past maxPagesPerSeq', { maxPagesPerSeq: 2 }, /^batch.pageTable\[1\] has 3 pages, more than maxPagesPerSeq 2$/, RangeError],
    ['both packed and paged', { cuSeqlensK: [0, 20, 60] }, /not both/, TypeError],
    ['non-monotone cuSeqlensQ', { cuSeqlensQ: [0, 9, 8] }, /must be non-decreasing/, RangeError],
  ])('%s', async (_, change, message, kind) => {
    const batch = { ...good, ...change };
    for (const key of Object.keys(batch)) if ((batch as Record<string, unknown>)[key] === undefined) delete (batch as Record<string, unknown>)[key];
    await expect(prefillVarlen(q, kp, vp, batch as PagedBatch)).rejects.toThrow(message);
    await expect(prefillVarlen(q, kp, vp, batch as PagedBatch)).rejects.toBeInstanceOf(kind);
  });

  test('page sizes outside 16..256 and pools of different layouts', async () => {
    const odd = await tensor(new Float32Array(8 * 24 * 16), { shape: [8, 1, 24, 16], layout: 'bnhd', device: 'cpu' });
    await expect(prefillVarlen(q, odd, odd, { cuSeqlensQ: [0, 3, 8], kvLens: [20, 40], pageTable: [[0], [1, 2]] })).rejects.toThrow(
      /page size \(k.shape\[2\] of the page pool \[numPages, Hkv, pageSize, d\]\) must be 16, 32, 64, 128, 256, got 24/,
    );
    const hnd = await tensor(new Float32Array(8 * 16 * 16), { shape: [8, 1, 16, 16], layout: 'bhnd', device: 'cpu' });
    await expect(prefillVarlen(q, kp, hnd, good)).rejects.toThrow(/the k and v page pools must share one layout/);
    disposeAll(odd, hnd);
  });

  test('with one row per sequence, maxPagesPerSeq only bounds the rows: the table is as wide as the longest row', async () => {
    const { resolveBatch } = await import('../lib/paged');
    for (const maxPagesPerSeq of [undefined, 3, 2 ** 31 - 1]) {
      const t = resolveBatch({ ...good, ...(maxPagesPerSeq === undefined ? {} : { maxPagesPerSeq }) }, q, kp);
      expect(t.paged?.maxPages).toBe(3);
      expect(Array.from(t.paged?.table ?? [])).toEqual([0, 1, -1, 2, 3, 4]);
    }
    // resolveBatch is public: q and k must be tensors (a null q is not the keys-only table)
    expect(() => resolveBatch(good, null as never, kp)).toThrow(/^q must be a Tensor .*, got null$/);
    expect(() => resolveBatch(good, q, { shape: kp.shape } as never)).toThrow(/^k must be a Tensor .*, got Object$/);
    // and a generous bound gives the same prefill
    const a = await prefillVarlen(q, kp, vp, good, { block: 16 }, { returnMask: false });
    const b = await prefillVarlen(q, kp, vp, { ...good, maxPagesPerSeq: 2 ** 31 - 1 }, { block: 16 }, { returnMask: false });
    expect(Buffer.from((await a.output.toHost()).buffer).equals(Buffer.from((await b.output.toHost()).buffer))).toBe(true);
    disposeAll(a.output, b.output);
  });

  test('the addon checks the page table again (memory safety)', async () => {
    const { native } = await import('../lib/native');
    const { resolveEstimateOptions, toNativeEstimateParams } = await import('../lib/options');
    const ep = toNativeEstimateParams(resolveEstimateOptions({ block: 16 }, 16));
    const seqs = new BigInt64Array([0n, 3n, 0n, 20n, 3n, 5n, 0n, 40n]);
    const call = (pageTable: Int32Array, maxPages: number) => native().varlen(q.native, kp.native, null, null, { seqs, pageTable, maxPages }, ep, null, [], null);
    expect(() => call(new Int32Array([0, 1, 0, 2, 3, 99]), 3)).toThrow(/sequence 1: page table entry 2 = 99 outside the pool's 8 pages/);
    expect(() => call(new Int32Array([0, 1, 2, 3]), 2)).toThrow(/sequence 1: 40 keys need 3 pages of 16, the page table has 2/);
    // A key count near 2^63 does not wrap the page count round to a small one.
    const huge = new BigInt64Array([0n, 3n, 0n, 2n ** 63n - 1n]);
    expect(() => native().varlen(q.native, kp.native, null, null, { seqs: huge, pageTable: new Int32Array([0, 1]), maxPages: 2 }, ep, null, [], null)).toThrow(
      /sequence 0: 9223372036854775807 keys need 576460752303423488 pages of 16, the page table has 2/,
    );
    // Every field is read before a typed array's memory is: a getter that detaches seqs
    // leaves an empty array to check, not a pointer into memory the array no longer owns.
    const stolen = new BigInt64Array([0n, 3n, 0n, 20n, 3n, 5n, 0n, 40n]);
    const spec = {
      seqs: stolen,
      get pageTable() {
        structuredClone(stolen.buffer, { transfer: [stolen.buffer] });
        return new Int32Array([0, 1, 0, 2, 3, 4]);
      },
      maxPages: 3,
    };
    expect(() => native().varlen(q.native, kp.native, null, null, spec, ep, null, [], null)).toThrow(/spec.seqs must hold 4 entries per sequence, got 0/);
  });
});

// A sequence without queries is skipped, and must size nothing: before, a
// paged batch gathered into a buffer as long as its longest sequence, idle
// ones included, which for an idle 4M-token sequence meant 4 GiB zero-filled
// (CPU) or 4 GiB of workspace (GPU) on every call.
async function idleSequenceCase(device: DeviceSpec): Promise<void> {
  const d = 128;
  const hkv = 2;
  const pageSize = 256;
  const idle = 4 * 2 ** 20;
  const q = await tensor(toBFloat16(values(4 * 10 * d, 3)), { shape: [1, 4, 10, d], dtype: 'bfloat16', device });
  const pool = await tensor(toBFloat16(values(2 * hkv * pageSize * d, 4)), { shape: [2, hkv, pageSize, d], dtype: 'bfloat16', layout: 'bnhd', device });
  const batch = (idleLen: number): PagedBatch => ({
    cuSeqlensQ: [0, 10, 10],
    kvLens: [200, idleLen],
    pageTable: [[0], new Int32Array(Math.ceil(idleLen / pageSize)).fill(1)],
  });
  const rssBefore = process.resourceUsage().maxRSS * 1024;
  if (device !== 'cpu') await releaseCachedMemory(device);
  const got = await prefillVarlen(q, pool, pool, batch(idle), { block: 64 });
  if (device === 'cpu') {
    expect(process.resourceUsage().maxRSS * 1024 - rssBefore).toBeLessThan(256 * 2 ** 20);
  } else {
    expect(memoryStats(device).workspaceBytes).toBeLessThan(256 * 2 ** 20);
  }
  const want = await prefillVarlen(q, pool, pool, batch(0), { block: 64 });
  expect(firstDifference(await rawBhnd(got.output), await rawBhnd(want.output))).toBe(-1);
  expect(got.masks![1]).toBeNull();
  expect(await batchMaskParts(got.masks!)).toEqual(await batchMaskParts(want.masks!));
  disposeAll(q, pool, got.output, want.output, ...got.masks!, ...want.masks!);
}

describe('a paged sequence without queries (CPU)', () => {
  test('sizes no buffer, whatever its cached length', () => idleSequenceCase('cpu'));
});

describeGpu('a paged sequence without queries (GPU)', () => {
  test('sizes no workspace, whatever its cached length', () => idleSequenceCase('cuda'));
});

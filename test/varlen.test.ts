// Ragged batches on the CPU backend: a packed batch (cuSeqlensQ / cuSeqlensK)
// equals its sequences run one at a time, bitwise (selection, output, lse),
// matches the float64 reference, and bad tables fail before any work.
import { attention, estimate, prefill } from '../lib/ops';
import { attentionVarlen, estimateVarlen, prefillVarlen } from '../lib/varlen';
import { empty, tensor } from '../lib/tensor';
import { memoryStats } from '../lib/memory';
import { native } from '../lib/native';
import type { BlockMask } from '../lib/block-mask';
import { resolveEstimateOptions } from '../lib/options';
import { referenceVarlenAttention, referenceVarlenEstimate, sliceTokens } from '../lib/reference-varlen';
import { relativeError, TOLERANCES } from '../lib/validate';
import type { DType, Layout } from '../lib/types';
import {
  disposeAll,
  firstDifference,
  hostMask,
  maskParts,
  packed,
  raggedCase,
  randomLengths,
  rawBhnd,
  sequence,
  slice,
  valuesBhnd,
  type RaggedCase,
} from './helpers/varlen';

interface Config {
  block: number;
  layout: Layout;
  dtype: DType;
  hq: number;
  hkv: number;
  d: number;
  seed: number;
}

const configs: Config[] = [
  { block: 16, layout: 'bhnd', dtype: 'float32', hq: 4, hkv: 2, d: 32, seed: 11 },
  { block: 32, layout: 'bnhd', dtype: 'bfloat16', hq: 4, hkv: 1, d: 16, seed: 22 },
  { block: 64, layout: 'bhnd', dtype: 'float16', hq: 2, hkv: 2, d: 32, seed: 33 },
  { block: 16, layout: 'bnhd', dtype: 'float32', hq: 8, hkv: 2, d: 16, seed: 44 },
];

function caseOf(c: Config): RaggedCase {
  const { qLens, kLens } = randomLengths(5, 200, c.seed);
  return raggedCase({ ...c, qLens, kLens });
}

const named = (list: Config[]): Array<[string, Config]> => list.map((c) => [`block ${c.block}, ${c.layout}, ${c.dtype}, hq ${c.hq}/hkv ${c.hkv}, d ${c.d}`, c]);

describe('ragged batches (CPU)', () => {
  test.each(named(configs))('prefillVarlen equals per-sequence prefill bitwise (%s)', async (_, cfg) => {
    const c = caseOf(cfg);
    const t = await packed(c, 'cpu');
    const opts = { block: cfg.block, returnLse: true as const };
    const res = await prefillVarlen(t.q, t.k, t.v, { cuSeqlensQ: c.cuSeqlensQ, cuSeqlensK: c.cuSeqlensK }, opts);
    expect(res.masks).toHaveLength(c.qLens.length);
    const out = await rawBhnd(res.output);
    const lse = (await res.lse!.toHost()) as Float32Array;
    let selected = 0;
    for (let i = 0; i < c.qLens.length; i++) {
      const m = res.masks![i];
      if (c.qLens[i] === 0) {
        expect(m).toBeNull();
        continue;
      }
      const s = await sequence(c, i, 'cpu');
      const one = await prefill(s.q, s.k, s.v, opts);
      expect(maskParts((await hostMask(m))!)).toEqual(maskParts((await hostMask(one.mask))!));
      expect([m!.batch, m!.heads, m!.queryLength, m!.keyLength, m!.block]).toEqual([1, c.hq, c.qLens[i], c.kLens[i], cfg.block]);
      const want = await rawBhnd(one.output);
      expect(firstDifference(slice(out, c.hq, c.totalQ, c.d, c.cuSeqlensQ[i], c.qLens[i]), want)).toBe(-1);
      const wantLse = (await one.lse!.toHost()) as Float32Array;
      expect(firstDifference(slice(lse, c.hq, c.totalQ, 1, c.cuSeqlensQ[i], c.qLens[i]), wantLse)).toBe(-1);
      selected += m!.selected;
      disposeAll(s.q, s.k, s.v, one.output, one.mask, one.lse);
    }
    expect(res.stats.density).toBeGreaterThan(0);
    expect(res.stats.density).toBeLessThanOrEqual(1);
    expect(selected).toBeGreaterThan(0);
    disposeAll(t.q, t.k, t.v, res.output, res.lse, ...res.masks!);
  });

  test.each(named(configs.slice(0, 2)))('estimateVarlen and attentionVarlen equal per-sequence estimate and attention (%s)', async (_, cfg) => {
    const c = caseOf(cfg);
    const t = await packed(c, 'cpu');
    const batch = { cuSeqlensQ: c.cuSeqlensQ, cuSeqlensK: Array.from(c.cuSeqlensK) };
    const masks = await estimateVarlen(t.q, t.k, batch, { block: cfg.block });
    const sparse = await attentionVarlen(t.q, t.k, t.v, batch, masks);
    const dense = await attentionVarlen(t.q, t.k, t.v, batch);
    const sparseRaw = await rawBhnd(sparse);
    const denseRaw = await rawBhnd(dense);
    for (let i = 0; i < c.qLens.length; i++) {
      if (c.qLens[i] === 0) continue;
      const s = await sequence(c, i, 'cpu');
      const m = await estimate(s.q, s.k, { block: cfg.block });
      expect(maskParts((await hostMask(masks[i]))!)).toEqual(maskParts((await hostMask(m))!));
      const o = await attention(s.q, s.k, s.v, m);
      const od = await attention(s.q, s.k, s.v, null);
      const at = (x: typeof sparseRaw) => slice(x, c.hq, c.totalQ, c.d, c.cuSeqlensQ[i], c.qLens[i]);
      expect(firstDifference(at(sparseRaw), await rawBhnd(o))).toBe(-1);
      expect(firstDifference(at(denseRaw), await rawBhnd(od))).toBe(-1);
      disposeAll(s.q, s.k, s.v, m, o, od);
    }
    disposeAll(t.q, t.k, t.v, sparse, dense, ...masks);
  });

  test.each(named(configs))('matches the float64 reference (%s)', async (_, cfg) => {
    const c = caseOf(cfg);
    const t = await packed(c, 'cpu');
    const batch = { cuSeqlensQ: c.cuSeqlensQ, cuSeqlensK: c.cuSeqlensK };
    const res = await prefillVarlen(t.q, t.k, t.v, batch, { block: cfg.block, returnLse: true });
    const problem = { q: c.q.values, k: c.k.values, v: c.v.values, hq: c.hq, hkv: c.hkv, d: c.d, cuSeqlensQ: c.cuSeqlensQ, cuSeqlensK: c.cuSeqlensK };
    // Attention against the reference over the native selection; the selection against the reference estimate.
    const hosts = await Promise.all(res.masks!.map(hostMask));
    const ref = referenceVarlenAttention(problem, hosts.map((h) => (h ? { counts: h.counts, indices: h.indices } : null)), cfg.block);
    const got = await valuesBhnd(res.output);
    expect(relativeError(got, ref.output)).toBeLessThanOrEqual(TOLERANCES[cfg.dtype]);
    const lse = (await res.lse!.toHost()) as Float32Array;
    expect(relativeError(lse, ref.lse)).toBeLessThanOrEqual(1e-5);
    const refMasks = referenceVarlenEstimate(problem, resolveEstimateOptions({ block: cfg.block }, c.d));
    let rows = 0;
    let same = 0;
    hosts.forEach((h, i) => {
      const r = refMasks[i];
      expect(h === null).toBe(r === null);
      if (!h || !r) return;
      for (let row = 0; row < r.counts.length; row++) {
        rows++;
        const a = Array.from(h.indices.subarray(h.rowPtr[row], h.rowPtr[row + 1]));
        const b = Array.from(r.indices.subarray(r.rowPtr[row], r.rowPtr[row + 1]));
        if (a.join() === b.join()) same++;
      }
    });
    expect(same / rows).toBeGreaterThanOrEqual(0.97);
    disposeAll(t.q, t.k, t.v, res.output, res.lse, ...res.masks!);
  });

  test('one sequence of a batch equals sliceTokens of the packed reference input', () => {
    const c = caseOf(configs[0]);
    const i = 2;
    const a = sliceTokens(c.q.values, c.hq, c.totalQ, c.d, c.cuSeqlensQ[i], c.qLens[i]);
    expect(Array.from(a)).toEqual(Array.from(slice(c.q.values, c.hq, c.totalQ, c.d, c.cuSeqlensQ[i], c.qLens[i])));
  });

  test("a batch's masks share one allocation per kind: each disposes alone, the memory goes with the last", async () => {
    const c = caseOf(configs[0]);
    const t = await packed(c, 'cpu');
    const batch = { cuSeqlensQ: c.cuSeqlensQ, cuSeqlensK: c.cuSeqlensK };
    const live = c.qLens.filter((n) => n > 0).length;
    expect(live).toBeGreaterThan(2);
    const before = memoryStats('cpu').allocations;
    const masks = await estimateVarlen(t.q, t.k, batch, { block: 16 }, { denseMask: true });
    // counts, rowPtr, temps and dense masks: one allocation each; then each sequence's indices
    expect(memoryStats('cpu').allocations - before).toBe(4 + live);
    const hosts = await Promise.all(masks.map((m) => (m ? m.toHost() : Promise.resolve(null))));
    const first = masks.findIndex((m) => m !== null);
    masks[first]!.dispose();
    for (let i = first + 1; i < masks.length; i++) if (masks[i]) expect(await masks[i]!.toHost()).toEqual(hosts[i]);
    const rest = masks.filter((m, i) => m && i !== first) as BlockMask[];
    const last = rest.pop()!;
    const denseBytes = hosts.reduce((a, h) => a + (h ? h.mask.length : 0), 0);
    rest.forEach((m) => m.dispose());
    const held = memoryStats('cpu').tensorBytes; // same synchronous stretch
    last.dispose();
    expect(held - memoryStats('cpu').tensorBytes).toBeGreaterThanOrEqual(denseBytes);
    disposeAll(t.q, t.k, t.v);
  });

  test('run.out receives the packed output; returnMask false gives no masks', async () => {
    const c = caseOf(configs[0]);
    const t = await packed(c, 'cpu');
    const batch = { cuSeqlensQ: c.cuSeqlensQ, cuSeqlensK: c.cuSeqlensK };
    const out = empty(t.q.shape, { dtype: c.dtype, layout: c.layout, device: 'cpu' });
    const a = await prefillVarlen(t.q, t.k, t.v, batch, { block: 16 }, { out, returnMask: false });
    expect(a.output).toBe(out);
    expect(a.masks).toBeNull();
    const b = await prefillVarlen(t.q, t.k, t.v, batch, { block: 16 });
    expect(firstDifference(await rawBhnd(out), await rawBhnd(b.output))).toBe(-1);
    expect(b.stats.density).toBeCloseTo(a.stats.density, 12);
    await expect(prefillVarlen(t.q, t.k, t.v, batch, { block: 16 }, { out, returnMask: false, denseMask: true })).rejects.toThrow(
      /^run\.denseMask needs the selection returned/,
    );
    disposeAll(t.q, t.k, t.v, out, b.output, ...b.masks!);
  });
});

describe('ragged batch errors (before any work)', () => {
  const c = raggedCase({ hq: 2, hkv: 1, d: 16, dtype: 'float32', layout: 'bhnd', qLens: [3, 0, 5], kLens: [4, 2, 9], seed: 5 });
  let t: { q: import('../lib/tensor').Tensor; k: import('../lib/tensor').Tensor; v: import('../lib/tensor').Tensor };
  beforeAll(async () => {
    t = await packed(c, 'cpu');
  });
  afterAll(() => disposeAll(t.q, t.k, t.v));
  const run = (batch: unknown, opts?: object) => prefillVarlen(t.q, t.k, t.v, batch as never, opts);

  test.each<[string, unknown, RegExp, ErrorConstructor]>([
    ['not an object', [0, 8], /batch must be an object/, TypeError],
    ['unknown field', { cuSeqlensQ: [0, 8], cuSeqlensK: [0, 15], cuSeqlens: 1 }, /unknown batch field 'cuSeqlens'/, TypeError],
    ['no cuSeqlensQ', { cuSeqlensK: [0, 15] }, /batch.cuSeqlensQ is required/, TypeError],
    ['no keys', { cuSeqlensQ: [0, 8] }, /needs cuSeqlensK/, TypeError],
    ['float entries', { cuSeqlensQ: new Float32Array([0, 8]), cuSeqlensK: [0, 15] }, /cuSeqlensQ must be an Int32Array or an array/, TypeError],
    ['string entry', { cuSeqlensQ: [0, '8'], cuSeqlensK: [0, 15] }, /cuSeqlensQ\[1\] must be a number/, TypeError],
    ['fraction', { cuSeqlensQ: [0, 3.5, 8], cuSeqlensK: [0, 4, 15] }, /cuSeqlensQ\[1\] must be an int32 integer/, RangeError],
    ['too short', { cuSeqlensQ: [8], cuSeqlensK: [15] }, /batch \+ 1 >= 2 entries/, RangeError],
    ['not from 0', { cuSeqlensQ: [1, 3, 3, 8], cuSeqlensK: [0, 4, 6, 15] }, /cuSeqlensQ\[0\] must be 0/, RangeError],
    ['decreasing', { cuSeqlensQ: [0, 3, 2, 8], cuSeqlensK: [0, 4, 6, 15] }, /non-decreasing: batch.cuSeqlensQ\[2\] = 2 < batch.cuSeqlensQ\[1\] = 3 \(sequence 1\)/, RangeError],
    ['wrong total', { cuSeqlensQ: [0, 3, 3, 7], cuSeqlensK: [0, 4, 6, 15] }, /cuSeqlensQ\[3\] = 7 must equal the packed query length 8/, RangeError],
    ['wrong key total', { cuSeqlensQ: [0, 3, 3, 8], cuSeqlensK: [0, 4, 6, 16] }, /cuSeqlensK\[3\] = 16 must equal the packed key length 15/, RangeError],
    ['batch sizes differ', { cuSeqlensQ: [0, 3, 3, 8], cuSeqlensK: [0, 6, 15] }, /cuSeqlensK must have batch \+ 1 = 4 entries/, RangeError],
    ['queries exceed keys', { cuSeqlensQ: [0, 3, 3, 8], cuSeqlensK: [0, 2, 6, 15] }, /sequence 0: 3 queries exceed its 2 keys/, RangeError],
    ['queries exceed keys (2)', { cuSeqlensQ: [0, 3, 3, 8], cuSeqlensK: [0, 4, 11, 15] }, /sequence 2: 5 queries exceed its 4 keys/, RangeError],
    ['paged fields without a page table', { cuSeqlensQ: [0, 3, 3, 8], cuSeqlensK: [0, 4, 6, 15], kvLens: [4, 2, 9] }, /batch.kvLens needs a batch.pageTable/, TypeError],
  ])('%s', async (_, batch, message, kind) => {
    const p = run(batch);
    await expect(p).rejects.toThrow(message);
    await expect(run(batch)).rejects.toBeInstanceOf(kind);
  });

  test('q with a batch other than 1, k not packed', async () => {
    const q2 = await tensor(new Float32Array(2 * 2 * 4 * 16), { shape: [2, 2, 4, 16], device: 'cpu' });
    await expect(prefillVarlen(q2, t.k, t.v, { cuSeqlensQ: [0, 4], cuSeqlensK: [0, 15] })).rejects.toThrow(/q must be packed \[1, Hq, totalQ, d\]/);
    const k2 = await tensor(new Float32Array(2 * 1 * 15 * 16), { shape: [2, 1, 15, 16], device: 'cpu' });
    await expect(estimateVarlen(t.q, k2, { cuSeqlensQ: [0, 8], cuSeqlensK: [0, 15] })).rejects.toThrow(/k must be packed \[1, Hkv, totalK, d\]/);
    disposeAll(q2, k2);
  });

  test('masks: one per sequence, null for a sequence without queries, matching geometry and block', async () => {
    const batch = { cuSeqlensQ: c.cuSeqlensQ, cuSeqlensK: c.cuSeqlensK };
    const masks = await estimateVarlen(t.q, t.k, batch, { block: 16 });
    expect(masks[1]).toBeNull();
    await expect(attentionVarlen(t.q, t.k, t.v, batch, masks.slice(0, 2))).rejects.toThrow(/masks must have one entry per sequence \(3\), got 2/);
    await expect(attentionVarlen(t.q, t.k, t.v, batch, [masks[0], masks[0], masks[2]])).rejects.toThrow(/masks\[1\] must be null: sequence 1 has no queries/);
    await expect(attentionVarlen(t.q, t.k, t.v, batch, [masks[2], null, masks[2]])).rejects.toThrow(/masks\[0\] was estimated for batch 1, 2 heads, 5 queries, 9 keys; sequence 0 has batch 1, 2 heads, 3 queries, 4 keys/);
    const other = await estimateVarlen(t.q, t.k, batch, { block: 32 });
    await expect(attentionVarlen(t.q, t.k, t.v, batch, [masks[0], null, other[2]])).rejects.toThrow(/masks must share one block size/);
    await expect(attentionVarlen(t.q, t.k, t.v, batch, [{} as never, null, null])).rejects.toThrow(/masks\[0\] must be a BlockMask or null/);
    masks[0]!.dispose();
    await expect(attentionVarlen(t.q, t.k, t.v, batch, masks)).rejects.toThrow(/masks\[0\]: block mask has been disposed/);
    disposeAll(...masks, ...other);
  });

  test('the addon checks the sequence table again (memory safety)', async () => {
    const { native } = await import('../lib/native');
    const { toNativeEstimateParams } = await import('../lib/options');
    const ep = toNativeEstimateParams(resolveEstimateOptions({ block: 16 }, 16));
    const spec = { seqs: new BigInt64Array([0n, 8n, 0n, 16n]) };
    expect(() => native().varlen(t.q.native, t.k.native, null, null, spec, ep, null, [], null)).toThrow(/keys \[0, 16\) outside the 15 packed key tokens/);
    const spec2 = { seqs: new BigInt64Array([4n, 8n, 0n, 8n]) };
    expect(() => native().varlen(t.q.native, t.k.native, null, null, spec2, ep, null, [], null)).toThrow(/queries \[4, 12\) outside the 8 packed query tokens/);
    // Sequences may run side by side: their query spans must not overlap (a zero-length one may sit anywhere).
    const spec3 = { seqs: new BigInt64Array([0n, 4n, 0n, 4n, 2n, 0n, 4n, 2n, 3n, 3n, 6n, 5n]) };
    expect(() => native().varlen(t.q.native, t.k.native, null, null, spec3, ep, null, [], null)).toThrow(/sequence 2: queries \[3, 6\) overlap an earlier sequence's \(up to 4\)/);
  });
});

// plan_lanes (varlen.h): which of up to four streams each sequence of a CUDA
// ragged batch runs on. Pure host logic, so it is checked here, without a GPU.
describe('the streams of a ragged batch (plan_lanes)', () => {
  const plan = (lengths: Array<[number, number]>, heads = 32, kv = 0, max = 4) => native().testing.planLanes(lengths, heads, kv, max);

  test('short sequences spread over four streams, longest first onto the least loaded', () => {
    expect(plan([[4096, 4096], [4096, 4096], [4096, 4096], [4096, 4096], [4096, 4096], [4096, 4096], [4096, 4096], [4096, 4096]])).toEqual({ lanes: 4, lane: [0, 1, 2, 3, 0, 1, 2, 3] });
    // work = query tiles x key tiles: 512, 1, 128, 32, 1; by work: 0 -> lane 0, 2 -> 1, 3 -> 2, 1 -> 3, then 4 onto the least loaded (3)
    expect(plan([[1024, 8192], [100, 100], [512, 4096], [256, 2048], [128, 128]])).toEqual({ lanes: 4, lane: [0, 3, 1, 2, 3] });
    expect(plan([[1000, 1000], [1000, 1000]])).toEqual({ lanes: 2, lane: [0, 1] });
    expect(plan([[1000, 1000]])).toEqual({ lanes: 1, lane: [0] });
  });

  test('long sequences stay on the call stream (lane 0); sequences without queries take none', () => {
    // 32 heads x 33 query tiles = 1056 > 1024; 131073 keys > 128K; the larger short one (2000) takes side lane 1
    expect(plan([[4200, 4200], [1000, 1000], [0, 50], [2000, 2000], [100, 131073]])).toEqual({ lanes: 3, lane: [0, 2, 0, 1, 0] });
    expect(plan([[4200, 4200], [8192, 8192]])).toEqual({ lanes: 1, lane: [0, 0] });
    expect(plan([[0, 10], [0, 20]])).toEqual({ lanes: 1, lane: [0, 0] });
    expect(plan([[4096, 4096]], 8)).toEqual({ lanes: 1, lane: [0] });
    expect(plan([[16384, 16384], [16384, 16384]], 8)).toEqual({ lanes: 2, lane: [0, 1] }); // 8 x 128 tiles: short
  });

  test('paged: at most 128 MiB gathered on a side stream; maxLanes caps the streams', () => {
    const kv = 8 * 128 * 2; // gathered bytes of a key: the estimation's keys at 8 kv heads, d 128, bf16 (pages of 128 and more)
    expect(plan([[512, 65536], [512, 65536]], 32, kv)).toEqual({ lanes: 2, lane: [0, 1] });
    expect(plan([[512, 65537], [512, 1000]], 32, kv)).toEqual({ lanes: 2, lane: [0, 1] });
    const eight = Array.from({ length: 8 }, (): [number, number] => [1024, 1024]);
    expect(plan(eight, 32, 0, 2)).toEqual({ lanes: 2, lane: [0, 1, 0, 1, 0, 1, 0, 1] });
    expect(plan(eight, 32, 0, 1)).toEqual({ lanes: 1, lane: Array(8).fill(0) });
    expect(() => plan(eight, 32, 0, 5)).toThrow(/maxLanes must be in \[1, 4\]/);
  });
});

describe('the testing entry has the ragged-batch references', () => {
  test('reference.* re-exports them, and pagedToPacked gathers pages in table order (NHD and HND)', async () => {
    const { reference } = await import('../lib/testing');
    const rv = await import('../lib/reference-varlen');
    expect(reference.referenceVarlenAttention).toBe(rv.referenceVarlenAttention);
    expect(reference.referenceVarlenEstimate).toBe(rv.referenceVarlenEstimate);
    expect(reference.referenceVarlenPrefill).toBe(rv.referenceVarlenPrefill);
    // 3 pages of 2 tokens, 2 kv heads, d 1; value = 100 * page + 10 * slot + head.
    const pageSize = 2, hkv = 2, numPages = 3;
    const value = (page: number, slot: number, h: number) => 100 * page + 10 * slot + h;
    const nhd = new Float64Array(numPages * pageSize * hkv);
    const hnd = new Float64Array(numPages * pageSize * hkv);
    for (let p = 0; p < numPages; p++) {
      for (let s = 0; s < pageSize; s++) {
        for (let h = 0; h < hkv; h++) {
          nhd[(p * pageSize + s) * hkv + h] = value(p, s, h);
          hnd[(p * hkv + h) * pageSize + s] = value(p, s, h);
        }
      }
    }
    // sequence 0: 3 tokens in pages 2, 0; sequence 1: 1 token in page 1
    const table = [[2, 0], [1]], kvLens = [3, 1];
    const want = new Float64Array(hkv * 4);
    const tokens: Array<[number, number]> = [[2, 0], [2, 1], [0, 0], [1, 0]];
    for (let h = 0; h < hkv; h++) tokens.forEach(([p, s], i) => (want[h * 4 + i] = value(p, s, h)));
    for (const [layout, pool] of [['NHD', nhd], ['HND', hnd]] as const) {
      const got = reference.pagedToPacked(pool, layout, hkv, pageSize, 1, table, kvLens);
      expect(Array.from(got.cuSeqlensK)).toEqual([0, 3, 4]);
      expect(Array.from(got.packed)).toEqual(Array.from(want));
    }
  });
});

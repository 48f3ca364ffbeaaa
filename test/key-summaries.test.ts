// Key summaries on the CPU backend: estimations that read the summaries of
// full key blocks select exactly what they select without them (contiguous,
// packed and paged keys, shifted query grids, chunked appends), and every
// misuse fails in TypeScript before any native work.
import { estimate, prefill } from '../lib/ops';
import { estimateVarlen, prefillVarlen } from '../lib/varlen';
import { KeySummaries, summarizeKeys, summarizeKeysVarlen } from '../lib/key-summaries';
import type { Tensor } from '../lib/tensor';
import { contiguousProblem, keySummaryAppendCases, keySummaryCases, type SummaryConfig } from './helpers/key-summaries';
import { disposeAll, packed, raggedCase } from './helpers/varlen';

const configs: Array<[string, SummaryConfig]> = [
  ['bfloat16, d 32, block 16, bhnd', { dtype: 'bfloat16', d: 32, block: 16, layout: 'bhnd', opts: {}, seed: 1 }],
  ['float16, d 16, block 32, bnhd, interleaved', { dtype: 'float16', d: 16, block: 32, layout: 'bnhd', opts: { ropeLayout: 'interleaved', highDims: 8, lowDims: 10 }, seed: 2 }],
  ['float32, d 64, block 16, bnhd, meanpool', { dtype: 'float32', d: 64, block: 16, layout: 'bnhd', opts: { method: 'meanpool' }, seed: 3 }],
  ['bfloat16, d 16, block 48, bhnd, fixed temperatures, top-k', { dtype: 'bfloat16', d: 16, block: 48, layout: 'bhnd', opts: { calibrate: false, selection: 'topk', topkHigh: 2, topkLow: 1 }, seed: 4 }],
];

describe('key summaries (CPU)', () => {
  keySummaryCases('cpu', configs, true, [16, 32, 64, 128, 256]);
});

describe('key summaries written back by the estimation (CPU, run.appendKeySummaries)', () => {
  keySummaryAppendCases('cpu', configs, true, [16, 32, 64, 128, 256]);
});

/** The promise rejects with exactly `ctor` (not a subclass) and this message. */
async function failsWith(p: Promise<unknown>, ctor: new (message?: string) => Error, message: string): Promise<void> {
  const e = await p.then(
    () => undefined,
    (x: unknown) => x,
  );
  expect(e).toBeInstanceOf(ctor);
  expect((e as Error).constructor).toBe(ctor);
  expect((e as Error).message).toBe(message);
}

describe('key summaries: argument errors (before any native work)', () => {
  const d = 16;
  const block = 16;
  let q: Tensor, k: Tensor, v: Tensor, kShort: Tensor, k2: Tensor, kf32: Tensor, kHeads: Tensor, kDim: Tensor, s: KeySummaries;

  beforeAll(async () => {
    const c = { dtype: 'bfloat16' as const, d, layout: 'bhnd' as const, seed: 9 };
    ({ q, k, v } = await contiguousProblem(c, 1, 4, 2, 40, 100, 'cpu')); // 6 full blocks of 16
    kShort = (await contiguousProblem(c, 1, 4, 2, 40, 70, 'cpu')).k; // 4 full blocks
    k2 = (await contiguousProblem(c, 2, 4, 2, 40, 100, 'cpu')).k;
    kf32 = (await contiguousProblem({ ...c, dtype: 'float32' }, 1, 4, 2, 40, 100, 'cpu')).k;
    kHeads = (await contiguousProblem(c, 1, 4, 4, 40, 100, 'cpu')).k;
    kDim = (await contiguousProblem({ ...c, d: 32 }, 1, 4, 2, 40, 100, 'cpu')).k;
    s = await summarizeKeys(k, { block });
  });
  afterAll(() => disposeAll(q, k, v, kShort, k2, kf32, kHeads, kDim, s));

  test('summarizeKeys: arguments', async () => {
    await failsWith(summarizeKeys(null as unknown as Tensor), TypeError, 'k must be a Tensor (from tensor(), empty(), fromDevicePointer() or an op), got null');
    await expect(summarizeKeys(k, { blok: 16 } as never)).rejects.toThrow(TypeError);
    await expect(summarizeKeys(k, { block: 17 })).rejects.toThrow(RangeError);
    await expect(summarizeKeys(k, { block }, { intoo: s } as never)).rejects.toThrow(/^unknown run option field 'intoo'/);
    await failsWith(summarizeKeys(k, { block }, { into: {} as KeySummaries }), TypeError, 'run.into must be KeySummaries (from summarizeKeys or summarizeKeysVarlen), got Object');
    await expect(summarizeKeys(k, { block }, { into: Object.create(KeySummaries.prototype) as KeySummaries })).rejects.toThrow(TypeError);
    await failsWith(summarizeKeys(k, { block }, { from: 0 }), TypeError, 'run.from needs run.into (new summaries start at block 0)');
    await failsWith(summarizeKeys(k, { block }, { into: s, maxKeys: 200 }), TypeError, 'run.maxKeys sizes new summaries; run.into has its own capacity');
    await failsWith(summarizeKeys(k, { block }, { maxKeys: 80 }), RangeError, 'run.maxKeys (80) holds 5 full blocks of 16; the keys have 6');
    await failsWith(summarizeKeys(k, { block }, { maxKeys: '1k' as unknown as number }), TypeError, 'run.maxKeys must be a number, got string');
    await expect(summarizeKeys(k, { block }, { into: s, from: 7 })).rejects.toThrow(/^run\.from must be an integer in \[0, 6\] \(the blocks run.into holds\), got 7/);
    await expect(summarizeKeys(k, { block }, { into: s, from: 1.5 })).rejects.toThrow(RangeError);
    await failsWith(summarizeKeys(kShort, { block }, { into: s }), RangeError, 'run.into holds 6 blocks, more than the 4 full key blocks of k (70 keys, block 16)');
    await failsWith(summarizeKeys(kShort, { block }, { into: s, from: 5 }), RangeError, 'run.from (5) exceeds the 4 full key blocks of k (70 keys, block 16)');
    await expect(summarizeKeys(k, { block }, { stream: 5 as unknown as bigint })).rejects.toThrow(TypeError);
    const small = await summarizeKeys(kShort, { block });
    await failsWith(summarizeKeys(k, { block }, { into: small }), RangeError, 'k has 6 full key blocks; run.into has room for 4');
    expect(small.blocks).toBe(4);
    small.dispose();
    await failsWith(summarizeKeys(k, { block }, { into: small }), Error, 'run.into: key summaries have been disposed');
    const t = await summarizeKeys(k, { block });
    expect(() => t.truncate(7)).toThrow(new RangeError('blocks must be an integer in [0, 6], got 7'));
    expect(() => t.truncate(-1)).toThrow(RangeError);
    expect(() => t.truncate('1' as unknown as number)).toThrow(TypeError);
    t.truncate(2);
    expect(t.blocks).toBe(2);
    await summarizeKeys(k, { block }, { into: t }); // appends blocks 2..5 again
    expect(t.blocks).toBe(6);
    t.dispose();
    expect(() => new KeySummaries(null, {} as never, 'cpu', {} as never)).toThrow(TypeError);
    expect(() => new KeySummaries(null, {} as never, 'cpu', {} as never)).toThrow('KeySummaries are made by summarizeKeys() or summarizeKeysVarlen()');
  });

  test('summaries made for other keys or options', async () => {
    const cases: Array<[Tensor, object, string]> = [
      [k2, { block }, 'run.into were made for batch 1; this call has batch 2'],
      [kHeads, { block }, 'run.into were made for kv heads 2; this call has kv heads 4'],
      [kDim, { block }, 'run.into were made for head_dim 16; this call has head_dim 32'],
      [kf32, { block }, 'run.into were made for dtype bfloat16; this call has dtype float32'],
      [k, { block: 32 }, 'run.into were made for block 16; this call has block 32'],
      [k, { block, method: 'meanpool' }, 'run.into were made for method prism; this call has method meanpool'],
      [k, { block, highDims: 4 }, 'run.into were made for highDims 8; this call has highDims 4'],
      [k, { block, lowDims: 4 }, 'run.into were made for lowDims 12; this call has lowDims 4'],
      [k, { block, ropeLayout: 'interleaved' }, 'run.into were made for ropeLayout half; this call has ropeLayout interleaved'],
    ];
    for (const [kk, opts, message] of cases) await failsWith(summarizeKeys(kk, opts, { into: s }), RangeError, message);
    // options the pooling does not read may differ; attention options are taken (and not read)
    await expect(summarizeKeys(k, { block, tauHigh: 0.5, calibrate: false, softmaxScale: 0.1 }, { into: s })).resolves.toBe(s);
    // but checked as prefill() checks them, so that one options object serves both
    const badAttention: Array<[object, ErrorConstructor, RegExp]> = [
      [{ block, softmaxScale: 'oops' }, TypeError, /softmaxScale/],
      [{ block, softmaxScale: -1 }, RangeError, /softmaxScale/],
      [{ block, softmaxScale: NaN }, RangeError, /softmaxScale/],
      [{ block, returnLse: 42 }, TypeError, /returnLse/],
    ];
    for (const [opts, kind, message] of badAttention) {
      await expect(prefill(q, k, k, opts)).rejects.toThrow(kind);
      await expect(summarizeKeys(k, opts)).rejects.toThrow(message);
      await expect(summarizeKeys(k, opts)).rejects.toBeInstanceOf(kind);
      await expect(summarizeKeysVarlen(k, { cuSeqlensK: [0, k.shape[2]] }, opts)).rejects.toBeInstanceOf(kind);
    }
  });

  test('estimate and prefill: run.keySummaries', async () => {
    const est = (kk: Tensor, opts: object, keySummaries: unknown) => estimate(q, kk, opts, { keySummaries: keySummaries as KeySummaries });
    await failsWith(est(k, { block }, {}), TypeError, 'run.keySummaries must be KeySummaries (from summarizeKeys or summarizeKeysVarlen), got Object');
    await expect(est(k, { block }, null)).rejects.toThrow(TypeError);
    await failsWith(est(k, { block: 32 }, s), RangeError, 'run.keySummaries were made for block 16; this call has block 32');
    await expect(est(k, { block, method: 'meanpool' }, s)).rejects.toThrow(RangeError);
    await expect(est(k, { block, ropeLayout: 'interleaved' }, s)).rejects.toThrow(RangeError);
    await failsWith(est(kShort, { block }, s), RangeError, 'run.keySummaries cover 6 key blocks, more than the 4 full blocks of block 16 that the 70 keys hold');
    await expect(prefill(q, kShort, (await contiguousProblem({ dtype: 'bfloat16', d, layout: 'bhnd', seed: 3 }, 1, 4, 2, 40, 70, 'cpu')).v, { block }, { keySummaries: s })).rejects.toThrow(RangeError);
    await failsWith(prefill(q, k, v, { block: 32 }, { keySummaries: s }), RangeError, 'run.keySummaries were made for block 16; this call has block 32');
    await expect(prefill(q, k, v, { block }, { keySummaries: 'x' as unknown as KeySummaries })).rejects.toThrow(TypeError);
    const gone = await summarizeKeys(k, { block });
    gone.dispose();
    await failsWith(est(k, { block }, gone), Error, 'run.keySummaries: key summaries have been disposed');
    // meanpool summaries do not depend on the bands
    const mp = await summarizeKeys(k, { block, method: 'meanpool', highDims: 2 });
    const m = await est(k, { block, method: 'meanpool' }, mp);
    disposeAll(mp, m);
  });

  test('varlen: run.keySummaries and summarizeKeysVarlen', async () => {
    const rc = raggedCase({ hq: 4, hkv: 2, d, dtype: 'bfloat16', layout: 'bhnd', qLens: [5, 20], kLens: [40, 100], seed: 3 });
    const t = await packed(rc, 'cpu');
    const ragged = { cuSeqlensQ: rc.cuSeqlensQ, cuSeqlensK: rc.cuSeqlensK };
    const sums = await summarizeKeysVarlen(t.k, ragged, { block });
    expect(sums.map((x) => [x.batch, x.kvHeads, x.blocks])).toEqual([[1, 2, 2], [1, 2, 6]]);
    const ev = (list: unknown, opts: object = { block }) => estimateVarlen(t.q, t.k, ragged, opts, { keySummaries: list as KeySummaries[] });
    await failsWith(ev(sums[0]), TypeError, 'run.keySummaries must be an array of one KeySummaries (or null) per sequence, got KeySummaries');
    await failsWith(ev([sums[0]]), RangeError, 'run.keySummaries must have one entry per sequence (2), got 1');
    await failsWith(ev([sums[1], sums[0]]), RangeError, 'run.keySummaries[0] cover 6 key blocks, more than the 2 full blocks of block 16 that the 40 keys hold');
    await expect(ev([null, s])).resolves.toHaveLength(2); // s has batch 1, 2 kv heads, 6 blocks: it fits sequence 1
    await failsWith(ev([null, 3]), TypeError, 'run.keySummaries[1] must be KeySummaries (from summarizeKeys or summarizeKeysVarlen), got number');
    await failsWith(ev([null, sums[1]], { block: 32 }), RangeError, 'run.keySummaries[1] were made for block 16; this call has block 32');
    await expect(prefillVarlen(t.q, t.k, t.v, ragged, { block }, { keySummaries: [null, k2Summaries] })).rejects.toThrow(
      new RangeError('run.keySummaries[1] were made for batch 2; this call has batch 1'),
    );
    // summarizeKeysVarlen
    await failsWith(summarizeKeysVarlen(t.k, { cuSeqlensQ: rc.cuSeqlensQ } as never, { block }), TypeError, 'batch needs cuSeqlensK (packed K/V) or pageTable and kvLens (paged KV)');
    await expect(summarizeKeysVarlen(t.k, { cuSeqlensK: [0, 5] }, { block })).rejects.toThrow(RangeError);
    await expect(summarizeKeysVarlen(t.k, ragged, { block }, { into: sums[0] as never })).rejects.toThrow(TypeError);
    await failsWith(summarizeKeysVarlen(t.k, ragged, { block }, { into: [null] }), RangeError, 'run.into must have one entry per sequence (2), got 1');
    await expect(summarizeKeysVarlen(t.k, ragged, { block }, { into: [sums[1], null] })).rejects.toThrow(
      new RangeError('run.into[0] covers 6 key blocks, more than the 2 full blocks of sequence 0 (40 keys)'),
    );
    await failsWith(summarizeKeysVarlen(t.k, ragged, { block }, { into: [sums[0], sums[0]] }), RangeError, 'sequence 1 has 6 full key blocks; run.into[1] has room for 2');
    const big = await summarizeKeysVarlen(t.k, ragged, { block }, { maxKeys: 200 });
    expect(big.map((x) => x.capacityBlocks)).toEqual([12, 12]);
    await failsWith(summarizeKeysVarlen(t.k, ragged, { block }, { into: [big[0], big[0]] }), RangeError, 'run.into[1] is also given for an earlier sequence');
    const same = await summarizeKeysVarlen(t.k, ragged, { block }, { into: [big[0], null] });
    expect(same[0]).toBe(big[0]);
    disposeAll(t.q, t.k, t.v, ...sums, ...big, same[1]);
  });

  test('run.appendKeySummaries', async () => {
    const run = (keySummaries: unknown, appendKeySummaries: unknown) => ({ keySummaries: keySummaries as KeySummaries, appendKeySummaries: appendKeySummaries as boolean });
    const needs = 'run.appendKeySummaries needs run.keySummaries (the summaries to append the pooled key blocks to)';
    await failsWith(estimate(q, k, { block }, { appendKeySummaries: true }), TypeError, needs);
    await failsWith(prefill(q, k, v, { block }, { appendKeySummaries: true }), TypeError, needs);
    await failsWith(estimate(q, k, { block }, run(s, 'yes')), TypeError, 'run.appendKeySummaries must be a boolean, got string');
    await failsWith(prefill(q, k, v, { block }, run(s, 1)), TypeError, 'run.appendKeySummaries must be a boolean, got number');
    await failsWith(estimate(q, k, { block }, run(undefined, null)), TypeError, 'run.appendKeySummaries must be a boolean, got null');
    // false without summaries: nothing to append to, nothing asked
    const plain = await estimate(q, k, { block }, { appendKeySummaries: false });
    plain.dispose();
    // room for the full blocks of k
    const small = await summarizeKeys(kShort, { block });
    small.truncate(2);
    const room = 'run.keySummaries have room for 4 key blocks; run.appendKeySummaries needs 6 (the full blocks of block 16 that the 100 keys hold)';
    await failsWith(estimate(q, k, { block }, run(small, true)), RangeError, room);
    await failsWith(prefill(q, k, v, { block }, run(small, true)), RangeError, room);
    expect(small.blocks).toBe(2);
    // without the flag the same summaries are only read
    const read = await estimate(q, k, { block }, run(small, false));
    expect(small.blocks).toBe(2);
    // the checks of run.keySummaries hold with the flag
    await failsWith(estimate(q, k, { block: 32 }, run(s, true)), RangeError, 'run.keySummaries were made for block 16; this call has block 32');
    await failsWith(estimate(q, kShort, { block }, run(s, true)), RangeError, 'run.keySummaries cover 6 key blocks, more than the 4 full blocks of block 16 that the 70 keys hold');
    await failsWith(estimate(q, k, { block }, run({}, true)), TypeError, 'run.keySummaries must be KeySummaries (from summarizeKeys or summarizeKeysVarlen), got Object');
    await failsWith(prefill(q, k, v, { block }, run(k2Summaries, true)), RangeError, 'run.keySummaries were made for batch 2; this call has batch 1');
    const gone = await summarizeKeys(k, { block });
    gone.dispose();
    await failsWith(estimate(q, k, { block }, run(gone, true)), Error, 'run.keySummaries: key summaries have been disposed');
    disposeAll(small, read);
  });

  test('one writer at a time: a second call writing the same summaries, or truncate() meanwhile, is an Error', async () => {
    const run = (x: KeySummaries) => ({ keySummaries: x, appendKeySummaries: true });
    const w = await summarizeKeys(k, { block });
    w.truncate(1);
    const busy = 'another call in flight is writing these key summaries (appendKeySummaries or summarizeKeys into); wait for it to settle';
    const first = estimate(q, k, { block }, run(w));
    await failsWith(estimate(q, k, { block }, run(w)), Error, `run.keySummaries: ${busy}`);
    await failsWith(prefill(q, k, v, { block }, run(w)), Error, `run.keySummaries: ${busy}`);
    await failsWith(summarizeKeys(k, { block }, { into: w }), Error, `run.into: ${busy}`);
    expect(() => w.truncate(0)).toThrow(new Error('truncate: a call in flight is writing these key summaries; truncate once it has settled'));
    // reading them meanwhile is fine
    const reader = await estimate(q, k, { block }, { keySummaries: w });
    const m = await first;
    expect(w.blocks).toBe(6); // the first writer's blocks, not undone
    // released on success and on failure: the next writers run
    w.truncate(2);
    const again = await prefill(q, k, v, { block }, run(w));
    expect(w.blocks).toBe(6);
    await summarizeKeys(k, { block }, { into: w, from: 3 });
    expect(w.blocks).toBe(6);
    disposeAll(m, reader, again.output, again.mask, w);
  });

  test('run.appendKeySummaries: varlen', async () => {
    const rc = raggedCase({ hq: 4, hkv: 2, d, dtype: 'bfloat16', layout: 'bhnd', qLens: [5, 20, 0], kLens: [40, 100, 50], seed: 3 });
    const t = await packed(rc, 'cpu');
    const ragged = { cuSeqlensQ: rc.cuSeqlensQ, cuSeqlensK: rc.cuSeqlensK };
    const run = (keySummaries: unknown, appendKeySummaries: unknown) => ({ keySummaries: keySummaries as KeySummaries[], appendKeySummaries: appendKeySummaries as boolean });
    const ev = (r: object) => estimateVarlen(t.q, t.k, ragged, { block }, r);
    const pv = (r: object) => prefillVarlen(t.q, t.k, t.v, ragged, { block }, r);
    const needs = 'run.appendKeySummaries needs run.keySummaries (the summaries to append the pooled key blocks to)';
    await failsWith(ev({ appendKeySummaries: true }), TypeError, needs);
    await failsWith(pv({ appendKeySummaries: true }), TypeError, needs);
    await failsWith(ev(run([null, null, null], 'true')), TypeError, 'run.appendKeySummaries must be a boolean, got string');
    await failsWith(pv(run([null, null, null], 0)), TypeError, 'run.appendKeySummaries must be a boolean, got number');
    const sums = await summarizeKeysVarlen(t.k, ragged, { block }, { maxKeys: 112 });
    expect(sums.map((x) => x.capacityBlocks)).toEqual([7, 7, 7]);
    const tight = await summarizeKeysVarlen(t.k, ragged, { block });
    sums.forEach((x) => x.truncate(0));
    tight.forEach((x) => x.truncate(1));
    await failsWith(ev(run([sums[0], tight[0], null], true)), RangeError, 'run.keySummaries[1] have room for 2 key blocks; run.appendKeySummaries needs 6 (the full blocks of block 16 that the 100 keys hold)');
    await failsWith(pv(run([null, tight[2], null], true)), RangeError, 'run.keySummaries[1] have room for 3 key blocks; run.appendKeySummaries needs 6 (the full blocks of block 16 that the 100 keys hold)');
    expect(tight.map((x) => x.blocks)).toEqual([1, 1, 1]);
    await failsWith(ev(run([sums[0], sums[0], null], true)), RangeError, "run.keySummaries[1] is also given for an earlier sequence (run.appendKeySummaries writes each sequence's blocks into its own summaries)");
    await failsWith(pv(run([sums[0], sums[1], sums[1]], true)), RangeError, "run.keySummaries[2] is also given for an earlier sequence (run.appendKeySummaries writes each sequence's blocks into its own summaries)");
    await failsWith(ev(run([sums[0]], true)), RangeError, 'run.keySummaries must have one entry per sequence (3), got 1');
    await failsWith(ev(run(sums[0], true)), TypeError, 'run.keySummaries must be an array of one KeySummaries (or null) per sequence, got KeySummaries');
    await failsWith(ev(run([null, 3, null], true)), TypeError, 'run.keySummaries[1] must be KeySummaries (from summarizeKeys or summarizeKeysVarlen), got number');
    await failsWith(ev(run([null, null, await summarizeKeys(k, { block })], true)), RangeError, 'run.keySummaries[2] cover 6 key blocks, more than the 3 full blocks of block 16 that the 50 keys hold');
    expect(sums.map((x) => x.blocks)).toEqual([0, 0, 0]);
    // without queries a sequence is not estimated: its summaries are neither checked for room nor written
    const r = await ev(run([sums[0], sums[1], tight[0]], true));
    expect(sums.map((x) => x.blocks)).toEqual([2, 6, 0]);
    expect(tight[0].blocks).toBe(1);
    // without the flag the same summaries may be read by several sequences
    await expect(ev(run([tight[0], tight[0], null], false))).resolves.toHaveLength(3);
    disposeAll(t.q, t.k, t.v, ...sums, ...tight, ...r);
  });

  let k2Summaries: KeySummaries;
  beforeAll(async () => {
    k2Summaries = await summarizeKeys(k2, { block });
  });
  afterAll(() => k2Summaries.dispose());
});

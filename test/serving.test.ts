// What servers use: row log-sum-exp (against float64 and by merging two key
// sets), compact selections (CSR) sized by the selection, masks from caller
// block lists, the one-call prefill against estimate + attention, and
// caller-owned outputs. On the CPU, and on the GPU when present.

import { describeGpu } from './helpers/gpu';
import { relErr, rounded, type Problem as Setup } from './helpers/data';
import { listsMatchMask } from './helpers/compare';
import { attention, estimate, massRecall, prefill } from '../lib/ops';
import { blockMask } from '../lib/block-mask';
import { blockGrid, visibleBlocks } from '../lib/grid';
import { tensor, empty, type Tensor } from '../lib/tensor';
import { Rng } from '../lib/rng';
import { referenceAttention } from '../lib/reference';
import { structuredWorkload } from '../lib/workloads/structured';
import type { DeviceSpec, DType } from '../lib/types';

// Output tolerance per dtype (relative L2), and the absolute LSE tolerance:
// the kernels accumulate in fp32 (exp2 in the log2 domain); inputs are exact
// in every dtype since the reference sees the rounded values.
const TOL: Record<DType, number> = { float32: 2e-5, float16: 2e-3, bfloat16: 1e-2 };
const LSE_TOL = 2e-4;


async function randomQkv(s: Setup, device: DeviceSpec, seed: number) {
  const rng = new Rng(seed);
  const fill = (n: number, scale: number) => Float32Array.from({ length: n }, () => rng.normal() * scale);
  const q = rounded(fill(s.hq * s.nq * s.d, 1.5), s.dtype);
  const k = rounded(fill(s.hkv * s.nk * s.d, 1), s.dtype);
  const v = rounded(fill(s.hkv * s.nk * s.d, 1), s.dtype);
  const t = (x: { raw: Float32Array | Uint16Array }, h: number, n: number) =>
    tensor(x.raw, { shape: [1, h, n, s.d], dtype: s.dtype, device });
  return { q, k, v, tq: await t(q, s.hq, s.nq), tk: await t(k, s.hkv, s.nk), tv: await t(v, s.hkv, s.nk) };
}


function maxLseError(got: Float32Array, want: Float64Array): number {
  let worst = 0;
  for (let i = 0; i < want.length; i++) {
    if (want[i] === -Infinity || got[i] === -Infinity) {
      if (got[i] !== want[i]) return Infinity;
      continue;
    }
    worst = Math.max(worst, Math.abs(got[i] - want[i]));
  }
  return worst;
}

async function bytesEqual(a: Tensor, b: Tensor): Promise<boolean> {
  const x = new Uint8Array((await a.toHost()).buffer);
  const y = new Uint8Array((await b.toHost()).buffer);
  return x.length === y.length && x.every((v, i) => v === y[i]);
}

function servingSuite(device: DeviceSpec, dtypes: DType[], d: number, block: number): void {
  test('LSE of dense and sparse attention equals the float64 reference (misaligned chunk, GQA)', async () => {
    for (const [n, dtype] of dtypes.map((t, i) => [i, t] as const)) {
      const s: Setup = { hq: 4, hkv: 2, nq: 3 * block - 37 + n, nk: 5 * block + 11, d, dtype };
      const { q, k, v, tq, tk, tv } = await randomQkv(s, device, 31 + n);
      const dims = { batch: 1, ...s };
      for (const sparse of [false, true]) {
        const m = sparse ? await estimate(tq, tk, { block, tauHigh: 0.6, tauLow: 0.6 }) : null;
        const host = m ? await m.toHost({ mask: false }) : null;
        const { output, lse } = await attention(tq, tk, tv, m, { returnLse: true });
        expect(lse.shape).toEqual([1, s.hq, s.nq, 1]);
        const wantLse = new Float64Array(s.hq * s.nq);
        const want = referenceAttention(q.values, k.values, v.values, dims, host ? host.counts : null, host ? host.indices : null, m ? block : 128, undefined, undefined, wantLse);
        expect(relErr(await output.toFloat32(), want)).toBeLessThanOrEqual(TOL[dtype]);
        expect(maxLseError(await lse.toFloat32(), wantLse)).toBeLessThanOrEqual(LSE_TOL);
        for (const t of [output, lse, m]) t?.dispose();
      }
      for (const t of [tq, tk, tv]) t.dispose();
    }
  });

  test('outputs of two key sets merged by their LSE equal attention over both', async () => {
    // key blocks split by parity: each row's own diagonal block is in exactly one set
    const s: Setup = { hq: 2, hkv: 1, nq: 2 * block + 9, nk: 4 * block + 9, d, dtype: dtypes[0] };
    const { tq, tk, tv } = await randomQkv(s, device, 5);
    const { nq, nk } = blockGrid(s.nq, s.nk, block);
    const shape = { batch: 1, heads: s.hq, queryLength: s.nq, keyLength: s.nk, block, device };
    const part = (parity: number) =>
      Array.from({ length: s.hq * nq }, (_, r) => Array.from({ length: visibleBlocks(r % nq, nq, nk) }, (_, j) => j).filter((j) => j % 2 === parity));
    const [even, odd] = [await blockMask(part(0), shape), await blockMask(part(1), shape)];
    const a = await attention(tq, tk, tv, even, { returnLse: true });
    const b = await attention(tq, tk, tv, odd, { returnLse: true });
    const full = await attention(tq, tk, tv, null);
    const [oa, ob, la, lb, of] = await Promise.all([a.output.toFloat32(), b.output.toFloat32(), a.lse.toFloat32(), b.lse.toFloat32(), full.toFloat32()]);
    const merged = new Float64Array(of.length);
    for (let r = 0; r < la.length; r++) {
      const m = Math.max(la[r], lb[r]);
      const wa = la[r] === -Infinity ? 0 : Math.exp(la[r] - m);
      const wb = lb[r] === -Infinity ? 0 : Math.exp(lb[r] - m);
      for (let c = 0; c < s.d; c++) merged[r * s.d + c] = (wa * oa[r * s.d + c] + wb * ob[r * s.d + c]) / (wa + wb);
    }
    expect(relErr(merged, of)).toBeLessThanOrEqual(2 * TOL[s.dtype]);
    for (const t of [a.output, a.lse, b.output, b.lse, full, tq, tk, tv, even, odd]) t.dispose();
  });

  test('a row with no key gives zeros and LSE -Infinity', async () => {
    // query block 0 lists nothing, query block 1 its diagonal
    const s: Setup = { hq: 1, hkv: 1, nq: 2 * block, nk: 2 * block, d, dtype: dtypes[0] };
    const { tq, tk, tv } = await randomQkv(s, device, 9);
    const lists = await blockMask([[], [1]], { batch: 1, heads: 1, queryLength: s.nq, keyLength: s.nk, block, device });
    const { output, lse } = await attention(tq, tk, tv, lists, { returnLse: true });
    const [l, o] = [await lse.toFloat32(), await output.toFloat32()];
    expect(l.subarray(0, block).every((x) => x === -Infinity)).toBe(true);
    expect(o.subarray(0, block * d).every((x) => x === 0)).toBe(true);
    expect(l.subarray(block).every((x) => Number.isFinite(x))).toBe(true);
    for (const t of [output, lse, lists, tq, tk, tv]) t.dispose();
  });

  test('compact selections: sized by the selection, consistent with the mask, dense mask on request', async () => {
    const w = structuredWorkload({ batch: 1, hq: 4, hkv: 2, nq: 6 * block + 5, seqLen: 8 * block, d, seed: 3 });
    const dtype = dtypes[0];
    const mk = (x: Float32Array, h: number, n: number) => tensor(rounded(x, dtype).raw, { shape: [1, h, n, d], dtype, device });
    const tq = await mk(w.q as Float32Array, 4, 6 * block + 5);
    const tk = await mk(w.k as Float32Array, 2, 8 * block);
    const m = await estimate(tq, tk, { block }, { denseMask: true });
    const host = await m.toHost();
    expect(listsMatchMask(host)).toBe(true);
    expect(host.rowPtr[host.rowPtr.length - 1]).toBe(m.selected);
    expect(m.parts.indices.byteLength).toBe(4 * Math.max(1, m.selected));
    expect(m.parts.mask).not.toBeNull();
    const dense = new Uint8Array(await m.parts.mask!.toHost());
    expect(dense).toEqual(host.mask);
    const lean = await estimate(tq, tk, { block });
    expect(lean.parts.mask).toBeNull();
    expect((await lean.toHost()).mask).toEqual(host.mask);
    expect(lean.byteLength).toBeLessThan(m.byteLength);
    for (const t of [m, lean, tq, tk]) t.dispose();
  });

  test('blockMask from caller lists equals the reference and rejects bad lists', async () => {
    const s: Setup = { hq: 2, hkv: 1, nq: 2 * block + 3, nk: 3 * block + 7, d, dtype: dtypes[0] };
    const { q, k, v, tq, tk, tv } = await randomQkv(s, device, 12);
    const { nq, nk } = blockGrid(s.nq, s.nk, block);
    const rng = new Rng(4);
    const lists = Array.from({ length: s.hq * nq }, (_, r) =>
      Array.from({ length: visibleBlocks(r % nq, nq, nk) }, (_, j) => j).filter(() => rng.uniform() < 0.6),
    );
    const shape = { batch: 1, heads: s.hq, queryLength: s.nq, keyLength: s.nk, block, device };
    const m = await blockMask(lists, shape);
    const flat = Int32Array.from(lists.flat());
    const counts = Int32Array.from(lists.map((l) => l.length));
    const want = referenceAttention(q.values, k.values, v.values, { batch: 1, ...s }, counts, flat, block);
    const out = await attention(tq, tk, tv, m);
    expect(relErr(await out.toFloat32(), want)).toBeLessThanOrEqual(TOL[s.dtype]);
    // the same lists as compact rows
    const rowPtr = [0];
    for (const l of lists) rowPtr.push(rowPtr[rowPtr.length - 1] + l.length);
    const m2 = await blockMask({ rowPtr, indices: flat }, shape);
    const out2 = await attention(tq, tk, tv, m2);
    expect(await bytesEqual(out, out2)).toBe(true);
    // typed arrays of any integer kind are read in place
    const m3 = await blockMask({ rowPtr: Float64Array.from(rowPtr), indices: Uint32Array.from(flat) }, shape);
    const out3 = await attention(tq, tk, tv, m3);
    expect(await bytesEqual(out, out3)).toBe(true);
    const rows = Array.from({ length: s.nq }, (_, r) => [0, r % 2, r] as const);
    expect(Array.from(await massRecall(tq, tk, m, rows))).toEqual(Array.from(await massRecall(tq, tk, m2, rows)));
    const bad: Array<[unknown, RegExp]> = [
      [lists.slice(1), /one list per row/],
      [lists.map((l, r) => (r === 1 ? [l[0], l[0]] : l)), /ascending distinct/],
      [lists.map((l, r) => (r === 0 ? [nk] : l)), /ascending distinct integers in \[0, /],
      [lists.map((l, r) => (r === 0 ? [-1] : l)), /ascending distinct/],
      [lists.map((l, r) => (r === 0 ? [0.5] : l)), /ascending distinct/],
      [{ rowPtr: rowPtr.slice(1), indices: flat }, /rowPtr must have/],
      [{ rowPtr: rowPtr.map((x, i) => (i === 2 ? x + 1e6 : x)), indices: flat }, /not a valid range/],
      [{ rowPtr, indices: Float64Array.from(flat, (x, i) => (i === 0 ? x + 0.5 : x)) }, /ascending distinct/],
      [{ rowPtr, indices: BigInt64Array.from(flat, (x) => BigInt(x)) }, /ascending distinct/],
      [{ rowPtr, indices: new DataView(new ArrayBuffer(4 * flat.length)) }, /lists.indices must be an array of integers \(with a length\), got DataView/],
      [{ rowPtr, indices: { 0: 1 } }, /lists.indices must be an array of integers \(with a length\), got Object/],
      [null, /lists must be/],
    ];
    for (const [arg, msg] of bad) await expect(blockMask(arg as never, shape)).rejects.toThrow(msg);
    // Row lengths that are no count, or more blocks than the row sees: RangeErrors naming the row.
    const badLengths: Array<[unknown, RegExp]> = [
      [lists.map((l, r) => (r === 0 ? { length: -1 } : l)), /^lists\[0\].length must be an integer >= 0, got -1$/],
      [lists.map((l, r) => (r === 0 ? { length: NaN } : l)), /^lists\[0\].length must be an integer >= 0, got NaN$/],
      [lists.map((l, r) => (r === 0 ? { length: 2 ** 53 } : l)), /^lists\[0\].length must be an integer >= 0/],
      [
        lists.map((l, r) => (r === 0 ? Array.from({ length: visibleBlocks(0, nq, nk) + 1 }, (_, j) => j) : l)),
        new RegExp(`^lists: row 0 lists ${visibleBlocks(0, nq, nk) + 1} key blocks; query block 0 sees ${visibleBlocks(0, nq, nk)}, each at most once$`),
      ],
    ];
    for (const [arg, msg] of badLengths) {
      await expect(blockMask(arg as never, shape)).rejects.toThrow(msg);
      await expect(blockMask(arg as never, shape)).rejects.toBeInstanceOf(RangeError);
    }
    // A row's length is read once: a getter that answers differently later cannot slip a bad count in.
    let reads = 0;
    const fickle = { 0: 0, get length() { reads += 1; return reads === 1 ? 1 : -5; } };
    const mf = await blockMask(lists.map((l, r) => (r === 0 ? fickle : l)) as never, shape);
    expect(reads).toBe(1);
    expect((await mf.toHost({ mask: false })).counts[0]).toBe(1);
    mf.dispose();
    // Options objects take only their fields: a misspelt 'devcie' would have put the mask on another device.
    await expect(blockMask(lists, { ...shape, devcie: 'cpu' } as never)).rejects.toThrow(
      /^unknown blockMask option field 'devcie' \(allowed: batch, heads, queryLength, keyLength, block, device\)$/,
    );
    await expect(m.toHost({ foo: 1 } as never)).rejects.toThrow(/^unknown toHost option field 'foo' \(allowed: mask\)$/);
    await expect(m.toHost({ mask: 5 } as never)).rejects.toThrow(/^toHost: mask must be a boolean, got number$/);
    expect((await m.toHost(null)).counts).toEqual((await m.toHost()).counts); // null: the defaults
    // Only the blocks the attention takes (every backend: [16, 1024]).
    for (const b of [8, 15, 1025, 4096, 16.5]) {
      await expect(blockMask([], { ...shape, block: b })).rejects.toThrow(new RegExp(`^opts.block must be an integer in \\[16, 1024\\], got ${b}$`));
    }
    await expect(blockMask(lists, { ...shape, queryLength: s.nk + 1 })).rejects.toThrow(RangeError);
    for (const t of [m, m2, m3, out, out2, out3, tq, tk, tv]) t.dispose();
  });

  test('prefill() equals estimate() + attention() bit for bit; stats from the same call', async () => {
    const w = structuredWorkload({ batch: 1, hq: 4, hkv: 1, nq: 4 * block - 20, seqLen: 5 * block, d, seed: 8 });
    const dtype = dtypes[0];
    const mk = (x: Float32Array, h: number, n: number) => tensor(rounded(x, dtype).raw, { shape: [1, h, n, d], dtype, device });
    const tq = await mk(w.q as Float32Array, 4, 4 * block - 20);
    const tk = await mk(w.k as Float32Array, 1, 5 * block);
    const tv = await mk(w.v as Float32Array, 1, 5 * block);
    const opts = { block, tauHigh: 0.8, tauLow: 0.9 };
    const m = await estimate(tq, tk, opts);
    const o = await attention(tq, tk, tv, m);
    const p = await prefill(tq, tk, tv, { ...opts, returnLse: true });
    expect(await bytesEqual(p.output, o)).toBe(true);
    expect(p.mask).not.toBeNull();
    const [hm, hp] = [await m.toHost(), await p.mask!.toHost()];
    expect(hp.rowPtr).toEqual(hm.rowPtr);
    expect(hp.indices).toEqual(hm.indices);
    expect(p.stats.density).toBeCloseTo(m.density(), 12);
    expect(p.stats.estimateMs).toBeGreaterThan(0);
    expect(p.stats.attentionMs).toBeGreaterThan(0);
    expect(p.lse?.shape).toEqual([1, 4, 4 * block - 20, 1]);
    const { lse } = await attention(tq, tk, tv, m, { returnLse: true });
    expect(await bytesEqual(p.lse!, lse)).toBe(true);
    // no mask returned, caller-owned output: the same numbers, written in place
    const out = empty([1, 4, 4 * block - 20, d], { dtype, device });
    const q2 = await prefill(tq, tk, tv, opts, { out, returnMask: false });
    expect(q2.output).toBe(out);
    expect(q2.mask).toBeNull();
    expect(q2.stats.density).toBeCloseTo(m.density(), 12);
    expect(await bytesEqual(out, o)).toBe(true);
    for (const t of [m, o, p.output, p.mask!, p.lse!, lse, out, tq, tk, tv]) t.dispose();
  });

  test('attention writes into run.out; a mismatched out is a TypeError (dtype) or a RangeError (shape)', async () => {
    const s: Setup = { hq: 2, hkv: 2, nq: block, nk: block, d, dtype: dtypes[0] };
    const { tq, tk, tv } = await randomQkv(s, device, 2);
    const out = empty([1, 2, block, d], { dtype: s.dtype, device });
    const got = await attention(tq, tk, tv, null, {}, { out });
    expect(got).toBe(out);
    expect(await bytesEqual(out, await attention(tq, tk, tv, null))).toBe(true);
    const wrong = empty([1, 2, block, d], { dtype: s.dtype === 'float16' ? 'bfloat16' : 'float16', device });
    await expect(attention(tq, tk, tv, null, {}, { out: wrong })).rejects.toThrow(/^run\.out must match q's dtype: q is (bfloat16|float16|float32), run\.out is (bfloat16|float16)$/);
    await expect(attention(tq, tk, tv, null, {}, { out: wrong })).rejects.toBeInstanceOf(TypeError);
    const short = empty([1, 2, block - 1, d], { dtype: s.dtype, device });
    await expect(attention(tq, tk, tv, null, {}, { out: short })).rejects.toThrow(/^run\.out must match q: \[1, 2, \d+, \d+\]/);
    await expect(attention(tq, tk, tv, null, {}, { out: short })).rejects.toBeInstanceOf(RangeError);
    short.dispose();
    await expect(attention(tq, tk, tv, null, {}, { out: {} as Tensor })).rejects.toThrow(TypeError);
    // A tensor that went through structured clone (what postMessage() does) is named as such.
    const cloned = structuredClone(tq) as unknown as Tensor;
    await expect(attention(cloned, tk, tv, null)).rejects.toThrow(/^q must be a Tensor .*got Object with a shape and a dtype \(a Tensor passed through postMessage\(\)/);
    await expect(prefill(tq, tk, tv, {}, { returnMask: false, denseMask: true })).rejects.toThrow(
      /^run\.denseMask needs the selection returned: it cannot combine with run\.returnMask: false$/,
    );
    await expect(prefill(tq, tk, tv, {}, { returnMask: false, denseMask: true })).rejects.toBeInstanceOf(TypeError);
    await expect(attention(tq, tk, tv, null, {}, { bogus: 1 } as never)).rejects.toThrow(/unknown run option field 'bogus'/);
    await expect(prefill(tq, tk, tv, {}, { returnMask: 'no' } as never)).rejects.toThrow(/returnMask must be a boolean/);
    for (const t of [out, wrong, tq, tk, tv]) t.dispose();
  });

  test('run.out that is an input is a RangeError before any work (the kernels read the inputs while they write it)', async () => {
    // q, k and v of one shape, so that each passes run.out's shape check.
    const s: Setup = { hq: 2, hkv: 2, nq: 2 * block, nk: 2 * block, d, dtype: dtypes[0] };
    const { tq, tk, tv } = await randomQkv(s, device, 3);
    const inputs = [await tq.toHost(), await tk.toHost(), await tv.toHost()];
    const named: Array<[string, Tensor]> = [['q', tq], ['k', tk], ['v', tv]];
    for (const [name, t] of named) {
      const message = new RegExp(`^run.out shares memory with ${name}: the output must not overlap an input$`);
      await expect(attention(tq, tk, tv, null, {}, { out: t })).rejects.toThrow(message);
      await expect(prefill(tq, tk, tv, { block }, { out: t })).rejects.toThrow(message);
      await expect(attention(tq, tk, tv, null, {}, { out: t })).rejects.toBeInstanceOf(RangeError);
    }
    // nothing ran: the inputs are as they were
    const after = [await tq.toHost(), await tk.toHost(), await tv.toHost()];
    after.forEach((x, i) => expect(Buffer.from(x.buffer).equals(Buffer.from(inputs[i].buffer))).toBe(true));
    for (const t of [tq, tk, tv]) t.dispose();
  });
}

describe('serving features on the CPU', () => {
  servingSuite('cpu', ['float32', 'bfloat16'], 16, 16);
});

describeGpu('serving features on the GPU', () => {
  servingSuite('cuda', ['bfloat16', 'float16'], 128, 128);
});


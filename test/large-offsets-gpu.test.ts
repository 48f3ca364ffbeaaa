// Problems whose tensors hold more than 2^32 elements, on the GPU: the offsets
// every kernel forms run past the 32-bit range (the million-token regime, where
// 32 heads x 1M tokens x 128 is exactly 2^32). The calls over the whole tensors
// must give, kv-head group for group, what the same calls give on views of one
// group, whose in-kernel offsets stay small (a view's pointer is offset on the
// host): bit for bit on the contiguous layout, equal selections and outputs
// within the dtype's tolerance for packed and paged batches. Rows past element
// 2^32 are also checked against the float64 reference, and a million-token
// call of 32 heads (rows of 8200 key blocks) against its groups. GPU only.
//
// The heads are distinct windows of one random device buffer, copied in place,
// so that nothing large goes through the host: an offset that wrapped would
// read another head's window (or fault) and show as a difference.
import { describeGpu, gpu } from './helpers/gpu';
import { info } from '../lib/native';
import { relErr, values } from './helpers/data';
import { empty, tensor, type Tensor } from '../lib/tensor';
import { prefill, relativeError, type PrefillResult } from '../lib/ops';
import type { BlockMask } from '../lib/block-mask';
import { prefillVarlen } from '../lib/varlen';
import { fromBFloat16, toBFloat16 } from '../lib/dtype';
import { referenceAttention } from '../lib/reference-attention';
import { TOLERANCES } from '../lib/validate';

const D = 128;
const BLOCK = 128;
const B = 2;
const HKV = 68;
const G = 2; // query heads per kv head
const HQ = HKV * G;
const NQ = 130176; // a multiple of 16, so that every head's LSE view starts on 64 bytes
const NK = NQ + 1000; // the queries start off the block grid (1000 = 7 * 128 + 104)
const TOL = TOLERANCES.bfloat16;
const opts = { block: BLOCK, returnLse: true } as const;

// Window u of the source buffer starts at token SHIFT * u.
const SHIFT = 37;
const WINDOWS = 2 * B * HQ + 2 * B * HKV;
const SOURCE_TOKENS = NK + 256 + SHIFT * WINDOWS;
const windowOf = {
  q: (b: number, h: number) => b * HQ + h,
  k: (b: number, h: number) => B * HQ + b * HKV + h,
  v: (b: number, h: number) => B * HQ + B * HKV + b * HKV + h,
};

function bh(b: number, h: number, heads: number, n: number): number {
  return (b * heads + h) * n * D;
}

async function copyWindow(dst: Tensor, offset: number, tokens: number, src: Tensor, window: number, from = 0): Promise<void> {
  const to = dst.view([1, 1, tokens, D], { offset });
  const part = src.view([1, 1, tokens, D], { offset: (window * SHIFT + from) * D });
  await to.copyFrom(part);
  to.dispose();
  part.dispose();
}

/** [batches.length, heads, n, D] on the GPU: head h of entry e is window w(batches[e], h) of src. */
async function filled(src: Tensor, batches: number[], heads: number, n: number, w: (b: number, h: number) => number): Promise<Tensor> {
  const t = empty([batches.length, heads, n, D], { device: 'cuda', dtype: 'bfloat16' });
  for (let e = 0; e < batches.length; e++) for (let h = 0; h < heads; h++) await copyWindow(t, bh(e, h, heads, n), n, src, w(batches[e], h));
  return t;
}

/**
 * Sequence b of a batch (heads of windowOf) as its own rectangular prefill, and
 * its selection held equal to `mask`, the batch's selection of sequence b.
 */
async function aloneWithSameSelection(src: Tensor, b: number, hq: number, hkv: number, mask: BlockMask): Promise<PrefillResult> {
  const qb = await filled(src, [b], hq, NQ, windowOf.q);
  const kb = await filled(src, [b], hkv, NK, windowOf.k);
  const vb = await filled(src, [b], hkv, NK, windowOf.v);
  const alone = await prefill(qb, kb, vb, opts, { returnMask: true });
  for (const t of [qb, kb, vb]) t.dispose();
  const got = await mask.toHost({ mask: false });
  const want = await alone.mask!.toHost({ mask: false });
  expect(Array.from(got.counts)).toEqual(Array.from(want.counts));
  expect(got.indices.length).toBe(want.indices.length);
  expect(got.indices.every((x, i) => x === want.indices[i])).toBe(true);
  return alone;
}

// The rectangular and the packed batches hold about 28 GB at once (inputs and
// output), plus the estimation's workspace; a card with less memory skips the
// suite, saying so.
const MEMORY_NEEDED = 48 * 2 ** 30;
const roomy = gpu.available && info().devices[0].totalMemory >= MEMORY_NEEDED;
if (gpu.available && !roomy) console.warn(`[skipped: GPU memory] tensors past 2^32 elements: need ${MEMORY_NEEDED / 2 ** 30} GiB on cuda:0, it has ${(info().devices[0].totalMemory / 2 ** 30).toFixed(1)}`);
const test = roomy ? global.test : global.test.skip;

describeGpu('tensors past 2^32 elements', () => {
  jest.setTimeout(900_000);
  let src: Tensor;

  beforeAll(async () => {
    src = await tensor(toBFloat16(values(SOURCE_TOKENS * D, 7)), { shape: [1, 1, SOURCE_TOKENS, D], dtype: 'bfloat16', device: 'cuda' });
  });
  afterAll(() => src?.dispose());

  test('a batch of [2, 136, 130176, 128] queries equals its kv-head groups run alone, bit for bit', async () => {
    expect(B * HQ * NQ * D).toBeGreaterThan(2 ** 32);
    expect(B * HKV * NK * D).toBeGreaterThan(2 ** 31);
    const all = [0, 1];
    const q = await filled(src, all, HQ, NQ, windowOf.q);
    const k = await filled(src, all, HKV, NK, windowOf.k);
    const v = await filled(src, all, HKV, NK, windowOf.v);
    const whole = await prefill(q, k, v, opts, { returnMask: false });
    const lse = whole.lse as Tensor;

    let densitySum = 0;
    const unequal: string[] = [];
    for (let b = 0; b < B; b++) {
      for (let g = 0; g < HKV; g++) {
        const qo = bh(b, g * G, HQ, NQ);
        const qv = q.view([1, G, NQ, D], { offset: qo });
        const kv = k.view([1, 1, NK, D], { offset: bh(b, g, HKV, NK) });
        const vv = v.view([1, 1, NK, D], { offset: bh(b, g, HKV, NK) });
        const last = b === B - 1 && g === HKV - 1;
        const alone = await prefill(qv, kv, vv, opts, { returnMask: last });
        densitySum += alone.stats.density;
        const ov = whole.output.view([1, G, NQ, D], { offset: qo });
        const lv = lse.view([1, G, NQ, 1], { offset: qo / D });
        const eo = await relativeError(ov, alone.output);
        const el = await relativeError(lv, alone.lse as Tensor);
        if (eo !== 0 || el !== 0) unequal.push(`(b ${b}, kv head ${g}): output ${eo}, lse ${el}`);

        if (last) {
          // The last group lies wholly past element 2^32 of q and of the output.
          expect(qo).toBeGreaterThan(2 ** 32);
          const m = await alone.mask!.toHost({ mask: false });
          const rows = [0, 1, 903, NQ >> 1, NQ - 2, NQ - 1];
          const ref = referenceAttention(await qv.toFloat32(), await kv.toFloat32(), await vv.toFloat32(), { batch: 1, hq: G, hkv: 1, nq: NQ, nk: NK, d: D }, m.counts, m.indices, BLOCK, undefined, rows);
          for (let h = 0; h < G; h++) {
            for (const r of rows) {
              const gotF = fromBFloat16((await whole.output.read(qo + (h * NQ + r) * D, D)) as Uint16Array);
              expect(relErr(gotF, ref.subarray((h * NQ + r) * D, (h * NQ + r + 1) * D))).toBeLessThan(TOL);
            }
          }
          alone.mask!.dispose();
        }
        for (const t of [qv, kv, vv, ov, lv, alone.output, alone.lse as Tensor]) t.dispose();
      }
    }
    console.log(`[${B}, ${HQ}, ${NQ}, ${D}] queries: density ${whole.stats.density.toFixed(4)}; ${B * HKV - unequal.length} of ${B * HKV} groups bit-identical to the group alone`);
    expect(unequal).toEqual([]);
    expect(Math.abs(whole.stats.density - densitySum / (B * HKV))).toBeLessThan(1e-9);
    for (const t of [q, k, v, whole.output, lse]) t.dispose();
  });

  test('a million tokens: [1, 32, 1M + 16, 128] queries equal their kv-head groups run alone, bit for bit', async () => {
    const hkv = 8;
    const hq = 32;
    const nq = (1 << 20) + 16;
    const nk = nq + 1000;
    expect(hq * nq * D).toBeGreaterThan(2 ** 32);
    // Rows of 8200 key blocks take the long-row selection; tau 0.3 keeps the
    // random inputs' attention short.
    const o = { ...opts, tauHigh: 0.3, tauLow: 0.3 };
    const long = await tensor(toBFloat16(values((nk + 256 + SHIFT * (hq + 2 * hkv)) * D, 9)), { shape: [1, 1, nk + 256 + SHIFT * (hq + 2 * hkv), D], dtype: 'bfloat16', device: 'cuda' });
    const q = await filled(long, [0], hq, nq, (_, h) => h);
    const k = await filled(long, [0], hkv, nk, (_, h) => hq + h);
    const v = await filled(long, [0], hkv, nk, (_, h) => hq + hkv + h);
    long.dispose();
    const whole = await prefill(q, k, v, o, { returnMask: false });
    const g4 = hq / hkv;
    const unequal: string[] = [];
    let densitySum = 0;
    for (let g = 0; g < hkv; g++) {
      const qo = g * g4 * nq * D;
      const views = [q.view([1, g4, nq, D], { offset: qo }), k.view([1, 1, nk, D], { offset: g * nk * D }), v.view([1, 1, nk, D], { offset: g * nk * D })];
      const alone = await prefill(views[0], views[1], views[2], o, { returnMask: false });
      densitySum += alone.stats.density;
      const ov = whole.output.view([1, g4, nq, D], { offset: qo });
      const lv = (whole.lse as Tensor).view([1, g4, nq, 1], { offset: qo / D });
      const eo = await relativeError(ov, alone.output);
      const el = await relativeError(lv, alone.lse as Tensor);
      if (eo !== 0 || el !== 0) unequal.push(`kv head ${g}: output ${eo}, lse ${el}`);
      for (const t of [...views, ov, lv, alone.output, alone.lse as Tensor]) t.dispose();
    }
    console.log(`[1, ${hq}, ${nq}, ${D}] queries: density ${whole.stats.density.toFixed(4)}, estimation ${whole.stats.estimateMs.toFixed(2)} ms; ${hkv - unequal.length} of ${hkv} groups bit-identical to the group alone`);
    expect(unequal).toEqual([]);
    expect(Math.abs(whole.stats.density - densitySum / hkv)).toBeLessThan(1e-9);
    for (const t of [q, k, v, whole.output, whole.lse as Tensor]) t.dispose();
  });

  test('a packed ragged batch past 2^32 elements equals the same sequences in a rectangular batch', async () => {
    const total = 2 * NQ;
    expect(HQ * total * D).toBeGreaterThan(2 ** 32);
    // Packed [1, H, tokens, D]: sequence b of head h at tokens [b n, (b + 1) n).
    const packed = async (heads: number, n: number, w: (b: number, h: number) => number): Promise<Tensor> => {
      const t = empty([1, heads, B * n, D], { device: 'cuda', dtype: 'bfloat16' });
      for (let h = 0; h < heads; h++) for (let b = 0; b < B; b++) await copyWindow(t, (h * B * n + b * n) * D, n, src, w(b, h));
      return t;
    };
    const q = await packed(HQ, NQ, windowOf.q);
    const k = await packed(HKV, NK, windowOf.k);
    const v = await packed(HKV, NK, windowOf.v);
    const ragged = await prefillVarlen(q, k, v, { cuSeqlensQ: [0, NQ, total], cuSeqlensK: [0, NK, B * NK] }, opts, { returnMask: true });
    for (const t of [q, k, v]) t.dispose();

    const worst = { output: 0, lse: 0 };
    let exact = 0;
    for (let b = 0; b < B; b++) {
      const alone = await aloneWithSameSelection(src, b, HQ, HKV, ragged.masks![b]!);
      for (let h = 0; h < HQ; h++) {
        const po = (h * total + b * NQ) * D;
        const ov = ragged.output.view([1, 1, NQ, D], { offset: po });
        const wv = alone.output.view([1, 1, NQ, D], { offset: h * NQ * D });
        const lv = (ragged.lse as Tensor).view([1, 1, NQ, 1], { offset: po / D });
        const wl = (alone.lse as Tensor).view([1, 1, NQ, 1], { offset: h * NQ });
        const eo = await relativeError(ov, wv);
        const el = await relativeError(lv, wl);
        worst.output = Math.max(worst.output, eo);
        worst.lse = Math.max(worst.lse, el);
        if (eo === 0 && el === 0) exact++;
        for (const t of [ov, wv, lv, wl]) t.dispose();
      }
      for (const t of [alone.output, alone.lse as Tensor]) t.dispose();
      alone.mask!.dispose();
    }
    console.log(`packed [1, ${HQ}, ${total}, ${D}]: ${exact} of ${B * HQ} heads bit-identical; largest relative difference output ${worst.output}, lse ${worst.lse}`);
    expect(worst.output).toBeLessThan(TOL);
    expect(worst.lse).toBeLessThan(1e-5);
    ragged.masks!.forEach((m) => m?.dispose());
    for (const t of [ragged.output, ragged.lse as Tensor]) t.dispose();
  });

  test('a paged cache whose pool holds more than 2^32 elements equals contiguous keys', async () => {
    const hkv = 8;
    const hq = 16;
    const page = 256;
    const pagesPerSeq = Math.ceil(NK / page);
    const numPages = 16500; // HND pool [16500, 8, 256, 128]: 4.3e9 elements
    expect(numPages * hkv * page * D).toBeGreaterThan(2 ** 32);
    // The sequences' pages at the top of the pool, in descending order.
    const pageTable = [0, 1].map((b) => Array.from({ length: pagesPerSeq }, (_, p) => numPages - 1 - (b * pagesPerSeq + p)));
    const pools = [0, 1].map(() => empty([numPages, hkv, page, D], { device: 'cuda', dtype: 'bfloat16', layout: 'bhnd' }));
    const windows = [windowOf.k, windowOf.v];
    for (let b = 0; b < B; b++) {
      for (let p = 0; p < pagesPerSeq; p++) {
        const copies: Array<Promise<void>> = [];
        for (let h = 0; h < hkv; h++)
          for (let x = 0; x < 2; x++) copies.push(copyWindow(pools[x], (pageTable[b][p] * hkv + h) * page * D, page, src, windows[x](b, h), p * page));
        await Promise.all(copies);
      }
    }
    const q = empty([1, hq, B * NQ, D], { device: 'cuda', dtype: 'bfloat16' });
    for (let h = 0; h < hq; h++) for (let b = 0; b < B; b++) await copyWindow(q, (h * B * NQ + b * NQ) * D, NQ, src, windowOf.q(b, h));
    const paged = await prefillVarlen(q, pools[0], pools[1], { cuSeqlensQ: [0, NQ, B * NQ], kvLens: [NK, NK], pageTable, kvLayout: 'HND', pageSize: page }, opts, { returnMask: true });
    for (const t of [...pools, q]) t.dispose();

    let worst = 0;
    let exact = 0;
    for (let b = 0; b < B; b++) {
      const alone = await aloneWithSameSelection(src, b, hq, hkv, paged.masks![b]!);
      for (let h = 0; h < hq; h++) {
        const ov = paged.output.view([1, 1, NQ, D], { offset: (h * B * NQ + b * NQ) * D });
        const wv = alone.output.view([1, 1, NQ, D], { offset: h * NQ * D });
        const e = await relativeError(ov, wv);
        worst = Math.max(worst, e);
        if (e === 0) exact++;
        ov.dispose();
        wv.dispose();
      }
      for (const t of [alone.output, alone.lse as Tensor]) t.dispose();
      alone.mask!.dispose();
    }
    console.log(`paged pool [${numPages}, ${hkv}, ${page}, ${D}]: ${exact} of ${B * hq} heads bit-identical to contiguous keys; largest relative difference ${worst}`);
    expect(worst).toBeLessThan(TOL);
    paged.masks!.forEach((m) => m?.dispose());
    for (const t of [paged.output, paged.lse as Tensor]) t.dispose();
  });
});

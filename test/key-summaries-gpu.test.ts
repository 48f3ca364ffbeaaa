// Key summaries on cuda:0 (bf16 / fp16, d 64 / 128, blocks 64 / 128): the
// pooling kernel's key units write the summaries, and an estimation that
// copies them instead of pooling selects exactly what it selects without them,
// with the row and the tiled selection kernels, for contiguous, packed and
// paged keys (every page size, both layouts) and chunked appends; a q whose
// vector width differs from k's does not change the key sums. An estimation
// with run.appendKeySummaries copies the key blocks it pooled into the
// summaries: the same bits as summarizeKeys (the partial block not written),
// whatever q's vector width, with either selection kernel. Skipped with a
// notice without a GPU; fails with PRISM_REQUIRE_GPU=1.
import { estimate } from '../lib/ops';
import { summarizeKeys } from '../lib/key-summaries';
import { empty, fromDevicePointer, tensor } from '../lib/tensor';
import { describeGpu } from './helpers/gpu';
import { rounded, values } from './helpers/data';
import { contiguousProblem, expectSameSelection, keySummaryAppendCases, keySummaryCases, summaryContents, summaryTail, type SummaryConfig } from './helpers/key-summaries';
import { disposeAll, maskParts } from './helpers/varlen';

const DEVICE = 'cuda:0';

const configs: Array<[string, SummaryConfig]> = [
  ['bfloat16, d 128, block 128, bhnd', { dtype: 'bfloat16', d: 128, block: 128, layout: 'bhnd', opts: {}, seed: 1 }],
  ['float16, d 64, block 64, bnhd', { dtype: 'float16', d: 64, block: 64, layout: 'bnhd', opts: {}, seed: 2 }],
  ['bfloat16, d 64, block 128, bnhd, meanpool', { dtype: 'bfloat16', d: 64, block: 128, layout: 'bnhd', opts: { method: 'meanpool' }, seed: 3 }],
  ['float16, d 128, block 64, bhnd, interleaved, fixed temperatures', { dtype: 'float16', d: 128, block: 64, layout: 'bhnd', opts: { ropeLayout: 'interleaved', calibrate: false }, seed: 4 }],
];

describeGpu('key summaries (GPU)', () => {
  keySummaryCases(DEVICE, configs, true, [16, 32, 64, 128, 256]);

  test('long rows (the tiled selection kernel): same selection with summaries', async () => {
    const c = { dtype: 'bfloat16' as const, d: 64, layout: 'bhnd' as const, seed: 11 };
    const t = await contiguousProblem(c, 1, 2, 1, 4000, 16 * 1100 + 5, DEVICE);
    const s = await summarizeKeys(t.k, { block: 16 });
    expect(s.blocks).toBe(1100);
    await expectSameSelection(t.q, t.k, null, { block: 16 }, s);
    disposeAll(t.q, t.k, t.v, s);
  });

  test('a q view with a narrower vector width than k: the key sums do not change', async () => {
    const c = { dtype: 'bfloat16' as const, d: 64, layout: 'bhnd' as const, seed: 12 };
    const t = await contiguousProblem(c, 1, 4, 2, 300, 700, DEVICE);
    const qHost = (await t.q.toHost()) as Uint16Array;
    const buf = empty([1, 1, 1, qHost.length + 8], { dtype: 'bfloat16', device: DEVICE });
    const q = fromDevicePointer(buf.pointer + 2n, { shape: [1, 4, 300, 64], dtype: 'bfloat16', device: DEVICE }); // 2-byte aligned: vector width 1
    await q.write(qHost);
    const s = await summarizeKeys(t.k, { block: 64 });
    const got = await estimate(q, t.k, { block: 64 }, { keySummaries: s });
    const plain = await estimate(q, t.k, { block: 64 });
    expect(maskParts(await got.toHost({ mask: false }))).toEqual(maskParts(await plain.toHost({ mask: false })));
    disposeAll(t.q, t.k, t.v, q, buf, s, got, plain);
  });

  describe('written back by the estimation (run.appendKeySummaries)', () => {
    keySummaryAppendCases(DEVICE, configs, true, [16, 32, 64, 128, 256]);

    test('long rows (the tiled selection kernel): write-back equals summarizeKeys', async () => {
      const c = { dtype: 'bfloat16' as const, d: 64, layout: 'bhnd' as const, seed: 13 };
      const t = await contiguousProblem(c, 1, 2, 1, 4000, 16 * 1100 + 5, DEVICE);
      const other = await contiguousProblem({ ...c, seed: 15 }, 1, 2, 1, 16, 16 * 1100 + 5, DEVICE);
      const once = await summarizeKeys(t.k, { block: 16 });
      // rows of other keys, then blocks [0, 300) of k: the estimation must overwrite [300, 1100)
      const w = await summarizeKeys(other.k, { block: 16 }, { maxKeys: 16 * 1200 });
      w.truncate(0);
      const prefix = fromDevicePointer(t.k.pointer, { shape: [1, 1, 16 * 300, 64], dtype: 'bfloat16', device: DEVICE });
      await summarizeKeys(prefix, { block: 16 }, { into: w });
      expect(w.blocks).toBe(300);
      const got = await estimate(t.q, t.k, { block: 16 }, { keySummaries: w, appendKeySummaries: true });
      const plain = await estimate(t.q, t.k, { block: 16 });
      expect(w.blocks).toBe(1100);
      expect(await summaryContents(w)).toEqual(await summaryContents(once));
      expect(maskParts(await got.toHost({ mask: false }))).toEqual(maskParts(await plain.toHost({ mask: false })));
      disposeAll(t.q, t.k, t.v, other.q, other.k, other.v, prefix, once, w, got, plain);
    });

    test('q and k views of other vector widths: the written key blocks are what summarizeKeys writes for that k', async () => {
      const c = { dtype: 'bfloat16' as const, d: 64, layout: 'bhnd' as const, seed: 14 };
      const t = await contiguousProblem(c, 1, 4, 2, 300, 700, DEVICE);
      const odd = async (x: typeof t.q) => {
        const host = (await x.toHost()) as Uint16Array;
        const buf = empty([1, 1, 1, host.length + 8], { dtype: 'bfloat16', device: DEVICE });
        const view = fromDevicePointer(buf.pointer + 2n, { shape: x.shape, dtype: 'bfloat16', device: DEVICE }); // 2-byte aligned: vector width 1
        await view.write(host);
        return { buf, view };
      };
      const q1 = await odd(t.q);
      const k1 = await odd(t.k);
      const other = await contiguousProblem({ ...c, seed: 16 }, 1, 4, 2, 8, 700, DEVICE);
      for (const [q, k] of [[q1.view, t.k], [t.q, k1.view], [q1.view, k1.view]]) {
        const want = await summarizeKeys(k, { block: 64 });
        const w = await summarizeKeys(other.k, { block: 64 }, { maxKeys: 768 }); // rows of other keys
        w.truncate(0);
        const got = await estimate(q, k, { block: 64 }, { keySummaries: w, appendKeySummaries: true });
        const plain = await estimate(q, k, { block: 64 });
        expect(w.blocks).toBe(10);
        expect(await summaryContents(w)).toEqual(await summaryContents(want));
        expect(maskParts(await got.toHost({ mask: false }))).toEqual(maskParts(await plain.toHost({ mask: false })));
        disposeAll(want, w, got, plain);
      }
      // the partial block (keys 640..699) is never written
      const short = await contiguousProblem(c, 1, 4, 2, 60, 60, DEVICE);
      const fresh = await summarizeKeys(short.k, { block: 64 }, { maxKeys: 768 }); // nothing written
      const m = await estimate(t.q, t.k, { block: 64 }, { keySummaries: fresh, appendKeySummaries: true });
      expect(fresh.blocks).toBe(10);
      expect((await summaryTail(fresh)).every((x) => Object.is(x, 0))).toBe(true);
      disposeAll(t.q, t.k, t.v, q1.view, q1.buf, k1.view, k1.buf, other.q, other.k, other.v, short.q, short.k, short.v, fresh, m);
    });
  });

  test('summaries live on their device: a CPU estimation rejects GPU summaries', async () => {
    const raw = rounded(values(2 * 300 * 64, 5), 'bfloat16').raw;
    const kg = await tensor(raw, { shape: [1, 2, 300, 64], dtype: 'bfloat16', device: DEVICE });
    const kc = await tensor(raw, { shape: [1, 2, 300, 64], dtype: 'bfloat16', device: 'cpu' });
    const qc = await tensor(raw, { shape: [1, 2, 300, 64], dtype: 'bfloat16', device: 'cpu' });
    const sg = await summarizeKeys(kg, { block: 64 });
    const sc = await summarizeKeys(kc, { block: 64 });
    expect(sg.blocks).toBe(4);
    await expect(estimate(qc, kc, { block: 64 }, { keySummaries: sg })).rejects.toThrow(new RangeError('run.keySummaries were made for device cuda:0; this call has device cpu'));
    // formats differ (band-packed float32 with energies on the GPU, float64 means on the CPU)
    expect(sg.parts.energies).not.toBeNull();
    expect(sc.parts.energies).toBeNull();
    expect((await summaryContents(sg)).rows[0].length).toBe(4 * (32 + 48));
    disposeAll(kg, kc, qc, sg, sc);
  });
});

// Masks at the sizes of the longest contexts. blockMask() on a selection larger
// than a JavaScript array holds: 2^27 + 8192 indices (a 1M-token selection has
// about 2 * 10^8); gathering them into one JS array aborted the whole process
// (a fatal V8 error, not an exception). And toHost() of a mask whose dense
// form exceeds one typed array. And massRecall on the GPU over 65536 key
// blocks, whose selection flags exceed the default 48 KB of shared memory.

import { blockMask } from '../lib/block-mask';
import { toBFloat16 } from '../lib/dtype';
import { massRecall } from '../lib/ops';
import { tensor } from '../lib/tensor';
import { values } from './helpers/data';
import { describeGpu } from './helpers/gpu';

describe('blockMask with more indices than a JS array holds', () => {
  test('every row full at 16384 blocks of 16 tokens: all indices kept, in order', async () => {
    const n = 16384; // query blocks (block 16, the smallest a mask takes): query block i sees i + 1 key blocks
    const rows = n;
    const total = (n * (n + 1)) / 2; // 134225920 > 2^27
    expect(total).toBeGreaterThan(2 ** 27);
    const ramp = Int32Array.from({ length: n }, (_, j) => j);
    const rowPtr = new Float64Array(rows + 1);
    const indices = new Int32Array(total);
    let at = 0;
    for (let i = 0; i < rows; i++) {
      rowPtr[i] = at;
      indices.set(ramp.subarray(0, i + 1), at);
      at += i + 1;
    }
    rowPtr[rows] = at;
    const m = await blockMask({ rowPtr, indices }, { batch: 1, heads: 1, queryLength: 16 * n, keyLength: 16 * n, block: 16, device: 'cpu' });
    try {
      expect(m.selected).toBe(total);
      expect(m.density()).toBe(1);
      const h = await m.toHost({ mask: false });
      expect(h.indices.length).toBe(total);
      expect(Array.from(h.rowPtr.subarray(rows - 2))).toEqual([total - 2 * n + 1, total - n, total]);
      const bytes = (a: Int32Array) => Buffer.from(a.buffer, a.byteOffset, a.byteLength);
      expect(bytes(h.indices).equals(bytes(indices))).toBe(true);
      expect(h.counts[rows - 1]).toBe(n);
    } finally {
      m.dispose();
    }
    // A bad entry deep in a large selection is still found and named.
    indices[total - 1] = 0;
    await expect(blockMask({ rowPtr, indices }, { batch: 1, heads: 1, queryLength: 16 * n, keyLength: 16 * n, block: 16, device: 'cpu' })).rejects.toThrow(
      /row 16383: key blocks must be ascending distinct integers .* got 0 at position 16383/,
    );
  }, 120000);

  test('toHost() of a mask whose dense form exceeds a typed array: a clear RangeError, compact rows still available', async () => {
    const n = 65537; // blocks of 16: 65537 x 65537 > 2^32 dense entries; every row empty
    const m = await blockMask({ rowPtr: new Float64Array(n + 1), indices: new Int32Array(0) }, { batch: 1, heads: 1, queryLength: 16 * n, keyLength: 16 * n, block: 16, device: 'cpu' });
    try {
      await expect(m.toHost()).rejects.toThrow(
        /^toHost: the dense mask would have 4295098369 entries \(65537 rows x 65537 key blocks\), more than one typed array holds \(\d+\); call toHost\(\{ mask: false \}\)/,
      );
      const h = await m.toHost({ mask: false });
      expect(h.counts.length).toBe(n);
      expect(h.indices.length).toBe(0);
      expect(h.mask.length).toBe(0);
      expect(m.density()).toBe(0);
    } finally {
      m.dispose();
    }
  });
});

describeGpu('massRecall over more key blocks than 48 KB of shared memory flags', () => {
  test('65536 key blocks (1M tokens at block 16): the GPU equals the CPU backend', async () => {
    const [nq, nk, d, block] = [64, 1 << 20, 64, 16];
    const nqb = nq / block;
    const nkb = nk / block;
    const off = nkb - nqb;
    // Each query block: the sink, a scattered few, a window before its diagonal, the diagonal.
    const lists = Array.from({ length: nqb }, (_, i) => {
      const set = new Set<number>([0, i + off]);
      for (let x = 1; x <= 40; x++) set.add((x * 1637 * (i + 3)) % (i + off));
      for (let w = 1; w <= 8; w++) set.add(i + off - w);
      return [...set].sort((a, b) => a - b);
    });
    const qRaw = toBFloat16(values(nq * d, 31));
    const kRaw = toBFloat16(values(nk * d, 32));
    const rows = [[0, 0, 0], [0, 0, 17], [0, 0, 40], [0, 0, 63]] as const;
    const recall = async (device: 'cpu' | 'cuda:0') => {
      const q = await tensor(qRaw, { shape: [1, 1, nq, d], dtype: 'bfloat16', device });
      const k = await tensor(kRaw, { shape: [1, 1, nk, d], dtype: 'bfloat16', device });
      const mask = await blockMask(lists, { batch: 1, heads: 1, queryLength: nq, keyLength: nk, block, device });
      try {
        return await massRecall(q, k, mask, rows);
      } finally {
        for (const t of [q, k]) t.dispose();
        mask.dispose();
      }
    };
    const gpuRecall = await recall('cuda:0');
    const cpuRecall = await recall('cpu');
    for (let r = 0; r < rows.length; r++) {
      expect(gpuRecall[r]).toBeGreaterThan(0);
      expect(gpuRecall[r]).toBeLessThanOrEqual(1 + 1e-6);
      // float32 sums over 1M keys in different orders
      expect(Math.abs(gpuRecall[r] - cpuRecall[r])).toBeLessThan(1e-4);
    }
  });
});

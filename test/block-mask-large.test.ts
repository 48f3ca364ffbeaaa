// Masks at the sizes of the longest contexts. blockMask() on a selection larger
// than a JavaScript array holds: 2^27 + 8192 indices (a 1M-token selection has
// about 2 * 10^8); gathering them into one JS array aborted the whole process
// (a fatal V8 error, not an exception). And toHost() of a mask whose dense
// form exceeds one typed array.

import { blockMask } from '../lib/block-mask';

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

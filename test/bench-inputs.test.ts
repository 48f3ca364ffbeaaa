// The benchmark's inputs: the structured workload made in kv-head groups and
// written part by part, with head shards for --devices, holds the bytes of
// structuredWorkload(); the token-level density from compact rows
// equals the count over the dense mask.

import * as lib from '../bench/lib';
import { buildStructured, structuredGroups, type StructuredSpec } from '../bench/inputs';
import { rowPairs, selectionFigures, tilePairs } from '../bench/run';
import { estimate } from '../lib/ops';
import { tensor, Tensor } from '../lib/tensor';
import { structuredWorkload } from '../lib/workloads/structured';

const same = (a: ArrayLike<number>, b: ArrayLike<number>): boolean => {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
};

const spec: StructuredSpec = { batch: 2, hq: 6, hkv: 3, nq: 300, nk: 300, d: 32, seed: 4, dtype: 'bfloat16' };

async function expectWorkload(built: Awaited<ReturnType<typeof buildStructured>>): Promise<void> {
  const w = structuredWorkload({ batch: spec.batch, hq: spec.hq, hkv: spec.hkv, seqLen: spec.nk, d: spec.d, seed: spec.seed, dtype: spec.dtype });
  expect(same(await built.q.toHost(), w.q)).toBe(true);
  expect(same(await built.k.toHost(), w.k)).toBe(true);
  expect(same(await built.v.toHost(), w.v)).toBe(true);
  const sh = built.shards!;
  expect(sh.shards.map((s) => [s.device, s.kvHeads, s.queryHeads])).toEqual([['cpu', [0, 2], [0, 4]], ['cpu', [2, 3], [4, 6]]]);
  // shard i: for each batch entry, its heads of the whole tensor
  const slice = (x: Float32Array | Uint16Array, heads: number, h0: number, h1: number, n: number) => {
    const out: number[] = [];
    for (let b = 0; b < spec.batch; b++) out.push(...x.subarray((b * heads + h0) * n * spec.d, (b * heads + h1) * n * spec.d));
    return out;
  };
  for (const [i, s] of sh.shards.entries()) {
    expect(same(await sh.q[i].toHost(), slice(w.q, spec.hq, s.queryHeads[0], s.queryHeads[1], spec.nq))).toBe(true);
    expect(same(await sh.k[i].toHost(), slice(w.k, spec.hkv, s.kvHeads[0], s.kvHeads[1], spec.nk))).toBe(true);
    expect(same(await sh.v[i].toHost(), slice(w.v, spec.hkv, s.kvHeads[0], s.kvHeads[1], spec.nk))).toBe(true);
  }
}

describe('structured inputs in kv-head groups', () => {
  test('groups come from this thread when the compiled worker is not there (running from sources)', async () => {
    const src = structuredGroups({ hq: 4, hkv: 2, seqLen: 128, d: 16 }, 2);
    expect(src.threads).toBe(0);
    const seen: string[] = [];
    for await (const g of src.groups) seen.push(`${g.batch}/${g.kvHead}`);
    expect(seen).toEqual(['0/0', '0/1']);
  });

  test('written group by group into the tensors and the shards: the same bytes', async () => {
    const write = jest.spyOn(Tensor.prototype, 'write');
    const groups: number[] = [];
    try {
      const built = await buildStructured(lib, spec, 'cpu', ['cpu', 'cpu'], 0, (done, total) => groups.push(done, total));
      try {
        expect(built.mode).toBe('parts');
        expect(built.threads).toBe(0);
        expect(groups).toEqual([1, 6, 2, 6, 3, 6, 4, 6, 5, 6, 6, 6]);
        expect(write).toHaveBeenCalledTimes(6 * 6); // 6 groups: q, k, v, and the owner shard's q, k, v
        await expectWorkload(built);
      } finally {
        built.dispose();
      }
      expect(built.q.disposed && built.shards!.q[1].disposed).toBe(true);
    } finally {
      write.mockRestore();
    }
  });

  test('without shards; a failed write frees what was made', async () => {
    const built = await buildStructured(lib, { ...spec, batch: 1 }, 'cpu', null, 0);
    expect(built.shards).toBeNull();
    built.dispose();
    const made: Tensor[] = [];
    const original = lib.empty;
    const empty = jest.spyOn(lib, 'empty').mockImplementation((...a: Parameters<typeof lib.empty>) => {
      const t = original(...a);
      made.push(t);
      return t;
    });
    const write = jest.spyOn(Tensor.prototype, 'write').mockRejectedValueOnce(new Error('device full'));
    try {
      await expect(buildStructured(lib, spec, 'cpu', ['cpu', 'cpu'], 0)).rejects.toThrow('device full');
      expect(made).toHaveLength(9);
      expect(made.every((t) => t.disposed)).toBe(true);
    } finally {
      write.mockRestore();
      empty.mockRestore();
    }
  });
});

describe('token-level density from compact rows', () => {
  test.each([
    [512, 512, 64],
    [300, 1000, 64], // a chunk starting inside a block: partial first query block
    [77, 77, 32],
  ])('Nq %i, Nk %i, block %i: equals the count over the dense mask', async (nq, nk, block) => {
    const w = structuredWorkload({ hq: 4, hkv: 2, seqLen: nk, nq, d: 32, seed: 2, segmentLength: 128 });
    const q = await tensor(w.q, { shape: [1, 4, nq, 32], device: 'cpu' });
    const k = await tensor(w.k, { shape: [1, 2, nk, 32], device: 'cpu' });
    const m = await estimate(q, k, { block, tauHigh: 0.6, tauLow: 0.6, forceDiagonal: nq % 2 === 0 });
    const host = await m.toHost();
    const pairs = rowPairs(nq, nk, block);
    // brute force over the dense mask and every tile
    let sel = 0;
    let all = 0;
    for (let h = 0; h < 4; h++) {
      for (let i = 0; i < host.nq; i++) {
        for (let j = 0; j < host.nk; j++) {
          const p = tilePairs(i, j, nq, nk, block);
          all += p;
          if (host.mask[(h * host.nq + i) * host.nk + j]) sel += p;
        }
      }
    }
    expect(pairs.total * 4).toBe(all);
    expect(all).toBe(4 * (nq * (nk - nq) + (nq * (nq + 1)) / 2));
    const got = selectionFigures(await m.toHost({ mask: false }), pairs);
    expect(got.pairDensity).toBeCloseTo(sel / all, 12);
    expect(got.pairDensity).toBeLessThan(1);
    expect(got.temps).not.toBeNull();
    m.dispose();
    q.dispose();
    k.dispose();
  });
});

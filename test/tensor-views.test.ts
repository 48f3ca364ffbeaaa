// Tensor.view(): tensors over part of another tensor's memory, for buffers a
// server reuses at changing lengths. Views share memory both ways, keep it
// alive after their tensor is disposed, and give ops exactly what a fresh
// tensor of the same data gives (bitwise), without touching the rest of the
// buffer. On the CPU, and on the GPU when present.

import { spawnSync } from 'child_process';
import * as path from 'path';
import { describeGpu } from './helpers/gpu';
import { rounded, values } from './helpers/data';
import { prefill } from '../lib/ops';
import { memoryStats } from '../lib/memory';
import { tensor, empty, type Tensor } from '../lib/tensor';
import { Rng } from '../lib/rng';
import type { DeviceSpec, DType } from '../lib/types';

const HQ = 4;
const HKV = 2;
const D = 64;
const MAX_N = 320;

async function bytesOf(t: Tensor): Promise<Uint8Array> {
  return new Uint8Array((await t.toHost()).buffer);
}

function tokens(raw: Float32Array | Uint16Array, n: number, h: number): Float32Array | Uint16Array {
  return raw.subarray(0, n * h * D); // bnhd: the first n tokens are the first n * h * d elements
}

function suite(device: DeviceSpec): void {
  test('a view reads and writes its part of the memory, in both directions', async () => {
    const base = values(8 * 256, 11);
    const t = await tensor(base, { shape: [1, 8, 256, 1], device });
    const v = t.view([1, 2, 16, 4], { offset: 48, layout: 'bnhd' });
    expect(v.shape).toEqual([1, 2, 16, 4]);
    expect(v.layout).toBe('bnhd');
    expect(v.device).toBe(t.device);
    expect(v.pointer - t.pointer).toBe(48n * 4n);
    expect(Array.from(await v.toHost())).toEqual(Array.from(base.subarray(48, 48 + 128)));
    const ones = new Float32Array(128).fill(1);
    await v.write(ones);
    const after = (await t.toHost()) as Float32Array;
    expect(Array.from(after.subarray(48, 176))).toEqual(Array.from(ones));
    expect(Array.from(after.subarray(0, 48))).toEqual(Array.from(base.subarray(0, 48)));
    expect(Array.from(after.subarray(176))).toEqual(Array.from(base.subarray(176)));
    await t.write(new Float32Array([7]), 50);
    expect((await v.read(2, 1))[0]).toBe(7);
    t.dispose();
    v.dispose();
  });

  test('a view keeps the memory alive after its tensor is disposed', async () => {
    const before = memoryStats(device).tensorCount;
    const t = await tensor(values(4096, 3), { shape: [1, 1, 64, 64], device });
    const v = t.view([1, 1, 32, 64], { offset: 2048 });
    const w = v.view([1, 1, 1, 64]);
    t.dispose();
    expect(t.disposed).toBe(true);
    expect(v.disposed).toBe(false);
    expect(() => t.view([1, 1, 1, 1])).toThrow('tensor has been disposed');
    expect(Array.from(await w.toHost())).toEqual(Array.from(values(4096, 3).subarray(2048, 2112)));
    // The memory is counted while a view holds it, and views are not tensors of their own.
    expect(memoryStats(device).tensorCount).toBe(before + 1);
    v.dispose();
    expect(memoryStats(device).tensorCount).toBe(before + 1);
    w.dispose();
    expect(memoryStats(device).tensorCount).toBe(before);
  });

  test.each<DType>(['bfloat16', 'float16'])(
    'prefill on views of one buffer at changing lengths equals prefill on fresh tensors, bitwise (%s)',
    async (dtype) => {
      const rng = new Rng(dtype === 'bfloat16' ? 5 : 6);
      const gen = (n: number) => rounded(Float32Array.from({ length: n }, () => rng.normal()), dtype).raw;
      const qRaw = gen(MAX_N * HQ * D);
      const kRaw = gen(MAX_N * HKV * D);
      const vRaw = gen(MAX_N * HKV * D);
      const opt = { dtype, layout: 'bnhd' as const, device };
      const [qBuf, kBuf, vBuf] = await Promise.all([
        tensor(qRaw, { ...opt, shape: [1, HQ, MAX_N, D] }),
        tensor(kRaw, { ...opt, shape: [1, HKV, MAX_N, D] }),
        tensor(vRaw, { ...opt, shape: [1, HKV, MAX_N, D] }),
      ]);
      const outBuf = empty([1, HQ, MAX_N, D], opt);
      const sentinel = new Uint16Array(MAX_N * HQ * D).fill(0x7e00); // a NaN in both 16-bit dtypes
      await outBuf.write(sentinel);
      const opts = { block: 64, tauHigh: 0.9, tauLow: 0.9 };
      // The longest first, so that later (shorter) steps find the workspace grown.
      for (const [nq, nk] of [
        [MAX_N, MAX_N],
        [77, 77],
        [40, 200],
        [1, 129],
        [190, 250],
      ]) {
        const qv = qBuf.view([1, HQ, nq, D]);
        const kv = kBuf.view([1, HKV, nk, D]);
        const vv = vBuf.view([1, HKV, nk, D]);
        const ov = outBuf.view([1, HQ, nq, D]);
        // q's rows are the last nq of the nk positions: the views hold q tokens [0, nq).
        const allocations = memoryStats(device).allocations;
        await prefill(qv, kv, vv, opts, { out: ov, returnMask: false });
        if (nq !== MAX_N) expect(memoryStats(device).allocations).toBe(allocations);
        const [qf, kf, vf] = await Promise.all([
          tensor(tokens(qRaw, nq, HQ), { ...opt, shape: [1, HQ, nq, D] }),
          tensor(tokens(kRaw, nk, HKV), { ...opt, shape: [1, HKV, nk, D] }),
          tensor(tokens(vRaw, nk, HKV), { ...opt, shape: [1, HKV, nk, D] }),
        ]);
        const fresh = await prefill(qf, kf, vf, opts, { returnMask: false });
        expect(Buffer.from(await bytesOf(ov)).equals(Buffer.from(await bytesOf(fresh.output)))).toBe(true);
        [qf, kf, vf, fresh.output, qv, kv, vv, ov].forEach((t) => t.dispose());
      }
      // A short step never wrote past its view: shrink to 1 token after a sentinel.
      await outBuf.write(sentinel);
      await prefill(qBuf.view([1, HQ, 1, D]), kBuf.view([1, HKV, 64, D]), vBuf.view([1, HKV, 64, D]), opts, {
        out: outBuf.view([1, HQ, 1, D]),
        returnMask: false,
      });
      const all = (await outBuf.toHost()) as Uint16Array;
      expect(all.subarray(0, HQ * D).some((x) => x !== 0x7e00)).toBe(true);
      expect(all.subarray(HQ * D).every((x) => x === 0x7e00)).toBe(true);
      [qBuf, kBuf, vBuf, outBuf].forEach((t) => t.dispose());
    },
  );

  test('an output view that overlaps an input view is refused; disjoint views of one buffer are not', async () => {
    const buf = empty([1, 4, 256, 64], { dtype: 'bfloat16', layout: 'bnhd', device });
    const q = buf.view([1, 4, 64, 64]);
    const k = buf.view([1, 4, 64, 64], { offset: 64 * 4 * 64 });
    const v = buf.view([1, 4, 64, 64], { offset: 2 * 64 * 4 * 64 });
    const overlapping = buf.view([1, 4, 64, 64], { offset: 32 * 4 * 64 });
    await expect(prefill(q, k, v, { block: 64 }, { out: overlapping })).rejects.toThrow(/run\.out shares memory with q/);
    const out = buf.view([1, 4, 64, 64], { offset: 3 * 64 * 4 * 64 });
    await expect(prefill(q, k, v, { block: 64 }, { out, returnMask: false })).resolves.toBeDefined();
    buf.dispose();
  });
}

describe('tensor views on the CPU', () => {
  suite('cpu');

  test('bad views are clear errors, before anything is made', () => {
    const t = empty([1, 4, 64, 32], { dtype: 'float32', device: 'cpu' });
    const n = t.length;
    const cases: [unknown[], ErrorConstructor, string | RegExp][] = [
      [[[1, 4, 65, 32]], RangeError, `a view of 8320 elements at offset 0 runs past the tensor's ${n}`],
      [[[1, 1, 1, 1], { offset: n }], RangeError, `a view of 1 elements at offset ${n} runs past the tensor's ${n}`],
      [[[1, 1, 1, 1], { offset: 3 }], RangeError, 'offset 3 (12 bytes) must be a multiple of 16 elements (64 bytes)'],
      [[[1, 1, 1, 1], { offset: -16 }], RangeError, `offset must be an integer in [0, ${n}], got -16`],
      [[[1, 1, 1, 1], { offset: 16.5 }], RangeError, /offset must be an integer/],
      [[[1, 1, 1, 1], { offset: '16' }], TypeError, 'offset must be a number, got string'],
      [[[1, 1, 1, 1], { size: 1 }], TypeError, "unknown view option field 'size'"],
      [[[1, 1, 1, 1], { layout: 'nhd' }], TypeError, "layout must be 'bhnd' or 'bnhd'"],
      [[[1, 1, 1]], RangeError, 'shape must have rank 4'],
      [[[1, 0, 1, 1]], RangeError, 'heads must be >= 1, got 0'],
      [['x'], TypeError, 'shape must be an array'],
      [[[1, 1, 1, 1], 7], TypeError, /opts must be an object/],
    ];
    for (const [args, cls, msg] of cases) {
      let caught: unknown;
      try {
        (t.view as (...a: unknown[]) => Tensor)(...args);
      } catch (e) {
        caught = e;
      }
      expect(caught).toBeInstanceOf(cls);
      expect(() => {
        throw caught;
      }).toThrow(msg);
    }
    expect(memoryStats('cpu').tensorCount).toBeGreaterThanOrEqual(1);
    t.dispose();
  });

  test('views of views hold the first tensor, not the chain: 200000 of them free without recursion', () => {
    // In a worker with a 1 MiB stack, in a child process (a stack overflow there kills it):
    // a chain freed link by link overflowed the stack at a few hundred thousand links.
    const r = spawnSync(process.execPath, [path.join(__dirname, 'fixtures', 'view-chain.js'), String(2 * 10 ** 5)], {
      encoding: 'utf8',
      timeout: 120_000,
    });
    expect({ status: r.status, signal: r.signal, out: r.stdout.trim(), err: r.stderr }).toEqual({ status: 0, signal: null, out: 'freed 0', err: '' });
  });

  test('a view reports its tensor\'s memory to the garbage collector: dropped views are collected', () => {
    // 1500 steps, each dropping a 64-byte view of an 8 MiB tensor it disposed
    // (test/fixtures/view-gc.js, alone in a child process: V8's heuristics see
    // only its own memory). If only the disposed tensor had reported the
    // memory, nothing would make V8 collect the views: 1.6 GB were held before,
    // about 256 MiB now.
    const r = spawnSync(process.execPath, [path.join(__dirname, 'fixtures', 'view-gc.js'), '1500'], { encoding: 'utf8', timeout: 120_000 });
    expect({ status: r.status, err: r.stderr }).toEqual({ status: 0, err: '' });
    expect(Number(r.stdout.trim())).toBeLessThan(1024);
  });

  test('copyFrom between overlapping views is refused; the same memory is a no-op', async () => {
    const buf = await tensor(Float32Array.from({ length: 256 }, (_, i) => i), { shape: [1, 1, 1, 256], device: 'cpu' });
    const a = buf.view([1, 1, 1, 128]);
    await expect(a.copyFrom(buf.view([1, 1, 1, 128], { offset: 16 }))).rejects.toThrow('copyFrom: src shares memory with this tensor');
    await expect(buf.view([1, 1, 1, 128], { offset: 16 }).copyFrom(a)).rejects.toThrow(RangeError);
    await a.copyFrom(buf.view([1, 1, 1, 128]));
    await a.copyFrom(buf.view([1, 1, 1, 128], { offset: 128 }));
    expect(Array.from((await buf.toHost()).subarray(0, 4))).toEqual([128, 129, 130, 131]);
    buf.dispose();
  });

  test('the addon checks a view against its tensor too (memory safety)', async () => {
    const t = empty([1, 1, 16, 16], { dtype: 'float32', device: 'cpu' });
    const raw = t.native;
    expect(() => raw.view([1, 1, 16, 17], 0, 0)).toThrow(/runs past the tensor's 256/);
    expect(() => raw.view([1, 1, 1, 1], 0, 256)).toThrow(/runs past the tensor's 256/);
    expect(() => raw.view([2 ** 40, 2 ** 12, 1, 1], 0, 0)).toThrow(/runs past the tensor's 256/);
    expect(() => raw.view([1, 1, 1, 1], 0, -1)).toThrow('offset must be in [0, 256]');
    expect(() => raw.view([1, 1, 1, 1], 2, 0)).toThrow(/layout must be/);
    expect(() => raw.view([1, 1, 1, 4], 0, 1)).toThrow('offset 1 must start on a 64-byte boundary');
    t.dispose();
    expect(() => raw.view([1, 1, 1, 1], 0, 0)).toThrow('tensor has been disposed');
  });
});

describeGpu('tensor views on the GPU', () => {
  suite('cuda');
});

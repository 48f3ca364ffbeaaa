// memoryStats() / releaseCachedMemory(), and the GPU workspace pool: a steady
// loop of ops allocates no device memory, also under concurrency.
// Other test files may leave tensors to the garbage collector, whose
// finalizers run between turns of the event loop: exact byte counts are
// compared only within synchronous stretches, and allocation counts (which
// finalizers never change) across awaits.
import { execFileSync } from 'child_process';
import * as path from 'path';
import * as prism from '../lib/index';
import type { BlockMask, Tensor } from '../lib/index';
import { native } from '../lib/native';
import { resolveEstimateOptions, toNativeEstimateParams } from '../lib/options';
import { describeGpu, gpu } from './helpers/gpu';
import { values } from './helpers/data';
import { collectGarbage } from './helpers/gc';


const bytes = (a: ArrayBufferView) => Buffer.from(a.buffer, a.byteOffset, a.byteLength);

describe('the addon stays loaded for the life of the process', () => {
  test('counters survive the exit of the last worker that loaded it (no unload and fresh start)', () => {
    // A fresh process whose main thread loads the package only after its one worker has exited.
    const entry = path.join(__dirname, '..', 'dist', 'lib', 'index.js');
    const script = `
      const { Worker } = require('worker_threads');
      const entry = ${JSON.stringify(entry)};
      const w = new Worker(
        'const p = require(' + JSON.stringify(entry) + ');' +
          "for (let i = 0; i < 5; i++) p.empty([1, 1, 1, 2], { device: 'cpu' });" +
          "require('worker_threads').parentPort.postMessage(p.memoryStats('cpu').allocations);",
        { eval: true },
      );
      w.once('message', (inWorker) => {
        w.once('exit', () => {
          const inMain = require(entry).memoryStats('cpu').allocations;
          console.log(JSON.stringify({ inWorker, inMain }));
        });
      });
    `;
    const out = JSON.parse(execFileSync(process.execPath, ['-e', script], { encoding: 'utf8' })) as { inWorker: number; inMain: number };
    expect(out.inWorker).toBeGreaterThanOrEqual(5);
    expect(out.inMain).toBe(out.inWorker); // "since the process started": not reset by an unload
  });
});

const cudaCompiled = (() => {
  try {
    return prism.info().cudaCompiled;
  } catch {
    return false;
  }
})();

(cudaCompiled ? describe : describe.skip)('workspace size classes (CUDA builds; no GPU needed)', () => {
  const sizeClass = (b: number) => native().testing.workspaceSizeClass(b);
  const GiB = 2 ** 30;

  test('powers of two from 64 KiB to 1 GiB, then within 1/8 of the request', () => {
    for (const b of [1, 1000, 65536, 65537, 3e6, 2 ** 29 + 1, GiB]) {
      const c = sizeClass(b);
      expect(c).toBeGreaterThanOrEqual(Math.max(b, 65536));
      expect(Number.isInteger(Math.log2(c))).toBe(true);
      expect(c).toBeLessThan(2 * Math.max(b, 65536));
    }
    // A 1M-token prefill at block 64 asks about 24.1 GB: the power of two would be 34.4 GB.
    for (const b of [GiB + 1, 1.5 * GiB + 7, 24.1e9, 2 ** 35 - 1, 2 ** 35 + 1, 1e12 + 3]) {
      const c = sizeClass(b);
      expect(c).toBeGreaterThanOrEqual(b);
      expect(c).toBeLessThanOrEqual(b * 1.125);
      expect(c % (2 * 1024 * 1024)).toBe(0); // whole allocation granules
    }
    // Monotone: a larger request never gets a smaller buffer.
    let last = 0;
    for (let b = 1; b < 2 ** 40; b = Math.ceil(b * 1.37) + 1) {
      const c = sizeClass(b);
      expect(c).toBeGreaterThanOrEqual(last);
      last = c;
    }
  });

  test('growing requests: idle buffers smaller than a new one are freed while they add up to more than it', () => {
    const evict = (idle: number[], want: number) => native().testing.workspaceEvictions(idle, want);
    // A chunked prefill's workspace growing a sixteenth at a time: the steps before are freed, smallest first.
    expect(evict([18 * GiB, 17 * GiB], 19 * GiB)).toEqual([1]);
    expect(evict([17, 18, 19].map((x) => x * GiB), 20 * GiB)).toEqual([0, 1]);
    // Nothing to free: smaller ones that fit under the new one, larger ones (never evicted), none at all.
    expect(evict([1.5 * GiB, 2 * GiB], 4 * GiB)).toEqual([]);
    // Up to 1 GiB (powers of two) nothing is freed.
    expect(evict([2 ** 28, 2 ** 28, 2 ** 28, 2 ** 28, 2 ** 28], 2 ** 29)).toEqual([]);
    expect(evict([1 * GiB, 1 * GiB, 1 * GiB], 1.125 * GiB)).toEqual([]);
    expect(evict([64 * GiB, 32 * GiB], 20 * GiB)).toEqual([]);
    expect(evict([], 20 * GiB)).toEqual([]);
    // Random pools: what stays below `want` adds up to at most `want`, only smaller buffers go, smallest first.
    let x = 12345;
    const rand = (n: number) => {
      x = (Math.imul(x, 1664525) + 1013904223) >>> 0;
      return x % n;
    };
    for (let trial = 0; trial < 500; trial++) {
      const idle = Array.from({ length: rand(12) }, () => GiB + (1 + rand(64)) * 2 ** 27);
      const want = GiB + (1 + rand(64)) * 2 ** 27;
      const out = evict(idle, want);
      expect(new Set(out).size).toBe(out.length);
      for (const i of out) expect(idle[i]).toBeLessThan(want);
      const kept = idle.filter((s, i) => s < want && !out.includes(i));
      expect(kept.reduce((a, b) => a + b, 0)).toBeLessThanOrEqual(want);
      if (out.length > 0) expect(Math.max(...out.map((i) => idle[i]))).toBeLessThanOrEqual(Math.min(...kept, Infinity));
      // Minimal: keeping the last one evicted would break the bound.
      if (out.length > 0) expect(kept.reduce((a, b) => a + b, 0) + idle[out[out.length - 1]]).toBeGreaterThan(want);
    }
  });

  test('bytes is checked', () => {
    expect(() => sizeClass(0)).toThrow(/^bytes must be in \[1, /);
    expect(() => sizeClass(1.5)).toThrow(/^bytes must be an integer/);
    expect(() => sizeClass(2 ** 52 + 2)).toThrow(/^bytes must be in \[1, /);
  });
});

describe('memoryStats on the CPU', () => {
  test('lists the CPU first, then every usable GPU', () => {
    const all = prism.memoryStats();
    const i = prism.info();
    const gpus = i.cudaUnavailableReason === null ? i.devices.map((d) => `cuda:${d.index}`) : [];
    expect(all.map((s) => s.device)).toEqual(['cpu', ...gpus]);
    const cpu = prism.memoryStats('cpu');
    expect(Object.keys(cpu).sort()).toEqual(
      ['allocations', 'device', 'deviceFreeBytes', 'deviceTotalBytes', 'tensorBytes', 'tensorCount', 'workspaceBytes', 'workspaceInUseBytes'].sort(),
    );
    expect(cpu.workspaceBytes).toBe(0);
    expect(cpu.deviceFreeBytes).toBeNull();
    expect(cpu.deviceTotalBytes).toBeNull();
  });

  test('counts tensors as they are created and disposed', () => {
    const before = prism.memoryStats('cpu');
    const a = prism.empty([1, 2, 3, 8], { device: 'cpu' });
    const b = prism.empty([2, 1, 5, 4], { device: 'cpu', dtype: 'bfloat16' });
    const mid = prism.memoryStats('cpu');
    expect(mid.tensorBytes - before.tensorBytes).toBe(a.byteLength + b.byteLength);
    expect(a.byteLength + b.byteLength).toBe(48 * 4 + 40 * 2);
    expect(mid.tensorCount - before.tensorCount).toBe(2);
    expect(mid.allocations - before.allocations).toBe(2);
    a.dispose();
    a.dispose(); // idempotent: counted once
    const after = prism.memoryStats('cpu');
    expect(mid.tensorBytes - after.tensorBytes).toBe(a.byteLength);
    expect(mid.tensorCount - after.tensorCount).toBe(1);
    expect(after.allocations).toBe(mid.allocations);
    b.dispose();
  });

  test('a view of memory the package does not own is not counted', () => {
    const before = prism.memoryStats('cpu');
    const owner = prism.empty([1, 1, 4, 8], { device: 'cpu' });
    const view = native().Tensor.wrap(-1, 0, [1, 1, 4, 8], 0, owner.pointer);
    const mid = prism.memoryStats('cpu');
    expect(mid.tensorCount - before.tensorCount).toBe(1);
    expect(mid.tensorBytes - before.tensorBytes).toBe(owner.byteLength);
    view.dispose();
    expect(prism.memoryStats('cpu').tensorCount).toBe(mid.tensorCount);
    owner.dispose();
  });

  test('a tensor disposed while an op uses it stays counted until the op is done', async () => {
    const shape = [1, 2, 256, 32] as const;
    const [q, k] = await Promise.all([1, 2].map((s) => prism.tensor(values(2 * 256 * 32, s), { shape, device: 'cpu' })));
    const before = prism.memoryStats('cpu');
    const pending = prism.attention(q, k, k); // allocates the output now
    q.dispose();
    const during = prism.memoryStats('cpu');
    expect(during.tensorBytes - before.tensorBytes).toBe(q.byteLength); // the output; q still held
    expect(during.tensorCount - before.tensorCount).toBe(1);
    const out = await pending;
    const after = prism.memoryStats('cpu');
    // q's memory went with the op (finalizers of other garbage can only lower this).
    expect(after.tensorBytes).toBeLessThanOrEqual(during.tensorBytes - q.byteLength);
    expect(after.allocations).toBe(during.allocations);
    out.dispose();
    k.dispose();
  });

  test('releaseCachedMemory resolves to 0 on the CPU; a GPU without CUDA is an Error', async () => {
    await expect(prism.releaseCachedMemory('cpu')).resolves.toBe(0);
    if (!gpu.available) {
      expect(() => prism.memoryStats('cuda')).toThrow(/not available/);
      await expect(prism.releaseCachedMemory('cuda:0')).rejects.toThrow(/not available/);
    }
    expect(() => prism.memoryStats('gpu' as never)).toThrow(RangeError);
    // The addon's errors belong to Node's main realm, not jest's sandbox: compare names.
    let name = 'no error';
    try {
      native().memoryStats(-2);
    } catch (e) {
      name = (e as Error).name;
    }
    expect(name).toBe('RangeError');
  });
});

interface Inputs {
  q: Tensor;
  k: Tensor;
  v: Tensor;
}

async function inputs(n: number, seed: number): Promise<Inputs> {
  const opts = { shape: [1, 4, n, 64] as const, device: 'cuda' as const, dtype: 'bfloat16' as const };
  const [q, k, v] = await Promise.all([0, 1, 2].map((i) => prism.tensor(prism.toBFloat16(values(4 * n * 64, seed + i)), opts)));
  return { q, k, v };
}

describeGpu('GPU workspace pool and memory stats', () => {
  const params = toNativeEstimateParams(resolveEstimateOptions({ block: 64 }, 64));
  const attn = { block: 64, softmaxScale: 0 };
  const rows = new BigInt64Array([0n, 0n, 5n, 0n, 3n, 700n]);

  // The ops through the addon into preallocated outputs (prefill without
  // returning its selection, attention, massRecall, diffNorms): the bytes they produce.
  async function nativeRound(x: Inputs, mask: BlockMask, out: Tensor): Promise<Buffer> {
    const N = native();
    await N.prefill(x.q.live(), x.k.live(), x.v.live(), out.live(), params, attn, null);
    const pre = new Uint8Array(await out.live().toHost());
    await N.attention(x.q.live(), x.k.live(), x.v.live(), out.live(), mask.list(), attn);
    // one after the other: calls in flight together would need more buffers (tested below)
    const recall = await N.massRecall(x.q.live(), x.k.live(), mask.list(), attn, rows);
    const norms = await N.diffNorms(x.q.live(), x.k.live());
    const o = new Uint8Array(await out.live().toHost());
    return Buffer.concat([bytes(pre), bytes(o), bytes(recall), bytes(new Float64Array(norms))]);
  }

  test('a steady loop of prefill/attention/massRecall/diffNorms allocates no device memory', async () => {
    const x = await inputs(1024, 1);
    const mask = await prism.estimate(x.q, x.k, { block: 64 });
    const out = prism.empty(x.q.shape, { device: 'cuda', dtype: 'bfloat16' });
    const first = await nativeRound(x, mask, out); // fills the pool
    const before = prism.memoryStats('cuda');
    expect(before.workspaceBytes).toBeGreaterThan(0);
    for (let i = 0; i < 20; i++) expect((await nativeRound(x, mask, out)).equals(first)).toBe(true);
    const after = prism.memoryStats('cuda');
    expect(after.allocations).toBe(before.allocations);
    expect(after.workspaceBytes).toBe(before.workspaceBytes);
    expect(after.workspaceInUseBytes).toBe(0);
    for (const t of [x.q, x.k, x.v, out]) t.dispose();
    mask.dispose();
  });

  test('through the public API, a loop allocates only its outputs', async () => {
    const x = await inputs(512, 11);
    const once = async () => {
      const mask = await prism.estimate(x.q, x.k, { block: 64 }); // 4 tensors: counts, row pointers, temperatures, indices
      const out = await prism.attention(x.q, x.k, x.v, mask); // 1 tensor
      mask.dispose();
      out.dispose();
    };
    await once();
    const before = prism.memoryStats('cuda').allocations;
    for (let i = 0; i < 10; i++) await once();
    expect(prism.memoryStats('cuda').allocations - before).toBe(10 * 5);
    for (const t of [x.q, x.k, x.v]) t.dispose();
  });

  test('1000 prefills into a caller-owned output allocate no device memory', async () => {
    const x = await inputs(1024, 31);
    const out = prism.empty(x.q.shape, { device: 'cuda', dtype: 'bfloat16' });
    const run = () => prism.prefill(x.q, x.k, x.v, { block: 64 }, { out, returnMask: false });
    const first = await run();
    const want = Buffer.from(await out.live().toHost());
    const before = prism.memoryStats('cuda');
    let density = first.stats.density;
    for (let i = 0; i < 1000; i++) density = Math.min(density, (await run()).stats.density);
    const after = prism.memoryStats('cuda');
    expect(after.allocations).toBe(before.allocations);
    expect(after.tensorCount).toBe(before.tensorCount);
    expect(density).toBe(first.stats.density);
    expect(Buffer.from(await out.live().toHost()).equals(want)).toBe(true);
    for (const t of [x.q, x.k, x.v, out]) t.dispose();
  });

  test('concurrent calls grow the pool to at most one buffer a call in flight, then reuse it; results match a sequential run', async () => {
    const x = await inputs(768, 21);
    const mask = await prism.estimate(x.q, x.k, { block: 64 });
    const outs = Array.from({ length: 16 }, () => prism.empty(x.q.shape, { device: 'cuda', dtype: 'bfloat16' }));
    const N = native();
    const call = (o: Tensor) =>
      N.attention(x.q.live(), x.k.live(), x.v.live(), o.live(), mask.list(), attn);
    await call(outs[0]);
    const want = Buffer.from(await outs[0].live().toHost());
    const one = prism.memoryStats('cuda');
    // 64 calls, 16 at a time (each waits on a thread of its own, so how many
    // overlap depends on timing): at most one new buffer for each call in flight.
    for (let round = 0; round < 4; round++) await Promise.all(outs.map(call));
    const after = prism.memoryStats('cuda');
    expect(after.allocations - one.allocations).toBeLessThanOrEqual(outs.length - 1);
    expect(after.workspaceBytes).toBeLessThanOrEqual(outs.length * one.workspaceBytes);
    for (const o of outs) expect(Buffer.from(await o.live().toHost()).equals(want)).toBe(true);
    for (const t of [x.q, x.k, x.v, ...outs]) t.dispose();
    mask.dispose();
  });

  test('releaseCachedMemory frees the idle workspace; the next op allocates again', async () => {
    const x = await inputs(512, 31);
    const mask = await prism.estimate(x.q, x.k, { block: 64 });
    const cached = prism.memoryStats('cuda');
    expect(cached.workspaceBytes).toBeGreaterThan(0);
    expect(cached.workspaceInUseBytes).toBe(0);
    await expect(prism.releaseCachedMemory('cuda')).resolves.toBe(cached.workspaceBytes);
    const released = prism.memoryStats('cuda');
    expect(released.workspaceBytes).toBe(0);
    const out = await prism.attention(x.q, x.k, x.v, mask);
    const again = prism.memoryStats('cuda');
    expect(again.workspaceBytes).toBeGreaterThan(0);
    expect(again.allocations - released.allocations).toBe(2); // the output and one workspace buffer
    for (const t of [x.q, x.k, x.v, out]) t.dispose();
    mask.dispose();
  });

  test('device memory: cudaMemGetInfo figures, and it returns to its level once tensors and cache are freed', async () => {
    const x = await inputs(4096, 41);
    (await prism.attention(x.q, x.k, x.v)).dispose(); // loads the kernel before the baseline
    // Tensors that earlier tests dropped without dispose() are freed by their
    // finalizers whenever the GC runs: collect them now, so that no such free
    // lands between the two readings below.
    await collectGarbage();
    await prism.releaseCachedMemory('cuda');
    const base = prism.memoryStats('cuda');
    expect(base.deviceTotalBytes).toBeGreaterThan(0);
    expect(base.deviceTotalBytes!).toBeLessThanOrEqual(prism.info().devices[0].totalMemory);
    expect(base.deviceFreeBytes).toBeGreaterThan(0);
    expect(base.deviceFreeBytes!).toBeLessThanOrEqual(base.deviceTotalBytes!);
    const big = prism.empty([1, 8, 1 << 20, 64], { device: 'cuda', dtype: 'bfloat16' }); // 1 GiB
    // Read after the allocation with no kernel launched in between (release
    // only waits for the package's stream and trims): a launch may let the
    // driver shrink the local memory an earlier kernel of another test grew
    // (~100 MiB on an H200), which would hide part of the allocation.
    await prism.releaseCachedMemory('cuda');
    const held = prism.memoryStats('cuda');
    expect(held.deviceFreeBytes!).toBeLessThan(base.deviceFreeBytes! - big.byteLength + (64 << 20));
    expect(held.tensorBytes - base.tensorBytes).toBe(big.byteLength);
    const out = await prism.attention(x.q, x.k, x.v);
    big.dispose();
    out.dispose();
    await prism.releaseCachedMemory('cuda');
    const after = prism.memoryStats('cuda');
    expect(after.deviceFreeBytes!).toBeGreaterThanOrEqual(base.deviceFreeBytes! - (16 << 20));
    for (const t of [x.q, x.k, x.v]) t.dispose();
  });
});

// What the calling thread must never do on a GPU: wait for the GPU (a page
// table copied from pageable memory, an enqueue that fails part way), or
// create CUDA contexts on devices the process never uses (info()). And what
// the addon must refuse from JS: an External that none of its tensors made.
// The waits are shown behind a host wait of DELAY_MS on a caller's stream:
// a call that waited for it would hold the event loop that long. (The page
// table case guards the pinned staging: on an H200 the pageable copy it
// replaced did not wait either, at 64 KiB or 1 MiB, though CUDA allows it to.)
import { spawnSync } from 'child_process';
import * as path from 'path';
import * as prism from '../lib/index';
import type { Tensor } from '../lib/index';
import { native } from '../lib/native';
import { prefillVarlen } from '../lib/varlen';
import { values } from './helpers/data';
import { describeGpu, whenNative } from './helpers/gpu';

const root = path.resolve(__dirname, '..');
const T = () => native().testing;
const DELAY_MS = 1000;
// Far below DELAY_MS, far above a busy test machine's timer jitter (and a GC pause).
const MAX_STALL_MS = 300;

/** Runs work() and reports the longest the event loop went without a turn meanwhile. */
async function withStallWatch<R>(work: () => Promise<R>): Promise<{ value: R; stallMs: number }> {
  let last = performance.now();
  let worst = 0;
  const tick = () => {
    const now = performance.now();
    worst = Math.max(worst, now - last);
    last = now;
  };
  const timer = setInterval(tick, 2);
  try {
    const value = await work();
    tick();
    return { value, stallMs: worst };
  } finally {
    clearInterval(timer);
  }
}

const bf16 = (n: number, seed: number) => prism.toBFloat16(values(n, seed));

whenNative(describe, 'native argument guards')('native argument guards', () => {
  test('an External from elsewhere is refused by the tensor constructor (child process)', () => {
    const script = `
      const { native } = require(process.argv[1]);
      const n = native();
      try {
        new n.Tensor(-1, 0, [4], 0, n.testing.foreignExternal());
        console.log('accepted');
      } catch (e) {
        console.log(e.constructor.name + ': ' + e.message);
      }`;
    const r = spawnSync(process.execPath, ['-e', script, path.join(root, 'dist/lib/native.js')], { encoding: 'utf8', timeout: 60_000 });
    expect(r.status).toBe(0);
    expect(r.stdout.trim()).toBe('TypeError: an External that no tensor of this addon made cannot be adopted');
  });
});

describeGpu('the calling thread never waits for the GPU', () => {
  test('info() creates no CUDA context; a tensor then creates the one of its device (child process)', () => {
    const script = `
      const { native } = require(process.argv[1]);
      const n = native();
      const i = n.info();
      const before = i.devices.map((d) => n.testing.primaryContextActive(d.index));
      const t = new n.Tensor(0, 2, [1024], 0);
      const after = i.devices.map((d) => n.testing.primaryContextActive(d.index));
      console.log(JSON.stringify({ devices: i.devices.length, paths: i.devices.map((d) => d.attentionPath), before, after }));`;
    const r = spawnSync(process.execPath, ['-e', script, path.join(root, 'dist/lib/native.js')], { encoding: 'utf8', timeout: 120_000 });
    expect({ status: r.status, stderr: r.status === 0 ? '' : r.stderr }).toEqual({ status: 0, stderr: '' });
    const got = JSON.parse(r.stdout) as { devices: number; paths: string[]; before: boolean[]; after: boolean[] };
    expect(got.devices).toBeGreaterThan(0);
    expect(got.paths.every((p) => p === 'sm90-wgmma' || p === 'sm80-mma')).toBe(true);
    expect(got.before).toEqual(got.before.map(() => false));
    // The probe sees contexts: the tensor made device 0's, and only that one.
    expect(got.after).toEqual(got.after.map((_, i) => i === 0));
  });

  test('a paged prefill behind a host wait on its stream: the page table copy does not hold the event loop', async () => {
    // 16 sequences of 262144 keys in pages of 16: a page table of 262144 entries
    // (1 MiB), over a pool of 4096 pages that the sequences share (as prefixes do).
    const [hq, hkv, d, pageSize, seqs, nk, nq] = [2, 1, 64, 16, 16, 262144, 64];
    const pagesPerSeq = nk / pageSize;
    const numPages = 4096;
    const table = new Int32Array(seqs * pagesPerSeq);
    for (let i = 0, x = 7; i < table.length; i++) {
      x = (Math.imul(x, 1664525) + 1013904223) >>> 0;
      table[i] = x % numPages;
    }
    const batch = {
      cuSeqlensQ: Array.from({ length: seqs + 1 }, (_, i) => i * nq),
      kvLens: new Array(seqs).fill(nk),
      pageTable: table,
      maxPagesPerSeq: pagesPerSeq,
    };
    const poolShape = [numPages, hkv, pageSize, d] as const;
    const q = await prism.tensor(bf16(hq * seqs * nq * d, 1), { shape: [1, hq, seqs * nq, d], dtype: 'bfloat16', device: 'cuda:0' });
    const k = await prism.tensor(bf16(numPages * hkv * pageSize * d, 2), { shape: poolShape, dtype: 'bfloat16', device: 'cuda:0' });
    const v = await prism.tensor(bf16(numPages * hkv * pageSize * d, 3), { shape: poolShape, dtype: 'bfloat16', device: 'cuda:0' });
    const held: Tensor[] = [q, k, v];
    const stream = T().createStream(0);
    try {
      const want = await prefillVarlen(q, k, v, batch, { block: 128 });
      held.push(want.output);
      const qLate = prism.empty(q.shape, { device: 'cuda:0', dtype: 'bfloat16' });
      held.push(qLate);
      const copied = T().copyAfterDelay(qLate.native, q.native, stream, DELAY_MS);
      const { value: got, stallMs } = await withStallWatch(() => prefillVarlen(qLate, k, v, batch, { block: 128 }, { stream }));
      await copied;
      held.push(got.output);
      expect(stallMs).toBeLessThan(MAX_STALL_MS);
      // It ran after the wait: the query it read was the delayed copy's.
      expect(Buffer.from((await got.output.toHost()).buffer).equals(Buffer.from((await want.output.toHost()).buffer))).toBe(true);
      for (const m of [...(want.masks ?? []), ...(got.masks ?? [])]) m?.dispose();
    } finally {
      T().destroyStream(stream);
      for (const t of held) t.dispose();
    }
  });

  test('an enqueue that fails (device memory exhausted) behind a host wait rejects without holding the event loop', async () => {
    const [h, n, d] = [4, 4096, 64];
    const mk = (seed: number) => prism.tensor(bf16(h * n * d, seed), { shape: [1, h, n, d], dtype: 'bfloat16', device: 'cuda:0' });
    const [q, k, v] = await Promise.all([mk(11), mk(12), mk(13)]);
    const out = prism.empty(q.shape, { device: 'cuda:0', dtype: 'bfloat16' });
    const src = prism.empty([1, 1, 1, 1 << 18], { device: 'cuda:0', dtype: 'float32' });
    const dst = prism.empty([1, 1, 1, 1 << 18], { device: 'cuda:0', dtype: 'float32' });
    const want = await prism.prefill(q, k, v, { block: 128 }, { returnMask: false });
    const stream = T().createStream(0);
    const fillers: Tensor[] = [];
    try {
      // Nothing cached to lend: the prefill's scratch must come from cudaMallocAsync.
      await prism.releaseCachedMemory('cuda:0');
      // Down to 256 bytes: nothing the prefill's scratch needs is left.
      for (let bytes = 2 ** 33; bytes >= 256; ) {
        try {
          fillers.push(prism.empty([1, 1, 1, bytes / 4], { device: 'cuda:0', dtype: 'float32' }));
        } catch {
          bytes /= 2;
        }
      }
      const copied = T().copyAfterDelay(dst.native, src.native, stream, DELAY_MS);
      const { value: outcome, stallMs } = await withStallWatch(() =>
        prism.prefill(q, k, v, { block: 128 }, { out, returnMask: false, stream }).then(
          () => 'resolved',
          (e: Error) => e.message,
        ),
      );
      await copied;
      expect(outcome).toMatch(/cudaErrorMemoryAllocation/);
      expect(stallMs).toBeLessThan(MAX_STALL_MS);
      // With the memory back, the same call on the same stream gives the same output.
      for (const t of fillers.splice(0)) t.dispose();
      const again = await prism.prefill(q, k, v, { block: 128 }, { out, returnMask: false, stream });
      expect(Buffer.from((await again.output.toHost()).buffer).equals(Buffer.from((await want.output.toHost()).buffer))).toBe(true);
    } finally {
      for (const t of fillers) t.dispose();
      T().destroyStream(stream);
      for (const t of [q, k, v, out, src, dst, want.output]) t.dispose();
      // Hand the device's memory back for the suites that run after this one.
      await prism.releaseCachedMemory('cuda:0');
    }
  });
});

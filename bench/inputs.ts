// The inputs of one benchmark length: Q/K/V on the device of the single-device
// runs and, with --devices, each device's heads (the shards of the sharded
// prefill). The structured workload is generated one kv-head group at a time
// (a kv head and its query heads), on worker threads when there are cores to
// spare, and each group is written into its place in the device tensors
// (Tensor.write(data, elementOffset)): no host array holds a whole tensor, so
// 32 heads x 1M tokens x 128 (2^32 elements, more than one typed array) works.
// The bytes are those of structuredWorkload() with the same options, however
// they are made.

import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { Worker } from 'worker_threads';
import type { DType } from '../lib/types';
import { StructuredGenerator, type StructuredGroup, type StructuredWorkloadOptions } from '../lib/workloads/structured';
import type { Workload, WorkloadShape } from '../lib/workloads/index';
import type * as Lib from './lib';
import type { HeadShard, ShardsLike, TensorLike } from './lib';

/** The most elements one host array holds here. */
export const MAX_HOST_ELEMENTS = 2 ** 32 - 1;

type Device = 'cpu' | `cuda:${number}`;
type Shape = [number, number, number, number];

export interface BenchInputs {
  shape: WorkloadShape;
  dtype: DType;
  /** Q/K/V on the device of the single-device runs */
  q: TensorLike;
  k: TensorLike;
  v: TensorLike;
  /** each device's heads, with --devices */
  shards: ShardsLike | null;
  /** how the inputs were made: in kv-head groups uploaded part by part, or as whole arrays */
  mode: 'parts' | 'whole';
  /** worker threads that generated them (0: the main thread, or not generated) */
  threads: number;
  /** milliseconds to generate (or take) and upload everything */
  ms: number;
  /** frees every tensor (idempotent) */
  dispose(): void;
}

/** Worker threads by default: the CPUs but one, at most 8. */
export function defaultGenThreads(): number {
  return Math.max(0, Math.min(8, os.cpus().length - 1));
}

/**
 * The structured workload's kv-head groups: from up to `threads` worker
 * threads (in completion order) when the compiled worker (dist/bench/gen-worker.js)
 * is there, else made on this thread in order. `threads` says how many make them.
 */
export function structuredGroups(opts: StructuredWorkloadOptions, threads: number): { threads: number; groups: AsyncGenerator<StructuredGroup> } {
  const batch = opts.batch ?? 1;
  const hkv = opts.hkv ?? 8;
  const jobs: Array<{ batch: number; kvHead: number }> = [];
  for (let b = 0; b < batch; b++) for (let g = 0; g < hkv; g++) jobs.push({ batch: b, kvHead: g });
  const file = path.join(__dirname, 'gen-worker.js');
  const n = fs.existsSync(file) ? Math.min(threads, jobs.length) : 0;
  return { threads: Math.max(0, n), groups: n > 0 ? fromWorkers(file, opts, jobs, n) : inThread(opts, jobs) };
}

async function* inThread(opts: StructuredWorkloadOptions, jobs: Array<{ batch: number; kvHead: number }>): AsyncGenerator<StructuredGroup> {
  const gen = new StructuredGenerator(opts);
  for (const j of jobs) yield gen.kvGroup(j.batch, j.kvHead);
}

async function* fromWorkers(
  file: string,
  opts: StructuredWorkloadOptions,
  jobs: Array<{ batch: number; kvHead: number }>,
  n: number,
): AsyncGenerator<StructuredGroup> {
  const results: StructuredGroup[] = [];
  let failure: Error | null = null;
  let closing = false;
  let wake: (() => void) | null = null;
  const notify = (): void => {
    const w = wake;
    wake = null;
    w?.();
  };
  let next = 0;
  const workers: Worker[] = [];
  for (let i = 0; i < n; i++) {
    const w = new Worker(file, { workerData: opts });
    w.on('message', (part: StructuredGroup) => {
      results.push(part);
      if (next < jobs.length) w.postMessage(jobs[next++]);
      notify();
    });
    w.on('error', (e: Error) => {
      failure ??= e;
      notify();
    });
    w.on('exit', (code) => {
      if (!closing && code !== 0) failure ??= new Error(`workload generator thread exited with code ${code}`);
      notify();
    });
    workers.push(w);
    w.postMessage(jobs[next++]);
  }
  try {
    for (let got = 0; got < jobs.length; got++) {
      while (results.length === 0 && failure === null) await new Promise<void>((r) => (wake = r));
      if (failure !== null) throw failure;
      yield results.shift()!;
    }
  } finally {
    closing = true;
    await Promise.all(workers.map((w) => w.terminate()));
  }
}

export interface StructuredSpec extends WorkloadShape {
  seed: number;
  dtype: DType;
  ropeLayout?: 'half' | 'interleaved';
}

/** The structured workload on `device` (and its head shards on `devices`), generated and uploaded in kv-head groups. */
export async function buildStructured(
  lib: typeof Lib,
  spec: StructuredSpec,
  device: Device,
  devices: readonly string[] | null,
  threads: number,
  onGroup?: (done: number, total: number) => void,
): Promise<BenchInputs> {
  const t0 = performance.now();
  const { batch, hq, hkv, nq, nk, d, dtype } = spec;
  const G = hq / hkv;
  const opts: StructuredWorkloadOptions = { batch, hq, hkv, seqLen: nk, nq, d, seed: spec.seed, dtype, ...(spec.ropeLayout ? { ropeLayout: spec.ropeLayout } : {}) };
  const plan = devices ? lib.planHeadShards(hq, hkv, devices) : null;
  const total = batch * hkv;
  const made: TensorLike[] = [];
  const disposeAll = (): void => {
    for (const t of made) t.dispose();
  };
  const alloc = (shape: Shape, on: string): TensorLike => {
    const t = lib.empty(shape, { dtype, layout: 'bhnd', device: on as Device });
    made.push(t);
    return t;
  };
  let done = 0;
  try {
    const q = alloc([batch, hq, nq, d], device);
    const k = alloc([batch, hkv, nk, d], device);
    const v = alloc([batch, hkv, nk, d], device);
    const parts = plan?.map((s) => {
      const kh = s.kvHeads[1] - s.kvHeads[0];
      return { s, q: alloc([batch, kh * G, nq, d], s.device), k: alloc([batch, kh, nk, d], s.device), v: alloc([batch, kh, nk, d], s.device) };
    });
    const source = structuredGroups(opts, threads);
    for await (const part of source.groups) {
      const { batch: b, kvHead: g } = part;
      const writes = [
        lib.write(q, part.q, (b * hq + g * G) * nq * d),
        lib.write(k, part.k, (b * hkv + g) * nk * d),
        lib.write(v, part.v, (b * hkv + g) * nk * d),
      ];
      const own = parts?.find((p) => g >= p.s.kvHeads[0] && g < p.s.kvHeads[1]);
      if (own) {
        const kh = own.s.kvHeads[1] - own.s.kvHeads[0];
        const local = g - own.s.kvHeads[0];
        writes.push(
          lib.write(own.q, part.q, (b * kh + local) * G * nq * d),
          lib.write(own.k, part.k, (b * kh + local) * nk * d),
          lib.write(own.v, part.v, (b * kh + local) * nk * d),
        );
      }
      await Promise.all(writes);
      onGroup?.(++done, total);
    }
    const shards = parts ? shardsOf(parts.map((p) => p.s), parts.map((p) => p.q), parts.map((p) => p.k), parts.map((p) => p.v)) : null;
    return { shape: { batch, hq, hkv, nq, nk, d }, dtype, q, k, v, shards, mode: 'parts', threads: source.threads, ms: performance.now() - t0, dispose: disposeAll };
  } catch (e) {
    disposeAll();
    throw e;
  }
}

function shardsOf(shards: HeadShard[], q: TensorLike[], k: TensorLike[], v: TensorLike[]): ShardsLike {
  return {
    shards,
    q,
    k,
    v,
    dispose(): void {
      for (const t of [...q, ...k, ...v]) t.dispose();
    },
  };
}

/** Whole host arrays (random or file workloads) on `device`, and by heads on `devices`. */
export async function fromHost(lib: typeof Lib, wl: Workload, device: Device, devices: readonly string[] | null): Promise<BenchInputs> {
  const t0 = performance.now();
  const s = wl.shape;
  const made: Array<{ dispose(): void }> = [];
  try {
    const mk = async (data: Float32Array | Uint16Array, h: number, n: number): Promise<TensorLike> => {
      const t = await lib.tensor(data, { shape: [s.batch, h, n, s.d], dtype: wl.dtype, layout: wl.layout, device });
      made.push(t);
      return t;
    };
    const q = await mk(wl.q, s.hq, s.nq);
    const k = await mk(wl.k, s.hkv, s.nk);
    const v = await mk(wl.v, s.hkv, s.nk);
    let shards: ShardsLike | null = null;
    if (devices) {
      const host = (data: Float32Array | Uint16Array, h: number, n: number) => ({
        shape: [s.batch, h, n, s.d] as Shape,
        data,
        dtype: wl.dtype,
        layout: wl.layout,
      });
      shards = await lib.uploadHeadShards(host(wl.q, s.hq, s.nq), host(wl.k, s.hkv, s.nk), host(wl.v, s.hkv, s.nk), devices);
      made.push(shards);
    }
    return {
      shape: { ...s },
      dtype: wl.dtype,
      q,
      k,
      v,
      shards,
      mode: 'whole',
      threads: 0,
      ms: performance.now() - t0,
      dispose(): void {
        for (const t of made) t.dispose();
      },
    };
  } catch (e) {
    for (const t of made) t.dispose();
    throw e;
  }
}

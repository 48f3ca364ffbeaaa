// The library surface the benchmark uses, in one place: device tensors,
// timed estimation and attention, quality measures, workload generators.
// The native addon loads lazily (on the first call that needs it), so
// `prism-bench --help` and argument errors work without a built addon.

import type { DType, EstimateOptions, HostBlockMask, Layout } from '../lib/types';
import type { Info } from '../lib/native';
import { info as libInfo } from '../lib/native';
import { resolveEstimateOptions as libResolve } from '../lib/options';
import { empty as libEmpty, tensor as libTensor, Tensor } from '../lib/tensor';
import {
  BlockMask,
  massRecall as libMassRecall,
  prefill as libPrefill,
  relativeError as libRelativeError,
  timeAttention,
  timeEstimate,
} from '../lib/ops';
import { gatherHeads, planHeadShards as libPlan, prefillSharded, uploadHeadShards as libUpload } from '../lib/sharded';
import type { HeadShard, HeadShards, HostHeads } from '../lib/sharded';
import type { Workload } from '../lib/workloads/index';
import { randomWorkload } from '../lib/workloads/random';
import { structuredWorkload } from '../lib/workloads/structured';

export type WorkloadLike = Workload;
export type TensorLike = Tensor;
export type BlockMaskLike = BlockMask;
export type InfoLike = Info;
export type ShardsLike = HeadShards;
export type { HeadShard, HostBlockMask, HostHeads };

type Shape = [number, number, number, number];
type Device = 'cpu' | `cuda:${number}`;

export interface Timing {
  warmup: number;
  iters: number;
}

export function info(): Info {
  return libInfo();
}

export function resolveEstimateOptions(opts: EstimateOptions, headDim: number): ReturnType<typeof libResolve> {
  return libResolve(opts, headDim);
}

export function generate(
  kind: 'random' | 'structured',
  o: { batch: number; hq: number; hkv: number; nq: number; nk: number; d: number; seed: number; dtype: DType; ropeLayout?: 'half' | 'interleaved' },
): Workload {
  if (kind === 'random') return randomWorkload({ batch: o.batch, hq: o.hq, hkv: o.hkv, nq: o.nq, nk: o.nk, d: o.d, seed: o.seed, dtype: o.dtype });
  return structuredWorkload({ batch: o.batch, hq: o.hq, hkv: o.hkv, seqLen: o.nk, nq: o.nq, d: o.d, seed: o.seed, dtype: o.dtype, ropeLayout: o.ropeLayout });
}

export async function tensor(data: Float32Array | Uint16Array, o: { shape: [number, number, number, number]; dtype: DType; layout: Layout; device: 'cpu' | `cuda:${number}` }): Promise<Tensor> {
  return libTensor(data, { shape: o.shape, dtype: o.dtype, layout: o.layout, device: o.device });
}

/** A zero-filled tensor. */
export function empty(shape: Shape, o: { dtype: DType; layout: Layout; device: Device }): Tensor {
  return libEmpty(shape, { dtype: o.dtype, layout: o.layout, device: o.device });
}

/** Writes `data` to elements [offset, offset + data.length) of `t`. */
export async function write(t: Tensor, data: Float32Array | Uint16Array, offset: number): Promise<void> {
  await t.write(data, offset);
}

export function planHeadShards(hq: number, hkv: number, devices: readonly string[]): HeadShard[] {
  return libPlan(hq, hkv, devices as Device[]);
}

export async function uploadHeadShards(q: HostHeads, k: HostHeads, v: HostHeads, devices: readonly string[]): Promise<HeadShards> {
  return libUpload(q, k, v, { devices: devices as Device[] });
}

/** Estimation run warmup + iters times; the mask of the last run and the per-run ms. */
export async function timedEstimate(q: Tensor, k: Tensor, opts: EstimateOptions, timing: Timing): Promise<{ mask: BlockMask; times: number[] }> {
  const { mask, timesMs } = await timeEstimate(q, k, opts, timing);
  return { mask, times: [...timesMs] };
}

/** Attention (mask null = dense) run warmup + iters times; the output and the per-run ms. */
export async function timedAttention(q: Tensor, k: Tensor, v: Tensor, mask: BlockMask | null, timing: Timing): Promise<{ out: Tensor; times: number[] }> {
  const { output, timesMs } = await timeAttention(q, k, v, mask, {}, timing);
  return { out: output, times: [...timesMs] };
}

/** Untimed calls before prefill()'s wall time is measured: enough for V8 to compile the host path. */
const HOST_WARMUP_CALLS = 500;
const HOST_WARMUP_MS = 1000;

/**
 * prefill() as a server calls it, warmup + iters times: the output reused, no
 * mask returned. Per run: wall time from the call to the resolution, and the
 * GPU time the call reports (estimation + attention). Before the warm-up runs,
 * up to HOST_WARMUP_CALLS more untimed calls (at most HOST_WARMUP_MS): a
 * server calls prefill() thousands of times, so its JS runs JIT-compiled, not
 * interpreted as in the first few calls.
 */
export async function timedPrefill(
  q: Tensor,
  k: Tensor,
  v: Tensor,
  opts: EstimateOptions,
  timing: Timing,
  keepOutput = false,
): Promise<{ apiMs: number[]; gpuMs: number[]; output: Tensor | null }> {
  const out = libEmpty([...q.shape], { dtype: q.dtype, layout: q.layout, device: q.device as 'cpu' });
  const apiMs: number[] = [];
  const gpuMs: number[] = [];
  try {
    const warmStart = performance.now();
    const hostWarmup = q.device === 'cpu' ? 0 : HOST_WARMUP_CALLS; // on the CPU the host path is the work
    for (let i = 0; i < hostWarmup && performance.now() - warmStart < HOST_WARMUP_MS; i++) {
      await libPrefill(q, k, v, opts, { out, returnMask: false });
    }
    for (let i = 0; i < timing.warmup + timing.iters; i++) {
      const t0 = performance.now();
      const r = await libPrefill(q, k, v, opts, { out, returnMask: false });
      const t1 = performance.now();
      if (i >= timing.warmup) {
        apiMs.push(t1 - t0);
        gpuMs.push(r.stats.estimateMs + r.stats.attentionMs);
      }
    }
  } catch (e) {
    out.dispose();
    throw e;
  }
  if (!keepOutput) out.dispose();
  return { apiMs, gpuMs, output: keepOutput ? out : null };
}

/**
 * prefillSharded() over per-device tensor shards as a server loop calls it,
 * warmup + iters times: outputs reused, no masks. Per timed run: wall time
 * from the call to the resolution, and each device's GPU time (estimation +
 * attention). The outputs of the last run are returned (the caller disposes).
 */
export async function timedPrefillSharded(
  shards: HeadShards,
  opts: EstimateOptions,
  timing: Timing,
): Promise<{ wallMs: number[]; deviceMs: number[][]; density: number; outputs: Tensor[] }> {
  const outputs = shards.q.map((t) => libEmpty([...t.shape], { dtype: t.dtype, layout: t.layout, device: t.device as Device }));
  const wallMs: number[] = [];
  const deviceMs: number[][] = [];
  let density = NaN;
  try {
    for (let i = 0; i < timing.warmup + timing.iters; i++) {
      const t0 = performance.now();
      const r = await prefillSharded(shards.q, shards.k, shards.v, opts, { out: outputs, returnMask: false });
      const t1 = performance.now();
      density = r.stats.density;
      if (i >= timing.warmup) {
        wallMs.push(t1 - t0);
        deviceMs.push(r.shards.map((s) => s.stats.estimateMs + s.stats.attentionMs));
      }
    }
  } catch (e) {
    for (const t of outputs) t.dispose();
    throw e;
  }
  return { wallMs, deviceMs, density, outputs };
}

/** The heads of `parts` concatenated on the host. */
export async function gather(parts: readonly Tensor[]): Promise<Float32Array | Uint16Array> {
  return gatherHeads(parts);
}

export async function toHost(t: Tensor): Promise<Float32Array | Uint16Array> {
  return t.toHost();
}

/** Exact mass recall for flat (b, h, r) triplets. */
export async function massRecall(q: Tensor, k: Tensor, mask: BlockMask | null, rows: readonly number[]): Promise<Float32Array> {
  const triplets: Array<[number, number, number]> = [];
  for (let i = 0; i + 2 < rows.length; i += 3) triplets.push([rows[i], rows[i + 1], rows[i + 2]]);
  return libMassRecall(q, k, mask, triplets);
}

export async function relativeError(a: Tensor, b: Tensor): Promise<number> {
  return libRelativeError(a, b);
}

export async function maskDensity(mask: BlockMask): Promise<number> {
  return mask.density();
}

// The paged-vs-packed sweep: one sequence of T tokens, the last C of them as
// queries (prefillVarlen, one sequence), timed over packed K/V (cuSeqlens) and
// over a paged KV cache at each page size and layout (the pages in a seeded
// random order in the pool). Each page size is timed in passes that call the
// packed and the paged prefill one after the other, and its ratio is taken
// against those packed calls; a packed-only run comes first. On a GPU the
// kernels read pages of 64 keys and more in place (the estimation: pages of
// every size) and smaller ones are gathered first. The same kernels over
// the same keys, so the outputs are compared bit for bit.

import type { BenchConfig } from './config';
import { formatSize, libDType } from './args';
import type { KvLayoutName, PagedSweepConfig } from './batch-args';
import { Owned, requestGroups, scatterPages, shuffledPages, summary, timePasses, toF32 } from './batch';
import type { BatchRunContext } from './batch';
import type { PagedSweepResult, PagedSweepRow } from './batch-report';
import { PAGED_TARGET } from './batch-report';
import { MAX_HOST_ELEMENTS } from './inputs';
import * as lib from './lib';
import type { Tensor, TensorData } from '../lib/tensor';
import { prefillVarlen } from '../lib/varlen';
import type { DType } from '../lib/types';

/** Progress steps of a sweep: inputs, packed, one per (layout, page size). */
export function pagedSweepSteps(s: PagedSweepConfig): number {
  return 2 + s.pageSizes.length * s.kvLayouts.length;
}

/** Whether a and b hold the same bits, and the largest |a - b| (0 when identical). */
export function compareOutputs(a: TensorData, b: TensorData, dtype: DType): { identical: boolean; maxAbsDiff: number } {
  if (a.length !== b.length) throw new Error(`outputs of ${a.length} and ${b.length} elements`);
  // compare the raw bits: float32 through its uint32 view, the 16-bit types as they are
  const bits = (x: TensorData): Uint32Array | Uint16Array => (x instanceof Float32Array ? new Uint32Array(x.buffer, x.byteOffset, x.length) : x);
  const ab = bits(a);
  const bb = bits(b);
  let same = true;
  for (let i = 0; i < ab.length && same; i++) same = ab[i] === bb[i];
  if (same) return { identical: true, maxAbsDiff: 0 };
  const af = toF32(a, dtype);
  const bf = toF32(b, dtype);
  let max = 0;
  for (let i = 0; i < af.length; i++) {
    const e = Math.abs(af[i] - bf[i]);
    if (e > max || Number.isNaN(e)) max = Number.isNaN(e) ? Infinity : e;
  }
  return { identical: false, maxAbsDiff: max };
}

export async function runPagedSweep(cfg: BenchConfig, ctx: BatchRunContext, s: PagedSweepConfig): Promise<PagedSweepResult> {
  const { heads: hq, kvHeads: hkv, headDim: d } = cfg;
  const G = hq / hkv;
  const dtype = libDType(cfg.dtype);
  const { total: T, queries: C } = s;
  const maxPool = Math.ceil(T / Math.min(...s.pageSizes)) * Math.min(...s.pageSizes) * hkv * d;
  if (maxPool > MAX_HOST_ELEMENTS) throw new Error(`--paged-sweep: a page pool (${maxPool} elements) is assembled on the host and would exceed one typed array`);
  const timing = { warmup: cfg.warmup, iters: cfg.iters };
  const opts = { ...cfg.estimate, method: 'prism' as const };
  const own = new Owned();
  const mk = (h: number, n: number): Tensor => own.add(lib.empty([1, h, n, d], { dtype, layout: 'bhnd', device: ctx.device }));
  const label = `paged sweep, ${formatSize(C)} of ${formatSize(T)}`;
  const Arr = dtype === 'float32' ? Float32Array : Uint16Array;
  try {
    ctx.progress.next(`${label}: ${cfg.workload} inputs`);
    const q = mk(hq, C);
    const k = mk(hkv, T);
    const v = mk(hkv, T);
    // the keys and values stay on the host, one kv head after the other, to fill each page pool
    const kHost = new Arr(hkv * T * d);
    const vHost = new Arr(hkv * T * d);
    for await (const part of requestGroups(cfg, T, cfg.seed, ctx.genThreads)) {
      const g = part.kvHead;
      const writes = [k.write(part.k, g * T * d), v.write(part.v, g * T * d)];
      for (let j = 0; j < G; j++) {
        const from = (j * T + T - C) * d;
        writes.push(q.write(part.q.subarray(from, from + C * d), (g * G + j) * C * d));
      }
      kHost.set(part.k, g * T * d);
      vHost.set(part.v, g * T * d);
      await Promise.all(writes);
    }

    ctx.progress.next(`${label}: packed K/V (${timing.warmup} warm-up + ${timing.iters} timed)`);
    const outPacked = mk(hq, C);
    let packedDensity = NaN;
    const pk = await timePasses(timing, [
      async () => {
        const res = await prefillVarlen(q, k, v, { cuSeqlensQ: [0, C], cuSeqlensK: [0, T] }, opts, { out: outPacked, returnMask: false });
        packedDensity = res.stats.density;
        return res.stats.estimateMs + res.stats.attentionMs;
      },
    ]);
    const packed = { ...summary(pk.gpu[0], pk.api[0]), density: packedDensity };

    const rows: PagedSweepRow[] = [];
    for (const kvLayout of s.kvLayouts) {
      for (const P of s.pageSizes) {
        ctx.progress.next(`${label}: page size ${P}, ${kvLayout} (${timing.warmup} warm-up + ${timing.iters} timed)`);
        rows.push(await timePaged(cfg, ctx, { q, k, v, kHost, vHost, ref: outPacked, T, C, P, kvLayout, opts, timing }));
      }
    }
    return { ...s, pageSizes: [...s.pageSizes], kvLayouts: [...s.kvLayouts], hq, hkv, d, block: ctx.block, packed, rows, target: { ...PAGED_TARGET } };
  } finally {
    own.dispose();
  }
}

interface PagedCase {
  q: Tensor;
  kHost: TensorData;
  vHost: TensorData;
  k: Tensor;
  v: Tensor;
  /** the packed output (written again by the side-by-side packed calls: the same bits) */
  ref: Tensor;
  T: number;
  C: number;
  P: number;
  kvLayout: KvLayoutName;
  opts: Parameters<typeof prefillVarlen>[4];
  timing: { warmup: number; iters: number };
}

/** One page size in one layout: the pool filled, uploaded, timed, its output compared; everything freed. */
async function timePaged(cfg: BenchConfig, ctx: BatchRunContext, c: PagedCase): Promise<PagedSweepRow> {
  const { heads: hq, kvHeads: hkv, headDim: d } = cfg;
  const dtype = libDType(cfg.dtype);
  const { T, C, P, kvLayout } = c;
  const numPages = Math.ceil(T / P);
  const pageTable = shuffledPages(numPages, cfg.seed + P);
  const own = new Owned();
  try {
    const Arr = dtype === 'float32' ? Float32Array : Uint16Array;
    const kPool = new Arr(numPages * P * hkv * d);
    const vPool = new Arr(numPages * P * hkv * d);
    const shape = { hkv, d, pageSize: P, kvLayout };
    for (let g = 0; g < hkv; g++) {
      scatterPages(kPool, c.kHost.subarray(g * T * d, (g + 1) * T * d), g, shape, pageTable);
      scatterPages(vPool, c.vHost.subarray(g * T * d, (g + 1) * T * d), g, shape, pageTable);
    }
    const poolOpts = { shape: [numPages, hkv, P, d] as [number, number, number, number], dtype, layout: kvLayout === 'NHD' ? ('bnhd' as const) : ('bhnd' as const), device: ctx.device };
    const kp = own.add(await lib.tensor(kPool, poolOpts));
    const vp = own.add(await lib.tensor(vPool, poolOpts));
    const out = own.add(lib.empty([1, hq, C, d], { dtype, layout: 'bhnd', device: ctx.device }));
    const paged = { cuSeqlensQ: [0, C], kvLens: [T], pageTable, maxPagesPerSeq: numPages, kvLayout, pageSize: P };
    let density = NaN;
    // the packed call again in the same passes, so that the ratio compares calls made side by side
    const packedBatch = { cuSeqlensQ: [0, C], cuSeqlensK: [0, T] };
    const t = await timePasses(c.timing, [
      async () => {
        const res = await prefillVarlen(c.q, c.k, c.v, packedBatch, c.opts, { out: c.ref, returnMask: false });
        return res.stats.estimateMs + res.stats.attentionMs;
      },
      async () => {
        const res = await prefillVarlen(c.q, kp, vp, paged, c.opts, { out, returnMask: false });
        density = res.stats.density;
        return res.stats.estimateMs + res.stats.attentionMs;
      },
    ]);
    const side = summary(t.gpu[0], t.api[0]);
    const fig = { ...summary(t.gpu[1], t.api[1]), density };
    const ratio = { gpu: fig.gpuMs / side.gpuMs, api: fig.apiMs / side.apiMs };
    let identical = true;
    let maxAbsDiff = 0;
    for (let h = 0; h < hq; h++) {
      const x = compareOutputs(await out.read(h * C * d, C * d), await c.ref.read(h * C * d, C * d), dtype);
      identical &&= x.identical;
      maxAbsDiff = Math.max(maxAbsDiff, x.maxAbsDiff);
    }
    const withinTarget = P >= PAGED_TARGET.minPageSize ? ratio.gpu <= PAGED_TARGET.ratio : null;
    return { pageSize: P, kvLayout, numPages, paged: fig, packed: { gpuMs: side.gpuMs, apiMs: side.apiMs }, ratio, withinTarget, identical, maxAbsDiff };
  } finally {
    own.dispose();
  }
}

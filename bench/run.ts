// The benchmark runner: for each sequence length, one workload, every method
// on the same device tensors, native timing (median after warm-up), quality
// figures against dense, and everything disposed before the next length.

import * as os from 'os';
import type { BenchConfig, BenchMethod } from './args';
import { formatSize, libDType } from './args';
import type { DeviceReport, LengthResult, MethodResult } from './report';
import { causalFlops, median, recallStats } from './report';
import type { Progress } from './progress';
import { blockGrid, blockRowBegin, blockRowEnd } from '../lib/grid';
import { Rng } from '../lib/rng';
import { convert, loadQkvFiles } from '../lib/workloads/file';
import * as lib from './lib';
import type { BlockMaskLike, TensorLike, WorkloadLike } from './lib';

// --- geometry -------------------------------------------------------------------

/** sum_{x=1..n} min(x, L) for n >= 0 (0 for n <= 0). */
function rampSum(n: number, L: number): number {
  if (n <= 0) return 0;
  if (n <= L) return (n * (n + 1)) / 2;
  return (L * (L + 1)) / 2 + (n - L) * L;
}

/**
 * Causally visible (query, key) token pairs of tile (i, j): query rows of
 * block i sit at absolute positions (Nk - Nq) + r, keys of block j at t, t <= s.
 */
export function tilePairs(i: number, j: number, nqTok: number, nkTok: number, block: number): number {
  const grid = blockGrid(nqTok, nkTok, block);
  const r0 = blockRowBegin(grid, i);
  const r1 = blockRowEnd(grid, i) - 1;
  if (r1 < r0) return 0;
  const j0 = j * block;
  const L = Math.min(nkTok, j0 + block) - j0;
  if (L <= 0) return 0;
  const off = nkTok - nqTok;
  // per row s: min(max(s - j0 + 1, 0), L), s = off + r
  const a = off + r0 - j0 + 1;
  const b = off + r1 - j0 + 1;
  return rampSum(b, L) - rampSum(a - 1, L);
}

/** Pair counts of every tile [nqb, nkb] (0 where not visible). */
export function pairTable(nqTok: number, nkTok: number, block: number): Float64Array {
  const { nq: nqb, nk: nkb } = blockGrid(nqTok, nkTok, block);
  const t = new Float64Array(nqb * nkb);
  for (let i = 0; i < nqb; i++) for (let j = 0; j < nkb; j++) t[i * nkb + j] = tilePairs(i, j, nqTok, nkTok, block);
  return t;
}

/** Visible blocks per (batch, head) slice: key block j visible to i iff j <= i + (nkb - nqb). */
export function visibleBlockCount(nqb: number, nkb: number): number {
  let n = 0;
  for (let i = 0; i < nqb; i++) n += Math.min(i + (nkb - nqb) + 1, nkb);
  return n;
}

/** Sampled (b, h, r) triplets for mass recall, distinct, seeded. */
export function sampleRows(count: number, batch: number, hq: number, nq: number, seed: number): number[] {
  const total = batch * hq * nq;
  const n = Math.min(count, total);
  const rng = Rng.stream(seed, 0x7265); // 're'
  const picked = new Set<number>();
  if (n === total) for (let x = 0; x < total; x++) picked.add(x);
  while (picked.size < n) picked.add(rng.int(total));
  const out: number[] = [];
  for (const x of [...picked].sort((p, q) => p - q)) {
    const r = x % nq;
    const bh = (x - r) / nq;
    out.push(Math.floor(bh / hq), bh % hq, r);
  }
  return out;
}

// --- runner -------------------------------------------------------------------

export interface RunContext {
  progress: Progress;
  /** device for the library ('cpu', 'cuda:0') */
  device: 'cpu' | `cuda:${number}`;
  /** estimation options resolved by the library (block etc.) */
  resolved: { block: number };
}

export interface RunOutput {
  results: LengthResult[];
  notes: string[];
  sources: string[] | null;
}

interface Prepared {
  wl: WorkloadLike;
  seq: number;
}

/** Number of progress steps for a run (for the [i/n] counter). */
function stepsPerLength(cfg: BenchConfig): number {
  return 1 + cfg.methods.length * 2;
}

export async function runBench(cfg: BenchConfig, ctx: RunContext): Promise<RunOutput> {
  const notes: string[] = [];
  const results: LengthResult[] = [];
  let sources: string[] | null = null;
  const lengths = cfg.workload === 'file' ? [0] : cfg.seq;
  ctx.progress.setTotal(lengths.length * stepsPerLength(cfg));

  for (const seq of lengths) {
    const label = cfg.workload === 'file' ? 'file' : `N=${formatSize(seq)}`;
    ctx.progress.next(`${label}: preparing ${cfg.workload} inputs`);
    const prep = prepare(cfg, seq);
    if (cfg.workload === 'file') {
      const s = prep.wl.shape;
      sources = (prep.wl as { sources?: string[] }).sources ?? null;
      // The shape comes from the files: record it in the configuration.
      cfg.seq = [s.nq];
      cfg.batch = s.batch;
      cfg.heads = s.hq;
      cfg.kvHeads = s.hkv;
      cfg.headDim = s.d;
      if (s.nq !== s.nk) notes.push(`file inputs: Nq = ${s.nq} queries over Nk = ${s.nk} keys (chunked prefill).`);
    }
    results.push(await runLength(cfg, ctx, prep, label));
  }
  return { results, notes, sources };
}

function prepare(cfg: BenchConfig, seq: number): Prepared {
  const dtype = libDType(cfg.dtype);
  if (cfg.workload === 'file') {
    // Without --dtype the stored dtype is kept; the CUDA kernels need 16-bit data, so float32 becomes bf16 there.
    let wl = loadQkvFiles({ files: cfg.files, safetensors: cfg.safetensors }, { dtype: cfg.dtypeGiven ? dtype : undefined });
    if (!cfg.dtypeGiven && cfg.backend === 'cuda' && wl.dtype === 'float32') {
      wl = { ...wl, q: convert(wl.q, 'float32', 'bfloat16'), k: convert(wl.k, 'float32', 'bfloat16'), v: convert(wl.v, 'float32', 'bfloat16'), dtype: 'bfloat16' };
    }
    cfg.dtype = wl.dtype === 'bfloat16' ? 'bf16' : wl.dtype === 'float16' ? 'fp16' : 'f32';
    return { wl, seq: wl.shape.nq };
  }
  const shape = { batch: cfg.batch, hq: cfg.heads, hkv: cfg.kvHeads, nq: seq, nk: seq, d: cfg.headDim };
  const wl = lib.generate(cfg.workload, { ...shape, seed: cfg.seed, dtype, ropeLayout: cfg.estimate.ropeLayout });
  return { wl, seq };
}

async function runLength(cfg: BenchConfig, ctx: RunContext, prep: Prepared, label: string): Promise<LengthResult> {
  let wl: WorkloadLike | null = prep.wl;
  const s = { ...wl.shape };
  const dtype = wl.dtype;
  const layout = wl.layout;
  const block = ctx.resolved.block;
  const { nq: nqb, nk: nkb } = blockGrid(s.nq, s.nk, block);
  const visPerSlice = visibleBlockCount(nqb, nkb);
  const denseFlops = causalFlops(s.batch, s.hq, s.nq, s.nk, s.d);
  const timing = { warmup: cfg.warmup, iters: cfg.iters };
  const rows = cfg.recallRows > 0 ? sampleRows(cfg.recallRows, s.batch, s.hq, s.nq, cfg.seed) : null;

  const owned: Array<{ dispose(): void }> = [];
  const methods: MethodResult[] = [];
  try {
    const mk = (data: WorkloadLike['q'], h: number, n: number) =>
      lib.tensor(data, { shape: [s.batch, h, n, s.d] as [number, number, number, number], dtype, layout, device: ctx.device });
    const q = await mk(wl.q, s.hq, s.nq);
    owned.push(q);
    const k = await mk(wl.k, s.hkv, s.nk);
    owned.push(k);
    const v = await mk(wl.v, s.hkv, s.nk);
    owned.push(v);
    // The host copies are no longer needed; let them go before the big allocations.
    wl = null;
    (prep as { wl: WorkloadLike | null }).wl = null;

    let denseOut: TensorLike | null = null;
    let denseTotal: number | null = null;
    const pairs = cfg.methods.some((m) => m !== 'dense') ? pairTable(s.nq, s.nk, block) : null;
    const totalPairs = pairs ? pairs.reduce((a, b) => a + b, 0) : 0;

    for (const method of cfg.methods) {
      if (method === 'dense') {
        ctx.progress.next(`${label} dense: attention (${timing.warmup} warm-up + ${timing.iters} timed)`);
        const { out, times } = await lib.timedAttention(q, k, v, null, timing);
        owned.push(out);
        denseOut = out;
        const attn = median(times);
        denseTotal = attn;
        ctx.progress.next(`${label} dense: recall`);
        const recall = rows ? recallStats(await lib.massRecall(q, k, null, rows)) : null;
        methods.push({
          method, estimationMs: null, attentionMs: attn, totalMs: attn,
          estimationTimesMs: [], attentionTimesMs: times,
          density: 1, pairDensity: 1,
          tflopsEffective: denseFlops / attn / 1e9, tflopsComputed: denseFlops / attn / 1e9,
          speedup: 1, recall, relError: 0, temperatures: null, prefillApiMs: null, prefillGpuMs: null, prefillOverheadMs: null,
        });
        continue;
      }
      methods.push(await runSparse(method, cfg, ctx, { q, k, v }, {
        label, timing, rows, pairs: pairs as Float64Array, totalPairs, nqb, nkb, denseFlops, denseOut, denseTotal,
      }));
    }
    return {
      seq: prep.seq, nq: s.nq, nk: s.nk, batch: s.batch, hq: s.hq, hkv: s.hkv, d: s.d, block,
      nqBlocks: nqb, nkBlocks: nkb, visibleBlocks: visPerSlice * s.batch * s.hq, denseFlops, methods,
    };
  } finally {
    for (const t of owned.reverse()) {
      try {
        t.dispose();
      } catch {
        /* already gone */
      }
    }
  }
}

interface SparseCtx {
  label: string;
  timing: { warmup: number; iters: number };
  rows: number[] | null;
  pairs: Float64Array;
  totalPairs: number;
  nqb: number;
  nkb: number;
  denseFlops: number;
  denseOut: TensorLike | null;
  denseTotal: number | null;
}

async function runSparse(
  method: Exclude<BenchMethod, 'dense'>, cfg: BenchConfig, ctx: RunContext,
  t: { q: TensorLike; k: TensorLike; v: TensorLike }, c: SparseCtx,
): Promise<MethodResult> {
  let mask: BlockMaskLike | null = null;
  let out: TensorLike | null = null;
  try {
    ctx.progress.next(`${c.label} ${method}: estimation + attention (${c.timing.warmup} warm-up + ${c.timing.iters} timed)`);
    const est = await lib.timedEstimate(t.q, t.k, { ...cfg.estimate, method }, c.timing);
    mask = est.mask;
    const att = await lib.timedAttention(t.q, t.k, t.v, mask, c.timing);
    out = att.out;
    const estMs = median(est.times);
    const attnMs = median(att.times);
    const total = estMs + attnMs;
    ctx.progress.next(`${c.label} ${method}: prefill() wall time (${c.timing.warmup} warm-up + ${c.timing.iters} timed)`);
    const pf = await lib.timedPrefill(t.q, t.k, t.v, { ...cfg.estimate, method }, c.timing);

    ctx.progress.next(`${c.label} ${method}: recall and error`);
    const host = await mask.toHost();
    const { pairDensity, temps } = maskFigures(host, c.pairs, c.totalPairs, c.nqb, c.nkb);
    const recall = c.rows ? recallStats(await lib.massRecall(t.q, t.k, mask, c.rows)) : null;
    const relError = c.denseOut ? await lib.relativeError(out, c.denseOut) : null;
    return {
      method,
      estimationMs: estMs,
      attentionMs: attnMs,
      totalMs: total,
      estimationTimesMs: est.times,
      attentionTimesMs: att.times,
      density: await lib.maskDensity(mask),
      pairDensity,
      tflopsEffective: c.denseFlops / total / 1e9,
      tflopsComputed: (c.denseFlops * pairDensity) / attnMs / 1e9,
      speedup: c.denseTotal !== null ? c.denseTotal / total : null,
      recall,
      relError,
      temperatures: temps,
      prefillApiMs: median(pf.apiMs),
      prefillGpuMs: median(pf.gpuMs),
      prefillOverheadMs: median(pf.apiMs.map((x, i) => x - pf.gpuMs[i])),
    };
  } finally {
    out?.dispose();
    mask?.dispose();
  }
}

/** Token-level density, block density and mean temperatures from a host mask. */
export function maskFigures(
  host: { batch: number; heads: number; nq: number; nk: number; mask: Uint8Array; temperatures?: Float32Array },
  pairs: Float64Array, totalPairs: number, nqb: number, nkb: number,
): { pairDensity: number; density: number; temps: { high: number; low: number } | null } {
  if (host.nq !== nqb || host.nk !== nkb) throw new Error(`mask is ${host.nq}x${host.nk} blocks, expected ${nqb}x${nkb}`);
  const slices = host.batch * host.heads;
  let sel = 0;
  let selBlocks = 0;
  let visBlocks = 0;
  for (let bh = 0; bh < slices; bh++) {
    const base = bh * nqb * nkb;
    for (let i = 0; i < nqb; i++) {
      const last = Math.min(i + (nkb - nqb), nkb - 1);
      visBlocks += last + 1;
      for (let j = 0; j <= last; j++) {
        if (host.mask[base + i * nkb + j]) {
          sel += pairs[i * nkb + j];
          selBlocks++;
        }
      }
    }
  }
  let temps: { high: number; low: number } | null = null;
  if (host.temperatures && host.temperatures.length >= 2) {
    let hi = 0;
    let lo = 0;
    const n = host.temperatures.length / 2;
    for (let x = 0; x < n; x++) {
      hi += host.temperatures[2 * x];
      lo += host.temperatures[2 * x + 1];
    }
    temps = { high: hi / n, low: lo / n };
  }
  return {
    pairDensity: totalPairs > 0 ? sel / (totalPairs * slices) : 1,
    density: visBlocks > 0 ? selBlocks / visBlocks : 1,
    temps,
  };
}

// --- device -----------------------------------------------------------------------

/** Device description from the library's info(). */
export function describeDevice(info: lib.InfoLike, backend: 'cuda' | 'cpu', cpuModel: string): DeviceReport {
  const dev = backend === 'cuda' ? info.devices?.[0] : undefined;
  return {
    backend,
    name: dev?.name ?? cpuModel,
    attentionPath: backend === 'cuda' ? dev?.attentionPath ?? 'unknown' : 'cpu',
    cpuThreads: info.cpuThreads ?? 0,
    computeCapability: dev && dev.major !== undefined ? `${dev.major}.${dev.minor ?? 0}` : null,
    multiProcessors: dev?.multiProcessors ?? null,
    totalMemoryBytes: dev?.totalMemory ?? null,
    cudaRuntimeVersion: info.cudaRuntimeVersion ?? null,
    cudaDriverVersion: info.cudaDriverVersion ?? null,
    node: process.version,
    platform: process.platform,
    arch: process.arch,
    loadAverage: Math.round(os.loadavg()[0] * 100) / 100,
  };
}

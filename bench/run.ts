// The benchmark runner: for each sequence length, one workload, every method
// on the same device tensors, native timing (median after warm-up), quality
// figures against dense, and everything disposed before the next length.

import * as os from 'os';
import type { BenchMethod } from './args';
import type { BenchConfig } from './config';
import { formatSize, libDType, UsageError } from './args';
import type { DeviceReport, LengthResult, MethodResult, ShardedMethodResult } from './report';
import { causalFlops, median, recallStats } from './report';
import type { Progress } from './progress';
import { blockGrid, blockRowBegin, blockRowEnd } from '../lib/grid';
import { Rng } from '../lib/rng';
import { convert, loadQkvFiles } from '../lib/workloads/file';
import type { HostBlockMask } from '../lib/types';
import * as lib from './lib';
import type { BlockMaskLike, ShardsLike, TensorLike } from './lib';
import { buildStructured, fromHost, MAX_HOST_ELEMENTS, type BenchInputs } from './inputs';

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

/**
 * Causal (query, key) token pairs per query-block row: `full[i]` is what one
 * key block before the diagonal contributes (every row of block i sees all of
 * it), `diag[i]` what the diagonal block contributes, `total` all visible
 * pairs of one (batch, head) slice.
 */
export function rowPairs(nqTok: number, nkTok: number, block: number): { full: Float64Array; diag: Float64Array; total: number } {
  const grid = blockGrid(nqTok, nkTok, block);
  const off = grid.nk - grid.nq;
  const full = new Float64Array(grid.nq);
  const diag = new Float64Array(grid.nq);
  let total = 0;
  for (let i = 0; i < grid.nq; i++) {
    const rows = Math.max(0, blockRowEnd(grid, i) - blockRowBegin(grid, i));
    full[i] = rows * block;
    diag[i] = tilePairs(i, i + off, nqTok, nkTok, block);
    total += full[i] * (i + off) + diag[i];
  }
  return { full, diag, total };
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
  /** device of the single-device runs ('cpu', 'cuda:0') */
  device: 'cpu' | `cuda:${number}`;
  /** estimation options resolved by the library (block etc.) */
  resolved: { block: number };
  /** worker threads generating the structured workload */
  genThreads: number;
}

export interface RunOutput {
  results: LengthResult[];
  notes: string[];
  sources: string[] | null;
}

type SparseMethod = Exclude<BenchMethod, 'dense'>;

/** Outputs compared bit for bit between the sharded and the single-device prefill up to this many elements. */
const IDENTITY_CHECK_ELEMENTS = 2 ** 30;

/** Number of progress steps for one length (for the [i/n] counter). */
function stepsPerLength(cfg: BenchConfig): number {
  const dense = cfg.methods.includes('dense') ? 2 : 0;
  const sparse = cfg.methods.filter((m) => m !== 'dense').length;
  if (cfg.tauSweep) return 1 + dense + sparse * cfg.tauSweep.length * 2;
  return 1 + dense + sparse * 3 + (cfg.devices ? sparse * 2 : 0);
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
    const prep = await prepare(cfg, ctx, seq, label);
    if (cfg.workload === 'file') {
      const s = prep.inputs.shape;
      sources = prep.sources;
      // The shape comes from the files: record it in the configuration.
      cfg.seq = [s.nq];
      cfg.batch = s.batch;
      cfg.heads = s.hq;
      cfg.kvHeads = s.hkv;
      cfg.headDim = s.d;
      if (s.nq !== s.nk) notes.push(`file inputs: Nq = ${s.nq} queries over Nk = ${s.nk} keys (chunked prefill).`);
    }
    try {
      results.push(await runLength(cfg, ctx, prep.inputs, prep.seq, label));
    } finally {
      prep.inputs.dispose();
    }
  }
  return { results, notes, sources };
}

interface Prepared {
  inputs: BenchInputs;
  seq: number;
  sources: string[] | null;
}

async function prepare(cfg: BenchConfig, ctx: RunContext, seq: number, label: string): Promise<Prepared> {
  const dtype = libDType(cfg.dtype);
  if (cfg.workload === 'file') {
    // Without --dtype the stored dtype is kept; the CUDA kernels need 16-bit data, so float32 becomes bf16 there.
    let wl = loadQkvFiles({ files: cfg.files, safetensors: cfg.safetensors }, { dtype: cfg.dtypeGiven ? dtype : undefined });
    if (!cfg.dtypeGiven && cfg.backend === 'cuda' && wl.dtype === 'float32') {
      wl = { ...wl, q: convert(wl.q, 'float32', 'bfloat16'), k: convert(wl.k, 'float32', 'bfloat16'), v: convert(wl.v, 'float32', 'bfloat16'), dtype: 'bfloat16' };
    }
    cfg.dtype = wl.dtype === 'bfloat16' ? 'bf16' : wl.dtype === 'float16' ? 'fp16' : 'f32';
    if (cfg.devices && cfg.devices.length > wl.shape.hkv) {
      throw new UsageError(`${cfg.devices.length} devices but the files hold ${wl.shape.hkv} kv heads: every device needs at least one`, '--devices');
    }
    const sources = (wl as { sources?: string[] }).sources ?? null;
    return { inputs: await fromHost(lib, wl, ctx.device, cfg.devices), seq: wl.shape.nq, sources };
  }
  const spec = { batch: cfg.batch, hq: cfg.heads, hkv: cfg.kvHeads, nq: seq, nk: seq, d: cfg.headDim, seed: cfg.seed, dtype, ropeLayout: cfg.estimate.ropeLayout };
  if (cfg.workload === 'structured') {
    const onGroup = (done: number, total: number): void => ctx.progress.update(`${label}: structured inputs, kv-head group ${done}/${total} generated and uploaded`);
    return { inputs: await buildStructured(lib, spec, ctx.device, cfg.devices, ctx.genThreads, onGroup), seq, sources: null };
  }
  const n = spec.batch * spec.hq * spec.nq * spec.d;
  if (n > MAX_HOST_ELEMENTS) {
    throw new Error(`--workload random makes whole arrays: q would have ${n} elements, more than one typed array holds (${MAX_HOST_ELEMENTS}); use the structured workload`);
  }
  const wl = lib.generate('random', { ...spec });
  return { inputs: await fromHost(lib, wl, ctx.device, cfg.devices), seq, sources: null };
}

async function runLength(cfg: BenchConfig, ctx: RunContext, inputs: BenchInputs, seq: number, label: string): Promise<LengthResult> {
  const s = inputs.shape;
  const { q, k, v } = inputs;
  const block = ctx.resolved.block;
  const { nq: nqb, nk: nkb } = blockGrid(s.nq, s.nk, block);
  const visPerSlice = visibleBlockCount(nqb, nkb);
  const denseFlops = causalFlops(s.batch, s.hq, s.nq, s.nk, s.d);
  const timing = { warmup: cfg.warmup, iters: cfg.iters };
  const rows = cfg.recallRows > 0 ? sampleRows(cfg.recallRows, s.batch, s.hq, s.nq, cfg.seed) : null;
  const sparseMethods = cfg.methods.filter((m): m is SparseMethod => m !== 'dense');

  const owned: Array<{ dispose(): void }> = [];
  const methods: MethodResult[] = [];
  try {
    let denseOut: TensorLike | null = null;
    let denseTotal: number | null = null;
    const pairs = sparseMethods.length > 0 ? rowPairs(s.nq, s.nk, block) : null;

    if (cfg.methods.includes('dense')) {
      ctx.progress.next(`${label} dense: attention (${timing.warmup} warm-up + ${timing.iters} timed)`);
      const { out, times } = await lib.timedAttention(q, k, v, null, timing);
      owned.push(out);
      denseOut = out;
      const attn = median(times);
      denseTotal = attn;
      ctx.progress.next(`${label} dense: recall`);
      const recall = rows ? recallStats(await lib.massRecall(q, k, null, rows)) : null;
      methods.push({
        method: 'dense', estimationMs: null, attentionMs: attn, totalMs: attn,
        estimationTimesMs: [], attentionTimesMs: times,
        density: 1, pairDensity: 1,
        tflopsEffective: denseFlops / attn / 1e9, tflopsComputed: denseFlops / attn / 1e9,
        speedup: 1, recall, relError: 0, temperatures: null, prefillApiMs: null, prefillGpuMs: null, prefillOverheadMs: null,
      });
    }
    const c: SparseCtx = { label, timing, rows, pairs: pairs!, nqb, nkb, denseFlops, denseOut, denseTotal };
    const result: LengthResult = {
      seq, nq: s.nq, nk: s.nk, batch: s.batch, hq: s.hq, hkv: s.hkv, d: s.d, block,
      nqBlocks: nqb, nkBlocks: nkb, visibleBlocks: visPerSlice * s.batch * s.hq, denseFlops, methods,
      inputs: { mode: inputs.mode, threads: inputs.threads, ms: inputs.ms },
    };

    if (cfg.tauSweep) {
      result.tauSweep = [];
      for (const tau of cfg.tauSweep) {
        for (const method of sparseMethods) {
          const { result: r } = await runSparse(method, { ...cfg.estimate, tauHigh: tau, tauLow: tau }, ctx, inputs, { ...c, label: `${label} tau ${tau}` }, 'none');
          result.tauSweep.push({ ...r, tau });
        }
      }
      return result;
    }

    const sharded: ShardedMethodResult[] = [];
    const compare = inputs.shards !== null && s.batch * s.hq * s.nq * s.d <= IDENTITY_CHECK_ELEMENTS;
    for (const method of sparseMethods) {
      const { result: r, prefillOut } = await runSparse(method, cfg.estimate, ctx, inputs, c, compare ? 'keep' : 'time');
      methods.push(r);
      try {
        if (inputs.shards) sharded.push(await runSharded(method, cfg, ctx, inputs.shards, r, prefillOut, label, timing));
      } finally {
        prefillOut?.dispose();
      }
    }
    if (inputs.shards) {
      const sh = inputs.shards.shards;
      result.sharded = {
        devices: sh.map((x) => x.device),
        kvHeads: sh.map((x) => [x.kvHeads[0], x.kvHeads[1]]),
        queryHeads: sh.map((x) => [x.queryHeads[0], x.queryHeads[1]]),
        methods: sharded,
      };
    }
    return result;
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
  pairs: { full: Float64Array; diag: Float64Array; total: number };
  nqb: number;
  nkb: number;
  denseFlops: number;
  denseOut: TensorLike | null;
  denseTotal: number | null;
}

/**
 * One sparse method: estimation and attention timed apart, then (prefill
 * 'time' or 'keep') prefill() as a server calls it, its output kept for the
 * sharded comparison with 'keep'; then the quality figures.
 */
async function runSparse(
  method: SparseMethod, estimate: BenchConfig['estimate'], ctx: RunContext,
  t: { q: TensorLike; k: TensorLike; v: TensorLike }, c: SparseCtx, prefill: 'none' | 'time' | 'keep',
): Promise<{ result: MethodResult; prefillOut: TensorLike | null }> {
  let mask: BlockMaskLike | null = null;
  let out: TensorLike | null = null;
  let prefillOut: TensorLike | null = null;
  try {
    ctx.progress.next(`${c.label} ${method}: estimation + attention (${c.timing.warmup} warm-up + ${c.timing.iters} timed)`);
    const est = await lib.timedEstimate(t.q, t.k, { ...estimate, method }, c.timing);
    mask = est.mask;
    const att = await lib.timedAttention(t.q, t.k, t.v, mask, c.timing);
    out = att.out;
    const estMs = median(est.times);
    const attnMs = median(att.times);
    const total = estMs + attnMs;
    let pf: { apiMs: number[]; gpuMs: number[] } | null = null;
    if (prefill !== 'none') {
      ctx.progress.next(`${c.label} ${method}: prefill() wall time (${c.timing.warmup} warm-up + ${c.timing.iters} timed)`);
      const r = await lib.timedPrefill(t.q, t.k, t.v, { ...estimate, method }, c.timing, prefill === 'keep');
      pf = r;
      prefillOut = r.output;
    }

    ctx.progress.next(`${c.label} ${method}: recall and error`);
    const host = await mask.toHost({ mask: false });
    const { pairDensity, temps } = selectionFigures(host, c.pairs);
    const recall = c.rows ? recallStats(await lib.massRecall(t.q, t.k, mask, c.rows)) : null;
    const relError = c.denseOut ? await lib.relativeError(out, c.denseOut) : null;
    return {
      result: {
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
        prefillApiMs: pf ? median(pf.apiMs) : null,
        prefillGpuMs: pf ? median(pf.gpuMs) : null,
        prefillOverheadMs: pf ? median(pf.apiMs.map((x, i) => x - pf.gpuMs[i])) : null,
      },
      prefillOut,
    };
  } catch (e) {
    prefillOut?.dispose();
    throw e;
  } finally {
    out?.dispose();
    mask?.dispose();
  }
}

/** prefillSharded() on the shards, timed like prefill(), against the single-device figures of `single`. */
async function runSharded(
  method: SparseMethod, cfg: BenchConfig, ctx: RunContext, shards: ShardsLike, single: MethodResult,
  singleOut: TensorLike | null, label: string, timing: { warmup: number; iters: number },
): Promise<ShardedMethodResult> {
  const devices = shards.shards.map((x) => x.device);
  ctx.progress.next(`${label} ${method}: prefill over ${devices.join(',')} (${timing.warmup} warm-up + ${timing.iters} timed)`);
  const r = await lib.timedPrefillSharded(shards, { ...cfg.estimate, method }, timing);
  try {
    ctx.progress.next(`${label} ${method}: sharded output against one device`);
    let identical: boolean | null = null;
    if (singleOut) {
      const [a, b] = [await lib.gather(r.outputs), await lib.toHost(singleOut)];
      identical = Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(Buffer.from(b.buffer, b.byteOffset, b.byteLength));
    }
    const wallMs = median(r.wallMs);
    const deviceMs = devices.map((_, i) => median(r.deviceMs.map((run) => run[i])));
    const maxDeviceMs = median(r.deviceMs.map((run) => Math.max(...run)));
    return {
      method,
      wallMs,
      wallTimesMs: r.wallMs,
      deviceMs,
      maxDeviceMs,
      density: r.density,
      singleApiMs: single.prefillApiMs,
      singleGpuMs: single.prefillGpuMs,
      speedup: single.prefillApiMs !== null ? single.prefillApiMs / wallMs : null,
      gpuSpeedup: single.prefillGpuMs !== null ? single.prefillGpuMs / maxDeviceMs : null,
      identical,
    };
  } finally {
    for (const t of r.outputs) t.dispose();
  }
}

/**
 * Token-level density and mean temperatures from a host selection's compact
 * rows (no dense mask: at 1M tokens it would be 2^31 bytes). Every key block
 * before a row's diagonal is fully visible to the row's queries; only the
 * diagonal block is partial (the rows' `pairs`).
 */
export function selectionFigures(
  host: Pick<HostBlockMask, 'batch' | 'heads' | 'nq' | 'nk' | 'counts' | 'indices' | 'rowPtr'> & { temperatures?: Float32Array },
  pairs: { full: Float64Array; diag: Float64Array; total: number },
): { pairDensity: number; temps: { high: number; low: number } | null } {
  const nqb = host.nq;
  if (pairs.full.length !== nqb) throw new Error(`selection has ${nqb} query blocks, expected ${pairs.full.length}`);
  const off = host.nk - nqb;
  const slices = host.batch * host.heads;
  let sel = 0;
  for (let r = 0; r < slices * nqb; r++) {
    const i = r % nqb;
    const n = host.counts[r];
    if (n === 0) continue;
    // indices ascending: the diagonal, when selected, is the last one
    const hasDiag = host.indices[host.rowPtr[r] + n - 1] === i + off ? 1 : 0;
    sel += pairs.full[i] * (n - hasDiag) + pairs.diag[i] * hasDiag;
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
  return { pairDensity: pairs.total > 0 ? sel / (pairs.total * slices) : 1, temps };
}

// --- device -----------------------------------------------------------------------

/** Device description from the library's info(): GPU `gpu` (default 0) on the CUDA backend. */
export function describeDevice(info: lib.InfoLike, backend: 'cuda' | 'cpu', cpuModel: string, gpu = 0): DeviceReport {
  const dev = backend === 'cuda' ? info.devices?.[gpu] : undefined;
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

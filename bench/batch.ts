// The ragged-batch and chunked-prefill benchmarks (the paged sweep: paged-sweep.ts).
//
// Ragged batch: requests of the given lengths (Nq_i = Nk_i, request i made with
// seed + i), packed [1, H, total, d] and also held one tensor per request; then
// (a) prefillVarlen over the packed batch, (b) prefill() on each request one
// after the other, (c) dense attentionVarlen over the batch, each timed
// warm-up + iters times (medians), plus the outputs compared.
//
// Chunked prefill: one prompt in a paged KV cache (pages in a seeded random
// order, layout NHD or HND); chunk c's queries against every key up to the
// chunk's end through the page table (prefillVarlen with a paged batch of one
// sequence), against prefill() and dense attention of the whole prompt. The
// cache holds the whole prompt from the start: a chunk reads only its first
// kvLens tokens, so the timings are those of a cache filled as chunks arrive.

import type { BenchConfig } from './config';
import { formatSize, libDType } from './args';
import type { ChunkedBenchConfig, KvLayoutName, RaggedBenchConfig } from './batch-args';
import type { ChunkResult, ChunkedKeySummaries, ChunkedResult, RaggedBatchResult, RaggedSequenceResult, TimedFigure } from './batch-report';
import { MAX_HOST_ELEMENTS, structuredGroups } from './inputs';
import type { Progress } from './progress';
import { median } from './report';
import { visibleBlockCount } from './run';
import * as lib from './lib';
import { fromBFloat16, fromFloat16 } from '../lib/dtype';
import { blockGrid } from '../lib/grid';
import { attention, differenceNorms, prefill } from '../lib/ops';
import { Rng } from '../lib/rng';
import type { Tensor, TensorData } from '../lib/tensor';
import { summarizeKeysVarlen } from '../lib/key-summaries';
import type { NativeTensor } from '../lib/native';
import { attentionVarlen, prefillVarlen } from '../lib/varlen';
import type { DType } from '../lib/types';

type Device = 'cpu' | `cuda:${number}`;

export interface BatchRunContext {
  progress: Progress;
  device: Device;
  /** the estimation block size the library resolved */
  block: number;
  genThreads: number;
}

interface Timing {
  warmup: number;
  iters: number;
}

/** A kv-head group of one request: the group's query heads [G, n, d], its k and v [n, d]. */
interface Group {
  kvHead: number;
  q: TensorData;
  k: TensorData;
  v: TensorData;
}

/** The groups of one request of n tokens: structured (worker threads) or random (whole arrays, sliced). */
export async function* requestGroups(cfg: BenchConfig, n: number, seed: number, threads: number): AsyncGenerator<Group> {
  const { heads: hq, kvHeads: hkv, headDim: d } = cfg;
  const dtype = libDType(cfg.dtype);
  if (cfg.workload === 'random') {
    if (hq * n * d > MAX_HOST_ELEMENTS) throw new Error(`--workload random makes whole arrays: a ${formatSize(n)} request is too large; use the structured workload`);
    const wl = lib.generate('random', { batch: 1, hq, hkv, nq: n, nk: n, d, seed, dtype });
    const G = hq / hkv;
    for (let g = 0; g < hkv; g++) {
      yield { kvHead: g, q: wl.q.subarray(g * G * n * d, (g + 1) * G * n * d), k: wl.k.subarray(g * n * d, (g + 1) * n * d), v: wl.v.subarray(g * n * d, (g + 1) * n * d) };
    }
    return;
  }
  const opts = { batch: 1, hq, hkv, seqLen: n, nq: n, d, seed, dtype, ...(cfg.estimate.ropeLayout ? { ropeLayout: cfg.estimate.ropeLayout } : {}) };
  for await (const part of structuredGroups(opts, threads).groups) yield part;
}

/** Frees what was made, newest first, ignoring tensors already gone. */
export class Owned {
  private readonly items: Array<{ dispose(): void }> = [];
  add<T extends { dispose(): void }>(t: T): T {
    this.items.push(t);
    return t;
  }
  dispose(): void {
    for (const t of this.items.splice(0).reverse()) {
      try {
        t.dispose();
      } catch {
        /* already gone */
      }
    }
  }
}

export function summary(gpu: number[], api: number[]): TimedFigure {
  return { gpuMs: median(gpu), apiMs: median(api), gpuTimesMs: gpu, apiTimesMs: api };
}

/**
 * `calls` (each resolving to its device ms) run one after another per pass,
 * warm-up + iters passes; per call the timed device and wall ms, and the wall
 * ms of each timed pass.
 */
export async function timePasses(timing: Timing, calls: Array<() => Promise<number>>): Promise<{ gpu: number[][]; api: number[][]; pass: number[] }> {
  const gpu = calls.map(() => [] as number[]);
  const api = calls.map(() => [] as number[]);
  const pass: number[] = [];
  for (let it = 0; it < timing.warmup + timing.iters; it++) {
    const p0 = performance.now();
    for (let i = 0; i < calls.length; i++) {
      const t0 = performance.now();
      const g = await calls[i]();
      const t1 = performance.now();
      if (it >= timing.warmup) {
        gpu[i].push(g);
        api[i].push(t1 - t0);
      }
    }
    if (it >= timing.warmup) pass.push(performance.now() - p0);
  }
  return { gpu, api, pass };
}

export function toF32(data: TensorData, dtype: DType): Float32Array {
  if (dtype === 'float32') return data as Float32Array;
  return dtype === 'bfloat16' ? fromBFloat16(data as Uint16Array) : fromFloat16(data as Uint16Array);
}

/** ||a - ref|| / ||ref|| accumulated over parts. */
class RelErr {
  private num = 0;
  private den = 0;
  add([num, den]: readonly [number, number]): void {
    this.num += num;
    this.den += den;
  }
  value(): number {
    if (this.den === 0) return this.num === 0 ? 0 : Infinity;
    return Math.sqrt(this.num / this.den);
  }
}

/**
 * [sum of (a - ref)^2, sum of ref^2] over elements [aOff, aOff + n) of a and
 * [refOff, refOff + n) of ref (both [1, H, N, d] bhnd), computed where the
 * tensors live: on views when both parts start on the 64-byte boundary views
 * take (always so at d 64 and 128), else read to the host. At a million tokens
 * the host path would move and loop over every output element several times.
 */
async function partNorms(a: Tensor, aOff: number, ref: Tensor, refOff: number, n: number): Promise<[number, number]> {
  const perLine = 64 / (a.dtype === 'float32' ? 4 : 2);
  if (aOff % perLine === 0 && refOff % perLine === 0 && a.dtype === ref.dtype) {
    const x = a.view([1, 1, 1, n], { offset: aOff });
    const y = ref.view([1, 1, 1, n], { offset: refOff });
    try {
      return await differenceNorms(x, y);
    } finally {
      x.dispose();
      y.dispose();
    }
  }
  const x = toF32(await a.read(aOff, n), a.dtype);
  const y = toF32(await ref.read(refOff, n), ref.dtype);
  let num = 0;
  let den = 0;
  for (let i = 0; i < n; i++) {
    const e = x[i] - y[i];
    num += e * e;
    den += y[i] * y[i];
  }
  return [num, den];
}

function visibleBlocks(nq: number, nk: number, block: number, hq: number): number {
  const g = blockGrid(nq, nk, block);
  return visibleBlockCount(g.nq, g.nk) * hq;
}

// --- ragged batch -----------------------------------------------------------------

export async function runRaggedBatch(cfg: BenchConfig, ctx: BatchRunContext, r: RaggedBenchConfig): Promise<RaggedBatchResult> {
  const { heads: hq, kvHeads: hkv, headDim: d } = cfg;
  const G = hq / hkv;
  const dtype = libDType(cfg.dtype);
  const total = r.totalTokens;
  const starts = r.lengths.map((_, i) => r.lengths.slice(0, i).reduce((a, b) => a + b, 0));
  const cu = Int32Array.from([...starts, total]);
  const batch = { cuSeqlensQ: cu, cuSeqlensK: cu };
  const timing = { warmup: cfg.warmup, iters: cfg.iters };
  const opts = { ...cfg.estimate, method: 'prism' as const };
  const own = new Owned();
  const mk = (h: number, n: number): Tensor => own.add(lib.empty([1, h, n, d], { dtype, layout: 'bhnd', device: ctx.device }));
  try {
    const label = `batch ${r.lengths.length} requests, ${formatSize(total)} tokens`;
    const qP = mk(hq, total);
    const kP = mk(hkv, total);
    const vP = mk(hkv, total);
    const seqs = r.lengths.map((n) => ({ n, q: mk(hq, n), k: mk(hkv, n), v: mk(hkv, n), out: mk(hq, n) }));
    for (let i = 0; i < seqs.length; i++) {
      const { n, q, k, v } = seqs[i];
      const s0 = starts[i];
      ctx.progress.next(`${label}: ${cfg.workload} inputs of request ${i + 1}/${seqs.length} (${formatSize(n)})`);
      for await (const part of requestGroups(cfg, n, cfg.seed + i, ctx.genThreads)) {
        const g = part.kvHead;
        const writes = [q.write(part.q, g * G * n * d), k.write(part.k, g * n * d), v.write(part.v, g * n * d)];
        for (let j = 0; j < G; j++) writes.push(qP.write(part.q.subarray(j * n * d, (j + 1) * n * d), ((g * G + j) * total + s0) * d));
        writes.push(kP.write(part.k, (g * total + s0) * d), vP.write(part.v, (g * total + s0) * d));
        await Promise.all(writes);
      }
    }

    ctx.progress.next(`${label}: prefillVarlen (${timing.warmup} warm-up + ${timing.iters} timed)`);
    const outP = mk(hq, total);
    let vstats = { density: NaN, estimateMs: 0, attentionMs: 0 };
    const est: number[] = [];
    const att: number[] = [];
    const va = await timePasses(timing, [
      async () => {
        const res = await prefillVarlen(qP, kP, vP, batch, opts, { out: outP, returnMask: false });
        vstats = res.stats;
        est.push(res.stats.estimateMs);
        att.push(res.stats.attentionMs);
        return res.stats.estimateMs + res.stats.attentionMs;
      },
    ]);
    const timed = (xs: number[]): number => median(xs.slice(timing.warmup));

    ctx.progress.next(`${label}: prefill() one request at a time (${timing.warmup} warm-up + ${timing.iters} timed)`);
    const densities = seqs.map(() => NaN);
    const one = await timePasses(
      timing,
      seqs.map((s, i) => async () => {
        const res = await prefill(s.q, s.k, s.v, opts, { out: s.out, returnMask: false });
        densities[i] = res.stats.density;
        return res.stats.estimateMs + res.stats.attentionMs;
      }),
    );

    ctx.progress.next(`${label}: dense attentionVarlen (${timing.warmup} warm-up + ${timing.iters} timed)`);
    const outD = mk(hq, total);
    const de = await timePasses(timing, [
      async () => {
        const o = await attentionVarlen(qP, kP, vP, batch, null, {}, { out: outD });
        return o.timesMs?.[0] ?? NaN;
      },
    ]);

    ctx.progress.next(`${label}: outputs compared`);
    const vsOne = new RelErr();
    for (let i = 0; i < seqs.length; i++) {
      const { n, out } = seqs[i];
      for (let h = 0; h < hq; h++) vsOne.add(await partNorms(outP, (h * total + starts[i]) * d, out, h * n * d, n * d));
    }
    const relErrVsDense = await lib.relativeError(outP, outD);

    const sequences: RaggedSequenceResult[] = seqs.map((s, i) => ({ index: i, length: s.n, gpuMs: median(one.gpu[i]), apiMs: median(one.api[i]), density: densities[i] }));
    const vis = seqs.map((s) => visibleBlocks(s.n, s.n, ctx.block, hq));
    const oneDensity = vis.reduce((a, v, i) => a + v * densities[i], 0) / vis.reduce((a, b) => a + b, 0);
    const varlen = { ...summary(va.gpu[0], va.api[0]), density: vstats.density, estimateMs: timed(est), attentionMs: timed(att) };
    const oneByOne = {
      gpuMs: sequences.reduce((a, s) => a + s.gpuMs, 0),
      apiMs: sequences.reduce((a, s) => a + s.apiMs, 0),
      loopApiMs: median(one.pass),
      density: oneDensity,
      sequences,
    };
    const dense = summary(de.gpu[0], de.api[0]);
    return {
      ...r, lengths: [...r.lengths], hq, hkv, d, block: ctx.block,
      varlen, oneByOne, dense,
      batchSpeedup: { gpu: oneByOne.gpuMs / varlen.gpuMs, api: oneByOne.apiMs / varlen.apiMs },
      speedupVsDense: { gpu: dense.gpuMs / varlen.gpuMs, api: dense.apiMs / varlen.apiMs },
      relErrVsOneByOne: vsOne.value(),
      relErrVsDense,
    };
  } finally {
    own.dispose();
  }
}

// --- chunked prefill ----------------------------------------------------------------

/** Page ids of the prompt's pages in a seeded random order (a cache's pages are anywhere in its pool). */
export function shuffledPages(numPages: number, seed: number): Int32Array {
  const ids = Array.from({ length: numPages }, (_, i) => i);
  return Int32Array.from(Rng.stream(seed, 0x7061676573).shuffle(ids)); // 'pages'
}

/**
 * Copies kv head g's rows (tokens [n, d]) into a page pool of logical shape
 * [numPages, Hkv, pageSize, d]: NHD stores a page as [pageSize, Hkv, d], HND
 * as [Hkv, pageSize, d]; token t goes to slot t % pageSize of page
 * pageTable[t / pageSize].
 */
export function scatterPages(pool: TensorData, rows: TensorData, g: number, shape: { hkv: number; d: number; pageSize: number; kvLayout: KvLayoutName }, pageTable: Int32Array): void {
  const { hkv, d, pageSize: P } = shape;
  const n = rows.length / d;
  for (let t = 0; t < n; t++) {
    const page = pageTable[Math.floor(t / P)];
    const slot = t % P;
    const dst = shape.kvLayout === 'NHD' ? ((page * P + slot) * hkv + g) * d : ((page * hkv + g) * P + slot) * d;
    pool.set(rows.subarray(t * d, (t + 1) * d), dst);
  }
}

/** Two tensors (or both null) hold the same bytes. */
async function sameBits(a: NativeTensor | null, b: NativeTensor | null): Promise<boolean> {
  if (a === null || b === null) return a === b;
  const x = new Uint8Array(await a.toHost());
  const y = new Uint8Array(await b.toHost());
  return x.length === y.length && x.every((v, i) => v === y[i]);
}

export async function runChunked(cfg: BenchConfig, ctx: BatchRunContext, c: ChunkedBenchConfig): Promise<ChunkedResult> {
  const { heads: hq, kvHeads: hkv, headDim: d } = cfg;
  const G = hq / hkv;
  const dtype = libDType(cfg.dtype);
  const { total: T, chunk: C, pageSize: P } = c;
  const numPages = Math.ceil(T / P);
  const poolElements = numPages * P * hkv * d;
  if (poolElements > MAX_HOST_ELEMENTS) throw new Error(`--chunked: the page pool (${poolElements} elements) is assembled on the host and would exceed one typed array`);
  const pageTable = shuffledPages(numPages, cfg.seed);
  const chunks = Array.from({ length: c.chunks }, (_, i) => ({ index: i, start: i * C, len: Math.min(C, T - i * C) }));
  const timing = { warmup: cfg.warmup, iters: cfg.iters };
  const opts = { ...cfg.estimate, method: 'prism' as const };
  const own = new Owned();
  const mk = (h: number, n: number): Tensor => own.add(lib.empty([1, h, n, d], { dtype, layout: 'bhnd', device: ctx.device }));
  const label = `chunked ${formatSize(T)} in ${formatSize(C)} chunks`;
  try {
    ctx.progress.next(`${label}: ${cfg.workload} inputs and the page pool`);
    const q = mk(hq, T);
    const k = mk(hkv, T);
    const v = mk(hkv, T);
    const qc = chunks.map((x) => ({ q: mk(hq, x.len), out: mk(hq, x.len) }));
    const Arr = dtype === 'float32' ? Float32Array : Uint16Array;
    const kPool = new Arr(poolElements);
    const vPool = new Arr(poolElements);
    for await (const part of requestGroups(cfg, T, cfg.seed, ctx.genThreads)) {
      const g = part.kvHead;
      const writes = [q.write(part.q, g * G * T * d), k.write(part.k, g * T * d), v.write(part.v, g * T * d)];
      for (const x of chunks) {
        for (let j = 0; j < G; j++) {
          const from = (j * T + x.start) * d;
          writes.push(qc[x.index].q.write(part.q.subarray(from, from + x.len * d), (g * G + j) * x.len * d));
        }
      }
      scatterPages(kPool, part.k, g, { hkv, d, pageSize: P, kvLayout: c.kvLayout }, pageTable);
      scatterPages(vPool, part.v, g, { hkv, d, pageSize: P, kvLayout: c.kvLayout }, pageTable);
      await Promise.all(writes);
    }
    const poolOpts = { shape: [numPages, hkv, P, d] as [number, number, number, number], dtype, layout: c.kvLayout === 'NHD' ? ('bnhd' as const) : ('bhnd' as const), device: ctx.device };
    const kp = own.add(await lib.tensor(kPool, poolOpts));
    const vp = own.add(await lib.tensor(vPool, poolOpts));

    ctx.progress.next(`${label}: ${c.chunks} prefillVarlen calls over the page table (${timing.warmup} warm-up + ${timing.iters} timed)`);
    const densities = chunks.map(() => NaN);
    const pagedBatch = (x: { start: number; len: number }) => ({
      cuSeqlensQ: [0, x.len], kvLens: [x.start + x.len], pageTable, maxPagesPerSeq: numPages, kvLayout: c.kvLayout, pageSize: P,
    });
    const estPlain = chunks.map(() => [] as number[]);
    const ch = await timePasses(
      timing,
      chunks.map((x) => async () => {
        const res = await prefillVarlen(qc[x.index].q, kp, vp, pagedBatch(x), opts, { out: qc[x.index].out, returnMask: false });
        densities[x.index] = res.stats.density;
        estPlain[x.index].push(res.stats.estimateMs);
        return res.stats.estimateMs + res.stats.attentionMs;
      }),
    );

    // The same chunks, each estimation reading the key summaries of the
    // previous chunks' full blocks; after each chunk the server's step appends
    // the chunk's new full blocks to the same summaries (allocated once, for
    // the whole prompt; truncated to nothing when a pass starts over).
    ctx.progress.next(`${label}: the chunks again, estimation over key summaries + the append after each chunk (${timing.warmup} warm-up + ${timing.iters} timed)`);
    // Summaries with room for the whole prompt, none valid yet.
    const newSummaries = async () => own.add((await summarizeKeysVarlen(kp, { kvLens: [0], pageTable, maxPagesPerSeq: numPages }, opts, { maxKeys: T }))[0]);
    const ks = await newSummaries();
    const outKs = chunks.map((x) => mk(hq, x.len));
    const estWith = chunks.map(() => [] as number[]);
    const sumMs = chunks.map(() => [] as number[]);
    let sameDensity = true;
    const chKs = await timePasses(
      timing,
      chunks.map((x) => async () => {
        if (x.index === 0) ks.truncate(0);
        const batch = pagedBatch(x);
        const res = await prefillVarlen(qc[x.index].q, kp, vp, batch, opts, { out: outKs[x.index], returnMask: false, keySummaries: [ks] });
        await summarizeKeysVarlen(kp, batch, opts, { into: [ks] });
        sameDensity &&= res.stats.density === densities[x.index];
        estWith[x.index].push(res.stats.estimateMs);
        sumMs[x.index].push(ks.timesMs[0]);
        return res.stats.estimateMs + res.stats.attentionMs + ks.timesMs[0];
      }),
    );

    // The chunks once more, each estimation writing the full key blocks it
    // pools back into its summaries (run.appendKeySummaries): no separate
    // append; the copy is part of the estimation's time.
    ctx.progress.next(`${label}: the chunks again, estimation over key summaries writing its new full blocks back (${timing.warmup} warm-up + ${timing.iters} timed)`);
    const kw = await newSummaries();
    const outKw = chunks.map((x) => mk(hq, x.len));
    const estBack = chunks.map(() => [] as number[]);
    let sameDensityBack = true;
    const chKw = await timePasses(
      timing,
      chunks.map((x) => async () => {
        if (x.index === 0) kw.truncate(0);
        const res = await prefillVarlen(qc[x.index].q, kp, vp, pagedBatch(x), opts, { out: outKw[x.index], returnMask: false, keySummaries: [kw], appendKeySummaries: true });
        sameDensityBack &&= res.stats.density === densities[x.index];
        estBack[x.index].push(res.stats.estimateMs);
        return res.stats.estimateMs + res.stats.attentionMs;
      }),
    );
    const sameSummaries = kw.blocks === ks.blocks && (await sameBits(kw.parts.rows, ks.parts.rows)) && (await sameBits(kw.parts.energies, ks.parts.energies));
    const timed = (xs: number[]) => median(xs.slice(-timing.iters));

    ctx.progress.next(`${label}: one-shot prefill() of ${formatSize(T)} (${timing.warmup} warm-up + ${timing.iters} timed)`);
    const out1 = mk(hq, T);
    let oneDensity = NaN;
    const os1 = await timePasses(timing, [
      async () => {
        const res = await prefill(q, k, v, opts, { out: out1, returnMask: false });
        oneDensity = res.stats.density;
        return res.stats.estimateMs + res.stats.attentionMs;
      },
    ]);

    ctx.progress.next(`${label}: dense attention of ${formatSize(T)} (${timing.warmup} warm-up + ${timing.iters} timed)`);
    const outD = mk(hq, T);
    const de = await timePasses(timing, [
      async () => {
        const o = await attention(q, k, v, null, {}, { out: outD });
        return o.timesMs?.[0] ?? NaN;
      },
    ]);

    ctx.progress.next(`${label}: outputs compared`);
    const vsOne = new RelErr();
    const vsDense = new RelErr();
    let sameOutput = true;
    let sameOutputBack = true;
    for (const x of chunks) {
      for (let h = 0; h < hq; h++) {
        const a = qc[x.index].out;
        const part = h * x.len * d;
        const n = x.len * d;
        vsOne.add(await partNorms(a, part, out1, (h * T + x.start) * d, n));
        vsDense.add(await partNorms(a, part, outD, (h * T + x.start) * d, n));
        // Equal values (a difference of exactly 0), part for part.
        sameOutput &&= (await partNorms(outKs[x.index], part, a, part, n))[0] === 0;
        sameOutputBack &&= (await partNorms(outKw[x.index], part, a, part, n))[0] === 0;
      }
    }
    const oneShotRelErrVsDense = await lib.relativeError(out1, outD);

    const perChunk: ChunkResult[] = chunks.map((x) => ({
      index: x.index, start: x.start, queries: x.len, keys: x.start + x.len,
      gpuMs: median(ch.gpu[x.index]), apiMs: median(ch.api[x.index]), density: densities[x.index],
      estimateMs: timed(estPlain[x.index]), estimateWithSummariesMs: timed(estWith[x.index]), summarizeMs: timed(sumMs[x.index]),
      estimateWriteBackMs: timed(estBack[x.index]),
    }));
    const sum = (f: (x: ChunkResult) => number) => perChunk.reduce((a, x) => a + f(x), 0);
    const estimateMs = sum((x) => x.estimateMs!);
    const estimateWithSummariesMs = sum((x) => x.estimateWithSummariesMs!);
    const summarizeMs = sum((x) => x.summarizeMs!);
    const estimateWriteBackMs = sum((x) => x.estimateWriteBackMs!);
    const keySummaries: ChunkedKeySummaries = {
      estimateMs,
      estimateWithSummariesMs,
      summarizeMs,
      estimateSavedMs: estimateMs - estimateWithSummariesMs,
      estimateSaving: (estimateMs - estimateWithSummariesMs) / estimateMs,
      netSavedMs: estimateMs - estimateWithSummariesMs - summarizeMs,
      gpuMs: chunks.reduce((a, x) => a + median(chKs.gpu[x.index]), 0),
      apiMs: chunks.reduce((a, x) => a + median(chKs.api[x.index]), 0),
      identical: sameDensity && sameOutput,
      estimateWriteBackMs,
      writeBackNetSavedMs: estimateMs - estimateWriteBackMs,
      writeBackGpuMs: chunks.reduce((a, x) => a + median(chKw.gpu[x.index]), 0),
      writeBackApiMs: chunks.reduce((a, x) => a + median(chKw.api[x.index]), 0),
      writeBackIdentical: sameDensityBack && sameOutputBack && sameSummaries,
    };
    const vis = chunks.map((x) => visibleBlocks(x.len, x.start + x.len, ctx.block, hq));
    const chunked = {
      gpuMs: perChunk.reduce((a, x) => a + x.gpuMs, 0),
      apiMs: perChunk.reduce((a, x) => a + x.apiMs, 0),
      loopApiMs: median(ch.pass),
      density: vis.reduce((a, w, i) => a + w * densities[i], 0) / vis.reduce((a, b) => a + b, 0),
    };
    const oneShot = { ...summary(os1.gpu[0], os1.api[0]), density: oneDensity };
    return {
      ...c, hq, hkv, d, block: ctx.block, numPages, calibrate: cfg.estimate.calibrate !== false,
      perChunk, chunked, oneShot,
      dense: summary(de.gpu[0], de.api[0]),
      ratio: { gpu: chunked.gpuMs / oneShot.gpuMs, api: chunked.apiMs / oneShot.apiMs },
      relErrVsOneShot: vsOne.value(),
      relErrVsDense: vsDense.value(),
      oneShotRelErrVsDense,
      keySummaries,
    };
  } finally {
    own.dispose();
  }
}

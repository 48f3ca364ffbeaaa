// Results of the ragged-batch, chunked-prefill and paged-sweep benchmarks:
// their types, the stdout tables and a validator for the JSON sections
// `batch`, `chunked` and `pagedSweep` (the document is the usual prism-bench/1 report with
// `results` empty and these sections added).

import { formatSize } from './args';
import type { ChunkedBenchConfig, KvLayoutName, PagedSweepConfig, RaggedBenchConfig } from './batch-args';
import type { BenchReport } from './report';

/** One timed call, warm-up excluded: device time from the result stats and wall time of the API call (medians, ms). */
export interface TimedFigure {
  /** median device time (CUDA events on the GPU, steady clock on the CPU): estimation + attention from the call's stats */
  gpuMs: number;
  /** median time from the call to its promise's resolution */
  apiMs: number;
  gpuTimesMs: number[];
  apiTimesMs: number[];
}

export interface RaggedSequenceResult {
  index: number;
  length: number;
  /** prefill() of this sequence alone: medians */
  gpuMs: number;
  apiMs: number;
  density: number;
}

export interface RaggedBatchResult extends RaggedBenchConfig {
  hq: number;
  hkv: number;
  d: number;
  block: number;
  /** (a) prefillVarlen over the packed batch, one call */
  varlen: TimedFigure & { density: number; estimateMs: number; attentionMs: number };
  /** (b) the same sequences one by one with prefill(): sums of the per-sequence medians, and the median wall time of the whole loop */
  oneByOne: { gpuMs: number; apiMs: number; loopApiMs: number; density: number; sequences: RaggedSequenceResult[] };
  /** (c) dense causal attention over the batch: attentionVarlen with no masks */
  dense: TimedFigure;
  /** one-by-one time / batch time (> 1: the batch is faster) */
  batchSpeedup: { gpu: number; api: number };
  /** dense time / batch time */
  speedupVsDense: { gpu: number; api: number };
  /** ||O_batch - O_one-by-one|| / ||O_one-by-one|| over every token (0 on the CPU: the same kernels) */
  relErrVsOneByOne: number;
  /** ||O_batch - O_dense|| / ||O_dense|| */
  relErrVsDense: number;
}

export interface ChunkResult {
  index: number;
  /** first query token */
  start: number;
  queries: number;
  /** keys read through the page table (the end of the chunk) */
  keys: number;
  gpuMs: number;
  apiMs: number;
  density: number;
  /** median estimation time of the chunk (stats.estimateMs), without key summaries */
  estimateMs?: number;
  /** the same with the key summaries of the previous chunks (run.keySummaries) */
  estimateWithSummariesMs?: number;
  /** median time of the append after the chunk (summarizeKeysVarlen into the same summaries) */
  summarizeMs?: number;
  /** the estimation with the summaries writing the chunk's new full blocks back (run.appendKeySummaries; the copy included) */
  estimateWriteBackMs?: number;
}

/**
 * The chunks again, each chunk's estimation reading the key summaries of the
 * previous chunks' full blocks, and after each chunk the server's step that
 * appends the chunk's new full blocks to those summaries (timed too); then
 * the chunks once more with the estimation writing the blocks it pools back
 * (run.appendKeySummaries: no separate append). Device times, sums over the
 * chunks of the per-chunk medians. The write-back fields are absent in
 * reports made before it existed.
 */
export interface ChunkedKeySummaries {
  /** estimation without summaries (the plain chunked run) */
  estimateMs: number;
  /** estimation with the summaries */
  estimateWithSummariesMs: number;
  /** the appends */
  summarizeMs: number;
  /** estimateMs - estimateWithSummariesMs: what the estimation saves */
  estimateSavedMs: number;
  /** estimateSavedMs / estimateMs */
  estimateSaving: number;
  /** estimateSavedMs - summarizeMs: what a prompt saves once the appends are paid */
  netSavedMs: number;
  /** the whole chunked prefill with summaries (estimation + attention + appends) */
  gpuMs: number;
  apiMs: number;
  /** every chunk selected what it selected without summaries (same density) and wrote the same output bits */
  identical: boolean;
  /** estimation with the summaries and the write-back (the copy included) */
  estimateWriteBackMs?: number;
  /** estimateMs - estimateWriteBackMs: what a prompt saves with the write-back (there are no appends to pay) */
  writeBackNetSavedMs?: number;
  /** the whole chunked prefill with the write-back (estimation + attention) */
  writeBackGpuMs?: number;
  writeBackApiMs?: number;
  /** the write-back run selected and output what the plain run did, and left the summaries the separate appends left, bit for bit */
  writeBackIdentical?: boolean;
}

export interface ChunkedResult extends ChunkedBenchConfig {
  hq: number;
  hkv: number;
  d: number;
  block: number;
  numPages: number;
  /** calibrated temperatures (each chunk calibrates on its own queries) or fixed ones (--no-calibrate) */
  calibrate: boolean;
  perChunk: ChunkResult[];
  /** sums of the per-chunk medians, median wall time of one pass over the chunks, density over every chunk's visible blocks */
  chunked: { gpuMs: number; apiMs: number; loopApiMs: number; density: number };
  /** prefill() of the whole prompt, one call, packed K/V */
  oneShot: TimedFigure & { density: number };
  /** dense causal attention of the whole prompt */
  dense: TimedFigure;
  /** chunked time / one-shot time (target: at most 1.25) */
  ratio: { gpu: number; api: number };
  /** ||O_chunked - O_one-shot|| / ||O_one-shot|| over every token */
  relErrVsOneShot: number;
  /** ||O_chunked - O_dense|| / ||O_dense|| */
  relErrVsDense: number;
  /** ||O_one-shot - O_dense|| / ||O_dense|| */
  oneShotRelErrVsDense: number;
  /** the chunked run over key summaries (absent in reports made before it existed) */
  keySummaries?: ChunkedKeySummaries;
}

export interface PagedSweepRow {
  pageSize: number;
  kvLayout: KvLayoutName;
  numPages: number;
  /** prefillVarlen over the page table (the gather of the pages included in the device time) */
  paged: TimedFigure & { density: number };
  /** medians of the packed calls made in the same passes (packed, paged, packed, paged, ...) */
  packed: { gpuMs: number; apiMs: number };
  /** paged time / packed time of the same passes */
  ratio: { gpu: number; api: number };
  /** ratio.gpu within the target; null below its smallest page size (the slowdown is only reported) */
  withinTarget: boolean | null;
  /** the paged output has the packed output's bits */
  identical: boolean;
  /** max |O_paged - O_packed| (0 when identical) */
  maxAbsDiff: number;
}

export interface PagedSweepResult extends PagedSweepConfig {
  hq: number;
  hkv: number;
  d: number;
  block: number;
  /** prefillVarlen over packed K/V (cuSeqlens), the same queries and keys, timed alone before the page sizes */
  packed: TimedFigure & { density: number };
  /** one per layout and page size, layouts outermost */
  rows: PagedSweepRow[];
  target: { minPageSize: number; ratio: number };
}

export type BatchBenchReport = BenchReport & { batch: RaggedBatchResult | null; chunked: ChunkedResult | null; pagedSweep: PagedSweepResult | null };

/** The chunked-prefill target: total over chunks within 25% of the one-shot prefill. */
export const CHUNKED_TARGET_RATIO = 1.25;
/** The ragged-batch target for many short sequences (8x4k): the batch at least 2x faster than one by one. */
export const BATCH_TARGET_SPEEDUP = 2;
/** The paged-cache target: pages of 64 tokens or more within 1.10x of packed K/V (device time); smaller pages: correct, slowdown reported. */
export const PAGED_TARGET = Object.freeze({ minPageSize: 64, ratio: 1.1 });

function ms(x: number): string {
  if (!Number.isFinite(x)) return '-';
  if (x >= 1000) return x.toFixed(0);
  if (x >= 100) return x.toFixed(1);
  if (x >= 1) return x.toFixed(2);
  return x.toFixed(3);
}

const pct = (x: number): string => (Number.isFinite(x) ? `${(100 * x).toFixed(1)}%` : '-');
const times = (x: number): string => (Number.isFinite(x) ? `${x.toFixed(2)}x` : '-');
const err = (x: number): string => (Number.isFinite(x) ? x.toExponential(2) : '-');

function table(head: string[], rows: string[][]): string {
  const w = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  const line = (r: string[]): string => r.map((c, i) => (i === 0 ? c.padEnd(w[i]) : c.padStart(w[i]))).join('  ').trimEnd();
  return [line(head), ...rows.map(line)].join('\n') + '\n';
}

export function formatBatchTable(r: RaggedBatchResult): string {
  const rows: string[][] = [
    ['prefillVarlen (batch)', ms(r.varlen.gpuMs), ms(r.varlen.apiMs), pct(r.varlen.density), '1.00x', times(r.speedupVsDense.gpu)],
    ['prefill() one by one', ms(r.oneByOne.gpuMs), ms(r.oneByOne.apiMs), pct(r.oneByOne.density), times(r.oneByOne.gpuMs / r.varlen.gpuMs), times(r.dense.gpuMs / r.oneByOne.gpuMs)],
    ['dense (attentionVarlen)', ms(r.dense.gpuMs), ms(r.dense.apiMs), '100.0%', times(r.dense.gpuMs / r.varlen.gpuMs), '1.00x'],
  ];
  let out = table(['ragged batch', 'gpu ms', 'api ms', 'density', 'vs batch', 'vs dense'], rows);
  out +=
    `batch vs one by one: ${times(r.batchSpeedup.gpu)} (device time), ${times(r.batchSpeedup.api)} (API wall time; the loop itself: ${ms(r.oneByOne.loopApiMs)} ms); ` +
    `speedup over dense: ${times(r.speedupVsDense.gpu)} (device), ${times(r.speedupVsDense.api)} (wall)\n`;
  out += `relative error: batch vs one by one ${err(r.relErrVsOneByOne)}, batch vs dense ${err(r.relErrVsDense)}\n`;
  out += '\n' + table(
    ['seq', 'length', 'gpu ms', 'api ms', 'density'],
    r.oneByOne.sequences.map((s) => [String(s.index), formatSize(s.length), ms(s.gpuMs), ms(s.apiMs), pct(s.density)]),
  );
  return out;
}

export function formatChunkedTable(r: ChunkedResult): string {
  const rows: string[][] = [
    [`chunked (${r.chunks} x ${formatSize(r.chunk)}, paged)`, ms(r.chunked.gpuMs), ms(r.chunked.apiMs), pct(r.chunked.density), times(r.ratio.gpu)],
    [`one-shot prefill() ${formatSize(r.total)}`, ms(r.oneShot.gpuMs), ms(r.oneShot.apiMs), pct(r.oneShot.density), '1.00x'],
    ['dense attention', ms(r.dense.gpuMs), ms(r.dense.apiMs), '100.0%', times(r.dense.gpuMs / r.oneShot.gpuMs)],
  ];
  let out = table(['chunked prefill', 'gpu ms', 'api ms', 'density', 'vs one-shot'], rows);
  const verdict = r.ratio.gpu <= CHUNKED_TARGET_RATIO ? 'within' : 'outside';
  out +=
    `chunked / one-shot: ${times(r.ratio.gpu)} (device time, ${verdict} the ${CHUNKED_TARGET_RATIO}x target), ${times(r.ratio.api)} (API wall time; one pass: ${ms(r.chunked.loopApiMs)} ms)\n`;
  out += `relative error: chunked vs one-shot ${err(r.relErrVsOneShot)}; vs dense: chunked ${err(r.relErrVsDense)}, one-shot ${err(r.oneShotRelErrVsDense)}\n`;
  const ks = r.keySummaries;
  if (ks) {
    out +=
      `key summaries: estimation ${ms(ks.estimateMs)} ms without, ${ms(ks.estimateWithSummariesMs)} ms reading the previous chunks' summaries ` +
      `(${pct(ks.estimateSaving)} less, ${ms(ks.estimateSavedMs)} ms); appends after each chunk ${ms(ks.summarizeMs)} ms; ` +
      `net ${ms(ks.netSavedMs)} ms per prompt; chunked with summaries ${ms(ks.gpuMs)} ms (${times(ks.gpuMs / r.oneShot.gpuMs)} of one-shot); ` +
      `${ks.identical ? 'same selections and outputs' : 'SELECTIONS OR OUTPUTS DIFFER'}\n`;
    if (ks.estimateWriteBackMs !== undefined) {
      out +=
        `key summaries written back by the estimation (run.appendKeySummaries, no appends): estimation ${ms(ks.estimateWriteBackMs)} ms with the copy; ` +
        `net ${ms(ks.writeBackNetSavedMs ?? NaN)} ms per prompt; chunked with write-back ${ms(ks.writeBackGpuMs ?? NaN)} ms ` +
        `(${times((ks.writeBackGpuMs ?? NaN) / r.oneShot.gpuMs)} of one-shot); ` +
        `${ks.writeBackIdentical ? 'same selections, outputs and summaries' : 'SELECTIONS, OUTPUTS OR SUMMARIES DIFFER'}\n`;
    }
  }
  const back = ks?.estimateWriteBackMs !== undefined;
  const cols = ks ? ['est ms', 'est ms (summaries)', 'append ms', ...(back ? ['est ms (write-back)'] : [])] : [];
  out += '\n' + table(
    ['chunk', 'queries', 'keys', 'gpu ms', 'api ms', 'density', ...cols],
    r.perChunk.map((c) => [
      String(c.index), formatSize(c.queries), formatSize(c.keys), ms(c.gpuMs), ms(c.apiMs), pct(c.density),
      ...(ks ? [ms(c.estimateMs ?? NaN), ms(c.estimateWithSummariesMs ?? NaN), ms(c.summarizeMs ?? NaN)] : []),
      ...(back ? [ms(c.estimateWriteBackMs ?? NaN)] : []),
    ]),
  );
  return out;
}

export function formatPagedSweepTable(r: PagedSweepResult): string {
  const t = r.target;
  const rows: string[][] = [['packed K/V (cuSeqlens)', '-', ms(r.packed.gpuMs), ms(r.packed.apiMs), '1.00x', '1.00x', pct(r.packed.density), 'reference', '']];
  for (const x of r.rows) {
    const verdict = x.withinTarget === null ? 'no target' : x.withinTarget ? `within ${t.ratio.toFixed(2)}x` : `outside ${t.ratio.toFixed(2)}x`;
    rows.push([
      `paged ${x.kvLayout}, page ${x.pageSize}`, String(x.numPages), ms(x.paged.gpuMs), ms(x.paged.apiMs), times(x.ratio.gpu), times(x.ratio.api),
      pct(x.paged.density), x.identical ? 'identical' : `max |diff| ${err(x.maxAbsDiff)}`, verdict,
    ]);
  }
  let out = table(['paged vs packed', 'pages', 'gpu ms', 'api ms', 'gpu ratio', 'api ratio', 'density', 'output', 'target'], rows);
  out += 'ratios: paged / packed calls timed in the same passes (packed, paged, packed, ...); the packed row: packed calls timed alone first\n';
  out += `(target: page size >= ${t.minPageSize} within ${t.ratio.toFixed(2)}x of packed (device time); smaller pages: correct, slowdown reported)\n`;
  return out;
}

export const BATCH_LEGEND =
  'gpu ms: device time of the call (estimation + attention from its stats; CUDA events on a GPU), median after warm-up; ' +
  'api ms: wall time from the call to its resolution. One by one / chunked: sums of the per-call medians. ' +
  'density: selected / visible (causal) blocks.\n';

// --- validation ---------------------------------------------------------------

type Check = (v: unknown) => boolean;
const isNum: Check = (v) => typeof v === 'number' && Number.isFinite(v);
const isPos: Check = (v) => isNum(v) && (v as number) > 0;
const isInt: Check = (v) => Number.isSafeInteger(v);
const isDensity: Check = (v) => isNum(v) && (v as number) > 0 && (v as number) <= 1;
const isErr: Check = (v) => isNum(v) && (v as number) >= 0;
const isTimes: Check = (v) => Array.isArray(v) && v.length > 0 && v.every(isPos);

function check(obj: unknown, where: string, fields: Record<string, Check>, errors: string[]): boolean {
  if (typeof obj !== 'object' || obj === null) {
    errors.push(`${where}: expected an object`);
    return false;
  }
  const o = obj as Record<string, unknown>;
  for (const [k, c] of Object.entries(fields)) if (!c(o[k])) errors.push(`${where}.${k}: bad value ${JSON.stringify(o[k])}`);
  return true;
}

const TIMED: Record<string, Check> = { gpuMs: isPos, apiMs: isPos, gpuTimesMs: isTimes, apiTimesMs: isTimes };
const pair = (w: string, errors: string[]) => (v: unknown): boolean => check(v, w, { gpu: isPos, api: isPos }, errors);

/** Problems in the `batch`, `chunked` and `pagedSweep` sections of a batch report (empty: valid). */
export function validateBatchSections(doc: { batch?: unknown; chunked?: unknown; pagedSweep?: unknown }): string[] {
  const errors: string[] = [];
  if (doc.batch === undefined && doc.chunked === undefined && doc.pagedSweep === undefined) return ['$: neither a batch, a chunked nor a pagedSweep section'];
  if (doc.batch !== undefined && doc.batch !== null) {
    const w = '$.batch';
    const b = doc.batch as RaggedBatchResult;
    if (check(b, w, {
      preset: (v) => v === 'mixed' || v === '8x4k' || v === 'custom',
      lengths: (v) => Array.isArray(v) && v.length > 0 && v.every((x) => isInt(x) && (x as number) > 0),
      totalTokens: isInt, hq: isInt, hkv: isInt, d: isInt, block: isInt,
      relErrVsOneByOne: isErr, relErrVsDense: isErr,
    }, errors)) {
      if (Array.isArray(b.lengths) && b.totalTokens !== b.lengths.reduce((x, y) => x + y, 0)) errors.push(`${w}.totalTokens: not the sum of the lengths`);
      check(b.varlen, `${w}.varlen`, { ...TIMED, density: isDensity, estimateMs: isErr, attentionMs: isPos }, errors);
      check(b.dense, `${w}.dense`, TIMED, errors);
      if (check(b.oneByOne, `${w}.oneByOne`, { gpuMs: isPos, apiMs: isPos, loopApiMs: isPos, density: isDensity, sequences: Array.isArray }, errors)) {
        if (b.oneByOne.sequences.length !== b.lengths?.length) errors.push(`${w}.oneByOne.sequences: one per length expected`);
        b.oneByOne.sequences.forEach((s, i) => check(s, `${w}.oneByOne.sequences[${i}]`, { index: isInt, length: isInt, gpuMs: isPos, apiMs: isPos, density: isDensity }, errors));
      }
      pair(`${w}.batchSpeedup`, errors)(b.batchSpeedup);
      pair(`${w}.speedupVsDense`, errors)(b.speedupVsDense);
    }
  }
  if (doc.chunked !== undefined && doc.chunked !== null) {
    const w = '$.chunked';
    const c = doc.chunked as ChunkedResult;
    if (check(c, w, {
      total: isInt, chunk: isInt, chunks: isInt, pageSize: isInt, kvLayout: (v) => v === 'NHD' || v === 'HND', numPages: isInt,
      hq: isInt, hkv: isInt, d: isInt, block: isInt, calibrate: (v) => typeof v === 'boolean', perChunk: Array.isArray,
      relErrVsOneShot: isErr, relErrVsDense: isErr, oneShotRelErrVsDense: isErr,
    }, errors)) {
      if (c.perChunk.length !== c.chunks) errors.push(`${w}.perChunk: ${c.chunks} chunks expected`);
      c.perChunk.forEach((x, i) => check(x, `${w}.perChunk[${i}]`, { index: isInt, start: isInt, queries: isInt, keys: isInt, gpuMs: isPos, apiMs: isPos, density: isDensity }, errors));
      check(c.chunked, `${w}.chunked`, { gpuMs: isPos, apiMs: isPos, loopApiMs: isPos, density: isDensity }, errors);
      check(c.oneShot, `${w}.oneShot`, { ...TIMED, density: isDensity }, errors);
      check(c.dense, `${w}.dense`, TIMED, errors);
      pair(`${w}.ratio`, errors)(c.ratio);
      if (c.keySummaries !== undefined) {
        const k = `${w}.keySummaries`;
        check(c.keySummaries, k, {
          estimateMs: isPos, estimateWithSummariesMs: isPos, summarizeMs: isErr, estimateSavedMs: isNum, estimateSaving: isNum, netSavedMs: isNum,
          gpuMs: isPos, apiMs: isPos, identical: (v) => typeof v === 'boolean',
        }, errors);
        c.perChunk.forEach((x, i) => check(x, `${w}.perChunk[${i}]`, { estimateMs: isPos, estimateWithSummariesMs: isPos, summarizeMs: isErr }, errors));
        // the write-back run: optional (reports made before it lack it), all or nothing
        const ks = c.keySummaries as unknown as Record<string, unknown> | null;
        const backFields = ['estimateWriteBackMs', 'writeBackNetSavedMs', 'writeBackGpuMs', 'writeBackApiMs', 'writeBackIdentical'];
        if (ks !== null && typeof ks === 'object' && backFields.some((f) => ks[f] !== undefined)) {
          check(ks, k, {
            estimateWriteBackMs: isPos, writeBackNetSavedMs: isNum, writeBackGpuMs: isPos, writeBackApiMs: isPos, writeBackIdentical: (v) => typeof v === 'boolean',
          }, errors);
          c.perChunk.forEach((x, i) => check(x, `${w}.perChunk[${i}]`, { estimateWriteBackMs: isPos }, errors));
        }
      }
    }
  }
  if (doc.pagedSweep !== undefined && doc.pagedSweep !== null) validatePagedSweep(doc.pagedSweep as PagedSweepResult, errors);
  return errors;
}

const isLayout: Check = (v) => v === 'NHD' || v === 'HND';

function validatePagedSweep(s: PagedSweepResult, errors: string[]): void {
  const w = '$.pagedSweep';
  if (!check(s, w, {
    total: isInt, queries: isInt, hq: isInt, hkv: isInt, d: isInt, block: isInt,
    pageSizes: (v) => Array.isArray(v) && v.length > 0 && v.every((x) => isInt(x) && (x as number) > 0),
    kvLayouts: (v) => Array.isArray(v) && v.length > 0 && v.every(isLayout),
    rows: Array.isArray,
  }, errors)) return;
  if (s.queries > s.total) errors.push(`${w}.queries: more than the tokens`);
  check(s.packed, `${w}.packed`, { ...TIMED, density: isDensity }, errors);
  check(s.target, `${w}.target`, { minPageSize: isInt, ratio: isPos }, errors);
  if (Array.isArray(s.pageSizes) && Array.isArray(s.kvLayouts) && s.rows.length !== s.pageSizes.length * s.kvLayouts.length) {
    errors.push(`${w}.rows: ${s.pageSizes.length * s.kvLayouts.length} rows expected (page sizes x layouts)`);
  }
  s.rows.forEach((x, i) => {
    const r = `${w}.rows[${i}]`;
    if (!check(x, r, {
      pageSize: isInt, kvLayout: isLayout, numPages: isInt, identical: (v) => typeof v === 'boolean', maxAbsDiff: isErr,
      withinTarget: (v) => v === null || typeof v === 'boolean',
    }, errors)) return;
    if (isInt(x.pageSize) && isInt(x.numPages) && x.numPages * x.pageSize < s.total) errors.push(`${r}.numPages: too few pages for ${s.total} tokens`);
    if (x.identical === true && x.maxAbsDiff !== 0) errors.push(`${r}.maxAbsDiff: identical outputs with a difference`);
    check(x.paged, `${r}.paged`, { ...TIMED, density: isDensity }, errors);
    check(x.packed, `${r}.packed`, { gpuMs: isPos, apiMs: isPos }, errors);
    pair(`${r}.ratio`, errors)(x.ratio);
  });
}

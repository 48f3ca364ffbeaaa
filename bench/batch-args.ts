// Command-line options of the ragged-batch, chunked-prefill and paged-sweep
// benchmarks: --batch-workload, --lengths, --chunked, --page-size,
// --kv-layout, --paged-sweep, --paged-tokens. args.ts parses the values (with its size parsers); this file
// holds the presets and checks the combination once the rest of the
// configuration is resolved. Pure functions, no I/O.

import type { ParsedArgs } from './args';
import type { BenchConfig } from './config';
import { UsageError, formatSize } from './args';

/** Named ragged batches: 'mixed' (2K..128K requests, 256K tokens) and '8x4k'. */
export type BatchPreset = 'mixed' | '8x4k';
export const BATCH_PRESETS: readonly BatchPreset[] = ['mixed', '8x4k'];
export type KvLayoutName = 'NHD' | 'HND';

/** The mixed batch with a GPU: one request of each size from 128K down to 2K, and a second 2K; 256K tokens. */
export const MIXED_GPU_LENGTHS: readonly number[] = Object.freeze([131072, 65536, 32768, 16384, 8192, 4096, 2048, 2048]);
/** The mixed batch on the CPU backend (small defaults): 512..2K, 4K tokens. */
export const MIXED_CPU_LENGTHS: readonly number[] = Object.freeze([2048, 1024, 512, 512]);
export const EIGHT_BY_4K: readonly number[] = Object.freeze(new Array<number>(8).fill(4096));

/** The page sizes prefillVarlen takes (lib/paged.ts PAGE_SIZES). */
export const BENCH_PAGE_SIZES: readonly number[] = [16, 32, 64, 128, 256];
export const DEFAULT_PAGE_SIZE = 128;

export interface RaggedBenchConfig {
  /** 'custom' when the lengths came from --lengths */
  preset: BatchPreset | 'custom';
  /** request lengths, queries = keys (Nq_i = Nk_i) */
  lengths: number[];
  /** sum of the lengths */
  totalTokens: number;
}

export interface ChunkedBenchConfig {
  /** prompt length */
  total: number;
  /** tokens per chunk (the last chunk may be shorter) */
  chunk: number;
  chunks: number;
  pageSize: number;
  kvLayout: KvLayoutName;
}

/** The paged sweep's sequence on a GPU: the last 8K of 128K tokens as queries. */
export const PAGED_GPU_TOKENS = Object.freeze({ total: 131072, chunk: 8192 });
/** The paged sweep's sequence on the CPU backend (small defaults): the last 512 of 2K. */
export const PAGED_CPU_TOKENS = Object.freeze({ total: 2048, chunk: 512 });

export interface PagedSweepConfig {
  /** keys (the sequence's length) */
  total: number;
  /** queries: the last `queries` tokens of the sequence */
  queries: number;
  /** page sizes, in the order given */
  pageSizes: number[];
  /** page layouts timed (each page size in each layout) */
  kvLayouts: KvLayoutName[];
}

export interface BatchBenchConfig {
  ragged: RaggedBenchConfig | null;
  chunked: ChunkedBenchConfig | null;
  pagedSweep: PagedSweepConfig | null;
}

/**
 * The batch benchmarks of the command line, checked against the rest of the
 * resolved configuration; null when neither --batch-workload, --lengths nor
 * --chunked was given. Throws UsageError.
 */
export function resolveBatchBench(p: ParsedArgs, cfg: BenchConfig): BatchBenchConfig | null {
  const ragged = p.batchWorkload !== undefined || p.lengths !== undefined;
  const chunked = p.chunked !== undefined;
  const sweep = p.pagedSweep !== undefined;
  if (p.pagedTokens !== undefined && !sweep) throw new UsageError('sets the sequence of the paged sweep: give --paged-sweep LIST', '--paged-tokens');
  if (!ragged && !chunked && !sweep) {
    if (p.pageSize !== undefined) throw new UsageError('sizes the pages of the chunked prefill: give --chunked TOTAL:CHUNK', '--page-size');
    if (p.kvLayout !== undefined) throw new UsageError('lays out the pages of the chunked prefill or the paged sweep: give --chunked TOTAL:CHUNK or --paged-sweep LIST', '--kv-layout');
    return null;
  }
  const flag = ragged ? (p.batchWorkload !== undefined ? '--batch-workload' : '--lengths') : chunked ? '--chunked' : '--paged-sweep';
  const conflicts: Array<[string, unknown]> = [
    ['--seq', p.seq], ['--batch', p.batch], ['--devices', p.devices], ['--tau-sweep', p.tauSweep], ['--methods', p.methods], ['--svg', p.svg],
    ['--recall-rows', p.recallRows], // they report no recall
  ];
  for (const [opt, v] of conflicts) {
    if (v !== undefined) {
      const why = opt === '--seq' || opt === '--batch'
        ? 'the batch benchmarks take their lengths from --batch-workload / --lengths / --chunked / --paged-tokens'
        : `not part of the batch benchmarks (${flag})`;
      throw new UsageError(`${why}; drop this option`, opt);
    }
  }
  if (cfg.workload === 'file') throw new UsageError('the batch benchmarks generate their inputs (structured or random), not from files', flag);
  if (p.batchWorkload !== undefined && p.lengths !== undefined) {
    throw new UsageError('give --batch-workload PRESET or --lengths LIST, not both', '--lengths');
  }
  if (!chunked && p.pageSize !== undefined) {
    const why = sweep ? 'sizes the chunked prefill\'s pages; the paged sweep takes its page sizes from --paged-sweep' : 'applies to the chunked prefill only (--chunked TOTAL:CHUNK)';
    throw new UsageError(why, '--page-size');
  }
  if (!chunked && !sweep && p.kvLayout !== undefined) throw new UsageError('applies to the chunked prefill or the paged sweep only (--chunked / --paged-sweep)', '--kv-layout');
  if (chunked && p.kvLayout === 'both') throw new UsageError('\'both\' applies to the paged sweep only; the chunked prefill takes NHD or HND', '--kv-layout');

  let r: RaggedBenchConfig | null = null;
  if (ragged) {
    let lengths: number[];
    let preset: RaggedBenchConfig['preset'];
    if (p.lengths !== undefined) {
      lengths = [...p.lengths];
      preset = 'custom';
    } else {
      preset = p.batchWorkload!;
      lengths = preset === '8x4k' ? [...EIGHT_BY_4K] : [...(cfg.backend === 'cuda' ? MIXED_GPU_LENGTHS : MIXED_CPU_LENGTHS)];
    }
    r = { preset, lengths, totalTokens: lengths.reduce((a, b) => a + b, 0) };
  }
  let c: ChunkedBenchConfig | null = null;
  if (chunked) {
    const { total, chunk } = p.chunked!;
    if (chunk > total) throw new UsageError(`the chunk (${formatSize(chunk)}) is longer than the prompt (${formatSize(total)})`, '--chunked');
    const pageSize = p.pageSize ?? DEFAULT_PAGE_SIZE;
    if (!BENCH_PAGE_SIZES.includes(pageSize)) throw new UsageError(`${pageSize} is not a page size (${BENCH_PAGE_SIZES.join(', ')})`, '--page-size');
    c = { total, chunk, chunks: Math.ceil(total / chunk), pageSize, kvLayout: (p.kvLayout as KvLayoutName | undefined) ?? 'NHD' };
  }
  return { ragged: r, chunked: c, pagedSweep: sweep ? resolvePagedSweep(p, cfg) : null };
}

function resolvePagedSweep(p: ParsedArgs, cfg: BenchConfig): PagedSweepConfig {
  const pageSizes = [...p.pagedSweep!];
  for (const s of pageSizes) {
    if (!BENCH_PAGE_SIZES.includes(s)) throw new UsageError(`${s} is not a page size (${BENCH_PAGE_SIZES.join(', ')})`, '--paged-sweep');
  }
  const dup = pageSizes.find((s, i) => pageSizes.indexOf(s) !== i);
  if (dup !== undefined) throw new UsageError(`page size ${dup} is given twice`, '--paged-sweep');
  const { total, chunk } = p.pagedTokens ?? (cfg.backend === 'cuda' ? PAGED_GPU_TOKENS : PAGED_CPU_TOKENS);
  if (chunk > total) throw new UsageError(`the queries (${formatSize(chunk)}) outnumber the tokens (${formatSize(total)})`, '--paged-tokens');
  const kvLayouts: KvLayoutName[] = p.kvLayout === 'both' ? ['NHD', 'HND'] : [p.kvLayout ?? 'NHD'];
  return { total, queries: chunk, pageSizes, kvLayouts };
}

/** One line for the header: what the batch benchmarks run. */
export function describeBatchBench(b: BatchBenchConfig): string[] {
  const out: string[] = [];
  if (b.ragged) {
    const name = b.ragged.preset === 'custom' ? '--lengths' : b.ragged.preset;
    out.push(`Ragged batch (${name}): ${b.ragged.lengths.length} requests ${b.ragged.lengths.map(formatSize).join('+')} = ${formatSize(b.ragged.totalTokens)} tokens, Nq_i = Nk_i`);
  }
  if (b.chunked) {
    const c = b.chunked;
    out.push(`Chunked prefill: a ${formatSize(c.total)} prompt in ${c.chunks} chunks of ${formatSize(c.chunk)} over a paged KV cache (page size ${c.pageSize}, ${c.kvLayout})`);
  }
  if (b.pagedSweep) {
    const s = b.pagedSweep;
    out.push(
      `Paged sweep: the last ${formatSize(s.queries)} of ${formatSize(s.total)} tokens as queries, packed K/V vs a paged KV cache ` +
        `(page sizes ${s.pageSizes.join(', ')}; ${s.kvLayouts.join(' and ')})`,
    );
  }
  return out;
}

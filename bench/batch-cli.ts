// prism-bench with --batch-workload / --lengths / --chunked / --paged-sweep:
// runs the ragged batch, the chunked prefill (bench/batch.ts) and / or the
// paged-vs-packed sweep (bench/paged-sweep.ts), prints their tables and writes
// the JSON report (the prism-bench/1 document with `results` empty and the
// `batch`, `chunked` and `pagedSweep` sections).

import * as os from 'os';
import type { BenchConfig } from './config';
import { noGpuReason } from './config';
import { formatSize } from './args';
import { describeBatchBench } from './batch-args';
import { runChunked, runRaggedBatch } from './batch';
import type { BatchBenchReport, ChunkedResult, PagedSweepResult, RaggedBatchResult } from './batch-report';
import { BATCH_LEGEND, BATCH_TARGET_SPEEDUP, CHUNKED_TARGET_RATIO, formatBatchTable, formatChunkedTable, formatPagedSweepTable } from './batch-report';
import { pagedSweepSteps, runPagedSweep } from './paged-sweep';
import { cpuModel, packageVersion, reportHeader, writeFile } from './cli';
import type { InfoLike } from './lib';
import { Progress } from './progress';
import { describeDevice } from './run';
import { defaultGenThreads } from './inputs';

const plural = (n: number, what: string): string => `${n} ${what}${n === 1 ? '' : 's'}`;

interface Io {
  out: (s: string) => void;
  stderr: { isTTY?: boolean; columns?: number; write(s: string): unknown };
}

export async function runBatchCli(cfg: BenchConfig, resolved: { block: number } & Record<string, unknown>, info: InfoLike, argv: string[], io: Io): Promise<number> {
  const bb = cfg.batchBench!;
  const device = describeDevice(info, cfg.backend, cpuModel(), cfg.device ?? 0);
  const threads = device.cpuThreads || os.cpus().length;
  const notes: string[] = [];
  if (cfg.backend === 'cpu') {
    notes.push(
      `No GPU in use${noGpuReason(info)}: the CPU backend (${threads} threads), ${plural(cfg.heads, 'q head')}, ${plural(cfg.kvHeads, 'kv head')}, d ${cfg.headDim}, ` +
        `${plural(cfg.iters, 'timed run')}${bb.ragged?.preset === 'mixed' ? `; the mixed batch takes its small CPU lengths (${bb.ragged.lengths.map(formatSize).join('+')})` : ''}. ` +
        'These are CPU figures, not GPU ones: the CPU backend runs the sequences one after another on every path.',
    );
  }
  if (bb.ragged) {
    notes.push(
      'Ragged batch: request i is made with seed + i; prefillVarlen over the packed batch (one call), prefill() on each request in turn ' +
        '(sums of per-request medians), dense = attentionVarlen without masks. On a GPU the library runs short sequences (up to 1024 query ' +
        'tiles over the heads) on up to four streams side by side and longer ones one after another.',
    );
  }
  if (bb.chunked) {
    notes.push(
      'Chunked prefill: chunk c attends to every token up to its end through the page table (prefillVarlen, one sequence, pages in a seeded ' +
        'random order, the cache filled up front: a chunk reads only its first kvLens tokens); one-shot = prefill() of the whole prompt, packed K/V.',
    );
    notes.push(
      cfg.estimate.calibrate === false
        ? 'Fixed temperatures (--no-calibrate): the chunks select the one-shot prefill\'s blocks where a chunk holds whole query blocks.'
        : 'Calibrated temperatures: each chunk calibrates on its own queries, so its temperatures (and selection) differ from the one-shot prefill\'s; --no-calibrate fixes them.',
    );
    notes.push(
      'Key summaries: the chunks run again, each chunk\'s estimation reading the summaries (pooled key blocks) of the previous chunks\' full blocks ' +
        '(run.keySummaries) and pooling only its own keys; after each chunk summarizeKeysVarlen appends its new full blocks to the same summaries ' +
        '(timed as the append). The selections and outputs must equal the plain run\'s.',
    );
    notes.push(
      'Key summaries written back: the chunks run once more, each chunk\'s estimation reading the summaries and writing the full blocks it pools ' +
        'back into them (run.appendKeySummaries; the copy is part of its estimation time), with no separate append. The selections and outputs ' +
        'must equal the plain run\'s, and the summaries those of the separate appends, bit for bit.',
    );
  }

  if (bb.pagedSweep) {
    notes.push(
      'Paged sweep: prefillVarlen of one sequence, the last queries against every key, over packed K/V (cuSeqlens) and over a paged KV cache ' +
        'per page size (pages in a seeded random order in the pool); on a GPU the kernels read pages of 64 keys and more in place ' +
        '(the estimation: pages of every size) and the paged call gathers smaller ones first (counted in its device time); the same ' +
        'kernels over the same keys, so the outputs are compared bit for bit.',
    );
  }

  io.out(`prism-bench ${packageVersion()}\n`);
  io.out(
    cfg.backend === 'cuda'
      ? `Device: cuda:${cfg.device ?? 0} ${device.name} (sm_${(device.computeCapability ?? '?').replace('.', '')}, ${device.multiProcessors ?? '?'} SMs), attention path: ${device.attentionPath}\n`
      : `Device: CPU ${device.name}, ${threads} threads, attention path: cpu\n`,
  );
  for (const line of describeBatchBench(bb)) io.out(line + '\n');
  io.out(
    `Shape: ${plural(cfg.heads, 'q head')}, ${plural(cfg.kvHeads, 'kv head')}, d ${cfg.headDim}, ${cfg.dtype}, block ${resolved.block}, ${cfg.workload} workload (seed ${cfg.seed}); ` +
      `prism ${resolved.selection === 'topk' ? `top-k ${String(resolved.topkHigh)}` : `top-p ${String(resolved.tauHigh)}/${String(resolved.tauLow)}`}${resolved.calibrate === false ? ', fixed temperatures' : ''}; median of ${cfg.iters} after ${cfg.warmup} warm-up\n`,
  );
  for (const n of notes) io.out(`Note: ${n}\n`);

  const progress = new Progress(io.stderr, { quiet: cfg.quiet });
  progress.setTotal((bb.ragged ? 5 : 0) + (bb.chunked ? 6 : 0) + (bb.pagedSweep ? pagedSweepSteps(bb.pagedSweep) : 0));
  const ctx = { progress, device: cfg.backend === 'cuda' ? (`cuda:${cfg.device ?? 0}` as const) : ('cpu' as const), block: resolved.block, genThreads: cfg.genThreads ?? defaultGenThreads() };
  let batch: RaggedBatchResult | null = null;
  let chunked: ChunkedResult | null = null;
  let pagedSweep: PagedSweepResult | null = null;
  try {
    if (bb.ragged) batch = await runRaggedBatch(cfg, ctx, bb.ragged);
    if (bb.chunked) chunked = await runChunked(cfg, ctx, bb.chunked);
    if (bb.pagedSweep) pagedSweep = await runPagedSweep(cfg, ctx, bb.pagedSweep);
  } finally {
    progress.clear();
  }
  if (batch) {
    io.out('\n' + formatBatchTable(batch));
    if (batch.preset === '8x4k') {
      io.out(`target for 8x4k: batch >= ${BATCH_TARGET_SPEEDUP}x faster than one by one; measured ${batch.batchSpeedup.gpu.toFixed(2)}x (device), ${batch.batchSpeedup.api.toFixed(2)}x (wall)\n`);
    }
  }
  if (chunked) io.out('\n' + formatChunkedTable(chunked) + `(target: chunked within ${CHUNKED_TARGET_RATIO}x of one-shot)\n`);
  if (pagedSweep) io.out('\n' + formatPagedSweepTable(pagedSweep));
  io.out('\n' + BATCH_LEGEND);

  const report: BatchBenchReport = { ...reportHeader(argv, cfg, resolved, device, notes, null), results: [], batch, chunked, pagedSweep };
  if (cfg.json) {
    writeFile(cfg.json, JSON.stringify(report, null, 2) + '\n', '--json');
    io.out(`Wrote ${cfg.json}\n`);
  }
  return 0;
}

// prism-bench's ragged-batch and chunked-prefill benchmarks: the options
// (pure functions) and tiny runs of the compiled CLI on the CPU backend.

import * as fs from 'fs';
import * as path from 'path';
import { UsageError, parseArgs } from '../bench/args';
import { resolveConfig } from '../bench/config';
import { EIGHT_BY_4K, MIXED_CPU_LENGTHS, MIXED_GPU_LENGTHS } from '../bench/batch-args';
import { formatChunkedTable, validateBatchSections } from '../bench/batch-report';
import type { BatchBenchReport } from '../bench/batch-report';
import { shuffledPages } from '../bench/batch';
import { validateReport } from '../bench/report';
import { resolveBatch, runCli, tinyRun } from './helpers/bench-batch';

const TINY = ['--backend', 'cpu', '--heads', '2', '--kv-heads', '1', '--head-dim', '64', '--block', '64', '--iters', '1', '--warmup', '0'];

function usageError(argv: string[], backend: 'cuda' | 'cpu' = 'cpu'): UsageError {
  try {
    resolveBatch(argv, backend);
  } catch (e) {
    expect(e).toBeInstanceOf(UsageError);
    return e as UsageError;
  }
  throw new Error(`expected a usage error for ${argv.join(' ')}`);
}

describe('options', () => {
  test('none given: no batch benchmark', () => {
    expect(resolveBatch([])).toBeNull();
    expect(resolveConfig(parseArgs([]), 'cpu').batchBench).toBeNull();
  });

  test('presets: mixed (256K tokens on a GPU, small on the CPU) and 8x4k', () => {
    const gpu = resolveBatch(['--batch-workload', 'mixed'], 'cuda')!;
    expect(gpu.ragged).toEqual({ preset: 'mixed', lengths: [...MIXED_GPU_LENGTHS], totalTokens: 256 * 1024 });
    expect(Math.min(...gpu.ragged!.lengths)).toBe(2048);
    expect(Math.max(...gpu.ragged!.lengths)).toBe(131072);
    expect(gpu.chunked).toBeNull();
    const cpu = resolveBatch(['--batch-workload', 'mixed'])!;
    expect(cpu.ragged!.lengths).toEqual([...MIXED_CPU_LENGTHS]);
    expect(cpu.ragged!.lengths.every((n) => n >= 512 && n <= 2048)).toBe(true);
    expect(resolveBatch(['--batch-workload', '8x4k'], 'cuda')!.ragged).toEqual({ preset: '8x4k', lengths: [...EIGHT_BY_4K], totalTokens: 32768 });
    expect(resolveBatch(['--batch-workload', '8X4K'])!.ragged!.preset).toBe('8x4k');
  });

  test('--lengths', () => {
    expect(resolveBatch(['--lengths', '4k,4k,1000'])!.ragged).toEqual({ preset: 'custom', lengths: [4096, 4096, 1000], totalTokens: 9192 });
  });

  test('--chunked with page size and layout', () => {
    expect(resolveBatch(['--chunked', '128k:8k'], 'cuda')).toEqual({
      ragged: null,
      chunked: { total: 131072, chunk: 8192, chunks: 16, pageSize: 128, kvLayout: 'NHD' },
      pagedSweep: null,
    });
    expect(resolveBatch(['--chunked=1000:300', '--page-size', '16', '--kv-layout', 'hnd'])!.chunked).toEqual({ total: 1000, chunk: 300, chunks: 4, pageSize: 16, kvLayout: 'HND' });
    const both = resolveBatch(['--batch-workload', '8x4k', '--chunked', '4k:1k'])!;
    expect(both.ragged).not.toBeNull();
    expect(both.chunked).not.toBeNull();
  });

  test.each([
    [['--batch-workload', 'huge'], '--batch-workload', /'huge' is not one of mixed, 8x4k/],
    [['--lengths', '4k,,4k'], '--lengths', /has an empty entry/],
    [['--lengths', '0'], '--lengths', /must be at least 1/],
    [['--chunked', '128k'], '--chunked', /'128k' is not TOTAL:CHUNK/],
    [['--chunked', '128k:8k:1k'], '--chunked', /is not TOTAL:CHUNK/],
    [['--chunked', 'x:8k'], '--chunked', /'x' is not a size/],
    [['--chunked', '8k:128k'], '--chunked', /the chunk \(128K\) is longer than the prompt \(8K\)/],
    [['--chunked', '8k:1k', '--page-size', '100'], '--page-size', /100 is not a page size \(16, 32, 64, 128, 256\)/],
    [['--page-size', '64'], '--page-size', /give --chunked/],
    [['--kv-layout', 'NHD'], '--kv-layout', /give --chunked/],
    [['--lengths', '1k', '--page-size', '64'], '--page-size', /chunked prefill only/],
    [['--chunked', '8k:1k', '--kv-layout', 'nchw'], '--kv-layout', /'nchw' is not one of NHD, HND/],
    [['--batch-workload', 'mixed', '--lengths', '1k'], '--lengths', /not both/],
    [['--batch-workload', 'mixed', '--seq', '1k'], '--seq', /take their lengths from/],
    [['--lengths', '1k', '--devices', 'cpu'], '--devices', /not part of the batch benchmarks/],
    [['--chunked', '8k:1k', '--methods', 'prism'], '--methods', /not part of the batch benchmarks/],
    [['--batch-workload', 'mixed', '--recall-rows', '8'], '--recall-rows', /not part of the batch benchmarks/],
    [['--chunked', '8k:1k', '--files', 'q.npy,k.npy,v.npy'], '--chunked', /generate their inputs/],
  ])('%j: usage error naming %s', (argv, option, re) => {
    const e = usageError(argv as string[]);
    expect(e.option).toBe(option);
    expect(e.message).toMatch(re);
  });

  test('pages in a seeded order: a permutation, the same for the same seed', () => {
    const a = shuffledPages(64, 1);
    expect([...a].sort((x, y) => x - y)).toEqual(Array.from({ length: 64 }, (_, i) => i));
    expect(shuffledPages(64, 1)).toEqual(a);
    expect(shuffledPages(64, 2)).not.toEqual(a);
  });
});

describe('command line', () => {
  test('--help lists the options', () => {
    const r = runCli(['--help']);
    expect(r.code).toBe(0);
    for (const o of ['--batch-workload W', '--lengths LIST', '--chunked T:C', '--page-size N', '--kv-layout L', '--paged-sweep LIST', '--paged-tokens T:C']) expect(r.stdout).toContain(o);
  });

  test('bad values exit 2 with the option named', () => {
    const r = runCli(['--backend', 'cpu', '--chunked', '1k:2k']);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/^prism-bench: --chunked: the chunk \(2K\) is longer than the prompt \(1K\)\n/);
    expect(r.stderr).toContain("Run 'prism-bench --help' for usage.");
  });
});

describe('tiny CPU runs', () => {
  const tiny = tinyRun('batch', [...TINY, '--lengths', '512,256,768', '--chunked', '1k:384', '--page-size', '64']);

  test('tables on tiny.stdout', () => {
    expect(tiny.stdout).toMatch(/^Ragged batch \(--lengths\): 3 requests 512\+256\+768 = 1536 tokens/m);
    expect(tiny.stdout).toMatch(/^Chunked prefill: a 1K prompt in 3 chunks of 384 over a paged KV cache \(page size 64, NHD\)/m);
    expect(tiny.stdout).toMatch(/^prefillVarlen \(batch\)\s+[\d.]+\s+[\d.]+\s+[\d.]+%/m);
    expect(tiny.stdout).toMatch(/^prefill\(\) one by one\s/m);
    expect(tiny.stdout).toMatch(/^chunked \(3 x 384, paged\)\s/m);
    expect(tiny.stdout).toMatch(/^one-shot prefill\(\) 1K\s/m);
    expect(tiny.stdout).toMatch(/Calibrated temperatures: each chunk calibrates on its own queries/);
  });

  test('JSON: the prism-bench/1 document with valid batch and chunked sections', () => {
    expect(validateReport(tiny.report)).toEqual([]);
    expect(validateBatchSections(tiny.report)).toEqual([]);
    expect(tiny.report.results).toEqual([]);
    expect(tiny.report.config.batchBench).toEqual({
      ragged: { preset: 'custom', lengths: [512, 256, 768], totalTokens: 1536 },
      chunked: { total: 1024, chunk: 384, chunks: 3, pageSize: 64, kvLayout: 'NHD' },
      pagedSweep: null,
    });
    expect(tiny.report.pagedSweep).toBeNull();
  });

  test('batch figures are sane', () => {
    const b = tiny.report.batch!;
    for (const t of [b.varlen, b.dense]) {
      expect(t.gpuMs).toBeGreaterThan(0);
      expect(t.apiMs).toBeGreaterThan(0);
      expect(t.gpuTimesMs).toHaveLength(1);
    }
    expect(b.varlen.density).toBeGreaterThan(0);
    expect(b.varlen.density).toBeLessThanOrEqual(1);
    expect(b.oneByOne.sequences.map((s) => s.length)).toEqual([512, 256, 768]);
    expect(b.oneByOne.gpuMs).toBeCloseTo(b.oneByOne.sequences.reduce((a, s) => a + s.gpuMs, 0), 9);
    expect(b.batchSpeedup.gpu).toBeCloseTo(b.oneByOne.gpuMs / b.varlen.gpuMs, 9);
    expect(b.speedupVsDense.gpu).toBeCloseTo(b.dense.gpuMs / b.varlen.gpuMs, 9);
    // the same selection whichever way the requests run, and on the CPU the same bits
    expect(b.oneByOne.density).toBeCloseTo(b.varlen.density, 9);
    expect(b.relErrVsOneByOne).toBe(0);
    expect(b.relErrVsDense).toBeGreaterThanOrEqual(0);
    expect(b.relErrVsDense).toBeLessThan(0.2);
  });

  test('chunked figures are sane', () => {
    const c = tiny.report.chunked!;
    expect(c.numPages).toBe(16);
    expect(c.calibrate).toBe(true);
    expect(c.perChunk.map((x) => [x.start, x.queries, x.keys])).toEqual([[0, 384, 384], [384, 384, 768], [768, 256, 1024]]);
    for (const x of c.perChunk) {
      expect(x.gpuMs).toBeGreaterThan(0);
      expect(x.density).toBeGreaterThan(0);
      expect(x.density).toBeLessThanOrEqual(1);
    }
    expect(c.chunked.gpuMs).toBeCloseTo(c.perChunk.reduce((a, x) => a + x.gpuMs, 0), 9);
    expect(c.ratio.gpu).toBeCloseTo(c.chunked.gpuMs / c.oneShot.gpuMs, 9);
    expect(c.oneShot.density).toBeGreaterThan(0);
    expect(c.oneShot.density).toBeLessThanOrEqual(1);
    expect(c.chunked.density).toBeGreaterThan(0);
    expect(c.chunked.density).toBeLessThanOrEqual(1);
    expect(c.relErrVsOneShot).toBeLessThan(0.2);
    expect(c.relErrVsDense).toBeLessThan(0.2);
    expect(c.oneShotRelErrVsDense).toBeLessThan(0.2);
  });

  test('chunked over key summaries: estimation times with and without, appends, same selections and outputs', () => {
    const c = tiny.report.chunked!;
    const ks = c.keySummaries!;
    expect(ks.identical).toBe(true);
    for (const x of c.perChunk) {
      expect(x.estimateMs).toBeGreaterThan(0);
      expect(x.estimateWithSummariesMs).toBeGreaterThan(0);
      expect(x.summarizeMs).toBeGreaterThanOrEqual(0);
    }
    const sum = (f: (x: (typeof c.perChunk)[number]) => number) => c.perChunk.reduce((a, x) => a + f(x), 0);
    expect(ks.estimateMs).toBeCloseTo(sum((x) => x.estimateMs!), 9);
    expect(ks.estimateWithSummariesMs).toBeCloseTo(sum((x) => x.estimateWithSummariesMs!), 9);
    expect(ks.summarizeMs).toBeCloseTo(sum((x) => x.summarizeMs!), 9);
    expect(ks.estimateSavedMs).toBeCloseTo(ks.estimateMs - ks.estimateWithSummariesMs, 9);
    expect(ks.estimateSaving).toBeCloseTo(ks.estimateSavedMs / ks.estimateMs, 9);
    expect(ks.netSavedMs).toBeCloseTo(ks.estimateSavedMs - ks.summarizeMs, 9);
    expect(ks.gpuMs).toBeGreaterThan(0);
    expect(ks.apiMs).toBeGreaterThan(0);
    expect(tiny.stdout).toMatch(/^key summaries: estimation [\d.]+ ms without, [\d.]+ ms reading the previous chunks' summaries .* same selections and outputs$/m);
    expect(tiny.stdout).toMatch(/^chunk\s+queries\s+keys\s+gpu ms\s+api ms\s+density\s+est ms\s+est ms \(summaries\)\s+append ms\s+est ms \(write-back\)$/m);
    expect(tiny.stdout).toMatch(/Key summaries: the chunks run again/);
    // the validator checks the section when present, and takes reports made without it
    const bad = JSON.parse(JSON.stringify(tiny.report)) as BatchBenchReport;
    bad.chunked!.keySummaries!.identical = 'yes' as unknown as boolean;
    bad.chunked!.perChunk[1].estimateWithSummariesMs = 0;
    expect(validateBatchSections(bad)).toEqual(['$.chunked.keySummaries.identical: bad value "yes"', '$.chunked.perChunk[1].estimateWithSummariesMs: bad value 0']);
    delete bad.chunked!.keySummaries;
    expect(validateBatchSections(bad)).toEqual([]);
  });

  test('chunked with the estimation writing the summaries back: times, net saving, same selections, outputs and summaries', () => {
    const c = tiny.report.chunked!;
    const ks = c.keySummaries!;
    expect(ks.writeBackIdentical).toBe(true);
    for (const x of c.perChunk) expect(x.estimateWriteBackMs).toBeGreaterThan(0);
    expect(ks.estimateWriteBackMs).toBeCloseTo(c.perChunk.reduce((a, x) => a + x.estimateWriteBackMs!, 0), 9);
    expect(ks.writeBackNetSavedMs).toBeCloseTo(ks.estimateMs - ks.estimateWriteBackMs!, 9);
    expect(ks.writeBackGpuMs).toBeGreaterThan(0);
    expect(ks.writeBackApiMs).toBeGreaterThan(0);
    expect(tiny.stdout).toMatch(/^key summaries written back by the estimation \(run\.appendKeySummaries, no appends\): estimation [\d.]+ ms with the copy; net -?[\d.]+ ms per prompt; .* same selections, outputs and summaries$/m);
    expect(tiny.stdout).toMatch(/appendKeySummaries/);
    // the validator checks the write-back fields when any is present, and takes reports made without them
    const bad = JSON.parse(JSON.stringify(tiny.report)) as BatchBenchReport;
    bad.chunked!.keySummaries!.writeBackIdentical = 1 as unknown as boolean;
    bad.chunked!.perChunk[2].estimateWriteBackMs = -1;
    expect(validateBatchSections(bad)).toEqual(['$.chunked.keySummaries.writeBackIdentical: bad value 1', '$.chunked.perChunk[2].estimateWriteBackMs: bad value -1']);
    const old = JSON.parse(JSON.stringify(tiny.report)) as BatchBenchReport;
    const k = old.chunked!.keySummaries!;
    delete k.estimateWriteBackMs;
    delete k.writeBackNetSavedMs;
    delete k.writeBackGpuMs;
    delete k.writeBackApiMs;
    expect(validateBatchSections(old)).toEqual(['$.chunked.keySummaries.estimateWriteBackMs: bad value undefined', '$.chunked.keySummaries.writeBackNetSavedMs: bad value undefined', '$.chunked.keySummaries.writeBackGpuMs: bad value undefined', '$.chunked.keySummaries.writeBackApiMs: bad value undefined']);
    delete k.writeBackIdentical;
    for (const x of old.chunked!.perChunk) delete x.estimateWriteBackMs;
    expect(validateBatchSections(old)).toEqual([]);
    expect(formatChunkedTable(old.chunked!)).not.toMatch(/write-back/);
  });

  test('eight equal requests, HND pages and fixed temperatures (random inputs)', () => {
    const json = path.join(tiny.dir, 'hnd.json');
    const r = runCli([...TINY, '--workload', 'random', '--lengths', '256,256,256,256,256,256,256,256', '--chunked', '512:128', '--kv-layout', 'HND', '--page-size', '16', '--no-calibrate', '--quiet', '--json', json]);
    expect(r.code).toBe(0);
    const doc = JSON.parse(fs.readFileSync(json, 'utf8')) as BatchBenchReport;
    expect(validateBatchSections(doc)).toEqual([]);
    expect(doc.chunked).toMatchObject({ kvLayout: 'HND', pageSize: 16, numPages: 32, calibrate: false });
    // fixed temperatures and chunks of whole blocks: the one-shot selection, the one-shot output
    expect(doc.chunked!.chunked.density).toBeCloseTo(doc.chunked!.oneShot.density, 9);
    expect(doc.chunked!.relErrVsOneShot).toBe(0);
    expect(r.stdout).toMatch(/Fixed temperatures \(--no-calibrate\)/);
  });

  test('the validator catches broken sections', () => {
    const bad = JSON.parse(JSON.stringify(tiny.report)) as BatchBenchReport;
    bad.batch!.varlen.density = 0;
    bad.batch!.totalTokens = 7;
    bad.chunked!.perChunk.pop();
    bad.chunked!.ratio.gpu = -1;
    const errors = validateBatchSections(bad);
    expect(errors).toEqual(expect.arrayContaining([
      '$.batch.varlen.density: bad value 0',
      '$.batch.totalTokens: not the sum of the lengths',
      '$.chunked.perChunk: 3 chunks expected',
      '$.chunked.ratio.gpu: bad value -1',
    ]));
    expect(validateBatchSections({})).toEqual(['$: neither a batch, a chunked nor a pagedSweep section']);
  });
});

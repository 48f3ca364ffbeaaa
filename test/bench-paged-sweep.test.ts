// prism-bench --paged-sweep: the options (pure functions), the output
// comparison, and a tiny run of the compiled CLI on the CPU backend.

import { UsageError } from '../bench/args';
import { PAGED_CPU_TOKENS, PAGED_GPU_TOKENS } from '../bench/batch-args';
import { PAGED_TARGET, validateBatchSections } from '../bench/batch-report';
import type { BatchBenchReport } from '../bench/batch-report';
import { compareOutputs } from '../bench/paged-sweep';
import { validateReport } from '../bench/report';
import { resolveBatch, runCli, tinyRun } from './helpers/bench-batch';

const TINY = ['--backend', 'cpu', '--heads', '2', '--kv-heads', '1', '--head-dim', '64', '--block', '64', '--iters', '2', '--warmup', '1'];

describe('options', () => {
  test('defaults: the last 8K of 128K on a GPU, 512 of 2K on the CPU, NHD', () => {
    expect(resolveBatch(['--paged-sweep', '16,32,64,128,256'], 'cuda')).toEqual({
      ragged: null,
      chunked: null,
      pagedSweep: { total: PAGED_GPU_TOKENS.total, queries: PAGED_GPU_TOKENS.chunk, pageSizes: [16, 32, 64, 128, 256], kvLayouts: ['NHD'] },
    });
    expect(PAGED_GPU_TOKENS).toEqual({ total: 131072, chunk: 8192 });
    expect(resolveBatch(['--paged-sweep', '64'])!.pagedSweep).toEqual({ total: PAGED_CPU_TOKENS.total, queries: PAGED_CPU_TOKENS.chunk, pageSizes: [64], kvLayouts: ['NHD'] });
  });

  test('--paged-tokens, --kv-layout HND / both, with the other batch benchmarks', () => {
    expect(resolveBatch(['--paged-sweep', '256,16', '--paged-tokens', '1k:256', '--kv-layout', 'both'])!.pagedSweep).toEqual({ total: 1024, queries: 256, pageSizes: [256, 16], kvLayouts: ['NHD', 'HND'] });
    expect(resolveBatch(['--paged-sweep', '64', '--kv-layout', 'hnd'])!.pagedSweep!.kvLayouts).toEqual(['HND']);
    const all = resolveBatch(['--lengths', '1k', '--chunked', '2k:1k', '--page-size', '32', '--kv-layout', 'HND', '--paged-sweep', '64'])!;
    expect(all.ragged).not.toBeNull();
    expect(all.chunked).toMatchObject({ pageSize: 32, kvLayout: 'HND' });
    expect(all.pagedSweep).toMatchObject({ pageSizes: [64], kvLayouts: ['HND'] });
  });

  test.each([
    [['--paged-sweep', '16,100'], '--paged-sweep', /100 is not a page size \(16, 32, 64, 128, 256\)/],
    [['--paged-sweep', '512'], '--paged-sweep', /512 is not a page size/],
    [['--paged-sweep', '64,,128'], '--paged-sweep', /has an empty entry/],
    [['--paged-sweep', '0'], '--paged-sweep', /must be at least 1/],
    [['--paged-sweep', '64,32,64'], '--paged-sweep', /page size 64 is given twice/],
    [['--paged-tokens', '1k:256'], '--paged-tokens', /give --paged-sweep/],
    [['--paged-sweep', '64', '--paged-tokens', '1k'], '--paged-tokens', /'1k' is not TOTAL:CHUNK/],
    [['--paged-sweep', '64', '--paged-tokens', '1k:2k'], '--paged-tokens', /the queries \(2K\) outnumber the tokens \(1K\)/],
    [['--paged-sweep', '64', '--page-size', '64'], '--page-size', /takes its page sizes from --paged-sweep/],
    [['--paged-sweep', '64', '--chunked', '2k:1k', '--kv-layout', 'both'], '--kv-layout', /'both' applies to the paged sweep only/],
    [['--kv-layout', 'both'], '--kv-layout', /--paged-sweep LIST/],
    [['--lengths', '1k', '--kv-layout', 'HND'], '--kv-layout', /chunked prefill or the paged sweep only/],
    [['--paged-sweep', '64', '--kv-layout', 'nchw'], '--kv-layout', /'nchw' is not one of NHD, HND, both/],
    [['--paged-sweep', '64', '--seq', '1k'], '--seq', /--paged-tokens/],
    [['--paged-sweep', '64', '--methods', 'prism'], '--methods', /not part of the batch benchmarks \(--paged-sweep\)/],
    [['--paged-sweep', '64', '--files', 'q.npy,k.npy,v.npy'], '--paged-sweep', /generate their inputs/],
  ])('%j: usage error naming %s', (argv, option, re) => {
    let err: unknown;
    try {
      resolveBatch(argv as string[]);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(UsageError);
    expect((err as UsageError).option).toBe(option);
    expect((err as UsageError).message).toMatch(re);
  });

  test('bad values exit 2 with the option named', () => {
    const r = runCli(['--backend', 'cpu', '--paged-sweep', '16,48']);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/^prism-bench: --paged-sweep: 48 is not a page size/);
    const c = runCli(['--backend', 'cpu', '--paged-sweep', '64', '--chunked', '1k:512', '--kv-layout', 'both']);
    expect(c.code).toBe(2);
    expect(c.stderr).toMatch(/^prism-bench: --kv-layout: /);
  });
});

describe('output comparison', () => {
  test('the same bits: identical; otherwise the largest difference', () => {
    const a = Float32Array.from([1, 2, 3]);
    expect(compareOutputs(a, Float32Array.from(a), 'float32')).toEqual({ identical: true, maxAbsDiff: 0 });
    expect(compareOutputs(a, Float32Array.from([1, 2.5, 2]), 'float32')).toEqual({ identical: false, maxAbsDiff: 1 });
    // -0 and +0: equal values, different bits
    expect(compareOutputs(Float32Array.from([0]), Float32Array.from([-0]), 'float32')).toEqual({ identical: false, maxAbsDiff: 0 });
    // bf16 1.0 = 0x3f80, 1.0078125 = 0x3f81
    expect(compareOutputs(Uint16Array.from([0x3f80]), Uint16Array.from([0x3f81]), 'bfloat16')).toEqual({ identical: false, maxAbsDiff: 0.0078125 });
    expect(compareOutputs(Uint16Array.from([0x3f80]), Uint16Array.from([0x3f80]), 'bfloat16').identical).toBe(true);
  });
});

describe('tiny CPU run', () => {
  const tiny = tinyRun('paged', [...TINY, '--paged-sweep', '16,64,256', '--paged-tokens', '1000:256', '--kv-layout', 'both']);

  test('table on tiny.stdout, no issue numbers', () => {
    expect(tiny.stdout).toMatch(/^Paged sweep: the last 256 of 1000 tokens as queries, packed K\/V vs a paged KV cache \(page sizes 16, 64, 256; NHD and HND\)/m);
    expect(tiny.stdout).toMatch(/^packed K\/V \(cuSeqlens\)\s+-\s+[\d.]+\s+[\d.]+\s+1\.00x\s+1\.00x\s+[\d.]+%\s+reference/m);
    expect(tiny.stdout).toMatch(/^paged NHD, page 16\s+63\s+[\d.]+\s+[\d.]+\s+[\d.]+x\s+[\d.]+x\s+[\d.]+%\s+identical\s+no target$/m);
    expect(tiny.stdout).toMatch(/^paged HND, page 256\s+4\s.*identical\s+(within|outside) 1\.10x$/m);
    expect(tiny.stdout).toContain('(target: page size >= 64 within 1.10x of packed (device time); smaller pages: correct, slowdown reported)');
    expect(tiny.stdout).not.toMatch(/issue #/);
  });

  test('JSON: a valid pagedSweep section with sane values', () => {
    expect(validateReport(tiny.report)).toEqual([]);
    expect(validateBatchSections(tiny.report)).toEqual([]);
    expect(tiny.report.results).toEqual([]);
    expect(tiny.report.batch).toBeNull();
    expect(tiny.report.chunked).toBeNull();
    const s = tiny.report.pagedSweep!;
    expect(s).toMatchObject({ total: 1000, queries: 256, pageSizes: [16, 64, 256], kvLayouts: ['NHD', 'HND'], hq: 2, hkv: 1, d: 64, block: 64 });
    expect(s.target).toEqual({ ...PAGED_TARGET });
    expect(s.packed.gpuTimesMs).toHaveLength(2);
    expect(s.rows.map((x) => [x.kvLayout, x.pageSize, x.numPages])).toEqual([
      ['NHD', 16, 63], ['NHD', 64, 16], ['NHD', 256, 4], ['HND', 16, 63], ['HND', 64, 16], ['HND', 256, 4],
    ]);
    for (const x of s.rows) {
      expect(x.identical).toBe(true);
      expect(x.maxAbsDiff).toBe(0);
      expect(x.ratio.gpu).toBeGreaterThan(0);
      expect(x.ratio.api).toBeGreaterThan(0);
      expect(x.ratio.gpu).toBeCloseTo(x.paged.gpuMs / x.packed.gpuMs, 9);
      // the same selection over the same keys
      expect(x.paged.density).toBeCloseTo(s.packed.density, 12);
      expect(x.withinTarget === null).toBe(x.pageSize < 64);
    }
  });

  test('the validator catches a broken section', () => {
    const bad = JSON.parse(JSON.stringify(tiny.report)) as BatchBenchReport;
    const s = bad.pagedSweep!;
    s.rows[0].ratio.gpu = 0;
    s.rows[1].maxAbsDiff = 0.5;
    s.rows[2].numPages = 1;
    s.rows[3].kvLayout = 'XYZ' as never;
    s.rows.pop();
    expect(validateBatchSections(bad)).toEqual(expect.arrayContaining([
      '$.pagedSweep.rows: 6 rows expected (page sizes x layouts)',
      '$.pagedSweep.rows[0].ratio.gpu: bad value 0',
      '$.pagedSweep.rows[1].maxAbsDiff: identical outputs with a difference',
      '$.pagedSweep.rows[2].numPages: too few pages for 1000 tokens',
      '$.pagedSweep.rows[3].kvLayout: bad value "XYZ"',
    ]));
  });
});

// prism-bench argument parsing and configuration (pure functions, no addon).

import {
  CPU_DEFAULTS,
  GPU_DEFAULTS,
  UsageError,
  formatSize,
  parseArgs,
  parseSize,
  usage,
} from '../bench/args';
import { noGpuReason, resolveConfig } from '../bench/config';

function usageError(argv: string[], backend: 'cuda' | 'cpu' = 'cpu'): UsageError {
  try {
    resolveConfig(parseArgs(argv), backend);
  } catch (e) {
    expect(e).toBeInstanceOf(UsageError);
    return e as UsageError;
  }
  throw new Error(`expected a usage error for ${argv.join(' ')}`);
}

describe('sizes', () => {
  test.each([
    ['8k', 8192],
    ['8K', 8192],
    ['128k', 131072],
    ['1m', 1048576],
    ['3000', 3000],
    [' 16 ', 16],
  ])('%s -> %i', (text, n) => {
    expect(parseSize(text, '--seq')).toBe(n);
  });

  test('lists', () => {
    expect(parseArgs(['--seq', '8k,32k,128k']).seq).toEqual([8192, 32768, 131072]);
    expect(parseArgs(['--seq=1000,2K']).seq).toEqual([1000, 2048]);
  });

  test.each([
    ['0', /--seq: '0' must be at least 1/],
    ['abc', /--seq: 'abc' is not a size/],
    ['-5', /--seq: '-5' is negative/],
    ['1.5k', /not a size/],
    ['8k,,32k', /empty entry/],
    ['8kb', /not a size/],
    ['', /empty entry|not a size/],
  ])('--seq %j is rejected', (text, re) => {
    const e = usageError(['--seq', text]);
    expect(e.message).toMatch(re);
    expect(e.option).toBe('--seq');
  });

  test.each(['--batch', '--heads', '--kv-heads', '--head-dim', '--block'])('%s rejects 0, negatives and words', (opt) => {
    for (const bad of ['0', '-1', 'x']) expect(usageError([opt, bad]).message).toContain(`${opt}:`);
  });

  test('formatSize', () => {
    expect(formatSize(8192)).toBe('8K');
    expect(formatSize(131072)).toBe('128K');
    expect(formatSize(1000)).toBe('1000');
    expect(formatSize(1048576)).toBe('1M');
  });
});

describe('options', () => {
  test('every option parses', () => {
    const p = parseArgs([
      '--seq', '1k', '--batch', '2', '--heads', '8', '--kv-heads', '2', '--head-dim', '128', '--dtype', 'fp16',
      '--block', '64', '--high-dims', '32', '--low-dims', '64', '--tau-high', '0.9', '--tau-low', '0.8',
      '--no-calibrate', '--temp-high', '0.5', '--temp-low', '2', '--rope', 'interleaved', '--backend', 'cpu', '--workload', 'random',
      '--methods', 'prism,dense', '--warmup', '0', '--iters', '3', '--recall-rows', '0', '--seed', '7',
      '--json', 'out.json', '--svg', 'out.svg', '--quiet',
    ]);
    const c = resolveConfig(p, 'cpu');
    expect(c).toMatchObject({
      backend: 'cpu', workload: 'random', seq: [1024], batch: 2, heads: 8, kvHeads: 2, headDim: 128, dtype: 'fp16',
      methods: ['dense', 'prism'], warmup: 0, iters: 3, recallRows: 0, seed: 7, json: 'out.json', svg: 'out.svg', quiet: true,
      cpuDefaults: false,
    });
    expect(c.estimate).toEqual({
      block: 64, highDims: 32, lowDims: 64, ropeLayout: 'interleaved', calibrate: false, tempHigh: 0.5, tempLow: 2, tauHigh: 0.9, tauLow: 0.8,
    });
  });

  test('--tau sets both bands; --topk switches to top-k', () => {
    expect(resolveConfig(parseArgs(['--tau', '0.9']), 'cpu').estimate).toEqual({ tauHigh: 0.9, tauLow: 0.9 });
    expect(resolveConfig(parseArgs(['--topk', '8']), 'cpu').estimate).toEqual({ selection: 'topk', topkHigh: 8, topkLow: 8 });
  });

  test('dtype aliases and method order', () => {
    expect(parseArgs(['--dtype', 'bfloat16']).dtype).toBe('bf16');
    expect(parseArgs(['--dtype', 'FP32']).dtype).toBe('f32');
    expect(parseArgs(['--methods', 'meanpool,prism']).methods).toEqual(['prism', 'meanpool']);
  });

  test('--files implies the file workload and takes the shape from the files', () => {
    const c = resolveConfig(parseArgs(['--files', 'q.npy,k.npy,v.npy', '--dtype', 'bf16']), 'cuda');
    expect(c.workload).toBe('file');
    expect(c.files).toEqual(['q.npy', 'k.npy', 'v.npy']);
    expect(c.seq).toEqual([]);
    expect(resolveConfig(parseArgs(['--safetensors', 'x.safetensors']), 'cpu').safetensors).toBe('x.safetensors');
  });

  test('help, version and aliases', () => {
    expect(parseArgs(['--help']).help).toBe(true);
    expect(parseArgs(['-h']).help).toBe(true);
    expect(parseArgs(['-q']).quiet).toBe(true);
    expect(parseArgs(['--version']).version).toBe(true);
    const u = usage();
    for (const opt of ['--seq', '--kv-heads', '--tau-high', '--no-calibrate', '--topk', '--files', '--safetensors', '--methods', '--recall-rows', '--json', '--svg', '--quiet']) {
      expect(u).toContain(opt);
    }
  });
});

describe('errors', () => {
  test.each([
    [['--frobnicate'], /unknown option '--frobnicate'/],
    [['--seqs', '8k'], /unknown option '--seqs' \(did you mean --seq\?\)/],
    [['stray'], /unexpected argument 'stray'/],
    [['--seq'], /--seq: needs a value/],
    [['--seq', '--quiet'], /--seq: needs a value/],
    [['--quiet=1'], /--quiet: takes no value/],
    [['--seq', '1k', '--seq', '2k'], /--seq: given more than once/],
    [['--heads', '6', '--kv-heads', '4'], /--kv-heads: --heads 6 is not a multiple of --kv-heads 4/],
    [['--head-dim', '63'], /--head-dim: 63 is odd/],
    [['--dtype', 'int8'], /--dtype: 'int8' is not one of bf16, fp16, f32/],
    [['--backend', 'tpu'], /--backend: 'tpu' is not one of auto, cuda, cpu/],
    [['--workload', 'zipf'], /--workload: 'zipf' is not one of/],
    [['--methods', 'dense,flash'], /--methods: 'flash' is not one of dense, prism, meanpool/],
    [['--methods', 'prism,prism'], /--methods: 'prism' listed twice/],
    [['--tau', '0'], /--tau: '0' must be in \(0, 1\]/],
    [['--tau', '1.5'], /--tau: '1.5' must be in \(0, 1\]/],
    [['--tau-low', 'x'], /--tau-low: 'x' is not a number/],
    [['--topk', '0'], /--topk: '0' must be at least 1/],
    [['--topk', '4', '--tau', '0.9'], /--tau: top-p thresholds do not apply with --topk/],
    [['--tau', '0.9', '--tau-high', '0.8'], /--tau: give --tau or --tau-high\/--tau-low/],
    [['--temp-high', '2'], /--temp-high: fixed temperatures need --no-calibrate/],
    [['--no-calibrate', '--temp-low', '-1'], /--temp-low: '-1' must be greater than 0/],
    [['--iters', '0'], /--iters: '0' must be at least 1/],
    [['--warmup', '-1'], /--warmup: '-1' must be at least 0/],
    [['--warmup', '10001'], /--warmup: '10001' must be at most 10000/],
    [['--iters', '100001'], /--iters: '100001' must be at most 100000/],
    [['--seq', '1k,2k,1k'], /--seq: '1k,2k,1k' lists 1024 twice/],
    [['--head-dim', '2'], /--head-dim: 2 is too small for the structured workload/],
    [['--files', 'q.npy,k.npy'], /--files: expects three files/],
    [['--files', 'q,k,v', '--safetensors', 'x'], /--safetensors: give either --files or --safetensors/],
    [['--workload', 'file'], /--workload: the file workload needs --files/],
    [['--workload', 'random', '--files', 'q,k,v'], /--files: input files need --workload file/],
    [['--files', 'q,k,v', '--seq', '8k'], /--seq: the shape comes from the input files/],
    [['--high-dims', '200'], /--high-dims: 200 must be even/],
    [['--low-dims', '3'], /--low-dims: 3 must be even/],
    [['--json', ''], /--json: needs a file name/],
  ])('%j', (argv, re) => {
    expect(usageError(argv as string[]).message).toMatch(re);
  });
});

describe('defaults', () => {
  test('GPU', () => {
    const c = resolveConfig(parseArgs([]), 'cuda');
    expect(c).toMatchObject({
      backend: 'cuda', workload: 'structured', seq: [8192, 32768, 131072], batch: 1, heads: 32, kvHeads: 8, headDim: 128,
      dtype: 'bf16', methods: ['dense', 'prism', 'meanpool'], warmup: GPU_DEFAULTS.warmup, iters: GPU_DEFAULTS.iters,
      recallRows: GPU_DEFAULTS.recallRows, seed: 1, json: null, svg: null, quiet: false, cpuDefaults: false,
    });
    expect(c.estimate).toEqual({});
  });

  test('CPU: small sizes', () => {
    const c = resolveConfig(parseArgs([]), 'cpu');
    expect(c).toMatchObject({
      backend: 'cpu', seq: [2048, 8192], heads: 4, kvHeads: 1, headDim: 64, iters: 2, cpuDefaults: true,
    });
    expect(c.iters).toBe(CPU_DEFAULTS.iters);
    // sizing anything by hand turns the "CPU defaults" notice off
    expect(resolveConfig(parseArgs(['--seq', '512']), 'cpu').cpuDefaults).toBe(false);
  });

  test('--heads alone picks a kv-head count that divides it', () => {
    expect(resolveConfig(parseArgs(['--heads', '4']), 'cuda').kvHeads).toBe(4);
    expect(resolveConfig(parseArgs(['--heads', '12']), 'cuda').kvHeads).toBe(4);
    expect(resolveConfig(parseArgs(['--heads', '6']), 'cpu').kvHeads).toBe(1);
  });
});

describe('CUDA limits', () => {
  test('f32 and odd head dims are CPU-only', () => {
    expect(usageError(['--dtype', 'f32'], 'cuda').message).toMatch(/--dtype: the CUDA kernels take bf16 or fp16/);
    expect(usageError(['--head-dim', '96'], 'cuda').message).toMatch(/--head-dim: 96 is not supported by the CUDA attention kernels/);
    expect(resolveConfig(parseArgs(['--dtype', 'f32', '--head-dim', '96']), 'cpu').dtype).toBe('f32');
  });
});

describe('several devices and the tau sweep', () => {
  test('--device picks the GPU of the single-device runs', () => {
    expect(resolveConfig(parseArgs(['--device', '1']), 'cuda').device).toBe(1);
    expect(resolveConfig(parseArgs([]), 'cuda').device).toBe(0);
    expect(resolveConfig(parseArgs([]), 'cpu').device).toBeNull();
    expect(usageError(['--device', '1'], 'cpu').message).toBe('--device: picks a GPU; the CPU backend has none');
    expect(usageError(['--device', '-1'], 'cuda').message).toMatch(/--device: '-1' must be at least 0/);
    expect(usageError(['--device', 'x'], 'cuda').option).toBe('--device');
  });

  test('--devices takes GPU indices, cuda:N or cpu entries', () => {
    expect(parseArgs(['--devices', '0,1']).devices).toEqual(['cuda:0', 'cuda:1']);
    expect(parseArgs(['--devices', 'cuda:2, CUDA:3,cuda']).devices).toEqual(['cuda:2', 'cuda:3', 'cuda:0']);
    expect(parseArgs(['--devices=cpu,cpu']).devices).toEqual(['cpu', 'cpu']);
    const c = resolveConfig(parseArgs(['--devices', '0,1', '--device', '1']), 'cuda');
    expect(c).toMatchObject({ devices: ['cuda:0', 'cuda:1'], device: 1, tauSweep: null });
    expect(resolveConfig(parseArgs(['--devices', 'cpu,cpu', '--kv-heads', '2', '--heads', '4']), 'cpu').devices).toEqual(['cpu', 'cpu']);
    expect(resolveConfig(parseArgs([]), 'cuda').devices).toBeNull();
  });

  test('--tau-sweep takes thresholds in (0, 1]', () => {
    const c = resolveConfig(parseArgs(['--tau-sweep', '0.8,0.9,0.95,0.98']), 'cuda');
    expect(c.tauSweep).toEqual([0.8, 0.9, 0.95, 0.98]);
    expect(c.estimate).toEqual({});
    expect(resolveConfig(parseArgs(['--tau-sweep', '1,0.5', '--methods', 'dense,meanpool']), 'cpu').tauSweep).toEqual([1, 0.5]);
    expect(resolveConfig(parseArgs([]), 'cpu').tauSweep).toBeNull();
  });

  test('--gen-threads', () => {
    expect(resolveConfig(parseArgs(['--gen-threads', '0']), 'cpu').genThreads).toBe(0);
    expect(resolveConfig(parseArgs(['--gen-threads', '6']), 'cuda').genThreads).toBe(6);
    expect(resolveConfig(parseArgs([]), 'cuda').genThreads).toBeNull();
  });

  test('usage lists the flags', () => {
    for (const opt of ['--device N', '--devices LIST', '--tau-sweep LIST', '--gen-threads N']) expect(usage()).toContain(opt);
  });

  test.each([
    [['--devices', '0,,1'], 'cuda', /--devices: '0,,1' has an empty entry/],
    [['--devices', 'gpu1'], 'cuda', /--devices: 'gpu1' is not a device \(a GPU index, cuda:N or cpu\)/],
    [['--devices', 'cpu,cpu'], 'cuda', /--devices: 'cpu' is not a GPU/],
    [['--devices', '0,1'], 'cpu', /--devices: 'cuda:0' needs the CUDA backend/],
    [['--devices', '0,1,2', '--kv-heads', '2', '--heads', '8'], 'cuda', /--devices: 3 devices but 2 kv heads/],
    [['--devices', '0,1', '--methods', 'dense'], 'cuda', /--devices: the sharded run times prefill\(\): list prism or meanpool/],
    [['--devices', '0,1', '--tau-sweep', '0.9'], 'cuda', /--devices: give --devices or --tau-sweep, not both/],
    [['--tau-sweep', '0'], 'cuda', /--tau-sweep: '0' must be in \(0, 1\]/],
    [['--tau-sweep', '0.9,1.5'], 'cuda', /--tau-sweep: '1.5' must be in \(0, 1\]/],
    [['--tau-sweep', '0.9,x'], 'cuda', /--tau-sweep: 'x' is not a number/],
    [['--tau-sweep', '0.9,0.9'], 'cuda', /--tau-sweep: 0.9 listed twice/],
    [['--tau-sweep', '0.9,'], 'cuda', /--tau-sweep: '0.9,' has an empty entry/],
    [['--tau-sweep', '0.9', '--tau', '0.8'], 'cuda', /--tau: --tau-sweep sets the thresholds of both bands/],
    [['--tau-sweep', '0.9', '--topk', '8'], 'cuda', /--topk: --tau-sweep sets the thresholds/],
    [['--tau-sweep', '0.9', '--methods', 'prism'], 'cuda', /--tau-sweep: the sweep reports speedup over dense: keep dense in --methods/],
    [['--tau-sweep', '0.9', '--methods', 'dense'], 'cuda', /--tau-sweep: sweeps prism and meanpool/],
    [['--gen-threads', '-1'], 'cpu', /--gen-threads: '-1' must be at least 0/],
  ])('%j on %s', (argv, backend, re) => {
    expect(usageError(argv as string[], backend as 'cuda' | 'cpu').message).toMatch(re);
  });
});

describe('the CPU note says why no GPU runs', () => {
  test('the reason the addon gives, no device, or nothing when a GPU is usable', () => {
    const why = 'no NVIDIA driver found; this binary needs CUDA 13.0 (driver >= 580)';
    expect(noGpuReason({ cudaUnavailableReason: why, devices: [] })).toBe(` (no usable GPU: ${why})`);
    expect(noGpuReason({ cudaUnavailableReason: null, devices: [] })).toBe(' (no usable GPU: no CUDA device found)');
    expect(noGpuReason({ cudaUnavailableReason: null, devices: [{}] })).toBe('');
  });
});

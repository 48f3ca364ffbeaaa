// prism-bench's resolved configuration: resolveConfig() fills the defaults
// for the backend that will run and checks the combination of the options
// parseArgs() (bench/args.ts) read. Pure functions, no I/O.

import { ALL_METHODS, CPU_DEFAULTS, DEFAULT_SEED, GPU_DEFAULTS, UsageError, type BenchRope, type BenchWorkload, type Defaults, type ParsedArgs } from './args';
import type { BenchMethod } from './args';
import { peekQueryHeadDim } from '../lib/workloads/file';
import type { BatchBenchConfig } from './batch-args';

/** Estimation options as passed to the library (only the ones the user set). */
export interface BenchEstimateOptions {
  block?: number;
  highDims?: number;
  lowDims?: number;
  ropeLayout?: BenchRope;
  calibrate?: boolean;
  tempHigh?: number;
  tempLow?: number;
  selection?: 'topp' | 'topk';
  tauHigh?: number;
  tauLow?: number;
  topkHigh?: number;
  topkLow?: number;
}

/** Everything a run needs, every field resolved. */
export interface BenchConfig extends Defaults {
  backend: 'cuda' | 'cpu';
  /** true when the sizes are the CPU defaults (no GPU, nothing sized by the user) */
  cpuDefaults: boolean;
  workload: BenchWorkload;
  files: [string, string, string] | null;
  safetensors: string | null;
  /** --dtype was given (the file workload otherwise keeps the stored dtype) */
  dtypeGiven: boolean;
  methods: BenchMethod[];
  estimate: BenchEstimateOptions;
  seed: number;
  /** GPU index of the single-device runs (cuda backend); null on the CPU */
  device: number | null;
  /** Devices the heads are split over for the sharded prefill ('cuda:N' or 'cpu'); null: no sharded run */
  devices: string[] | null;
  /** Top-p thresholds swept (both bands) for Prism and mean-pool; null: no sweep */
  tauSweep: number[] | null;
  /** Worker threads generating the structured workload; null: chosen from the CPU count */
  genThreads: number | null;
  /** Ragged-batch / chunked-prefill benchmarks instead of the per-length table; null: none (set by resolveBatchBench) */
  batchBench: BatchBenchConfig | null;
  json: string | null;
  svg: string | null;
  quiet: boolean;
}

/**
 * Fills the defaults for the backend that will run (`backend` is the resolved
 * one: 'cuda' when a GPU is used) and checks the combination. Throws UsageError.
 */
export function resolveConfig(p: ParsedArgs, backend: 'cuda' | 'cpu'): BenchConfig {
  const d = backend === 'cuda' ? GPU_DEFAULTS : CPU_DEFAULTS;
  const workload = resolveWorkload(p);
  const heads = p.heads ?? d.heads;
  const kvHeads = p.kvHeads ?? (p.heads !== undefined ? gcd(heads, d.kvHeads) : d.kvHeads);
  if (workload !== 'file' && heads % kvHeads !== 0) {
    throw new UsageError(`--heads ${heads} is not a multiple of --kv-heads ${kvHeads}`, '--kv-heads');
  }
  // File inputs bring their own head dim (read from the Q header here, so that
  // --high-dims / --low-dims and the resolved options in the report use it).
  const headDim = p.headDim ?? (workload === 'file' ? (peekQueryHeadDim({ files: p.files, safetensors: p.safetensors }) ?? d.headDim) : d.headDim);
  if (headDim % 2 !== 0) throw new UsageError(`${headDim} is odd; RoPE pairs need an even head dimension`, '--head-dim');
  if (workload === 'structured' && headDim < 4) {
    throw new UsageError(`${headDim} is too small for the structured workload (at least 4: its RoPE pairs hold a sharp and a slow band; --workload random takes 2)`, '--head-dim');
  }
  const dtype = p.dtype ?? d.dtype;
  if (backend === 'cuda') {
    if (dtype === 'f32') throw new UsageError('the CUDA kernels take bf16 or fp16 inputs (f32 runs on --backend cpu)', '--dtype');
    if (workload !== 'file' && headDim !== 64 && headDim !== 128) {
      throw new UsageError(`${headDim} is not supported by the CUDA attention kernels (64 or 128)`, '--head-dim');
    }
  }
  checkEstimateFlags(p, headDim);
  checkDevices(p, backend, workload, kvHeads);
  checkTauSweep(p);

  const userSized = [p.seq, p.batch, p.heads, p.kvHeads, p.headDim].some((v) => v !== undefined);
  return {
    backend,
    cpuDefaults: backend === 'cpu' && !userSized && workload !== 'file',
    workload,
    files: p.files ?? null,
    safetensors: p.safetensors ?? null,
    seq: workload === 'file' ? [] : (p.seq ?? [...d.seq]),
    batch: p.batch ?? d.batch,
    heads,
    kvHeads,
    headDim,
    dtype,
    dtypeGiven: p.dtype !== undefined,
    methods: p.methods ?? [...ALL_METHODS],
    estimate: estimateOptions(p),
    warmup: p.warmup ?? d.warmup,
    iters: p.iters ?? d.iters,
    recallRows: p.recallRows ?? d.recallRows,
    seed: p.seed ?? DEFAULT_SEED,
    device: backend === 'cuda' ? (p.device ?? 0) : null,
    devices: p.devices ?? null,
    tauSweep: p.tauSweep ?? null,
    genThreads: p.genThreads ?? null,
    batchBench: null,
    json: p.json ?? null,
    svg: p.svg ?? null,
    quiet: p.quiet,
  };
}

/** Throws UsageError when one of `options` ([flag, value]) was given: `why` says what excludes it. */
function reject(options: ReadonlyArray<readonly [string, unknown]>, why: string): void {
  for (const [opt, v] of options) if (v !== undefined) throw new UsageError(why, opt);
}

/** The workload, and the input files it needs (or refuses). */
function resolveWorkload(p: ParsedArgs): BenchWorkload {
  if (p.files && p.safetensors) throw new UsageError('give either --files or --safetensors, not both', '--safetensors');
  const workload: BenchWorkload = p.workload ?? (p.files || p.safetensors ? 'file' : 'structured');
  if (workload === 'file' && !p.files && !p.safetensors) {
    throw new UsageError('the file workload needs --files q.npy,k.npy,v.npy or --safetensors FILE', '--workload');
  }
  if (workload !== 'file' && (p.files || p.safetensors)) {
    throw new UsageError(`input files need --workload file (got --workload ${workload})`, p.files ? '--files' : '--safetensors');
  }
  if (workload === 'file') {
    reject(
      [['--seq', p.seq], ['--batch', p.batch], ['--heads', p.heads], ['--kv-heads', p.kvHeads], ['--head-dim', p.headDim]],
      'the shape comes from the input files with --workload file; drop this option',
    );
  }
  return workload;
}

/** Selection flags that exclude each other; band dims within the head dim. */
function checkEstimateFlags(p: ParsedArgs, headDim: number): void {
  if (p.topk !== undefined) {
    reject([['--tau', p.tau], ['--tau-high', p.tauHigh], ['--tau-low', p.tauLow]], 'top-p thresholds do not apply with --topk; give one or the other');
  }
  if (p.tau !== undefined && (p.tauHigh !== undefined || p.tauLow !== undefined)) {
    throw new UsageError('give --tau or --tau-high/--tau-low, not both', '--tau');
  }
  if (p.calibrate && (p.tempHigh !== undefined || p.tempLow !== undefined)) {
    throw new UsageError('fixed temperatures need --no-calibrate', p.tempHigh !== undefined ? '--temp-high' : '--temp-low');
  }
  for (const [opt, dims] of [['--high-dims', p.highDims], ['--low-dims', p.lowDims]] as const) {
    if (dims !== undefined && (dims === 0 || dims % 2 !== 0 || dims > headDim)) {
      throw new UsageError(`${dims} must be even, at least 2 and at most --head-dim (${headDim})`, opt);
    }
  }
}

/** --device and --devices against the backend and the kv heads. */
function checkDevices(p: ParsedArgs, backend: 'cuda' | 'cpu', workload: BenchWorkload, kvHeads: number): void {
  if (p.device !== undefined && backend !== 'cuda') throw new UsageError('picks a GPU; the CPU backend has none', '--device');
  if (!p.devices) return;
  const want = backend === 'cuda' ? 'cuda' : 'cpu';
  const bad = p.devices.find((x) => (want === 'cuda' ? !x.startsWith('cuda:') : x !== 'cpu'));
  if (bad !== undefined) {
    throw new UsageError(
      want === 'cuda' ? `'${bad}' is not a GPU: with a GPU the heads are split over GPUs (${p.devices.length} listed)` : `'${bad}' needs the CUDA backend; on the CPU backend list cpu entries (e.g. cpu,cpu)`,
      '--devices',
    );
  }
  if (workload !== 'file' && p.devices.length > kvHeads) {
    throw new UsageError(`${p.devices.length} devices but ${kvHeads} kv heads: every device needs at least one kv head`, '--devices');
  }
  if (p.methods && !p.methods.some((m) => m !== 'dense')) {
    throw new UsageError('the sharded run times prefill(): list prism or meanpool in --methods', '--devices');
  }
  if (p.tauSweep) throw new UsageError('give --devices or --tau-sweep, not both (run them separately)', '--devices');
}

/** --tau-sweep: no thresholds of its own, dense and a sparse method to compare. */
function checkTauSweep(p: ParsedArgs): void {
  if (!p.tauSweep) return;
  reject([['--tau', p.tau], ['--tau-high', p.tauHigh], ['--tau-low', p.tauLow], ['--topk', p.topk]], '--tau-sweep sets the thresholds of both bands; drop this option');
  if (p.methods && !p.methods.includes('dense')) throw new UsageError('the sweep reports speedup over dense: keep dense in --methods', '--tau-sweep');
  if (p.methods && !p.methods.some((m) => m !== 'dense')) throw new UsageError('sweeps prism and meanpool: list at least one in --methods', '--tau-sweep');
}

/** The estimation options the user set, as the library names them. */
function estimateOptions(p: ParsedArgs): BenchEstimateOptions {
  const estimate: BenchEstimateOptions = {};
  if (p.block !== undefined) estimate.block = p.block;
  if (p.highDims !== undefined) estimate.highDims = p.highDims;
  if (p.lowDims !== undefined) estimate.lowDims = p.lowDims;
  if (p.rope !== undefined) estimate.ropeLayout = p.rope;
  if (!p.calibrate) {
    estimate.calibrate = false;
    if (p.tempHigh !== undefined) estimate.tempHigh = p.tempHigh;
    if (p.tempLow !== undefined) estimate.tempLow = p.tempLow;
  }
  if (p.topk !== undefined) {
    estimate.selection = 'topk';
    estimate.topkHigh = p.topk;
    estimate.topkLow = p.topk;
  } else {
    const th = p.tauHigh ?? p.tau;
    const tl = p.tauLow ?? p.tau;
    if (th !== undefined) estimate.tauHigh = th;
    if (tl !== undefined) estimate.tauLow = tl;
  }
  return estimate;
}

function gcd(a: number, b: number): number {
  while (b) [a, b] = [b, a % b];
  return a;
}

type GpuFacts = { cudaUnavailableReason: string | null; devices: readonly unknown[] };

/** Why no GPU can run (the addon's reason, or no device), or null when one can. */
export function gpuUnavailableReason(info: GpuFacts): string | null {
  if (info.cudaUnavailableReason !== null) return info.cudaUnavailableReason;
  return info.devices.length === 0 ? 'no CUDA device found' : null;
}

/** Why no GPU runs, for the CPU notes: '' when a GPU is usable (the CPU was asked for). */
export function noGpuReason(info: GpuFacts): string {
  const why = gpuUnavailableReason(info);
  return why === null ? '' : ` (no usable GPU: ${why})`;
}

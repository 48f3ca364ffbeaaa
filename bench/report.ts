// Results of a benchmark run: their types, statistics and the stdout table.
// The JSON document's validator: report-schema.ts; the SVG charts: charts.ts
// (both re-exported here).

import type { BenchMethod } from './args';
import type { BenchConfig } from './config';
import { formatSize } from './args';

export { validateReport } from './report-schema';
export { renderChart, renderPareto } from './charts';

export const JSON_SCHEMA_ID = 'prism-bench/1';

/** How the FLOP figures are counted (copied into the JSON). */
export const FLOP_NOTE =
  'Causal work 4 * d * Hq * batch * (Nq*(Nk-Nq) + Nq^2/2) FLOPs (= 4*N^2*d*Hq/2 per batch for Nq = Nk). ' +
  'tflopsEffective = dense causal FLOPs / total time (estimation + attention): the dense-equivalent rate. ' +
  'tflopsComputed = FLOPs of the selected tiles (dense FLOPs x selected/visible query-key pairs) / attention time: ' +
  'the rate of the kernel on the work it does. For dense both are equal.';

export interface RecallStats {
  /** rows sampled */
  rows: number;
  mean: number;
  min: number;
  /** 10th percentile */
  p10: number;
}

export interface MethodResult {
  method: BenchMethod;
  /** median estimation ms; null for dense (no estimation) */
  estimationMs: number | null;
  /** median attention ms */
  attentionMs: number;
  /** estimationMs + attentionMs */
  totalMs: number;
  estimationTimesMs: number[];
  attentionTimesMs: number[];
  /** selected visible blocks / visible blocks (1 for dense) */
  density: number;
  /** selected / visible query-key pairs (token level; 1 for dense) */
  pairDensity: number;
  tflopsEffective: number;
  tflopsComputed: number;
  /** dense total / this total; null when dense was not run */
  speedup: number | null;
  recall: RecallStats | null;
  /** ||O - O_dense|| / ||O_dense||; null when dense was not run */
  relError: number | null;
  /** mean (t_high, t_low) over batch and heads; null for dense */
  temperatures: { high: number; low: number } | null;
  /**
   * prefill() as a server calls it (one native call, no mask returned, output
   * reused): median time from the call to the promise's resolution, and the
   * median GPU time (estimation + attention events) of the same calls; null
   * for dense or when not measured.
   */
  prefillApiMs: number | null;
  prefillGpuMs: number | null;
  /** median over the same calls of (wall time - GPU time): what the host adds */
  prefillOverheadMs: number | null;
}

/** One point of a --tau-sweep: a sparse method at threshold tau (both bands); prefillApiMs/GpuMs are null. */
export interface TauSweepPoint extends MethodResult {
  tau: number;
}

/** The sharded prefill of one sparse method (--devices) against the single-device prefill(). */
export interface ShardedMethodResult {
  method: 'prism' | 'meanpool';
  /** median ms from calling prefillSharded() to its resolution (outputs reused, no masks) */
  wallMs: number;
  wallTimesMs: number[];
  /** per device: median GPU ms of its part (estimation + attention, device clock) */
  deviceMs: number[];
  /** median over the timed runs of the slowest device's GPU ms */
  maxDeviceMs: number;
  /** selected / visible blocks over all heads */
  density: number;
  /** prefill() on the single device (--device): median wall ms and GPU ms; null when not measured */
  singleApiMs: number | null;
  singleGpuMs: number | null;
  /** singleApiMs / wallMs: the speedup of the sharded call over one device */
  speedup: number | null;
  /** singleGpuMs / maxDeviceMs: the same on device clocks */
  gpuSpeedup: number | null;
  /** gathered output bit-identical to the single-device prefill output; null when not compared (outputs above 2^30 elements) */
  identical: boolean | null;
}

export interface ShardedLengthResult {
  devices: string[];
  kvHeads: Array<[number, number]>;
  queryHeads: Array<[number, number]>;
  methods: ShardedMethodResult[];
}

/** How the inputs of a length were made. */
export interface InputsReport {
  /** 'parts': generated in kv-head groups and uploaded part by part; 'whole': whole host arrays */
  mode: 'parts' | 'whole';
  /** worker threads that generated them (0: the main thread) */
  threads: number;
  /** milliseconds to make and upload them */
  ms: number;
}

export interface LengthResult {
  seq: number;
  nq: number;
  nk: number;
  batch: number;
  hq: number;
  hkv: number;
  d: number;
  block: number;
  nqBlocks: number;
  nkBlocks: number;
  /** visible (causal) blocks over batch and heads */
  visibleBlocks: number;
  denseFlops: number;
  methods: MethodResult[];
  /** with --tau-sweep: every (tau, sparse method) point; `methods` then holds dense only */
  tauSweep?: TauSweepPoint[];
  /** with --devices: the sharded prefill */
  sharded?: ShardedLengthResult;
  inputs?: InputsReport;
}

export interface DeviceReport {
  backend: 'cuda' | 'cpu';
  /** GPU name, or the CPU model */
  name: string;
  /** attention path reported by info() for the GPU; 'cpu' on the CPU */
  attentionPath: string;
  cpuThreads: number;
  computeCapability: string | null;
  multiProcessors: number | null;
  totalMemoryBytes: number | null;
  cudaRuntimeVersion: number | string | null;
  cudaDriverVersion: number | string | null;
  node: string;
  platform: string;
  arch: string;
  /** 1-minute load average when the run started (0 where the OS does not report it) */
  loadAverage: number;
  /** with --devices: the devices the heads were split over, with their names */
  shardDevices?: Array<{ device: string; name: string }>;
}

export interface WorkloadReport {
  kind: 'random' | 'structured' | 'file';
  seed: number;
  dtype: string;
  layout: string;
  sources: string[] | null;
}

export interface BenchReport {
  schema: typeof JSON_SCHEMA_ID;
  tool: 'prism-bench';
  version: string;
  timestamp: string;
  argv: string[];
  config: BenchConfig;
  /** estimation options after the library filled its defaults (for d of the run) */
  estimateOptions: Record<string, unknown> | null;
  device: DeviceReport;
  workload: WorkloadReport;
  timing: { warmup: number; iters: number; statistic: 'median'; clock: string };
  flops: string;
  notes: string[];
  results: LengthResult[];
}

// --- statistics --------------------------------------------------------------

export function median(xs: readonly number[]): number {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

export function recallStats(values: ArrayLike<number>): RecallStats {
  const v = Array.from(values).sort((a, b) => a - b);
  const n = v.length;
  if (n === 0) return { rows: 0, mean: NaN, min: NaN, p10: NaN };
  const mean = v.reduce((a, b) => a + b, 0) / n;
  return { rows: n, mean, min: v[0], p10: v[Math.min(n - 1, Math.floor(0.1 * (n - 1)))] };
}

/** Causal attention FLOPs: 4 * d * Hq * batch * (Nq*(Nk-Nq) + Nq^2/2). */
export function causalFlops(batch: number, hq: number, nq: number, nk: number, d: number): number {
  return 4 * d * hq * batch * (nq * (nk - nq) + (nq * nq) / 2);
}

// --- table --------------------------------------------------------------------

function fmtMs(x: number | null): string {
  if (x === null || !Number.isFinite(x)) return '-';
  if (x >= 1000) return x.toFixed(0);
  if (x >= 100) return x.toFixed(1);
  if (x >= 1) return x.toFixed(2);
  return x.toFixed(3);
}

function fmtTflops(x: number): string {
  if (!Number.isFinite(x)) return '-';
  return x >= 100 ? x.toFixed(0) : x >= 1 ? x.toFixed(1) : x.toFixed(3);
}

function fmtPct(x: number): string {
  return Number.isFinite(x) ? `${(x * 100).toFixed(1)}%` : '-';
}

/** 'TFLOP/s', or 'GFLOP/s' when every rate is below 1 TFLOP/s (CPU runs). */
export function flopUnit(results: readonly LengthResult[]): { name: string; scale: number } {
  const max = Math.max(0, ...results.flatMap((r) => r.methods.flatMap((m) => [m.tflopsEffective, m.tflopsComputed])).filter(Number.isFinite));
  return max < 1 ? { name: 'GFLOP/s', scale: 1000 } : { name: 'TFLOP/s', scale: 1 };
}

export function formatTable(results: readonly LengthResult[]): string {
  const unit = flopUnit(results);
  const header = ['N', 'method', 'est ms', 'attn ms', 'total ms', 'api ms', `${unit.name} eff`, `${unit.name} comp`, 'speedup', 'density', 'recall mean', 'recall min', 'rel err'];
  const rows: string[][] = [];
  for (const r of results) {
    const all: Array<MethodResult | TauSweepPoint> = [...r.methods, ...(r.tauSweep ?? [])];
    all.forEach((m, i) => {
      rows.push([
        i === 0 ? formatSize(r.seq) : '',
        'tau' in m ? `${m.method} tau ${m.tau}` : m.method,
        fmtMs(m.estimationMs),
        fmtMs(m.attentionMs),
        fmtMs(m.totalMs),
        fmtMs(m.prefillApiMs),
        fmtTflops(m.tflopsEffective * unit.scale),
        fmtTflops(m.tflopsComputed * unit.scale),
        m.speedup === null ? '-' : `${m.speedup.toFixed(2)}x`,
        fmtPct(m.density),
        m.recall ? m.recall.mean.toFixed(4) : '-',
        m.recall ? m.recall.min.toFixed(4) : '-',
        m.relError === null ? '-' : m.relError === 0 ? '0' : m.relError.toExponential(2),
      ]);
    });
  }
  const widths = header.map((h, c) => Math.max(h.length, ...rows.map((r) => r[c].length)));
  const fmt = (cells: string[]) => cells.map((s, c) => (c < 2 ? s.padEnd(widths[c]) : s.padStart(widths[c]))).join('  ').trimEnd();
  const lines = [fmt(header), widths.map((w) => '-'.repeat(w)).join('  ')];
  let last = '';
  for (const row of rows) {
    if (row[0] !== '' && last !== '') lines.push('');
    lines.push(fmt(row));
    last = row[0] || last;
  }
  return lines.join('\n') + '\n';
}

function fmtSpeedup(x: number | null): string {
  return x === null || !Number.isFinite(x) ? '-' : `${x.toFixed(2)}x`;
}

/** The sharded prefill per length and method ('' when no length has one). */
export function formatShardedTable(results: readonly LengthResult[]): string {
  const withShards = results.filter((r) => r.sharded && r.sharded.methods.length > 0);
  if (withShards.length === 0) return '';
  const header = ['N', 'method', 'devices', '1-dev api ms', 'sharded ms', 'speedup', '1-dev GPU ms', 'max dev GPU ms', 'GPU speedup', 'per-device GPU ms', 'density', 'identical'];
  const rows: string[][] = [];
  for (const r of withShards) {
    const sh = r.sharded!;
    sh.methods.forEach((m, i) => {
      rows.push([
        i === 0 ? formatSize(r.seq) : '',
        m.method,
        sh.devices.join('+'),
        fmtMs(m.singleApiMs),
        fmtMs(m.wallMs),
        fmtSpeedup(m.speedup),
        fmtMs(m.singleGpuMs),
        fmtMs(m.maxDeviceMs),
        fmtSpeedup(m.gpuSpeedup),
        m.deviceMs.map(fmtMs).join(' / '),
        fmtPct(m.density),
        m.identical === null ? '-' : m.identical ? 'yes' : 'NO',
      ]);
    });
  }
  const widths = header.map((h, c) => Math.max(h.length, ...rows.map((row) => row[c].length)));
  const fmt = (cells: string[]) => cells.map((x, c) => (c < 3 ? x.padEnd(widths[c]) : x.padStart(widths[c]))).join('  ').trimEnd();
  return [fmt(header), widths.map((w) => '-'.repeat(w)).join('  '), ...rows.map(fmt)].join('\n') + '\n';
}

export function formatShardedLegend(): string {
  return [
    '1-dev api ms: prefill() on the single device, call to resolution.  sharded ms: prefillSharded() over the devices, call to resolution.',
    'speedup: 1-dev api ms / sharded ms.  GPU ms: estimation + attention on the device clock; max dev: the slowest device; GPU speedup: their ratio.',
    "identical: the gathered sharded output equals the single device's bit for bit ('-': not compared above 2^30 elements).",
  ].join('\n') + '\n';
}

export function formatLegend(): string {
  return [
    'est ms / attn ms: median of the timed runs (native timing); total = est + attn.',
    'api ms: median time from calling prefill() to its resolution (one native call; the JSON holds its GPU time',
    '  and the median over the same calls of wall - GPU time, prefillOverheadMs).',
    'FLOP/s eff: dense causal FLOPs / total ms.  FLOP/s comp: FLOPs of the selected tiles / attn ms.',
    'speedup: dense total / method total.  density: selected / visible (causal) blocks.',
    'recall: exact softmax mass inside the selected blocks on sampled query rows.  rel err: ||O - O_dense|| / ||O_dense||.',
  ].join('\n') + '\n';
}

// Results of a benchmark run: their types, the stdout table, the JSON document
// (and a validator for it), and the SVG chart of speedup and density vs length.

import type { BenchConfig, BenchMethod } from './args';
import { formatSize } from './args';
import { PALETTE, Svg, lineChart, niceTicks } from './svg';

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

// --- JSON validation --------------------------------------------------------------

type Check = (v: unknown) => boolean;
const isNum: Check = (v) => typeof v === 'number' && Number.isFinite(v);
const isNumOrNull: Check = (v) => v === null || isNum(v);
const isStr: Check = (v) => typeof v === 'string';
const isInt: Check = (v) => Number.isSafeInteger(v);
const isBool: Check = (v) => typeof v === 'boolean';

function expectFields(obj: unknown, where: string, fields: Record<string, Check>, errors: string[]): obj is Record<string, unknown> {
  if (typeof obj !== 'object' || obj === null || Array.isArray(obj)) {
    errors.push(`${where}: expected an object`);
    return false;
  }
  const o = obj as Record<string, unknown>;
  for (const [k, check] of Object.entries(fields)) {
    if (!(k in o)) errors.push(`${where}.${k}: missing`);
    else if (!check(o[k])) errors.push(`${where}.${k}: bad value ${JSON.stringify(o[k])}`);
  }
  return true;
}

/**
 * Checks a parsed prism-bench JSON document against the schema above.
 * Returns the list of problems (empty when valid).
 */
export function validateReport(doc: unknown): string[] {
  const errors: string[] = [];
  if (
    !expectFields(doc, '$', {
      schema: (v) => v === JSON_SCHEMA_ID,
      tool: (v) => v === 'prism-bench',
      version: isStr,
      timestamp: (v) => isStr(v) && !Number.isNaN(Date.parse(v as string)),
      argv: (v) => Array.isArray(v) && v.every(isStr),
      config: (v) => typeof v === 'object' && v !== null,
      estimateOptions: (v) => v === null || typeof v === 'object',
      device: (v) => typeof v === 'object' && v !== null,
      workload: (v) => typeof v === 'object' && v !== null,
      timing: (v) => typeof v === 'object' && v !== null,
      flops: isStr,
      notes: (v) => Array.isArray(v) && v.every(isStr),
      results: Array.isArray,
    }, errors)
  ) {
    return errors;
  }
  const d = doc as unknown as BenchReport;
  expectFields(d.config, '$.config', {
    backend: (v) => v === 'cuda' || v === 'cpu',
    workload: (v) => v === 'random' || v === 'structured' || v === 'file',
    seq: (v) => Array.isArray(v) && v.every(isInt),
    batch: isInt, heads: isInt, kvHeads: isInt, headDim: isInt,
    dtype: (v) => v === 'bf16' || v === 'fp16' || v === 'f32',
    methods: (v) => Array.isArray(v) && v.length > 0,
    estimate: (v) => typeof v === 'object' && v !== null,
    warmup: isInt, iters: isInt, recallRows: isInt, seed: isInt,
  }, errors);
  // Fields added with the sharded run and the sweep (absent in older documents).
  const optional: Record<string, Check> = {
    device: (v) => v === null || isInt(v),
    devices: (v) => v === null || (Array.isArray(v) && v.length > 0 && v.every(isStr)),
    tauSweep: (v) => v === null || (Array.isArray(v) && v.length > 0 && v.every((t) => isNum(t) && (t as number) > 0 && (t as number) <= 1)),
    genThreads: (v) => v === null || isInt(v),
  };
  for (const [k, check] of Object.entries(optional)) {
    const v = (d.config as unknown as Record<string, unknown>)[k];
    if (v !== undefined && !check(v)) errors.push(`$.config.${k}: bad value ${JSON.stringify(v)}`);
  }
  const shardDevices = (d.device as unknown as Record<string, unknown>)?.shardDevices;
  if (shardDevices !== undefined && !(Array.isArray(shardDevices) && shardDevices.every((x) => typeof x === 'object' && x !== null && isStr((x as { device: unknown }).device) && isStr((x as { name: unknown }).name)))) {
    errors.push(`$.device.shardDevices: bad value ${JSON.stringify(shardDevices)}`);
  }
  expectFields(d.device, '$.device', {
    backend: (v) => v === 'cuda' || v === 'cpu',
    name: isStr, attentionPath: isStr, cpuThreads: isInt,
    node: isStr, platform: isStr, arch: isStr, loadAverage: isNum,
  }, errors);
  expectFields(d.workload, '$.workload', { kind: isStr, seed: isInt, dtype: isStr, layout: isStr }, errors);
  expectFields(d.timing, '$.timing', { warmup: isInt, iters: isInt, statistic: (v) => v === 'median', clock: isStr }, errors);
  d.results.forEach((r, i) => {
    const w = `$.results[${i}]`;
    if (!expectFields(r, w, {
      seq: isInt, nq: isInt, nk: isInt, batch: isInt, hq: isInt, hkv: isInt, d: isInt, block: isInt,
      nqBlocks: isInt, nkBlocks: isInt, visibleBlocks: isInt, denseFlops: isNum, methods: Array.isArray,
    }, errors)) return;
    r.methods.forEach((m, j) => checkMethod(m, `${w}.methods[${j}]`, errors));
    if (r.tauSweep !== undefined) {
      if (!Array.isArray(r.tauSweep)) errors.push(`${w}.tauSweep: expected an array`);
      else {
        r.tauSweep.forEach((m, j) => {
          const wm = `${w}.tauSweep[${j}]`;
          if (!checkMethod(m, wm, errors)) return;
          if (!(isNum(m.tau) && m.tau > 0 && m.tau <= 1)) errors.push(`${wm}.tau: bad value ${JSON.stringify(m.tau)}`);
          if (m.method === 'dense') errors.push(`${wm}.method: the sweep holds sparse methods`);
        });
      }
    }
    if (r.sharded !== undefined) checkSharded(r.sharded, `${w}.sharded`, errors);
    if (r.inputs !== undefined) {
      expectFields(r.inputs, `${w}.inputs`, { mode: (v) => v === 'parts' || v === 'whole', threads: isInt, ms: isNum }, errors);
    }
  });
  void isBool;
  return errors;
}

const isRange: Check = (v) => Array.isArray(v) && v.length === 2 && v.every(isInt) && (v[0] as number) < (v[1] as number);

/** Checks one method's figures; false when it is not an object of the right fields. */
function checkMethod(m: MethodResult, wm: string, errors: string[]): boolean {
  if (!expectFields(m, wm, {
    method: (v) => v === 'dense' || v === 'prism' || v === 'meanpool',
    estimationMs: isNumOrNull, attentionMs: isNum, totalMs: isNum,
    estimationTimesMs: (v) => Array.isArray(v) && v.every(isNum),
    attentionTimesMs: (v) => Array.isArray(v) && v.length > 0 && v.every(isNum),
    density: (v) => isNum(v) && (v as number) >= 0 && (v as number) <= 1,
    pairDensity: (v) => isNum(v) && (v as number) >= 0 && (v as number) <= 1,
    tflopsEffective: isNum, tflopsComputed: isNum,
    speedup: isNumOrNull,
    recall: (v) => v === null || (typeof v === 'object' && isInt((v as RecallStats).rows)),
    relError: isNumOrNull,
    prefillApiMs: isNumOrNull,
    prefillGpuMs: isNumOrNull,
    prefillOverheadMs: isNumOrNull,
    temperatures: (v) => v === null || (typeof v === 'object' && isNum((v as { high: number }).high) && isNum((v as { low: number }).low)),
  }, errors)) return false;
  if (m.recall && m.recall.rows > 0) {
    for (const k of ['mean', 'min', 'p10'] as const) {
      const x = m.recall[k];
      if (!(isNum(x) && x >= -1e-6 && x <= 1 + 1e-6)) errors.push(`${wm}.recall.${k}: bad value ${JSON.stringify(x)}`);
    }
  }
  if (m.method === 'dense' && m.estimationMs !== null) errors.push(`${wm}.estimationMs: dense has no estimation`);
  if (m.method !== 'dense' && m.estimationMs === null) errors.push(`${wm}.estimationMs: missing for ${m.method}`);
  return true;
}

function checkSharded(sh: ShardedLengthResult, w: string, errors: string[]): void {
  if (!expectFields(sh, w, {
    devices: (v) => Array.isArray(v) && v.length > 0 && v.every(isStr),
    kvHeads: (v) => Array.isArray(v) && v.every(isRange),
    queryHeads: (v) => Array.isArray(v) && v.every(isRange),
    methods: Array.isArray,
  }, errors)) return;
  if (sh.kvHeads.length !== sh.devices.length || sh.queryHeads.length !== sh.devices.length) {
    errors.push(`${w}: one kv and one query head range per device`);
  }
  sh.methods.forEach((m, j) => {
    const wm = `${w}.methods[${j}]`;
    if (!expectFields(m, wm, {
      method: (v) => v === 'prism' || v === 'meanpool',
      wallMs: isNum,
      wallTimesMs: (v) => Array.isArray(v) && v.length > 0 && v.every(isNum),
      deviceMs: (v) => Array.isArray(v) && v.every(isNum),
      maxDeviceMs: isNum,
      density: (v) => isNum(v) && (v as number) >= 0 && (v as number) <= 1,
      singleApiMs: isNumOrNull, singleGpuMs: isNumOrNull, speedup: isNumOrNull, gpuSpeedup: isNumOrNull,
      identical: (v) => v === null || isBool(v),
    }, errors)) return;
    if (m.deviceMs.length !== sh.devices.length) errors.push(`${wm}.deviceMs: one figure per device`);
  });
}

// --- SVG chart ----------------------------------------------------------------------

const METHOD_COLORS: Record<BenchMethod, string> = { dense: '#555555', prism: PALETTE[0], meanpool: PALETTE[1] };

/**
 * Speedup over dense (left) and density + recall (right) vs sequence length,
 * and with --devices the sharded prefill's speedup over one device (third
 * panel). With --tau-sweep: the Pareto picture instead (renderPareto).
 */
export function renderChart(report: Pick<BenchReport, 'results' | 'device' | 'config'>): string {
  if (report.results.some((r) => (r.tauSweep?.length ?? 0) > 0)) return renderPareto(report);
  const results = report.results;
  const lengths = results.map((r) => r.seq);
  const methods = [...new Set(results.flatMap((r) => r.methods.map((m) => m.method)))].filter((m) => m !== 'dense');
  const sharded = results.filter((r) => r.sharded && r.sharded.methods.length > 0);
  const PW = 490;
  const W = PW * (sharded.length > 0 ? 3 : 2);
  const H = 400;
  const svg = new Svg(W, H, 'prism-bench: speedup and density vs sequence length');
  const xTicks = [...new Set(lengths)].sort((a, b) => a - b).map((n) => ({ value: n, label: formatSize(n) }));

  const speedSeries = methods.map((m) => ({
    name: m,
    color: METHOD_COLORS[m],
    points: results.flatMap((r) => {
      const x = r.methods.find((mm) => mm.method === m);
      return x && x.speedup !== null ? [[r.seq, x.speedup] as [number, number]] : [];
    }),
  }));
  const maxSpeed = Math.max(1.2, ...speedSeries.flatMap((s) => s.points.map((p) => p[1]))) * 1.1;
  const yTicks = niceTicks(0, maxSpeed, 5).map((v) => ({ value: v, label: `${v}x` }));
  lineChart(svg, {
    x: 0, y: 24, width: PW, height: H - 44,
    title: 'Speedup over dense (total time)',
    xLabel: 'sequence length', yLabel: 'speedup',
    xLog2: true, xTicks,
    yMin: 0, yMax: yTicks[yTicks.length - 1]?.value ?? maxSpeed, yTicks,
    hlines: [{ value: 1, label: 'dense' }],
    series: speedSeries, legend: 'bottom-right',
  });

  const densSeries = methods.flatMap((m, i) => [
    {
      name: `${m} density`,
      color: METHOD_COLORS[m] ?? PALETTE[i],
      points: results.flatMap((r) => {
        const x = r.methods.find((mm) => mm.method === m);
        return x ? [[r.seq, x.density * 100] as [number, number]] : [];
      }),
    },
    {
      name: `${m} recall`,
      color: METHOD_COLORS[m] ?? PALETTE[i],
      dash: '5 4',
      points: results.flatMap((r) => {
        const x = r.methods.find((mm) => mm.method === m);
        return x && x.recall && x.recall.rows > 0 ? [[r.seq, x.recall.mean * 100] as [number, number]] : [];
      }),
    },
  ]);
  const pctTicks = [0, 20, 40, 60, 80, 100].map((v) => ({ value: v, label: `${v}%` }));
  lineChart(svg, {
    x: PW, y: 24, width: PW, height: H - 44,
    title: 'Block density (solid) and attention-mass recall (dashed)',
    xLabel: 'sequence length', yLabel: 'percent',
    xLog2: true, xTicks,
    yMin: 0, yMax: 105, yTicks: pctTicks,
    series: densSeries.filter((s) => s.points.length > 0), legend: 'bottom-left',
  });

  if (sharded.length > 0) {
    const devices = sharded[0].sharded!.devices;
    const shardMethods = [...new Set(sharded.flatMap((r) => r.sharded!.methods.map((m) => m.method)))];
    const series = shardMethods.flatMap((m) => [
      {
        name: `${m} (wall)`,
        color: METHOD_COLORS[m],
        points: sharded.flatMap((r) => {
          const x = r.sharded!.methods.find((mm) => mm.method === m);
          return x && x.speedup !== null ? [[r.seq, x.speedup] as [number, number]] : [];
        }),
      },
      {
        name: `${m} (GPU time)`,
        color: METHOD_COLORS[m],
        dash: '5 4',
        points: sharded.flatMap((r) => {
          const x = r.sharded!.methods.find((mm) => mm.method === m);
          return x && x.gpuSpeedup !== null ? [[r.seq, x.gpuSpeedup] as [number, number]] : [];
        }),
      },
    ]);
    const maxS = Math.max(devices.length, 1.2, ...series.flatMap((x) => x.points.map((p) => p[1]))) * 1.1;
    const ticks = niceTicks(0, maxS, 5).map((v) => ({ value: v, label: `${v}x` }));
    lineChart(svg, {
      x: 2 * PW, y: 24, width: PW, height: H - 44,
      title: `Prefill over ${devices.join(' + ')}: speedup over one device`,
      xLabel: 'sequence length', yLabel: 'speedup',
      xLog2: true, xTicks: [...new Set(sharded.map((r) => r.seq))].sort((a, b) => a - b).map((n) => ({ value: n, label: formatSize(n) })),
      yMin: 0, yMax: ticks[ticks.length - 1]?.value ?? maxS, yTicks: ticks,
      hlines: [{ value: 1, label: 'one device' }, { value: devices.length, label: `ideal: ${devices.length} devices` }],
      series: series.filter((x) => x.points.length > 0), legend: 'bottom-right',
    });
  }

  svg.text(W / 2, 16, caption(report), { 'text-anchor': 'middle', 'font-size': 12, fill: '#444' });
  return svg.toString();
}

function caption(report: Pick<BenchReport, 'device' | 'config'>): string {
  const c = report.config;
  const dev = report.device;
  const where = dev.backend === 'cuda' ? `${dev.name} (attention path ${dev.attentionPath})` : `${dev.name}, ${dev.cpuThreads} CPU threads`;
  const pl = (n: number, w: string) => `${n} ${w}${n === 1 ? '' : 's'}`;
  return (
    `${where} | batch ${c.batch}, ${pl(c.heads, 'q head')}, ${pl(c.kvHeads, 'kv head')}, d ${c.headDim}, ${c.dtype}, ` +
    `${c.workload} workload`
  );
}

/**
 * The --tau-sweep picture: per length, attention-mass recall (mean over the
 * sampled rows) against speedup over dense, one polyline per method through
 * its thresholds, each point labelled with its tau.
 */
export function renderPareto(report: Pick<BenchReport, 'results' | 'device' | 'config'>): string {
  const panels = report.results.filter((r) => (r.tauSweep?.length ?? 0) > 0);
  const PW = 490;
  const PH = 400;
  const cols = Math.min(3, panels.length);
  const rows = Math.ceil(panels.length / cols);
  const W = PW * cols;
  const H = 24 + PH * rows;
  const svg = new Svg(W, H, 'prism-bench: attention-mass recall vs speedup over dense, per top-p threshold');
  panels.forEach((r, idx) => {
    const methods = [...new Set(r.tauSweep!.map((p) => p.method))];
    const series = methods.map((m) => {
      const pts = r.tauSweep!.filter((p) => p.method === m && p.speedup !== null && p.recall !== null && p.recall.rows > 0).sort((a, b) => a.tau - b.tau);
      return {
        name: m,
        color: METHOD_COLORS[m],
        points: pts.map((p) => [p.speedup!, p.recall!.mean] as [number, number]),
        labels: pts.map((p) => `τ ${p.tau}`),
        // prism's labels above its points, meanpool's below: points of equal tau often sit close
        labelOffset: (m === 'meanpool' ? [6, 14] : [6, -6]) as [number, number],
      };
    });
    const xs = series.flatMap((x) => x.points.map((p) => p[0]));
    const ys = series.flatMap((x) => x.points.map((p) => p[1]));
    const x0 = xs.length ? Math.min(1, ...xs) : 0;
    const x1 = xs.length ? Math.max(...xs) * 1.12 : 2;
    const y0 = ys.length ? Math.max(0, Math.min(...ys) - 0.02) : 0;
    const xTicks = niceTicks(Math.floor(x0 * 2) / 2, x1, 5).map((v) => ({ value: v, label: `${v}x` }));
    const yTicks = niceTicks(y0, 1, 5).filter((v) => v <= 1 + 1e-9).map((v) => ({ value: v, label: v.toFixed(v >= 0.99 ? 3 : 2) }));
    lineChart(svg, {
      x: (idx % cols) * PW, y: 24 + Math.floor(idx / cols) * PH, width: PW, height: PH - 20,
      title: `N=${formatSize(r.seq)}: recall vs speedup over dense`,
      xLabel: 'speedup over dense (total time)', yLabel: 'attention-mass recall (mean)',
      xTicks, xMin: xTicks[0]?.value ?? x0, xMax: xTicks[xTicks.length - 1]?.value ?? x1,
      // headroom above recall 1 for the labels of the top points
      yMin: yTicks[0]?.value ?? y0, yMax: 1 + 0.06 * (1 - (yTicks[0]?.value ?? y0)), yTicks,
      series: series.filter((x) => x.points.length > 0), legend: 'bottom-left',
    });
  });
  svg.text(W / 2, 16, caption(report), { 'text-anchor': 'middle', 'font-size': 12, fill: '#444' });
  return svg.toString();
}

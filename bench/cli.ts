#!/usr/bin/env node
// prism-bench: dense attention, Prism and mean-pool selection side by side.
// Exit codes: 0 done, 1 runtime failure (device, files, library), 2 bad command line.

import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { FIELD_TO_FLAG, USAGE_HINT, UsageError, formatSize, parseArgs, usage } from './args';
import { gpuUnavailableReason, noGpuReason, resolveConfig } from './config';
import type { BenchConfig } from './config';
import { resolveBatchBench } from './batch-args';
import { Progress } from './progress';
import { FLOP_NOTE, JSON_SCHEMA_ID, formatLegend, formatShardedLegend, formatShardedTable, formatTable, renderChart } from './report';
import type { BenchReport, DeviceReport } from './report';

/** The package version from the nearest package.json above this file. */
export function packageVersion(): string {
  let dir = __dirname;
  for (let up = 0; up < 5; up++) {
    const f = path.join(dir, 'package.json');
    if (fs.existsSync(f)) {
      try {
        const pkg = JSON.parse(fs.readFileSync(f, 'utf8')) as { name?: string; version?: string };
        if (pkg.version) return pkg.version;
      } catch {
        /* keep looking */
      }
    }
    dir = path.dirname(dir);
  }
  return 'unknown';
}

function plural(n: number, what: string): string {
  return `${n} ${what}${n === 1 ? '' : 's'}`;
}

export function cpuModel(): string {
  const cpus = os.cpus();
  return cpus.length > 0 ? cpus[0].model.trim().replace(/\s+/g, ' ') : `${os.arch()} CPU`;
}

interface Io {
  out: (s: string) => void;
  err: (s: string) => void;
  stderr: NodeJS.WriteStream | { isTTY?: boolean; columns?: number; write(s: string): unknown };
}

/** Runs the CLI; resolves to the exit code. */
export async function main(argv: string[], io: Io): Promise<number> {
  let cfg: BenchConfig;
  try {
    const parsed = parseArgs(argv);
    if (parsed.help) {
      io.out(usage());
      return 0;
    }
    if (parsed.version) {
      io.out(`prism-bench ${packageVersion()}\n`);
      return 0;
    }
    // The library (and its native addon) loads only now.
    const lib = await import('./lib');
    const info = lib.info();
    const noGpu = gpuUnavailableReason(info);
    let backend: 'cuda' | 'cpu';
    if (parsed.backend === 'cuda') {
      if (noGpu !== null) {
        io.err(`prism-bench: --backend cuda: no usable GPU (${noGpu})\n`);
        return 1;
      }
      backend = 'cuda';
    } else if (parsed.backend === 'cpu') {
      backend = 'cpu';
    } else {
      backend = noGpu === null ? 'cuda' : 'cpu';
    }
    cfg = resolveConfig(parsed, backend);
    cfg.batchBench = resolveBatchBench(parsed, cfg);
    if (backend === 'cuda') {
      const gpus = info.devices; // usable: backend cuda means noGpu is null
      if (cfg.device !== null && cfg.device >= gpus.length) {
        throw new UsageError(`cuda:${cfg.device} is not present (${plural(gpus.length, 'CUDA device')}: 0..${gpus.length - 1})`, '--device');
      }
      const missing = cfg.devices?.find((d) => Number(d.slice(5)) >= gpus.length);
      if (missing !== undefined) throw new UsageError(`${missing} is not present (${plural(gpus.length, 'CUDA device')}: 0..${gpus.length - 1})`, '--devices');
    }
    let resolved: ReturnType<typeof lib.resolveEstimateOptions>;
    try {
      resolved = lib.resolveEstimateOptions({ ...cfg.estimate }, cfg.headDim);
    } catch (e) {
      const u = asUsageError(e);
      // --tau sets both bands' thresholds: name the flag the user gave
      if (u instanceof UsageError && parsed.tau !== undefined && (u.option === '--tau-high' || u.option === '--tau-low')) {
        throw new UsageError(u.detail, '--tau');
      }
      throw u;
    }
    // Each threshold of a sweep as the library takes it, before anything runs.
    for (const tau of cfg.tauSweep ?? []) {
      try {
        lib.resolveEstimateOptions({ ...cfg.estimate, tauHigh: tau, tauLow: tau }, cfg.headDim);
      } catch (e) {
        throw new UsageError(`${tau}: ${(e as Error).message}`, '--tau-sweep');
      }
    }
    checkOutputPaths(cfg);
    if (cfg.batchBench) return await (await import('./batch-cli')).runBatchCli(cfg, resolved, info, argv, io);
    return await runAndReport(cfg, resolved, info, argv, io);
  } catch (e) {
    if (e instanceof UsageError) {
      io.err(`prism-bench: ${e.message}\n${USAGE_HINT}\n`);
      return 2;
    }
    const err = e as Error;
    io.err(`prism-bench: ${err && err.message ? err.message : String(e)}\n`);
    if (process.env.PRISM_BENCH_DEBUG && err && err.stack) io.err(err.stack + '\n');
    return 1;
  }
}

/** Library option errors (TypeError/RangeError naming a field) as usage errors naming our flag. */
function asUsageError(e: unknown): Error {
  if (!(e instanceof TypeError || e instanceof RangeError)) return e as Error;
  const msg = e.message;
  for (const [field, flag] of Object.entries(FIELD_TO_FLAG)) {
    if (new RegExp(`\\b${field}\\b`).test(msg)) return new UsageError(msg, flag);
  }
  return new UsageError(msg);
}

async function runAndReport(
  cfg: BenchConfig, resolved: ReturnType<typeof import('./lib').resolveEstimateOptions>, info: import('./lib').InfoLike,
  argv: string[], io: Io,
): Promise<number> {
  const { runBench, describeDevice } = await import('./run');
  const { defaultGenThreads } = await import('./inputs');
  const device = describeDevice(info, cfg.backend, cpuModel(), cfg.device ?? 0);
  if (cfg.devices) {
    device.shardDevices = cfg.devices.map((d) => ({ device: d, name: d === 'cpu' ? device.name : (info.devices[Number(d.slice(5))]?.name ?? 'unknown') }));
  }
  const genThreads = cfg.genThreads ?? defaultGenThreads();
  const notes: string[] = [];
  if (cfg.backend === 'cpu') {
    const threads = device.cpuThreads || os.cpus().length;
    if (cfg.cpuDefaults) {
      notes.push(
        `No GPU in use${noGpuReason(info)}: running on the CPU backend (${threads} threads) with small CPU defaults ` +
        `(seq ${cfg.seq.map(formatSize).join(',')}, ${plural(cfg.heads, 'q head')}, ${plural(cfg.kvHeads, 'kv head')}, d ${cfg.headDim}, ` +
        `${cfg.iters} timed runs). These are CPU figures, not GPU ones.`,
      );
    } else {
      notes.push(`Running on the CPU backend (${threads} threads). These are CPU figures, not GPU ones.`);
    }
  }
  if (cfg.backend === 'cpu' && device.loadAverage > (device.cpuThreads || os.cpus().length)) {
    notes.push(`The system load average (${device.loadAverage}) exceeds the CPU threads: other work competes for the cores, so CPU timings are unreliable.`);
  }
  if (cfg.devices) {
    notes.push(
      `Sharded prefill: the heads split by kv-head groups over ${cfg.devices.join(', ')} (prefillSharded), timed as prefill() is on ` +
        `${cfg.backend === 'cuda' ? `cuda:${cfg.device}` : 'the CPU'} alone: outputs reused, no masks; speedup = one device's prefill() wall time / the sharded call's.`,
    );
    if (cfg.backend === 'cpu') notes.push('The CPU "devices" share the same cores: the sharded CPU figures test the code path, not a speedup.');
  }
  if (cfg.tauSweep) {
    notes.push(`Tau sweep: ${cfg.methods.filter((m) => m !== 'dense').join(' and ')} at tau ${cfg.tauSweep.join(', ')} (both bands) on the same inputs; speedup over dense total time.`);
  }
  if (cfg.workload === 'random') {
    notes.push('Random Gaussian inputs have no structure: nearly every block is selected, so density, recall and speedup say little about selection quality. Use --workload structured or real Q/K/V (--files).');
  }

  const progress = new Progress(io.stderr, { quiet: cfg.quiet });
  const header: string[] = [];
  const devLine =
    cfg.backend === 'cuda'
      ? `Device: cuda:${cfg.device ?? 0} ${device.name} (sm_${(device.computeCapability ?? '?').replace('.', '')}, ${device.multiProcessors ?? '?'} SMs), attention path: ${device.attentionPath}`
      : `Device: CPU ${device.name}, ${device.cpuThreads || os.cpus().length} threads, attention path: cpu`;
  header.push(`prism-bench ${packageVersion()}`);
  header.push(devLine);
  io.out(header.join('\n') + '\n');

  let run;
  try {
    run = await runBench(cfg, { progress, device: cfg.backend === 'cuda' ? `cuda:${cfg.device ?? 0}` : 'cpu', resolved, genThreads });
  } finally {
    progress.clear();
  }
  notes.push(...run.notes);

  const shapeLine =
    `Shape: batch ${cfg.batch}, ${plural(cfg.heads, 'q head')}, ${plural(cfg.kvHeads, 'kv head')}, d ${cfg.headDim}, ${cfg.dtype}, block ${resolved.block}, ` +
    `${cfg.workload} workload${run.sources ? ` (${run.sources.join(', ')})` : ` (seed ${cfg.seed})`}; ` +
    `selection ${String(resolved.selection)}${resolved.selection === 'topk' ? ` k=${String(resolved.topkHigh)}` : cfg.tauSweep ? ` tau swept ${cfg.tauSweep.join(',')}` : ` tau ${String(resolved.tauHigh)}/${String(resolved.tauLow)}`}` +
    `${resolved.calibrate === false ? ', fixed temperatures' : ''}; median of ${cfg.iters} after ${cfg.warmup} warm-up`;
  io.out(shapeLine + '\n');
  for (const n of notes) io.out(`Note: ${n}\n`);
  io.out('\n' + formatTable(run.results) + '\n' + formatLegend());
  const shardedTable = formatShardedTable(run.results);
  if (shardedTable) io.out('\n' + shardedTable + '\n' + formatShardedLegend());

  const report: BenchReport = { ...reportHeader(argv, cfg, resolved, device, notes, run.sources), results: run.results };
  if (cfg.json) {
    writeFile(cfg.json, JSON.stringify(report, null, 2) + '\n', '--json');
    io.out(`Wrote ${cfg.json}\n`);
  }
  if (cfg.svg) {
    writeFile(cfg.svg, renderChart(report), '--svg');
    io.out(`Wrote ${cfg.svg}\n`);
  }
  return 0;
}

/**
 * The fields of a JSON report that every benchmark fills alike: the tool, the
 * command line and configuration, the device, the workload and the timing.
 */
export function reportHeader(
  argv: string[],
  cfg: BenchConfig,
  resolved: Record<string, unknown>,
  device: DeviceReport,
  notes: string[],
  sources: string[] | null,
): Omit<BenchReport, 'results'> {
  return {
    schema: JSON_SCHEMA_ID,
    tool: 'prism-bench',
    version: packageVersion(),
    timestamp: new Date().toISOString(),
    argv: [...argv],
    config: cfg,
    // a sweep runs the thresholds of config.tauSweep, not the resolved default
    estimateOptions: cfg.tauSweep ? { ...resolved, tauHigh: null, tauLow: null } : { ...resolved },
    device,
    workload: { kind: cfg.workload, seed: cfg.seed, dtype: cfg.dtype, layout: 'bhnd', sources },
    timing: { warmup: cfg.warmup, iters: cfg.iters, statistic: 'median', clock: cfg.backend === 'cuda' ? 'cuda-events' : 'steady-clock' },
    flops: FLOP_NOTE,
    notes,
  };
}

/**
 * Checks before the run that `file` (given to `option`) can be written: its
 * folder (made here if missing) is writable, and it is not a folder itself.
 * A path that fails only at the end would throw away the whole measurement.
 */
export function checkOutputPath(file: string, option: string): void {
  const full = path.resolve(file);
  try {
    if (fs.existsSync(full) && fs.statSync(full).isDirectory()) throw new UsageError(`${file} is a folder, not a file`, option);
    let ancestor = path.dirname(full);
    while (!fs.existsSync(ancestor)) ancestor = path.dirname(ancestor);
    if (!fs.statSync(ancestor).isDirectory()) throw new UsageError(`cannot write ${file}: ${ancestor} is a file, not a folder`, option);
    fs.mkdirSync(path.dirname(full), { recursive: true });
    fs.accessSync(path.dirname(full), fs.constants.W_OK);
    if (fs.existsSync(full)) fs.accessSync(full, fs.constants.W_OK);
  } catch (e) {
    if (e instanceof UsageError) throw e;
    throw new UsageError(`cannot write ${file}: ${(e as Error).message}`, option);
  }
}

/** --json and --svg: writable, and neither the other nor an input file (which they would overwrite). */
function checkOutputPaths(cfg: BenchConfig): void {
  const outputs = ([['--json', cfg.json], ['--svg', cfg.svg]] as const).filter((o): o is readonly ['--json' | '--svg', string] => !!o[1]);
  for (const [option, file] of outputs) checkOutputPath(file, option);
  const inputs = [...(cfg.files ?? []), ...(cfg.safetensors ? [cfg.safetensors] : [])];
  const same = (a: string, b: string): boolean => {
    if (path.resolve(a) === path.resolve(b)) return true;
    try {
      const [x, y] = [fs.statSync(a), fs.statSync(b)];
      return x.dev === y.dev && x.ino === y.ino; // one file under two names (links)
    } catch {
      return false;
    }
  };
  if (outputs.length === 2 && same(outputs[0][1], outputs[1][1])) {
    throw new UsageError(`${outputs[1][1]} is also the --json file: give the two outputs different files`, '--svg');
  }
  for (const [option, file] of outputs) {
    const input = inputs.find((f) => same(f, file));
    if (input !== undefined) throw new UsageError(`${file} is an input file; writing it would overwrite the input`, option);
  }
}

/** Writes text to file (given to `option`), creating its folder first; a failure names the option. */
export function writeFile(file: string, text: string, option: string): void {
  try {
    fs.mkdirSync(path.dirname(path.resolve(file)), { recursive: true });
    fs.writeFileSync(file, text);
  } catch (e) {
    throw new Error(`${option}: cannot write ${file}: ${(e as Error).message}`, { cause: e });
  }
}

if (require.main === module) {
  // A reader that goes away (`prism-bench | head`) ends the table, not the run:
  // the files are still written and the exit code is the run's.
  let stdoutClosed = false;
  process.stdout.on('error', (e: NodeJS.ErrnoException) => {
    if (e.code !== 'EPIPE' && e.code !== 'ERR_STREAM_DESTROYED') throw e;
    stdoutClosed = true;
  });
  main(process.argv.slice(2), {
    out: (s) => {
      if (!stdoutClosed) process.stdout.write(s);
    },
    err: (s) => process.stderr.write(s),
    stderr: process.stderr,
  }).then(
    (code) => {
      process.exitCode = code;
    },
    (e: unknown) => {
      process.stderr.write(`prism-bench: ${(e as Error)?.message ?? String(e)}\n`);
      process.exitCode = 1;
    },
  );
}

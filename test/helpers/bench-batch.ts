// Shared by the batch-benchmark tests: resolving the batch options as the CLI
// does, running the built CLI, and one tiny CPU run whose JSON report a suite reads.
import { spawnSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { parseArgs } from '../../bench/args';
import { resolveConfig } from '../../bench/config';
import { resolveBatchBench } from '../../bench/batch-args';
import type { BatchBenchConfig } from '../../bench/batch-args';
import type { BatchBenchReport } from '../../bench/batch-report';

export const CLI = path.join(__dirname, '..', '..', 'dist', 'bench', 'cli.js');

export function resolveBatch(argv: string[], backend: 'cuda' | 'cpu' = 'cpu'): BatchBenchConfig | null {
  const p = parseArgs(argv);
  return resolveBatchBench(p, resolveConfig(p, backend));
}

export function runCli(args: string[]): { code: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8', timeout: 120000 });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** A tiny CPU run (made in beforeAll, removed in afterAll): its stdout and JSON report. */
export interface TinyRun {
  dir: string;
  stdout: string;
  report: BatchBenchReport;
}

export function tinyRun(name: string, args: string[]): TinyRun {
  const run = {} as TinyRun;
  beforeAll(() => {
    if (!fs.existsSync(CLI)) throw new Error(`${CLI} is missing: run \`npm run build:ts\` first`);
    run.dir = fs.mkdtempSync(path.join(os.tmpdir(), `prism-bench-${name}-`));
    const json = path.join(run.dir, 'out', `${name}.json`);
    const r = runCli([...args, '--json', json]);
    run.stdout = r.stdout;
    if (r.code !== 0) throw new Error(`prism-bench failed (${r.code}):\n${r.stdout}\n${r.stderr}`);
    expect(r.stderr).toBe('');
    run.report = JSON.parse(fs.readFileSync(json, 'utf8')) as BatchBenchReport;
  });
  afterAll(() => {
    if (run.dir) fs.rmSync(run.dir, { recursive: true, force: true });
  });
  return run;
}

// Terminating worker threads while ops, uploads and downloads are in flight
// must not take the process down, the process keeps computing correctly, and
// the memory the workers held (tensors, workspace; on a GPU the device memory
// by cudaMemGetInfo) comes back.
// The workers run in a child process (test/fixtures/terminate-workers.js) so
// that a crash is an exit code here.
import { spawnSync } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';
import { describeGpu } from './helpers/gpu';

const FIXTURE = path.join(__dirname, 'fixtures', 'terminate-workers.js');
const ENTRY = path.join(__dirname, '..', 'dist', 'lib', 'index.js');

interface Report {
  device: string;
  terminated: number;
  midOp: number;
  midOpWaitsMs: number[];
  maxHeld: number;
  checks: number;
  mismatches: number;
  afterMatches: boolean;
  memoryReleased: boolean;
  memory: Record<string, unknown>;
}

function runChild(device: 'cpu' | 'cuda'): Report {
  if (!fs.existsSync(ENTRY)) throw new Error(`${ENTRY} is missing: run \`npm run build:ts\` first`);
  const r = spawnSync(process.execPath, [FIXTURE, device], { encoding: 'utf8', timeout: 180000 });
  // A native abort shows as a signal or exit code 134 with "terminate called" on stderr.
  expect(r.stderr).not.toMatch(/terminate called|Aborted|FATAL ERROR/);
  const report = JSON.parse(r.stdout.trim().split('\n').pop() || '{}') as Report;
  // The report says which check failed when the exit code is not 0.
  expect({ status: r.status, signal: r.signal, stderr: r.stderr, report }).toEqual({
    status: 0,
    signal: null,
    stderr: '',
    report: expect.objectContaining({ mismatches: 0, afterMatches: true, memoryReleased: true }),
  });
  return report;
}

// Workers held tensors when they were terminated; all of it came back.
/** The child survived every termination, kept computing the same results and released its memory. */
function expectSurvived(r: Report): void {
  expect(r.terminated).toBe(33);
  expect(r.midOp).toBeGreaterThanOrEqual(3);
  expect(r.checks).toBeGreaterThan(0);
  expect(r.mismatches).toBe(0);
  expect(r.afterMatches).toBe(true);
  expect(r.maxHeld).toBeGreaterThan(1 << 20);
  expect(r.memoryReleased).toBe(true);
}

describe('terminating workers on the CPU', () => {
  test('ops, uploads and downloads in flight: the process survives and still computes correctly', () => {
    const r = runChild('cpu');
    expectSurvived(r);
    // The large attention (~150 ms) was still running when terminate() was
    // called in at least one of the three runs that called it once the op was queued.
    expect(r.midOpWaitsMs).toHaveLength(3);
    expect(Math.max(...r.midOpWaitsMs)).toBeGreaterThan(10);
  });
});

describeGpu('terminating workers on the GPU', () => {
  test('ops, uploads and downloads in flight: the process survives and still computes correctly', () => {
    expectSurvived(runChild('cuda'));
  });
});

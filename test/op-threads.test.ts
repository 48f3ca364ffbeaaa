// The addon's calls run on its own threads (csrc/binding/op_threads.h), not
// on libuv's pool: a server's file, DNS, crypto and zlib work is not queued
// behind them; an idle addon keeps no event loop alive, a pending call does;
// exiting or terminating a worker with calls in flight or queued is clean.
// Each scenario runs in a child process (test/fixtures/op-threads.js).
import { spawnSync } from 'child_process';
import * as path from 'path';
import { describeGpu } from './helpers/gpu';

const FIXTURE = path.join(__dirname, 'fixtures', 'op-threads.js');

function child(device: 'cpu' | 'cuda', scenario: string): { status: number | null; signal: string | null; stderr: string; report: Record<string, unknown> | null } {
  const r = spawnSync(process.execPath, [FIXTURE, device, scenario], { encoding: 'utf8', timeout: 120000 });
  const last = r.stdout.trim().split('\n').pop();
  return { status: r.status, signal: r.signal, stderr: r.stderr, report: last ? (JSON.parse(last) as Record<string, unknown>) : null };
}

function scenarios(device: 'cpu' | 'cuda'): void {
  test('a file read is not queued behind eight calls in flight', () => {
    const r = child(device, 'pool');
    expect({ status: r.status, signal: r.signal, stderr: r.stderr }).toEqual({ status: 0, signal: null, stderr: '' });
    // On libuv's four threads the read came after at least five calls had resolved.
    expect(r.report).toEqual({ ops: 8, resolvedAtRead: expect.any(Number), resolvedAtEnd: 8 });
    expect(r.report!.resolvedAtRead as number).toBeLessThan(4);
  });

  test.each(['exit', 'exit-after-cpu'])('process.exit() with calls in flight exits cleanly (%s)', (scenario) => {
    const r = child(device, scenario);
    expect({ status: r.status, signal: r.signal, stderr: r.stderr }).toEqual({ status: 0, signal: null, stderr: '' });
  });

  test('terminating a worker with calls running and queued: the process still computes the same bytes', () => {
    const r = child(device, 'terminate');
    expect({ status: r.status, signal: r.signal, stderr: r.stderr, report: r.report }).toEqual({
      status: 0,
      signal: null,
      stderr: '',
      report: { terminated: true, sameBytes: true },
    });
  });

  test('a pending call keeps the event loop alive until it settles', () => {
    const r = child(device, 'alone');
    expect({ status: r.status, stderr: r.stderr }).toEqual({ status: 0, stderr: '' });
    expect(r.report).toEqual({ settled: true, density: expect.any(Number) });
  });
}

describe('op threads on the CPU', () => scenarios('cpu'));
describeGpu('op threads on the GPU', () => scenarios('cuda'));

// PRISM_CPU_THREADS caps the threads of each CPU op (read once, when the
// package loads its addon, so each case runs in a child process): info().cpuThreads
// reports the cap, bad values are ignored, and the results are the same
// bytes whatever the cap.
import { spawnSync } from 'child_process';
import * as path from 'path';

const ENTRY = path.join(__dirname, '..', 'dist', 'lib', 'index.js');
const PROBE = `
  const p = require(${JSON.stringify(ENTRY)});
  (async () => {
    const [h, n, d] = [4, 300, 32];
    const val = (s) => Float32Array.from({ length: h * n * d }, (_, i) => Math.sin(i * 0.37 + s) + Math.cos(i * 0.011 * s));
    const t = (s) => p.tensor(val(s), { shape: [1, h, n, d], device: 'cpu' });
    const [q, k, v] = await Promise.all([t(1), t(2), t(3)]);
    const r = await p.prefill(q, k, v, { block: 16 });
    const out = Buffer.from((await r.output.toHost()).buffer).toString('base64');
    const mask = Buffer.from((await r.mask.toHost()).mask).toString('base64');
    console.log(JSON.stringify({ threads: p.info().cpuThreads, out, mask }));
  })();
`;

function run(value: string | undefined): { threads: number; out: string; mask: string } {
  const env = { ...process.env };
  delete env.PRISM_CPU_THREADS;
  if (value !== undefined) env.PRISM_CPU_THREADS = value;
  const r = spawnSync(process.execPath, ['-e', PROBE], { env, encoding: 'utf8', timeout: 60000 });
  expect({ status: r.status, stderr: r.stderr }).toEqual({ status: 0, stderr: '' });
  return JSON.parse(r.stdout) as { threads: number; out: string; mask: string };
}

describe('PRISM_CPU_THREADS', () => {
  test('caps the CPU threads; bad values fall back to every core; the bytes do not change', () => {
    const all = run(undefined);
    expect(all.threads).toBeGreaterThanOrEqual(1); // every core the runtime sees
    const one = run('1');
    expect(one.threads).toBe(1);
    expect(run('3').threads).toBe(3);
    for (const bad of ['0', '-2', 'abc', '2.5', '5000', '']) expect(run(bad).threads).toBe(all.threads);
    expect(one.out).toBe(all.out);
    expect(one.mask).toBe(all.mask);
  });
});

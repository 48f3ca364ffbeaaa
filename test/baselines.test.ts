// bench/baselines/torch_sdpa.py, the PyTorch SDPA baseline of the dense
// comparison: its arguments are checked before PyTorch is imported, and a
// machine without PyTorch or a GPU gets a one-line reason, not a traceback.
// Its timings need PyTorch and a GPU; where both exist the last test runs one.

import { spawnSync } from 'child_process';
import * as path from 'path';

const SCRIPT = path.join(__dirname, '..', 'bench', 'baselines', 'torch_sdpa.py');
const python = ['python3', 'python'].find((p) => spawnSync(p, ['--version'], { encoding: 'utf8' }).status === 0);

function run(args: string[]): { code: number | null; stdout: string; stderr: string } {
  const r = spawnSync(python as string, [SCRIPT, ...args], { encoding: 'utf8', timeout: 120000 });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

const maybe = python ? describe : describe.skip;
if (!python) console.warn('[skipped: no python3 on PATH] the PyTorch SDPA baseline script');

maybe('torch_sdpa.py', () => {
  test('--help names every option', () => {
    const r = run(['--help']);
    expect(r.code).toBe(0);
    for (const opt of ['--seq', '--backends', '--heads', '--kv-heads', '--head-dim', '--dtype', '--warmup', '--iters']) {
      expect(r.stdout).toContain(opt);
    }
  });

  test.each([
    [['--backends', 'cudnn,nope'], /unknown backend 'nope'/],
    [['--seq', '32q'], /not a sequence length: '32q'/],
    [['--seq', '0'], /not a sequence length/],
    [['--seq', '32k,'], /not a sequence length: ''/],
    [['--heads', '32', '--kv-heads', '5'], /--kv-heads must divide --heads/],
    [['--iters', '0'], /--iters: expected a positive integer, got '0'/],
    [['--warmup', '-1'], /--warmup: expected an integer >= 0/],
    [['--head-dim', 'x'], /--head-dim: expected a positive integer, got 'x'/],
    [['--dtype', 'f32'], /--dtype: invalid choice: 'f32'/],
  ])('rejects %j with exit status 2 before importing PyTorch', (args, message) => {
    const r = run(args);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(message);
    expect(r.stderr).not.toMatch(/Traceback/);
  });

  test('times one call where PyTorch has a GPU, or says what is missing', () => {
    const r = run(['--seq', '1k', '--backends', 'efficient', '--warmup', '0', '--iters', '1', '--heads', '2', '--kv-heads', '1', '--head-dim', '64']);
    expect(r.stderr).not.toMatch(/Traceback/);
    if (r.code === 0) {
      const line = JSON.parse(r.stdout.trim()) as { backend: string; seq: number; ms: number; timesMs: number[]; tflops: number };
      expect(line).toMatchObject({ backend: 'efficient', seq: 1024 });
      expect(line.timesMs).toHaveLength(1);
      expect(line.ms).toBeGreaterThan(0);
      expect(line.tflops).toBeGreaterThan(0);
    } else {
      expect(r.code).toBe(1);
      expect(r.stderr.trim()).toMatch(/^torch_sdpa\.py needs (PyTorch \(with CUDA\): pip install torch|a CUDA GPU that PyTorch can use)$/);
    }
  });
});

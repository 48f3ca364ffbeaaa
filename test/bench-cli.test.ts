// The compiled prism-bench CLI (dist/bench/cli.js, built by `npm run build:ts`,
// which `npm test` runs first), spawned on the CPU backend with tiny sizes.

import { spawnSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { validateReport } from '../bench/report';
import type { BenchReport } from '../bench/report';
import { Progress } from '../bench/progress';
import { niceTicks } from '../bench/svg';
import { toBFloat16 } from '../lib/dtype';

const CLI = path.join(__dirname, '..', 'dist', 'bench', 'cli.js');
const TINY = ['--backend', 'cpu', '--heads', '2', '--kv-heads', '1', '--head-dim', '64', '--block', '64', '--iters', '1', '--warmup', '0', '--recall-rows', '8'];

let dir: string;
beforeAll(() => {
  if (!fs.existsSync(CLI)) throw new Error(`${CLI} is missing: run \`npm run build:ts\` first`);
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'prism-bench-'));
});
afterAll(() => {
  fs.rmSync(dir, { recursive: true, force: true });
});

function run(args: string[]): { code: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8', timeout: 120000 });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** Runs prism-bench with `args`, which write the JSON report to `json`; throws on a failed run. */
function runReport(args: string[], json: string): { stdout: string; stderr: string; report: BenchReport } {
  const r = run(args);
  if (r.code !== 0) throw new Error(`prism-bench failed (${r.code}):\n${r.stdout}\n${r.stderr}`);
  return { stdout: r.stdout, stderr: r.stderr, report: JSON.parse(fs.readFileSync(json, 'utf8')) as BenchReport };
}

/**
 * Before the tests of the enclosing block, runs prism-bench with `args` plus
 * --json and --svg files named `name` in the temporary folder; the tests read
 * the run's stdout and report from the returned object.
 */
function reportBeforeAll(name: string, args: string[]): { stdout: string; report: BenchReport; svg: () => string } {
  const json = (): string => path.join(dir, `${name}.json`);
  const fx = { stdout: '', report: undefined as unknown as BenchReport, svg: (): string => path.join(dir, `${name}.svg`) };
  beforeAll(() => {
    const r = runReport([...args, '--json', json(), '--svg', fx.svg()], json());
    fx.stdout = r.stdout;
    fx.report = r.report;
  });
  return fx;
}

/** A tag-balance check: every opened element is closed in order (XML-ish well-formedness). */
function checkXml(text: string): void {
  expect(text.startsWith('<?xml')).toBe(true);
  const body = text.replace(/<\?xml[^>]*\?>/, '');
  const stack: string[] = [];
  const re = /<(\/?)([a-zA-Z][\w:-]*)((?:\s+[\w:-]+="[^"<]*")*)\s*(\/?)>/g;
  let m: RegExpExecArray | null;
  let last = 0;
  while ((m = re.exec(body)) !== null) {
    const between = body.slice(last, m.index);
    expect(between).not.toMatch(/[<>]/); // no stray or malformed tags
    last = re.lastIndex;
    if (m[1] === '/') expect(stack.pop()).toBe(m[2]);
    else if (m[4] !== '/') stack.push(m[2]);
  }
  expect(body.slice(last).trim()).toBe('');
  expect(stack).toEqual([]);
  expect(body).toMatch(/^\s*<svg xmlns="http:\/\/www.w3.org\/2000\/svg"/);
  expect(body).not.toMatch(/<script|href=/);
}

describe('command line', () => {
  test('--help prints usage and exits 0', () => {
    const r = run(['--help']);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^Usage: prism-bench/);
    expect(r.stdout).toContain('--seq LIST');
    expect(r.stderr).toBe('');
  });

  test('--version', () => {
    const r = run(['--version']);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^prism-bench \d+\.\d+\.\d+/);
  });

  test.each([
    [['--seq', '0'], /^prism-bench: --seq: '0' must be at least 1\n/],
    [['--seq', 'abc'], /^prism-bench: --seq: 'abc' is not a size/],
    [['--seq', '-4k'], /^prism-bench: --seq: '-4k' is negative/],
    [['--bogus'], /^prism-bench: unknown option '--bogus'/],
    [['--backend', 'cpu', '--heads', '5', '--kv-heads', '2'], /^prism-bench: --kv-heads: --heads 5 is not a multiple of --kv-heads 2/],
    [['--backend', 'cpu', '--block', '100'], /^prism-bench: --block: block must be an integer in \[16, 1024\]/],
    [['--backend', 'cpu', '--device', '0'], /^prism-bench: --device: picks a GPU; the CPU backend has none\n/],
    [['--backend', 'cpu', '--devices', 'cpu,cpu'], /^prism-bench: --devices: 2 devices but 1 kv heads/],
    // the library's timing limits, before any input is made
    [['--backend', 'cpu', '--warmup', '20000'], /^prism-bench: --warmup: '20000' must be at most 10000\n/],
    // output paths that cannot be written, found before the run
    [['--backend', 'cpu', '--json', os.tmpdir()], /^prism-bench: --json: .* is a folder, not a file\n/],
    [['--backend', 'cpu', '--svg', path.join(__filename, 'x.svg')], /^prism-bench: --svg: cannot write .*x\.svg: .*bench-cli\.test\.ts is a file, not a folder\n/],
    [['--backend', 'cpu', '--json', path.join(os.tmpdir(), 'prism-same.out'), '--svg', path.join(os.tmpdir(), '.', 'prism-same.out')],
      /^prism-bench: --svg: .*prism-same\.out is also the --json file: give the two outputs different files\n/],
    [['--backend', 'cpu', '--tau', '1e-300'], /^prism-bench: --tau: tauHigh must be in \[1\.401298464324817e-45/],
    // every threshold of a sweep as the library takes it (float32: at least 2^-149)
    [['--backend', 'cpu', '--tau-sweep', '0.9,1e-300'], /^prism-bench: --tau-sweep: 1e-300: tauHigh must be in \[1\.401298464324817e-45/],
  ])('%j exits 2 with the option named and a usage hint, no stack', (args, re) => {
    const r = run(args as string[]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(re);
    expect(r.stderr).toContain("Run 'prism-bench --help' for usage.");
    expect(r.stderr).not.toMatch(/\n\s+at /);
    expect(r.stdout).toBe('');
  });
});

test('a reader that goes away (| head -1) ends the output quietly: exit 0, no stack', () => {
  const r = spawnSync('bash', ['-c', `"${process.execPath}" "${CLI}" ${TINY.join(' ')} --seq 256,512 --quiet | head -1; echo "rc=\${PIPESTATUS[0]}" >&2`], {
    encoding: 'utf8',
    timeout: 120000,
  });
  expect(r.stdout).toMatch(/^prism-bench \d/);
  expect(r.stderr).toBe('rc=0\n');
});

describe('the chart', () => {
  test('axis ticks cover their range from below and above (points are never drawn off an axis)', () => {
    // e.g. the Pareto panel's speedups from 0.74x: its axis once started at 2x
    expect(niceTicks(0.5, 4.4)[0]).toBeLessThanOrEqual(0.5);
    let seed = 7;
    const rand = () => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
    for (let i = 0; i < 500; i++) {
      const lo = rand() * 10 ** (rand() * 4 - 2);
      const hi = lo + rand() * 10 ** (rand() * 4 - 2) + 1e-6;
      const t = niceTicks(lo, hi, 5);
      expect(t[0]).toBeLessThanOrEqual(lo * (1 + 1e-9));
      expect(t[t.length - 1]).toBeGreaterThanOrEqual(hi * (1 - 1e-9));
      expect(t.length).toBeLessThanOrEqual(8);
    }
  });

  test('lines run from the shortest length to the longest, whatever the order of --seq', () => {
    const svg = path.join(dir, 'order.svg');
    const r = run([...TINY, '--seq', '512,256', '--methods', 'dense,prism', '--svg', svg]);
    expect(r.code).toBe(0);
    const lines = [...fs.readFileSync(svg, 'utf8').matchAll(/<polyline points="([^"]*)"/g)].map((m) => m[1].trim().split(/\s+/).map((p) => Number(p.split(',')[0])));
    expect(lines.length).toBeGreaterThan(0);
    for (const xs of lines) {
      expect(xs.length).toBe(2);
      expect(xs[0]).toBeLessThan(xs[1]);
    }
  });
});

describe('runs on the CPU', () => {
  let report: BenchReport;
  let stdout: string;
  let stderr: string;
  const json = () => path.join(dir, 'out', 'bench.json');
  const svg = () => path.join(dir, 'out', 'bench.svg');

  beforeAll(() => {
    ({ stdout, stderr, report } = runReport([...TINY, '--seq', '256,512', '--json', json(), '--svg', svg()], json()));
  });

  test('table on stdout, nothing on a non-terminal stderr', () => {
    expect(stdout).toMatch(/Device: CPU .*threads, attention path: cpu/);
    expect(stdout).toMatch(/CPU figures, not GPU ones/);
    expect(stdout).toMatch(/^N\s+method\s+est ms\s+attn ms\s+total ms/m);
    for (const m of ['dense', 'prism', 'meanpool']) expect(stdout).toMatch(new RegExp(`^\\s*(256|512)?\\s+${m}\\s`, 'm'));
    expect(stdout).toContain(`Wrote ${json()}`);
    expect(stderr).toBe('');
  });

  test('JSON matches the schema', () => {
    expect(validateReport(report)).toEqual([]);
    expect(report.config).toMatchObject({ backend: 'cpu', seq: [256, 512], heads: 2, kvHeads: 1, headDim: 64, iters: 1, warmup: 0 });
    expect(report.estimateOptions).toMatchObject({ block: 64, method: 'prism', tauHigh: 0.95 });
    expect(report.device.backend).toBe('cpu');
    expect(report.device.cpuThreads).toBeGreaterThan(0);
    expect(report.version).toMatch(/^\d+\.\d+\.\d+/);
    expect(Math.abs(Date.parse(report.timestamp) - Date.now())).toBeLessThan(10 * 60 * 1000);
    expect(report.results.map((r) => r.seq)).toEqual([256, 512]);
  });

  test('figures are consistent', () => {
    for (const r of report.results) {
      expect(r.methods.map((m) => m.method)).toEqual(['dense', 'prism', 'meanpool']);
      expect(r.nqBlocks).toBe(r.seq / 64);
      expect(r.denseFlops).toBe((4 * r.seq * r.seq * 64 * 2) / 2);
      const [dense, ...sparse] = r.methods;
      expect(dense.estimationMs).toBeNull();
      expect(dense.speedup).toBe(1);
      expect(dense.density).toBe(1);
      expect(dense.relError).toBe(0);
      expect(dense.recall!.rows).toBe(8);
      expect(dense.recall!.min).toBeCloseTo(1, 5);
      expect(dense.tflopsEffective).toBeCloseTo(r.denseFlops / dense.attentionMs / 1e9, 6);
      for (const m of sparse) {
        expect(m.totalMs).toBeCloseTo(m.estimationMs! + m.attentionMs, 9);
        expect(m.speedup).toBeCloseTo(dense.totalMs / m.totalMs, 9);
        expect(m.density).toBeGreaterThan(0);
        expect(m.density).toBeLessThanOrEqual(1);
        expect(m.pairDensity).toBeLessThanOrEqual(1);
        expect(m.recall!.mean).toBeGreaterThan(0.5);
        expect(m.relError).toBeGreaterThanOrEqual(0);
        expect(m.relError).toBeLessThan(1);
        expect(m.temperatures).not.toBeNull();
        expect(m.estimationTimesMs).toHaveLength(1);
        expect(m.attentionTimesMs).toHaveLength(1);
      }
    }
  });

  test('SVG is a well-formed, self-contained document', () => {
    const text = fs.readFileSync(svg(), 'utf8');
    checkXml(text);
    expect(text).toContain('Speedup over dense');
    expect(text).toContain('256');
  });
});

describe('several devices: --devices cpu,cpu', () => {
  const fx = reportBeforeAll('sharded', [
    '--backend', 'cpu', '--heads', '4', '--kv-heads', '2', '--head-dim', '64', '--block', '64', '--iters', '2', '--warmup', '0',
    '--recall-rows', '8', '--seq', '256,384', '--devices', 'cpu,cpu',
  ]);

  test('JSON: the sharded prefill per length, identical to one device', () => {
    expect(validateReport(fx.report)).toEqual([]);
    expect(fx.report.config).toMatchObject({ devices: ['cpu', 'cpu'], device: null, tauSweep: null });
    expect(fx.report.device.shardDevices).toEqual([{ device: 'cpu', name: fx.report.device.name }, { device: 'cpu', name: fx.report.device.name }]);
    for (const r of fx.report.results) {
      expect(r.sharded).toMatchObject({ devices: ['cpu', 'cpu'], kvHeads: [[0, 1], [1, 2]], queryHeads: [[0, 2], [2, 4]] });
      expect(r.sharded!.methods.map((m) => m.method)).toEqual(['prism', 'meanpool']);
      for (const m of r.sharded!.methods) {
        const single = r.methods.find((x) => x.method === m.method)!;
        expect(m.identical).toBe(true);
        expect(m.wallTimesMs).toHaveLength(2);
        expect(m.deviceMs).toHaveLength(2);
        expect(m.singleApiMs).toBe(single.prefillApiMs);
        expect(m.speedup).toBeCloseTo(single.prefillApiMs! / m.wallMs, 9);
        expect(m.density).toBeCloseTo(single.density, 9);
      }
      expect(r.inputs).toMatchObject({ mode: 'parts' });
    }
  });

  test('stdout: the sharded table; SVG: the speedup panel', () => {
    expect(fx.stdout).toMatch(/Note: Sharded prefill: the heads split by kv-head groups over cpu, cpu/);
    expect(fx.stdout).toMatch(/^N\s+method\s+devices\s+1-dev api ms\s+sharded ms\s+speedup/m);
    expect(fx.stdout).toMatch(/^256\s+prism\s+cpu\+cpu\s.*\syes$/m);
    const text = fs.readFileSync(fx.svg(), 'utf8');
    checkXml(text);
    expect(text).toContain('Prefill over cpu + cpu: speedup over one device');
  });

  test('the validator catches a broken sharded record', () => {
    const bad = JSON.parse(JSON.stringify(fx.report)) as BenchReport;
    bad.results[0].sharded!.methods[0].deviceMs = [1];
    (bad.results[0].sharded!.methods[1] as unknown as Record<string, unknown>).identical = 'yes';
    bad.results[1].sharded!.kvHeads = [[0, 1]];
    (bad.config as unknown as Record<string, unknown>).devices = [];
    expect(validateReport(bad)).toEqual([
      '$.config.devices: bad value []',
      '$.results[0].sharded.methods[0].deviceMs: one figure per device',
      '$.results[0].sharded.methods[1].identical: bad value "yes"',
      '$.results[1].sharded: one kv and one query head range per device',
    ]);
  });
});

describe('--tau-sweep', () => {
  const fx = reportBeforeAll('sweep', [...TINY, '--seq', '512,768', '--tau-sweep', '0.8,0.95']);

  test('JSON: every (tau, method) point with recall, density and speedup over dense', () => {
    expect(validateReport(fx.report)).toEqual([]);
    expect(fx.report.config.tauSweep).toEqual([0.8, 0.95]);
    expect(fx.report.estimateOptions).toMatchObject({ tauHigh: null, tauLow: null }); // swept, not the default 0.95
    for (const r of fx.report.results) {
      expect(r.methods.map((m) => m.method)).toEqual(['dense']);
      const dense = r.methods[0];
      expect(r.tauSweep!.map((p) => [p.tau, p.method])).toEqual([[0.8, 'prism'], [0.8, 'meanpool'], [0.95, 'prism'], [0.95, 'meanpool']]);
      for (const p of r.tauSweep!) {
        expect(p.speedup).toBeCloseTo(dense.totalMs / p.totalMs, 9);
        expect(p.recall!.rows).toBe(8);
        expect(p.recall!.min).toBeLessThanOrEqual(p.recall!.mean);
        expect(p.density).toBeGreaterThan(0);
        expect(p.prefillApiMs).toBeNull();
      }
      // a higher threshold keeps at least as many blocks
      for (const m of ['prism', 'meanpool']) {
        const [lo, hi] = [0.8, 0.95].map((t) => r.tauSweep!.find((p) => p.tau === t && p.method === m)!);
        expect(hi.density).toBeGreaterThanOrEqual(lo.density);
      }
    }
  });

  test('stdout rows per threshold; SVG: a Pareto panel per length, points labelled by tau', () => {
    expect(fx.stdout).toMatch(/selection topp tau swept 0\.8,0\.95/);
    expect(fx.stdout).toMatch(/^\s+prism tau 0\.8\s/m);
    expect(fx.stdout).toMatch(/^\s+meanpool tau 0\.95\s/m);
    const text = fs.readFileSync(fx.svg(), 'utf8');
    checkXml(text);
    expect(text).toContain('N=512: recall vs speedup over dense');
    expect(text).toContain('N=768: recall vs speedup over dense');
    expect(text.match(/>τ 0\.8</g)).toHaveLength(4);
    expect(text.match(/<polyline/g)!.length).toBeGreaterThanOrEqual(4);
  });

  test('the validator checks the sweep points', () => {
    const bad = JSON.parse(JSON.stringify(fx.report)) as BenchReport;
    bad.results[0].tauSweep![0].tau = 0;
    (bad.results[0].tauSweep![1] as unknown as Record<string, unknown>).density = 2;
    (bad.config as unknown as Record<string, unknown>).tauSweep = [1.5];
    expect(validateReport(bad)).toEqual([
      '$.config.tauSweep: bad value [1.5]',
      '$.results[0].tauSweep[0].tau: bad value 0',
      '$.results[0].tauSweep[1].density: bad value 2',
    ]);
  });
});

describe('structured inputs made on worker threads', () => {
  test('--gen-threads 2 gives the figures of --gen-threads 0 (same bytes)', () => {
    const figures = (threads: string) => {
      const out = path.join(dir, `gen${threads}.json`);
      const r = run(['--backend', 'cpu', '--heads', '4', '--kv-heads', '2', '--head-dim', '64', '--block', '64', '--iters', '1', '--warmup', '0',
        '--recall-rows', '8', '--seq', '512', '--methods', 'prism', '--gen-threads', threads, '--json', out]);
      expect(r.code).toBe(0);
      const rep = JSON.parse(fs.readFileSync(out, 'utf8')) as BenchReport;
      const m = rep.results[0].methods[0];
      return { inputs: rep.results[0].inputs!, figures: [m.density, m.pairDensity, m.recall, m.temperatures] };
    };
    const a = figures('0');
    const b = figures('2');
    expect(a.inputs.threads).toBe(0);
    expect(b.inputs.threads).toBe(2);
    expect(b.figures).toEqual(a.figures);
  });
});

describe('workloads', () => {
  test('random says its figures mean little', () => {
    const r = run([...TINY, '--seq', '128', '--methods', 'dense,prism', '--workload', 'random', '--dtype', 'f32']);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/Random Gaussian inputs have no structure/);
    expect(r.stdout).not.toMatch(/meanpool/);
  });

  test('file workload from .npy (bf16 as uint16 bits), no dense', () => {
    const shapes = { q: [2, 128, 64], k: [1, 128, 64], v: [1, 128, 64] };
    const files = (['q', 'k', 'v'] as const).map((name, i) => {
      const n = shapes[name].reduce((a, b) => a * b, 1);
      const x = new Float32Array(n);
      for (let j = 0; j < n; j++) x[j] = Math.sin(j * 0.013 + i) * 2;
      const bits = toBFloat16(x);
      let header = `{'descr': '<u2', 'fortran_order': False, 'shape': (${shapes[name].join(', ')}), }`;
      header = header.padEnd(Math.ceil((10 + header.length + 1) / 64) * 64 - 11, ' ') + '\n';
      const pre = Buffer.from([0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59, 1, 0, header.length & 0xff, header.length >> 8]);
      const f = path.join(dir, `${name}.npy`);
      fs.writeFileSync(f, Buffer.concat([pre, Buffer.from(header, 'latin1'), Buffer.from(bits.buffer)]));
      return f;
    });
    const out = path.join(dir, 'file.json');
    const args = ['--backend', 'cpu', '--files', files.join(','), '--methods', 'prism', '--block', '64', '--iters', '1', '--warmup', '0', '--recall-rows', '4', '--json', out];
    const bad = run(args);
    expect(bad.code).toBe(1);
    expect(bad.stderr).toMatch(/q\.npy: '<u2' holds raw 16-bit values; say what they are \(bfloat16 bits: --dtype bf16/);
    expect(bad.stderr).not.toMatch(/\n\s+at /);
    const r = run([...args, '--dtype', 'bf16']);
    expect(r.code).toBe(0);
    const rep = JSON.parse(fs.readFileSync(out, 'utf8')) as BenchReport;
    expect(validateReport(rep)).toEqual([]);
    expect(rep.workload.sources).toEqual(files);
    expect(rep.config).toMatchObject({ workload: 'file', seq: [128], heads: 2, kvHeads: 1, headDim: 64, dtype: 'bf16' });
    const [prism] = rep.results[0].methods;
    expect(prism.method).toBe('prism');
    expect(prism.speedup).toBeNull();
    expect(prism.relError).toBeNull();
  });

  test('file inputs bring their head dim: band checks and the reported options use it; outputs may not overwrite inputs', () => {
    // d = 128 on the CPU backend, whose default head dim is 64
    const files = (['q', 'k', 'v'] as const).map((name, i) => {
      const shape = [name === 'q' ? 2 : 1, 64, 128];
      const x = new Float32Array(shape.reduce((a, b) => a * b, 1)).map((_, j) => Math.sin(j * 0.017 + i));
      let header = `{'descr': '<f4', 'fortran_order': False, 'shape': (${shape.join(', ')}), }`;
      header = header.padEnd(Math.ceil((10 + header.length + 1) / 64) * 64 - 11, ' ') + '\n';
      const pre = Buffer.from([0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59, 1, 0, header.length & 0xff, header.length >> 8]);
      const f = path.join(dir, `${name}128.npy`);
      fs.writeFileSync(f, Buffer.concat([pre, Buffer.from(header, 'latin1'), Buffer.from(x.buffer)]));
      return f;
    });
    const out = path.join(dir, 'file128.json');
    const base = ['--backend', 'cpu', '--files', files.join(','), '--methods', 'prism', '--block', '16', '--iters', '1', '--warmup', '0', '--recall-rows', '4'];
    const r = run([...base, '--json', out]);
    expect(r.code).toBe(0);
    const rep = JSON.parse(fs.readFileSync(out, 'utf8')) as BenchReport;
    expect(rep.config.headDim).toBe(128);
    expect(rep.estimateOptions).toMatchObject({ highDims: 64, lowDims: 96 }); // the defaults for d 128, which ran
    expect(run([...base, '--high-dims', '64', '--low-dims', '96']).code).toBe(0);
    const tooWide = run([...base, '--high-dims', '130']);
    expect(tooWide.code).toBe(2);
    expect(tooWide.stderr).toMatch(/^prism-bench: --high-dims: 130 must be even, at least 2 and at most --head-dim \(128\)/);
    const before = fs.readFileSync(files[0]);
    const clobber = run([...base, '--svg', files[0]]);
    expect(clobber.code).toBe(2);
    expect(clobber.stderr).toMatch(/^prism-bench: --svg: .*q128\.npy is an input file; writing it would overwrite the input/);
    expect(fs.readFileSync(files[0]).equals(before)).toBe(true);
  });

  test('missing input file: exit 1, clear message', () => {
    const r = run(['--backend', 'cpu', '--files', 'nope-q.npy,nope-k.npy,nope-v.npy']);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^prism-bench: nope-q\.npy: no such file/);
  });
});

describe('progress display', () => {
  function fake(isTTY: boolean) {
    const chunks: string[] = [];
    return { stream: { isTTY, columns: 80, write: (s: string) => chunks.push(s) }, chunks };
  }

  test('rewrites one line on a terminal', () => {
    const { stream, chunks } = fake(true);
    const p = new Progress(stream);
    p.setTotal(2);
    p.next('N=8K dense');
    p.next('N=8K prism');
    p.clear();
    expect(chunks).toHaveLength(3);
    // eslint-disable-next-line no-control-regex -- the terminal escape itself is under test
    expect(chunks[0]).toMatch(/^\r\[1\/2\] N=8K dense {2}\d+\.\ds\x1b\[K$/);
    expect(chunks[1]).toMatch(/^\r\[2\/2\] N=8K prism/);
    expect(chunks[2]).toBe('\r\x1b[K');
  });

  test('silent when not a terminal or with --quiet', () => {
    for (const [tty, quiet] of [[false, false], [true, true]] as const) {
      const { stream, chunks } = fake(tty);
      const p = new Progress(stream, { quiet });
      p.setTotal(1);
      p.next('x');
      p.clear();
      expect(chunks).toEqual([]);
    }
  });

  test('long lines are cut to the terminal width', () => {
    const { stream, chunks } = fake(true);
    new Progress(stream).update('y'.repeat(200));
    expect(chunks[0].replace('\x1b[K', '').length).toBeLessThanOrEqual(80);
  });
});

// The published package works on a machine without compilers: prebuild +
// pack, install the tarball into an empty project offline with scripts off
// and only `node` on PATH, then load it through require() and import().
import { execFileSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';

const root = path.resolve(__dirname, '..');

/** npm's own entry script, so npm can run with a PATH that holds only node. */
function npmCli(): string {
  const fromEnv = process.env.npm_execpath;
  if (fromEnv && /npm-cli\.js$/.test(fromEnv)) return fromEnv;
  for (const dir of (process.env.PATH ?? '').split(path.delimiter)) {
    const candidate = path.join(dir, 'npm');
    if (fs.existsSync(candidate)) {
      const real = fs.realpathSync(candidate);
      const cli = path.join(path.dirname(real), 'npm-cli.js');
      if (fs.existsSync(cli)) return cli;
      if (real.endsWith('.js')) return real;
    }
  }
  throw new Error('cannot find npm-cli.js');
}

function npm(args: string[], cwd: string, env: NodeJS.ProcessEnv = process.env): string {
  return execFileSync(process.execPath, [npmCli(), ...args], { cwd, env, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
}

const SMOKE = `
  const p = PRISM;
  (async () => {
    const [b, hq, hkv, n, d] = [1, 2, 1, 96, 16];
    const val = (len, s) => Float32Array.from({ length: len }, (_, i) => Math.sin(i * 0.37 + s));
    const opts = (h) => ({ shape: [b, h, n, d], device: 'cpu' });
    const q = await p.tensor(val(b * hq * n * d, 1), opts(hq));
    const k = await p.tensor(val(b * hkv * n * d, 2), opts(hkv));
    const v = await p.tensor(val(b * hkv * n * d, 3), opts(hkv));
    const mask = await p.estimate(q, k, { block: 32 });
    const h = await mask.toHost();
    let sinkAndDiagonal = true;
    for (let row = 0; row < b * hq * h.nq; row++) {
      const i = row % h.nq;
      if (!h.mask[row * h.nk] || !h.mask[row * h.nk + i + h.nk - h.nq]) sinkAndDiagonal = false;
    }
    const out = await (await p.attention(q, k, v, mask)).toFloat32();
    console.log(JSON.stringify({
      sinkAndDiagonal,
      finite: out.every(Number.isFinite),
      nonZero: out.some((x) => x !== 0),
      length: out.length,
      napi: p.info().napiVersion,
    }));
  })().catch((e) => { console.error(e); process.exit(1); });
`;
const EXPECTED = { sinkAndDiagonal: true, finite: true, nonZero: true, length: 2 * 96 * 16, napi: 8 };

describe('npm pack', () => {
  let work = '';
  afterAll(() => {
    if (work) fs.rmSync(work, { recursive: true, force: true });
  });

  test('the tarball installs offline without compilers and loads via require and import', () => {
    work = fs.mkdtempSync(path.join(os.tmpdir(), 'prism-pack-'));

    // 1. prebuild (incremental cmake-js build through the node-gyp shim) and pack.
    npm(['run', 'prebuildify'], root);
    const prebuilds = path.join(root, 'prebuilds', `${process.platform}-${process.arch}`);
    expect(fs.readdirSync(prebuilds).some((f) => f.endsWith('.node'))).toBe(true);
    const packed = JSON.parse(npm(['pack', '--json', '--pack-destination', work], root)) as Array<{
      filename: string;
      files: Array<{ path: string }>;
    }>;
    const files = packed[0].files.map((f) => f.path);
    for (const want of [
      'dist/lib/index.js',
      'dist/lib/index.mjs',
      'dist/lib/index.d.ts',
      'dist/lib/testing.js',
      'dist/lib/testing.mjs',
      'CMakeLists.txt',
      'binding.gyp',
      'scripts/install.js',
      'scripts/native-build.js',
      'scripts/cmake/PrismCudaArchs.cmake',
      'lib/index.ts', // the source maps of dist/ point at it
      'csrc/binding/addon.cc',
      'csrc/common/prism_types.h',
      'README.md',
      'docs/building.md',
      'node_modules/node-gyp-build/package.json',
    ]) {
      expect(files).toContain(want);
    }
    expect(files.some((f) => f.startsWith(`prebuilds/${process.platform}-${process.arch}/`) && f.endsWith('.node'))).toBe(true);
    expect(files.some((f) => f.startsWith('build/') || f.startsWith('test/'))).toBe(false);
    // Development files stay out: raw measurement logs, lint and harness scripts.
    expect(files.filter((f) => f.startsWith('docs/results/') || /^scripts\/(lint|native-harnesses|l2-model|check-prebuilds)\.js$/.test(f))).toEqual([]);
    const tarball = path.join(work, packed[0].filename);

    // 2. An empty project and a PATH holding nothing but node: no compiler, no cmake, no npm.
    const project = path.join(work, 'project');
    const bin = path.join(work, 'bin');
    fs.mkdirSync(project);
    fs.mkdirSync(bin);
    fs.symlinkSync(process.execPath, path.join(bin, 'node'));
    fs.writeFileSync(path.join(project, 'package.json'), JSON.stringify({ name: 'consumer', version: '1.0.0', private: true }));
    const env: NodeJS.ProcessEnv = { HOME: process.env.HOME ?? os.homedir(), PATH: bin, LANG: 'C' };
    if (process.env.npm_config_cache) env.npm_config_cache = process.env.npm_config_cache;

    // npm 11 resolves dependency ranges from the registry's full metadata,
    // which a cache filled by `npm ci` (tarballs by lockfile) does not hold. A
    // dry run, which installs nothing, puts it in the cache (from the registry
    // when reachable); the install itself then runs --offline. Without a
    // registry the dry run fails quietly and the install says what is missing.
    const flags = ['--ignore-scripts', '--omit=optional', '--no-audit', '--no-fund'];
    try {
      npm(['install', tarball, '--dry-run', '--prefer-offline', ...flags], project, env);
    } catch {
      // the offline install below reports it
    }
    npm(['install', tarball, '--offline', ...flags], project, env);
    const installed = path.join(project, 'node_modules', 'prism-attention');
    expect(fs.existsSync(path.join(installed, 'dist', 'lib', 'index.js'))).toBe(true);

    // 3. require() from CommonJS.
    const cjs = execFileSync(process.execPath, ['-e', SMOKE.replace('PRISM', "require('prism-attention')")], {
      cwd: project,
      env,
      encoding: 'utf8',
    });
    expect(JSON.parse(cjs)).toEqual(EXPECTED);

    // 4. import() from an ES module.
    fs.writeFileSync(path.join(project, 'load.mjs'), `import * as P from 'prism-attention';\n${SMOKE.replace('PRISM', 'P')}`);
    const esm = execFileSync(process.execPath, ['load.mjs'], { cwd: project, env, encoding: 'utf8' });
    expect(JSON.parse(esm)).toEqual(EXPECTED);

    // 5. The testing entry, both ways: the reference and the workloads live there, not in the main entry.
    const probe = `console.log(JSON.stringify({ grid: typeof T.reference.blockGrid, gen: typeof T.workloads.structuredWorkload, main: 'reference' in M || 'workloads' in M }))`;
    const wantTesting = { grid: 'function', gen: 'function', main: false };
    const cjsTesting = execFileSync(
      process.execPath,
      ['-e', `const T = require('prism-attention/testing'); const M = require('prism-attention'); ${probe}`],
      { cwd: project, env, encoding: 'utf8' },
    );
    expect(JSON.parse(cjsTesting)).toEqual(wantTesting);
    fs.writeFileSync(
      path.join(project, 'testing.mjs'),
      `import * as T from 'prism-attention/testing';\nimport * as M from 'prism-attention';\n${probe}`,
    );
    expect(JSON.parse(execFileSync(process.execPath, ['testing.mjs'], { cwd: project, env, encoding: 'utf8' }))).toEqual(wantTesting);
  }, 900_000); // the prebuild only relinks after `npm ci`, but compiles everything on a cold build dir
});

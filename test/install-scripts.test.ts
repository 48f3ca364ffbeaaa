// The install-time scripts that do not build anything: pruning build/ after a
// build from source in an installed package, and the publish check that the
// Linux x64 prebuild is there. Each runs on a copy in a temporary folder.
import { spawnSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';

const scripts = path.join(__dirname, '..', 'scripts');

function sandbox(): string {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'prism-scripts-'));
  fs.mkdirSync(path.join(root, 'scripts'));
  for (const f of ['native-build.js', 'check-prebuilds.js']) fs.copyFileSync(path.join(scripts, f), path.join(root, 'scripts', f));
  return root;
}

function files(dir: string): string[] {
  return fs.readdirSync(dir, { recursive: true, withFileTypes: true }).filter((e) => e.isFile()).map((e) => path.relative(dir, path.join(e.parentPath, e.name))).sort();
}

describe('install scripts', () => {
  test('pruneBuild keeps build/Release/prism_attention.node and nothing else', () => {
    const root = sandbox();
    for (const f of ['Release/prism_attention.node', 'Release/libprism_cpu.a', 'Release/obj/a.o', 'CMakeCache.txt', 'CMakeFiles/x/y.o']) {
      fs.mkdirSync(path.dirname(path.join(root, 'build', f)), { recursive: true });
      fs.writeFileSync(path.join(root, 'build', f), 'x');
    }
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    (require(path.join(root, 'scripts', 'native-build.js')) as { pruneBuild(): void }).pruneBuild();
    expect(files(path.join(root, 'build'))).toEqual([path.join('Release', 'prism_attention.node')]);
    fs.rmSync(root, { recursive: true, force: true });
  });

  test('pruneBuild leaves a build without the addon alone (a failed build keeps its logs)', () => {
    const root = sandbox();
    fs.mkdirSync(path.join(root, 'build', 'CMakeFiles'), { recursive: true });
    fs.writeFileSync(path.join(root, 'build', 'CMakeFiles', 'CMakeError.log'), 'x');
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    (require(path.join(root, 'scripts', 'native-build.js')) as { pruneBuild(): void }).pruneBuild();
    expect(files(path.join(root, 'build'))).toEqual([path.join('CMakeFiles', 'CMakeError.log')]);
    fs.rmSync(root, { recursive: true, force: true });
  });

  test('with PRISM_CUDA=ON, a build that would fall back to node-gyp (no CUDA) fails and says why', () => {
    const root = sandbox(); // no node_modules: cmake-js is not installed there
    const script = `require(${JSON.stringify(path.join(root, 'scripts', 'native-build.js'))}).buildFromSource()`;
    const r = spawnSync(process.execPath, ['-e', script], { encoding: 'utf8', env: { ...process.env, PRISM_CUDA: 'on' } });
    expect(r.status).not.toBe(0);
    expect(r.stderr).toMatch(/PRISM_CUDA=ON, but (CMake not found|cmake-js not installed[^:]*): the node-gyp fallback builds the CPU backend only/);
    expect(fs.existsSync(path.join(root, 'build'))).toBe(false);
    fs.rmSync(root, { recursive: true, force: true });
  });

  test('check-prebuilds refuses to publish without the Linux x64 binary', () => {
    const root = sandbox();
    const run = () => spawnSync(process.execPath, [path.join(root, 'scripts', 'check-prebuilds.js')], { encoding: 'utf8' });
    let r = run();
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/no prebuilt binary in prebuilds\/linux-x64\/: run `npm run prebuildify` before publishing/);
    const dir = path.join(root, 'prebuilds', 'linux-x64');
    fs.mkdirSync(dir, { recursive: true });
    fs.writeFileSync(path.join(dir, 'prism-attention.node'), '');
    expect(run().status).toBe(1); // empty
    fs.writeFileSync(path.join(dir, 'prism-attention.node'), 'binary');
    r = run();
    expect({ status: r.status, stderr: r.stderr }).toEqual({ status: 0, stderr: '' });
    fs.rmSync(root, { recursive: true, force: true });
  });
});

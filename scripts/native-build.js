'use strict';
// Builds the native addon from source. Used by install.js, build-native.js and
// prebuild-gyp.js so every path configures CMake the same way.
//
//   cmake-js (CMakeLists.txt): CPU backend + CUDA backend when nvcc is found
//   node-gyp (binding.gyp):    CPU-only fallback when CMake is not installed
const { spawnSync } = require('child_process');
const fs = require('fs');
const os = require('os');
const path = require('path');

const root = path.resolve(__dirname, '..');

function log(message) {
  process.stderr.write(`prism-attention: ${message}\n`);
}

function commandWorks(command, args) {
  const r = spawnSync(command, args, { stdio: 'ignore' });
  return !r.error && r.status === 0;
}

function hasCmake() {
  return commandWorks('cmake', ['--version']);
}

function resolveFrom(request) {
  try {
    return require.resolve(request, { paths: [root] });
  } catch {
    return null;
  }
}

function cmakeJsBin() {
  const pkg = resolveFrom('cmake-js/package.json');
  return pkg ? path.join(path.dirname(pkg), 'bin', 'cmake-js') : null;
}

function jobs() {
  const n = Number(process.env.CMAKE_BUILD_PARALLEL_LEVEL);
  if (Number.isInteger(n) && n > 0) return n;
  return typeof os.availableParallelism === 'function' ? os.availableParallelism() : os.cpus().length;
}

function run(command, args, env) {
  const r = spawnSync(command, args, { cwd: root, stdio: 'inherit', env });
  if (r.error) throw r.error;
  if (r.status !== 0) throw new Error(`${path.basename(command)} ${args[0] || ''} failed (exit ${r.status})`);
}

/**
 * Configures (incrementally: an existing build/ is reused) and builds with cmake-js.
 * cuda: 'AUTO' | 'ON' | 'OFF' (default: env PRISM_CUDA or AUTO)
 * archs: CUDA architecture list, or 'release' for the release list
 *        (default: env PRISM_CUDA_ARCHS or 'release')
 */
function buildWithCmake(options = {}) {
  const bin = cmakeJsBin();
  if (!bin) throw new Error('cmake-js is not installed (it is an optional dependency, needed to build from source)');
  const cuda = (options.cuda || process.env.PRISM_CUDA || 'AUTO').toUpperCase();
  const archs = options.archs || process.env.PRISM_CUDA_ARCHS || 'release';
  const common = ['--out', path.join(root, 'build'), ...(options.debug ? ['--debug'] : [])];
  if (options.arch) common.push('--arch', options.arch);
  const env = { ...process.env, CMAKE_BUILD_PARALLEL_LEVEL: String(jobs()) };
  // configure re-applies the options to an existing cache without cleaning,
  // so switching PRISM_CUDA_ARCHS recompiles only what changed.
  run(process.execPath, [bin, 'configure', ...common, `--CDPRISM_CUDA=${cuda}`, `--CDPRISM_CUDA_ARCHS=${archs}`], env);
  run(process.execPath, [bin, 'build', ...common, '--parallel', String(jobs())], env);
}

function nodeGypCommand() {
  // npm exposes its bundled node-gyp to lifecycle scripts.
  const fromNpm = process.env.npm_config_node_gyp;
  if (fromNpm && fs.existsSync(fromNpm)) return [process.execPath, [fromNpm]];
  const local = resolveFrom('node-gyp/bin/node-gyp.js');
  if (local) return [process.execPath, [local]];
  if (commandWorks('node-gyp', ['--version'])) return ['node-gyp', []];
  const bundled = npmBundledNodeGyp();
  return bundled ? [process.execPath, [bundled]] : null;
}

// The node-gyp that ships inside npm, found from the npm on PATH.
function npmBundledNodeGyp() {
  for (const dir of (process.env.PATH || '').split(path.delimiter)) {
    const npm = path.join(dir, 'npm');
    if (!fs.existsSync(npm)) continue;
    const script = path.join(path.dirname(fs.realpathSync(npm)), '..', 'node_modules', 'node-gyp', 'bin', 'node-gyp.js');
    if (fs.existsSync(script)) return script;
  }
  return null;
}

/** CPU-only build through binding.gyp (no CMake, no CUDA). */
function buildWithNodeGyp() {
  const gyp = nodeGypCommand();
  if (!gyp) throw new Error('neither CMake nor node-gyp is available to build the addon');
  const [command, prefix] = gyp;
  const args = [...prefix, 'rebuild', `--jobs=${jobs()}`];
  // Use the running Node's own headers when they ship next to it (no download).
  const headers = path.resolve(path.dirname(process.execPath), '..', 'include', 'node', 'node_api.h');
  if (!process.env.npm_config_nodedir && fs.existsSync(headers)) {
    args.push(`--nodedir=${path.resolve(path.dirname(process.execPath), '..')}`);
  }
  run(command, args, process.env);
}

/** Builds from source: cmake-js when CMake is there, else the node-gyp fallback. */
function buildFromSource(options = {}) {
  const cmake = hasCmake(), cmakeJs = cmakeJsBin() !== null;
  if (cmake && cmakeJs) {
    log('building from source with cmake-js');
    buildWithCmake(options);
    return;
  }
  const why = !cmake ? 'CMake not found' : 'cmake-js not installed (optional dependencies omitted?)';
  // The fallback builds no CUDA: with the GPU backend asked for, say so instead.
  if ((process.env.PRISM_CUDA || '').toUpperCase() === 'ON') {
    throw new Error(`PRISM_CUDA=ON, but ${why}: the node-gyp fallback builds the CPU backend only`);
  }
  log(`${why}: building the CPU-only addon with node-gyp (binding.gyp)`);
  buildWithNodeGyp();
}

/**
 * After a build from source in an installed package: everything in build/
 * but the addon itself goes (object files, the CMake cache: ~95 MB of a
 * CUDA build that nothing reads again).
 */
function pruneBuild() {
  const build = path.join(root, 'build');
  const keep = path.join(build, 'Release', 'prism_attention.node');
  if (!fs.existsSync(keep)) return;
  for (const entry of fs.readdirSync(build)) {
    if (entry !== 'Release') fs.rmSync(path.join(build, entry), { recursive: true, force: true });
  }
  for (const entry of fs.readdirSync(path.join(build, 'Release'))) {
    if (entry !== 'prism_attention.node') fs.rmSync(path.join(build, 'Release', entry), { recursive: true, force: true });
  }
}

module.exports = { root, log, hasCmake, cmakeJsBin, buildWithCmake, buildWithNodeGyp, buildFromSource, pruneBuild };

#!/usr/bin/env node
'use strict';
// `npm run test:native` (and a CI step): builds the native harnesses of
// test/native as the CMake target prism_native_harnesses (-DPRISM_NATIVE_HARNESSES=ON,
// one architecture: sm_90a unless PRISM_HARNESS_ARCHS says otherwise) into
// build/harnesses, then runs attention_plan_check, which needs no GPU. The
// GPU harnesses are only compiled here; run them on a GPU (docs/architecture.md).
//
// Without nvcc or CMake it prints why and exits 0: CI machines may lack them.
const { spawnSync } = require('child_process');
const fs = require('fs');
const os = require('os');
const path = require('path');

const root = path.resolve(__dirname, '..');
const out = path.join(root, 'build', 'harnesses');

function log(message) {
  process.stdout.write(`native harnesses: ${message}\n`);
}

function works(command, args) {
  const r = spawnSync(command, args, { stdio: 'ignore' });
  return !r.error && r.status === 0;
}

/** nvcc from CUDACXX, PATH or the usual install folder; null when there is none. */
function findNvcc() {
  const candidates = [process.env.CUDACXX, 'nvcc', '/usr/local/cuda/bin/nvcc'].filter(Boolean);
  for (const c of candidates) if (works(c, ['--version'])) return c;
  return null;
}

function run(command, args) {
  const r = spawnSync(command, args, { cwd: root, stdio: 'inherit' });
  if (r.error) throw r.error;
  if (r.status !== 0) throw new Error(`${path.basename(command)} ${args.slice(0, 2).join(' ')} failed (exit ${r.status})`);
}

function main() {
  const nvcc = findNvcc();
  if (!nvcc) {
    log('skipped: no nvcc (set CUDACXX or put nvcc on PATH to compile them)');
    return 0;
  }
  if (!works('cmake', ['--version'])) {
    log('skipped: no cmake on PATH');
    return 0;
  }
  const archs = process.env.PRISM_HARNESS_ARCHS || 'sm_90a';
  const jobs = typeof os.availableParallelism === 'function' ? os.availableParallelism() : os.cpus().length;
  log(`building with ${nvcc} for ${archs} into ${path.relative(root, out)}`);
  run('cmake', [
    '-S', root, '-B', out,
    '-DCMAKE_BUILD_TYPE=Release',
    `-DCMAKE_CUDA_COMPILER=${nvcc}`,
    '-DPRISM_CUDA=ON',
    `-DPRISM_CUDA_ARCHS=${archs}`,
    '-DPRISM_NATIVE_HARNESSES=ON',
  ]);
  run('cmake', ['--build', out, '--target', 'prism_native_harnesses', '--parallel', String(jobs)]);
  const bin = path.join(out, 'native');
  const built = fs.readdirSync(bin).sort();
  log(`built ${built.join(', ')} in ${path.relative(root, bin)}`);
  // The plan check is host code only: it runs anywhere.
  run(path.join(bin, 'attention_plan_check'), []);
  return 0;
}

try {
  process.exitCode = main();
} catch (e) {
  log(e instanceof Error ? e.message : String(e));
  process.exitCode = 1;
}

#!/usr/bin/env node
'use strict';
// npm "install" script. A published package ships prebuilds/<platform>-<arch>/;
// when one of them loads here there is nothing to do. Otherwise (or in a git
// checkout, where the sources are what matter) the addon is built from source.
// node-gyp-build's own install command is not used: it always runs node-gyp,
// which cannot build the CUDA backend.
const { spawnSync } = require('child_process');
const fs = require('fs');
const path = require('path');
const { root, log, buildFromSource, pruneBuild } = require('./native-build');

function prebuildLoads() {
  let loader;
  try {
    loader = require.resolve('node-gyp-build', { paths: [root] });
  } catch {
    return false;
  }
  // In a child process: PREBUILDS_ONLY is read when node-gyp-build loads, and
  // a binary that fails to load (wrong libc, ...) must not take us down.
  const code = `require(${JSON.stringify(loader)})(${JSON.stringify(root)})`;
  const r = spawnSync(process.execPath, ['-e', code], {
    env: { ...process.env, PREBUILDS_ONLY: '1' },
    stdio: 'ignore',
  });
  return !r.error && r.status === 0;
}

function main() {
  const forced = process.env.PRISM_BUILD_FROM_SOURCE === '1';
  const checkout = fs.existsSync(path.join(root, '.git'));
  if (!forced && !checkout && prebuildLoads()) {
    log('using the prebuilt binary');
    return;
  }
  buildFromSource();
  // An installed package keeps only the addon; a checkout keeps build/ for incremental rebuilds.
  if (!checkout) pruneBuild();
}

try {
  main();
} catch (e) {
  log(`could not build the native addon: ${e.message}`);
  log('see docs/building.md (CMake >= 3.25 and a C++17 compiler; nvcc for the CUDA backend)');
  process.exit(1);
}

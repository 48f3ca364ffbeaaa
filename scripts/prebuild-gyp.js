#!/usr/bin/env node
'use strict';
// Stands in for node-gyp when prebuildify runs (`npm run prebuildify`): it
// translates prebuildify's `node-gyp rebuild --target=.. --arch=.. --release`
// into an incremental cmake-js build with the full release CUDA architecture
// list. Incremental on purpose: CI that already built the addon during
// `npm ci` only relinks instead of compiling the CUDA kernels again.
// --target is ignored: the addon uses Node-API 8, one binary for every Node.
const fs = require('fs');
const path = require('path');
const { buildWithCmake, log, root } = require('./native-build');

// prebuildify strips build/Release/*.node in place (binutils rewrites the
// file's contents rather than replacing it) and then moves it. A process that
// has that very file loaded (a test runner, a dev server) would see its code
// change under it and crash, so hand prebuildify a fresh copy (new inode).
function detachBuiltAddon(debug) {
  const dir = path.join(root, 'build', debug ? 'Debug' : 'Release');
  for (const name of fs.readdirSync(dir)) {
    if (!name.endsWith('.node')) continue;
    const file = path.join(dir, name);
    fs.copyFileSync(file, `${file}.tmp`);
    fs.renameSync(`${file}.tmp`, file);
  }
}

const args = process.argv.slice(2);
const value = (name) => {
  const hit = args.find((a) => a.startsWith(`--${name}=`));
  return hit ? hit.slice(name.length + 3) : undefined;
};

try {
  const debug = args.includes('--debug');
  buildWithCmake({ archs: 'release', arch: value('arch'), debug });
  detachBuiltAddon(debug);
} catch (e) {
  log(`prebuild failed: ${e.message}`);
  process.exit(1);
}

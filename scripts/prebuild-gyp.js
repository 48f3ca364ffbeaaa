#!/usr/bin/env node
'use strict';
// Stands in for node-gyp when prebuildify runs (`npm run prebuild`): it
// translates prebuildify's `node-gyp rebuild --target=.. --arch=.. --release`
// into an incremental cmake-js build with the full release CUDA architecture
// list. Incremental on purpose: CI that already built the addon during
// `npm ci` only relinks instead of compiling the CUDA kernels again.
// --target is ignored: the addon uses Node-API 8, one binary for every Node.
const { buildWithCmake, log } = require('./native-build');

const args = process.argv.slice(2);
const value = (name) => {
  const hit = args.find((a) => a.startsWith(`--${name}=`));
  return hit ? hit.slice(name.length + 3) : undefined;
};

try {
  buildWithCmake({ archs: 'release', arch: value('arch'), debug: args.includes('--debug') });
} catch (e) {
  log(`prebuild failed: ${e.message}`);
  process.exit(1);
}

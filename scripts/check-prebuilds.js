#!/usr/bin/env node
'use strict';
// npm "prepublishOnly" script: a published tarball must carry the Linux x64
// prebuilt binary that README.md promises (`npm run prebuildify` makes it);
// without it every install would compile from source.
const fs = require('fs');
const path = require('path');

const dir = path.join(__dirname, '..', 'prebuilds', 'linux-x64');
const binaries = fs.existsSync(dir) ? fs.readdirSync(dir).filter((f) => f.endsWith('.node')) : [];
if (binaries.length === 0 || binaries.some((f) => fs.statSync(path.join(dir, f)).size === 0)) {
  process.stderr.write('prism-attention: no prebuilt binary in prebuilds/linux-x64/: run `npm run prebuildify` before publishing\n');
  process.exit(1);
}

#!/usr/bin/env node
'use strict';
// `npm run clean`: removes build outputs (native build tree, dist, prebuilds).
const fs = require('fs');
const path = require('path');

const root = path.resolve(__dirname, '..');
for (const dir of ['build', 'dist', 'prebuilds']) {
  fs.rmSync(path.join(root, dir), { recursive: true, force: true });
}

#!/usr/bin/env node
'use strict';
// `npm run lint`: ESLint over lib/, bench/ and test/, then clang-format
// (--dry-run --Werror, .clang-format at the root) over the C++/CUDA sources of
// csrc/ and test/native/. `node scripts/lint.js --format` rewrites those C++/CUDA
// files in place instead. Exits non-zero when either check finds a problem.
const { spawnSync } = require('child_process');
const fs = require('fs');
const path = require('path');

const root = path.resolve(__dirname, '..');
const CXX = /\.(h|cc|cu|cuh)$/;

/** Files under `dir` (recursively) whose names match CXX, sorted. */
function cxxFiles(dir) {
  const out = [];
  for (const entry of fs.readdirSync(path.join(root, dir), { withFileTypes: true })) {
    const rel = path.join(dir, entry.name);
    if (entry.isDirectory()) out.push(...cxxFiles(rel));
    else if (CXX.test(entry.name)) out.push(rel);
  }
  return out.sort();
}

function clangFormatBinary() {
  return require('clang-format').getNativeBinary();
}

function run(cmd, args, opts = {}) {
  return spawnSync(cmd, args, { cwd: root, encoding: 'utf8', ...opts });
}

function eslint() {
  const bin = path.join(path.dirname(require.resolve('eslint/package.json')), 'bin', 'eslint.js');
  const r = run(process.execPath, [bin, 'lib', 'bench', 'test'], { stdio: 'inherit' });
  return r.status === 0;
}

function clangFormat(files) {
  const bin = clangFormatBinary();
  const unformatted = files.filter((f) => {
    const r = run(bin, ['--style=file', '--dry-run', '--Werror', f]);
    if (r.error) throw r.error;
    return r.status !== 0;
  });
  if (unformatted.length > 0) {
    console.error(`clang-format: ${unformatted.length} of ${files.length} files are not formatted:`);
    for (const f of unformatted) console.error(`  ${f}`);
    console.error('(node scripts/lint.js --format rewrites them)');
  } else {
    console.log(`clang-format: ${files.length} files formatted`);
  }
  return unformatted.length === 0;
}

function main() {
  const files = [...cxxFiles('csrc'), ...cxxFiles(path.join('test', 'native'))];
  if (process.argv.includes('--format')) {
    const r = run(clangFormatBinary(), ['--style=file', '-i', ...files], { stdio: 'inherit' });
    process.exit(r.status === 0 ? 0 : 1);
  }
  const okEslint = eslint();
  const okFormat = clangFormat(files);
  process.exit(okEslint && okFormat ? 0 : 1);
}

main();

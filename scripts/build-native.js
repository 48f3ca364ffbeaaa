#!/usr/bin/env node
'use strict';
// `npm run build:native`: (re)builds build/Release/prism_attention.node from
// source, incrementally. Honours PRISM_CUDA (AUTO|ON|OFF) and PRISM_CUDA_ARCHS.
const { buildFromSource, log } = require('./native-build');

try {
  buildFromSource({ debug: process.argv.includes('--debug') });
} catch (e) {
  log(e.message);
  process.exit(1);
}

#!/usr/bin/env node
'use strict';
// An upper bound for K/V sharing among neighbouring query tiles (what a
// thread-block cluster multicasting the tiles its CTAs share could gain at
// most): the unchanged attention kernel runs selections in which the rows of
// each head, g consecutive query blocks at a time from the last down, all take
// their leader's (highest block's) list, cut to their own visible blocks, with
// their own diagonal added. CTAs that run together then read the same tiles,
// as a perfectly synchronised multicast would have them do, and no tile is
// computed that its row did not select. Prints the time per computed tile
// against dense in the same process. A planning aid (docs/benchmarks.md,
// "sharing K/V among neighbouring query tiles"); its figures are a bound, not
// a kernel's.
//
//   node scripts/list-sharing.js [--seq N] [--rounds R] [--groups 1,2,4] [--device D]
// after `npm run build` (it loads dist/). Defaults: --seq 1048576, --rounds 2,
// --groups 1,2,4, --device cuda:0; the structured workload (32 / 8 heads,
// d 128, bf16, seed 1); with --device cpu, 4 / 1 heads (a smoke test only).
const path = require('path');

function arg(name, def) {
  const i = process.argv.indexOf(name);
  return i >= 0 && i + 1 < process.argv.length ? process.argv[i + 1] : def;
}
const N = Number(arg('--seq', 1048576));
const ROUNDS = Number(arg('--rounds', 2));
const GROUPS = arg('--groups', '1,2,4').split(',').map(Number);
const DEVICE = arg('--device', 'cuda:0');
const CPU = DEVICE === 'cpu';
const HQ = CPU ? 4 : 32;
const HKV = CPU ? 1 : 8;
const D = 128;
const BLOCK = 128;

const median = (a) => [...a].sort((x, y) => x - y)[a.length >> 1];

/** Compact rows in which each group of g query blocks of a head takes its leader's list. */
function sharedLists(host, g) {
  const nq = host.nq;
  const rows = host.batch * host.heads * nq;
  const rowPtr = new Float64Array(rows + 1);
  // Visits each (row, leader list) pair: fn(row, first, end, block) over the
  // leader's entries [first, end) that row `block` sees.
  const each = (fn) => {
    for (let r0 = 0; r0 < rows; r0 += nq) {
      for (let top = nq - 1; top >= 0; top -= g) {
        const first = host.rowPtr[r0 + top];
        const end = host.rowPtr[r0 + top + 1];
        for (let i = top; i > top - g && i >= 0; i--) fn(r0 + i, first, end, i);
      }
    }
  };
  each((row, first, end, i) => {
    let n = 0;
    let diag = false;
    for (let x = first; x < end; x++) {
      const j = host.indices[x];
      if (j <= i) {
        n++;
        diag = diag || j === i;
      }
    }
    rowPtr[row + 1] = n + (diag ? 0 : 1); // counts first, prefix-summed below
  });
  for (let r = 0; r < rows; r++) rowPtr[r + 1] += rowPtr[r];
  const indices = new Int32Array(rowPtr[rows]);
  each((row, first, end, i) => {
    let w = rowPtr[row];
    let diag = false;
    for (let x = first; x < end; x++) {
      const j = host.indices[x];
      if (j <= i) {
        indices[w++] = j;
        diag = diag || j === i;
      }
    }
    if (!diag) indices[w++] = i; // ascending: i follows every j < i
  });
  return { rowPtr, indices };
}

async function main() {
  const prism = require(path.join(__dirname, '..', 'dist', 'lib'));
  const benchLib = require(path.join(__dirname, '..', 'dist', 'bench', 'lib.js'));
  const { buildStructured } = require(path.join(__dirname, '..', 'dist', 'bench', 'inputs.js'));
  const t0 = Date.now();
  const shape = { batch: 1, hq: HQ, hkv: HKV, nq: N, nk: N, d: D, seed: 1, dtype: 'bfloat16' };
  const inp = await buildStructured(benchLib, shape, DEVICE, null, CPU ? 0 : 8);
  const real = await prism.estimate(inp.q, inp.k, { block: BLOCK });
  const host = await real.toHost({ mask: false });
  const masks = new Map();
  for (const g of GROUPS) {
    if (g === 1) {
      masks.set(g, { mask: real, tiles: host.rowPtr[host.rowPtr.length - 1] });
      continue;
    }
    const lists = sharedLists(host, g);
    const opts = { batch: 1, heads: HQ, queryLength: N, keyLength: N, block: BLOCK, device: DEVICE };
    masks.set(g, { mask: await prism.blockMask(lists, opts), tiles: lists.rowPtr[lists.rowPtr.length - 1] });
  }
  console.log(`list sharing: N=${N}, ${HQ} / ${HKV} heads, ${DEVICE}; inputs and selections in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
  const dense = await prism.timeAttention(inp.q, inp.k, inp.v, null, {}, { warmup: 0, iters: 1 });
  const nqb = N / BLOCK;
  const denseNs = (median(dense.timesMs) * 1e6) / ((nqb * (nqb + 1)) / 2) / HQ;
  dense.output.dispose();
  console.log(`  dense: ${dense.timesMs.map((x) => x.toFixed(1)).join(', ')} ms, ${denseNs.toFixed(3)} ns per tile`);
  for (let round = 0; round < ROUNDS; round++) {
    for (const g of GROUPS) {
      const { mask, tiles } = masks.get(g);
      const r = await prism.timeAttention(inp.q, inp.k, inp.v, mask, {}, { warmup: 1, iters: 2 });
      r.output.dispose();
      const ns = (median(r.timesMs) * 1e6) / tiles;
      const ms = r.timesMs.map((x) => x.toFixed(1)).join(', ');
      console.log(`  round ${round}, g = ${g}: ${tiles} tiles, ${ms} ms, ${ns.toFixed(3)} ns per tile, ${(denseNs / ns).toFixed(3)} of dense's rate`);
    }
  }
  for (const { mask } of masks.values()) mask.dispose();
  for (const t of [inp.q, inp.k, inp.v]) t.dispose();
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});

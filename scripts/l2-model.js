#!/usr/bin/env node
'use strict';
// An LRU model of the GPU's L2 under the Hopper attention kernel's persistent
// schedule, fed with real selections: how often the K/V blocks that the
// running CTAs read are still in L2, for several work orders. A planning aid
// for the work order (docs/architecture.md, "Work order"); the figures it
// prints are a model's, not measurements.
//
//   node scripts/l2-model.js [--seq N] [--group G] [--cache BLOCKS] [--ctas P]
//                            [--jitter J] [--segment S] [--band S,K]
//                            [--clusters C1,C2,...]
// after `npm run build` (it loads dist/). Defaults: --seq 262144 (256K
// tokens), kv-head group 0 of the structured workload (32 / 8 heads, d 128,
// seed 1, its four query heads estimated on the CPU backend), a cache of 390
// K+V block pairs (25 MB: half an H200's L2), 132 CTAs, item speeds
// scattered by +-J/2 (0.3; with 0.3 the model gives the hit rates measured
// on an H200 for the first two orders below: 40% and 62%).
//
// The model: each CTA reads one selected key block per time unit (times its
// item's speed factor) and takes the next work item when its list ends; a
// read hits if the block is among the cache's most recently read ones.
// Orders printed:
//   heads side by side   query tile by query tile, the group's heads together
//   head after head      the kernel's order: each head's tiles from the last
//                        down, each list from the diagonal down
//   rotated entries      head after head, each tile entering its list where
//                        its predecessor should have got to (a chain)
//   sorted windows of W  head after head, each window of W items (P and 4P)
//                        run longest list first (the plan's sort_window,
//                        measured on an H200: 62% -> 84% hits at 512K)
//   segment-major        head after head, every list cut into segments of S
//                        tiles, all the head's first segments, then the
//                        second ones, ... (the tiles' softmax state carried
//                        between segments; built and measured on an H200:
//                        95% hits, not faster, docs/benchmarks.md)
//   clusters of C        head after head, C neighbouring query tiles as one
//                        item on C CTAs in lockstep (a thread-block cluster),
//                        walking the union of their lists from the diagonal
//                        down, each union block read once for all C (TMA
//                        multicast); prints the reads and the DRAM misses
//                        against head after head, and the share of the CTAs'
//                        time spent on blocks their own tile selected
//   band                 head after head, CTA k running items k, k + P, ...,
//                        a CTA entering segment s of its list only once every
//                        CTA of its band has entered segment s - K (prints
//                        the time the CTAs spend waiting)
const path = require('path');

function arg(name, def) {
  const i = process.argv.indexOf(name);
  return i >= 0 && i + 1 < process.argv.length ? process.argv[i + 1] : def;
}
const N = Number(arg('--seq', 262144));
const group = Number(arg('--group', 0));
const cacheBlocks = Number(arg('--cache', 390));
const P = Number(arg('--ctas', 132));
const jitter = Number(arg('--jitter', 0.3));
const segment = Number(arg('--segment', 128));
const [bandSeg, bandK] = arg('--band', '128,2').split(',').map(Number);
const clusters = arg('--clusters', '2,4').split(',').map(Number);
const G = 4;
const nq = Math.ceil(N / 128);

/** A deterministic generator in [0, 1). */
function rng(seed) {
  let s = seed >>> 0;
  return () => (s = (Math.imul(s, 1103515245) + 12345) >>> 0) / 4294967296;
}

/**
 * Runs the schedule: `items` lists of key blocks in the order the CTAs take
 * them (dynamically, or statically with `band`). Returns the hit rate and the
 * share of CTA time spent waiting.
 */
function simulate(items, band, slots = P) {
  const ctas = slots; // readers: CTAs, or clusters of CTAs
  const rnd = rng(7);
  const lru = new Map();
  let hits = 0;
  let reads = 0;
  let waited = 0;
  let next = 0;
  const segs = band ? Math.ceil(Math.max(...items.map((l) => l.length)) / band.seg) + 1 : 0;
  const entered = band ? new Int32Array(Math.ceil(items.length / ctas) * segs) : null;
  const bandSize = (b) => Math.min(ctas, items.length - b * ctas);
  const cur = new Int32Array(ctas).fill(-1);
  const pos = new Int32Array(ctas);
  const t = new Float64Array(ctas);
  const speed = new Float64Array(ctas);
  const nth = new Int32Array(ctas);
  const take = (s) => {
    const it = band ? nth[s]++ * ctas + s : next++;
    cur[s] = it < items.length ? it : -1;
    pos[s] = 0;
    speed[s] = 1 + jitter * (rnd() - 0.5);
  };
  for (let s = 0; s < ctas; s++) {
    take(s);
    t[s] = cur[s] < 0 ? Infinity : 2 * rnd();
  }
  let now = 0;
  for (;;) {
    let s = -1;
    let best = Infinity;
    for (let i = 0; i < ctas; i++) {
      if (t[i] < best) {
        best = t[i];
        s = i;
      }
    }
    if (s < 0) break;
    now = best;
    const list = items[cur[s]];
    if (band && pos[s] % band.seg === 0 && pos[s] < list.length) {
      const b = Math.floor(cur[s] / ctas);
      const sg = pos[s] / band.seg;
      if (sg >= band.k && entered[b * segs + sg - band.k] < bandSize(b)) {
        t[s] += 0.25; // poll again
        waited += 0.25;
        continue;
      }
      entered[b * segs + sg]++;
    }
    if (pos[s] < list.length) {
      const blk = list[pos[s]++];
      reads++;
      if (lru.has(blk)) {
        hits++;
        lru.delete(blk);
      } else if (lru.size >= cacheBlocks) {
        lru.delete(lru.keys().next().value);
      }
      lru.set(blk, 1);
      t[s] += speed[s];
    }
    if (pos[s] >= list.length) {
      if (band) {
        const b = Math.floor(cur[s] / ctas);
        for (let x = Math.ceil(list.length / band.seg); x < segs; x++) entered[b * segs + x]++;
      }
      take(s);
      t[s] = cur[s] < 0 ? Infinity : t[s] + 2; // the next item's start
    }
  }
  return { hits: hits / reads, waited: waited / (ctas * now) };
}

/** Each window of `w` items, longest list first (a stable sort, as the kernel's ranks). */
function sortedWindows(items, w) {
  const o = [];
  for (let i = 0; i < items.length; i += w) {
    const win = items.slice(i, i + w).map((l, x) => ({ l, x }));
    win.sort((a, b) => b.l.length - a.l.length || a.x - b.x);
    for (const e of win) o.push(e.l);
  }
  return o;
}

async function main() {
  const lib = require(path.join(__dirname, '..', 'dist', 'lib'));
  const { structuredGenerator } = require(path.join(__dirname, '..', 'dist', 'lib', 'workloads', 'structured'));
  const gen = structuredGenerator({ hq: 32, hkv: 8, seqLen: N, d: 128, seed: 1, dtype: 'bfloat16' });
  const grp = gen.kvGroup(0, group);
  const q = await lib.tensor(grp.q, { shape: [1, G, N, 128], dtype: 'bfloat16' });
  const k = await lib.tensor(grp.k, { shape: [1, 1, N, 128], dtype: 'bfloat16' });
  const mask = await lib.estimate(q, k, {});
  const host = await mask.toHost();
  const density = mask.density();
  mask.dispose();
  q.dispose();
  k.dispose();
  // lists[head][tile], each from the diagonal down
  const lists = [];
  for (let h = 0; h < G; h++) {
    lists.push([]);
    for (let i = 0; i < nq; i++) {
      const r = h * nq + i;
      lists[h].push(Int32Array.from(host.indices.subarray(host.rowPtr[r], host.rowPtr[r + 1])).reverse());
    }
  }
  const headAfterHead = () => lists.flatMap((tiles) => tiles.slice().reverse());
  const orders = {
    'heads side by side': () => {
      const o = [];
      for (let i = nq - 1; i >= 0; i--) for (let h = 0; h < G; h++) o.push(lists[h][i]);
      return o;
    },
    'head after head (the kernel)': headAfterHead,
    'rotated entries': () => {
      const o = [];
      for (const tiles of lists) {
        let acc = 0;
        let prev = 0;
        for (let i = nq - 1; i >= 0; i--) {
          const l = tiles[i];
          const period = l.length * P;
          acc = period ? (acc + prev) % period : 0;
          const r = Math.floor(acc / P);
          prev = l.length;
          o.push(Int32Array.from({ length: l.length }, (_, x) => l[(x + r) % l.length]));
        }
      }
      return o;
    },
    [`sorted windows of ${P}`]: () => sortedWindows(headAfterHead(), P),
    [`sorted windows of ${4 * P}`]: () => sortedWindows(headAfterHead(), 4 * P),
    [`segment-major (segments of ${segment})`]: () => {
      const o = [];
      for (const tiles of lists) {
        const most = Math.max(...tiles.map((l) => Math.ceil(l.length / segment)));
        for (let s = 0; s < most; s++) {
          for (let i = nq - 1; i >= 0; i--) {
            const l = tiles[i];
            if (s * segment < l.length) o.push(l.subarray(s * segment, Math.min(l.length, (s + 1) * segment)));
          }
        }
      }
      return o;
    },
  };
  console.log(`L2 model: N=${N}, kv-head group ${group} (${G} query heads), density ${density.toFixed(3)}, cache ${cacheBlocks} blocks, ${P} CTAs, item speeds +-${jitter / 2}`);
  const results = {};
  for (const [name, order] of Object.entries(orders)) {
    results[name] = simulate(order(), null);
    console.log(`  ${name}: ${(100 * results[name].hits).toFixed(1)}% of reads hit`);
  }
  const plain = results['head after head (the kernel)'];
  const ownReads = lists.reduce((a, tiles) => a + tiles.reduce((b, l) => b + l.length, 0), 0);
  for (const C of clusters) {
    const o = [];
    for (const tiles of lists) {
      for (let i = nq - 1; i >= 0; i -= C) {
        const u = new Set();
        for (let x = i; x > i - C && x >= 0; x--) for (const b of tiles[x]) u.add(b);
        o.push(Int32Array.from([...u].sort((a, b) => b - a)));
      }
    }
    const unionReads = o.reduce((a, l) => a + l.length, 0);
    const rc = simulate(o, null, Math.floor(P / C));
    const dram = ((1 - rc.hits) * unionReads) / ((1 - plain.hits) * ownReads);
    console.log(
      `  clusters of ${C}: ${(100 * rc.hits).toFixed(1)}% of reads hit; L2 reads ${(unionReads / ownReads).toFixed(3)}x, ` +
        `DRAM misses ${dram.toFixed(3)}x head after head; CTA time on own blocks ${(ownReads / (C * unionReads)).toFixed(3)}`,
    );
  }
  const r = simulate(headAfterHead(), { seg: bandSeg, k: bandK });
  console.log(`  band (segments of ${bandSeg}, at most ${bandK} apart): ${(100 * r.hits).toFixed(1)}% of reads hit, CTAs wait ${(100 * r.waited).toFixed(1)}% of their time`);
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});

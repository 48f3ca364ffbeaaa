#!/usr/bin/env node
// Generates the pictures of docs/algorithm.md (docs/img/*.svg):
//   block-masks.svg      Prism vs mean-pool block masks on a structured workload
//   pooling-lowpass.svg  what mean pooling does to the rotary pairs of a block
// Usage: node dist/bench/figures.js [--out DIR] [--reference]
//   --reference  use the float64 TypeScript reference instead of the CPU backend

import * as fs from 'fs';
import * as path from 'path';
import { Svg, lineChart, num, PALETTE } from './svg';
import { defaultResolvedOptions, referenceEstimate, referenceMassRecall } from '../lib/reference';
import { structuredWorkload } from '../lib/workloads/structured';
import type { HeadKind } from '../lib/workloads/structured';
import type { HostBlockMask, Method } from '../lib/types';

// --- the mask figure ------------------------------------------------------------------

export interface MaskFigureInput {
  seqLen: number;
  block: number;
  heads: number;
  kvHeads: number;
  d: number;
  seed: number;
}

export const MASK_FIGURE: MaskFigureInput = { seqLen: 8192, block: 128, heads: 4, kvHeads: 2, d: 128, seed: 5 };

interface HeadPanel {
  head: number;
  kind: HeadKind;
  density: number;
  recall: number;
}

interface MaskSet {
  method: Method;
  host: Pick<HostBlockMask, 'nq' | 'nk' | 'mask' | 'counts' | 'indices'>;
  panels: HeadPanel[];
}

function perHeadDensity(mask: Uint8Array, h: number, nq: number, nk: number): number {
  let sel = 0;
  let vis = 0;
  for (let i = 0; i < nq; i++) {
    const last = Math.min(i + nk - nq, nk - 1);
    vis += last + 1;
    for (let j = 0; j <= last; j++) sel += mask[(h * nq + i) * nk + j];
  }
  return sel / vis;
}

/** Block masks of both methods on one structured workload (estimation by `estimator`). */
export async function computeMasks(
  fig: MaskFigureInput,
  estimator: 'native' | 'reference',
): Promise<{ sets: MaskSet[]; estimator: 'native' | 'reference' }> {
  const wl = structuredWorkload({ batch: 1, hq: fig.heads, hkv: fig.kvHeads, seqLen: fig.seqLen, d: fig.d, seed: fig.seed, dtype: 'float32' });
  const q = wl.q as Float32Array;
  const k = wl.k as Float32Array;
  const dims = { batch: 1, hq: fig.heads, hkv: fig.kvHeads, nq: fig.seqLen, nk: fig.seqLen, d: fig.d };
  const sets: MaskSet[] = [];
  let used = estimator;
  // recall rows: every 16th query row (same rows for all heads and methods)
  const rows: number[] = [];
  for (let r = 7; r < fig.seqLen; r += 16) rows.push(r);

  let native: typeof import('./lib') | null = null;
  let qt: import('./lib').TensorLike | null = null;
  let kt: import('./lib').TensorLike | null = null;
  if (estimator === 'native') {
    try {
      native = await import('./lib');
      qt = await native.tensor(q, { shape: [1, fig.heads, fig.seqLen, fig.d], dtype: 'float32', layout: 'bhnd', device: 'cpu' });
      kt = await native.tensor(k, { shape: [1, fig.kvHeads, fig.seqLen, fig.d], dtype: 'float32', layout: 'bhnd', device: 'cpu' });
    } catch (e) {
      process.stderr.write(`figures: CPU backend unavailable (${(e as Error).message}); using the TypeScript reference\n`);
      native = null;
      used = 'reference';
    }
  }
  try {
    for (const method of ['prism', 'meanpool'] as const) {
      let host: MaskSet['host'];
      if (native && qt && kt) {
        const { mask } = await native.timedEstimate(qt, kt, { block: fig.block, method }, { warmup: 0, iters: 1 });
        const h = (await mask.toHost()) as unknown as HostBlockMask;
        mask.dispose();
        host = h;
      } else {
        host = referenceEstimate(q, k, dims, defaultResolvedOptions(fig.d, { block: fig.block, method }), { keepScores: false });
      }
      const panels: HeadPanel[] = [];
      const rec = referenceMassRecall(q, k, dims, host.counts, host.indices, fig.block, undefined, rows);
      for (let h = 0; h < fig.heads; h++) {
        let sum = 0;
        for (let x = 0; x < rows.length; x++) sum += rec.perRow[h * rows.length + x];
        panels.push({ head: h, kind: wl.headKinds[h], density: perHeadDensity(host.mask, h, host.nq, host.nk), recall: sum / rows.length });
      }
      sets.push({ method, host, panels });
    }
  } finally {
    qt?.dispose();
    kt?.dispose();
  }
  return { sets, estimator: used };
}

/** Renders the masks: one row per method, one column per head. */
export function renderMasks(fig: MaskFigureInput, sets: MaskSet[], estimator: string): string {
  const nq = sets[0].host.nq;
  const nk = sets[0].host.nk;
  const cell = Math.max(1, Math.floor(240 / nk));
  const size = cell * nk;
  const gapX = 26;
  const left = 92;
  const top = 58;
  const rowH = size + 52;
  const W = left + fig.heads * (size + gapX) + 10;
  const H = top + sets.length * rowH + 52;
  const svg = new Svg(W, H, 'Block masks: Prism vs mean pooling on a structured workload');
  svg.text(W / 2, 20, `Selected key blocks (dark) per query block, ${fig.seqLen} tokens, block ${fig.block}, d ${fig.d}, top-p 0.95`, {
    'text-anchor': 'middle', 'font-size': 14, 'font-weight': 'bold',
  });
  svg.text(W / 2, 38, `structured workload (seed ${fig.seed}); rows = query blocks, columns = key blocks; estimation: ${estimator}`, {
    'text-anchor': 'middle', 'font-size': 11, fill: '#555',
  });
  const colors: Record<string, string> = { prism: PALETTE[0], meanpool: PALETTE[1] };
  sets.forEach((set, r) => {
    const y0 = top + r * rowH + 26;
    svg.text(left - 10, y0 + size / 2, set.method === 'prism' ? 'Prism' : 'mean pool', {
      'text-anchor': 'end', 'font-size': 13, 'font-weight': 'bold', fill: colors[set.method],
    });
    set.panels.forEach((p, c) => {
      const x0 = left + c * (size + gapX);
      svg.text(x0 + size / 2, y0 - 16, `head ${p.head} (${p.kind})`, { 'text-anchor': 'middle', 'font-size': 11 });
      svg.text(x0 + size / 2, y0 - 4, `density ${(p.density * 100).toFixed(0)}%, recall ${p.recall.toFixed(3)}`, {
        'text-anchor': 'middle', 'font-size': 10, fill: '#444',
      });
      // visible (causal) region as one staircase path
      let d = `M${num(x0)},${num(y0)}`;
      for (let i = 0; i < nq; i++) {
        const last = Math.min(i + nk - nq, nk - 1);
        d += ` H${num(x0 + (last + 1) * cell)} V${num(y0 + (i + 1) * cell)}`;
      }
      d += ` H${num(x0)} Z`;
      svg.path(d, { fill: '#e8e8e8' });
      // selected runs
      const mask = set.host.mask;
      const parts: string[] = [];
      for (let i = 0; i < nq; i++) {
        const row = (p.head * nq + i) * nk;
        let j = 0;
        while (j < nk) {
          if (!mask[row + j]) {
            j++;
            continue;
          }
          const start = j;
          while (j < nk && mask[row + j]) j++;
          parts.push(`M${num(x0 + start * cell)},${num(y0 + i * cell)}h${num((j - start) * cell)}v${num(cell)}h${num(-(j - start) * cell)}z`);
        }
      }
      if (parts.length) svg.path(parts.join(''), { fill: colors[set.method] });
      svg.rect(x0, y0, size, size, { fill: 'none', stroke: '#999', 'stroke-width': 0.5 });
    });
  });
  const ly = H - 22;
  svg.rect(left, ly - 10, 12, 12, { fill: PALETTE[0] });
  svg.rect(left + 14, ly - 10, 12, 12, { fill: PALETTE[1] });
  svg.text(left + 32, ly, 'selected', { 'font-size': 11 });
  svg.rect(left + 100, ly - 10, 12, 12, { fill: '#e8e8e8' });
  svg.text(left + 118, ly, 'visible, not selected', { 'font-size': 11 });
  svg.rect(left + 250, ly - 10, 12, 12, { fill: '#fff', stroke: '#999', 'stroke-width': 0.5 });
  svg.text(left + 268, ly, 'causally masked', { 'font-size': 11 });
  svg.text(left + 390, ly, 'recall: exact softmax mass inside the selection, every 16th query row', { 'font-size': 11, fill: '#444' });
  return svg.toString();
}

// --- the pooling figure ---------------------------------------------------------------

/** |mean over t in [0, B) of e^{i theta t}|: the length a unit rotary pair keeps after pooling. */
export function pooledMagnitude(theta: number, block: number): number {
  let re = 0;
  let im = 0;
  for (let t = 0; t < block; t++) {
    re += Math.cos(theta * t);
    im += Math.sin(theta * t);
  }
  return Math.hypot(re, im) / block;
}

export function ropeTheta(p: number, d: number, base: number): number {
  return Math.pow(base, (-2 * p) / d);
}

export function renderPooling(d = 128, block = 128, base = 500000): string {
  const W = 1000;
  const H = 430;
  const svg = new Svg(W, H, 'Mean pooling is a low-pass filter on the rotary pairs');
  svg.text(W / 2, 20, `Mean pooling over a block of ${block} tokens under RoPE (d = ${d}, base ${base})`, {
    'text-anchor': 'middle', 'font-size': 14, 'font-weight': 'bold',
  });
  svg.text(W / 2, 38, 'A key with the same content at every position, rotated by RoPE: each dot is one token of the block, the red arrow is the block mean.', {
    'text-anchor': 'middle', 'font-size': 11, fill: '#555',
  });
  // three circles
  const pairs = [0, Math.round(d / 8), Math.round(d / 4)];
  const R = 62;
  pairs.forEach((p, c) => {
    const cx = 90 + c * 150;
    const cy = 150;
    const theta = ropeTheta(p, d, base);
    svg.circle(cx, cy, R, { fill: 'none', stroke: '#bbb' });
    svg.line(cx - R - 6, cy, cx + R + 6, cy, { stroke: '#eee' });
    svg.line(cx, cy - R - 6, cx, cy + R + 6, { stroke: '#eee' });
    for (let t = 0; t < block; t++) {
      const a = theta * t;
      svg.circle(cx + R * Math.cos(a), cy - R * Math.sin(a), 2, { fill: PALETTE[0], 'fill-opacity': 0.55 });
    }
    let re = 0;
    let im = 0;
    for (let t = 0; t < block; t++) {
      re += Math.cos(theta * t) / block;
      im += Math.sin(theta * t) / block;
    }
    const ex = cx + R * re;
    const ey = cy - R * im;
    svg.line(cx, cy, ex, ey, { stroke: '#d62728', 'stroke-width': 3 });
    svg.circle(ex, ey, 3.5, { fill: '#d62728' });
    svg.text(cx, cy + R + 24, `pair ${p}: ${theta >= 0.01 ? theta.toFixed(3) : theta.toExponential(1)} rad/token`, { 'text-anchor': 'middle', 'font-size': 11 });
    svg.text(cx, cy + R + 40, `kept length ${Math.hypot(re, im).toFixed(3)}`, { 'text-anchor': 'middle', 'font-size': 11, fill: '#d62728' });
  });
  svg.text(90, 300, '\u2190 high frequency', { 'text-anchor': 'middle', 'font-size': 11, fill: '#777' });
  svg.text(390, 300, 'low frequency \u2192', { 'text-anchor': 'middle', 'font-size': 11, fill: '#777' });
  svg.text(240, 330, 'Pair 0 turns about once per 6 tokens: the block mean', { 'text-anchor': 'middle', 'font-size': 11, fill: '#333' });
  svg.text(240, 346, 'cancels out, and with it the positional signal of that pair.', { 'text-anchor': 'middle', 'font-size': 11, fill: '#333' });
  svg.text(240, 362, 'Slow pairs barely turn within a block and survive pooling.', { 'text-anchor': 'middle', 'font-size': 11, fill: '#333' });

  // the curve
  const P = d / 2;
  const h = (64 * d) / 128;
  const l = (96 * d) / 128;
  const series = [base, 10000].map((b, i) => ({
    name: `base ${b}`,
    color: i === 0 ? '#d62728' : '#777',
    dash: i === 0 ? undefined : '5 4',
    markers: false,
    points: Array.from({ length: P }, (_, p) => [p, pooledMagnitude(ropeTheta(p, d, b), block)] as [number, number]),
  }));
  lineChart(svg, {
    x: 480, y: 52, width: 510, height: 360,
    title: 'Length kept by the block mean, per rotary pair',
    xLabel: 'rotary pair index p (frequency falls as p grows)',
    yLabel: '|mean of rotated unit vectors|',
    xTicks: [0, 8, 16, 24, 32, 40, 48, 56, P - 1].map((v) => ({ value: v, label: String(v) })),
    xMin: -0.5, xMax: P - 0.5,
    yMin: 0, yMax: 1.05,
    yTicks: [0, 0.25, 0.5, 0.75, 1].map((v) => ({ value: v, label: String(v) })),
    spans: [
      { from: -0.5, to: h / 2 - 0.5, color: '#1f77b4', label: `high band: pairs 0-${h / 2 - 1}`, labelX: h / 8 + 1.5, labelY: 0.45 },
      { from: P - l / 2 - 0.5, to: P - 0.5, color: '#2ca02c', label: `low band: pairs ${P - l / 2}-${P - 1}`, labelX: (P + h / 2) / 2 + 4, labelY: 0.45 },
    ],
    series,
    legend: 'bottom-right',
  });
  return svg.toString();
}

// --- main ------------------------------------------------------------------------------

function repoRoot(): string {
  let dir = __dirname;
  for (let up = 0; up < 5; up++) {
    if (fs.existsSync(path.join(dir, 'package.json'))) return dir;
    dir = path.dirname(dir);
  }
  return process.cwd();
}

export async function main(argv: string[]): Promise<number> {
  let out = path.join(repoRoot(), 'docs', 'img');
  let estimator: 'native' | 'reference' = 'native';
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === '--out' && argv[i + 1]) out = argv[++i];
    else if (argv[i] === '--reference') estimator = 'reference';
    else {
      process.stderr.write(`figures: unknown argument '${argv[i]}' (usage: figures [--out DIR] [--reference])\n`);
      return 2;
    }
  }
  fs.mkdirSync(out, { recursive: true });
  const { sets, estimator: used } = await computeMasks(MASK_FIGURE, estimator);
  const label = used === 'native' ? 'CPU backend' : 'TypeScript reference';
  const files: Array<[string, string]> = [
    ['block-masks.svg', renderMasks(MASK_FIGURE, sets, label)],
    ['pooling-lowpass.svg', renderPooling()],
  ];
  for (const [name, text] of files) {
    fs.writeFileSync(path.join(out, name), text);
    process.stdout.write(`wrote ${path.join(out, name)}\n`);
  }
  for (const s of sets) {
    for (const p of s.panels) {
      process.stdout.write(`  ${s.method.padEnd(8)} head ${p.head} ${p.kind.padEnd(9)} density ${(p.density * 100).toFixed(1)}%  recall ${p.recall.toFixed(4)}\n`);
    }
  }
  return 0;
}

if (require.main === module) {
  main(process.argv.slice(2)).then(
    (code) => {
      process.exitCode = code;
    },
    (e: unknown) => {
      process.stderr.write(`figures: ${(e as Error)?.message ?? String(e)}\n`);
      process.exitCode = 1;
    },
  );
}

// Float64 reference implementation of the whole Prism specification
// (docs: spec "Prism: what the kernels compute"). Plain TypeScript over typed
// arrays, meant for small shapes: tests and validate() compare the native
// backends against it.
//
// Inputs are logical [batch, heads, n, d] arrays, contiguous in that order
// ("bhnd"), as Float32Array or Float64Array. Nq and Nk below are token counts;
// nq and nk are block counts (see blockGrid: blocks lie on the absolute token
// grid, so nq = nk - floor((Nk - Nq)/B)).

import { blockGrid, numBlocks, visibleBlocks } from './grid';
import { checkDims } from './reference-attention';
import { defaultBandDims } from './options';
import type { HostBlockMask, ResolvedEstimateOptions } from './types';

export { blockGrid, blockOfRow, blockRowBegin, blockRowEnd, numBlocks, visibleBlocks } from './grid';
export { referenceAttention, referenceMassRecall, rowStarts, type MassRecall } from './reference-attention';
// Ragged batches and paged caches: the references per sequence, and a paged cache gathered into packed K/V.
export {
  pagedToPacked,
  referenceVarlenAttention,
  referenceVarlenEstimate,
  referenceVarlenPrefill,
  type VarlenRefProblem,
  type SequenceLists,
} from './reference-varlen';
export type { BlockGrid } from './grid';

/** Shapes of a Q/K/V problem, in tokens. */
export interface RefDims {
  batch: number;
  /** query heads */
  hq: number;
  /** key/value heads (hq % hkv == 0) */
  hkv: number;
  /** query tokens (Nq <= Nk; the queries are the last Nq positions) */
  nq: number;
  /** key tokens */
  nk: number;
  /** head dim */
  d: number;
}

export type RealArray = Float32Array | Float64Array;

/** Per-band diagnostics of referenceEstimate. */
export interface RefScores {
  /** Block probabilities of the high band (or the single meanpool band), [b, hq, nq, nk]; 0 where invisible. */
  pHigh: Float64Array;
  /** Block probabilities of the low band, [b, hq, nq, nk]. Same array as pHigh for 'meanpool'. */
  pLow: Float64Array;
  /** Block logits (already divided by the band scale), [b, hq, nq, nk]; -Infinity where invisible. */
  logitsHigh: Float64Array;
  logitsLow: Float64Array;
  /**
   * Per row [b, hq, nq]: how far the selection is from flipping, in probability
   * units. Top-p: min over ranks of |sum of probs ranked before - tau| and the
   * probability gap between the last kept and first dropped block; top-k: the gap
   * between the k-th and (k+1)-th probability. Minimum over the bands that select.
   * Infinity when the row has a single visible block (nothing can flip).
   */
  margin: Float64Array;
  /** Band scales (sqrt(band dims) * t) per (b, hq): [b, hq, 2] = (high, low). */
  scales: Float64Array;
  /** Whether a band scale fell back to sqrt(band dims) (0 or non-finite), [b, hq, 2]. */
  scaleFallback: Uint8Array;
}

export interface RefEstimate extends HostBlockMask {
  scores: RefScores;
}

export interface RefEstimateOptions {
  /** Keep the [b, hq, nq, nk] probability/logit arrays (default true). */
  keepScores?: boolean;
}

export const RMS_EPS = 1e-6;

/** Dims of the high and low bands for a head dim and rope layout. */
export function bandDims(
  d: number,
  highDims: number,
  lowDims: number,
  layout: 'half' | 'interleaved',
): { high: Int32Array; low: Int32Array } {
  const high: number[] = [];
  const low: number[] = [];
  if (layout === 'half') {
    const half = d / 2;
    for (let x = 0; x < highDims / 2; x++) high.push(x);
    for (let x = half; x < half + highDims / 2; x++) high.push(x);
    for (let x = half - lowDims / 2; x < half; x++) low.push(x);
    for (let x = d - lowDims / 2; x < d; x++) low.push(x);
  } else {
    for (let x = 0; x < highDims; x++) high.push(x);
    for (let x = d - lowDims; x < d; x++) low.push(x);
  }
  return { high: Int32Array.from(high), low: Int32Array.from(low) };
}

/**
 * Mean of the valid rows of each block: [b, h, n, d] -> [b, h, nb, d] (float64).
 * Block i holds rows [iB - shift, (i+1)B - shift) clipped to [0, n): shift is
 * 0 for keys and (Nk - Nq) % B for queries (see blockGrid).
 */
export function poolBlocks(
  x: RealArray,
  batch: number,
  heads: number,
  n: number,
  d: number,
  block: number,
  shift = 0,
): Float64Array {
  const nb = numBlocks(n + shift, block);
  const out = new Float64Array(batch * heads * nb * d);
  for (let bh = 0; bh < batch * heads; bh++) {
    for (let i = 0; i < nb; i++) {
      const r0 = Math.max(0, i * block - shift);
      const r1 = Math.min(n, (i + 1) * block - shift);
      const o = (bh * nb + i) * d;
      for (let r = r0; r < r1; r++) {
        const xi = (bh * n + r) * d;
        for (let c = 0; c < d; c++) out[o + c] += x[xi + c];
      }
      const inv = 1 / (r1 - r0);
      for (let c = 0; c < d; c++) out[o + c] *= inv;
    }
  }
  return out;
}

/** Sum of squares over all blocks of the given dims of one pooled head. */
function sumSq(pool: Float64Array, base: number, nb: number, d: number, dims: Int32Array | null): number {
  let s = 0;
  for (let i = 0; i < nb; i++) {
    const o = base + i * d;
    if (dims === null) {
      for (let c = 0; c < d; c++) s += pool[o + c] * pool[o + c];
    } else {
      for (let t = 0; t < dims.length; t++) {
        const v = pool[o + dims[t]];
        s += v * v;
      }
    }
  }
  return s;
}

interface RowSelection {
  keep: Uint8Array;
  margin: number;
}

/**
 * Top-p or top-k selection over the `v` visible probabilities of one row.
 * Ranking: probability descending, ties to the lower j.
 */
export function selectRow(
  p: Float64Array,
  v: number,
  mode: 'topp' | 'topk',
  tau: number,
  topk: number,
  order: Int32Array = new Int32Array(v),
): RowSelection {
  const keep = new Uint8Array(v);
  for (let j = 0; j < v; j++) order[j] = j;
  const ord = order.subarray(0, v);
  ord.sort((a, b) => (p[b] - p[a]) || (a - b));
  if (v <= 1) {
    if (v === 1) keep[0] = 1;
    return { keep, margin: Infinity };
  }
  let margin = Infinity;
  if (mode === 'topk') {
    const k = Math.min(topk, v);
    for (let m = 0; m < k; m++) keep[ord[m]] = 1;
    if (k < v) margin = p[ord[k - 1]] - p[ord[k]];
    return { keep, margin };
  }
  let cum = 0;
  let lastKept = -1;
  for (let m = 0; m < v; m++) {
    const dist = Math.abs(cum - tau);
    if (dist < margin) margin = dist;
    if (cum < tau) {
      keep[ord[m]] = 1;
      lastKept = m;
    }
    cum += p[ord[m]];
  }
  if (lastKept >= 0 && lastKept + 1 < v) {
    const gap = p[ord[lastKept]] - p[ord[lastKept + 1]];
    if (gap < margin) margin = gap;
  }
  return { keep, margin };
}

/**
 * Prism block-mask estimation in float64. Returns the mask, the compact lists,
 * the temperatures used and per-band diagnostics.
 *
 * Temperatures reported are the ones effectively used: scale / sqrt(band dims),
 * i.e. 1 when a calibrated scale was 0 or non-finite and fell back.
 */
export function referenceEstimate(
  q: RealArray,
  k: RealArray,
  dims: RefDims,
  opts: ResolvedEstimateOptions,
  refOpts: RefEstimateOptions = {},
): RefEstimate {
  const { batch, hq, hkv, nq: Nq, nk: Nk, d } = dims;
  checkDims(dims, q.length, k.length);
  const B = opts.block;
  const grid = blockGrid(Nq, Nk, B);
  const nqb = grid.nq;
  const nkb = grid.nk;
  const off = grid.off;
  const group = hq / hkv;
  const keepScores = refOpts.keepScores !== false;

  const qbar = poolBlocks(q, batch, hq, Nq, d, B, grid.shift);
  const kbar = poolBlocks(k, batch, hkv, Nk, d, B);

  const meanpool = opts.method === 'meanpool';
  let bands: { dims: Int32Array | null; count: number }[];
  if (meanpool) {
    bands = [{ dims: null, count: d }];
  } else {
    const bd = bandDims(d, opts.highDims, opts.lowDims, opts.ropeLayout);
    bands = [
      { dims: bd.high, count: bd.high.length },
      { dims: bd.low, count: bd.low.length },
    ];
  }

  const rows = batch * hq * nqb;
  const mask = new Uint8Array(rows * nkb);
  const counts = new Int32Array(rows);
  const rowPtr = new Float64Array(rows + 1);
  const selected: number[] = [];
  const temperatures = new Float32Array(batch * hq * 2);
  const scales = new Float64Array(batch * hq * 2);
  const scaleFallback = new Uint8Array(batch * hq * 2);
  const margin = new Float64Array(rows).fill(Infinity);
  const pHigh = new Float64Array(keepScores ? rows * nkb : 0);
  const pLow = meanpool ? pHigh : new Float64Array(keepScores ? rows * nkb : 0);
  const logitsHigh = new Float64Array(keepScores ? rows * nkb : 0);
  const logitsLow = meanpool ? logitsHigh : new Float64Array(keepScores ? rows * nkb : 0);
  if (keepScores) {
    logitsHigh.fill(-Infinity);
    logitsLow.fill(-Infinity);
  }

  const logit = new Float64Array(nkb);
  const prob = new Float64Array(nkb);
  const order = new Int32Array(nkb);

  for (let b = 0; b < batch; b++) {
    for (let h = 0; h < hq; h++) {
      const bh = b * hq + h;
      const kvh = Math.floor(h / group);
      const qBase = bh * nqb * d;
      const kBase = (b * hkv + kvh) * nkb * d;

      // temperatures and scales
      const bandScale: number[] = [];
      if (meanpool) {
        const t = opts.calibrate ? 1 : opts.tempHigh;
        let s = Math.sqrt(d) * t;
        let fb = 0;
        if (s === 0 || !Number.isFinite(s)) {
          s = Math.sqrt(d);
          fb = 1;
        }
        bandScale.push(s);
        scales[bh * 2] = s;
        scales[bh * 2 + 1] = s;
        scaleFallback[bh * 2] = fb;
        scaleFallback[bh * 2 + 1] = fb;
        const teff = s / Math.sqrt(d);
        temperatures[bh * 2] = teff;
        temperatures[bh * 2 + 1] = teff;
      } else {
        const rmsQ = Math.sqrt(sumSq(qbar, qBase, nqb, d, null) / (nqb * d));
        const rmsK = Math.sqrt(sumSq(kbar, kBase, nkb, d, null) / (nkb * d));
        for (let bi = 0; bi < 2; bi++) {
          const band = bands[bi];
          let t: number;
          if (opts.calibrate) {
            const rq = Math.sqrt(sumSq(qbar, qBase, nqb, d, band.dims) / (nqb * band.count));
            const rk = Math.sqrt(sumSq(kbar, kBase, nkb, d, band.dims) / (nkb * band.count));
            t = Math.sqrt(band.count / d) * (rq / Math.max(rmsQ, RMS_EPS)) * (rk / Math.max(rmsK, RMS_EPS));
          } else {
            t = bi === 0 ? opts.tempHigh : opts.tempLow;
          }
          let s = Math.sqrt(band.count) * t;
          let fb = 0;
          if (s === 0 || !Number.isFinite(s)) {
            s = Math.sqrt(band.count);
            fb = 1;
          }
          bandScale.push(s);
          scales[bh * 2 + bi] = s;
          scaleFallback[bh * 2 + bi] = fb;
          temperatures[bh * 2 + bi] = s / Math.sqrt(band.count);
        }
      }

      for (let i = 0; i < nqb; i++) {
        const row = bh * nqb + i;
        const v = visibleBlocks(i, nqb, nkb);
        const keepRow = new Uint8Array(v);
        let rowMargin = Infinity;
        const qo = qBase + i * d;
        for (let bi = 0; bi < bands.length; bi++) {
          const band = bands[bi];
          const s = bandScale[bi];
          let mx = -Infinity;
          for (let j = 0; j < v; j++) {
            const ko = kBase + j * d;
            let dot = 0;
            if (band.dims === null) {
              for (let c = 0; c < d; c++) dot += qbar[qo + c] * kbar[ko + c];
            } else {
              const bd = band.dims;
              for (let t = 0; t < bd.length; t++) dot += qbar[qo + bd[t]] * kbar[ko + bd[t]];
            }
            const l = dot / s;
            logit[j] = l;
            if (l > mx) mx = l;
          }
          let z = 0;
          for (let j = 0; j < v; j++) {
            const e = Math.exp(logit[j] - mx);
            prob[j] = e;
            z += e;
          }
          for (let j = 0; j < v; j++) prob[j] /= z;
          if (keepScores) {
            const P = bi === 0 ? pHigh : pLow;
            const L = bi === 0 ? logitsHigh : logitsLow;
            for (let j = 0; j < v; j++) {
              P[row * nkb + j] = prob[j];
              L[row * nkb + j] = logit[j];
            }
          }
          const tau = bi === 0 ? opts.tauHigh : opts.tauLow;
          const tk = bi === 0 ? opts.topkHigh : opts.topkLow;
          const sel = selectRow(prob, v, opts.selection, tau, tk, order);
          for (let j = 0; j < v; j++) keepRow[j] |= sel.keep[j];
          if (sel.margin < rowMargin) rowMargin = sel.margin;
        }
        if (opts.forceSink) keepRow[0] = 1;
        if (opts.forceDiagonal) keepRow[Math.min(i + off, nkb - 1)] = 1;
        let c = 0;
        for (let j = 0; j < v; j++) {
          if (keepRow[j]) {
            mask[row * nkb + j] = 1;
            selected.push(j);
            c++;
          }
        }
        counts[row] = c;
        rowPtr[row + 1] = selected.length; // rows run in order
        margin[row] = rowMargin;
      }
    }
  }

  return {
    batch,
    heads: hq,
    nq: nqb,
    nk: nkb,
    block: B,
    mask,
    counts,
    rowPtr,
    indices: Int32Array.from(selected),
    temperatures,
    scores: { pHigh, pLow, logitsHigh, logitsLow, margin, scales, scaleFallback },
  };
}

/** Density = selected visible blocks / visible blocks, over a whole mask. */
export function maskDensity(m: Pick<HostBlockMask, 'batch' | 'heads' | 'nq' | 'nk' | 'mask'>): number {
  let sel = 0;
  let vis = 0;
  for (let bh = 0; bh < m.batch * m.heads; bh++) {
    for (let i = 0; i < m.nq; i++) {
      const v = visibleBlocks(i, m.nq, m.nk);
      vis += v;
      const o = (bh * m.nq + i) * m.nk;
      for (let j = 0; j < v; j++) sel += m.mask[o + j];
    }
  }
  return vis > 0 ? sel / vis : 1;
}

/** Default resolved options for a head dim (mirrors the documented defaults; for tests and tools). */
export function defaultResolvedOptions(d: number, over: Partial<ResolvedEstimateOptions> = {}): ResolvedEstimateOptions {
  return {
    block: 128,
    highDims: defaultBandDims(d, 64),
    lowDims: defaultBandDims(d, 96),
    ropeLayout: 'half',
    method: 'prism',
    calibrate: true,
    tempHigh: 1,
    tempLow: 1,
    selection: 'topp',
    tauHigh: 0.95,
    tauLow: 0.95,
    topkHigh: 16,
    topkLow: 16,
    forceSink: true,
    forceDiagonal: true,
    ...over,
  };
}

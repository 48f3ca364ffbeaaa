// Float64 reference of ragged batches and paged KV caches, built from the
// per-sequence reference: each sequence is sliced out of the packed arrays
// and estimated / attended on its own geometry (blocks restart at its start).
// Packed arrays here are host arrays in 'bhnd' order: [heads, total, d].
import { referenceAttention, referenceEstimate, type RealArray, type RefEstimate } from './reference';
import type { ResolvedEstimateOptions } from './types';

/** A packed ragged problem on the host. */
export interface VarlenRefProblem {
  /** [hq, totalQ, d] */
  q: RealArray;
  /** [hkv, totalK, d] */
  k: RealArray;
  /** [hkv, totalK, d] (attention only) */
  v?: RealArray;
  hq: number;
  hkv: number;
  d: number;
  cuSeqlensQ: ArrayLike<number>;
  cuSeqlensK: ArrayLike<number>;
}

/** Tokens [start, start + n) of a packed [heads, total, d] array: [heads, n, d]. */
export function sliceTokens(x: RealArray, heads: number, total: number, d: number, start: number, n: number): Float64Array {
  const out = new Float64Array(heads * n * d);
  for (let h = 0; h < heads; h++) {
    for (let t = 0; t < n; t++) {
      for (let e = 0; e < d; e++) out[(h * n + t) * d + e] = x[(h * total + start + t) * d + e];
    }
  }
  return out;
}

/** Writes [heads, n, rowLen] into tokens [start, start + n) of a packed [heads, total, rowLen] array. */
function placeTokens(dst: Float64Array, src: ArrayLike<number>, heads: number, total: number, rowLen: number, start: number, n: number): void {
  for (let h = 0; h < heads; h++) {
    for (let t = 0; t < n; t++) {
      for (let e = 0; e < rowLen; e++) dst[(h * total + start + t) * rowLen + e] = src[(h * n + t) * rowLen + e];
    }
  }
}

function lengths(p: VarlenRefProblem): { batch: number; totalQ: number; totalK: number } {
  const batch = p.cuSeqlensQ.length - 1;
  return { batch, totalQ: p.cuSeqlensQ[batch], totalK: p.cuSeqlensK[batch] };
}

/** Per-sequence lists (compact rows of a [1, hq, nq_i, nk_i] selection), null = dense. */
export type SequenceLists = Array<{ counts: Int32Array; indices: Int32Array } | null>;

/**
 * Ragged attention in float64: output [hq, totalQ, d] and lse [hq, totalQ]
 * (natural log; -Infinity for a row without keys).
 */
export function referenceVarlenAttention(
  p: VarlenRefProblem,
  lists: SequenceLists | null,
  block: number,
  softmaxScale?: number,
): { output: Float64Array; lse: Float64Array } {
  const { batch, totalQ, totalK } = lengths(p);
  if (!p.v) throw new TypeError('referenceVarlenAttention needs v');
  const output = new Float64Array(p.hq * totalQ * p.d);
  const lse = new Float64Array(p.hq * totalQ);
  for (let i = 0; i < batch; i++) {
    const q0 = p.cuSeqlensQ[i];
    const nq = p.cuSeqlensQ[i + 1] - q0;
    const k0 = p.cuSeqlensK[i];
    const nk = p.cuSeqlensK[i + 1] - k0;
    if (nq === 0) continue;
    const dims = { batch: 1, hq: p.hq, hkv: p.hkv, nq, nk, d: p.d };
    const l = lists?.[i] ?? null;
    const rowLse = new Float64Array(p.hq * nq);
    const o = referenceAttention(
      sliceTokens(p.q, p.hq, totalQ, p.d, q0, nq),
      sliceTokens(p.k, p.hkv, totalK, p.d, k0, nk),
      sliceTokens(p.v, p.hkv, totalK, p.d, k0, nk),
      dims,
      l ? l.counts : null,
      l ? l.indices : null,
      block,
      softmaxScale,
      undefined,
      rowLse,
    );
    placeTokens(output, o, p.hq, totalQ, p.d, q0, nq);
    placeTokens(lse, rowLse, p.hq, totalQ, 1, q0, nq);
  }
  return { output, lse };
}

/** Ragged estimation in float64: one RefEstimate per sequence (null where Nq_i = 0). */
export function referenceVarlenEstimate(p: VarlenRefProblem, opts: ResolvedEstimateOptions): Array<RefEstimate | null> {
  const { batch, totalQ, totalK } = lengths(p);
  const out: Array<RefEstimate | null> = [];
  for (let i = 0; i < batch; i++) {
    const q0 = p.cuSeqlensQ[i];
    const nq = p.cuSeqlensQ[i + 1] - q0;
    const k0 = p.cuSeqlensK[i];
    const nk = p.cuSeqlensK[i + 1] - k0;
    if (nq === 0) {
      out.push(null);
      continue;
    }
    const dims = { batch: 1, hq: p.hq, hkv: p.hkv, nq, nk, d: p.d };
    out.push(referenceEstimate(sliceTokens(p.q, p.hq, totalQ, p.d, q0, nq), sliceTokens(p.k, p.hkv, totalK, p.d, k0, nk), dims, opts, { keepScores: false }));
  }
  return out;
}

/** Estimation, then attention over each sequence's reference selection. */
export function referenceVarlenPrefill(
  p: VarlenRefProblem,
  opts: ResolvedEstimateOptions,
  softmaxScale?: number,
): { output: Float64Array; lse: Float64Array; masks: Array<RefEstimate | null> } {
  const masks = referenceVarlenEstimate(p, opts);
  const lists = masks.map((m) => (m ? { counts: m.counts, indices: m.indices } : null));
  return { ...referenceVarlenAttention(p, lists, opts.block, softmaxScale), masks };
}

/**
 * The keys (or values) of a paged cache, packed: pool host data in the
 * pool's memory order (NHD: [numPages, pageSize, hkv, d]; HND: [numPages,
 * hkv, pageSize, d]); sequence i holds kvLens[i] tokens in the pages
 * pageTable[i][0 ...]. Returns [hkv, sum kvLens, d] and its cuSeqlensK.
 */
export function pagedToPacked(
  pool: ArrayLike<number>,
  layout: 'NHD' | 'HND',
  hkv: number,
  pageSize: number,
  d: number,
  pageTable: ReadonlyArray<ArrayLike<number>>,
  kvLens: ArrayLike<number>,
): { packed: Float64Array; cuSeqlensK: Int32Array } {
  const cu = new Int32Array(kvLens.length + 1);
  for (let i = 0; i < kvLens.length; i++) cu[i + 1] = cu[i] + kvLens[i];
  const total = cu[kvLens.length];
  const packed = new Float64Array(hkv * total * d);
  for (let i = 0; i < kvLens.length; i++) {
    for (let t = 0; t < kvLens[i]; t++) {
      const page = pageTable[i][Math.floor(t / pageSize)];
      const slot = t % pageSize;
      for (let h = 0; h < hkv; h++) {
        const src = layout === 'NHD' ? ((page * pageSize + slot) * hkv + h) * d : ((page * hkv + h) * pageSize + slot) * d;
        const dst = (h * total + cu[i] + t) * d;
        for (let e = 0; e < d; e++) packed[dst + e] = pool[src + e];
      }
    }
  }
  return { packed, cuSeqlensK: cu };
}

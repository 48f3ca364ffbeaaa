// Float64 reference of block-sparse attention and of attention-mass recall
// (part of lib/reference.ts, which exports them): plain loops over
// [batch, heads, n, d] arrays, for small shapes.

import { blockGrid, blockOfRow, visibleBlocks, type BlockGrid } from './grid';
import type { RealArray, RefDims } from './reference';

/** Checks dims against the lengths of q, k (and v). */
export function checkDims(dims: RefDims, qLen: number, kLen: number, vLen?: number): void {
  const { batch, hq, hkv, nq, nk, d } = dims;
  if (hq % hkv !== 0) throw new RangeError(`hq (${hq}) must be a multiple of hkv (${hkv})`);
  if (nq > nk) throw new RangeError(`nq (${nq}) must be <= nk (${nk})`);
  if (qLen !== batch * hq * nq * d) throw new RangeError(`q has ${qLen} values, expected ${batch * hq * nq * d}`);
  if (kLen !== batch * hkv * nk * d) throw new RangeError(`k has ${kLen} values, expected ${batch * hkv * nk * d}`);
  if (vLen !== undefined && vLen !== kLen) throw new RangeError(`v has ${vLen} values, expected ${kLen}`);
}

/** Row starts of compact rows: exclusive prefix sums of the counts. */
export function rowStarts(counts: Int32Array): Float64Array {
  const starts = new Float64Array(counts.length + 1);
  for (let r = 0; r < counts.length; r++) starts[r + 1] = starts[r] + counts[r];
  return starts;
}

/**
 * Selected key blocks of row (bh, i): the explicit list (compact rows, row r
 * at starts[r]), or every visible block when counts is null.
 */
function rowBlocks(
  counts: Int32Array | null,
  indices: Int32Array | null,
  starts: Float64Array | null,
  bh: number,
  i: number,
  nqb: number,
  nkb: number,
): ArrayLike<number> {
  if (counts === null || indices === null || starts === null) {
    const v = visibleBlocks(i, nqb, nkb);
    const all = new Int32Array(v);
    for (let j = 0; j < v; j++) all[j] = j;
    return all;
  }
  const row = bh * nqb + i;
  return indices.subarray(starts[row], starts[row] + counts[row]);
}

/** One computed query row, as forEachRow() hands it over. */
interface QueryRow {
  /** b * hq + h */
  bh: number;
  /** offset of its kv head's keys (and values) */
  kvBase: number;
  /** its position in the list of computed rows, and the query row */
  ri: number;
  r: number;
  /** offset of the row in q (and in the output) */
  qo: number;
  /** its selected key blocks */
  blocks: ArrayLike<number>;
}

/** The scale of the scores: softmaxScale, or 1 / sqrt(d) when left out or 0. */
function scoreScale(softmaxScale: number | undefined, d: number): number {
  return softmaxScale !== undefined && softmaxScale !== 0 ? softmaxScale : 1 / Math.sqrt(d);
}

/** Calls `visit` for every head and every computed row (`rows`, default all Nq) with its selected blocks. */
function forEachRow(
  dims: RefDims,
  grid: BlockGrid,
  counts: Int32Array | null,
  indices: Int32Array | null,
  rowList: ArrayLike<number>,
  visit: (row: QueryRow) => void,
): void {
  const { batch, hq, hkv, nq: Nq, nk: Nk, d } = dims;
  const group = hq / hkv;
  const starts = counts ? rowStarts(counts) : null;
  for (let b = 0; b < batch; b++) {
    for (let h = 0; h < hq; h++) {
      const bh = b * hq + h;
      const kvBase = (b * hkv + Math.floor(h / group)) * Nk * d;
      for (let ri = 0; ri < rowList.length; ri++) {
        const r = rowList[ri];
        const blocks = rowBlocks(counts, indices, starts, bh, blockOfRow(grid, r), grid.nq, grid.nk);
        visit({ bh, kvBase, ri, r, qo: (bh * Nq + r) * d, blocks });
      }
    }
  }
}

/** q[qo .. qo + d) . k[ko .. ko + d) */
function dot(q: RealArray, qo: number, k: RealArray, ko: number, d: number): number {
  let s = 0;
  for (let c = 0; c < d; c++) s += q[qo + c] * k[ko + c];
  return s;
}

/**
 * Block-sparse attention in float64: row r (absolute position s = Nk - Nq + r,
 * query block i = blockOfRow(r), see blockGrid) attends to the keys t <= s of its selected key
 * blocks (every visible block when counts is null). Output [b, hq, Nq, d];
 * a row with no key is zero. `rows` restricts the computation to some query
 * rows (others stay 0). `lse`, when given ([b, hq, Nq]), receives each computed
 * row's natural-log log-sum-exp of the scaled scores it attends to (-Infinity
 * for a row with no key). Lists are compact rows: row r's counts[r] blocks
 * follow the rows before it in `indices`.
 */
export function referenceAttention(
  q: RealArray,
  k: RealArray,
  v: RealArray,
  dims: RefDims,
  counts: Int32Array | null,
  indices: Int32Array | null,
  block: number,
  softmaxScale?: number,
  rows?: ArrayLike<number>,
  lse?: Float64Array,
): Float64Array {
  const { batch, hq, nq: Nq, nk: Nk, d } = dims;
  checkDims(dims, q.length, k.length, v.length);
  if (lse !== undefined && lse.length !== batch * hq * Nq) throw new RangeError(`lse must have ${batch * hq * Nq} entries`);
  const scale = scoreScale(softmaxScale, d);
  const out = new Float64Array(batch * hq * Nq * d);
  const logits = new Float64Array(Nk);
  const keys = new Int32Array(Nk);
  const acc = new Float64Array(d);
  const rowList = rows ?? Array.from({ length: Nq }, (_, r) => r);
  forEachRow(dims, blockGrid(Nq, Nk, block), counts, indices, rowList, ({ bh, kvBase, r, qo, blocks }) => {
    const s = Nk - Nq + r;
    let nkeys = 0;
    let mx = -Infinity;
    for (let bj = 0; bj < blocks.length; bj++) {
      const j = blocks[bj];
      const t1 = Math.min((j + 1) * block, Nk, s + 1);
      for (let t = j * block; t < t1; t++) {
        const l = dot(q, qo, k, kvBase + t * d, d) * scale;
        logits[nkeys] = l;
        keys[nkeys] = t;
        nkeys++;
        if (l > mx) mx = l;
      }
    }
    if (lse !== undefined) lse[bh * Nq + r] = -Infinity;
    if (nkeys === 0) return;
    acc.fill(0);
    let z = 0;
    for (let m = 0; m < nkeys; m++) {
      const w = Math.exp(logits[m] - mx);
      z += w;
      const vo = kvBase + keys[m] * d;
      for (let c = 0; c < d; c++) acc[c] += w * v[vo + c];
    }
    for (let c = 0; c < d; c++) out[qo + c] = acc[c] / z;
    if (lse !== undefined) lse[bh * Nq + r] = mx + Math.log(z);
  });
  return out;
}

/** Result of referenceMassRecall. */
export interface MassRecall {
  /** Per computed row: [b, hq, rows.length] (rows default: all Nq rows). */
  perRow: Float64Array;
  /** Mean over all computed rows. */
  mean: number;
  /** Minimum over all computed rows. */
  min: number;
}

/**
 * Attention-mass recall: for each query row, the exact causal softmax over all
 * keys t <= s, and the fraction of that mass on keys inside the selected blocks.
 */
export function referenceMassRecall(
  q: RealArray,
  k: RealArray,
  dims: RefDims,
  counts: Int32Array | null,
  indices: Int32Array | null,
  block: number,
  softmaxScale?: number,
  rows?: ArrayLike<number>,
): MassRecall {
  const { batch, hq, nq: Nq, nk: Nk, d } = dims;
  checkDims(dims, q.length, k.length);
  const scale = scoreScale(softmaxScale, d);
  const grid = blockGrid(Nq, Nk, block);
  const rowList = rows ?? Array.from({ length: Nq }, (_, r) => r);
  const perRow = new Float64Array(batch * hq * rowList.length);
  const logits = new Float64Array(Nk);
  const sel = new Uint8Array(grid.nk);
  let sum = 0;
  let min = Infinity;
  forEachRow(dims, grid, counts, indices, rowList, ({ bh, kvBase, ri, r, qo, blocks }) => {
    const s = Math.min(Nk - Nq + r, Nk - 1);
    sel.fill(0);
    for (let bj = 0; bj < blocks.length; bj++) sel[blocks[bj]] = 1;
    let mx = -Infinity;
    for (let t = 0; t <= s; t++) {
      logits[t] = dot(q, qo, k, kvBase + t * d, d) * scale;
      if (logits[t] > mx) mx = logits[t];
    }
    let z = 0;
    let inSel = 0;
    for (let t = 0; t <= s; t++) {
      const w = Math.exp(logits[t] - mx);
      z += w;
      if (sel[Math.floor(t / block)]) inSel += w;
    }
    const rec = z > 0 ? inSel / z : 0;
    perRow[bh * rowList.length + ri] = rec;
    sum += rec;
    if (rec < min) min = rec;
  });
  return { perRow, mean: perRow.length > 0 ? sum / perRow.length : 1, min };
}

// The structured workload's hot loops (lib/workloads/structured.ts): one row
// of keys, values or queries at a time, RoPE from the generator's tables, the
// row written as float32, float16 or bfloat16 bits. Kept in small module-level
// functions so V8 optimises them once (one huge function with nested loops
// keeps deoptimising on OSR).

import type { Rng } from '../rng';
import { f16BitsFromF32Bits } from '../dtype';

/** How a row is written: 0 float32, 1 float16 bits, 2 bfloat16 bits. */
export type RowMode = 0 | 1 | 2;

interface RowCtx {
  rowF: Float32Array;
  rowU: Uint32Array;
  mode: RowMode;
  d: number;
}

/** The scratch of one generated head and its row writer. */
export interface RowBuffers {
  /** One row of d float32 values being assembled. */
  rowF: Float32Array;
  /** Pre-RoPE structured content: real and imaginary part of each pair. */
  ex: Float64Array;
  ey: Float64Array;
  /** Writes rowF at element `off` of `dst` in the row mode. */
  writeRow: (dst: Float32Array | Uint16Array, off: number) => void;
}

/** Scratch for rows of d values (P = d / 2 pairs) written in `mode`. */
export function rowBuffers(mode: RowMode, d: number): RowBuffers {
  const rowF = new Float32Array(d);
  const ctx: RowCtx = { rowF, rowU: new Uint32Array(rowF.buffer), mode, d };
  const writeRow = (dst: Float32Array | Uint16Array, off: number): void => {
    if (mode === 0) writeF32(ctx, dst as Float32Array, off);
    else if (mode === 1) writeF16(ctx, dst as Uint16Array, off);
    else writeBF16(ctx, dst as Uint16Array, off);
  };
  return { rowF, ex: new Float64Array(d / 2), ey: new Float64Array(d / 2), writeRow };
}

function writeF32(c: RowCtx, dst: Float32Array, off: number): void {
  const r = c.rowF;
  const d = c.d;
  for (let i = 0; i < d; i++) dst[off + i] = r[i];
}

function writeF16(c: RowCtx, dst: Uint16Array, off: number): void {
  const u = c.rowU;
  const d = c.d;
  for (let i = 0; i < d; i++) dst[off + i] = f16BitsFromF32Bits(u[i]);
}

function writeBF16(c: RowCtx, dst: Uint16Array, off: number): void {
  const u = c.rowU;
  const d = c.d;
  for (let i = 0; i < d; i++) {
    const b = u[i];
    dst[off + i] = (b & 0x7fffffff) > 0x7f800000 ? (b >>> 16) | 0x0040 : (b + 0x7fff + ((b >>> 16) & 1)) >>> 16;
  }
}

/** What key and query rows share: the pair layout, RoPE tables, topic and sink content, scratch. */
interface RotCommon {
  d: number;
  tp: number;
  topic0: number;
  SP: number;
  spIndex: Int32Array;
  cosT: Float32Array;
  sinT: Float32Array;
  dimX: Int32Array;
  dimY: Int32Array;
  tx: Float64Array;
  ty: Float64Array;
  ux: Float64Array;
  uy: Float64Array;
  segOf: Int32Array;
  sigma: number;
  ex: Float64Array;
  ey: Float64Array;
  rowF: Float32Array;
  writeRow: (dst: Float32Array | Uint16Array, off: number) => void;
}

/** rowF[pair dims] += RoPE(position row tb / SP) applied to (ex, ey) on the structured pairs. */
function rotateAdd(
  rowF: Float32Array,
  ex: Float64Array,
  ey: Float64Array,
  SP: number,
  spIndex: Int32Array,
  cosT: Float32Array,
  sinT: Float32Array,
  tb: number,
  dimX: Int32Array,
  dimY: Int32Array,
): void {
  for (let a = 0; a < SP; a++) {
    const p = spIndex[a];
    const cs = cosT[tb + a];
    const sn = sinT[tb + a];
    const x = ex[p];
    const y = ey[p];
    rowF[dimX[p]] += x * cs - y * sn;
    rowF[dimY[p]] += x * sn + y * cs;
  }
}

export interface KeyJob extends RotCommon {
  N: number;
  cx: Float64Array;
  cy: Float64Array;
  sinkTokens: number;
  sinkKeyAmp: number;
  topicKeyAmp: number;
  vStd: number;
  rngK: Rng;
  rngV: Rng;
  kBase: number;
  k: Float32Array | Uint16Array;
  v: Float32Array | Uint16Array;
}

/** Keys and values of one kv head, row by row. */
export function genKeys(j: KeyJob): void {
  const { N, d, tp, topic0, SP, spIndex, cosT, sinT, dimX, dimY, cx, cy, tx, ty, ux, uy, segOf } = j;
  const { sinkTokens, sinkKeyAmp, topicKeyAmp, sigma, vStd, rngK, rngV, ex, ey, rowF, kBase, k, v, writeRow } = j;
  ex.set(cx);
  ey.set(cy);
  for (let t = 0; t < N; t++) {
    const m = segOf[t];
    for (let a = 0; a < tp; a++) {
      const p = topic0 + a;
      ex[p] = cx[p] + tx[m * tp + a] * topicKeyAmp;
      ey[p] = cy[p] + ty[m * tp + a] * topicKeyAmp;
    }
    if (t < sinkTokens) {
      for (let a = 0; a < tp; a++) {
        ex[topic0 + a] += sinkKeyAmp * ux[a];
        ey[topic0 + a] += sinkKeyAmp * uy[a];
      }
    }
    rngK.fillFastNormal(rowF, d, sigma);
    rotateAdd(rowF, ex, ey, SP, spIndex, cosT, sinT, t * SP, dimX, dimY);
    writeRow(k, kBase + t * d);
    rngV.fillFastNormal(rowF, d, vStd);
    writeRow(v, kBase + t * d);
  }
}

export interface QueryJob extends RotCommon {
  Nq: number;
  qStart: number;
  ax: Float64Array;
  ay: Float64Array;
  selfCoef: number;
  sinkCoef: number;
  rvx: Float64Array;
  rvy: Float64Array;
  rngQ: Rng;
  qBase: number;
  q: Float32Array | Uint16Array;
}

/** Queries of one query head, row by row. */
export function genQueries(j: QueryJob): void {
  const { Nq, qStart, d, tp, topic0, SP, spIndex, cosT, sinT, dimX, dimY, ax, ay, tx, ty, ux, uy, segOf } = j;
  const { selfCoef, sinkCoef, rvx, rvy, sigma, rngQ, ex, ey, rowF, qBase, q, writeRow } = j;
  ex.set(ax);
  ey.set(ay);
  for (let r = 0; r < Nq; r++) {
    const s = qStart + r;
    const m = segOf[s];
    for (let a = 0; a < tp; a++) {
      const p = topic0 + a;
      ex[p] = ax[p] + selfCoef * tx[m * tp + a];
      ey[p] = ay[p] + selfCoef * ty[m * tp + a];
    }
    rngQ.fillFastNormal(rowF, d, sigma);
    rotateAdd(rowF, ex, ey, SP, spIndex, cosT, sinT, s * SP, dimX, dimY);
    // anchored parts (already in post-RoPE coordinates)
    for (let a = 0; a < tp; a++) {
      const p = topic0 + a;
      rowF[dimX[p]] += sinkCoef * ux[a] + rvx[m * tp + a];
      rowF[dimY[p]] += sinkCoef * uy[a] + rvy[m * tp + a];
    }
    writeRow(q, qBase + r * d);
  }
}

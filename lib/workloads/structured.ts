// Seeded generator of long-context Q/K/V with the structure real prefill
// attention shows, RoPE applied. Used to judge block selection (random Gaussian
// inputs say nothing about it) and to benchmark at realistic densities.
//
// Model of one kv head g and its query heads (everything per head is seeded):
//  - positional content: every key carries the same constant vector c_g on the
//    rotary pairs [0, positionalPairs) (all by default; the HIGH-frequency ones
//    make the sharp local/slash peaks) before RoPE. A query head
//    carries sum_o w_o * c_g * e^{-i theta_p o} for a few offsets o, so after RoPE
//    q.k = sum_o w_o sum_p |c_p|^2 cos(theta_p (s - t - o)): a peak at relative
//    offset o. o = 0 is a local window, o > 0 a "slash" diagonal.
//  - topics: the sequence is cut into segments (mean `segmentLength` tokens);
//    keys of segment m carry a topic vector T_m on the LOWEST-frequency pairs.
//    Queries carry their own segment's topic (self-topic, RoPE applied like the
//    keys, so it matches nearby keys of the segment) and, for retrieval heads,
//    the topic of one earlier segment. The retrieval part is anchored at the
//    source segment's centre c (added after RoPE as R(theta c) T_src), so the
//    match survives any distance: q.k = sum_p |T_p|^2 cos(theta_p (c - t)).
//  - sinks: the first `sinkTokens` keys carry a large vector u on the lowest
//    pairs; every query carries a multiple of u after RoPE (anchored at 0).
//  - noise: i.i.d. Gaussian on every dim of q and k (rotation invariant, so it
//    is added after RoPE); v is Gaussian.
// Head kinds (fractions in `headMix`): 'local' (strong window), 'slash' (weak
// window + one or two diagonals), 'retrieval' (long-range topic lookup),
// 'diffuse' (weak everything, noise dominated).
//
// Strengths are given in logit units: the peak contribution to q.k / sqrt(d).
// Speed: tight loops over typed arrays, cos/sin tables, a one-draw approximate
// normal (Rng.fastNormal); float16/bfloat16 output is written directly as bits.

import type { DType, RopeLayout } from '../types';
import { Rng, mixSeed } from '../rng';
import { f16BitsFromF32Bits } from '../dtype';
import type { Workload, WorkloadShape } from './index';

export type HeadKind = 'local' | 'slash' | 'retrieval' | 'diffuse';

export interface StructuredWorkloadOptions {
  /** Batch size. Default 1. Each batch entry is an independent sequence. */
  batch?: number;
  /** Query heads. Default 32. */
  hq?: number;
  /** Key/value heads (GQA). Default 8. */
  hkv?: number;
  /** Sequence length = key tokens. Default 8192. */
  seqLen?: number;
  /** Query tokens: the last nq positions. Default seqLen. */
  nq?: number;
  /** Head dim (even). Default 128. */
  d?: number;
  /** Seed; the same options give identical bytes. Default 0. */
  seed?: number;
  /** Output dtype; float16/bfloat16 come back as Uint16Array bit patterns. Default 'float32'. */
  dtype?: DType;
  /** RoPE base (10000 for Llama-2 style, 500000 for Llama-3 style). Default 500000. */
  ropeBase?: number;
  /** RoPE pair layout. Default 'half'. */
  ropeLayout?: RopeLayout;
  /** Fractions of query heads of each kind (normalised). Default local .3, slash .25, retrieval .25, diffuse .2. */
  headMix?: Partial<Record<HeadKind, number>>;
  /**
   * Number of rotary pairs, from the highest frequency down, carrying positional
   * (window/slash) content. Default d/2 (all pairs): the high-frequency pairs give
   * a sharp local peak, the low-frequency ones a slow recency decay (the logit
   * falls roughly linearly in log(distance)), which is what makes the selected
   * density fall as the context grows.
   */
  positionalPairs?: number;
  /** Peak logit of the local window on a 'local' head. Default 14. */
  localStrength?: number;
  /** Peak logit of a diagonal on a 'slash' head. Default 14. */
  slashStrength?: number;
  /** Candidate slash offsets in tokens (each slash head takes one or two). Default [128, 384, 1024, 3000]. */
  slashOffsets?: number[];
  /** Number of lowest-frequency rotary pairs carrying topics and sinks. Default d/8. */
  topicPairs?: number;
  /** Mean topic segment length in tokens (uniform in [0.5, 1.5] x this). Default 1536. */
  segmentLength?: number;
  /** Peak logit of a retrieval head on its source segment. Default 10. */
  retrievalStrength?: number;
  /** Logit of a query on keys of its own segment (all heads, scaled per kind). Default 3. */
  selfTopicStrength?: number;
  /** Number of sink tokens at the start. Default 4. */
  sinkTokens?: number;
  /** Logit of a query on the sink tokens. Default 8. */
  sinkStrength?: number;
  /** Std of the i.i.d. noise on each q and k dim. Default 1. */
  noiseStd?: number;
  /** Std of v entries. Default 1. */
  vStd?: number;
}

export interface StructuredWorkload extends Workload {
  /** The kind of every query head, for diagnostics. */
  headKinds: HeadKind[];
}

interface Resolved {
  batch: number;
  hq: number;
  hkv: number;
  seqLen: number;
  nq: number;
  d: number;
  seed: number;
  dtype: DType;
  ropeBase: number;
  ropeLayout: RopeLayout;
  headMix: Record<HeadKind, number>;
  positionalPairs: number;
  localStrength: number;
  slashStrength: number;
  slashOffsets: number[];
  topicPairs: number;
  segmentLength: number;
  retrievalStrength: number;
  selfTopicStrength: number;
  sinkTokens: number;
  sinkStrength: number;
  noiseStd: number;
  vStd: number;
}

function resolve(o: StructuredWorkloadOptions): Resolved {
  const d = o.d ?? 128;
  const seqLen = o.seqLen ?? 8192;
  const r: Resolved = {
    batch: o.batch ?? 1,
    hq: o.hq ?? 32,
    hkv: o.hkv ?? 8,
    seqLen,
    nq: o.nq ?? seqLen,
    d,
    seed: o.seed ?? 0,
    dtype: o.dtype ?? 'float32',
    ropeBase: o.ropeBase ?? 500000,
    ropeLayout: o.ropeLayout ?? 'half',
    headMix: { local: 0.3, slash: 0.25, retrieval: 0.25, diffuse: 0.2, ...(o.headMix ?? {}) },
    positionalPairs: o.positionalPairs ?? d / 2,
    localStrength: o.localStrength ?? 14,
    slashStrength: o.slashStrength ?? 14,
    slashOffsets: o.slashOffsets ?? [128, 384, 1024, 3000],
    topicPairs: o.topicPairs ?? d / 8,
    segmentLength: o.segmentLength ?? 1536,
    retrievalStrength: o.retrievalStrength ?? 10,
    selfTopicStrength: o.selfTopicStrength ?? 3,
    sinkTokens: o.sinkTokens ?? 4,
    sinkStrength: o.sinkStrength ?? 8,
    noiseStd: o.noiseStd ?? 1,
    vStd: o.vStd ?? 1,
  };
  const P = d / 2;
  if (!Number.isInteger(d) || d < 4 || d % 2 !== 0) throw new RangeError('d must be an even integer >= 4');
  if (r.hq % r.hkv !== 0) throw new RangeError('hq must be a multiple of hkv');
  if (r.nq > r.seqLen || r.nq < 1) throw new RangeError('nq must be in [1, seqLen]');
  if (r.positionalPairs < 1 || r.positionalPairs > P) throw new RangeError(`positionalPairs must be in [1, ${P}]`);
  if (r.topicPairs < 1 || r.topicPairs > P) throw new RangeError(`topicPairs must be in [1, ${P}]`);
  if (r.segmentLength < 1) throw new RangeError('segmentLength must be >= 1');
  return r;
}

/** Assign head kinds to query heads from the mix (deterministic, spread over kv groups). */
export function assignHeadKinds(hq: number, mix: Record<HeadKind, number>, seed: number): HeadKind[] {
  const kinds: HeadKind[] = ['local', 'slash', 'retrieval', 'diffuse'];
  const total = kinds.reduce((s, k) => s + Math.max(0, mix[k]), 0) || 1;
  // largest-remainder apportionment
  const exact = kinds.map((k) => (Math.max(0, mix[k]) / total) * hq);
  const n = exact.map(Math.floor);
  let left = hq - n.reduce((a, b) => a + b, 0);
  const order = exact.map((e, i) => [e - Math.floor(e), i] as const).sort((a, b) => b[0] - a[0] || a[1] - b[1]);
  for (let t = 0; left > 0; t++, left--) n[order[t % order.length][1]]++;
  const list: HeadKind[] = [];
  kinds.forEach((k, i) => {
    for (let c = 0; c < n[i]; c++) list.push(k);
  });
  return new Rng(mixSeed(seed, 0x4ead)).shuffle(list);
}

/**
 * Generate a structured long-context workload (see the file comment for the
 * model). Output `{ q, k, v, shape, dtype, layout: 'bhnd', headKinds }`.
 */
export function structuredWorkload(opts: StructuredWorkloadOptions = {}): StructuredWorkload {
  const o = resolve(opts);
  const { batch, hq, hkv, seqLen: N, nq: Nq, d } = o;
  const P = d / 2;
  const group = hq / hkv;
  const sqrtD = Math.sqrt(d);
  const qStart = N - Nq;

  // pair -> dims
  const dimX = new Int32Array(P);
  const dimY = new Int32Array(P);
  for (let p = 0; p < P; p++) {
    if (o.ropeLayout === 'half') {
      dimX[p] = p;
      dimY[p] = p + P;
    } else {
      dimX[p] = 2 * p;
      dimY[p] = 2 * p + 1;
    }
  }
  const theta = new Float64Array(P);
  for (let p = 0; p < P; p++) theta[p] = Math.pow(o.ropeBase, (-2 * p) / d);

  // structured pairs: positional [0, pp), topic/sink [P - tp, P)
  const pp = o.positionalPairs;
  const tp = o.topicPairs;
  const topic0 = P - tp;
  const structPairs: number[] = [];
  for (let p = 0; p < P; p++) if (p < pp || p >= topic0) structPairs.push(p);
  const SP = structPairs.length;
  const spIndex = Int32Array.from(structPairs);

  // RoPE tables for the structured pairs: [N, SP]
  const cosT = new Float32Array(N * SP);
  const sinT = new Float32Array(N * SP);
  for (let t = 0; t < N; t++) {
    for (let a = 0; a < SP; a++) {
      const ang = t * theta[spIndex[a]];
      cosT[t * SP + a] = Math.cos(ang);
      sinT[t * SP + a] = Math.sin(ang);
    }
  }

  const kinds = assignHeadKinds(hq, o.headMix, o.seed);
  const elemsQ = batch * hq * Nq * d;
  const elemsK = batch * hkv * N * d;
  const half = o.dtype !== 'float32';
  const q: Float32Array | Uint16Array = half ? new Uint16Array(elemsQ) : new Float32Array(elemsQ);
  const k: Float32Array | Uint16Array = half ? new Uint16Array(elemsK) : new Float32Array(elemsK);
  const v: Float32Array | Uint16Array = half ? new Uint16Array(elemsK) : new Float32Array(elemsK);
  const rowF = new Float32Array(d);
  const mode = o.dtype === 'float32' ? 0 : o.dtype === 'float16' ? 1 : 2;
  const ctx: RowCtx = { rowF, rowU: new Uint32Array(rowF.buffer), mode, d };
  const writeRow = (dst: Float32Array | Uint16Array, off: number): void => {
    if (mode === 0) writeF32(ctx, dst as Float32Array, off);
    else if (mode === 1) writeF16(ctx, dst as Uint16Array, off);
    else writeBF16(ctx, dst as Uint16Array, off);
  };

  const sigma = o.noiseStd;
  const ex = new Float64Array(P); // pre-RoPE structured content (real part, pair p)
  const ey = new Float64Array(P); // imaginary part

  for (let b = 0; b < batch; b++) {
    const rngSeq = new Rng(mixSeed(o.seed, 1, b));
    // topic segments
    const segStart: number[] = [];
    for (let t = 0; t < N; ) {
      segStart.push(t);
      t += Math.max(1, Math.round(o.segmentLength * (0.5 + rngSeq.uniform())));
    }
    const nSeg = segStart.length;
    const segOf = new Int32Array(N);
    for (let m = 0; m < nSeg; m++) {
      const end = m + 1 < nSeg ? segStart[m + 1] : N;
      for (let t = segStart[m]; t < end; t++) segOf[t] = m;
    }
    const segCentre = segStart.map((s, m) => Math.floor((s + (m + 1 < nSeg ? segStart[m + 1] : N)) / 2));

    for (let g = 0; g < hkv; g++) {
      const rngH = new Rng(mixSeed(o.seed, 2, b, g));
      // positional content c_g on pairs [0, pp): unit-rms per dim, random phases
      const cx = new Float64Array(pp);
      const cy = new Float64Array(pp);
      for (let p = 0; p < pp; p++) {
        const ph = 2 * Math.PI * rngH.uniform();
        cx[p] = Math.cos(ph) * Math.SQRT2;
        cy[p] = Math.sin(ph) * Math.SQRT2;
      }
      const cNorm2 = 2 * pp;
      // topics T_m on pairs [topic0, P): unit-rms per dim
      const tx = new Float64Array(nSeg * tp);
      const ty = new Float64Array(nSeg * tp);
      for (let m = 0; m < nSeg; m++) {
        for (let a = 0; a < tp; a++) {
          tx[m * tp + a] = rngH.normal();
          ty[m * tp + a] = rngH.normal();
        }
      }
      const tNorm2 = 2 * tp;
      // sink direction u on the topic pairs, unit-rms per dim
      const ux = new Float64Array(tp);
      const uy = new Float64Array(tp);
      for (let a = 0; a < tp; a++) {
        ux[a] = rngH.normal();
        uy[a] = rngH.normal();
      }
      const uNorm2 = 2 * tp;
      const sinkKeyAmp = 2; // sink keys carry 2u: larger key norm, as in real models

      // ---- keys and values of kv head g
      const rngK = new Rng(mixSeed(o.seed, 3, b, g));
      const rngV = new Rng(mixSeed(o.seed, 4, b, g));
      const kBase = (b * hkv + g) * N * d;
      genKeys({ N, d, pp, tp, topic0, SP, spIndex, cosT, sinT, dimX, dimY, cx, cy, tx, ty, ux, uy, segOf,
        sinkTokens: o.sinkTokens, sinkKeyAmp, sigma, vStd: o.vStd, rngK, rngV, ex, ey, rowF, kBase, k, v, writeRow });

      // ---- query heads of this kv head
      for (let hh = 0; hh < group; hh++) {
        const h = g * group + hh;
        const kind = kinds[h];
        const rngQ = new Rng(mixSeed(o.seed, 5, b, h));
        const jitter = (): number => 0.8 + 0.4 * rngQ.uniform();
        // offsets and logit weights of the positional part
        const offs: number[] = [];
        const wts: number[] = [];
        let selfW = o.selfTopicStrength;
        let retW = 0;
        let sinkW = o.sinkStrength;
        if (kind === 'local') {
          offs.push(0);
          wts.push(o.localStrength * jitter());
        } else if (kind === 'slash') {
          offs.push(0);
          wts.push(0.5 * o.localStrength * jitter());
          const nd = 1 + rngQ.int(2);
          for (let x = 0; x < nd; x++) {
            offs.push(o.slashOffsets[rngQ.int(o.slashOffsets.length)]);
            wts.push(o.slashStrength * jitter());
          }
        } else if (kind === 'retrieval') {
          offs.push(0);
          wts.push(0.3 * o.localStrength * jitter());
          retW = o.retrievalStrength * jitter();
          selfW *= 0.5;
        } else {
          offs.push(0);
          wts.push(0.15 * o.localStrength * jitter());
          selfW *= 0.5;
          sinkW *= 0.5;
        }
        // combined pre-RoPE positional vector A_h = sum_o w_o' c e^{-i theta o}
        const ax = new Float64Array(pp);
        const ay = new Float64Array(pp);
        for (let x = 0; x < offs.length; x++) {
          const w = (wts[x] * sqrtD) / cNorm2; // logit -> query coefficient
          for (let p = 0; p < pp; p++) {
            const ang = -theta[p] * offs[x];
            const cs = Math.cos(ang);
            const sn = Math.sin(ang);
            ax[p] += w * (cx[p] * cs - cy[p] * sn);
            ay[p] += w * (cx[p] * sn + cy[p] * cs);
          }
        }
        const selfCoef = (selfW * sqrtD) / (tNorm2 * 0.5);
        const retCoef = (retW * sqrtD) / (tNorm2 * 0.5);
        const sinkCoef = (sinkW * sqrtD) / (uNorm2 * sinkKeyAmp);
        // retrieval source per query segment (an earlier segment, or none)
        const src = new Int32Array(nSeg).fill(-1);
        for (let m = 1; m < nSeg; m++) src[m] = rngQ.int(m);
        // post-RoPE anchored retrieval vector per segment (pairs [topic0, P))
        const rvx = new Float64Array(nSeg * tp);
        const rvy = new Float64Array(nSeg * tp);
        if (retCoef !== 0) {
          for (let m = 1; m < nSeg; m++) {
            const sm = src[m];
            const cpos = segCentre[sm];
            for (let a = 0; a < tp; a++) {
              const ang = theta[topic0 + a] * cpos;
              const cs = Math.cos(ang);
              const sn = Math.sin(ang);
              const x0 = tx[sm * tp + a];
              const y0 = ty[sm * tp + a];
              rvx[m * tp + a] = retCoef * (x0 * cs - y0 * sn);
              rvy[m * tp + a] = retCoef * (x0 * sn + y0 * cs);
            }
          }
        }
        const qBase = (b * hq + h) * Nq * d;
        genQueries({ Nq, qStart, d, pp, tp, topic0, SP, spIndex, cosT, sinT, dimX, dimY, ax, ay, tx, ty, ux, uy, segOf,
          selfCoef, sinkCoef, rvx, rvy, sigma, rngQ, ex, ey, rowF, qBase, q, writeRow });
      }
    }
  }

  const shape: WorkloadShape = { batch, hq, hkv, nq: Nq, nk: N, d };
  return { q, k, v, shape, dtype: o.dtype, layout: 'bhnd', headKinds: kinds };
}

// ---------------------------------------------------------------------------
// Hot loops, kept in small module-level functions so V8 optimises them once
// (one huge function with nested loops keeps deoptimising on OSR).

interface RowCtx {
  rowF: Float32Array;
  rowU: Uint32Array;
  mode: number;
  d: number;
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

interface RotCommon {
  d: number;
  pp: number;
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

interface KeyJob extends RotCommon {
  N: number;
  cx: Float64Array;
  cy: Float64Array;
  sinkTokens: number;
  sinkKeyAmp: number;
  vStd: number;
  rngK: Rng;
  rngV: Rng;
  kBase: number;
  k: Float32Array | Uint16Array;
  v: Float32Array | Uint16Array;
}

function genKeys(j: KeyJob): void {
  const { N, d, pp, tp, topic0, SP, spIndex, cosT, sinT, dimX, dimY, cx, cy, tx, ty, ux, uy, segOf } = j;
  const { sinkTokens, sinkKeyAmp, sigma, vStd, rngK, rngV, ex, ey, rowF, kBase, k, v, writeRow } = j;
  for (let p = 0; p < pp; p++) {
    ex[p] = cx[p];
    ey[p] = cy[p];
  }
  for (let t = 0; t < N; t++) {
    const m = segOf[t];
    for (let a = 0; a < tp; a++) {
      const p = topic0 + a;
      ex[p] = (p < pp ? cx[p] : 0) + tx[m * tp + a] * 0.5;
      ey[p] = (p < pp ? cy[p] : 0) + ty[m * tp + a] * 0.5;
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

interface QueryJob extends RotCommon {
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

function genQueries(j: QueryJob): void {
  const { Nq, qStart, d, pp, tp, topic0, SP, spIndex, cosT, sinT, dimX, dimY, ax, ay, tx, ty, ux, uy, segOf } = j;
  const { selfCoef, sinkCoef, rvx, rvy, sigma, rngQ, ex, ey, rowF, qBase, q, writeRow } = j;
  for (let p = 0; p < pp; p++) {
    ex[p] = ax[p];
    ey[p] = ay[p];
  }
  for (let r = 0; r < Nq; r++) {
    const s = qStart + r;
    const m = segOf[s];
    for (let a = 0; a < tp; a++) {
      const p = topic0 + a;
      ex[p] = (p < pp ? ax[p] : 0) + selfCoef * tx[m * tp + a];
      ey[p] = (p < pp ? ay[p] : 0) + selfCoef * ty[m * tp + a];
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

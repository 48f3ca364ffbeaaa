// Seeded generator of long-context Q/K/V with the structure real prefill
// attention shows, RoPE applied. Used to judge block selection (random Gaussian
// inputs say nothing about it) and to benchmark at realistic densities.
//
// Model, in logit units (the contribution to q.k / sqrt(d)), for one kv head g
// and its query heads (everything per head is seeded). With RoPE, pair p has
// frequency theta_p = base^(-2p/d); p = 0 is the highest.
//  - sharp positional patterns on the HIGH-frequency pairs [0, sharpPairs): every
//    key carries the same vector c_g there before RoPE; a query carries
//    sum_o w_o * a_p * c_g,p * e^{-i theta_p o}, so after RoPE
//    q.k = sum_o w_o sum_p a_p |c_p|^2 cos(theta_p (s - t - o)): a peak at relative
//    offset o (o = 0: local window, o > 0: "slash" diagonal). The query profile a_p
//    is 1 on the core pairs [0, sharpCorePairs) (periods up to ~170 tokens: a
//    128-token mean pool cancels them, so the token-level peak is invisible to a
//    pooled score), 0 between, and `sharpTail` on the last `sharpTailPairs` of the
//    range (periods ~380-3700 tokens at d = 128, base 5e5): a small, smooth pooled
//    footprint around the diagonal. A single-band mean pool sees that footprint as
//    a ~1-2 logit bump under the low-frequency content and misses the diagonal;
//    Prism's high band, whose temperature is scaled by the little energy the band
//    keeps after pooling, amplifies it and selects the diagonal's blocks.
//  - recency on the LOW-frequency pairs [d/2 - recencyPairs, d/2) (at d = 128,
//    base 5e5: coherence lengths 1/theta_p from ~700 to ~4e5 tokens): keys carry
//    c_g there too; a query head draws a horizon x0 (log-uniform in
//    `recencyHorizon`, x the kind's horizon factor) and puts equal weight on the
//    recency pairs with 1/theta_p >= x0. Each pair stops contributing once the
//    distance passes its 1/theta_p, so the logit is flat up to ~x0 and then falls
//    linearly in log(distance) with slope `recencySlope` (x kind factor, jittered):
//    weight ~ distance^-slope. With slope > 1 the far past holds a bounded share of
//    the mass, so the number of blocks a row needs stops growing with length and
//    the density of these heads falls about like 1/N (what real prefill shows:
//    sink + window + a few slashes/segments, length-independent). A slope < 1
//    (diffuse heads) keeps a fixed fraction of the mass spread over all blocks,
//    i.e. a density that stays high: these heads set the density floor at 128K.
//  - topics: the sequence is cut into segments (mean `segmentLength` tokens);
//    keys of segment m carry 0.5 T_m on the lowest `topicPairs` pairs (3d/16: the
//    random overlap of a query's topic with unrelated segments, std ~ strength /
//    sqrt(2 topicPairs), stays small, so unrelated segments do not add a growing
//    diffuse share at long lengths). Queries
//    carry their own segment's topic (RoPE applied like the keys) and, for
//    retrieval heads, the topic of one earlier segment anchored at its centre c
//    (added after RoPE as R(theta c) T_src, so it matches at any distance).
//  - sinks: the first `sinkTokens` keys carry 2u on the topic pairs; every query
//    carries a multiple of u after RoPE (anchored at 0).
//  - noise: i.i.d. Gaussian on every dim of q (qNoiseStd) and k (kNoiseStd),
//    added after RoPE. It is kept small (token-level logit noise ~0.5-1): large
//    key noise times a large structured query gives random per-token logit spikes
//    that no block-level selection can predict (rows with near-zero recall and a
//    relative output error dominated by a few rows). v is Gaussian (vStd).
// Head kinds (fractions in `headMix`, default local .3, slash .25, retrieval .25,
// diffuse .2) and their strengths (x base, jittered 0.8-1.2 per head):
//  - 'local': sharp window 1x localStrength, recency slope 1x, horizon 1x, own
//    topic 1x, sink 1x;
//  - 'slash': one or two diagonals at offsets from `slashOffsets`, slashStrength
//    (large: the peak must beat the RoPE side lobes of the few core pairs), a
//    half-strength window, recency slope 1x with a SHORT horizon (0.5x: the
//    low-frequency view of the row is confident about the recent ~1-2K tokens, so
//    a diagonal further back is found only by Prism's high band), own topic 1x.
//    (A weaker recency on these heads, slope < 1, makes their density flat with
//    length; a much stronger low band makes the calibrated high band so sharp that
//    it keeps only one of the two key blocks a diagonal straddles.)
//  - 'retrieval': long-range topic lookup (retrievalStrength), weak window,
//    recency slope 0.8x: found by both estimators;
//  - 'diffuse': weak everything, recency slope 0.45x (< 1): most blocks are needed
//    at every length, by both estimators.
// Density per head kind (CPU backend, 4 q / 1 kv head, d 128, bf16, block 128,
// tau 0.95, Prism) at 8K / 32K / 128K: local ~70/24/9%, slash ~37/11/6%,
// retrieval ~29/13/8%, diffuse ~95/87/82%; with the default mix the overall
// density falls ~50% -> ~28% -> ~21% like real long-context prefill (the paper:
// 56/30/21% at ~95-96% recall). Measured figures: docs/benchmarks.md.
// Known limitation of any block-level selection (Prism and meanpool alike): a
// query block that straddles a topic boundary shares one selection; on a
// retrieval head the minority rows of that block look up a different source
// segment than the majority, so their recall can be near 0 (a few rows in 1e4).
// Likewise a slash diagonal that straddles two key blocks: rows whose diagonal
// falls in the block with the smaller pooled share may lose it.
//
// Speed: tight loops over typed arrays (structured-rows.ts), cos/sin tables, a
// one-draw approximate normal (Rng.fastNormal); float16/bfloat16 output is
// written directly as bits. The options, their defaults and the head kinds:
// structured-options.ts.

import type { DType } from '../types';
import { Rng, mixSeed } from '../rng';
import { typedArrayName, typeName } from '../args';
import type { Workload, WorkloadShape } from './index';
import { assignHeadKinds, KIND_WEIGHTS, resolveStructuredOptions, type HeadKind, type ResolvedStructuredOptions, type StructuredWorkloadOptions } from './structured-options';
import { genKeys, genQueries, rowBuffers, type RowMode } from './structured-rows';
import { drawKvHead, drawQueryWeights, drawSequence, type KvHeadState, type QueryWeights, type SequenceState } from './structured-draws';

export { assignHeadKinds } from './structured-options';
export type { HeadKind, StructuredWorkloadOptions } from './structured-options';

export interface StructuredWorkload extends Workload {
  /** The kind of every query head, for diagnostics. */
  headKinds: HeadKind[];
}

/** Data of one generated part: Float32Array, or Uint16Array bits for float16 / bfloat16. */
export type StructuredData = Float32Array | Uint16Array;

/** One kv head of one batch entry and its query heads, as StructuredGenerator.kvGroup() makes them. */
export interface StructuredGroup {
  batch: number;
  /** The kv head g; the query heads are [g * group, (g + 1) * group). */
  kvHead: number;
  /** [group, nq, d]: the group's query heads, one after the other. */
  q: StructuredData;
  /** [nk, d] */
  k: StructuredData;
  /** [nk, d] */
  v: StructuredData;
}

const TOPIC_KEY_AMP = 0.5; // keys carry 0.5 T_m
const SINK_KEY_AMP = 2; // sink keys carry 2u: larger key norm, as in real models

/**
 * The structured workload one part at a time: one query head, one kv head's
 * keys and values, or one kv head with its query heads. Every part is seeded
 * on its own (batch entry, head), so the parts are byte for byte the slices
 * of structuredWorkload() with the same options, in any order. For inputs
 * larger than one typed array (32 heads x 1M tokens x 128 = 2^32 elements)
 * and for uploading head by head. Making a generator builds the RoPE tables
 * (nk x structured pairs, float32 cos and sin: 512 MiB at 1M tokens, d 128);
 * make one and ask it for every part.
 */
export class StructuredGenerator {
  /** Shape of the whole workload. */
  readonly shape: WorkloadShape;
  readonly dtype: DType;
  /** The kind of every query head. */
  readonly headKinds: HeadKind[];
  /** Query heads per kv head (GQA group). */
  readonly group: number;
  private readonly o: ResolvedStructuredOptions;
  private readonly P: number;
  private readonly sqrtD: number;
  private readonly qStart: number;
  private readonly dimX: Int32Array;
  private readonly dimY: Int32Array;
  private readonly theta: Float64Array;
  private readonly rec0: number;
  private readonly topic0: number;
  private readonly SP: number;
  private readonly spIndex: Int32Array;
  private readonly qProfile: Float64Array;
  private readonly sharpNorm2: number;
  private readonly cosT: Float32Array;
  private readonly sinT: Float32Array;
  private readonly mode: RowMode;
  private seqCache: { b: number; s: SequenceState } | null = null;
  private headCache: { b: number; g: number; s: KvHeadState } | null = null;

  constructor(opts: StructuredWorkloadOptions = {}) {
    const o = resolveStructuredOptions(opts);
    this.o = o;
    const { batch, hq, hkv, seqLen: N, nq: Nq, d } = o;
    const P = d / 2;
    this.P = P;
    this.group = hq / hkv;
    this.sqrtD = Math.sqrt(d);
    this.qStart = N - Nq;
    this.shape = { batch, hq, hkv, nq: Nq, nk: N, d };
    this.dtype = o.dtype;
    this.mode = o.dtype === 'float32' ? 0 : o.dtype === 'float16' ? 1 : 2;

    // pair -> dims
    const half = o.ropeLayout === 'half';
    this.dimX = Int32Array.from({ length: P }, (_, p) => (half ? p : 2 * p));
    this.dimY = Int32Array.from({ length: P }, (_, p) => (half ? p + P : 2 * p + 1));
    const theta = Float64Array.from({ length: P }, (_, p) => Math.pow(o.ropeBase, (-2 * p) / d));
    this.theta = theta;

    // pair roles: sharp [0, sp), recency [P - rp, P), topic/sink [P - tp, P)
    const sp = o.sharpPairs;
    this.rec0 = P - o.recencyPairs;
    this.topic0 = P - o.topicPairs;
    const structPairs: number[] = [];
    for (let p = 0; p < P; p++) if (p < sp || p >= this.rec0 || p >= this.topic0) structPairs.push(p);
    const SP = structPairs.length;
    this.SP = SP;
    const spIndex = Int32Array.from(structPairs);
    this.spIndex = spIndex;
    // query weight profile over the sharp pairs: core 1, tail sharpTail, between 0
    const qProfile = new Float64Array(P);
    let qProfileSum = 0;
    for (let p = 0; p < sp; p++) {
      qProfile[p] = p < o.sharpCorePairs ? 1 : p >= sp - o.sharpTailPairs ? o.sharpTail : 0;
      qProfileSum += qProfile[p];
    }
    this.qProfile = qProfile;
    // |c|^2 over the sharp pairs, weighted by the query's pair profile (so that
    // the peak logit is the given one)
    this.sharpNorm2 = 2 * qProfileSum;

    const { cosT, sinT } = ropeTables(N, theta, spIndex);
    this.cosT = cosT;
    this.sinT = sinT;
    this.headKinds = assignHeadKinds(hq, o.headMix, o.seed);
  }

  /** Elements of one query head: nq x d. */
  get queryHeadElements(): number {
    return this.shape.nq * this.shape.d;
  }

  /** Elements of one kv head's keys (and of its values): nk x d. */
  get kvHeadElements(): number {
    return this.shape.nk * this.shape.d;
  }

  /**
   * Query head h of batch entry b: [nq, d]. With `out`, written there at
   * element `offset` (and `out` returned).
   */
  queryHead(b: number, h: number, out?: StructuredData, offset = 0): StructuredData {
    this.checkIndex('batch', b, this.shape.batch);
    this.checkIndex('query head', h, this.shape.hq);
    const dst = out ?? this.alloc(this.queryHeadElements);
    this.checkOut(dst, offset, this.queryHeadElements);
    this.genQueryHead(b, h, dst, offset);
    return dst;
  }

  /**
   * Keys and values of kv head g of batch entry b: [nk, d] each. With `out`,
   * written into out.k and out.v at element `out.offset`.
   */
  keyValueHead(b: number, g: number, out?: { k: StructuredData; v: StructuredData; offset?: number }): { k: StructuredData; v: StructuredData } {
    this.checkIndex('batch', b, this.shape.batch);
    this.checkIndex('kv head', g, this.shape.hkv);
    const n = this.kvHeadElements;
    const k = out?.k ?? this.alloc(n);
    const v = out?.v ?? this.alloc(n);
    const offset = out?.offset ?? 0;
    this.checkOut(k, offset, n);
    this.checkOut(v, offset, n);
    this.genKvHead(b, g, k, v, offset);
    return { k, v };
  }

  /** Kv head g of batch entry b with its query heads [g * group, (g + 1) * group). */
  kvGroup(b: number, g: number): StructuredGroup {
    const { k, v } = this.keyValueHead(b, g);
    const q = this.alloc(this.group * this.queryHeadElements);
    for (let hh = 0; hh < this.group; hh++) this.genQueryHead(b, g * this.group + hh, q, hh * this.queryHeadElements);
    return { batch: b, kvHead: g, q, k, v };
  }

  /** Every kv group, batch entry by batch entry, kv head by kv head. */
  *groups(): Generator<StructuredGroup> {
    for (let b = 0; b < this.shape.batch; b++) for (let g = 0; g < this.shape.hkv; g++) yield this.kvGroup(b, g);
  }

  private alloc(n: number): StructuredData {
    return this.dtype === 'float32' ? new Float32Array(n) : new Uint16Array(n);
  }

  private checkIndex(what: string, x: number, n: number): void {
    if (!Number.isInteger(x) || x < 0 || x >= n) throw new RangeError(`${what} must be an integer in [0, ${n - 1}], got ${x}`);
  }

  private checkOut(out: StructuredData, offset: number, n: number): void {
    const want = this.dtype === 'float32' ? 'Float32Array' : 'Uint16Array';
    if (typedArrayName(out) !== want) throw new TypeError(`out must be a ${want} for ${this.dtype}, got ${typeName(out)}`);
    if (!Number.isInteger(offset) || offset < 0 || offset + n > out.length) {
      throw new RangeError(`out has ${out.length} elements: ${n} at offset ${offset} do not fit`);
    }
  }

  /** Topic segments of batch entry b (cached: the parts of one entry share them). */
  private sequence(b: number): SequenceState {
    if (!this.seqCache || this.seqCache.b !== b) this.seqCache = { b, s: drawSequence(this.o, this.shape.nk, b) };
    return this.seqCache.s;
  }

  /** Content of kv head g of batch entry b (cached: a group's parts share it). */
  private kvHeadState(b: number, g: number): KvHeadState {
    if (!this.headCache || this.headCache.b !== b || this.headCache.g !== g) {
      this.headCache = { b, g, s: drawKvHead(this.o, this.sequence(b).nSeg, b, g) };
    }
    return this.headCache.s;
  }

  private genKvHead(b: number, g: number, k: StructuredData, v: StructuredData, kBase: number): void {
    const o = this.o;
    const { segOf } = this.sequence(b);
    const { cx, cy, tx, ty, ux, uy } = this.kvHeadState(b, g);
    const { rowF, ex, ey, writeRow } = rowBuffers(this.mode, this.shape.d);
    const rngK = new Rng(mixSeed(o.seed, 3, b, g));
    const rngV = new Rng(mixSeed(o.seed, 4, b, g));
    genKeys({ N: this.shape.nk, d: this.shape.d, tp: o.topicPairs, topic0: this.topic0, SP: this.SP, spIndex: this.spIndex,
      cosT: this.cosT, sinT: this.sinT, dimX: this.dimX, dimY: this.dimY, cx, cy, tx, ty, ux, uy, segOf,
      sinkTokens: o.sinkTokens, sinkKeyAmp: SINK_KEY_AMP, topicKeyAmp: TOPIC_KEY_AMP, sigma: o.kNoiseStd, vStd: o.vStd,
      rngK, rngV, ex, ey, rowF, kBase, k, v, writeRow });
  }

  private genQueryHead(b: number, h: number, q: StructuredData, qBase: number): void {
    const o = this.o;
    const tp = o.topicPairs;
    const { segOf } = this.sequence(b);
    const head = this.kvHeadState(b, Math.floor(h / this.group));
    const { rowF, ex, ey, writeRow } = rowBuffers(this.mode, this.shape.d);
    const rngQ = new Rng(mixSeed(o.seed, 5, b, h));
    const w = drawQueryWeights(o, KIND_WEIGHTS[this.headKinds[h]], rngQ);
    const { ax, ay } = this.positionalVector(head, w);
    const tNorm2 = 2 * tp;
    const uNorm2 = 2 * tp;
    const selfCoef = (w.self * this.sqrtD) / (tNorm2 * TOPIC_KEY_AMP);
    const retCoef = (w.retrieval * this.sqrtD) / (tNorm2 * TOPIC_KEY_AMP);
    const sinkCoef = (w.sink * this.sqrtD) / (uNorm2 * SINK_KEY_AMP);
    const { rvx, rvy } = this.retrievalVectors(b, head, retCoef, rngQ);
    genQueries({ Nq: this.shape.nq, qStart: this.qStart, d: this.shape.d, tp, topic0: this.topic0, SP: this.SP, spIndex: this.spIndex,
      cosT: this.cosT, sinT: this.sinT, dimX: this.dimX, dimY: this.dimY, ax, ay, tx: head.tx, ty: head.ty, ux: head.ux, uy: head.uy, segOf,
      selfCoef, sinkCoef, rvx, rvy, sigma: o.qNoiseStd, rngQ, ex, ey, rowF, qBase, q, writeRow });
  }

  /**
   * A query head's combined pre-RoPE positional vector: A = sum_o w_o c e^{-i theta o}
   * on the sharp pairs (its window and diagonals) + w_r c on the recency pairs.
   */
  private positionalVector(head: KvHeadState, w: QueryWeights): { ax: Float64Array; ay: Float64Array } {
    const { P, theta, qProfile, sqrtD, rec0 } = this;
    const { cx, cy } = head;
    const sp = this.o.sharpPairs;
    const ax = new Float64Array(P);
    const ay = new Float64Array(P);
    for (let x = 0; x < w.offsets.length; x++) {
      const w0 = (w.sharp[x] * sqrtD) / this.sharpNorm2; // logit -> query coefficient
      for (let p = 0; p < sp; p++) {
        const wp = w0 * qProfile[p];
        const ang = -theta[p] * w.offsets[x];
        const cs = Math.cos(ang);
        const sn = Math.sin(ang);
        ax[p] += wp * (cx[p] * cs - cy[p] * sn);
        ay[p] += wp * (cx[p] * sn + cy[p] * cs);
      }
    }
    // recency: equal weight on the recency pairs slower than the horizon
    // (theta_p * horizon <= 1; at least the slowest pair). Pair p stays coherent
    // up to distance ~1/theta_p, so the logit falls by about R / nH per
    // factor 1/ratio of distance: R = slope * ln(1 / (theta_slowest * horizon)).
    let rFirst = P - 1;
    while (rFirst > rec0 && theta[rFirst - 1] * w.horizon <= 1) rFirst--;
    const nH = P - rFirst;
    const recLogit = w.recencySlope * Math.max(1, Math.log(1 / (theta[P - 1] * w.horizon)));
    const wr = (recLogit * sqrtD) / (2 * nH);
    for (let p = rFirst; p < P; p++) {
      ax[p] += wr * cx[p];
      ay[p] += wr * cy[p];
    }
    return { ax, ay };
  }

  /**
   * The post-RoPE retrieval vector of each topic segment of batch entry b (pairs
   * [topic0, P)): the topic of an earlier segment, drawn from `rngQ`, anchored
   * at that segment's centre; zero for segment 0 and when `retCoef` is 0.
   */
  private retrievalVectors(b: number, head: KvHeadState, retCoef: number, rngQ: Rng): { rvx: Float64Array; rvy: Float64Array } {
    const { theta, topic0 } = this;
    const tp = this.o.topicPairs;
    const { nSeg, segCentre } = this.sequence(b);
    const { tx, ty } = head;
    // retrieval source per query segment (an earlier segment, or none)
    const src = new Int32Array(nSeg).fill(-1);
    for (let m = 1; m < nSeg; m++) src[m] = rngQ.int(m);
    const rvx = new Float64Array(nSeg * tp);
    const rvy = new Float64Array(nSeg * tp);
    if (retCoef === 0) return { rvx, rvy };
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
    return { rvx, rvy };
  }
}

/** cos and sin of t * theta[spIndex[a]] for every position t < N and structured pair a: [N, SP] float32. */
function ropeTables(N: number, theta: Float64Array, spIndex: Int32Array): { cosT: Float32Array; sinT: Float32Array } {
  const SP = spIndex.length;
  const cosT = new Float32Array(N * SP);
  const sinT = new Float32Array(N * SP);
  for (let t = 0; t < N; t++) {
    for (let a = 0; a < SP; a++) {
      const ang = t * theta[spIndex[a]];
      cosT[t * SP + a] = Math.cos(ang);
      sinT[t * SP + a] = Math.sin(ang);
    }
  }
  return { cosT, sinT };
}

/** A generator of the structured workload's parts (see StructuredGenerator). */
export function structuredGenerator(opts: StructuredWorkloadOptions = {}): StructuredGenerator {
  return new StructuredGenerator(opts);
}

/**
 * Query head `head` of batch entry `batch` alone: [nq, d], the same bytes as
 * that head's slice of structuredWorkload(opts). Builds the RoPE tables on
 * every call: for many heads, make one structuredGenerator(opts).
 */
export function structuredHead(opts: StructuredWorkloadOptions, head: number, batch = 0): StructuredData {
  return new StructuredGenerator(opts).queryHead(batch, head);
}

/**
 * Generate a structured long-context workload (see the file comment for the
 * model). Output `{ q, k, v, shape, dtype, layout: 'bhnd', headKinds }`. The
 * whole workload in three typed arrays: for inputs larger than one typed array,
 * generate it in parts with structuredGenerator().
 */
export function structuredWorkload(opts: StructuredWorkloadOptions = {}): StructuredWorkload {
  const gen = new StructuredGenerator(opts);
  const { batch, hq, hkv, nq: Nq, nk: N, d } = gen.shape;
  const elemsQ = batch * hq * Nq * d;
  const elemsK = batch * hkv * N * d;
  const half = gen.dtype !== 'float32';
  const q: StructuredData = half ? new Uint16Array(elemsQ) : new Float32Array(elemsQ);
  const k: StructuredData = half ? new Uint16Array(elemsK) : new Float32Array(elemsK);
  const v: StructuredData = half ? new Uint16Array(elemsK) : new Float32Array(elemsK);
  for (let b = 0; b < batch; b++) {
    for (let g = 0; g < hkv; g++) {
      gen.keyValueHead(b, g, { k, v, offset: (b * hkv + g) * N * d });
      for (let hh = 0; hh < gen.group; hh++) {
        const h = g * gen.group + hh;
        gen.queryHead(b, h, q, (b * hq + h) * Nq * d);
      }
    }
  }
  return { q, k, v, shape: { ...gen.shape }, dtype: gen.dtype, layout: 'bhnd', headKinds: [...gen.headKinds] };
}


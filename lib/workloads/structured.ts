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
// Speed: tight loops over typed arrays, cos/sin tables, a one-draw approximate
// normal (Rng.fastNormal); float16/bfloat16 output is written directly as bits.

import type { DType, RopeLayout } from '../types';
import { Rng, mixSeed } from '../rng';
import { f16BitsFromF32Bits } from '../dtype';
import { typedArrayName, typeName } from '../args';
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
   * Rotary pairs, from the highest frequency down, that carry the sharp positional
   * patterns (local window peak, slash diagonals). Default d/4 (Prism's default
   * high band).
   */
  sharpPairs?: number;
  /**
   * The first `sharpCorePairs` of them (periods up to ~170 tokens at d = 128,
   * base 500000: a 128-token mean pool cancels them) carry the pattern at full
   * weight. Default d/8.
   */
  sharpCorePairs?: number;
  /**
   * The last `sharpTailPairs` of them (periods ~380 to ~3700 tokens: they survive
   * pooling) carry it at the small relative weight `sharpTail`; the pairs between
   * the core and the tail carry none. Default 3d/32.
   */
  sharpTailPairs?: number;
  /** Relative query weight of the tail pairs. Default 0.15. */
  sharpTail?: number;
  /**
   * Rotary pairs, from the lowest frequency up, that carry the slow recency decay
   * (the logit falls about linearly in log(distance)). Default d/4.
   */
  recencyPairs?: number;
  /** Peak logit of the sharp window at offset 0 on a 'local' head. Default 10. */
  localStrength?: number;
  /** Peak logit of a diagonal on a 'slash' head. Default 12. */
  slashStrength?: number;
  /** Candidate slash offsets in tokens (each slash head takes one or two). Default [64, 200, 640, 1500, 3000]. */
  slashOffsets?: number[];
  /**
   * Recency decay of a 'local' head beyond its horizon, in logit per e-fold of
   * distance (the attention weight falls like distance^-slope); other kinds take a
   * multiple (see the file comment). Above 1 the far past holds a bounded share of
   * the mass, so the selected block count stops growing with length. Default 2.
   */
  recencySlope?: number;
  /**
   * Range [lo, hi] in tokens of the per-head recency horizon (log-uniform per
   * head): the recency logit is flat up to about the horizon and decays beyond.
   * Horizons below the coherence length of the fastest recency pair (~700
   * tokens at d = 128, base 5e5) act like it. Default [1024, 4096].
   */
  recencyHorizon?: [number, number];
  /** Number of lowest-frequency rotary pairs carrying topics and sinks. Default 3d/16. */
  topicPairs?: number;
  /** Mean topic segment length in tokens (uniform in [0.5, 1.5] x this). Default 1536. */
  segmentLength?: number;
  /** Peak logit of a retrieval head on its source segment. Default 8. */
  retrievalStrength?: number;
  /** Logit of a query on keys of its own segment (all heads, scaled per kind). Default 2. */
  selfTopicStrength?: number;
  /** Number of sink tokens at the start. Default 4. */
  sinkTokens?: number;
  /** Logit of a query on the sink tokens. Default 6. */
  sinkStrength?: number;
  /** Std of the i.i.d. noise on each q dim. Default 0.5. */
  qNoiseStd?: number;
  /** Std of the i.i.d. noise on each k dim. Default 0.3. */
  kNoiseStd?: number;
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
  sharpPairs: number;
  sharpCorePairs: number;
  sharpTailPairs: number;
  sharpTail: number;
  recencyPairs: number;
  localStrength: number;
  slashStrength: number;
  slashOffsets: number[];
  recencySlope: number;
  recencyHorizon: [number, number];
  topicPairs: number;
  segmentLength: number;
  retrievalStrength: number;
  selfTopicStrength: number;
  sinkTokens: number;
  sinkStrength: number;
  qNoiseStd: number;
  kNoiseStd: number;
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
    sharpPairs: o.sharpPairs ?? Math.max(1, Math.floor(d / 4)),
    sharpCorePairs: o.sharpCorePairs ?? Math.max(1, Math.floor(d / 8)),
    sharpTailPairs: o.sharpTailPairs ?? Math.floor((3 * d) / 32),
    sharpTail: o.sharpTail ?? 0.15,
    recencyPairs: o.recencyPairs ?? Math.max(1, Math.floor(d / 4)),
    localStrength: o.localStrength ?? 10,
    slashStrength: o.slashStrength ?? 20,
    slashOffsets: o.slashOffsets ?? [64, 200, 640, 1500, 3000],
    recencySlope: o.recencySlope ?? 2,
    recencyHorizon: o.recencyHorizon ?? [1024, 4096],
    topicPairs: o.topicPairs ?? Math.max(1, Math.floor((3 * d) / 16)),
    segmentLength: o.segmentLength ?? 1536,
    retrievalStrength: o.retrievalStrength ?? 8,
    selfTopicStrength: o.selfTopicStrength ?? 2,
    sinkTokens: o.sinkTokens ?? 4,
    sinkStrength: o.sinkStrength ?? 6,
    qNoiseStd: o.qNoiseStd ?? 0.5,
    kNoiseStd: o.kNoiseStd ?? 0.3,
    vStd: o.vStd ?? 1,
  };
  const P = d / 2;
  if (!Number.isInteger(d) || d < 4 || d % 2 !== 0) throw new RangeError('d must be an even integer >= 4');
  if (r.hq % r.hkv !== 0) throw new RangeError('hq must be a multiple of hkv');
  if (r.nq > r.seqLen || r.nq < 1) throw new RangeError('nq must be in [1, seqLen]');
  const intIn = (x: number, lo: number, hi: number): boolean => Number.isInteger(x) && x >= lo && x <= hi;
  if (!intIn(r.sharpPairs, 1, P)) throw new RangeError(`sharpPairs must be an integer in [1, ${P}]`);
  if (!intIn(r.sharpCorePairs, 1, r.sharpPairs)) throw new RangeError('sharpCorePairs must be an integer in [1, sharpPairs]');
  if (!intIn(r.sharpTailPairs, 0, r.sharpPairs - r.sharpCorePairs)) throw new RangeError('sharpTailPairs must be an integer in [0, sharpPairs - sharpCorePairs]');
  if (!(r.sharpTail >= 0)) throw new RangeError('sharpTail must be >= 0');
  if (!intIn(r.recencyPairs, 1, P)) throw new RangeError(`recencyPairs must be an integer in [1, ${P}]`);
  if (!(r.recencySlope >= 0)) throw new RangeError('recencySlope must be >= 0');
  if (r.recencyHorizon.length !== 2 || !(r.recencyHorizon[0] >= 1) || !(r.recencyHorizon[1] >= r.recencyHorizon[0])) {
    throw new RangeError('recencyHorizon must be [lo, hi] with 1 <= lo <= hi');
  }
  if (!intIn(r.topicPairs, 1, P)) throw new RangeError(`topicPairs must be an integer in [1, ${P}]`);
  if (r.segmentLength < 1) throw new RangeError('segmentLength must be >= 1');
  if (r.slashOffsets.length === 0 || r.slashOffsets.some((x) => !Number.isFinite(x) || x < 0)) {
    throw new RangeError('slashOffsets must be a non-empty list of offsets >= 0');
  }
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

/** Per-kind multipliers of the base strengths (see the file comment). */
const KIND_WEIGHTS: Record<HeadKind, { local: number; slash: number; recency: number; horizon: number; self: number; retrieval: number; sink: number }> = {
  local: { local: 1, slash: 0, recency: 1, horizon: 1, self: 1, retrieval: 0, sink: 1 },
  slash: { local: 0.5, slash: 1, recency: 1, horizon: 0.5, self: 1, retrieval: 0, sink: 1 },
  retrieval: { local: 0.3, slash: 0, recency: 0.8, horizon: 1, self: 0.5, retrieval: 1, sink: 1 },
  diffuse: { local: 0.15, slash: 0, recency: 0.6, horizon: 1, self: 0.5, retrieval: 0, sink: 0.5 },
};

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

/** Topic segments of one batch entry (the sequence-level state). */
interface SequenceState {
  nSeg: number;
  segOf: Int32Array;
  segCentre: number[];
}

/** Content of one kv head: positional vector c, topics T_m, sink direction u. */
interface KvHeadState {
  cx: Float64Array;
  cy: Float64Array;
  tx: Float64Array;
  ty: Float64Array;
  ux: Float64Array;
  uy: Float64Array;
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
  private readonly o: Resolved;
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
  private readonly mode: number;
  private seqCache: { b: number; s: SequenceState } | null = null;
  private headCache: { b: number; g: number; s: KvHeadState } | null = null;

  constructor(opts: StructuredWorkloadOptions = {}) {
    const o = resolve(opts);
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
    this.dimX = dimX;
    this.dimY = dimY;
    const theta = new Float64Array(P);
    for (let p = 0; p < P; p++) theta[p] = Math.pow(o.ropeBase, (-2 * p) / d);
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
    if (this.seqCache && this.seqCache.b === b) return this.seqCache.s;
    const N = this.shape.nk;
    const rngSeq = new Rng(mixSeed(this.o.seed, 1, b));
    const segStart: number[] = [];
    for (let t = 0; t < N; ) {
      segStart.push(t);
      t += Math.max(1, Math.round(this.o.segmentLength * (0.5 + rngSeq.uniform())));
    }
    const nSeg = segStart.length;
    const segOf = new Int32Array(N);
    for (let m = 0; m < nSeg; m++) {
      const end = m + 1 < nSeg ? segStart[m + 1] : N;
      for (let t = segStart[m]; t < end; t++) segOf[t] = m;
    }
    const segCentre = segStart.map((s, m) => Math.floor((s + (m + 1 < nSeg ? segStart[m + 1] : N)) / 2));
    const s = { nSeg, segOf, segCentre };
    this.seqCache = { b, s };
    return s;
  }

  /** Content of kv head g of batch entry b (cached: a group's parts share it). */
  private kvHeadState(b: number, g: number): KvHeadState {
    if (this.headCache && this.headCache.b === b && this.headCache.g === g) return this.headCache.s;
    const { P, rec0 } = this;
    const sp = this.o.sharpPairs;
    const tp = this.o.topicPairs;
    const { nSeg } = this.sequence(b);
    const rngH = new Rng(mixSeed(this.o.seed, 2, b, g));
    // positional content c_g: unit rms per dim on the sharp and recency pairs, random phases
    const cx = new Float64Array(P);
    const cy = new Float64Array(P);
    for (let p = 0; p < P; p++) {
      const ph = 2 * Math.PI * rngH.uniform();
      if (!(p < sp) && !(p >= rec0)) continue;
      cx[p] = Math.cos(ph) * Math.SQRT2;
      cy[p] = Math.sin(ph) * Math.SQRT2;
    }
    // topics T_m on pairs [topic0, P): unit-rms per dim
    const tx = new Float64Array(nSeg * tp);
    const ty = new Float64Array(nSeg * tp);
    for (let m = 0; m < nSeg; m++) {
      for (let a = 0; a < tp; a++) {
        tx[m * tp + a] = rngH.normal();
        ty[m * tp + a] = rngH.normal();
      }
    }
    // sink direction u on the topic pairs, unit-rms per dim
    const ux = new Float64Array(tp);
    const uy = new Float64Array(tp);
    for (let a = 0; a < tp; a++) {
      ux[a] = rngH.normal();
      uy[a] = rngH.normal();
    }
    const s = { cx, cy, tx, ty, ux, uy };
    this.headCache = { b, g, s };
    return s;
  }

  private rowContext(): { rowF: Float32Array; ex: Float64Array; ey: Float64Array; writeRow: (dst: StructuredData, off: number) => void } {
    const d = this.shape.d;
    const rowF = new Float32Array(d);
    const mode = this.mode;
    const ctx: RowCtx = { rowF, rowU: new Uint32Array(rowF.buffer), mode, d };
    const writeRow = (dst: StructuredData, off: number): void => {
      if (mode === 0) writeF32(ctx, dst as Float32Array, off);
      else if (mode === 1) writeF16(ctx, dst as Uint16Array, off);
      else writeBF16(ctx, dst as Uint16Array, off);
    };
    // ex, ey: pre-RoPE structured content (real and imaginary part of pair p)
    return { rowF, ex: new Float64Array(this.P), ey: new Float64Array(this.P), writeRow };
  }

  private genKvHead(b: number, g: number, k: StructuredData, v: StructuredData, kBase: number): void {
    const o = this.o;
    const { segOf } = this.sequence(b);
    const { cx, cy, tx, ty, ux, uy } = this.kvHeadState(b, g);
    const { rowF, ex, ey, writeRow } = this.rowContext();
    const rngK = new Rng(mixSeed(o.seed, 3, b, g));
    const rngV = new Rng(mixSeed(o.seed, 4, b, g));
    genKeys({ N: this.shape.nk, d: this.shape.d, tp: o.topicPairs, topic0: this.topic0, SP: this.SP, spIndex: this.spIndex,
      cosT: this.cosT, sinT: this.sinT, dimX: this.dimX, dimY: this.dimY, cx, cy, tx, ty, ux, uy, segOf,
      sinkTokens: o.sinkTokens, sinkKeyAmp: SINK_KEY_AMP, topicKeyAmp: TOPIC_KEY_AMP, sigma: o.kNoiseStd, vStd: o.vStd,
      rngK, rngV, ex, ey, rowF, kBase, k, v, writeRow });
  }

  private genQueryHead(b: number, h: number, q: StructuredData, qBase: number): void {
    const o = this.o;
    const { P, theta, qProfile, sqrtD, rec0, topic0 } = this;
    const sp = o.sharpPairs;
    const tp = o.topicPairs;
    const g = Math.floor(h / this.group);
    const { nSeg, segOf, segCentre } = this.sequence(b);
    const { cx, cy, tx, ty, ux, uy } = this.kvHeadState(b, g);
    const { rowF, ex, ey, writeRow } = this.rowContext();
    const tNorm2 = 2 * tp;
    const uNorm2 = 2 * tp;
    const kind = this.headKinds[h];
    const kw = KIND_WEIGHTS[kind];
    const rngQ = new Rng(mixSeed(o.seed, 5, b, h));
    const jitter = (): number => 0.8 + 0.4 * rngQ.uniform();
    // sharp part: (offset, logit) pairs on the sharp pairs
    const offs: number[] = [0];
    const wts: number[] = [kw.local * o.localStrength * jitter()];
    if (kw.slash > 0) {
      const nd = 1 + rngQ.int(2);
      for (let x = 0; x < nd; x++) {
        offs.push(o.slashOffsets[rngQ.int(o.slashOffsets.length)]);
        wts.push(kw.slash * o.slashStrength * jitter());
      }
    }
    const recSlope = kw.recency * o.recencySlope * jitter();
    const [h0, h1] = o.recencyHorizon;
    const horizon = kw.horizon * h0 * Math.pow(h1 / h0, rngQ.uniform());
    const selfW = kw.self * o.selfTopicStrength * jitter();
    const retW = kw.retrieval * o.retrievalStrength * jitter();
    const sinkW = kw.sink * o.sinkStrength * jitter();
    // combined pre-RoPE positional vector A_h = sum_o w_o c e^{-i theta o} (sharp pairs) + w_r c (recency pairs)
    const ax = new Float64Array(P);
    const ay = new Float64Array(P);
    for (let x = 0; x < offs.length; x++) {
      const w0 = (wts[x] * sqrtD) / this.sharpNorm2; // logit -> query coefficient
      for (let p = 0; p < sp; p++) {
        const w = w0 * qProfile[p];
        const ang = -theta[p] * offs[x];
        const cs = Math.cos(ang);
        const sn = Math.sin(ang);
        ax[p] += w * (cx[p] * cs - cy[p] * sn);
        ay[p] += w * (cx[p] * sn + cy[p] * cs);
      }
    }
    // recency: equal weight on the recency pairs slower than the horizon
    // (theta_p * horizon <= 1; at least the slowest pair). Pair p stays coherent
    // up to distance ~1/theta_p, so the logit falls by about R / nH per
    // factor 1/ratio of distance: R = slope * ln(1 / (theta_slowest * horizon)).
    let rFirst = P - 1;
    while (rFirst > rec0 && theta[rFirst - 1] * horizon <= 1) rFirst--;
    const nH = P - rFirst;
    const recLogit = recSlope * Math.max(1, Math.log(1 / (theta[P - 1] * horizon)));
    const wr = (recLogit * sqrtD) / (2 * nH);
    for (let p = rFirst; p < P; p++) {
      ax[p] += wr * cx[p];
      ay[p] += wr * cy[p];
    }
    const selfCoef = (selfW * sqrtD) / (tNorm2 * TOPIC_KEY_AMP);
    const retCoef = (retW * sqrtD) / (tNorm2 * TOPIC_KEY_AMP);
    const sinkCoef = (sinkW * sqrtD) / (uNorm2 * SINK_KEY_AMP);
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
    genQueries({ Nq: this.shape.nq, qStart: this.qStart, d: this.shape.d, tp, topic0, SP: this.SP, spIndex: this.spIndex,
      cosT: this.cosT, sinT: this.sinT, dimX: this.dimX, dimY: this.dimY, ax, ay, tx, ty, ux, uy, segOf,
      selfCoef, sinkCoef, rvx, rvy, sigma: o.qNoiseStd, rngQ, ex, ey, rowF, qBase, q, writeRow });
  }
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
  topicKeyAmp: number;
  vStd: number;
  rngK: Rng;
  rngV: Rng;
  kBase: number;
  k: Float32Array | Uint16Array;
  v: Float32Array | Uint16Array;
}

function genKeys(j: KeyJob): void {
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

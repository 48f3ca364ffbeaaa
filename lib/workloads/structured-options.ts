// Options of the structured workload (lib/workloads/structured.ts has the model
// they parameterise): the public option type, their defaults and checks, and the
// query head kinds with their per-kind strength multipliers.

import type { DType, RopeLayout } from '../types';
import { Rng, mixSeed } from '../rng';

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

/** Every option with its default filled in (see resolveStructuredOptions). */
export interface ResolvedStructuredOptions {
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

const DTYPES: readonly DType[] = ['float32', 'float16', 'bfloat16'];

/**
 * Checks of both generators' common options: the dtype (TypeError), the seed
 * (an integer: a fraction would be floored silently) and the sizes `sizes`
 * (integers >= 1), RangeErrors naming the option.
 */
export function checkWorkloadBasics(o: { seed: number; dtype: DType }, sizes: readonly string[]): void {
  if (!DTYPES.includes(o.dtype)) throw new TypeError(`dtype must be one of ${DTYPES.join(', ')}, got ${String(o.dtype)}`);
  if (!Number.isSafeInteger(o.seed)) throw new RangeError(`seed must be an integer, got ${String(o.seed)}`);
  for (const name of sizes) {
    const x = (o as unknown as Record<string, unknown>)[name];
    if (typeof x !== 'number' || !Number.isSafeInteger(x) || x < 1) throw new RangeError(`${name} must be an integer >= 1, got ${String(x)}`);
  }
}

/** Fills in the defaults and checks the options (RangeError naming the option). */
export function resolveStructuredOptions(o: StructuredWorkloadOptions): ResolvedStructuredOptions {
  const d = o.d ?? 128;
  const seqLen = o.seqLen ?? 8192;
  const r: ResolvedStructuredOptions = {
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
  for (const key of Object.keys(o)) {
    if (!(key in r)) throw new TypeError(`unknown structured workload option '${key}'`);
  }
  checkWorkloadBasics(r, ['batch', 'hq', 'hkv', 'seqLen']);
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

/** Multipliers of the base strengths of one head kind. */
export interface KindWeights {
  local: number;
  slash: number;
  recency: number;
  horizon: number;
  self: number;
  retrieval: number;
  sink: number;
}

/** Per-kind multipliers of the base strengths (see structured.ts's file comment). */
export const KIND_WEIGHTS: Record<HeadKind, KindWeights> = {
  local: { local: 1, slash: 0, recency: 1, horizon: 1, self: 1, retrieval: 0, sink: 1 },
  slash: { local: 0.5, slash: 1, recency: 1, horizon: 0.5, self: 1, retrieval: 0, sink: 1 },
  retrieval: { local: 0.3, slash: 0, recency: 0.8, horizon: 1, self: 0.5, retrieval: 1, sink: 1 },
  diffuse: { local: 0.15, slash: 0, recency: 0.6, horizon: 1, self: 0.5, retrieval: 0, sink: 0.5 },
};

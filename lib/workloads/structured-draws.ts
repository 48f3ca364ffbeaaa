// The seeded random content of the structured workload (lib/workloads/structured.ts
// has the model): the topic segments of a sequence, the vectors of a kv head
// and the strengths of a query head. Each is drawn from its own seed, and the
// order of the draws is part of the workload's bytes.

import { Rng, mixSeed } from '../rng';
import type { KindWeights, ResolvedStructuredOptions } from './structured-options';

/** Topic segments of one batch entry (the sequence-level state). */
export interface SequenceState {
  nSeg: number;
  segOf: Int32Array;
  segCentre: number[];
}

/** Content of one kv head: positional vector c, topics T_m, sink direction u. */
export interface KvHeadState {
  cx: Float64Array;
  cy: Float64Array;
  tx: Float64Array;
  ty: Float64Array;
  ux: Float64Array;
  uy: Float64Array;
}

/** Topic segments of batch entry b over N tokens (lengths uniform in [0.5, 1.5] x segmentLength). */
export function drawSequence(o: ResolvedStructuredOptions, N: number, b: number): SequenceState {
  const rngSeq = new Rng(mixSeed(o.seed, 1, b));
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
  return { nSeg, segOf, segCentre };
}

/** Content of kv head g of batch entry b, whose sequence has nSeg topic segments. */
export function drawKvHead(o: ResolvedStructuredOptions, nSeg: number, b: number, g: number): KvHeadState {
  const P = o.d / 2;
  const rec0 = P - o.recencyPairs;
  const sp = o.sharpPairs;
  const tp = o.topicPairs;
  const rngH = new Rng(mixSeed(o.seed, 2, b, g));
  // positional content c_g: unit rms per dim on the sharp and recency pairs, random phases
  const cx = new Float64Array(P);
  const cy = new Float64Array(P);
  for (let p = 0; p < P; p++) {
    const ph = 2 * Math.PI * rngH.uniform();
    if (!(p < sp) && !(p >= rec0)) continue;
    cx[p] = Math.cos(ph) * Math.SQRT2;
    cy[p] = Math.sin(ph) * Math.SQRT2;
  }
  // topics T_m on pairs [topic0, P), then the sink direction u on the topic pairs: unit-rms per dim
  const [tx, ty] = normalPairs(rngH, nSeg * tp);
  const [ux, uy] = normalPairs(rngH, tp);
  return { cx, cy, tx, ty, ux, uy };
}

/** n pairs of standard normal draws (x, y interleaved in the draw order). */
function normalPairs(rng: Rng, n: number): [Float64Array, Float64Array] {
  const x = new Float64Array(n);
  const y = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    x[i] = rng.normal();
    y[i] = rng.normal();
  }
  return [x, y];
}

/** The seeded logit strengths of one query head (each base strength x its kind's multiplier, jittered). */
export interface QueryWeights {
  /** Offsets of the sharp peaks: 0 (the window), then the slash diagonals. */
  offsets: number[];
  /** Peak logit of each offset. */
  sharp: number[];
  recencySlope: number;
  horizon: number;
  self: number;
  retrieval: number;
  sink: number;
}

/** Draws a query head's strengths from `rngQ` (the order of the draws is part of the workload's bytes). */
export function drawQueryWeights(o: ResolvedStructuredOptions, kw: KindWeights, rngQ: Rng): QueryWeights {
  const jitter = (): number => 0.8 + 0.4 * rngQ.uniform();
  const offsets: number[] = [0];
  const sharp: number[] = [kw.local * o.localStrength * jitter()];
  if (kw.slash > 0) {
    const nd = 1 + rngQ.int(2);
    for (let x = 0; x < nd; x++) {
      offsets.push(o.slashOffsets[rngQ.int(o.slashOffsets.length)]);
      sharp.push(kw.slash * o.slashStrength * jitter());
    }
  }
  const recencySlope = kw.recency * o.recencySlope * jitter();
  const [h0, h1] = o.recencyHorizon;
  const horizon = kw.horizon * h0 * Math.pow(h1 / h0, rngQ.uniform());
  const self = kw.self * o.selfTopicStrength * jitter();
  const retrieval = kw.retrieval * o.retrievalStrength * jitter();
  const sink = kw.sink * o.sinkStrength * jitter();
  return { offsets, sharp, recencySlope, horizon, self, retrieval, sink };
}

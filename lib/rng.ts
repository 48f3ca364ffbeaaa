// Seeded pseudo-random numbers: xoshiro128** (32-bit state words, pure int32
// arithmetic in JS) seeded through splitmix32. Deterministic across platforms:
// the same seed gives the same stream everywhere.

// A module-level binding: looking Math.imul up per element is slow inside
// test sandboxes (a separate realm), where the generators also run.
const imul = Math.imul;

/** splitmix32 step; returns [nextState, output]. */
function splitmix32(state: number): [number, number] {
  const s = (state + 0x9e3779b9) | 0;
  let z = s;
  z = imul(z ^ (z >>> 16), 0x85ebca6b);
  z = imul(z ^ (z >>> 13), 0xc2b2ae35);
  z ^= z >>> 16;
  return [s, z >>> 0];
}

/** Mix a seed and any number of integer stream ids into one 32-bit seed. */
export function mixSeed(seed: number, ...ids: number[]): number {
  let h = (Math.floor(seed) ^ Math.floor(seed / 4294967296) * 0x27d4eb2d) | 0;
  for (const id of ids) {
    h = imul(h ^ (id | 0), 0x9e3779b1);
    h ^= h >>> 15;
    h = imul(h, 0x85ebca77);
    h ^= h >>> 13;
  }
  return h >>> 0;
}

const INV_2_32 = 1 / 4294967296;

// Inverse normal CDF table used by fastNormal(): 4096 cells, piecewise linear.
let normalTable: Float64Array | null = null;

/** Acklam's rational approximation of the inverse standard normal CDF (|err| < 1.2e-9). */
export function inverseNormalCdf(p: number): number {
  const a = [-39.69683028665376, 220.9460984245205, -275.9285104469687, 138.357751867269, -30.66479806614716, 2.506628277459239];
  const b = [-54.47609879822406, 161.5858368580409, -155.6989798598866, 66.80131188771972, -13.28068155288572];
  const c = [-0.007784894002430293, -0.3223964580411365, -2.400758277161838, -2.549732539343734, 4.374664141464968, 2.938163982698783];
  const dd = [0.007784695709041462, 0.3224671290700398, 2.445134137142996, 3.754408661907416];
  const plow = 0.02425;
  if (p <= 0) return -Infinity;
  if (p >= 1) return Infinity;
  if (p < plow) {
    const q = Math.sqrt(-2 * Math.log(p));
    return (((((c[0] * q + c[1]) * q + c[2]) * q + c[3]) * q + c[4]) * q + c[5]) / ((((dd[0] * q + dd[1]) * q + dd[2]) * q + dd[3]) * q + 1);
  }
  if (p > 1 - plow) {
    const q = Math.sqrt(-2 * Math.log(1 - p));
    return -(((((c[0] * q + c[1]) * q + c[2]) * q + c[3]) * q + c[4]) * q + c[5]) / ((((dd[0] * q + dd[1]) * q + dd[2]) * q + dd[3]) * q + 1);
  }
  const q = p - 0.5;
  const r = q * q;
  return ((((((a[0] * r + a[1]) * r + a[2]) * r + a[3]) * r + a[4]) * r + a[5]) * q) / (((((b[0] * r + b[1]) * r + b[2]) * r + b[3]) * r + b[4]) * r + 1);
}

function getNormalTable(): Float64Array {
  if (normalTable === null) {
    const cells = 4096;
    const t = new Float64Array(cells + 1);
    // Node i sits at quantile i/cells; the infinite end nodes are replaced by the
    // quantile at half a cell, so the tails are truncated at about 3.5 sigma.
    for (let i = 0; i <= cells; i++) {
      const p = Math.min(Math.max(i / cells, 0.5 / cells), 1 - 0.5 / cells);
      t[i] = inverseNormalCdf(p);
    }
    // rescale to unit variance (piecewise-uniform density over the cells)
    let v = 0;
    for (let i = 0; i < cells; i++) {
      const x0 = t[i];
      const x1 = t[i + 1];
      v += (x0 * x0 + x0 * x1 + x1 * x1) / 3;
    }
    const s = 1 / Math.sqrt(v / cells);
    for (let i = 0; i <= cells; i++) t[i] *= s;
    normalTable = t;
  }
  return normalTable;
}

/**
 * xoshiro128** generator.
 * - `nextU32()`: uniform 32-bit unsigned integer.
 * - `uniform()`: uniform double in [0, 1) with 53 random bits.
 * - `normal()`: exact standard normal (Box-Muller, cached second value).
 * - `fastNormal()`: approximate standard normal from one 32-bit draw (piecewise
 *   linear inverse CDF over 4096 cells, unit variance, tails cut at ~3.5 sigma);
 *   several times faster than normal(), used by the bulk workload generators.
 */
export class Rng {
  private s0: number;
  private s1: number;
  private s2: number;
  private s3: number;
  private spare = 0;
  private hasSpare = false;
  private readonly table: Float64Array;

  constructor(seed = 0) {
    let st = mixSeed(seed);
    const words: number[] = [];
    for (let i = 0; i < 4; i++) {
      const [ns, out] = splitmix32(st);
      st = ns;
      words.push(out | 0);
    }
    if ((words[0] | words[1] | words[2] | words[3]) === 0) words[0] = 1;
    this.s0 = words[0];
    this.s1 = words[1];
    this.s2 = words[2];
    this.s3 = words[3];
    this.table = getNormalTable();
  }

  /** A generator for an independent sub-stream (seed mixed with ids). */
  static stream(seed: number, ...ids: number[]): Rng {
    return new Rng(mixSeed(seed, ...ids));
  }

  /** Next uniform 32-bit unsigned integer. */
  nextU32(): number {
    const s0 = this.s0;
    const s1 = this.s1;
    const s2 = this.s2;
    const s3 = this.s3;
    const m = imul(s1, 5);
    const r = imul((m << 7) | (m >>> 25), 9);
    const t = s1 << 9;
    const n2 = s2 ^ s0;
    const n3 = s3 ^ s1;
    this.s1 = s1 ^ n2;
    this.s0 = s0 ^ n3;
    this.s2 = n2 ^ t;
    this.s3 = (n3 << 11) | (n3 >>> 21);
    return r >>> 0;
  }

  /** Uniform double in [0, 1). */
  uniform(): number {
    const hi = this.nextU32() >>> 5; // 27 bits
    const lo = this.nextU32() >>> 6; // 26 bits
    return (hi * 67108864 + lo) / 9007199254740992;
  }

  /** Uniform integer in [0, n). */
  int(n: number): number {
    return Math.floor(this.uniform() * n);
  }

  /** Uniform double in [lo, hi). */
  range(lo: number, hi: number): number {
    return lo + (hi - lo) * this.uniform();
  }

  /** Standard normal (Box-Muller). */
  normal(): number {
    if (this.hasSpare) {
      this.hasSpare = false;
      return this.spare;
    }
    let u: number;
    do u = this.uniform();
    while (u <= 0);
    const v = this.uniform();
    const r = Math.sqrt(-2 * Math.log(u));
    const a = 2 * Math.PI * v;
    this.spare = r * Math.sin(a);
    this.hasSpare = true;
    return r * Math.cos(a);
  }

  /** Approximate standard normal from a single 32-bit draw (see class doc). */
  fastNormal(): number {
    const u = this.nextU32();
    const i = u >>> 20;
    const f = (u & 0xfffff) * (1 / 1048576);
    const t = this.table;
    const a = t[i];
    return a + f * (t[i + 1] - a);
  }

  /**
   * Fill out[0, n) with std * fastNormal() (state kept in locals: the bulk path
   * of the workload generators). Same stream as n calls of fastNormal().
   */
  fillFastNormal(out: Float32Array | Float64Array, n: number, std: number): void {
    let s0 = this.s0;
    let s1 = this.s1;
    let s2 = this.s2;
    let s3 = this.s3;
    const t = this.table;
    for (let i = 0; i < n; i++) {
      const m = imul(s1, 5);
      const u = imul((m << 7) | (m >>> 25), 9) >>> 0;
      const sh = s1 << 9;
      const n2 = s2 ^ s0;
      const n3 = s3 ^ s1;
      s1 = s1 ^ n2;
      s0 = s0 ^ n3;
      s2 = n2 ^ sh;
      s3 = (n3 << 11) | (n3 >>> 21);
      const idx = u >>> 20;
      const a = t[idx];
      out[i] = std * (a + (u & 0xfffff) * (1 / 1048576) * (t[idx + 1] - a));
    }
    this.s0 = s0;
    this.s1 = s1;
    this.s2 = s2;
    this.s3 = s3;
  }

  /** Fill `out` with normal(mean, std) draws (exact Box-Muller). */
  fillNormal(out: Float32Array | Float64Array, std = 1, mean = 0): typeof out {
    for (let i = 0; i < out.length; i++) out[i] = mean + std * this.normal();
    return out;
  }

  /** Fill `out` with uniform [lo, hi) draws. */
  fillUniform(out: Float32Array | Float64Array, lo = 0, hi = 1): typeof out {
    for (let i = 0; i < out.length; i++) out[i] = lo + (hi - lo) * this.uniform();
    return out;
  }

  /** Fisher-Yates shuffle in place. */
  shuffle<T>(a: T[]): T[] {
    for (let i = a.length - 1; i > 0; i--) {
      const j = this.int(i + 1);
      const x = a[i];
      a[i] = a[j];
      a[j] = x;
    }
    return a;
  }
}

/** Convenience: a uniform 32-bit draw scaled to [0,1) (exposed for tight loops). */
export const U32_TO_UNIT = INV_2_32;

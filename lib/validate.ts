// validate(): runs the native backend against the float64 reference on small
// random and structured inputs and reports agreement per case.
//
// Tolerances on the relative Frobenius error ||O - O_ref|| / ||O_ref|| of the
// attention output, where O_ref is the float64 reference computed on the SAME
// quantized inputs (q, k, v are rounded to the dtype before the reference sees
// them), so only accumulation and output rounding differ:
//   float32  1e-5    (fp32 accumulation over <= 1K keys)
//   float16  2e-3    (output rounding 2^-11 ~ 4.9e-4 rms ~ 2.8e-4; P rounded to fp16 in the PV product)
//   bfloat16 1.6e-2  (output rounding 2^-8 ~ 3.9e-3; P rounded to bf16 in the PV product)
// Masks: rows whose selection margin (reference, probability units) exceeds
// WELL_SEPARATED must match exactly; the agreement elsewhere is reported only.

import type { DType, EstimateOptions, HostBlockMask, Layout, DeviceSpec } from './types';
import { tensor, resolveDevice, deviceName, type Tensor } from './tensor';
import { estimate, attention } from './ops';
import { booleanField, checkOptionFields, integerIn, resolveEstimateOptions } from './options';
import { encode16, decode16 } from './dtype';
import { native, NativeDType } from './native';
import { referenceEstimate, referenceAttention, maskDensity, type RefDims, type RefEstimate } from './reference';
import { randomWorkload } from './workloads/random';
import { structuredWorkload } from './workloads/structured';

/** Relative Frobenius error tolerances per dtype (see the file comment). */
export const TOLERANCES: Readonly<Record<DType, number>> = Object.freeze({
  float32: 1e-5,
  float16: 2e-3,
  bfloat16: 1.6e-2,
});

/** Block size lib/ops.ts hands the kernel for dense attention (mask null). */
export const DENSE_BLOCK = 128;

/** Rows with a reference selection margin above this must match exactly. */
export const WELL_SEPARATED = 1e-4;

/** ||a - b||_F / ||b||_F (b is the reference). */
export function relativeError(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) throw new RangeError(`lengths differ: ${a.length} vs ${b.length}`);
  let num = 0;
  let den = 0;
  for (let i = 0; i < a.length; i++) {
    const d = a[i] - b[i];
    num += d * d;
    den += b[i] * b[i];
  }
  if (Number.isNaN(num)) return NaN;
  if (den === 0) return num === 0 ? 0 : Infinity;
  return Math.sqrt(num / den);
}

/** max |a - b| (NaN when any difference is NaN). */
export function maxAbsError(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) throw new RangeError(`lengths differ: ${a.length} vs ${b.length}`);
  let m = 0;
  for (let i = 0; i < a.length; i++) {
    const d = Math.abs(a[i] - b[i]);
    if (Number.isNaN(d)) return NaN;
    if (d > m) m = d;
  }
  return m;
}

export interface MaskAgreement {
  /** Fraction of identical mask entries over all rows. */
  agreement: number;
  /** Rows with margin > threshold, and how many of them differ. */
  separatedRows: number;
  separatedMismatches: number;
  /** Fraction of identical entries on well-separated rows (1 when none). */
  separatedAgreement: number;
  /** Rows (any margin) that differ. */
  mismatchedRows: number;
  /** counts/indices agree with the native mask (ascending, complete). */
  listsConsistent: boolean;
}

/** Compare a native mask with the reference estimate. */
export function maskAgreement(ref: RefEstimate, got: HostBlockMask, threshold = WELL_SEPARATED): MaskAgreement {
  if (ref.mask.length !== got.mask.length) throw new RangeError('mask sizes differ');
  const nk = ref.nk;
  let same = 0;
  let sepRows = 0;
  let sepMis = 0;
  let sepSame = 0;
  let misRows = 0;
  let consistent = true;
  for (let r = 0; r < ref.counts.length; r++) {
    const o = r * nk;
    let rowSame = 0;
    let c = 0;
    if (got.rowPtr[r + 1] - got.rowPtr[r] !== got.counts[r]) consistent = false;
    for (let j = 0; j < nk; j++) {
      if (ref.mask[o + j] === got.mask[o + j]) rowSame++;
      if (got.mask[o + j]) {
        if (got.indices[got.rowPtr[r] + c] !== j) consistent = false;
        c++;
      }
    }
    if (c !== got.counts[r]) consistent = false;
    same += rowSame;
    if (rowSame !== nk) misRows++;
    if (ref.scores.margin[r] > threshold) {
      sepRows++;
      sepSame += rowSame;
      if (rowSame !== nk) sepMis++;
    }
  }
  return {
    agreement: same / ref.mask.length,
    separatedRows: sepRows,
    separatedMismatches: sepMis,
    separatedAgreement: sepRows > 0 ? sepSame / (sepRows * nk) : 1,
    mismatchedRows: misRows,
    listsConsistent: consistent,
  };
}

/** Reorder logical [b, h, n, d] data stored 'bhnd' into 'bnhd' memory order. */
export function bhndToBnhd<T extends Float32Array | Float64Array | Uint16Array>(x: T, b: number, h: number, n: number, d: number): T {
  return relayout(x, b, h, n, d, true);
}

/** Inverse of bhndToBnhd. */
export function bnhdToBhnd<T extends Float32Array | Float64Array | Uint16Array>(x: T, b: number, h: number, n: number, d: number): T {
  return relayout(x, b, h, n, d, false);
}

/** Copies every row of d values between 'bhnd' and 'bnhd' order (toBnhd: from bhnd to bnhd). */
function relayout<T extends Float32Array | Float64Array | Uint16Array>(x: T, b: number, h: number, n: number, d: number, toBnhd: boolean): T {
  const out = new (x.constructor as { new (n: number): T })(x.length);
  for (let bi = 0; bi < b; bi++)
    for (let hi = 0; hi < h; hi++)
      for (let ni = 0; ni < n; ni++) {
        const bhnd = ((bi * h + hi) * n + ni) * d;
        const bnhd = ((bi * n + ni) * h + hi) * d;
        out.set(x.subarray(toBnhd ? bhnd : bnhd, (toBnhd ? bhnd : bnhd) + d), toBnhd ? bnhd : bhnd);
      }
  return out;
}

/** One validation problem. */
export interface ValidationCase {
  name: string;
  kind: 'random' | 'structured';
  dims: RefDims;
  dtype: DType;
  layout: Layout;
  opts: EstimateOptions;
  seed: number;
}

export interface CaseReport {
  name: string;
  device: string;
  dtype: DType;
  layout: Layout;
  dims: RefDims;
  opts: EstimateOptions;
  mask: MaskAgreement;
  /** Reference and native densities. */
  densityRef: number;
  densityNative: number;
  /** Sparse attention with the native mask vs the reference with the same mask. */
  sparseRelError: number;
  sparseMaxAbsError: number;
  /** Dense attention vs the reference. */
  denseRelError: number;
  denseMaxAbsError: number;
  tolerance: number;
  passed: boolean;
  failures: string[];
}

export interface ValidationReport {
  device: string;
  passed: boolean;
  tolerances: Readonly<Record<DType, number>>;
  cases: CaseReport[];
}

/** Quantized inputs of a case: the bits/values the native side gets and the float32 values the reference gets. */
export interface PreparedCase {
  native: { q: Float32Array | Uint16Array; k: Float32Array | Uint16Array; v: Float32Array | Uint16Array };
  ref: { q: Float32Array; k: Float32Array; v: Float32Array };
}

/** Generate (float32) and quantize the inputs of a case; native data is in the case's memory layout. */
export function prepareCase(c: ValidationCase): PreparedCase {
  const { batch, hq, hkv, nq, nk, d } = c.dims;
  let q: Float32Array;
  let k: Float32Array;
  let v: Float32Array;
  if (c.kind === 'random') {
    const w = randomWorkload({ batch, hq, hkv, nq, nk, d, seed: c.seed, dtype: 'float32' });
    q = w.q as Float32Array;
    k = w.k as Float32Array;
    v = w.v as Float32Array;
  } else {
    const w = structuredWorkload({
      batch,
      hq,
      hkv,
      seqLen: nk,
      nq,
      d,
      seed: c.seed,
      dtype: 'float32',
      ropeLayout: c.opts.ropeLayout ?? 'half',
      segmentLength: Math.max(32, nk / 4),
      slashOffsets: [16, 48, 100],
    });
    q = w.q as Float32Array;
    k = w.k as Float32Array;
    v = w.v as Float32Array;
  }
  const toNative = (x: Float32Array, h: number, n: number): { nat: Float32Array | Uint16Array; ref: Float32Array } => {
    let nat: Float32Array | Uint16Array;
    let ref: Float32Array;
    if (c.dtype === 'float32') {
      nat = x;
      ref = x;
    } else {
      const bits = encode16(x, c.dtype);
      ref = decode16(bits, c.dtype);
      nat = bits;
    }
    if (c.layout === 'bnhd') nat = bhndToBnhd(nat, batch, h, n, d);
    return { nat, ref };
  };
  const qq = toNative(q, hq, nq);
  const kk = toNative(k, hkv, nk);
  const vv = toNative(v, hkv, nk);
  return { native: { q: qq.nat, k: kk.nat, v: vv.nat }, ref: { q: qq.ref, k: kk.ref, v: vv.ref } };
}

/** Run one case on a device and compare with the reference. */
export async function runCase(c: ValidationCase, device: DeviceSpec): Promise<CaseReport> {
  const { batch, hq, hkv, nq, nk, d } = c.dims;
  const p = prepareCase(c);
  const common = { dtype: c.dtype, layout: c.layout, device };
  const q = await tensor(p.native.q, { shape: [batch, hq, nq, d], ...common });
  const k = await tensor(p.native.k, { shape: [batch, hkv, nk, d], ...common });
  const v = await tensor(p.native.v, { shape: [batch, hkv, nk, d], ...common });
  const failures: string[] = [];
  try {
    const resolved = resolveEstimateOptions(c.opts, d);
    const ref = referenceEstimate(p.ref.q, p.ref.k, c.dims, resolved);
    const mask = await estimate(q, k, c.opts);
    const host = await mask.toHost();
    const agree = maskAgreement(ref, host);
    if (agree.separatedMismatches > 0) failures.push(`${agree.separatedMismatches} well-separated mask rows differ`);
    if (!agree.listsConsistent) failures.push('counts/indices disagree with the mask');
    for (let i = 0; i < host.temperatures.length; i++) {
      if (!Number.isFinite(host.temperatures[i])) {
        failures.push('non-finite temperature');
        break;
      }
    }

    const tol = TOLERANCES[c.dtype];
    const unlayout = async (t: Tensor): Promise<Float32Array> => {
      const f = await t.toFloat32();
      return c.layout === 'bnhd' ? bnhdToBhnd(f, batch, hq, nq, d) : f;
    };
    const sparse = await attention(q, k, v, mask);
    const sparseOut = await unlayout(sparse);
    sparse.dispose();
    const sparseRef = referenceAttention(p.ref.q, p.ref.k, p.ref.v, c.dims, host.counts, host.indices, host.block);
    const sparseRel = relativeError(sparseOut, sparseRef);
    const sparseMax = maxAbsError(sparseOut, sparseRef);
    if (!(sparseRel <= tol)) failures.push(`sparse attention relative error ${sparseRel.toExponential(2)} > ${tol}`);

    const dense = await attention(q, k, v, null);
    const denseOut = await unlayout(dense);
    dense.dispose();
    // dense = every visible block (spec, step 6) on the grid of DENSE_BLOCK, as lib/ops.ts passes it.
    // Blocks sit on the absolute token grid (spec, step 1), so a query block's last visible key
    // block holds its rows' own positions: every causal key is covered, aligned or not.
    const denseRef = referenceAttention(p.ref.q, p.ref.k, p.ref.v, c.dims, null, null, DENSE_BLOCK);
    const denseRel = relativeError(denseOut, denseRef);
    const denseMax = maxAbsError(denseOut, denseRef);
    if (!(denseRel <= tol)) failures.push(`dense attention relative error ${denseRel.toExponential(2)} > ${tol}`);

    const densityNative = mask.density();
    mask.dispose();
    return {
      name: c.name,
      device: q.device,
      dtype: c.dtype,
      layout: c.layout,
      dims: c.dims,
      opts: c.opts,
      mask: agree,
      densityRef: maskDensity(ref),
      densityNative,
      sparseRelError: sparseRel,
      sparseMaxAbsError: sparseMax,
      denseRelError: denseRel,
      denseMaxAbsError: denseMax,
      tolerance: tol,
      passed: failures.length === 0,
      failures,
    };
  } finally {
    q.dispose();
    k.dispose();
    v.dispose();
  }
}

/** The default validation cases for a device kind. */
/** `block`, or the smallest larger block CUDA attention takes at head_dim d (the addon's table). */
function cudaAttentionBlock(block: number, d: number): number {
  const s = native().supports(NativeDType.BF16, d, block, 0);
  if (s.unsupported !== 'block') return block;
  return s.blocks.find((b) => b >= block) ?? s.blocks[s.blocks.length - 1];
}

export function validationCases(onGpu: boolean, quick: boolean, seed: number): ValidationCase[] {
  const dtypes: DType[] = onGpu ? ['float16', 'bfloat16'] : ['float32', 'float16', 'bfloat16'];
  const shapes: Omit<ValidationCase, 'dtype' | 'seed'>[] = [
    {
      name: 'random gqa4 odd lengths Nq<Nk d64',
      kind: 'random',
      dims: { batch: 1, hq: 4, hkv: 1, nq: 130, nk: 257, d: 64 },
      layout: 'bhnd',
      opts: { block: 64 },
    },
    {
      name: 'structured d128 half rope, block 64',
      kind: 'structured',
      dims: { batch: 1, hq: 4, hkv: 2, nq: 640, nk: 640, d: 128 },
      layout: 'bhnd',
      opts: { block: 64 },
    },
    {
      name: 'structured d64 interleaved rope bnhd Nq<Nk, block 32',
      kind: 'structured',
      dims: { batch: 2, hq: 4, hkv: 4, nq: 300, nk: 417, d: 64 },
      layout: 'bnhd',
      opts: { block: 32, ropeLayout: 'interleaved' },
    },
    {
      name: 'random d128 meanpool, block 16',
      kind: 'random',
      dims: { batch: 1, hq: 2, hkv: 2, nq: 97, nk: 97, d: 128 },
      layout: 'bhnd',
      opts: { block: 16, method: 'meanpool' },
    },
    {
      name: 'structured d128 top-k, uncalibrated, gqa8',
      kind: 'structured',
      dims: { batch: 1, hq: 8, hkv: 1, nq: 257, nk: 513, d: 128 },
      layout: 'bhnd',
      opts: { block: 32, selection: 'topk', topkHigh: 3, topkLow: 2, calibrate: false, tempHigh: 0.5, tempLow: 2 },
    },
  ];
  const use = quick ? shapes.slice(0, 3) : shapes;
  const out: ValidationCase[] = [];
  use.forEach((s, si) => {
    // On the GPU, a block the attention kernels do not take becomes the next one they do.
    const block = s.opts.block ?? 128;
    const gpuBlock = onGpu ? cudaAttentionBlock(block, s.dims.d) : block;
    const c = gpuBlock !== block ? { ...s, name: s.name.replace(/block \d+/, `block ${gpuBlock}`), opts: { ...s.opts, block: gpuBlock } } : s;
    for (const dtype of dtypes) out.push({ ...c, dtype, seed: seed + si });
  });
  return out;
}

/**
 * Run the native backend on `device` (default 'auto') against the float64
 * reference on random and structured small inputs (odd lengths, Nq < Nk, GQA,
 * d 64 and 128, both memory and rope layouts). `quick` runs fewer cases.
 */
export async function validate(opts: { device?: DeviceSpec; seed?: number; quick?: boolean } = {}): Promise<ValidationReport> {
  const o = checkOptionFields(opts, ['device', 'seed', 'quick'], 'validate option');
  const index = resolveDevice((o.device ?? 'auto') as DeviceSpec);
  const name = deviceName(index);
  const seed = o.seed === undefined ? 1 : integerIn('seed', o.seed, 0, Number.MAX_SAFE_INTEGER);
  const quick = o.quick === undefined ? false : booleanField('quick', o.quick);
  const cases = validationCases(index >= 0, quick, seed);
  const reports: CaseReport[] = [];
  for (const c of cases) reports.push(await runCase(c, name as DeviceSpec));
  return { device: name, passed: reports.every((r) => r.passed), tolerances: TOLERANCES, cases: reports };
}

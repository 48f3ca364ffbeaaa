// Unstructured Gaussian Q/K/V (no RoPE, no patterns). Good for numerics tests;
// useless for judging selection quality (nearly every block gets selected).

import type { DType } from '../types';
import { Rng, mixSeed } from '../rng';
import { toBFloat16, toFloat16 } from '../dtype';
import type { Workload, WorkloadShape } from './index';
import { checkWorkloadBasics } from './structured-options';

export interface RandomWorkloadOptions extends Partial<WorkloadShape> {
  /** Seed; same seed gives identical bytes. Default 0. */
  seed?: number;
  /** Output dtype. Default 'float32'. */
  dtype?: DType;
  /** Standard deviation of Q and K entries. Default 1. */
  qkStd?: number;
  /** Standard deviation of V entries. Default 1. */
  vStd?: number;
  /** Mean added to every K entry (a shared direction makes scores less flat). Default 0. */
  kMean?: number;
}

function fill(n: number, seed: number, stream: number, std: number, mean: number): Float32Array {
  const rng = new Rng(mixSeed(seed, stream));
  const a = new Float32Array(n);
  for (let i = 0; i < n; i++) a[i] = mean + std * rng.normal();
  return a;
}

function encode(x: Float32Array, dtype: DType): Float32Array | Uint16Array {
  if (dtype === 'float32') return x;
  return dtype === 'bfloat16' ? toBFloat16(x) : toFloat16(x);
}

const RANDOM_FIELDS: readonly string[] = ['batch', 'hq', 'hkv', 'nq', 'nk', 'd', 'seed', 'dtype', 'qkStd', 'vStd', 'kMean'];

/** Gaussian Q/K/V in logical [b, h, n, d] ('bhnd') order. Defaults: 1x4x(hkv 4)x256x256x64. */
export function randomWorkload(opts: RandomWorkloadOptions = {}): Workload {
  const shape: WorkloadShape = {
    batch: opts.batch ?? 1,
    hq: opts.hq ?? 4,
    hkv: opts.hkv ?? opts.hq ?? 4,
    nq: opts.nq ?? opts.nk ?? 256,
    nk: opts.nk ?? opts.nq ?? 256,
    d: opts.d ?? 64,
  };
  for (const key of Object.keys(opts)) {
    if (!RANDOM_FIELDS.includes(key)) throw new TypeError(`unknown random workload option '${key}' (allowed: ${RANDOM_FIELDS.join(', ')})`);
  }
  const seed = opts.seed ?? 0;
  const dtype = opts.dtype ?? 'float32';
  checkWorkloadBasics({ ...shape, seed, dtype }, ['batch', 'hq', 'hkv', 'nq', 'nk', 'd']);
  if (shape.hq % shape.hkv !== 0) throw new RangeError('hq must be a multiple of hkv');
  if (shape.nq > shape.nk) throw new RangeError('nq must be <= nk');
  const std = opts.qkStd ?? 1;
  const q = fill(shape.batch * shape.hq * shape.nq * shape.d, seed, 1, std, 0);
  const k = fill(shape.batch * shape.hkv * shape.nk * shape.d, seed, 2, std, opts.kMean ?? 0);
  const v = fill(shape.batch * shape.hkv * shape.nk * shape.d, seed, 3, opts.vStd ?? 1, 0);
  return { q: encode(q, dtype), k: encode(k, dtype), v: encode(v, dtype), shape, dtype, layout: 'bhnd' };
}

// Test data and error measures shared by the suites.
import { fromBFloat16, fromFloat16, toBFloat16, toFloat16 } from '../../lib/dtype';
import type { DType } from '../../lib/types';

/** Deterministic values in [-0.5, 0.5) (a 32-bit LCG), the same for the same seed. */
export function values(n: number, seed: number): Float32Array {
  const a = new Float32Array(n);
  let x = seed >>> 0;
  for (let i = 0; i < n; i++) {
    x = (Math.imul(x, 1664525) + 1013904223) >>> 0;
    a[i] = x / 2 ** 32 - 0.5;
  }
  return a;
}

/** x rounded to `dtype`: the raw data to upload and the float32 values the kernels see. */
export function rounded(x: Float32Array, dtype: DType): { raw: Float32Array | Uint16Array; values: Float32Array } {
  if (dtype === 'float32') return { raw: x, values: x };
  const raw = dtype === 'float16' ? toFloat16(x) : toBFloat16(x);
  return { raw, values: dtype === 'float16' ? fromFloat16(raw) : fromBFloat16(raw) };
}

/** ||got - want|| / ||want|| (float64 sums). */
export function relErr(got: ArrayLike<number>, want: ArrayLike<number>): number {
  let num = 0;
  let den = 0;
  for (let i = 0; i < want.length; i++) {
    num += (got[i] - want[i]) ** 2;
    den += want[i] ** 2;
  }
  return Math.sqrt(num / den);
}

/** Sizes of one attention problem: q [1, hq, nq, d], k and v [1, hkv, nk, d]. */
export interface Problem {
  hq: number;
  hkv: number;
  nq: number;
  nk: number;
  d: number;
  dtype: DType;
}

/**
 * "Name: message" of what `f` throws ('no error' when it returns). The addon's
 * errors belong to Node's main realm, not jest's sandbox, so tests compare these.
 */
export function nativeError(f: () => unknown): string {
  try {
    f();
  } catch (e) {
    return `${(e as Error).name}: ${(e as Error).message}`;
  }
  return 'no error';
}

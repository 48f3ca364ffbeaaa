// Synthetic Q/K/V workloads for tests, validation and benchmarks.

import type { DType, Layout } from '../types';
import type { RefDims } from '../reference';

/** Shape of a generated problem (token counts, not blocks): the reference's RefDims. */
export type WorkloadShape = RefDims;

/**
 * A generated workload. q is [batch, hq, nq, d], k and v are [batch, hkv, nk, d],
 * contiguous in 'bhnd' order. float32 data is a Float32Array; float16/bfloat16
 * data holds the 16-bit patterns in a Uint16Array.
 */
export interface Workload<T extends Float32Array | Uint16Array = Float32Array | Uint16Array> {
  q: T;
  k: T;
  v: T;
  shape: WorkloadShape;
  dtype: DType;
  layout: Layout;
}

export * from './random';
export * from './structured';

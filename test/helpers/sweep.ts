// One case of the backend sweeps against the float64 reference.
import type { DType, EstimateOptions, Layout } from '../../lib/types';

export interface Sweep {
  kind: 'random' | 'structured';
  hq: number;
  hkv: number;
  nq: number;
  nk: number;
  d: number;
  dtype: DType;
  layout: Layout;
  opts: EstimateOptions;
}

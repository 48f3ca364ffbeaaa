// One case of the backend sweeps against the float64 reference.
import type { EstimateOptions, Layout } from '../../lib/types';
import type { Problem } from './data';

export interface Sweep extends Problem {
  kind: 'random' | 'structured';
  layout: Layout;
  opts: EstimateOptions;
}

// The backend sweeps against the float64 reference: the case type, the two
// case builders the CPU and CUDA suites share (each suite picks its own
// lengths, blocks, dtypes and option sets) and a case's validation case.
import type { DType, EstimateOptions, Layout } from '../../lib/types';
import type { ValidationCase } from '../../lib/validate';
import type { Problem } from './data';

export interface Sweep extends Problem {
  kind: 'random' | 'structured';
  layout: Layout;
  opts: EstimateOptions;
}

/** What a suite chooses for length i of a length sweep. */
export interface LengthPick {
  /** One case per dtype, in this order. */
  dtypes: DType[];
  block: number;
  layout: Layout;
}

/**
 * A case per (Nq, Nk) pair and picked dtype, 8 query heads: pair i takes random
 * data and d 64 when i is even (structured and d 128 when odd), GQA 1/4/8 by
 * i % 3 and interleaved RoPE when i % 4 === 1.
 */
export function lengthSweep(lengths: Array<[number, number]>, pick: (i: number) => LengthPick): Sweep[] {
  return lengths.flatMap(([nq, nk], i) => {
    const { dtypes, block, layout } = pick(i);
    const gqa = [1, 4, 8][i % 3];
    return dtypes.map(
      (dtype): Sweep => ({
        kind: i % 2 === 0 ? 'random' : 'structured',
        hq: 8,
        hkv: 8 / gqa,
        nq,
        nk,
        d: i % 2 === 0 ? 64 : 128,
        dtype,
        layout,
        opts: { block, ropeLayout: i % 4 === 1 ? 'interleaved' : 'half' },
      }),
    );
  });
}

/** What a suite chooses for option set i of an options sweep. */
export interface OptionPick {
  nq: number;
  nk: number;
  dtype: DType;
  layout: Layout;
}

/**
 * A case per option set on a structured problem, Hq 4 / Hkv 2, d 128 for even
 * i and 64 for odd.
 */
export function optionSweep(optionSets: EstimateOptions[], pick: (i: number) => OptionPick): Sweep[] {
  return optionSets.map((opts, i) => ({ kind: 'structured', hq: 4, hkv: 2, d: i % 2 === 0 ? 128 : 64, ...pick(i), opts }));
}

/** Sweep case i as a validation case: batch 2 for every fifth case (i % 5 === 0), else 1. */
export function validationCase(c: Sweep, i: number, name: string, seed: number): ValidationCase {
  return {
    name,
    kind: c.kind,
    dims: { batch: i % 5 === 0 ? 2 : 1, hq: c.hq, hkv: c.hkv, nq: c.nq, nk: c.nk, d: c.d },
    dtype: c.dtype,
    layout: c.layout,
    opts: c.opts,
    seed,
  };
}

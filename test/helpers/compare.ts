// Comparison helpers shared by the backend tests.

import type { HostBlockMask } from '../../lib/types';
import type { RefEstimate } from '../../lib/reference';
export { relativeError, maxAbsError, maskAgreement, bhndToBnhd, bnhdToBhnd } from '../../lib/validate';
export type { MaskAgreement } from '../../lib/validate';

/** Rows (flat [b, h, i] indices) whose mask differs between the reference and a native mask. */
export function mismatchedRows(ref: RefEstimate, got: HostBlockMask): number[] {
  const rows: number[] = [];
  for (let r = 0; r < ref.counts.length; r++) {
    const o = r * ref.nk;
    for (let j = 0; j < ref.nk; j++) {
      if (ref.mask[o + j] !== got.mask[o + j]) {
        rows.push(r);
        break;
      }
    }
  }
  return rows;
}

/** True when counts/indices are consistent with the mask (ascending, complete). */
export function listsMatchMask(m: HostBlockMask): boolean {
  for (let r = 0; r < m.counts.length; r++) {
    const o = r * m.nk;
    let c = 0;
    if (m.rowPtr[r + 1] - m.rowPtr[r] !== m.counts[r]) return false;
    for (let j = 0; j < m.nk; j++) {
      if (m.mask[o + j]) {
        if (m.indices[m.rowPtr[r] + c] !== j) return false;
        c++;
      }
    }
    if (c !== m.counts[r]) return false;
  }
  return true;
}

/** Count of NaN or infinite values. */
export function countNonFinite(x: ArrayLike<number>): number {
  let n = 0;
  for (let i = 0; i < x.length; i++) if (!Number.isFinite(x[i])) n++;
  return n;
}

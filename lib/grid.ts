// Block geometry shared by the API, the reference and the benchmark: blocks
// of B tokens on the absolute token grid, the same for queries and keys.

export function numBlocks(n: number, block: number): number {
  return Math.floor((n + block - 1) / block);
}

/**
 * Blocks on the absolute token grid, the same for queries and keys: block j
 * holds positions [jB, (j+1)B) and query row r sits at position (Nk - Nq) + r.
 * Query block i is grid block i0 + i (i0 = floor((Nk - Nq)/B) = nk - nq) and
 * holds rows [iB - shift, (i+1)B - shift) clipped to [0, Nq), shift = (Nk - Nq) % B:
 * the first query block of a chunk that starts inside a block is partial.
 */
export interface BlockGrid {
  /** query blocks */
  nq: number;
  /** key blocks */
  nk: number;
  /** i0: key block j is visible to query block i iff j <= i + off */
  off: number;
  /** (Nk - Nq) % B */
  shift: number;
  block: number;
  queryLength: number;
  keyLength: number;
}

export function blockGrid(queryLength: number, keyLength: number, block: number): BlockGrid {
  const nk = numBlocks(keyLength, block);
  const off = Math.floor((keyLength - queryLength) / block);
  const shift = (keyLength - queryLength) % block;
  const nq = queryLength > 0 ? numBlocks(queryLength + shift, block) : 0;
  return { nq, nk, off, shift, block, queryLength, keyLength };
}

/** First query row of query block i. */
export function blockRowBegin(g: BlockGrid, i: number): number {
  return Math.max(0, i * g.block - g.shift);
}

/** One past the last query row of query block i. */
export function blockRowEnd(g: BlockGrid, i: number): number {
  return Math.min(g.queryLength, (i + 1) * g.block - g.shift);
}

/** Query block of query row r. */
export function blockOfRow(g: BlockGrid, r: number): number {
  return Math.floor((r + g.shift) / g.block);
}

/** Last visible key block of query block i is min(i + nk - nq, nk - 1). */
export function visibleBlocks(i: number, nqb: number, nkb: number): number {
  const last = i + (nkb - nqb);
  return last + 1 < nkb ? last + 1 : nkb;
}

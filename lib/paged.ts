// The sequence table of a ragged batch, checked before any work: cumulative
// sequence lengths (FlashAttention's cu_seqlens) for packed K/V, or per-sequence
// KV lengths and a page table (vLLM / FlashInfer) for a paged KV cache.
import { isArray, readField, show, typeName, typedArrayName } from './args';
import { checkOptionFields } from './options';
import { checkTensor, type Tensor } from './tensor';

/** int32 lengths or offsets: an Int32Array or an array of integers. */
export type IntList = Int32Array | ReadonlyArray<number>;

/** A ragged batch with packed K/V: q [1, Hq, totalQ, d], k and v [1, Hkv, totalK, d]. */
export interface RaggedBatch {
  /** batch + 1 cumulative query lengths: cuSeqlensQ[0] = 0, non-decreasing, last = totalQ. */
  cuSeqlensQ: IntList;
  /** batch + 1 cumulative key lengths, last = totalK. Sequence i: Nq_i <= Nk_i. */
  cuSeqlensK: IntList;
}

/** Page layouts: NHD = pages [numPages, pageSize, Hkv, d], HND = [numPages, Hkv, pageSize, d]. */
export type KvLayout = 'NHD' | 'HND';

/**
 * A ragged batch of new queries against a paged KV cache: k and v are page
 * pools, tensors of logical shape [numPages, Hkv, pageSize, d] whose layout
 * is the page layout ('bnhd' = NHD, 'bhnd' = HND).
 */
export interface PagedBatch {
  /** batch + 1 cumulative query lengths (the new tokens), last = totalQ. */
  cuSeqlensQ: IntList;
  /** KV length of each sequence (cached prefix + new tokens), >= its query length. */
  kvLens: IntList;
  /**
   * Page ids per sequence: an Int32Array [batch * maxPagesPerSeq] (row-major,
   * with maxPagesPerSeq), or one array per sequence. Sequence i reads its first
   * ceil(kvLens[i] / pageSize) entries; the rest (padding) is not read.
   */
  pageTable: Int32Array | ReadonlyArray<IntList>;
  /** Row length of a flat pageTable (required with one). */
  maxPagesPerSeq?: number;
  /** Optional check of the pools' layout: 'NHD' needs layout 'bnhd', 'HND' 'bhnd'. */
  kvLayout?: KvLayout;
  /** Optional check of the pools' page size (k.shape[2]). */
  pageSize?: number;
}

export type VarlenBatch = RaggedBatch | PagedBatch;

/** The keys of a ragged batch (summarizeKeysVarlen): a RaggedBatch or PagedBatch whose cuSeqlensQ may be left out (it is not read). */
export type KeyBatch = (Omit<RaggedBatch, 'cuSeqlensQ'> | Omit<PagedBatch, 'cuSeqlensQ'>) & { cuSeqlensQ?: IntList };

/** Page sizes the paged path takes. */
export const PAGE_SIZES: readonly number[] = [16, 32, 64, 128, 256];

const INT32_MAX = 2 ** 31 - 1;

/** The checked table: one entry per sequence. */
export interface SequenceTable {
  batch: number;
  qStart: number[];
  qLen: number[];
  kStart: number[];
  kLen: number[];
  paged: null | { pageSize: number; maxPages: number; table: Int32Array; layout: KvLayout; numPages: number };
}

function intList(x: unknown, name: string): ArrayLike<number> {
  if (typedArrayName(x) === 'Int32Array') return x as Int32Array;
  if (!isArray(x)) throw new TypeError(`${name} must be an Int32Array or an array of integers, got ${typeName(x)}`);
  const length = readField(x, 'length', `${name}.length`);
  // An array-like (a Proxy, say) may claim any length: refuse what no int32 list holds
  // before reading, and read into a typed array (a JS array of ~10^8 numbers aborts the process).
  if (typeof length !== 'number' || !Number.isSafeInteger(length) || length < 0 || length > INT32_MAX) {
    throw new RangeError(`${name}.length must be an integer in [0, ${INT32_MAX}], got ${show(length)}`);
  }
  const out = new Int32Array(length);
  for (let i = 0; i < length; i++) {
    const v = readField(x, String(i), `${name}[${i}]`);
    if (typeof v !== 'number') throw new TypeError(`${name}[${i}] must be a number, got ${typeName(v)}`);
    if (!Number.isInteger(v) || v < -INT32_MAX - 1 || v > INT32_MAX) {
      throw new RangeError(`${name}[${i}] must be an int32 integer, got ${show(v)}`);
    }
    out[i] = v;
  }
  return out;
}

/** batch + 1 cumulative lengths: start at 0, non-decreasing, last = total. Returns the per-sequence lengths. */
function cumulative(x: unknown, name: string, total: number, what: string): { start: number[]; len: number[] } {
  const c = intList(x, name);
  if (c.length < 2) throw new RangeError(`${name} must have batch + 1 >= 2 entries, got ${c.length}`);
  if (c[0] !== 0) throw new RangeError(`${name}[0] must be 0, got ${c[0]}`);
  const start: number[] = [];
  const len: number[] = [];
  for (let i = 0; i + 1 < c.length; i++) {
    if (c[i + 1] < c[i]) {
      throw new RangeError(`${name} must be non-decreasing: ${name}[${i + 1}] = ${c[i + 1]} < ${name}[${i}] = ${c[i]} (sequence ${i})`);
    }
    start.push(c[i]);
    len.push(c[i + 1] - c[i]);
  }
  const last = c[c.length - 1];
  if (last !== total) {
    throw new RangeError(`${name}[${c.length - 1}] = ${last} must equal the packed ${what} length ${total}`);
  }
  return { start, len };
}

function checkQueriesFit(qLen: number[], kLen: number[], what: string): void {
  qLen.forEach((nq, i) => {
    if (nq > kLen[i]) {
      throw new RangeError(`sequence ${i}: ${nq} queries exceed its ${kLen[i]} keys (${what}); queries are the last Nq_i of the Nk_i keys`);
    }
  });
}

function pageTableRows(x: unknown, batch: number, maxPagesField: unknown): { table: Int32Array; maxPages: number; rowLen?: number[] } {
  if (typedArrayName(x) === 'Int32Array') {
    const t = x as Int32Array;
    if (typeof maxPagesField !== 'number' || !Number.isSafeInteger(maxPagesField) || maxPagesField < 0) {
      const E = typeof maxPagesField === 'number' ? RangeError : TypeError; // a number out of range, or none
      throw new E(`batch.maxPagesPerSeq must be an integer >= 0 with a flat Int32Array pageTable, got ${show(maxPagesField)}`);
    }
    if (t.length !== batch * maxPagesField) {
      throw new RangeError(`batch.pageTable must have batch * maxPagesPerSeq = ${batch} * ${maxPagesField} = ${batch * maxPagesField} entries, got ${t.length}`);
    }
    return { table: Int32Array.from(t), maxPages: maxPagesField }; // a copy: what was checked is what runs
  }
  if (!isArray(x)) {
    throw new TypeError(`batch.pageTable must be an Int32Array [batch * maxPagesPerSeq] or one array of page ids per sequence, got ${typeName(x)}`);
  }
  const length = readField(x, 'length', 'batch.pageTable.length') as number;
  if (length !== batch) throw new RangeError(`batch.pageTable must have one row per sequence (${batch}), got ${length}`);
  const rows = Array.from({ length }, (_, i) => intList(readField(x, String(i), `batch.pageTable[${i}]`), `batch.pageTable[${i}]`));
  if (maxPagesField !== undefined && (typeof maxPagesField !== 'number' || !Number.isSafeInteger(maxPagesField) || maxPagesField < 0)) {
    const E = typeof maxPagesField === 'number' ? RangeError : TypeError;
    throw new E(`batch.maxPagesPerSeq must be an integer >= 0, got ${show(maxPagesField)}`);
  }
  // maxPagesPerSeq only bounds the rows here: the table is as wide as the
  // longest row (a generous bound must not cost batch * bound entries).
  let maxPages = 0;
  for (const [i, r] of rows.entries()) {
    if (maxPagesField !== undefined && r.length > (maxPagesField as number)) {
      throw new RangeError(`batch.pageTable[${i}] has ${r.length} pages, more than maxPagesPerSeq ${maxPagesField as number}`);
    }
    maxPages = Math.max(maxPages, r.length);
  }
  const table = new Int32Array(batch * maxPages).fill(-1);
  rows.forEach((r, i) => table.set(r, i * maxPages));
  return { table, maxPages, rowLen: rows.map((r) => r.length) };
}

/** The paged table; without q (keys only) the sequences are those of kvLens and have no queries. */
function resolvePaged(o: Record<string, unknown>, q: Tensor | null, k: Tensor): SequenceTable {
  const kLen = Array.from(intList(o.kvLens, 'batch.kvLens'));
  const { start: qStart, len: qLen } = q
    ? cumulative(o.cuSeqlensQ, 'batch.cuSeqlensQ', q.shape[2], 'query')
    : { start: kLen.map(() => 0), len: kLen.map(() => 0) };
  const batch = qLen.length;
  if (kLen.length !== batch) throw new RangeError(`batch.kvLens must have one entry per sequence (${batch}), got ${kLen.length}`);
  kLen.forEach((n, i) => {
    if (n < 0) throw new RangeError(`batch.kvLens[${i}] must be >= 0, got ${n}`);
  });
  checkQueriesFit(qLen, kLen, 'batch.kvLens');
  const [numPages, , pageSize] = k.shape;
  const layout: KvLayout = k.layout === 'bnhd' ? 'NHD' : 'HND';
  if (o.kvLayout !== undefined) {
    if (o.kvLayout !== 'NHD' && o.kvLayout !== 'HND') throw new TypeError(`batch.kvLayout must be 'NHD' or 'HND', got ${show(o.kvLayout)}`);
    if (o.kvLayout !== layout) {
      throw new RangeError(
        `batch.kvLayout '${o.kvLayout}' needs k and v in layout '${o.kvLayout === 'NHD' ? 'bnhd' : 'bhnd'}' (pages [numPages, ${o.kvLayout === 'NHD' ? 'pageSize, Hkv' : 'Hkv, pageSize'}, d] in memory), got '${k.layout}'`,
      );
    }
  }
  if (!PAGE_SIZES.includes(pageSize)) {
    throw new RangeError(`page size (k.shape[2] of the page pool [numPages, Hkv, pageSize, d]) must be ${PAGE_SIZES.join(', ')}, got ${pageSize}`);
  }
  if (o.pageSize !== undefined && typeof o.pageSize !== 'number') throw new TypeError(`batch.pageSize must be a number, got ${typeName(o.pageSize)}`);
  if (o.pageSize !== undefined && o.pageSize !== pageSize) {
    throw new RangeError(`batch.pageSize ${show(o.pageSize)} differs from the pools' page size ${pageSize} (k.shape[2])`);
  }
  const { table, maxPages, rowLen } = pageTableRows(o.pageTable, batch, o.maxPagesPerSeq);
  for (let i = 0; i < batch; i++) {
    const need = Math.ceil(kLen[i] / pageSize);
    const have = rowLen ? rowLen[i] : maxPages;
    if (need > have) {
      const where = rowLen ? `batch.pageTable[${i}] has ${have}` : `batch.pageTable has ${have} per sequence`;
      throw new RangeError(`sequence ${i}: ${kLen[i]} keys (batch.kvLens[${i}]) need ${need} pages of ${pageSize}, ${where}`);
    }
    for (let p = 0; p < need; p++) {
      const id = table[i * maxPages + p];
      if (id < 0 || id >= numPages) {
        throw new RangeError(`batch.pageTable: sequence ${i}, page ${p} is ${id}, outside the pool's ${numPages} pages [0, ${numPages - 1}]`);
      }
    }
  }
  return { batch, qStart, qLen, kStart: new Array<number>(batch).fill(0), kLen, paged: { pageSize, maxPages, table, layout, numPages } };
}

/**
 * The sequence table of `batch` for packed q [1, Hq, totalQ, d] and k (packed
 * [1, Hkv, totalK, d], or a page pool with a PagedBatch): TypeError /
 * RangeError naming the field and the sequence, before any work.
 */
export function resolveBatch(batchArg: unknown, q: Tensor, k: Tensor): SequenceTable {
  // Public: q and k must be tensors (a null q would silently make the keys-only table).
  return resolveTable(batchArg, checkTensor(q, 'q'), checkTensor(k, 'k'));
}

/**
 * The keys of a ragged batch alone (summarizeKeysVarlen): `batch` as
 * resolveBatch takes it, cuSeqlensQ optional and not read; packed k
 * [1, Hkv, totalK, d] with cuSeqlensK, or a page pool with kvLens and a page
 * table. The table's sequences have no queries.
 */
export function resolveKeyBatch(batchArg: unknown, k: Tensor): SequenceTable {
  return resolveTable(batchArg, null, k);
}

/** resolveBatch, or with q null resolveKeyBatch (queries neither read nor required). */
function resolveTable(batchArg: unknown, q: Tensor | null, k: Tensor): SequenceTable {
  if (batchArg === null || typeof batchArg !== 'object' || isArray(batchArg)) {
    const fields = q ? '{ cuSeqlensQ, cuSeqlensK } or { cuSeqlensQ, kvLens, pageTable, ... }' : '{ cuSeqlensK } or { kvLens, pageTable, ... }';
    throw new TypeError(`batch must be an object ${fields}, got ${typeName(batchArg)}`);
  }
  const allowed = ['cuSeqlensQ', 'cuSeqlensK', 'kvLens', 'pageTable', 'maxPagesPerSeq', 'kvLayout', 'pageSize'];
  const o = checkOptionFields(batchArg, allowed, 'batch', 'batch');
  if (q) {
    if (o.cuSeqlensQ === undefined) throw new TypeError('batch.cuSeqlensQ is required');
    if (q.shape[0] !== 1) throw new RangeError(`q must be packed [1, Hq, totalQ, d] (batch 1), got [${q.shape.join(', ')}]`);
  }
  if (o.pageTable !== undefined) {
    if (o.cuSeqlensK !== undefined) throw new TypeError('batch: give cuSeqlensK (packed K/V) or pageTable and kvLens (paged), not both');
    if (o.kvLens === undefined) throw new TypeError('batch.kvLens is required with a pageTable');
    return resolvePaged(o, q, k);
  }
  for (const key of ['kvLens', 'maxPagesPerSeq', 'kvLayout', 'pageSize']) {
    if (o[key] !== undefined) throw new TypeError(`batch.${key} needs a batch.pageTable (paged KV)`);
  }
  if (o.cuSeqlensK === undefined) throw new TypeError('batch needs cuSeqlensK (packed K/V) or pageTable and kvLens (paged KV)');
  if (k.shape[0] !== 1) throw new RangeError(`k must be packed [1, Hkv, totalK, d] (batch 1), got [${k.shape.join(', ')}]`);
  const qs = q ? cumulative(o.cuSeqlensQ, 'batch.cuSeqlensQ', q.shape[2], 'query') : null;
  const { start: kStart, len: kLen } = cumulative(o.cuSeqlensK, 'batch.cuSeqlensK', k.shape[2], 'key');
  if (!qs) return { batch: kLen.length, qStart: kLen.map(() => 0), qLen: kLen.map(() => 0), kStart, kLen, paged: null };
  const { start: qStart, len: qLen } = qs;
  if (kLen.length !== qLen.length) {
    throw new RangeError(`batch.cuSeqlensK must have batch + 1 = ${qLen.length + 1} entries like batch.cuSeqlensQ, got ${kLen.length + 1}`);
  }
  checkQueriesFit(qLen, kLen, 'batch.cuSeqlensK');
  return { batch: qLen.length, qStart, qLen, kStart, kLen, paged: null };
}

/** The table as the addon takes it. */
export function nativeSpec(t: SequenceTable): { seqs: BigInt64Array; pageTable?: Int32Array; maxPages?: number } {
  const seqs = new BigInt64Array(4 * t.batch);
  for (let i = 0; i < t.batch; i++) {
    seqs[4 * i] = BigInt(t.qStart[i]);
    seqs[4 * i + 1] = BigInt(t.qLen[i]);
    seqs[4 * i + 2] = BigInt(t.kStart[i]);
    seqs[4 * i + 3] = BigInt(t.kLen[i]);
  }
  return t.paged ? { seqs, pageTable: t.paged.table, maxPages: t.paged.maxPages } : { seqs };
}

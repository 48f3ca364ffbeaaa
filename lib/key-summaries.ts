// Reusable key summaries (docs/api.md, "Key summaries"): the pooled key
// blocks of full blocks, computed once and read by later estimations instead
// of pooling those blocks from K again. Key block j always covers keys
// [j*block, (j+1)*block) (the query grid may be shifted, the key grid is
// not), so a full block's summary is fixed once its keys are written; a
// chunked prefill then pools only the new keys.
import { isArray, isMadeInstance, typeName } from './args';
import { native, NativeDType, type NativeKeySummaries, type NativeTensor } from './native';
import { checkRun, splitPrefillOptions, type PrefillOptions } from './ops';
import { checkHeadDim, integerIn, resolveAttentionOptions, resolveEstimateOptions, toNativeEstimateParams } from './options';
import { nativeSpec, resolveKeyBatch, type KeyBatch, type SequenceTable } from './paged';
import { checkStream, checkTensor, isNativeTensor, type Tensor } from './tensor';
import type { DType, Method, ResolvedEstimateOptions, RopeLayout } from './types';
import { whileGpuWorks } from './wait-policy';

/** What a set of summaries was made for: the keys' geometry and the options the pooling depends on. */
export interface KeySummariesShape {
  batch: number;
  kvHeads: number;
  headDim: number;
  dtype: DType;
  block: number;
  method: Method;
  highDims: number;
  lowDims: number;
  ropeLayout: RopeLayout;
  /** Blocks it has room for. */
  capacityBlocks: number;
}

/** @internal device parts: rows float32 [batch, Hkv, capacity, rowFloats], energies float32 [.., 3] on a GPU (null on the CPU) */
export interface KeySummariesParts {
  rows: NativeTensor;
  energies: NativeTensor | null;
}

const MADE = Symbol('KeySummaries');

/**
 * The pooled key blocks [0, blocks) of every (batch, kv head) of some keys,
 * on the keys' device (backend format: band-packed float32 rows and their
 * energies on a GPU, float64 block means on the CPU). Made by summarizeKeys()
 * and summarizeKeysVarlen(); estimation takes it as run.keySummaries.
 */
export class KeySummaries implements KeySummariesShape {
  readonly batch: number;
  readonly kvHeads: number;
  readonly headDim: number;
  readonly dtype: DType;
  readonly block: number;
  readonly method: Method;
  readonly highDims: number;
  readonly lowDims: number;
  readonly ropeLayout: RopeLayout;
  readonly capacityBlocks: number;
  /** 'cpu' or 'cuda:N' */
  readonly device: string;
  /** Device milliseconds of the last summarize call that wrote these summaries (an estimation's write-back is timed in its own estimateMs). */
  timesMs: number[] = [];
  /** @internal */
  readonly parts: KeySummariesParts;
  private valid = 0;
  private writing = false; // a call in flight writes into these summaries

  /** @internal made by summarizeKeys() and summarizeKeysVarlen() */
  constructor(token: unknown, shape: KeySummariesShape, device: string, parts: KeySummariesParts) {
    if (token !== MADE) throw new TypeError('KeySummaries are made by summarizeKeys() or summarizeKeysVarlen()');
    this.batch = shape.batch;
    this.kvHeads = shape.kvHeads;
    this.headDim = shape.headDim;
    this.dtype = shape.dtype;
    this.block = shape.block;
    this.method = shape.method;
    this.highDims = shape.highDims;
    this.lowDims = shape.lowDims;
    this.ropeLayout = shape.ropeLayout;
    this.capacityBlocks = shape.capacityBlocks;
    this.device = device;
    this.parts = parts;
  }

  /** Valid blocks: key blocks [0, blocks) of every (batch, kv head), keys [0, blocks * block). */
  get blocks(): number {
    return this.valid;
  }

  /** Keys covered: blocks * block. */
  get keys(): number {
    return this.valid * this.block;
  }

  get disposed(): boolean {
    return this.parts.rows.disposed;
  }

  /** Device bytes held. */
  get byteLength(): number {
    return this.parts.rows.byteLength + (this.parts.energies ? this.parts.energies.byteLength : 0);
  }

  /**
   * Keeps only key blocks [0, blocks) valid (no native work, nothing freed): for
   * keys rewritten from block `blocks` on, or a sequence started again in the
   * same summaries (truncate(0)). RangeError unless an integer in [0, this.blocks].
   */
  truncate(blocks: number): void {
    if (this.writing) throw new Error('truncate: a call in flight is writing these key summaries; truncate once it has settled');
    this.valid = integerIn('blocks', blocks, 0, this.valid);
  }

  /**
   * @internal Marks a writing call in flight (its write-back or summarize
   * sets `blocks` when it resolves) and returns its release. Two writers at
   * once would race on the rows and on `blocks`: the second is an Error.
   */
  beginWrite(name: string): () => void {
    if (this.writing) {
      throw new Error(`${name}: another call in flight is writing these key summaries (appendKeySummaries or summarizeKeys into); wait for it to settle`);
    }
    this.writing = true;
    let released = false;
    return () => {
      if (!released) this.writing = false;
      released = true;
    };
  }

  /** Frees the device memory now (idempotent). */
  dispose(): void {
    this.parts.rows.dispose();
    this.parts.energies?.dispose();
  }

  /** @internal what the addon reads (the blocks valid now; append: the estimation writes the full blocks it pools back) */
  nativeArgs(append = false): NativeKeySummaries {
    if (this.disposed) throw new Error('key summaries have been disposed');
    return { rows: this.parts.rows, energies: this.parts.energies, blocks: this.valid, ...(append ? { append: true } : {}) };
  }

  /** @internal */
  setBlocks(n: number): void {
    this.valid = n;
  }
}

/** KeySummaries made by this module (not forged from KeySummaries.prototype). */
export function isKeySummaries(x: unknown): x is KeySummaries {
  return isMadeInstance(x, KeySummaries, 'parts', (p) => {
    if (typeof p !== 'object' || p === null) return false;
    const rows = Object.getOwnPropertyDescriptor(p, 'rows')?.value;
    return isNativeTensor(rows);
  });
}

/** The keys a summary describes: [batch, kvHeads, n, headDim] of dtype on device. */
export interface KeyGeometry {
  batch: number;
  kvHeads: number;
  n: number;
  headDim: number;
  dtype: DType;
  device: string;
}

function keyGeometry(k: Tensor, batch = k.shape[0], n = k.shape[2]): KeyGeometry {
  return { batch, kvHeads: k.shape[1], n, headDim: k.shape[3], dtype: k.dtype, device: k.device };
}

/** `s` (named `name`) as live KeySummaries that fit keys `g` under options `o` (RangeError naming the first field that differs). */
export function checkKeySummaries(s: unknown, name: string, g: KeyGeometry, o: ResolvedEstimateOptions): KeySummaries {
  if (!isKeySummaries(s)) throw new TypeError(`${name} must be KeySummaries (from summarizeKeys or summarizeKeysVarlen), got ${typeName(s)}`);
  if (s.disposed) throw new Error(`${name}: key summaries have been disposed`);
  const fields: Array<[string, unknown, unknown]> = [
    ['device', s.device, g.device],
    ['batch', s.batch, g.batch],
    ['kv heads', s.kvHeads, g.kvHeads],
    ['head_dim', s.headDim, g.headDim],
    ['dtype', s.dtype, g.dtype],
    ['block', s.block, o.block],
    ['method', s.method, o.method],
  ];
  if (o.method === 'prism') {
    fields.push(['highDims', s.highDims, o.highDims], ['lowDims', s.lowDims, o.lowDims], ['ropeLayout', s.ropeLayout, o.ropeLayout]);
  }
  for (const [field, made, wanted] of fields) {
    if (made !== wanted) throw new RangeError(`${name} were made for ${field} ${String(made)}; this call has ${field} ${String(wanted)}`);
  }
  const full = Math.floor(g.n / o.block);
  if (s.blocks > full) {
    throw new RangeError(`${name} cover ${s.blocks} key blocks, more than the ${full} full blocks of block ${o.block} that the ${g.n} keys hold`);
  }
  return s;
}

/**
 * run.appendKeySummaries (`flag`) next to run.keySummaries (`summaries`):
 * false when absent; TypeError unless a boolean, or when set without summaries.
 */
export function appendKeySummariesFlag(flag: unknown, summaries: unknown): boolean {
  if (flag === undefined) return false;
  if (typeof flag !== 'boolean') throw new TypeError(`run.appendKeySummaries must be a boolean, got ${typeName(flag)}`);
  if (flag && summaries === undefined) throw new TypeError('run.appendKeySummaries needs run.keySummaries (the summaries to append the pooled key blocks to)');
  return flag;
}

/** RangeError unless `s` (named `name`) has room for the full blocks of keys `g` (what an appending estimation writes). */
function checkAppendRoom(s: KeySummaries, name: string, g: KeyGeometry, o: ResolvedEstimateOptions): number {
  const full = Math.floor(g.n / o.block);
  if (full > s.capacityBlocks) {
    throw new RangeError(`${name} have room for ${s.capacityBlocks} key blocks; run.appendKeySummaries needs ${full} (the full blocks of block ${o.block} that the ${g.n} keys hold)`);
  }
  return full;
}

/**
 * The summaries of an op as the addon takes them (`keys`), and `commit`, to
 * call once the op has resolved: with run.appendKeySummaries it counts the
 * blocks the estimation wrote back as valid (on failure it is not called and
 * the summaries keep the blocks they had).
 */
export interface KeySummariesRun<T> {
  keys: T | undefined;
  /** After the native call: the summaries written back hold their new blocks. */
  commit(): void;
  /**
   * Marks the summaries written back as written by this call, until the
   * returned release runs (call it in a finally, after commit). An Error when
   * another call in flight writes them.
   */
  hold(): () => void;
}

const NOTHING_TO_COMMIT = (): void => undefined;
const NOTHING_HELD = (): (() => void) => NOTHING_TO_COMMIT;

/** run.keySummaries (and run.appendKeySummaries) of estimate() / prefill(): undefined or summaries of k. */
export function keySummariesArg(s: unknown, k: Tensor, o: ResolvedEstimateOptions, appendFlag?: unknown): KeySummariesRun<NativeKeySummaries> {
  const append = appendKeySummariesFlag(appendFlag, s);
  if (s === undefined) return { keys: undefined, commit: NOTHING_TO_COMMIT, hold: NOTHING_HELD };
  const g = keyGeometry(k);
  const sums = checkKeySummaries(s, 'run.keySummaries', g, o);
  if (!append) return { keys: sums.nativeArgs(), commit: NOTHING_TO_COMMIT, hold: NOTHING_HELD };
  const full = checkAppendRoom(sums, 'run.keySummaries', g, o);
  return { keys: sums.nativeArgs(true), commit: () => sums.setBlocks(full), hold: () => sums.beginWrite('run.keySummaries') };
}

/**
 * run.keySummaries (and run.appendKeySummaries) of the varlen ops: undefined,
 * or one KeySummaries | null per sequence. Appending, a sequence without
 * queries is not estimated: its summaries are not written (nor checked for room).
 */
export function keySummariesListArg(list: unknown, k: Tensor, t: SequenceTable, o: ResolvedEstimateOptions, appendFlag?: unknown): KeySummariesRun<Array<NativeKeySummaries | null>> {
  const append = appendKeySummariesFlag(appendFlag, list);
  if (list === undefined) return { keys: undefined, commit: NOTHING_TO_COMMIT, hold: NOTHING_HELD };
  if (!isArray(list)) throw new TypeError(`run.keySummaries must be an array of one KeySummaries (or null) per sequence, got ${typeName(list)}`);
  if (list.length !== t.batch) throw new RangeError(`run.keySummaries must have one entry per sequence (${t.batch}), got ${list.length}`);
  const seen: KeySummaries[] = [];
  const grown: Array<[KeySummaries, number, number]> = []; // summaries, blocks after, sequence
  const keys = list.map((entry: unknown, i) => {
    if (entry === null || entry === undefined) return null;
    const name = `run.keySummaries[${i}]`;
    const g = keyGeometry(k, 1, t.kLen[i]);
    const s = checkKeySummaries(entry, name, g, o);
    if (!append) return s.nativeArgs();
    if (seen.includes(s)) throw new RangeError(`${name} is also given for an earlier sequence (run.appendKeySummaries writes each sequence's blocks into its own summaries)`);
    seen.push(s);
    if (t.qLen[i] === 0) return s.nativeArgs();
    grown.push([s, checkAppendRoom(s, name, g, o), i]);
    return s.nativeArgs(true);
  });
  const hold = (): (() => void) => {
    const releases: Array<() => void> = [];
    try {
      for (const [s, , i] of grown) releases.push(s.beginWrite(`run.keySummaries[${i}]`));
    } catch (e) {
      for (const r of releases) r();
      throw e;
    }
    return () => releases.forEach((r) => r());
  };
  return { keys, commit: () => grown.forEach(([s, full]) => s.setBlocks(full)), hold };
}

/** New summaries with room for `capacity` blocks of keys `g` (nothing valid yet). */
function createSummaries(g: KeyGeometry, deviceIndex: number, o: ResolvedEstimateOptions, capacity: number): KeySummaries {
  const layout = native().keySummaryLayout(deviceIndex, g.headDim, toNativeEstimateParams(o));
  const rowsShape = [g.batch, g.kvHeads, Math.max(1, capacity), layout.rowFloats];
  const rows = new (native().Tensor)(deviceIndex, NativeDType.F32, rowsShape, 0);
  let energies: NativeTensor | null = null;
  try {
    if (layout.energyFloats > 0) energies = new (native().Tensor)(deviceIndex, NativeDType.F32, [g.batch, g.kvHeads, Math.max(1, capacity), layout.energyFloats], 0);
  } catch (e) {
    rows.dispose();
    throw e;
  }
  const shape: KeySummariesShape = {
    batch: g.batch,
    kvHeads: g.kvHeads,
    headDim: g.headDim,
    dtype: g.dtype,
    block: o.block,
    method: o.method,
    highDims: o.highDims,
    lowDims: o.lowDims,
    ropeLayout: o.ropeLayout,
    capacityBlocks: capacity,
  };
  return new KeySummaries(MADE, shape, g.device, { rows, energies });
}

/**
 * The estimation options of summarizeKeys. Prefill options are taken too, so
 * that a server passes the same object to both: every field is checked as
 * prefill() checks it, and only the pooling's fields matter.
 */
function summaryOptions(opts: PrefillOptions | undefined, headDim: number): ResolvedEstimateOptions {
  const [est, att] = splitPrefillOptions(opts);
  resolveAttentionOptions(att);
  return resolveEstimateOptions(est, headDim);
}

function capacityOf(maxKeys: unknown, name: string, block: number, needed: number): number {
  if (maxKeys === undefined) return needed;
  const keys = integerIn(name, maxKeys, 0, 2 ** 31 - 1);
  const capacity = Math.floor(keys / block);
  if (capacity < needed) throw new RangeError(`${name} (${keys}) holds ${capacity} full blocks of ${block}; the keys have ${needed}`);
  return capacity;
}

/** How to run summarizeKeys(). */
export interface SummarizeKeysRunOptions {
  /** Summaries to extend (made for the same keys and options): blocks [from, full blocks of k) are written into them. */
  into?: KeySummaries;
  /** With `into`: the first block to compute, in [0, into.blocks] (default into.blocks: append). */
  from?: number;
  /** Without `into`: room for this many keys (floor(maxKeys / block) blocks; default k's full blocks). */
  maxKeys?: number;
  /** A CUDA stream to enqueue the work on (see RunOptions.stream). */
  stream?: bigint;
}

/**
 * The summaries (pooled key blocks) of the full key blocks of k [b, Hkv, Nk, d]:
 * blocks [0, floor(Nk / block)), or with run.into blocks [from, floor(Nk / block))
 * written into existing summaries (a chunked prefill appends each chunk's new
 * full blocks, allocating nothing). opts: the estimation options of the calls
 * that will read them (block, method, bands and RoPE layout matter).
 */
export async function summarizeKeys(k: Tensor, opts?: PrefillOptions, run?: SummarizeKeysRunOptions): Promise<KeySummaries> {
  checkTensor(k, 'k');
  checkHeadDim(k.shape[3]);
  const o = summaryOptions(opts, k.shape[3]);
  const r = checkRun(run, ['into', 'from', 'maxKeys', 'stream']);
  const stream = checkStream(r.stream, k.device, 'run.stream');
  const full = Math.floor(k.shape[2] / o.block);
  const g = keyGeometry(k);
  let s: KeySummaries;
  let from = 0;
  if (r.into !== undefined) {
    if (r.maxKeys !== undefined) throw new TypeError('run.maxKeys sizes new summaries; run.into has its own capacity');
    s = checkKeySummaries(r.into, 'run.into', { ...g, n: Number.MAX_SAFE_INTEGER }, o);
    from = r.from === undefined ? s.blocks : integerIn('run.from', r.from, 0, s.blocks, ' (the blocks run.into holds)');
    if (from > full) {
      const what = r.from === undefined ? `run.into holds ${from} blocks, more than` : `run.from (${from}) exceeds`;
      throw new RangeError(`${what} the ${full} full key blocks of k (${k.shape[2]} keys, block ${o.block})`);
    }
    if (full > s.capacityBlocks) throw new RangeError(`k has ${full} full key blocks; run.into has room for ${s.capacityBlocks}`);
  } else {
    if (r.from !== undefined) throw new TypeError('run.from needs run.into (new summaries start at block 0)');
    s = createSummaries(g, k.native.device, o, capacityOf(r.maxKeys, 'run.maxKeys', o.block, full));
  }
  const given = r.into !== undefined;
  let release = (): void => undefined;
  try {
    release = s.beginWrite(given ? 'run.into' : 'summarizeKeys');
    s.setBlocks(Math.min(s.blocks, from));
    const job = { rows: s.parts.rows, energies: s.parts.energies, from, to: full };
    const ms = await whileGpuWorks(k.native.device, native().summarizeKeys(k.live(), toNativeEstimateParams(o), [job], null, stream));
    s.setBlocks(full);
    s.timesMs = [ms];
    return s;
  } catch (e) {
    if (!given) s.dispose();
    throw e;
  } finally {
    release();
  }
}

/** How to run summarizeKeysVarlen(). */
export interface VarlenSummarizeKeysRunOptions {
  /** One entry per sequence: summaries to append that sequence's new full blocks to, or null (new summaries). */
  into?: ReadonlyArray<KeySummaries | null>;
  /** New summaries: room for this many keys each (default each sequence's full blocks). */
  maxKeys?: number;
  /** A CUDA stream to enqueue the work on (see RunOptions.stream). */
  stream?: bigint;
}

/**
 * Summaries of every sequence of a ragged batch's keys (packed with
 * batch.cuSeqlensK, or a page pool with kvLens and a page table; cuSeqlensQ
 * may be present and is not read): one KeySummaries (batch 1) per sequence,
 * of its full key blocks. With run.into, sequence i's new full blocks
 * [into[i].blocks, floor(Nk_i / block)) are appended to into[i].
 */
export async function summarizeKeysVarlen(k: Tensor, batch: KeyBatch, opts?: PrefillOptions, run?: VarlenSummarizeKeysRunOptions): Promise<KeySummaries[]> {
  checkTensor(k, 'k');
  checkHeadDim(k.shape[3]);
  const t = resolveKeyBatch(batch, k);
  const o = summaryOptions(opts, k.shape[3]);
  const r = checkRun(run, ['into', 'maxKeys', 'stream']);
  const stream = checkStream(r.stream, k.device, 'run.stream');
  let into: unknown[] | null = null;
  if (r.into !== undefined) {
    if (!isArray(r.into)) throw new TypeError(`run.into must be an array of one KeySummaries (or null) per sequence, got ${typeName(r.into)}`);
    if (r.into.length !== t.batch) throw new RangeError(`run.into must have one entry per sequence (${t.batch}), got ${r.into.length}`);
    into = r.into;
  }
  const full = t.kLen.map((n) => Math.floor(n / o.block));
  const out: KeySummaries[] = [];
  const made: KeySummaries[] = [];
  const jobs: Array<{ rows: NativeTensor; energies: NativeTensor | null; from: number; to: number }> = [];
  const releases: Array<() => void> = [];
  try {
    for (let i = 0; i < t.batch; i++) {
      const given = into ? into[i] : null;
      let s: KeySummaries;
      if (given !== null && given !== undefined) {
        const name = `run.into[${i}]`;
        s = checkKeySummaries(given, name, keyGeometry(k, 1, Number.MAX_SAFE_INTEGER), o);
        if (s.blocks > full[i]) throw new RangeError(`${name} covers ${s.blocks} key blocks, more than the ${full[i]} full blocks of sequence ${i} (${t.kLen[i]} keys)`);
        if (full[i] > s.capacityBlocks) throw new RangeError(`sequence ${i} has ${full[i]} full key blocks; ${name} has room for ${s.capacityBlocks}`);
        if (out.includes(s)) throw new RangeError(`${name} is also given for an earlier sequence`);
        releases.push(s.beginWrite(name));
      } else {
        s = createSummaries(keyGeometry(k, 1, t.kLen[i]), k.native.device, o, capacityOf(r.maxKeys, 'run.maxKeys', o.block, full[i]));
        made.push(s);
      }
      out.push(s);
      jobs.push({ rows: s.parts.rows, energies: s.parts.energies, from: s.blocks, to: full[i] });
    }
    k.live();
    const ms = await whileGpuWorks(k.native.device, native().summarizeKeys(k.native, toNativeEstimateParams(o), jobs, nativeSpec(t), stream));
    out.forEach((s, i) => {
      s.setBlocks(full[i]);
      s.timesMs = [ms];
    });
    return out;
  } catch (e) {
    for (const s of made) s.dispose();
    throw e;
  } finally {
    for (const r of releases) r();
  }
}

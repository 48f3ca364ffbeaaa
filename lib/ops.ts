// The operations: block-mask estimation, (block-sparse) attention, prefill
// (both), and the quality measures. Shapes are checked here with clear
// messages before anything reaches the addon (which checks them again).
import { isArray, isMadeInstance, readField, show, typeName } from './args';
import { allocateSelection, BlockMask, densityOf, disposeSelection, type SelectionParts } from './block-mask';
import { native, NativeDType, type NativeSupport } from './native';
import {
  attentionOptionFields,
  checkHeadDim,
  checkOptionFields,
  integerIn,
  prefillOptionFields,
  resolveAttentionOptions,
  resolveEstimateOptions,
  toNativeEstimateParams,
} from './options';
import { keySummariesArg, type KeySummaries } from './key-summaries';
import { checkQkvShapes, checkStream, checkTensor, isNativeTensor, isTensor, sharesMemory, Tensor } from './tensor';
import type { AttentionOptions, EstimateOnlyOptions, EstimateOptions } from './types';
import { whileGpuWorks } from './wait-policy';

export { BlockMask };

/** Repeat an op to time it: `warmup` untimed runs, then `iters` timed ones. */
export interface Timing {
  warmup?: number;
  iters: number;
}

/** How to run an op: `timing` repeats it and records per-iteration milliseconds. */
export interface RunOptions {
  timing?: Timing;
  /**
   * A CUDA stream of the tensors' device (a cudaStream_t as a bigint, > 2n) to
   * enqueue the op's work on instead of the package's own stream: it runs
   * after the work already on that stream, and the promise resolves once it
   * has finished (docs/api.md, "Streams").
   */
  stream?: bigint;
}

/** Estimation and attention options together, as prefill() takes them. */
export type PrefillOptions = EstimateOptions & AttentionOptions;

export interface PrefillStats {
  /** Selected visible blocks / all visible blocks (causal). */
  density: number;
  estimateMs: number;
  attentionMs: number;
}

export const DENSE_BLOCK = 128; // any legal value: a dense list ignores it

export function checkSameDevice(...tensors: Array<{ device: string }>): void {
  for (const t of tensors) {
    if (t.device !== tensors[0].device) {
      throw new Error(`all tensors must be on the same device (got ${tensors[0].device} and ${t.device})`);
    }
  }
}

/** Q [b, Hq, Nq, d] against K [b, Hkv, Nk, d] (and V like K); `packed` as checkQkvShapes. */
function checkQkv(q: Tensor, k: Tensor, v?: Tensor, packed = false): void {
  checkQkvShapes(q, k, v, packed);
  if (v) checkSameDevice(q, k, v);
  else checkSameDevice(q, k);
  checkHeadDim(q.shape[3]);
}

/** q, k and, for the ops that take one, v are live tensors that fit together (checkQkv). */
export function checkInputs(inputs: { q: unknown; k: unknown; v?: unknown }, packed = false): void {
  const q = checkTensor(inputs.q, 'q');
  const k = checkTensor(inputs.k, 'k');
  const v = 'v' in inputs ? checkTensor(inputs.v, 'v') : undefined;
  checkQkv(q, k, v, packed);
}

const DTYPE_NAMES: Record<number, string> = { [NativeDType.F16]: 'float16', [NativeDType.BF16]: 'bfloat16', [NativeDType.F32]: 'float32' };

/** "a or b", "a, b or c". */
function orList(items: readonly (string | number)[]): string {
  return items.length <= 1 ? items.join('') : `${items.slice(0, -1).join(', ')} or ${items[items.length - 1]}`;
}

/** The addon's answers per (dtype, head_dim, block, device): a fixed table of the build. */
const supportAnswers = new Map<string, NativeSupport>();

/**
 * Whether the attention kernels of q's device take (dtype, head_dim, block):
 * the addon answers from the kernels' own table (today on CUDA: head_dim 64 or
 * 128, float16 or bfloat16, block 64, 128 or 256; the CPU takes any even
 * head_dim and any block size).
 */
export function checkAttentionSupport(q: Tensor, block: number): void {
  const d = q.shape[3];
  const key = `${q.native.dtype}:${d}:${block}:${deviceIndex(q)}`;
  let s = supportAnswers.get(key);
  if (s === undefined) {
    s = native().supports(q.native.dtype, d, block, deviceIndex(q));
    supportAnswers.set(key, s);
  }
  if (s.supported) return;
  switch (s.unsupported) {
    case 'headDim':
      throw new RangeError(`head_dim ${d} is not supported by CUDA attention (${orList(s.headDims)})`);
    case 'dtype':
      throw new TypeError(`CUDA attention needs ${orList(s.dtypes.map((t) => DTYPE_NAMES[t] ?? String(t)))} inputs, got ${q.dtype}`);
    default:
      throw new RangeError(
        `block ${block} is not supported by CUDA attention (${s.blocks.join(', ')}); estimate() takes any multiple of 16 in [16, 1024], and the CPU backend attends with any block in [16, 1024]`,
      );
  }
}

/** `timing` (named `name`): undefined, or { warmup?: 0..10000, iters: 1..100000 } (the addon's limits). */
export function checkTiming(timing: unknown, name = 'timing'): { warmup: number; iters: number } | undefined {
  if (timing === undefined) return undefined;
  if (timing === null || typeof timing !== 'object' || isArray(timing)) {
    throw new TypeError(`${name} must be an object { warmup?, iters }, got ${typeName(timing)}`);
  }
  const o = checkOptionFields(timing, ['warmup', 'iters'], name, name);
  const warmup = o.warmup === undefined ? 0 : integerIn(`${name}.warmup`, o.warmup, 0, 10000);
  return { warmup, iters: integerIn(`${name}.iters`, o.iters, 1, 100000) };
}


function deviceIndex(t: Tensor): number {
  return t.native.device;
}

/** Estimates the block mask and returns the per-iteration milliseconds with it. */
export async function timeEstimate(q: Tensor, k: Tensor, opts?: EstimateOnlyOptions, timing?: Timing): Promise<{ mask: BlockMask; timesMs: number[] }> {
  return timedEstimate(q, k, opts, timing);
}

/** timeEstimate with estimate()'s checked run options (positional: only estimate() calls it). */
async function timedEstimate(
  q: Tensor,
  k: Tensor,
  opts?: EstimateOnlyOptions,
  timing?: Timing,
  denseMask = false,
  stream?: bigint,
  keySummaries?: KeySummaries,
  appendKeySummaries?: boolean,
): Promise<{ mask: BlockMask; timesMs: number[] }> {
  checkInputs({ q, k });
  const o = resolveEstimateOptions(opts, q.shape[3]);
  const t = checkTiming(timing);
  const { keys, commit, hold } = keySummariesArg(keySummaries, k, o, appendKeySummaries);
  const shape = maskShape(q, k, o.block);
  const sel = allocateSelection(shape, deviceIndex(q), denseMask);
  let release = (): void => undefined;
  try {
    release = hold();
    const r = await whileGpuWorks(deviceIndex(q), native().estimate(q.live(), k.live(), toNativeEstimateParams(o), sel, t, stream, keys));
    commit();
    const mask = new BlockMask(shape, q.device, r.selected, { ...sel, indices: r.indices });
    mask.timesMs = r.timesMs;
    return { mask, timesMs: r.timesMs };
  } catch (e) {
    disposeSelection(sel);
    throw e;
  } finally {
    release();
  }
}

/** How to run estimate(): `timing` as RunOptions; `denseMask` also keeps the uint8 [b, H, nq, nk] mask on the device. */
export interface EstimateRunOptions extends RunOptions {
  denseMask?: boolean;
  /**
   * Summaries of k's first key blocks (summarizeKeys of the same keys, made
   * for this call's block, method, bands and RoPE layout): those blocks are
   * read from them instead of pooled from k. The selection is the same, bit for bit.
   */
  keySummaries?: KeySummaries;
  /**
   * With keySummaries: also write the full key blocks the estimation pools
   * from k into the summaries, which then hold every full block of k
   * (blocks = floor(Nk / block) once the call resolves; unchanged on failure).
   * The summaries need room for those blocks. Default false.
   */
  appendKeySummaries?: boolean;
}

/**
 * Prism block-mask estimation for queries q [b, Hq, Nq, d] and keys k [b, Hkv, Nk, d].
 * With run.timing the estimation is repeated and mask.timesMs holds the per-iteration ms.
 */
export async function estimate(q: Tensor, k: Tensor, opts?: EstimateOnlyOptions, run?: EstimateRunOptions): Promise<BlockMask> {
  const r = checkRun(run, ['timing', 'denseMask', 'stream', 'keySummaries', 'appendKeySummaries']);
  const stream = isTensor(q) ? checkStream(r.stream, q.device, 'run.stream') : undefined;
  const timing = checkTiming(r.timing, 'run.timing');
  const denseMask = optionalBoolean(r.denseMask, 'run.denseMask');
  return (await timedEstimate(q, k, opts, timing, denseMask, stream, r.keySummaries as KeySummaries | undefined, r.appendKeySummaries as boolean | undefined)).mask;
}

function maskShape(q: Tensor, k: Tensor, block: number) {
  return { batch: q.shape[0], heads: q.shape[1], queryLength: q.shape[2], keyLength: k.shape[2], block };
}

/** The run options `run` (undefined, null or an object of `allowed` fields), each field read once. */
export function checkRun(run: unknown, allowed: readonly string[]): Record<string, unknown> {
  if (run === undefined || run === null) return {};
  if (typeof run !== 'object' || isArray(run)) throw new TypeError(`run must be an object of run options, got ${typeName(run)}`);
  const o = checkOptionFields(run, allowed, 'run option', 'run');
  for (const key of Object.keys(o)) {
    if (!allowed.includes(key)) throw new TypeError(`unknown run option '${key}' (allowed: ${allowed.join(', ')})`);
  }
  return o;
}

/** True when `parts` holds the native tensors of a block mask (never throws). */
function hasNativeParts(parts: unknown): boolean {
  if (typeof parts !== 'object' || parts === null) return false;
  try {
    return ['counts', 'rowPtr', 'indices', 'temps'].every((key) => isNativeTensor(Object.getOwnPropertyDescriptor(parts, key)?.value));
  } catch {
    return false;
  }
}

/** A BlockMask made by estimate(), prefill() or blockMask(), not an object made from BlockMask.prototype. */
export function isBlockMask(x: unknown): x is BlockMask {
  return isMadeInstance(x, BlockMask, 'parts', hasNativeParts);
}

export function optionalBoolean(x: unknown, name: string): boolean {
  if (x === undefined) return false;
  if (typeof x !== 'boolean') throw new TypeError(`${name} must be a boolean, got ${typeName(x)}`);
  return x;
}

function checkMask(mask: unknown, q: Tensor, k: Tensor): asserts mask is BlockMask {
  if (!isBlockMask(mask)) throw new TypeError(`mask must be a BlockMask (from estimate, prefill or blockMask) or null, got ${typeName(mask)}`);
  if (mask.disposed) throw new Error('mask: block mask has been disposed');
  if (mask.batch !== q.shape[0] || mask.heads !== q.shape[1] || mask.queryLength !== q.shape[2] || mask.keyLength !== k.shape[2]) {
    throw new RangeError(
      `mask was estimated for batch ${mask.batch}, ${mask.heads} heads, ${mask.queryLength} queries, ` +
        `${mask.keyLength} keys; q/k are [${q.shape.join(', ')}] / [${k.shape.join(', ')}]`,
    );
  }
  checkSameDevice(q, mask);
}

/** How to run attention(): `timing` as RunOptions; `out` is written instead of a new output tensor. */
export interface AttentionRunOptions extends RunOptions {
  /** Caller-owned output: q's shape, dtype, layout and device. */
  out?: Tensor;
}

/** RangeError when `out` (named `outName`) shares memory with one of `others` ([name, tensor]); `why` ends the message. */
export function checkNoOverlap(out: Tensor, outName: string, others: Iterable<readonly [string, Tensor]>, why = 'the output must not overlap an input'): void {
  for (const [name, x] of others) {
    if (sharesMemory(out, x)) throw new RangeError(`${outName} shares memory with ${name}: ${why}`);
  }
}

/**
 * The output of an op on q: the caller's `out` (run.out, checked to match q
 * and to share no memory with the inputs, which the kernels read while they
 * write it), or a new tensor like q; `given` says which (a new one is
 * disposed on failure).
 */
export function outputFor(q: Tensor, out: unknown, inputs: Readonly<Record<string, Tensor>>): { output: Tensor; given: boolean } {
  if (out !== undefined) {
    const t = checkTensor(out, 'run.out');
    // A dtype mismatch is a TypeError, as between q, k and v; shape, layout or device a RangeError.
    if (t.dtype !== q.dtype) throw new TypeError(`run.out must match q's dtype: q is ${q.dtype}, run.out is ${t.dtype}`);
    if (t.shape.some((x, i) => x !== q.shape[i]) || t.layout !== q.layout || t.device !== q.device) {
      throw new RangeError(
        `run.out must match q: [${q.shape.join(', ')}] ${q.dtype} ${q.layout} on ${q.device}, got [${t.shape.join(', ')}] ${t.dtype} ${t.layout} on ${t.device}`,
      );
    }
    checkNoOverlap(t, 'run.out', Object.entries(inputs));
    return { output: t, given: true };
  }
  const handle = new (native().Tensor)(deviceIndex(q), q.native.dtype, [...q.shape], q.native.layout);
  return { output: new Tensor(handle, q.shape, q.dtype, q.layout), given: false };
}

/** float32 [b, Hq, Nq, 1]: one log-sum-exp per query row (for packed q, per token and head). */
export function newLse(q: Tensor): Tensor {
  const [b, h, n] = q.shape;
  const handle = new (native().Tensor)(deviceIndex(q), NativeDType.F32, [b, h, n, 1], 0);
  return new Tensor(handle, [b, h, n, 1], 'float32', 'bhnd');
}

/** Attention over the selected blocks and returns the per-iteration milliseconds with the output. */
export async function timeAttention(
  q: Tensor,
  k: Tensor,
  v: Tensor,
  mask?: BlockMask | null,
  opts?: AttentionOptions,
  timing?: Timing,
): Promise<{ output: Tensor; lse?: Tensor; timesMs: number[] }> {
  return timedAttention(q, k, v, mask, opts, timing);
}

/** timeAttention with attention()'s checked run options (positional: only attention() calls it). */
async function timedAttention(
  q: Tensor,
  k: Tensor,
  v: Tensor,
  mask?: BlockMask | null,
  opts?: AttentionOptions,
  timing?: Timing,
  out?: Tensor,
  stream?: bigint,
): Promise<{ output: Tensor; lse?: Tensor; timesMs: number[] }> {
  checkInputs({ q, k, v });
  if (mask !== undefined && mask !== null) checkMask(mask, q, k);
  checkAttentionSupport(q, mask ? mask.block : DENSE_BLOCK);
  const { softmaxScale, returnLse } = resolveAttentionOptions(opts);
  const t = checkTiming(timing);
  const { output, given } = outputFor(q, out, { q, k, v });
  const lse = returnLse ? newLse(q) : undefined;
  try {
    const params = { block: mask ? mask.block : DENSE_BLOCK, softmaxScale, ...(lse ? { lse: lse.live() } : {}) };
    const timesMs = await whileGpuWorks(
      deviceIndex(q),
      native().attention(q.live(), k.live(), v.live(), output.live(), mask ? mask.list() : null, params, t, stream),
    );
    output.timesMs = timesMs;
    return { output, lse, timesMs };
  } catch (e) {
    if (!given) output.dispose();
    lse?.dispose();
    throw e;
  }
}

/**
 * Causal attention over the blocks `mask` selects; no mask = dense. Output: q's
 * shape, dtype and layout (or run.out). With opts.returnLse it resolves to
 * { output, lse }. With run.timing the attention is repeated and
 * output.timesMs holds the per-iteration ms.
 */
export async function attention(
  q: Tensor,
  k: Tensor,
  v: Tensor,
  mask?: BlockMask | null,
  opts?: AttentionOptions & { returnLse?: false },
  run?: AttentionRunOptions,
): Promise<Tensor>;
export async function attention(
  q: Tensor,
  k: Tensor,
  v: Tensor,
  mask: BlockMask | null | undefined,
  opts: AttentionOptions & { returnLse: true },
  run?: AttentionRunOptions,
): Promise<{ output: Tensor; lse: Tensor }>;
/** returnLse not known at compile time (a boolean, or options typed AttentionOptions). */
export async function attention(
  q: Tensor,
  k: Tensor,
  v: Tensor,
  mask?: BlockMask | null,
  opts?: AttentionOptions,
  run?: AttentionRunOptions,
): Promise<Tensor | { output: Tensor; lse: Tensor }>;
export async function attention(
  q: Tensor,
  k: Tensor,
  v: Tensor,
  mask?: BlockMask | null,
  opts?: AttentionOptions,
  run?: AttentionRunOptions,
): Promise<Tensor | { output: Tensor; lse: Tensor }> {
  const r = checkRun(run, ['timing', 'out', 'stream']);
  const stream = isTensor(q) ? checkStream(r.stream, q.device, 'run.stream') : undefined;
  const res = await timedAttention(q, k, v, mask, opts, checkTiming(r.timing, 'run.timing'), r.out as Tensor | undefined, stream);
  return res.lse ? { output: res.output, lse: res.lse } : res.output;
}

export function splitPrefillOptions(opts: PrefillOptions | undefined): [EstimateOptions, AttentionOptions] {
  const o = checkOptionFields(opts, prefillOptionFields, 'prefill option');
  const est: Record<string, unknown> = {};
  const att: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(o)) {
    if (value === undefined) continue;
    if (attentionOptionFields.includes(key)) att[key] = value;
    else est[key] = value;
  }
  return [est as EstimateOptions, att as AttentionOptions];
}

/**
 * The run options of a prefill call (one tensor or a packed batch) checked,
 * and its estimation and attention options resolved for q's head dim.
 */
export function resolvePrefillRun(q: Tensor, estOpts: EstimateOptions, attOpts: AttentionOptions, run: unknown) {
  const r = checkRun(run, ['out', 'returnMask', 'denseMask', 'stream', 'keySummaries', 'appendKeySummaries']);
  const stream = checkStream(r.stream, q.device, 'run.stream');
  const returnMask = r.returnMask === undefined ? true : optionalBoolean(r.returnMask, 'run.returnMask');
  const denseMask = optionalBoolean(r.denseMask, 'run.denseMask');
  // The dense mask belongs to the returned selection: without one it would be silently dropped.
  if (denseMask && !returnMask) throw new TypeError('run.denseMask needs the selection returned: it cannot combine with run.returnMask: false');
  const eo = resolveEstimateOptions(estOpts, q.shape[3]);
  checkAttentionSupport(q, eo.block);
  const { softmaxScale, returnLse } = resolveAttentionOptions(attOpts);
  return { out: r.out, stream, returnMask, denseMask, eo, softmaxScale, returnLse, keySummaries: r.keySummaries, appendKeySummaries: r.appendKeySummaries };
}

/** How to run prefill(). */
export interface PrefillRunOptions {
  /** Caller-owned output: q's shape, dtype, layout and device. */
  out?: Tensor;
  /** Return the selection as a BlockMask (default true). false: no mask, no second wait. */
  returnMask?: boolean;
  /** With the mask, also keep the dense uint8 [b, H, nq, nk] mask on the device. */
  denseMask?: boolean;
  /** A CUDA stream to enqueue the work on (see RunOptions.stream). */
  stream?: bigint;
  /** Summaries of k's first key blocks, read instead of pooled (see EstimateRunOptions.keySummaries). */
  keySummaries?: KeySummaries;
  /** With keySummaries: the estimation writes the full key blocks it pools back into them (see EstimateRunOptions.appendKeySummaries). */
  appendKeySummaries?: boolean;
}

/** What prefill() resolves to. */
export interface PrefillResult {
  output: Tensor;
  /** The selection (null with run.returnMask false). */
  mask: BlockMask | null;
  /** Row log-sum-exp with opts.returnLse (see AttentionOptions). */
  lse?: Tensor;
  stats: PrefillStats;
}

/**
 * Estimation, then block-sparse attention over the selection, as one native
 * call: on a GPU both run back to back on the device stream with one wait at
 * the end; density and the two GPU times come back with it.
 */
export async function prefill(q: Tensor, k: Tensor, v: Tensor, opts?: PrefillOptions, run?: PrefillRunOptions): Promise<PrefillResult> {
  checkTensor(q, 'q');
  checkTensor(k, 'k');
  checkTensor(v, 'v');
  const [estOpts, attOpts] = splitPrefillOptions(opts);
  checkQkv(q, k, v);
  const { out, stream, returnMask, denseMask, eo, softmaxScale, returnLse, keySummaries, appendKeySummaries } = resolvePrefillRun(q, estOpts, attOpts, run);
  const { keys, commit, hold } = keySummariesArg(keySummaries, k, eo, appendKeySummaries);
  const { output, given } = outputFor(q, out, { q, k, v });
  const shape = maskShape(q, k, eo.block);
  const lse = returnLse ? newLse(q) : undefined;
  let sel: SelectionParts | null = null;
  let release = (): void => undefined;
  try {
    release = hold();
    sel = returnMask ? allocateSelection(shape, deviceIndex(q), denseMask) : null;
    const params = { block: eo.block, softmaxScale, ...(lse ? { lse: lse.live() } : {}) };
    const res = await whileGpuWorks(
      deviceIndex(q),
      native().prefill(q.live(), k.live(), v.live(), output.live(), toNativeEstimateParams(eo), params, sel, stream, keys),
    );
    commit();
    const mask = sel && res.indices ? new BlockMask(shape, q.device, res.selected, { ...sel, indices: res.indices }) : null;
    const stats = { density: densityOf(shape, res.selected), estimateMs: res.estimateMs, attentionMs: res.attentionMs };
    return lse ? { output, mask, lse, stats } : { output, mask, stats };
  } catch (e) {
    if (!given) output.dispose();
    lse?.dispose();
    disposeSelection(sel);
    throw e;
  } finally {
    release();
  }
}

/** massRecall samples rows: 2^24 of them (each an exact softmax row) is far past any use, and bounds the host arrays. */
const MAX_ROW_VALUES = 3 * 2 ** 24;

/** [[b, h, r], ...] or a flat [b, h, r, b, h, r, ...] list -> BigInt64Array, range-checked. */
function flattenRows(rows: unknown, limits: readonly number[]): BigInt64Array {
  const what = 'rows must be a non-empty array of [batch, head, row] (or a flat list of such triples)';
  if (rows === null || typeof rows !== 'object') throw new TypeError(`${what}, got ${typeName(rows)}`);
  const length = readField(rows, 'length', 'rows.length');
  if (typeof length !== 'number' || !Number.isSafeInteger(length) || length < 1) {
    throw new TypeError(`${what}, got ${typeName(rows)} of length ${show(length)}`);
  }
  const at = (list: object, i: number, name: string): unknown => readField(list, String(i), name);
  const triples = isArray(at(rows, 0, 'rows[0]'));
  // Read into one typed array, each value checked as it is read: a JS array
  // of ~10^8 numbers (or a length no array holds) aborts the process.
  const count = triples ? 3 * length : length;
  if (count > MAX_ROW_VALUES) {
    throw new RangeError(`rows: at most ${MAX_ROW_VALUES / 3} rows, got ${triples ? length : `${length} values`}`);
  }
  const values = new Float64Array(count);
  const where = (i: number): string => (triples ? `rows[${Math.floor(i / 3)}]` : `rows[${i}]`);
  const field = (i: number): string => ['batch', 'head', 'row'][i % 3];
  const take = (x: unknown, i: number): void => {
    if (typeof x !== 'number') throw new TypeError(`${where(i)}: ${field(i)} must be a number, got ${typeName(x)}`);
    values[i] = x;
  };
  for (let i = 0; i < length; i++) {
    const row = at(rows, i, `rows[${i}]`);
    if (!triples) {
      take(row, i);
      continue;
    }
    if (!isArray(row) || readField(row, 'length', `rows[${i}].length`) !== 3) {
      throw new TypeError(`rows[${i}] must be [batch, head, row], got ${typeName(row)}`);
    }
    for (let j = 0; j < 3; j++) take(at(row, j, `rows[${i}][${j}]`), 3 * i + j);
  }
  if (count % 3 !== 0) {
    throw new RangeError(`a flat rows list must hold (batch, head, row) triples, got ${count} values`);
  }
  const flat = new BigInt64Array(count);
  for (let i = 0; i < count; i++) {
    const x = values[i];
    const limit = limits[i % 3];
    if (!Number.isInteger(x) || x < 0 || x >= limit) {
      throw new RangeError(`${where(i)}: ${field(i)} must be an integer in [0, ${limit - 1}], got ${x}`);
    }
    flat[i] = BigInt(x);
  }
  return flat;
}

/**
 * Exact attention-mass recall of the selection for sampled query rows
 * (batch, query head, row): the softmax mass of the full causal row inside the
 * selected blocks. mask null = dense (1.0).
 */
export async function massRecall(
  q: Tensor,
  k: Tensor,
  mask: BlockMask | null,
  rows: ReadonlyArray<readonly [number, number, number]> | ArrayLike<number>,
  opts?: AttentionOptions,
): Promise<Float32Array> {
  checkInputs({ q, k });
  if (mask !== null) checkMask(mask, q, k);
  const { softmaxScale } = resolveAttentionOptions(opts);
  const flat = flattenRows(rows, [q.shape[0], q.shape[1], q.shape[2]]);
  return native().massRecall(q.live(), k.live(), mask ? mask.list() : null, { block: mask ? mask.block : DENSE_BLOCK, softmaxScale }, flat);
}

/**
 * [sum of (a - b)^2, sum of b^2] over two tensors of the same logical shape
 * (any layouts, dtypes), computed where they live. Internal: relativeError,
 * and the benchmark's sums over many parts.
 */
export async function differenceNorms(a: Tensor, b: Tensor): Promise<[number, number]> {
  checkTensor(a, 'a');
  checkTensor(b, 'b');
  if (a.shape.some((x, i) => x !== b.shape[i])) {
    throw new RangeError(`shapes differ: [${a.shape.join(', ')}] vs [${b.shape.join(', ')}]`);
  }
  checkSameDevice(a, b);
  const [diff, ref] = await native().diffNorms(a.live(), b.live());
  return [diff, ref];
}

/** ||a - b|| / ||b|| over two tensors of the same logical shape (any layouts, dtypes). */
export async function relativeError(a: Tensor, b: Tensor): Promise<number> {
  const [diff, ref] = await differenceNorms(a, b);
  if (ref === 0) return diff === 0 ? 0 : Infinity;
  return Math.sqrt(diff / ref);
}

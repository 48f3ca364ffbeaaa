// The operations: block-mask estimation, (block-sparse) attention, prefill
// (both), and the quality measures. Shapes are checked here with clear
// messages before anything reaches the addon (which checks them again).
import { native, NativeDType, NativeTensor } from './native';
import {
  attentionOptionFields,
  checkHeadDim,
  estimateOptionFields,
  resolveAttentionOptions,
  resolveEstimateOptions,
  toNativeEstimateParams,
} from './options';
import { checkStream, Tensor } from './tensor';
import type { AttentionOptions, EstimateOptions, HostBlockMask } from './types';

/** Repeat an op to time it: `warmup` untimed runs, then `iters` timed ones. */
export interface Timing {
  warmup?: number;
  iters: number;
}

/** How to run an op. */
export interface RunOptions {
  /** Repeat the op and record per-iteration milliseconds. */
  timing?: Timing;
  /**
   * A CUDA stream of the tensors' device (a cudaStream_t as a bigint, > 2n) to
   * enqueue the op's work on instead of the package's own stream: it runs
   * after the work already on that stream, and the promise resolves once it
   * has completed. See docs/api.md for the ordering contract.
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

const DENSE_BLOCK = 128; // any legal value: a dense list ignores it

function numBlocks(n: number, block: number): number {
  return Math.ceil(n / block);
}

/** Number of key blocks visible to query block i (j <= i + nk - nq). */
function visibleBlocks(i: number, nq: number, nk: number): number {
  return Math.min(i + (nk - nq) + 1, nk);
}

/** Selected key blocks per (batch, query head, query block), kept on the tensors' device. */
export class BlockMask {
  readonly batch: number;
  readonly heads: number;
  /** Query and key blocks. */
  readonly nq: number;
  readonly nk: number;
  readonly block: number;
  /** Query and key lengths in tokens. */
  readonly queryLength: number;
  readonly keyLength: number;
  readonly device: string;
  /** Milliseconds per timed run of the estimate() that produced this mask ([ms] of the single run by default). */
  timesMs: number[] = [];
  /** @internal native tensors: mask u8, counts i32, indices i32, temps f32 */
  readonly parts: { mask: NativeTensor; counts: NativeTensor; indices: NativeTensor; temps: NativeTensor };

  /** @internal created by estimate() */
  constructor(q: Tensor, k: Tensor, block: number, parts: BlockMask['parts']) {
    this.batch = q.shape[0];
    this.heads = q.shape[1];
    this.queryLength = q.shape[2];
    this.keyLength = k.shape[2];
    this.block = block;
    this.nq = numBlocks(this.queryLength, block);
    this.nk = numBlocks(this.keyLength, block);
    this.device = q.device;
    this.parts = parts;
  }

  get disposed(): boolean {
    return this.parts.mask.disposed;
  }

  /** @internal */
  live(): BlockMask['parts'] {
    if (this.disposed) throw new Error('block mask has been disposed');
    return this.parts;
  }

  /** Copies mask, counts, indices and temperatures to the host. */
  async toHost(): Promise<HostBlockMask> {
    const p = this.live();
    const [mask, counts, indices, temps] = await Promise.all([
      p.mask.toHost(),
      p.counts.toHost(),
      p.indices.toHost(),
      p.temps.toHost(),
    ]);
    return {
      batch: this.batch,
      heads: this.heads,
      nq: this.nq,
      nk: this.nk,
      block: this.block,
      mask: new Uint8Array(mask),
      counts: new Int32Array(counts),
      indices: new Int32Array(indices),
      temperatures: new Float32Array(temps),
    };
  }

  /** Selected visible blocks / all visible blocks, over every batch, head and row (causal). */
  async density(): Promise<number> {
    const counts = new Int32Array(await this.live().counts.toHost());
    let visible = 0;
    for (let i = 0; i < this.nq; i++) visible += visibleBlocks(i, this.nq, this.nk);
    let selected = 0;
    for (const c of counts) selected += c;
    return selected / (visible * this.batch * this.heads);
  }

  /** Frees the device memory now (idempotent). */
  dispose(): void {
    for (const t of Object.values(this.parts)) t.dispose();
  }
}

function checkTensor(t: unknown, name: string): Tensor {
  if (!(t instanceof Tensor)) throw new TypeError(`${name} must be a Tensor`);
  if (t.disposed) throw new Error(`${name}: tensor has been disposed`);
  return t;
}

function checkSameDevice(...tensors: Array<{ device: string }>): void {
  for (const t of tensors) {
    if (t.device !== tensors[0].device) {
      throw new Error(`all tensors must be on the same device (got ${tensors[0].device} and ${t.device})`);
    }
  }
}

/** Q [b, Hq, Nq, d] against K [b, Hkv, Nk, d] (and V like K). */
function checkQkv(q: Tensor, k: Tensor, v?: Tensor): void {
  const [bq, hq, nq, dq] = q.shape;
  const [bk, hk, nk, dk] = k.shape;
  if (bq !== bk) throw new RangeError(`batch sizes differ: q has ${bq}, k has ${bk}`);
  if (dq !== dk) throw new RangeError(`head_dim differs: q has ${dq}, k has ${dk}`);
  if (hq % hk !== 0) throw new RangeError(`query heads (${hq}) must be a multiple of kv heads (${hk})`);
  if (nq > nk) throw new RangeError(`query length (${nq}) must not exceed key length (${nk})`);
  if (q.dtype !== k.dtype) throw new TypeError(`dtypes differ: q is ${q.dtype}, k is ${k.dtype}`);
  if (v) {
    if (v.shape.some((x, i) => x !== k.shape[i])) {
      throw new RangeError(`k and v must have the same shape: k is [${k.shape.join(', ')}], v is [${v.shape.join(', ')}]`);
    }
    if (v.dtype !== q.dtype) throw new TypeError(`dtypes differ: q is ${q.dtype}, v is ${v.dtype}`);
    checkSameDevice(q, k, v);
  } else {
    checkSameDevice(q, k);
  }
  checkHeadDim(dq);
}

/** Block sizes the CUDA attention kernels take: whole 64-key tiles per block. */
export const CUDA_ATTENTION_BLOCKS: readonly number[] = [64, 128, 256];

/**
 * CUDA attention kernels: head_dim 64 or 128, float16 or bfloat16, block 64,
 * 128 or 256. The CPU takes any even head_dim and any block size.
 */
function checkAttentionSupport(q: Tensor, block: number): void {
  if (q.device === 'cpu') return;
  const d = q.shape[3];
  if (d !== 64 && d !== 128) throw new RangeError(`head_dim ${d} is not supported by CUDA attention (64 or 128)`);
  if (q.dtype === 'float32') throw new TypeError('CUDA attention needs float16 or bfloat16 inputs, got float32');
  if (!CUDA_ATTENTION_BLOCKS.includes(block)) {
    throw new RangeError(
      `block ${block} is not supported by CUDA attention (${CUDA_ATTENTION_BLOCKS.join(', ')}); estimate() takes any block size, and the CPU backend attends with any`,
    );
  }
}

function checkRun(run: unknown): RunOptions {
  if (run === undefined) return {};
  if (run === null || typeof run !== 'object') throw new TypeError('run options must be an object');
  return run as RunOptions;
}

function checkTiming(timing: Timing | undefined): { warmup: number; iters: number } | undefined {
  if (timing === undefined) return undefined;
  const warmup = timing.warmup ?? 0;
  if (!Number.isInteger(warmup) || warmup < 0) throw new RangeError(`timing.warmup must be an integer >= 0, got ${warmup}`);
  if (!Number.isInteger(timing.iters) || timing.iters < 1) {
    throw new RangeError(`timing.iters must be an integer >= 1, got ${timing.iters}`);
  }
  return { warmup, iters: timing.iters };
}

function deviceIndex(t: Tensor): number {
  return t.native.device;
}

/** Estimates the block mask and returns the per-iteration milliseconds with it. */
export async function timeEstimate(
  q: Tensor,
  k: Tensor,
  opts?: EstimateOptions,
  timing?: Timing,
): Promise<{ mask: BlockMask; timesMs: number[] }> {
  return runEstimate(q, k, opts, { timing });
}

async function runEstimate(
  q: Tensor,
  k: Tensor,
  opts: EstimateOptions | undefined,
  run: RunOptions,
): Promise<{ mask: BlockMask; timesMs: number[] }> {
  checkTensor(q, 'q');
  checkTensor(k, 'k');
  checkQkv(q, k);
  const o = resolveEstimateOptions(opts, q.shape[3]);
  const t = checkTiming(run.timing);
  const stream = checkStream(run.stream, q.device, 'run.stream');
  const [b, hq, nTokQ] = q.shape;
  const nq = numBlocks(nTokQ, o.block);
  const nk = numBlocks(k.shape[2], o.block);
  const N = native();
  const dev = deviceIndex(q);
  const parts = {
    mask: new N.Tensor(dev, NativeDType.U8, [b, hq, nq, nk], 0),
    counts: new N.Tensor(dev, NativeDType.I32, [b, hq, nq], 0),
    indices: new N.Tensor(dev, NativeDType.I32, [b, hq, nq, nk], 0),
    temps: new N.Tensor(dev, NativeDType.F32, [b, hq, 2], 0),
  };
  const mask = new BlockMask(q, k, o.block, parts);
  try {
    const timesMs = await N.estimate(q.live(), k.live(), toNativeEstimateParams(o), parts, t, stream);
    mask.timesMs = timesMs;
    return { mask, timesMs };
  } catch (e) {
    mask.dispose();
    throw e;
  }
}

/**
 * Prism block-mask estimation for queries q [b, Hq, Nq, d] and keys k [b, Hkv, Nk, d].
 * With run.timing the estimation is repeated and mask.timesMs holds the per-iteration ms;
 * with run.stream it runs on that CUDA stream.
 */
export async function estimate(q: Tensor, k: Tensor, opts?: EstimateOptions, run?: RunOptions): Promise<BlockMask> {
  return (await runEstimate(q, k, opts, checkRun(run))).mask;
}

function checkMask(mask: BlockMask, q: Tensor, k: Tensor): void {
  if (!(mask instanceof BlockMask)) throw new TypeError('mask must be a BlockMask (from estimate) or null');
  if (mask.disposed) throw new Error('mask: block mask has been disposed');
  if (mask.batch !== q.shape[0] || mask.heads !== q.shape[1] || mask.queryLength !== q.shape[2] || mask.keyLength !== k.shape[2]) {
    throw new RangeError(
      `mask was estimated for batch ${mask.batch}, ${mask.heads} heads, ${mask.queryLength} queries, ` +
        `${mask.keyLength} keys; q/k are [${q.shape.join(', ')}] / [${k.shape.join(', ')}]`,
    );
  }
  checkSameDevice(q, mask);
}

/** Attention over the selected blocks and returns the per-iteration milliseconds with the output. */
export async function timeAttention(
  q: Tensor,
  k: Tensor,
  v: Tensor,
  mask?: BlockMask | null,
  opts?: AttentionOptions,
  timing?: Timing,
): Promise<{ output: Tensor; timesMs: number[] }> {
  return runAttention(q, k, v, mask, opts, { timing });
}

async function runAttention(
  q: Tensor,
  k: Tensor,
  v: Tensor,
  mask: BlockMask | null | undefined,
  opts: AttentionOptions | undefined,
  run: RunOptions,
): Promise<{ output: Tensor; timesMs: number[] }> {
  checkTensor(q, 'q');
  checkTensor(k, 'k');
  checkTensor(v, 'v');
  checkQkv(q, k, v);
  if (mask !== undefined && mask !== null) checkMask(mask, q, k);
  checkAttentionSupport(q, mask ? mask.block : DENSE_BLOCK);
  const { softmaxScale } = resolveAttentionOptions(opts);
  const t = checkTiming(run.timing);
  const stream = checkStream(run.stream, q.device, 'run.stream');
  const N = native();
  const handle = new N.Tensor(deviceIndex(q), q.native.dtype, [...q.shape], q.native.layout);
  const output = new Tensor(handle, q.shape, q.dtype, q.layout);
  const parts = mask ? mask.live() : null;
  try {
    const timesMs = await N.attention(
      q.live(),
      k.live(),
      v.live(),
      handle,
      parts ? parts.counts : null,
      parts ? parts.indices : null,
      { block: mask ? mask.block : DENSE_BLOCK, softmaxScale },
      t,
      stream,
    );
    output.timesMs = timesMs;
    return { output, timesMs };
  } catch (e) {
    output.dispose();
    throw e;
  }
}

/**
 * Causal attention over the blocks `mask` selects; no mask = dense. Output: q's
 * shape, dtype and layout. With run.timing the attention is repeated and
 * output.timesMs holds the per-iteration ms; with run.stream it runs on that
 * CUDA stream.
 */
export async function attention(
  q: Tensor,
  k: Tensor,
  v: Tensor,
  mask?: BlockMask | null,
  opts?: AttentionOptions,
  run?: RunOptions,
): Promise<Tensor> {
  return (await runAttention(q, k, v, mask, opts, checkRun(run))).output;
}

function splitPrefillOptions(opts: PrefillOptions | undefined): [EstimateOptions, AttentionOptions] {
  if (opts === undefined || opts === null) return [{}, {}];
  if (typeof opts !== 'object') throw new TypeError('prefill options must be an object');
  const est: Record<string, unknown> = {};
  const att: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(opts)) {
    if (attentionOptionFields.includes(key)) att[key] = value;
    else if (estimateOptionFields.includes(key)) est[key] = value;
    else throw new TypeError(`unknown prefill option field '${key}'`);
  }
  return [est as EstimateOptions, att as AttentionOptions];
}

/** Estimate, then block-sparse attention over the selection (both on run.stream when given). */
export async function prefill(
  q: Tensor,
  k: Tensor,
  v: Tensor,
  opts?: PrefillOptions,
  run?: Pick<RunOptions, 'stream'>,
): Promise<{ output: Tensor; mask: BlockMask; stats: PrefillStats }> {
  const [estOpts, attOpts] = splitPrefillOptions(opts);
  checkTensor(v, 'v');
  checkQkv(q, k, v);
  // fail before any work
  checkAttentionSupport(q, resolveEstimateOptions(estOpts, q.shape[3]).block);
  resolveAttentionOptions(attOpts);
  const stream = checkStream(checkRun(run).stream, q.device, 'run.stream');
  const est = await runEstimate(q, k, estOpts, { stream });
  try {
    const att = await runAttention(q, k, v, est.mask, attOpts, { stream });
    const density = await est.mask.density();
    return {
      output: att.output,
      mask: est.mask,
      stats: { density, estimateMs: est.timesMs[0], attentionMs: att.timesMs[0] },
    };
  } catch (e) {
    est.mask.dispose();
    throw e;
  }
}

/** [[b, h, r], ...] or a flat [b, h, r, b, h, r, ...] list -> BigInt64Array, range-checked. */
function flattenRows(
  rows: ReadonlyArray<readonly [number, number, number]> | ArrayLike<number>,
  limits: readonly number[],
): BigInt64Array {
  if (rows === null || typeof rows !== 'object' || typeof rows.length !== 'number' || rows.length === 0) {
    throw new TypeError('rows must be a non-empty array of [batch, head, row] (or a flat list of such triples)');
  }
  const triples = Array.isArray(rows[0]);
  const values: unknown[] = triples
    ? (rows as ReadonlyArray<unknown>).flatMap((row, i) => {
        if (!Array.isArray(row) || row.length !== 3) throw new TypeError(`rows[${i}] must be [batch, head, row]`);
        return row;
      })
    : Array.from(rows as ArrayLike<number>);
  if (values.length % 3 !== 0) throw new RangeError('a flat rows list must hold (batch, head, row) triples');
  const flat = new BigInt64Array(values.length);
  values.forEach((x, i) => {
    const limit = limits[i % 3];
    if (typeof x !== 'number' || !Number.isInteger(x) || x < 0 || x >= limit) {
      throw new RangeError(`row ${Math.floor(i / 3)}: ${['batch', 'head', 'row'][i % 3]} must be an integer in [0, ${limit - 1}], got ${String(x)}`);
    }
    flat[i] = BigInt(x);
  });
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
  checkTensor(q, 'q');
  checkTensor(k, 'k');
  checkQkv(q, k);
  if (mask !== null) checkMask(mask, q, k);
  const { softmaxScale } = resolveAttentionOptions(opts);
  const flat = flattenRows(rows, [q.shape[0], q.shape[1], q.shape[2]]);
  const parts = mask ? mask.live() : null;
  return native().massRecall(
    q.live(),
    k.live(),
    parts ? parts.counts : null,
    parts ? parts.indices : null,
    { block: mask ? mask.block : DENSE_BLOCK, softmaxScale },
    flat,
  );
}

/** ||a - b|| / ||b|| over two tensors of the same logical shape (any layouts, dtypes). */
export async function relativeError(a: Tensor, b: Tensor): Promise<number> {
  checkTensor(a, 'a');
  checkTensor(b, 'b');
  if (a.shape.some((x, i) => x !== b.shape[i])) {
    throw new RangeError(`shapes differ: [${a.shape.join(', ')}] vs [${b.shape.join(', ')}]`);
  }
  checkSameDevice(a, b);
  const [diff, ref] = await native().diffNorms(a.live(), b.live());
  if (ref === 0) return diff === 0 ? 0 : Infinity;
  return Math.sqrt(diff / ref);
}

// Ragged batches and paged KV caches (docs/api.md, "Ragged batches and paged
// KV"): queries packed as [1, Hq, totalQ, d] with cumulative sequence lengths,
// keys and values packed likewise or held in a paged cache. Every sequence is
// estimated and attended on its own geometry (blocks restart at each sequence
// start); the selection comes back as one BlockMask per sequence.
import { isArray, typeName } from './args';
import { allocateSelections, BlockMask, disposeSelection, type BlockMaskShape } from './block-mask';
import { blockGrid, visibleBlocks } from './grid';
import { native, type NativeBlockList, type NativeSelectionOut } from './native';
import {
  checkAttentionSupport,
  checkInputs,
  checkRun,
  checkSameDevice,
  DENSE_BLOCK,
  isBlockMask,
  newLse,
  optionalBoolean,
  outputFor,
  resolvePrefillRun,
  splitPrefillOptions,
  type PrefillOptions,
  type PrefillStats,
} from './ops';
import { keySummariesListArg, type KeySummaries } from './key-summaries';
import { resolveAttentionOptions, resolveEstimateOptions, toNativeEstimateParams } from './options';
import { nativeSpec, resolveBatch, type SequenceTable, type VarlenBatch } from './paged';
import { checkStream, type Tensor } from './tensor';
import { whileGpuWorks } from './wait-policy';
import type { AttentionOptions, EstimateOnlyOptions } from './types';

export type { IntList, KeyBatch, KvLayout, PagedBatch, RaggedBatch, SequenceTable, VarlenBatch } from './paged';
export { PAGE_SIZES, resolveBatch } from './paged';

/** One entry per sequence: its BlockMask ([1, Hq, Nq_i, Nk_i] geometry), null for a sequence without queries. */
export type SequenceMasks = Array<BlockMask | null>;

/** The batch's table; paged pools must share one layout. */
function table(batch: unknown, q: Tensor, k: Tensor, v?: Tensor): SequenceTable {
  const t = resolveBatch(batch, q, k);
  if (t.paged && v !== undefined && v.layout !== k.layout) {
    throw new RangeError(`the k and v page pools must share one layout (page layout ${t.paged.layout}): k is '${k.layout}', v is '${v.layout}'`);
  }
  return t;
}

function seqShape(q: Tensor, t: SequenceTable, i: number, block: number): BlockMaskShape {
  return { batch: 1, heads: q.shape[1], queryLength: t.qLen[i], keyLength: t.kLen[i], block };
}

type Selections = ReturnType<typeof allocateSelectionsOf>;

/** Every sequence's selection tensors, views into one allocation per kind (see allocateSelections). */
function allocateSelectionsOf(q: Tensor, t: SequenceTable, block: number, denseMask: boolean) {
  const shapes = Array.from({ length: t.batch }, (_, i) => (t.qLen[i] > 0 ? seqShape(q, t, i, block) : null));
  return allocateSelections(shapes, q.native.device, denseMask);
}

function disposeSelections(sels: Selections): void {
  sels.forEach(disposeSelection);
}

function masksOf(q: Tensor, t: SequenceTable, block: number, sels: Selections, r: { selected: number[]; indices: Array<unknown> }): SequenceMasks {
  return sels.map((s, i) => {
    const indices = r.indices[i];
    if (!s || !indices) return null;
    return new BlockMask(seqShape(q, t, i, block), q.device, r.selected[i], { ...s, indices: indices as NativeSelectionOut['counts'] });
  });
}

/** Selected visible blocks / all visible blocks over every sequence and head. */
function batchDensity(q: Tensor, t: SequenceTable, block: number, selected: number[]): number {
  let visible = 0;
  let chosen = 0;
  for (let i = 0; i < t.batch; i++) {
    if (t.qLen[i] === 0) continue;
    const { nq, nk } = blockGrid(t.qLen[i], t.kLen[i], block);
    for (let r = 0; r < nq; r++) visible += visibleBlocks(r, nq, nk) * q.shape[1];
    chosen += selected[i];
  }
  return visible === 0 ? 0 : chosen / visible;
}

/** How to run estimateVarlen(). */
export interface VarlenEstimateRunOptions {
  /** Also keep each sequence's dense uint8 [1, Hq, nq, nk] mask on the device. */
  denseMask?: boolean;
  /** A CUDA stream to enqueue the work on (see RunOptions.stream). */
  stream?: bigint;
  /** One entry per sequence: summaries of its first key blocks (read instead of pooled), or null. */
  keySummaries?: ReadonlyArray<KeySummaries | null>;
  /**
   * With keySummaries: each estimated sequence's summaries also get the full
   * key blocks its estimation pools, so they hold every full block of its keys
   * once the call resolves (null entries and sequences without queries are
   * left as they are). Each needs room for them; none given twice. Default false.
   */
  appendKeySummaries?: boolean;
}

/**
 * Prism estimation of a ragged batch: q packed [1, Hq, totalQ, d], k packed
 * [1, Hkv, totalK, d] with batch.cuSeqlensK, or a page pool with a page table
 * (PagedBatch). Resolves to one BlockMask per sequence (null where Nq_i = 0).
 */
export async function estimateVarlen(q: Tensor, k: Tensor, batch: VarlenBatch, opts?: EstimateOnlyOptions, run?: VarlenEstimateRunOptions): Promise<SequenceMasks> {
  checkInputs({ q, k }, true);
  const t = table(batch, q, k);
  const r = checkRun(run, ['denseMask', 'stream', 'keySummaries', 'appendKeySummaries']);
  const stream = checkStream(r.stream, q.device, 'run.stream');
  const o = resolveEstimateOptions(opts, q.shape[3]);
  const { keys, commit, hold } = keySummariesListArg(r.keySummaries, k, t, o, r.appendKeySummaries);
  const sels = allocateSelectionsOf(q, t, o.block, optionalBoolean(r.denseMask, 'run.denseMask'));
  let release = (): void => undefined;
  try {
    release = hold();
    const res = await whileGpuWorks(q.native.device, native().varlen(q.live(), k.live(), null, null, nativeSpec(t), toNativeEstimateParams(o), null, sels, null, stream, keys));
    commit();
    const masks = masksOf(q, t, o.block, sels, res);
    const ms = [res.estimateMs];
    for (const m of masks) if (m) m.timesMs = ms;
    return masks;
  } catch (e) {
    disposeSelections(sels);
    throw e;
  } finally {
    release();
  }
}

/** How to run attentionVarlen(). */
export interface VarlenAttentionRunOptions {
  /** Caller-owned output: q's shape, dtype, layout and device. */
  out?: Tensor;
  /** A CUDA stream to enqueue the work on (see RunOptions.stream). */
  stream?: bigint;
}

/** masks: undefined / null (all dense) or one BlockMask | null per sequence, all of one block size. */
function checkMasks(masks: unknown, q: Tensor, t: SequenceTable): { lists: Array<NativeBlockList | null> | null; block: number } {
  if (masks === undefined || masks === null) return { lists: null, block: DENSE_BLOCK };
  if (!isArray(masks)) throw new TypeError(`masks must be an array of one BlockMask (or null: dense) per sequence, got ${typeName(masks)}`);
  if (masks.length !== t.batch) throw new RangeError(`masks must have one entry per sequence (${t.batch}), got ${masks.length}`);
  let block = 0;
  masks.forEach((m: unknown, i) => {
    if (m === null || m === undefined) return;
    if (!isBlockMask(m)) throw new TypeError(`masks[${i}] must be a BlockMask or null, got ${typeName(m)}`);
    if (m.disposed) throw new Error(`masks[${i}]: block mask has been disposed`);
    if (t.qLen[i] === 0) throw new RangeError(`masks[${i}] must be null: sequence ${i} has no queries`);
    if (m.batch !== 1 || m.heads !== q.shape[1] || m.queryLength !== t.qLen[i] || m.keyLength !== t.kLen[i]) {
      throw new RangeError(
        `masks[${i}] was estimated for batch ${m.batch}, ${m.heads} heads, ${m.queryLength} queries, ${m.keyLength} keys; ` +
          `sequence ${i} has batch 1, ${q.shape[1]} heads, ${t.qLen[i]} queries, ${t.kLen[i]} keys`,
      );
    }
    if (block !== 0 && m.block !== block) throw new RangeError(`masks must share one block size: masks[${i}] has ${m.block}, an earlier one ${block}`);
    block = m.block;
    checkSameDevice(q, m);
  });
  const lists = (masks as Array<BlockMask | null | undefined>).map((m) => (m ? m.list() : null));
  return { lists, block: block || DENSE_BLOCK };
}

/**
 * Causal attention of a ragged batch over each sequence's selected blocks
 * (masks[i]; null or no masks: dense). Output packed like q; with
 * opts.returnLse also lse float32 [1, Hq, totalQ, 1].
 */
export async function attentionVarlen(
  q: Tensor,
  k: Tensor,
  v: Tensor,
  batch: VarlenBatch,
  masks?: ReadonlyArray<BlockMask | null> | null,
  opts?: AttentionOptions & { returnLse?: false },
  run?: VarlenAttentionRunOptions,
): Promise<Tensor>;
export async function attentionVarlen(
  q: Tensor,
  k: Tensor,
  v: Tensor,
  batch: VarlenBatch,
  masks: ReadonlyArray<BlockMask | null> | null | undefined,
  opts: AttentionOptions & { returnLse: true },
  run?: VarlenAttentionRunOptions,
): Promise<{ output: Tensor; lse: Tensor }>;
/** returnLse not known at compile time (a boolean, or options typed AttentionOptions). */
export async function attentionVarlen(
  q: Tensor,
  k: Tensor,
  v: Tensor,
  batch: VarlenBatch,
  masks?: ReadonlyArray<BlockMask | null> | null,
  opts?: AttentionOptions,
  run?: VarlenAttentionRunOptions,
): Promise<Tensor | { output: Tensor; lse: Tensor }>;
export async function attentionVarlen(
  q: Tensor,
  k: Tensor,
  v: Tensor,
  batch: VarlenBatch,
  masks?: ReadonlyArray<BlockMask | null> | null,
  opts?: AttentionOptions,
  run?: VarlenAttentionRunOptions,
): Promise<Tensor | { output: Tensor; lse: Tensor }> {
  checkInputs({ q, k, v }, true);
  const t = table(batch, q, k, v);
  const { lists, block } = checkMasks(masks, q, t);
  checkAttentionSupport(q, block);
  const { softmaxScale, returnLse } = resolveAttentionOptions(opts);
  const r = checkRun(run, ['out', 'stream']);
  const stream = checkStream(r.stream, q.device, 'run.stream');
  const { output, given } = outputFor(q, r.out, { q, k, v });
  const lse = returnLse ? newLse(q) : undefined;
  try {
    const params = { block, softmaxScale, ...(lse ? { lse: lse.live() } : {}) };
    const res = await whileGpuWorks(q.native.device, native().varlen(q.live(), k.live(), v.live(), output.live(), nativeSpec(t), null, params, null, lists, stream));
    output.timesMs = [res.attentionMs];
    return lse ? { output, lse } : output;
  } catch (e) {
    if (!given) output.dispose();
    lse?.dispose();
    throw e;
  }
}

/** How to run prefillVarlen(). */
export interface VarlenPrefillRunOptions {
  /** Caller-owned output: q's shape, dtype, layout and device. */
  out?: Tensor;
  /** Return the selections (default true). false: no masks, no second wait. */
  returnMask?: boolean;
  /** With the masks, also keep each sequence's dense uint8 mask on the device. */
  denseMask?: boolean;
  /** A CUDA stream to enqueue the work on (see RunOptions.stream). */
  stream?: bigint;
  /** One entry per sequence: summaries of its first key blocks (read instead of pooled), or null. */
  keySummaries?: ReadonlyArray<KeySummaries | null>;
  /** With keySummaries: each estimated sequence's estimation writes the full key blocks it pools back (see VarlenEstimateRunOptions.appendKeySummaries). */
  appendKeySummaries?: boolean;
}

/** What prefillVarlen() resolves to. */
export interface VarlenPrefillResult {
  /** Packed like q. */
  output: Tensor;
  /** One BlockMask per sequence (null where Nq_i = 0); null with run.returnMask false. */
  masks: SequenceMasks | null;
  /** float32 [1, Hq, totalQ, 1] with opts.returnLse. */
  lse?: Tensor;
  /** Density over every sequence; times summed over the sequences. */
  stats: PrefillStats;
}

/** Estimation, then block-sparse attention over each sequence's selection, as one native call. */
export async function prefillVarlen(
  q: Tensor,
  k: Tensor,
  v: Tensor,
  batch: VarlenBatch,
  opts?: PrefillOptions,
  run?: VarlenPrefillRunOptions,
): Promise<VarlenPrefillResult> {
  checkInputs({ q, k, v }, true);
  const [estOpts, attOpts] = splitPrefillOptions(opts);
  const t = table(batch, q, k, v);
  const { out, stream, returnMask, denseMask, eo, softmaxScale, returnLse, keySummaries, appendKeySummaries } = resolvePrefillRun(q, estOpts, attOpts, run);
  const { keys, commit, hold } = keySummariesListArg(keySummaries, k, t, eo, appendKeySummaries);
  const { output, given } = outputFor(q, out, { q, k, v });
  const lse = returnLse ? newLse(q) : undefined;
  let sels: Selections | null = null;
  let release = (): void => undefined;
  try {
    release = hold();
    sels = returnMask ? allocateSelectionsOf(q, t, eo.block, denseMask) : null;
    const params = { block: eo.block, softmaxScale, ...(lse ? { lse: lse.live() } : {}) };
    const res = await whileGpuWorks(q.native.device, native().varlen(q.live(), k.live(), v.live(), output.live(), nativeSpec(t), toNativeEstimateParams(eo), params, sels, null, stream, keys));
    commit();
    const masks = sels ? masksOf(q, t, eo.block, sels, res) : null;
    const stats = { density: batchDensity(q, t, eo.block, res.selected), estimateMs: res.estimateMs, attentionMs: res.attentionMs };
    return lse ? { output, masks, lse, stats } : { output, masks, stats };
  } catch (e) {
    if (!given) output.dispose();
    lse?.dispose();
    if (sels) disposeSelections(sels);
    throw e;
  } finally {
    release();
  }
}

// Several devices from one process: the heads of one prefill split over a
// list of devices by kv-head groups. Device i gets kv heads [a_i, b_i) and
// the query heads that read them, [a_i * G, b_i * G) (G = Hq / Hkv); attention
// heads are independent, so nothing crosses devices but the inputs and the
// outputs. The per-device prefills run concurrently (each is its own native
// call, waited on by its own worker thread), and the result gathers the
// outputs back into one [b, Hq, Nq, d] array or tensor on request.
//
// Inputs come either as host data (uploaded shard by shard) or as per-device
// tensors already sharded (what a tensor-parallel server holds: each rank its
// own heads).
import { isArray, typeName } from './args';
import { attentionOptionFields, checkOptionFields, prefillOptionFields, resolveAttentionOptions, resolveEstimateOptions } from './options';
import { checkInputs, checkNoOverlap, prefill, type BlockMask, type PrefillOptions, type PrefillStats } from './ops';
import { checkQkvShapes, checkTensor, type Tensor, type TensorData } from './tensor';
import type { DeviceSpec } from './types';
import { planFromTensors, planShards, prefixed, readList, resolveDevices, showShape, type HeadShard } from './shard-plan';
import { checkHost, isHostHeads, uploadChecked, type HeadShards, type HostHeads } from './shard-host';
import { gatherHeads } from './shard-gather';

export { planHeadShards, type HeadShard } from './shard-plan';
export { uploadHeadShards, type HeadShardOptions, type HeadShards, type HostHeads } from './shard-host';
export { gatherHeads } from './shard-gather';

/** Per-device tensors, one entry per device: entry i holds device i's heads. */
export type TensorShards = readonly Tensor[];

/** How to run prefillSharded(). */
export interface ShardedPrefillRunOptions {
  /**
   * The devices. Required with host inputs (with `split`, see HeadShardOptions).
   * With tensor shards they are the tensors' devices; when given, they must match.
   */
  devices?: readonly DeviceSpec[];
  /** kv heads per device, host inputs only (tensor shards carry their heads). */
  split?: readonly number[];
  /** Caller-owned outputs, one per device, each matching that device's q shard. */
  out?: readonly Tensor[];
  /** Return each device's selection as a BlockMask (default true). */
  returnMask?: boolean;
  /** With the masks, also keep the dense uint8 masks on the devices. */
  denseMask?: boolean;
}

/** One device's prefill. */
export interface ShardResult extends HeadShard {
  /** [b, queryHeads[1] - queryHeads[0], Nq, d] on `device` */
  output: Tensor;
  /** The selection of this device's query heads (null with run.returnMask false). */
  mask: BlockMask | null;
  /** Row log-sum-exp with opts.returnLse. */
  lse?: Tensor;
  stats: PrefillStats;
  /** Milliseconds from this device's prefill call to its resolution. */
  wallMs: number;
}

export interface ShardedPrefillStats {
  /** Selected visible blocks / all visible blocks, over every device's heads. */
  density: number;
  /** The slowest device's estimation and attention times (device clocks). */
  estimateMs: number;
  attentionMs: number;
  /** The slowest device's estimateMs + attentionMs. */
  deviceMs: number;
  /** Milliseconds from the first prefill call to the last resolution (uploads not included). */
  wallMs: number;
  /** Milliseconds spent uploading host inputs (0 for tensor shards). */
  uploadMs: number;
}

/** The per-device inputs of a sharded prefill, and the uploads to free after it. */
interface ShardInputs {
  shards: HeadShard[];
  q: Tensor[];
  k: Tensor[];
  v: Tensor[];
  /** Host inputs: the uploaded shards (null for tensor shards). */
  uploaded: HeadShards | null;
  uploadMs: number;
}

/** The expected shape, dtype, layout and device of one device's output. */
interface OutSpec {
  shape: readonly number[];
  dtype: string;
  layout: string;
  device: string;
}

function describe(t: OutSpec): string {
  return `${showShape(t.shape)} ${t.dtype} ${t.layout} on ${t.device}`;
}

/** run.out, one tensor per device, each checked against `want[i]` (called `names[i]` in errors). */
function checkOuts(out: unknown, want: readonly OutSpec[], names: readonly string[]): Array<Tensor | undefined> {
  if (out === undefined) return want.map(() => undefined);
  const list = readList(out, 'run.out', 'Tensors (one per device)');
  if (list.length !== want.length) throw new RangeError(`run.out has ${list.length} tensors for ${want.length} devices`);
  return list.map((o, i) => {
    const t = checkTensor(o, `run.out[${i}]`);
    const w = want[i];
    if (t.shape.some((x, j) => x !== w.shape[j]) || t.dtype !== w.dtype || t.layout !== w.layout || t.device !== w.device) {
      throw new RangeError(`run.out[${i}] must match ${names[i]}: ${describe(w)}, got ${describe(t)}`);
    }
    return t;
  });
}

/** Per-device tensors: checked, their head ranges read off their shapes. */
function tensorInputs(q: unknown, k: unknown, v: unknown, r: Record<string, unknown>, prefillOpts: Record<string, unknown>): ShardInputs {
  const [qs, ks, vs] = ([[q, 'q'], [k, 'k'], [v, 'v']] as const).map(([x, name]) => readList(x, name, 'Tensors').map((t, i) => checkTensor(t, `${name}[${i}]`)));
  if (qs.length === 0) throw new RangeError('q must hold one tensor per device, got an empty array');
  const shards = planFromTensors(qs, ks, vs);
  if (r.split !== undefined) throw new TypeError('run.split applies to host inputs; tensor shards carry their heads');
  if (r.devices !== undefined) {
    const devices = resolveDevices(r.devices, 'run.devices');
    if (devices.length !== shards.length || devices.some((d, i) => d !== shards[i].device)) {
      throw new Error(`run.devices (${devices.join(', ')}) do not match the tensors' devices (${shards.map((s) => s.device).join(', ')})`);
    }
  }
  checkOptions(prefillOpts, qs[0].shape[3]);
  return { shards, q: qs, k: ks, v: vs, uploaded: null, uploadMs: 0 };
}

/** Host inputs: checked (run.out against the shapes the uploads will have), then uploaded by heads. */
async function hostInputs(q: unknown, k: unknown, v: unknown, r: Record<string, unknown>, prefillOpts: Record<string, unknown>): Promise<ShardInputs> {
  const cq = checkHost(q, 'q');
  const ck = checkHost(k, 'k');
  const cv = checkHost(v, 'v');
  checkQkvShapes(cq, ck, cv);
  if (r.devices === undefined) throw new TypeError('run.devices is required with host inputs: the devices to split the heads over');
  const shards = planShards(cq.shape[1], ck.shape[1], resolveDevices(r.devices, 'run.devices'), r.split, 'run.split');
  checkOptions(prefillOpts, cq.shape[3]);
  const [b, , n, d] = cq.shape;
  checkOuts(
    r.out,
    shards.map((s) => ({ shape: [b, s.queryHeads[1] - s.queryHeads[0], n, d], dtype: cq.dtype, layout: cq.layout, device: s.device })),
    shards.map((s) => `q heads [${s.queryHeads[0]}, ${s.queryHeads[1]})`),
  );
  const t0 = performance.now();
  const uploaded = await uploadChecked(cq, ck, cv, shards);
  return { shards, q: uploaded.q, k: uploaded.k, v: uploaded.v, uploaded, uploadMs: performance.now() - t0 };
}

/** One prefill() per device, all at once; on a failure the others' results are freed and the first error names its device. */
async function runShards(x: ShardInputs, outs: Array<Tensor | undefined>, prefillOpts: PrefillOptions, returnMask: boolean, denseMask: boolean): Promise<ShardedPrefillResult> {
  const { shards } = x;
  const t0 = performance.now();
  const settled = await Promise.allSettled(
    shards.map(async (s, i) => {
      const start = performance.now();
      const res = await prefill(x.q[i], x.k[i], x.v[i], prefillOpts, { ...(outs[i] ? { out: outs[i] } : {}), returnMask, denseMask });
      return { res, wallMs: performance.now() - start };
    }),
  );
  const wallMs = performance.now() - t0;
  const failed = settled.findIndex((r) => r.status === 'rejected');
  if (failed >= 0) {
    settled.forEach((r, i) => {
      if (r.status !== 'fulfilled') return;
      const res = r.value.res;
      if (!outs[i]) res.output.dispose();
      res.mask?.dispose();
      res.lse?.dispose();
    });
    const s = shards[failed];
    throw prefixed((settled[failed] as PromiseRejectedResult).reason, `${s.device} (kv heads [${s.kvHeads[0]}, ${s.kvHeads[1]}))`);
  }
  const results: ShardResult[] = settled.map((r, i) => {
    const { res, wallMs: ms } = (r as PromiseFulfilledResult<{ res: Awaited<ReturnType<typeof prefill>>; wallMs: number }>).value;
    return { ...shards[i], output: res.output, mask: res.mask, ...(res.lse ? { lse: res.lse } : {}), stats: res.stats, wallMs: ms };
  });
  return new ShardedPrefillResult(results, outs.map((o) => o !== undefined), wallMs, x.uploadMs);
}

/**
 * Prefill with the heads split over several devices. q, k and v are either
 * per-device tensors (entry i on device i: device i's query heads and the kv
 * heads they read, the same tokens everywhere) or host data (HostHeads), which
 * is uploaded by heads to run.devices (see planHeadShards) and freed after the
 * call. Every device runs prefill() on its heads at the same time; the result
 * holds each device's output, selection and stats, and gathers the outputs.
 * Argument errors reject before any device starts; a failure on one device
 * rejects after the others have finished, with everything freed.
 */
export async function prefillSharded(
  q: TensorShards | HostHeads,
  k: TensorShards | HostHeads,
  v: TensorShards | HostHeads,
  opts?: PrefillOptions,
  run?: ShardedPrefillRunOptions,
): Promise<ShardedPrefillResult> {
  const r = checkOptionFields(run, ['devices', 'split', 'out', 'returnMask', 'denseMask'], 'sharded run option', 'run');
  const returnMask = r.returnMask === undefined ? true : checkBoolean(r.returnMask, 'run.returnMask');
  const denseMask = r.denseMask === undefined ? false : checkBoolean(r.denseMask, 'run.denseMask');
  // Options read once, checked before any work, and handed to every device as plain values.
  const fields = checkOptionFields(opts, prefillOptionFields, 'prefill option');
  const prefillOpts: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(fields)) if (value !== undefined) prefillOpts[key] = value;

  const kinds = [q, k, v].map((x) => (isArray(x) ? 'tensors' : isHostHeads(x) ? 'host' : 'other'));
  let inputs: ShardInputs;
  if (kinds.every((x) => x === 'tensors')) inputs = tensorInputs(q, k, v, r, prefillOpts);
  else if (kinds.every((x) => x === 'host')) inputs = await hostInputs(q, k, v, r, prefillOpts);
  else {
    throw new TypeError(
      `q, k and v must all be arrays of per-device Tensors or all host inputs { shape, data, dtype?, layout? }, got ${[q, k, v].map(typeName).join(', ')}`,
    );
  }
  try {
    const outs = checkOuts(r.out, inputs.q, inputs.q.map((_, i) => `q[${i}]`));
    checkParts(inputs, outs);
    return await runShards(inputs, outs, prefillOpts as PrefillOptions, returnMask, denseMask);
  } finally {
    inputs.uploaded?.dispose();
  }
}

/**
 * The devices' parts checked as prefill() checks them, before any device
 * starts: each part's q, k and v fit together, and no run.out shares memory
 * with an input of any part or with another run.out.
 */
function checkParts(x: ShardInputs, outs: Array<Tensor | undefined>): void {
  x.q.forEach((q, i) => {
    try {
      checkInputs({ q, k: x.k[i], v: x.v[i] });
    } catch (e) {
      throw prefixed(e, `part ${i} (q[${i}], k[${i}], v[${i}])`);
    }
  });
  const inputs = (['q', 'k', 'v'] as const).flatMap((n) => x[n].map((t, j) => [`${n}[${j}]`, t] as const));
  outs.forEach((o, i) => {
    if (!o) return;
    checkNoOverlap(o, `run.out[${i}]`, inputs);
    const earlier = outs.slice(0, i).flatMap((p, j) => (p ? [[`run.out[${j}]`, p] as const] : []));
    checkNoOverlap(o, `run.out[${i}]`, earlier, 'each part needs its own output');
  });
}

function checkBoolean(x: unknown, name: string): boolean {
  if (typeof x !== 'boolean') throw new TypeError(`${name} must be a boolean, got ${typeName(x)}`);
  return x;
}

/**
 * The prefill options, checked before any device starts. The kernels' limits
 * (head_dim, dtype, block) are checked by each device's prefill() before it
 * enqueues anything: with the same inputs on every GPU, nothing starts.
 */
function checkOptions(o: Record<string, unknown>, headDim: number): void {
  const { est, att } = splitOptions(o);
  resolveEstimateOptions(est, headDim);
  resolveAttentionOptions(att);
}

function splitOptions(o: Record<string, unknown>): { est: Record<string, unknown>; att: Record<string, unknown> } {
  const est: Record<string, unknown> = {};
  const att: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(o)) (attentionOptionFields.includes(key) ? att : est)[key] = value;
  return { est, att };
}

/** What prefillSharded() resolves to: one result per device, combined stats, gathering. */
export class ShardedPrefillResult {
  /** One entry per device, in device order. */
  readonly shards: readonly ShardResult[];
  readonly stats: ShardedPrefillStats;
  private readonly outGiven: readonly boolean[];

  /** @internal made by prefillSharded() */
  constructor(shards: ShardResult[], outGiven: boolean[], wallMs: number, uploadMs: number) {
    this.shards = Object.freeze(shards);
    this.outGiven = outGiven;
    const heads = shards.reduce((a, s) => a + (s.queryHeads[1] - s.queryHeads[0]), 0);
    const slowest = shards.reduce((a, s) => (s.stats.estimateMs + s.stats.attentionMs > a.stats.estimateMs + a.stats.attentionMs ? s : a));
    this.stats = {
      // Every head has the same visible blocks: the head-weighted mean is selected / visible overall.
      density: shards.reduce((a, s) => a + s.stats.density * (s.queryHeads[1] - s.queryHeads[0]), 0) / heads,
      estimateMs: Math.max(...shards.map((s) => s.stats.estimateMs)),
      attentionMs: Math.max(...shards.map((s) => s.stats.attentionMs)),
      deviceMs: slowest.stats.estimateMs + slowest.stats.attentionMs,
      wallMs,
      uploadMs,
    };
  }

  /** The output [b, Hq, Nq, d] gathered on the host (in q's layout). */
  gather(): Promise<TensorData>;
  gather(target: 'host'): Promise<TensorData>;
  /** The output gathered into a new tensor on `device`. */
  gather(target: DeviceSpec): Promise<Tensor>;
  /** A target known only at run time: a host array for 'host', a tensor otherwise. */
  gather(target: 'host' | DeviceSpec): Promise<TensorData | Tensor>;
  gather(target: 'host' | DeviceSpec = 'host'): Promise<TensorData | Tensor> {
    return gatherHeads(this.shards.map((s) => s.output), target as DeviceSpec);
  }

  /** The row log-sum-exp [b, Hq, Nq, 1] (with opts.returnLse) gathered likewise. */
  gatherLse(): Promise<Float32Array>;
  gatherLse(target: 'host'): Promise<Float32Array>;
  gatherLse(target: DeviceSpec): Promise<Tensor>;
  gatherLse(target: 'host' | DeviceSpec): Promise<Float32Array | Tensor>;
  gatherLse(target: 'host' | DeviceSpec = 'host'): Promise<Float32Array | Tensor> {
    const parts = this.shards.map((s) => s.lse);
    // A rejection, not a throw: the caller handles this Promise's errors.
    if (parts.some((x) => x === undefined)) return Promise.reject(new Error('gatherLse: no row log-sum-exp; run prefillSharded with opts.returnLse'));
    return gatherHeads(parts as Tensor[], target as DeviceSpec) as Promise<Float32Array | Tensor>;
  }

  /** Frees the outputs (not caller-owned run.out tensors), masks and lse of every device (idempotent). */
  dispose(): void {
    this.shards.forEach((s, i) => {
      if (!this.outGiven[i]) s.output.dispose();
      s.mask?.dispose();
      s.lse?.dispose();
    });
  }
}


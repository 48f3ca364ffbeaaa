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
import { isArray, readField, show, typedArrayLength, typedArrayName, typeName } from './args';
import { attentionOptionFields, checkOptionFields, estimateOptionFields, resolveAttentionOptions, resolveEstimateOptions } from './options';
import { prefill, type BlockMask, type PrefillOptions, type PrefillStats } from './ops';
import { checkTensor, deviceName, empty, isTensor, MAX_ARRAY_LENGTH, resolveDevice, tensor, Tensor, type Shape4, type TensorData } from './tensor';
import type { DeviceSpec, DType, Layout } from './types';

/** The most elements one host array may hold here (one JS typed array). */
const MAX_HOST_ELEMENTS = Math.min(MAX_ARRAY_LENGTH, 2 ** 32 - 1);
/** Elements per piece when copying between devices through the host. */
const CHUNK = 2 ** 26;

/** One device's part of a head-sharded prefill. Ranges are [first, end). */
export interface HeadShard {
  /** Position in the device list. */
  index: number;
  /** 'cpu' or 'cuda:N' */
  device: string;
  kvHeads: readonly [number, number];
  queryHeads: readonly [number, number];
}

/** A whole (unsharded) tensor's data on the host, to be uploaded shard by shard. */
export interface HostHeads {
  /** Logical shape [batch, heads, n, d] of the whole tensor. */
  shape: Shape4;
  /**
   * The whole tensor in `layout` order (Float32Array for float32, Uint16Array
   * bits for float16 / bfloat16), or a function returning the [n, d] rows of one
   * (batch, head), for data larger than one typed array or made head by head.
   */
  data: TensorData | ((batch: number, head: number) => TensorData);
  /** Default 'float32'. */
  dtype?: DType;
  /** Default 'bhnd'. */
  layout?: Layout;
}

/** Per-device tensors, one entry per device: entry i holds device i's heads. */
export type TensorShards = readonly Tensor[];

/** How to upload host data by heads. */
export interface HeadShardOptions {
  /** Devices in order: device i gets the i-th range of kv heads. The same device may appear more than once. */
  devices: readonly DeviceSpec[];
  /**
   * kv heads per device (positive integers adding up to Hkv). Default: as even
   * as possible, the first Hkv % D devices taking one more.
   */
  split?: readonly number[];
}

/** Host data uploaded by heads: q[i], k[i], v[i] live on shards[i].device. */
export interface HeadShards {
  shards: readonly HeadShard[];
  q: Tensor[];
  k: Tensor[];
  v: Tensor[];
  /** Frees every shard tensor (idempotent). */
  dispose(): void;
}

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

/** An error of the same class with `prefix: ` before its message (the original as the cause). */
function prefixed(e: unknown, prefix: string): unknown {
  if (!(e instanceof Error)) return e;
  const C = e instanceof TypeError ? TypeError : e instanceof RangeError ? RangeError : Error;
  return new C(`${prefix}: ${e.message}`, { cause: e });
}

function positiveInteger(x: unknown, name: string): number {
  if (typeof x !== 'number') throw new TypeError(`${name} must be a number, got ${typeName(x)}`);
  if (!Number.isSafeInteger(x) || x < 1) throw new RangeError(`${name} must be a positive integer, got ${show(x)}`);
  return x;
}

/** Elements of a [b, h, n, d] shape. */
function count(shape: readonly number[]): number {
  return shape[0] * shape[1] * shape[2] * shape[3];
}

function showShape(shape: readonly number[]): string {
  return `[${shape.join(', ')}]`;
}

/** The entries of an array argument, each read once. */
function readList(list: unknown, name: string, what: string): unknown[] {
  if (!isArray(list)) throw new TypeError(`${name} must be an array of ${what}, got ${typeName(list)}`);
  const length = readField(list, 'length', `${name}.length`) as number;
  return Array.from({ length }, (_, i) => readField(list, String(i), `${name}[${i}]`));
}

/** Device specs resolved to 'cpu' / 'cuda:N'; errors name the entry. */
function resolveDevices(devices: unknown, name: string): string[] {
  const list = readList(devices, name, "device specs ('cpu', 'cuda:N', ...)");
  if (list.length === 0) throw new RangeError(`${name} must list at least one device`);
  return list.map((spec, i) => {
    try {
      return deviceName(resolveDevice(spec as DeviceSpec));
    } catch (e) {
      throw prefixed(e, `${name}[${i}]`);
    }
  });
}

/**
 * Splits Hkv kv heads (and their Hq query heads) over `devices`. Without
 * `split`, as evenly as possible: every device gets floor(Hkv / D) kv heads
 * and the first Hkv % D devices one more, in list order; a device list longer
 * than Hkv is a RangeError (every device needs a kv head). With `split`, device
 * i gets split[i] kv heads (positive integers adding up to Hkv). Devices are
 * resolved ('cuda' -> 'cuda:0'); an unavailable one throws like tensor() does.
 */
export function planHeadShards(
  queryHeads: number,
  kvHeads: number,
  devices: readonly DeviceSpec[],
  split?: readonly number[],
): HeadShard[] {
  const hq = positiveInteger(queryHeads, 'queryHeads');
  const hkv = positiveInteger(kvHeads, 'kvHeads');
  if (hq % hkv !== 0) throw new RangeError(`query heads (${hq}) must be a multiple of kv heads (${hkv})`);
  return plan(hq, hkv, resolveDevices(devices, 'devices'), split, 'split');
}

function plan(hq: number, hkv: number, devices: string[], split: unknown, splitName: string): HeadShard[] {
  const n = devices.length;
  let sizes: number[];
  if (split === undefined) {
    if (n > hkv) {
      throw new RangeError(`devices: ${n} devices but ${hkv} kv heads; every device needs at least one kv head (list at most ${hkv} devices)`);
    }
    sizes = devices.map((_, i) => Math.floor(hkv / n) + (i < hkv % n ? 1 : 0));
  } else {
    const list = readList(split, splitName, 'kv head counts');
    if (list.length !== n) throw new RangeError(`${splitName} has ${list.length} entries for ${n} devices`);
    sizes = list.map((x, i) => positiveInteger(x, `${splitName}[${i}]`));
    const sum = sizes.reduce((a, b) => a + b, 0);
    if (sum !== hkv) throw new RangeError(`${splitName} must add up to the kv heads (${hkv}), got ${sum}`);
  }
  const group = hq / hkv;
  let at = 0;
  return devices.map((device, index) => {
    const kv = [at, at + sizes[index]] as const;
    at += sizes[index];
    return Object.freeze({ index, device, kvHeads: Object.freeze(kv), queryHeads: Object.freeze([kv[0] * group, kv[1] * group] as const) });
  });
}

// --- host inputs --------------------------------------------------------------

interface CheckedHost {
  shape: Shape4;
  dtype: DType;
  layout: Layout;
  data: TensorData | ((batch: number, head: number) => TensorData);
}

const HOST_FIELDS = ['shape', 'data', 'dtype', 'layout'];

function isHostHeads(x: unknown): boolean {
  return typeof x === 'object' && x !== null && !isArray(x) && !isTensor(x);
}

function checkHost(x: unknown, name: string): CheckedHost {
  const o = checkOptionFields(x, HOST_FIELDS, 'host input', name);
  const shape = readList(o.shape, `${name}.shape`, 'dims [batch, heads, n, d]');
  if (shape.length !== 4) throw new RangeError(`${name}.shape must have rank 4 [batch, heads, n, d], got ${shape.length} dims`);
  shape.forEach((s, i) => positiveInteger(s, `${name}.shape[${i}]`));
  const dtype = (o.dtype ?? 'float32') as DType;
  if (!['float32', 'float16', 'bfloat16'].includes(dtype)) throw new TypeError(`${name}.dtype must be float32, float16 or bfloat16, got ${show(o.dtype)}`);
  const layout = (o.layout ?? 'bhnd') as Layout;
  if (layout !== 'bhnd' && layout !== 'bnhd') throw new TypeError(`${name}.layout must be 'bhnd' or 'bnhd', got ${show(o.layout)}`);
  const data = o.data;
  if (typeof data !== 'function') {
    checkData(data, dtype, count(shape as number[]), `${name}.data`, `shape ${showShape(shape as number[])}`);
  }
  return { shape: shape as unknown as Shape4, dtype, layout, data: data as CheckedHost['data'] };
}

function checkData(data: unknown, dtype: DType, n: number, name: string, what: string): asserts data is TensorData {
  const want = dtype === 'float32' ? 'Float32Array' : 'Uint16Array';
  if (typedArrayName(data) !== want) {
    throw new TypeError(`${name} for ${dtype} must be a ${want}${dtype === 'float32' ? '' : ' of 16-bit patterns'} or a function (batch, head) => data, got ${typeName(data)}`);
  }
  const length = typedArrayLength(data as TensorData);
  if (length !== n) throw new RangeError(`${name} has ${length} elements but ${what} needs ${n}`);
}

function alloc(dtype: DType, n: number): TensorData {
  return dtype === 'float32' ? new Float32Array(n) : new Uint16Array(n);
}

/** The [n, d] rows of (batch b, head h) of a host input. */
function headRows(x: CheckedHost, b: number, h: number, name: string): TensorData {
  const [, H, n, d] = x.shape;
  if (typeof x.data === 'function') {
    let rows: unknown;
    try {
      rows = x.data(b, h);
    } catch (e) {
      throw prefixed(e, `${name}.data(${b}, ${h})`);
    }
    checkData(rows, x.dtype, n * d, `${name}.data(${b}, ${h}) returned data that`, `one head [${n}, ${d}]`);
    return rows;
  }
  if (x.layout !== 'bhnd') throw new Error('headRows: bhnd data only'); // not reached: bnhd is copied row by row
  return x.data.subarray(((b * H + h) * n) * d, ((b * H + h + 1) * n) * d);
}

/** Heads [h0, h1) of a host input as one array in its layout (a view when it can be). */
function assemble(x: CheckedHost, h0: number, h1: number, name: string): TensorData {
  const [B, H, n, d] = x.shape;
  const hs = h1 - h0;
  if (typeof x.data !== 'function' && x.layout === 'bhnd' && B === 1) return x.data.subarray(h0 * n * d, h1 * n * d);
  const total = B * hs * n * d;
  if (total > MAX_HOST_ELEMENTS) {
    throw new RangeError(`${name}: heads [${h0}, ${h1}) in layout 'bnhd' hold ${total} elements, more than one typed array holds (${MAX_HOST_ELEMENTS}); use layout 'bhnd' or more devices`);
  }
  const out = alloc(x.dtype, total);
  for (let b = 0; b < B; b++) {
    for (let h = h0; h < h1; h++) {
      if (x.layout === 'bhnd') {
        out.set(headRows(x, b, h, name), ((b * hs + (h - h0)) * n) * d);
        continue;
      }
      // bnhd: [b][n][h][d]
      const src = typeof x.data === 'function' ? headRows(x, b, h, name) : null;
      for (let r = 0; r < n; r++) {
        const from = src ? src.subarray(r * d, (r + 1) * d) : (x.data as TensorData).subarray(((b * n + r) * H + h) * d, ((b * n + r) * H + h + 1) * d);
        out.set(from, ((b * n + r) * hs + (h - h0)) * d);
      }
    }
  }
  return out;
}

/**
 * Uploads heads [h0, h1) of a host input to `device`. Layout 'bhnd': written
 * in place, batch entry by batch entry (a whole array) or head by head (a
 * function), with no host copy of the shard. Layout 'bnhd' interleaves the
 * heads in every row: the shard is assembled on the host first.
 */
async function uploadHeads(x: CheckedHost, h0: number, h1: number, device: string, name: string): Promise<Tensor> {
  const [B, H, n, d] = x.shape;
  const hs = h1 - h0;
  const shape: Shape4 = [B, hs, n, d];
  const opts = { dtype: x.dtype, layout: x.layout, device: device as DeviceSpec };
  if (x.layout !== 'bhnd' || (typeof x.data !== 'function' && B === 1)) return tensor(assemble(x, h0, h1, name), { shape, ...opts });
  const t = empty(shape, opts);
  try {
    for (let b = 0; b < B; b++) {
      if (typeof x.data !== 'function') {
        await t.write(x.data.subarray((b * H + h0) * n * d, (b * H + h1) * n * d), b * hs * n * d);
        continue;
      }
      for (let h = h0; h < h1; h++) await t.write(headRows(x, b, h, name), (b * hs + (h - h0)) * n * d);
    }
  } catch (e) {
    t.dispose();
    throw e;
  }
  return t;
}

function checkHostTriple(q: CheckedHost, k: CheckedHost, v: CheckedHost): void {
  const [bq, hq, nq, dq] = q.shape;
  const [bk, hk, nk, dk] = k.shape;
  if (bq !== bk) throw new RangeError(`batch sizes differ: q has ${bq}, k has ${bk}`);
  if (dq !== dk) throw new RangeError(`head_dim differs: q has ${dq}, k has ${dk}`);
  if (hq % hk !== 0) throw new RangeError(`query heads (${hq}) must be a multiple of kv heads (${hk})`);
  if (nq > nk) throw new RangeError(`query length (${nq}) must not exceed key length (${nk})`);
  if (v.shape.some((x, i) => x !== k.shape[i])) {
    throw new RangeError(`k and v must have the same shape: k is ${showShape(k.shape)}, v is ${showShape(v.shape)}`);
  }
  if (q.dtype !== k.dtype) throw new TypeError(`dtypes differ: q is ${q.dtype}, k is ${k.dtype}`);
  if (q.dtype !== v.dtype) throw new TypeError(`dtypes differ: q is ${q.dtype}, v is ${v.dtype}`);
}

async function uploadChecked(q: CheckedHost, k: CheckedHost, v: CheckedHost, shards: readonly HeadShard[]): Promise<HeadShards> {
  const made: Tensor[] = [];
  const keep = async (p: Promise<Tensor>): Promise<Tensor> => {
    const t = await p;
    made.push(t);
    return t;
  };
  const results = await Promise.allSettled(
    shards.map(async (s) => {
      const tq = await keep(uploadHeads(q, s.queryHeads[0], s.queryHeads[1], s.device, 'q'));
      const tk = await keep(uploadHeads(k, s.kvHeads[0], s.kvHeads[1], s.device, 'k'));
      const tv = await keep(uploadHeads(v, s.kvHeads[0], s.kvHeads[1], s.device, 'v'));
      return [tq, tk, tv] as const;
    }),
  );
  const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (failed) {
    for (const t of made) t.dispose();
    throw failed.reason;
  }
  const parts = results.map((r) => (r as PromiseFulfilledResult<readonly [Tensor, Tensor, Tensor]>).value);
  return {
    shards,
    q: parts.map((p) => p[0]),
    k: parts.map((p) => p[1]),
    v: parts.map((p) => p[2]),
    dispose(): void {
      for (const p of parts) for (const t of p) t.dispose();
    },
  };
}

/**
 * Uploads host data by heads: device i gets q heads [a_i * G, b_i * G) and k/v
 * heads [a_i, b_i) (planHeadShards()). Keep the result to run several
 * prefills on the same shards; dispose() it when done.
 */
export async function uploadHeadShards(q: HostHeads, k: HostHeads, v: HostHeads, opts: HeadShardOptions): Promise<HeadShards> {
  const cq = checkHost(q, 'q');
  const ck = checkHost(k, 'k');
  const cv = checkHost(v, 'v');
  checkHostTriple(cq, ck, cv);
  const o = checkOptionFields(opts, ['devices', 'split'], 'head shard option');
  if (o.devices === undefined) throw new TypeError('opts.devices is required: the devices to split the heads over');
  const shards = plan(cq.shape[1], ck.shape[1], resolveDevices(o.devices, 'opts.devices'), o.split, 'opts.split');
  return uploadChecked(cq, ck, cv, shards);
}

// --- tensor shards --------------------------------------------------------------

/** Checks per-device tensors and derives the head ranges from their shapes. */
function planFromTensors(q: Tensor[], k: Tensor[], v: Tensor[]): HeadShard[] {
  const n = q.length;
  if (k.length !== n || v.length !== n) {
    throw new RangeError(`q, k and v must hold one tensor per device: got ${q.length}, ${k.length} and ${v.length}`);
  }
  const [b0, , nq0, d0] = q[0].shape;
  const nk0 = k[0].shape[2];
  const group = q[0].shape[1] / k[0].shape[1];
  let at = 0;
  return q.map((qi, i) => {
    const ki = k[i];
    const vi = v[i];
    if (ki.device !== qi.device || vi.device !== qi.device) {
      throw new Error(`q[${i}], k[${i}] and v[${i}] must be on one device (got ${qi.device}, ${ki.device} and ${vi.device})`);
    }
    if (qi.shape[0] !== b0 || qi.shape[2] !== nq0 || qi.shape[3] !== d0 || ki.shape[2] !== nk0) {
      throw new RangeError(
        `shard ${i} holds other tokens than shard 0 (q ${showShape(qi.shape)}, k ${showShape(ki.shape)} vs q ${showShape(q[0].shape)}, k ${showShape(k[0].shape)}): shards differ only in heads`,
      );
    }
    if (qi.dtype !== q[0].dtype || qi.layout !== q[0].layout) {
      throw new TypeError(`q[${i}] is ${qi.dtype} ${qi.layout}, q[0] is ${q[0].dtype} ${q[0].layout}: every shard has the same dtype and layout`);
    }
    const hk = ki.shape[1];
    if (qi.shape[1] !== hk * group) {
      throw new RangeError(
        `q[${i}] has ${qi.shape[1]} heads for k[${i}]'s ${hk} kv heads; shard 0 has ${group} query heads per kv head, and every shard must have the same`,
      );
    }
    const kv = [at, at + hk] as const;
    at += hk;
    return Object.freeze({ index: i, device: qi.device, kvHeads: Object.freeze(kv), queryHeads: Object.freeze([kv[0] * group, kv[1] * group] as const) });
  });
}

function checkOuts(out: unknown, q: Tensor[]): Array<Tensor | undefined> {
  if (out === undefined) return q.map(() => undefined);
  const list = readList(out, 'run.out', 'Tensors (one per device)');
  if (list.length !== q.length) throw new RangeError(`run.out has ${list.length} tensors for ${q.length} devices`);
  return list.map((o, i) => {
    const t = checkTensor(o, `run.out[${i}]`);
    const qi = q[i];
    if (t.shape.some((x, j) => x !== qi.shape[j]) || t.dtype !== qi.dtype || t.layout !== qi.layout || t.device !== qi.device) {
      throw new RangeError(
        `run.out[${i}] must match q[${i}]: ${showShape(qi.shape)} ${qi.dtype} ${qi.layout} on ${qi.device}, got ${showShape(t.shape)} ${t.dtype} ${t.layout} on ${t.device}`,
      );
    }
    return t;
  });
}

// --- prefillSharded --------------------------------------------------------------

let warnedPool = false;

/** GPU waits hold libuv worker threads: warn once when the pool is smaller than the GPU parts in flight. */
function warnThreadPool(devices: readonly string[]): void {
  const gpus = devices.filter((d) => d !== 'cpu').length;
  const pool = Number(process.env.UV_THREADPOOL_SIZE) || 4;
  if (warnedPool || gpus <= pool) return;
  warnedPool = true;
  process.emitWarning(
    `prefillSharded: ${gpus} GPUs but UV_THREADPOOL_SIZE is ${pool}: each device's call waits on a libuv worker thread, so at most ${pool} run at once. Start node with UV_THREADPOOL_SIZE=${gpus + 2} or more.`,
    'PrismWarning',
  );
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
  const fields = checkOptionFields(opts, [...estimateOptionFields, ...attentionOptionFields], 'prefill option');
  const prefillOpts: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(fields)) if (value !== undefined) prefillOpts[key] = value;

  const kinds = [q, k, v].map((x) => (isArray(x) ? 'tensors' : isHostHeads(x) ? 'host' : 'other'));
  let qs: Tensor[];
  let ks: Tensor[];
  let vs: Tensor[];
  let shards: HeadShard[];
  let uploaded: HeadShards | null = null;
  let uploadMs = 0;
  if (kinds.every((x) => x === 'tensors')) {
    qs = readList(q, 'q', 'Tensors').map((t, i) => checkTensor(t, `q[${i}]`));
    ks = readList(k, 'k', 'Tensors').map((t, i) => checkTensor(t, `k[${i}]`));
    vs = readList(v, 'v', 'Tensors').map((t, i) => checkTensor(t, `v[${i}]`));
    if (qs.length === 0) throw new RangeError('q must hold one tensor per device, got an empty array');
    shards = planFromTensors(qs, ks, vs);
    if (r.split !== undefined) throw new TypeError('run.split applies to host inputs; tensor shards carry their heads');
    if (r.devices !== undefined) {
      const devices = resolveDevices(r.devices, 'run.devices');
      if (devices.length !== shards.length || devices.some((d, i) => d !== shards[i].device)) {
        throw new Error(`run.devices (${devices.join(', ')}) do not match the tensors' devices (${shards.map((s) => s.device).join(', ')})`);
      }
    }
    checkOptions(prefillOpts, qs[0].shape[3]);
  } else if (kinds.every((x) => x === 'host')) {
    const cq = checkHost(q, 'q');
    const ck = checkHost(k, 'k');
    const cv = checkHost(v, 'v');
    checkHostTriple(cq, ck, cv);
    if (r.devices === undefined) throw new TypeError('run.devices is required with host inputs: the devices to split the heads over');
    shards = plan(cq.shape[1], ck.shape[1], resolveDevices(r.devices, 'run.devices'), r.split, 'run.split');
    checkOptions(prefillOpts, cq.shape[3]);
    if (r.out !== undefined) {
      // Checked against the shapes the uploads will have, before uploading.
      const want = shards.map((s) => [cq.shape[0], s.queryHeads[1] - s.queryHeads[0], cq.shape[2], cq.shape[3]]);
      const list = readList(r.out, 'run.out', 'Tensors (one per device)');
      if (list.length !== shards.length) throw new RangeError(`run.out has ${list.length} tensors for ${shards.length} devices`);
      list.forEach((o, i) => {
        const t = checkTensor(o, `run.out[${i}]`);
        if (t.shape.some((x, j) => x !== want[i][j]) || t.dtype !== cq.dtype || t.layout !== cq.layout || t.device !== shards[i].device) {
          throw new RangeError(
            `run.out[${i}] must be ${showShape(want[i])} ${cq.dtype} ${cq.layout} on ${shards[i].device}, got ${showShape(t.shape)} ${t.dtype} ${t.layout} on ${t.device}`,
          );
        }
      });
    }
    const t0 = performance.now();
    uploaded = await uploadChecked(cq, ck, cv, shards);
    uploadMs = performance.now() - t0;
    ({ q: qs, k: ks, v: vs } = uploaded);
  } else {
    throw new TypeError(
      `q, k and v must all be arrays of per-device Tensors or all host inputs { shape, data, dtype?, layout? }, got ${[q, k, v].map(typeName).join(', ')}`,
    );
  }

  try {
    const outs = checkOuts(r.out, qs);
    warnThreadPool(shards.map((s) => s.device));
    const t0 = performance.now();
    const settled = await Promise.allSettled(
      shards.map(async (s, i) => {
        const start = performance.now();
        const res = await prefill(qs[i], ks[i], vs[i], prefillOpts as PrefillOptions, {
          ...(outs[i] ? { out: outs[i] } : {}),
          returnMask,
          denseMask,
        });
        return { res, wallMs: performance.now() - start };
      }),
    );
    const wallMs = performance.now() - t0;
    const failed = settled.findIndex((x) => x.status === 'rejected');
    if (failed >= 0) {
      settled.forEach((x, i) => {
        if (x.status !== 'fulfilled') return;
        const res = x.value.res;
        if (!outs[i]) res.output.dispose();
        res.mask?.dispose();
        res.lse?.dispose();
      });
      const s = shards[failed];
      throw prefixed((settled[failed] as PromiseRejectedResult).reason, `${s.device} (kv heads [${s.kvHeads[0]}, ${s.kvHeads[1]}))`);
    }
    const results: ShardResult[] = settled.map((x, i) => {
      const { res, wallMs: ms } = (x as PromiseFulfilledResult<{ res: Awaited<ReturnType<typeof prefill>>; wallMs: number }>).value;
      return { ...shards[i], output: res.output, mask: res.mask, ...(res.lse ? { lse: res.lse } : {}), stats: res.stats, wallMs: ms };
    });
    return new ShardedPrefillResult(results, outs.map((o) => o !== undefined), wallMs, uploadMs);
  } finally {
    uploaded?.dispose();
  }
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
  gather(target: 'host' | DeviceSpec = 'host'): Promise<TensorData | Tensor> {
    return gatherHeads(this.shards.map((s) => s.output), target as DeviceSpec);
  }

  /** The row log-sum-exp [b, Hq, Nq, 1] (with opts.returnLse) gathered likewise. */
  gatherLse(): Promise<Float32Array>;
  gatherLse(target: 'host'): Promise<Float32Array>;
  gatherLse(target: DeviceSpec): Promise<Tensor>;
  gatherLse(target: 'host' | DeviceSpec = 'host'): Promise<Float32Array | Tensor> {
    const parts = this.shards.map((s) => s.lse);
    if (parts.some((x) => x === undefined)) throw new Error('gatherLse: no row log-sum-exp; run prefillSharded with opts.returnLse');
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

// --- gathering -------------------------------------------------------------------

/** Copies one part's heads [h0, h0 + hs) into the whole array (both in `layout` order). */
function place(src: TensorData, dst: TensorData, layout: Layout, B: number, H: number, h0: number, hs: number, n: number, d: number): void {
  for (let b = 0; b < B; b++) {
    if (layout === 'bhnd') {
      dst.set(src.subarray(b * hs * n * d, (b + 1) * hs * n * d), (b * H + h0) * n * d);
      continue;
    }
    for (let r = 0; r < n; r++) dst.set(src.subarray((b * n + r) * hs * d, ((b * n + r) * hs + hs) * d), ((b * n + r) * H + h0) * d);
  }
}

/**
 * Concatenates per-device parts along the heads: parts [b, h_i, n, d] (same
 * batch, length, head_dim, dtype and layout, any devices) become one
 * [b, sum h_i, n, d], in part order. Without a target (or 'host') the result
 * is a host array in the parts' layout (at most 2^32 - 1 elements); with a
 * device spec, a new tensor there. Layout 'bhnd' goes to a device piece by
 * piece, whatever its size; 'bnhd' through one host array.
 */
export function gatherHeads(parts: readonly Tensor[]): Promise<TensorData>;
export function gatherHeads(parts: readonly Tensor[], target: 'host'): Promise<TensorData>;
export function gatherHeads(parts: readonly Tensor[], target: DeviceSpec): Promise<Tensor>;
export async function gatherHeads(parts: readonly Tensor[], target: 'host' | DeviceSpec = 'host'): Promise<TensorData | Tensor> {
  const list = readList(parts, 'parts', 'Tensors').map((t, i) => checkTensor(t, `parts[${i}]`));
  if (list.length === 0) throw new RangeError('parts must hold at least one tensor');
  const first = list[0];
  const [B, , n, d] = first.shape;
  list.forEach((t, i) => {
    if (t.shape[0] !== B || t.shape[2] !== n || t.shape[3] !== d || t.dtype !== first.dtype || t.layout !== first.layout) {
      throw new RangeError(
        `parts[${i}] is ${showShape(t.shape)} ${t.dtype} ${t.layout}, parts[0] is ${showShape(first.shape)} ${first.dtype} ${first.layout}: parts differ only in heads`,
      );
    }
  });
  if (typeof target !== 'string') throw new TypeError(`target must be 'host' or a device spec, got ${typeName(target)}`);
  const H = list.reduce((a, t) => a + t.shape[1], 0);
  const shape: Shape4 = [B, H, n, d];
  const total = count(shape);
  const toDevice = target !== 'host';
  const device = toDevice ? deviceName(resolveDevice(target)) : 'host';
  if (toDevice && first.layout === 'bhnd') {
    // Each part's batch entry is one contiguous run in the part and in the result: copy it piece by piece.
    const out = empty(shape, { dtype: first.dtype, layout: first.layout, device: device as DeviceSpec });
    try {
      let h0 = 0;
      for (const t of list) {
        const run = t.shape[1] * n * d;
        for (let b = 0; b < B; b++) {
          for (let at = 0; at < run; at += CHUNK) {
            const len = Math.min(CHUNK, run - at);
            await out.write(await t.read(b * run + at, len), (b * H + h0) * n * d + at);
          }
        }
        h0 += t.shape[1];
      }
    } catch (e) {
      out.dispose();
      throw e;
    }
    return out;
  }
  if (total > MAX_HOST_ELEMENTS) {
    throw new RangeError(
      `gather: ${showShape(shape)} holds ${total} elements, more than one host array holds (${MAX_HOST_ELEMENTS}); ` +
        (toDevice ? "layout 'bnhd' is gathered through the host" : 'gather to a device, or read the parts one by one'),
    );
  }
  const out = alloc(first.dtype, total);
  const hosts = await Promise.all(list.map((t) => t.toHost()));
  let h0 = 0;
  for (let i = 0; i < list.length; i++) {
    place(hosts[i], out, first.layout, B, H, h0, list[i].shape[1], n, d);
    h0 += list[i].shape[1];
  }
  if (!toDevice) return out;
  return tensor(out, { shape, dtype: first.dtype, layout: first.layout, device: device as DeviceSpec });
}

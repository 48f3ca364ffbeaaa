// Host inputs of a head-sharded prefill (lib/sharded.ts): whole tensors on the
// host, or a function per (batch, head), checked and uploaded by the heads
// each device gets.
import { isArray, show, typedArrayLength, typedArrayName, typeName } from './args';
import { checkOptionFields } from './options';
import { checkQkvShapes, empty, isTensor, MAX_ARRAY_LENGTH, tensor, type Shape4, type Tensor, type TensorData } from './tensor';
import type { DeviceSpec, DType, Layout } from './types';
import { count, planShards, positiveInteger, prefixed, readList, resolveDevices, showShape, type HeadShard } from './shard-plan';

/** The most elements one host array may hold here (one JS typed array). */
export const MAX_HOST_ELEMENTS = Math.min(MAX_ARRAY_LENGTH, 2 ** 32 - 1);

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

/** A host input, its fields checked (data not called yet when a function). */
export interface CheckedHost {
  shape: Shape4;
  dtype: DType;
  layout: Layout;
  data: TensorData | ((batch: number, head: number) => TensorData);
}

const HOST_FIELDS = ['shape', 'data', 'dtype', 'layout'];

export function isHostHeads(x: unknown): boolean {
  return typeof x === 'object' && x !== null && !isArray(x) && !isTensor(x);
}

export function checkHost(x: unknown, name: string): CheckedHost {
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

export function alloc(dtype: DType, n: number): TensorData {
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

/** Uploads checked host inputs by the heads of `shards` (everything made is freed on a failure). */
export async function uploadChecked(q: CheckedHost, k: CheckedHost, v: CheckedHost, shards: readonly HeadShard[]): Promise<HeadShards> {
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
  checkQkvShapes(cq, ck, cv);
  const o = checkOptionFields(opts, ['devices', 'split'], 'head shard option');
  if (o.devices === undefined) throw new TypeError('opts.devices is required: the devices to split the heads over');
  const shards = planShards(cq.shape[1], ck.shape[1], resolveDevices(o.devices, 'opts.devices'), o.split, 'opts.split');
  return uploadChecked(cq, ck, cv, shards);
}

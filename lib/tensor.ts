// Tensors: logical [batch, heads, n, d] arrays on the CPU or a CUDA device,
// in 'bhnd' or 'bnhd' memory layout, backed by the addon's native tensor.
import { isArray, isInstance, isMadeInstance, isShared, ownKeys, readField, show, typeName, typedArrayLength, typedArrayName } from './args';
import { constants as bufferConstants } from 'buffer';
import { types as utilTypes } from 'util';
import { fromBFloat16, fromFloat16 } from './dtype';
import { cudaDevices, native, NativeDType, NativeTensor } from './native';
import type { DType, DeviceSpec, Layout } from './types';
import { checkOptionFields } from './options';
import { whileGpuWorks } from './wait-policy';

export type Shape4 = readonly [number, number, number, number];
export type TensorData = Float32Array | Uint16Array;

export interface TensorOptions {
  /** Logical shape [batch, heads, n, d]. */
  shape: Shape4;
  /** Default 'float32'. float16 / bfloat16 data are the raw 16-bit patterns in a Uint16Array. */
  dtype?: DType;
  /** Memory layout of the data. Default 'bhnd'. */
  layout?: Layout;
  /** Default 'auto': cuda:0 when a GPU is usable, else the CPU. */
  device?: DeviceSpec;
}

const DTYPE_CODES: Record<DType, number> = {
  float32: NativeDType.F32,
  float16: NativeDType.F16,
  bfloat16: NativeDType.BF16,
};
const DTYPES = Object.keys(DTYPE_CODES) as DType[];
const BYTES_PER_ELEMENT: Record<DType, number> = { float32: 4, float16: 2, bfloat16: 2 };
/** Tensor.view offsets start on this byte boundary: host tensors are 64-byte aligned (device ones 256), so views are too. */
export const VIEW_ALIGNMENT = 64;

/** Most elements one typed array can hold in this Node.js (2^32 in Node 20). */
export const MAX_ARRAY_LENGTH: number = bufferConstants.MAX_LENGTH;

/** Elements read or written per step when a tensor is copied through the host in parts. */
const CHUNK_ELEMENTS = 2 ** 26;
const LAYOUTS: readonly Layout[] = ['bhnd', 'bnhd'];

/** 'cpu' -> -1, 'cuda:N' -> N. Throws when the device is not usable, with the reason. */
export function resolveDevice(spec: DeviceSpec | undefined): number {
  const s: unknown = spec ?? 'auto';
  if (typeof s !== 'string') {
    throw new TypeError(`device must be a string ('auto', 'cpu', 'cuda' or 'cuda:N'), got ${typeName(s)}`);
  }
  if (s === 'cpu') return -1;
  const cuda = cudaDevices();
  if (s === 'auto') return cuda.count > 0 && cuda.unavailable === null ? 0 : -1;
  const m = /^cuda(?::(\d+))?$/.exec(s);
  if (!m) throw new RangeError(`device must be 'auto', 'cpu', 'cuda' or 'cuda:N', got '${s}'`);
  const index = m[1] === undefined ? 0 : Number(m[1]);
  if (cuda.unavailable !== null) {
    throw new Error(`device '${s}' is not available: ${cuda.unavailable}`);
  }
  if (index >= cuda.count) {
    throw new Error(`device '${s}' is not available: only ${cuda.count} CUDA device(s) present`);
  }
  return index;
}

/** 'cpu' or 'cuda:N' */
export function deviceName(index: number): string {
  return index < 0 ? 'cpu' : `cuda:${index}`;
}

/**
 * @internal A caller's CUDA stream for work on `device`: a bigint handle of a
 * stream the caller created. 0n (the legacy default stream), 1n
 * (cudaStreamLegacy) and 2n (cudaStreamPerThread) are RangeErrors: the work is
 * enqueued from a worker thread, where they would not mean the caller's stream.
 */
export function checkStream(stream: unknown, device: string, what: string): bigint | undefined {
  if (stream === undefined) return undefined;
  if (typeof stream !== 'bigint') throw new TypeError(`${what} must be a bigint (a cudaStream_t), got ${typeName(stream)}`);
  if (device === 'cpu') throw new RangeError(`${what} needs tensors on a CUDA device; they are on the cpu`);
  if (stream === 0n) throw new RangeError(`${what} 0n (the legacy default stream) is not supported: pass a stream you created`);
  if (stream === 1n || stream === 2n) {
    const name = stream === 1n ? 'cudaStreamLegacy' : 'cudaStreamPerThread';
    throw new RangeError(`${what} ${stream}n (${name}) is not supported: pass a stream you created`);
  }
  if (stream < 0n || stream >= 2n ** 64n) throw new RangeError(`${what} must be a 64-bit stream handle, got ${stream}n`);
  return stream;
}

function checkShape(shape: unknown): Shape4 {
  if (!isArray(shape)) throw new TypeError(`shape must be an array [batch, heads, n, d], got ${typeName(shape)}`);
  const length = readField(shape, 'length', 'shape.length') as number;
  if (length !== 4) {
    const dims = length <= 8 ? `[${Array.from({ length }, (_, i) => show(readField(shape, String(i), `shape[${i}]`))).join(', ')}]` : `${length} dims`;
    throw new RangeError(`shape must have rank 4 [batch, heads, n, d], got ${dims}`);
  }
  const names = ['batch', 'heads', 'sequence length', 'head_dim'];
  const dims = [0, 1, 2, 3].map((i) => readField(shape, String(i), `shape[${i}]`));
  dims.forEach((x: unknown, i) => {
    if (typeof x !== 'number') throw new TypeError(`shape[${i}] (${names[i]}) must be a number, got ${typeName(x)}`);
    if (!Number.isSafeInteger(x)) throw new RangeError(`shape[${i}] (${names[i]}) must be an integer, got ${x}`);
    if (x < 1) throw new RangeError(`${names[i]} must be >= 1, got ${x}`);
  });
  return dims as unknown as Shape4;
}

function checkDType(dtype: unknown): DType {
  if (typeof dtype !== 'string' || !(DTYPES as string[]).includes(dtype)) {
    throw new TypeError(`dtype must be one of ${DTYPES.join(', ')}, got ${show(dtype)}`);
  }
  return dtype as DType;
}

function checkLayout(layout: unknown): Layout {
  if (typeof layout !== 'string' || !(LAYOUTS as string[]).includes(layout)) {
    throw new TypeError(`layout must be 'bhnd' or 'bnhd', got ${show(layout)}`);
  }
  return layout as Layout;
}

interface Resolved {
  shape: Shape4;
  dtype: DType;
  layout: Layout;
  device: number;
}

const OPTION_FIELDS = ['shape', 'dtype', 'layout', 'device'];

/**
 * The fields of the tensor options `opts`, each read once: an object with
 * only `allowed` fields (a misspelt 'dtyp' would otherwise silently give
 * float32).
 */
function readOptions(opts: unknown, allowed: readonly string[]): Record<string, unknown> {
  if (opts === null || typeof opts !== 'object' || isArray(opts)) {
    throw new TypeError(`opts must be an object of tensor options (${allowed.join(', ')}), got ${typeName(opts)}`);
  }
  for (const key of ownKeys(opts, 'opts')) {
    if (!allowed.includes(key)) throw new TypeError(`unknown tensor option field '${key}' (allowed: ${allowed.join(', ')})`);
  }
  return Object.fromEntries(allowed.map((key) => [key, readField(opts, key, `opts.${key}`)]));
}

/** Byte length of a tensor, exact: at most 2^53 - 1 (computed in BigInt, so nothing overflows). */
function checkSize(shape: Shape4, dtype: DType): void {
  const elements = shape.reduce((a, b) => a * BigInt(b), 1n);
  const bytes = elements * BigInt(BYTES_PER_ELEMENT[dtype]);
  if (bytes > BigInt(Number.MAX_SAFE_INTEGER)) {
    throw new RangeError(`a tensor of ${elements} ${dtype} elements (${bytes} bytes) is larger than 2^53 - 1 bytes`);
  }
}

function resolveOptions(o: Record<string, unknown>): Resolved {
  const shape = checkShape(o.shape);
  const dtype = checkDType(o.dtype ?? 'float32');
  checkSize(shape, dtype);
  return { shape, dtype, layout: checkLayout(o.layout ?? 'bhnd'), device: resolveDevice(o.device as DeviceSpec | undefined) };
}

/** An element index or count: a safe integer in [0, max]. */
function checkIndex(x: unknown, name: string, max: number): number {
  if (typeof x !== 'number') throw new TypeError(`${name} must be a number, got ${typeof x}`);
  if (!Number.isSafeInteger(x) || x < 0 || x > max) throw new RangeError(`${name} must be an integer in [0, ${max}], got ${x}`);
  return x;
}

function checkData(data: unknown, r: Resolved, whole = true): TensorData {
  const want = r.dtype === 'float32' ? 'Float32Array' : 'Uint16Array';
  if (typedArrayName(data) !== want) {
    throw new TypeError(
      `data for ${r.dtype} must be a ${want}` +
        (r.dtype === 'float32' ? '' : ' of 16-bit patterns (see toBFloat16 / toFloat16)') +
        `, got ${typeName(data)}`,
    );
  }
  const typed = data as TensorData;
  const length = typedArrayLength(typed);
  const count = r.shape.reduce((a, b) => a * b, 1);
  if (whole && length !== count) {
    throw new RangeError(`data has ${length} elements but shape [${r.shape.join(', ')}] needs ${count}`);
  }
  // The addon cannot read shared memory, and the upload runs on a worker
  // thread: a SharedArrayBuffer's contents are copied here, on this thread.
  if (isShared(typed)) return want === 'Float32Array' ? Float32Array.from(typed) : Uint16Array.from(typed);
  return typed;
}

/** True for a handle made by the addon (the Tensor constructor and the ops take nothing else). */
export function isNativeTensor(x: unknown): x is NativeTensor {
  if (!isInstance(x, native().Tensor)) return false;
  try {
    // An object made from the handle's prototype has no native side: its getters throw.
    return typeof (x as NativeTensor).disposed === 'boolean';
  } catch {
    return false;
  }
}

/** True for a Tensor made by this module (not one forged from Tensor.prototype): it holds a native handle. */
export function isTensor(x: unknown): x is Tensor {
  return isMadeInstance(x, Tensor, 'native', isNativeTensor);
}

/**
 * Q [b, Hq, Nq, d] against K [b, Hkv, Nk, d] (and V like K): batch, head_dim,
 * GQA group, lengths and dtypes that fit together (RangeError / TypeError).
 * `packed`: q holds packed sequences and k/v packed sequences or page pools
 * (ragged batches), whose batch and lengths are checked per sequence instead.
 */
export function checkQkvShapes(q: ShapedData, k: ShapedData, v?: ShapedData, packed = false): void {
  const [bq, hq, nq, dq] = q.shape;
  const [bk, hk, nk, dk] = k.shape;
  if (!packed && bq !== bk) throw new RangeError(`batch sizes differ: q has ${bq}, k has ${bk}`);
  if (dq !== dk) throw new RangeError(`head_dim differs: q has ${dq}, k has ${dk}`);
  if (hq % hk !== 0) throw new RangeError(`query heads (${hq}) must be a multiple of kv heads (${hk})`);
  if (!packed && nq > nk) throw new RangeError(`query length (${nq}) must not exceed key length (${nk})`);
  if (q.dtype !== k.dtype) throw new TypeError(`dtypes differ: q is ${q.dtype}, k is ${k.dtype}`);
  if (!v) return;
  if (v.shape.some((x, i) => x !== k.shape[i])) {
    throw new RangeError(`k and v must have the same shape: k is [${k.shape.join(', ')}], v is [${v.shape.join(', ')}]`);
  }
  if (v.dtype !== q.dtype) throw new TypeError(`dtypes differ: q is ${q.dtype}, v is ${v.dtype}`);
}

/** What checkQkvShapes() reads of a tensor or a host input. */
export interface ShapedData {
  shape: readonly number[];
  dtype: DType;
}

/**
 * A hint for a plain object that looks like a Tensor: what a Tensor becomes
 * after postMessage() (structured clone keeps its fields, not its native storage).
 */
function postedHint(t: unknown): string {
  try {
    if (typeof t !== 'object' || t === null || utilTypes.isProxy(t)) return '';
    // A plain object of any realm (a clone may come from another one): its prototype's prototype is null.
    const proto: unknown = Object.getPrototypeOf(t);
    if (proto === null || Object.getPrototypeOf(proto) !== null) return '';
    const o = t as Record<string, unknown>;
    if (!Array.isArray(o.shape) || typeof o.dtype !== 'string') return '';
  } catch {
    return '';
  }
  return ' with a shape and a dtype (a Tensor passed through postMessage() arrives as a plain copy of its fields: tensors cannot cross threads; post the data and make the tensor in the thread that uses it)';
}

/** Whether two tensors share memory (one device, overlapping byte ranges). */
export function sharesMemory(a: Tensor, b: Tensor): boolean {
  return a.device === b.device && a.pointer < b.pointer + BigInt(b.byteLength) && b.pointer < a.pointer + BigInt(a.byteLength);
}

/** `t` (the argument `name`) as a live Tensor: TypeError for anything else, Error once disposed. */
export function checkTensor(t: unknown, name: string): Tensor {
  // isTensor also rejects objects made from Tensor.prototype without a native handle.
  if (!isTensor(t)) {
    const got = isInstance(t, Tensor) ? 'an object made from Tensor.prototype without a native tensor' : typeName(t);
    throw new TypeError(`${name} must be a Tensor (from tensor(), empty(), fromDevicePointer() or an op), got ${got}${postedHint(t)}`);
  }
  if (t.disposed) throw new Error(`${name}: tensor has been disposed`);
  return t;
}

export class Tensor {
  /** Logical shape [batch, heads, n, d], whatever the layout. */
  readonly shape: Shape4;
  readonly dtype: DType;
  readonly layout: Layout;
  /** 'cpu' or 'cuda:N' */
  readonly device: string;
  /** On outputs of attention(): milliseconds per timed run of the op that produced it. */
  timesMs?: number[];
  /** @internal the addon's tensor */
  readonly native: NativeTensor;

  /** @internal use tensor(), empty() or fromDevicePointer() */
  constructor(handle: NativeTensor, shape: Shape4, dtype: DType, layout: Layout) {
    if (!isNativeTensor(handle)) {
      throw new TypeError('handle must be a native tensor: create tensors with tensor(), empty() or fromDevicePointer()');
    }
    this.native = handle;
    this.shape = Object.freeze([...shape]) as unknown as Shape4;
    this.dtype = dtype;
    this.layout = layout;
    this.device = deviceName(handle.device);
  }

  get byteLength(): number {
    return this.native.byteLength;
  }

  /** Number of elements (may exceed what one typed array holds: see read() / write()). */
  get length(): number {
    return this.shape[0] * this.shape[1] * this.shape[2] * this.shape[3];
  }

  get disposed(): boolean {
    return this.native.disposed;
  }

  /** Device address as a bigint (to hand the memory to another library). */
  get pointer(): bigint {
    return this.native.pointer;
  }

  /** @internal throws when disposed */
  live(): NativeTensor {
    if (this.native.disposed) throw new Error('tensor has been disposed');
    return this.native;
  }

  /** Copy of the data in this tensor's layout: Float32Array, or Uint16Array bits for 16-bit dtypes. */
  async toHost(): Promise<TensorData> {
    if (this.length > MAX_ARRAY_LENGTH) {
      throw new RangeError(
        `the tensor has ${this.length} elements, more than one typed array holds (${MAX_ARRAY_LENGTH}): read it in parts with read(offset, length)`,
      );
    }
    return this.wrap(await whileGpuWorks(this.native.device, this.live().toHost()));
  }

  private wrap(buffer: ArrayBuffer): TensorData {
    return this.dtype === 'float32' ? new Float32Array(buffer) : new Uint16Array(buffer);
  }

  /**
   * Elements [offset, offset + length) of the data in memory order (this
   * tensor's layout), as a Float32Array or Uint16Array bits for 16-bit dtypes.
   * For tensors larger than one typed array. Runs off the event loop.
   */
  async read(offset: number, length: number): Promise<TensorData> {
    const n = this.length;
    checkIndex(offset, 'offset', n);
    checkIndex(length, 'length', Math.min(n, MAX_ARRAY_LENGTH));
    if (offset + length > n) {
      throw new RangeError(`elements [${offset}, ${offset + length}) run past the tensor's ${n}`);
    }
    return this.wrap(await whileGpuWorks(this.native.device, this.live().toHost(offset, length)));
  }

  /**
   * Writes `data` (a Float32Array, or Uint16Array bits for 16-bit dtypes) to
   * elements [offset, offset + data.length) in memory order. For filling
   * tensors larger than one typed array in parts. Runs off the event loop: do
   * not change `data` until the promise settles.
   */
  async write(data: TensorData, offset = 0): Promise<void> {
    // checkData copies shared memory, which the addon cannot read.
    const typed = checkData(data, { shape: this.shape, dtype: this.dtype, layout: this.layout, device: -1 }, false);
    const n = this.length;
    checkIndex(offset, 'offset', n);
    const length = typedArrayLength(typed);
    if (offset + length > n) {
      throw new RangeError(`${length} elements at offset ${offset} run past the tensor's ${n}`);
    }
    await whileGpuWorks(this.native.device, this.live().upload(typed, offset));
  }

  /** Copy of the data as float32, in this tensor's layout. */
  async toFloat32(): Promise<Float32Array> {
    const data = await this.toHost();
    if (this.dtype === 'float32') return data as Float32Array;
    return this.dtype === 'bfloat16' ? fromBFloat16(data as Uint16Array) : fromFloat16(data as Uint16Array);
  }

  /** A copy on another device (same dtype and layout), through the host in parts of at most 2^26 elements. */
  async to(device: DeviceSpec): Promise<Tensor> {
    const target = resolveDevice(device);
    this.live();
    const out = empty(this.shape, { dtype: this.dtype, layout: this.layout, device: deviceName(target) as DeviceSpec });
    try {
      for (let at = 0; at < this.length; at += CHUNK_ELEMENTS) {
        await out.write(await this.read(at, Math.min(CHUNK_ELEMENTS, this.length - at)), at);
      }
    } catch (e) {
      out.dispose();
      throw e;
    }
    return out;
  }

  /**
   * Copies `src` into this tensor: same device, dtype, shape and layout. Runs
   * like an op (off the event loop; with `stream`, on that CUDA stream, see
   * RunOptions.stream).
   */
  async copyFrom(src: Tensor, options: { stream?: bigint } | null = {}): Promise<void> {
    checkTensor(src, 'src');
    if (options !== null && (typeof options !== 'object' || isArray(options))) throw new TypeError(`opts must be an object { stream? }, got ${typeName(options)}`);
    const { stream: streamArg } = checkOptionFields(options, ['stream'], 'copyFrom option');
    if (src.device !== this.device) {
      throw new Error(`all tensors must be on the same device (got ${this.device} and ${src.device})`);
    }
    if (src.dtype !== this.dtype) throw new TypeError(`dtypes differ: this is ${this.dtype}, src is ${src.dtype}`);
    if (src.shape.some((x, i) => x !== this.shape[i])) {
      throw new RangeError(`shapes differ: this is [${this.shape.join(', ')}], src is [${src.shape.join(', ')}]`);
    }
    if (src.layout !== this.layout) throw new RangeError(`layouts differ: this is ${this.layout}, src is ${src.layout}`);
    const stream = checkStream(streamArg, this.device, 'stream');
    // Views of one buffer may overlap; a device copy between overlapping
    // ranges is undefined. The same range is already there.
    if (this.pointer === src.pointer) return;
    if (sharesMemory(this, src)) throw new RangeError('copyFrom: src shares memory with this tensor (overlapping views of one buffer)');
    await whileGpuWorks(this.native.device, native().copy(this.live(), src.live(), stream));
  }

  /**
   * A tensor of this dtype and device over elements [offset, offset +
   * count(shape)) of this tensor's memory, in memory order: no copy, writes
   * through either show in both. For a buffer reused at changing lengths (a
   * `'bnhd'` tensor's first n tokens are `view([1, H, n, d])`). The view keeps
   * the memory alive: it is freed once this tensor and its views are all
   * disposed (or collected). `offset` (elements, default 0) must start on a
   * 64-byte boundary of the memory.
   */
  view(shape: Shape4, opts: { offset?: number; layout?: Layout } | null = {}): Tensor {
    const o = checkOptionFields(opts, ['offset', 'layout'], 'view option');
    const s = checkShape(shape);
    const layout = o.layout === undefined ? this.layout : checkLayout(o.layout);
    const n = this.length;
    const offset = o.offset === undefined ? 0 : checkIndex(o.offset, 'offset', n);
    const count = s[0] * s[1] * s[2] * s[3];
    if (offset + count > n) {
      throw new RangeError(`a view of ${count} elements at offset ${offset} runs past the tensor's ${n}`);
    }
    const bytes = BYTES_PER_ELEMENT[this.dtype];
    if ((offset * bytes) % VIEW_ALIGNMENT !== 0) {
      throw new RangeError(`offset ${offset} (${offset * bytes} bytes) must be a multiple of ${VIEW_ALIGNMENT / bytes} elements (${VIEW_ALIGNMENT} bytes)`);
    }
    const handle = this.live().view([...s], LAYOUTS.indexOf(layout), offset);
    return new Tensor(handle, s, this.dtype, layout);
  }

  /** Frees the memory now (idempotent); ops already running keep it until they finish. */
  dispose(): void {
    this.native.dispose();
  }
}

/** A tensor holding a copy of `data`; the copy runs off the event loop. Do not modify `data` until it resolves. */
export async function tensor(data: TensorData, opts: TensorOptions): Promise<Tensor> {
  const r = resolveOptions(readOptions(opts, OPTION_FIELDS));
  const checked = checkData(data, r);
  const Native = native().Tensor;
  const handle = new Native(r.device, DTYPE_CODES[r.dtype], [...r.shape], LAYOUTS.indexOf(r.layout));
  try {
    await whileGpuWorks(handle.device, handle.upload(checked));
  } catch (e) {
    handle.dispose();
    throw e;
  }
  return new Tensor(handle, r.shape, r.dtype, r.layout);
}

/**
 * A zero-filled tensor, allocated on its device without host data (on a GPU:
 * stream-ordered allocation and memset; large CPU tensors take fresh zero
 * pages from the OS). Fill it with write() when it is too large for tensor().
 */
export function empty(shape: Shape4, opts: Omit<TensorOptions, 'shape'> | null = {}): Tensor {
  const r = resolveOptions({ ...readOptions(opts ?? {}, ['dtype', 'layout', 'device']), shape });
  const Native = native().Tensor;
  const handle = new Native(r.device, DTYPE_CODES[r.dtype], [...r.shape], LAYOUTS.indexOf(r.layout));
  return new Tensor(handle, r.shape, r.dtype, r.layout);
}

/**
 * A non-owning view of existing device memory (e.g. from another CUDA
 * library). The caller keeps that memory alive while the tensor is used.
 */
export function fromDevicePointer(ptr: bigint, opts: TensorOptions): Tensor {
  if (typeof ptr !== 'bigint') throw new TypeError(`ptr must be a bigint device address, got ${typeName(ptr)}`);
  if (ptr <= 0n || ptr >= 2n ** 64n) throw new RangeError('ptr must be a non-zero 64-bit address');
  const o = readOptions(opts, OPTION_FIELDS);
  const r = resolveOptions({ ...o, device: o.device ?? 'cuda' });
  if (r.device < 0) throw new RangeError('fromDevicePointer needs a CUDA device');
  const handle = native().Tensor.wrap(r.device, DTYPE_CODES[r.dtype], [...r.shape], LAYOUTS.indexOf(r.layout), ptr);
  return new Tensor(handle, r.shape, r.dtype, r.layout);
}

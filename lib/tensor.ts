// Tensors: logical [batch, heads, n, d] arrays on the CPU or a CUDA device,
// in 'bhnd' or 'bnhd' memory layout, backed by the addon's native tensor.
import { isArray, isInstance, isShared, ownKeys, readField, show, typeName, typedArrayLength, typedArrayName } from './args';
import { fromBFloat16, fromFloat16 } from './dtype';
import { native, NativeDType, NativeTensor } from './native';
import type { DType, DeviceSpec, Layout } from './types';

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
const LAYOUTS: readonly Layout[] = ['bhnd', 'bnhd'];

/** 'cpu' -> -1, 'cuda:N' -> N. Throws when the device is not usable, with the reason. */
export function resolveDevice(spec: DeviceSpec | undefined): number {
  const s: unknown = spec ?? 'auto';
  if (typeof s !== 'string') {
    throw new TypeError(`device must be a string ('auto', 'cpu', 'cuda' or 'cuda:N'), got ${typeName(s)}`);
  }
  if (s === 'cpu') return -1;
  const i = native().info();
  if (s === 'auto') return i.devices.length > 0 && i.cudaUnavailableReason === null ? 0 : -1;
  const m = /^cuda(?::(\d+))?$/.exec(s);
  if (!m) throw new RangeError(`device must be 'auto', 'cpu', 'cuda' or 'cuda:N', got '${s}'`);
  const index = m[1] === undefined ? 0 : Number(m[1]);
  if (i.cudaUnavailableReason !== null) {
    throw new Error(`device '${s}' is not available: ${i.cudaUnavailableReason}`);
  }
  if (index >= i.devices.length) {
    throw new Error(`device '${s}' is not available: only ${i.devices.length} CUDA device(s) present`);
  }
  return index;
}

/** 'cpu' or 'cuda:N' */
export function deviceName(index: number): string {
  return index < 0 ? 'cpu' : `cuda:${index}`;
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

function resolveOptions(o: Record<string, unknown>): Resolved {
  return {
    shape: checkShape(o.shape),
    dtype: checkDType(o.dtype ?? 'float32'),
    layout: checkLayout(o.layout ?? 'bhnd'),
    device: resolveDevice(o.device as DeviceSpec | undefined),
  };
}

function checkData(data: unknown, r: Resolved): TensorData {
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
  if (length !== count) {
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
  if (!isInstance(x, Tensor)) return false;
  try {
    const d = Object.getOwnPropertyDescriptor(x, 'native');
    return d !== undefined && 'value' in d && isNativeTensor(d.value);
  } catch {
    return false;
  }
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
    const buffer = await this.live().toHost();
    return this.dtype === 'float32' ? new Float32Array(buffer) : new Uint16Array(buffer);
  }

  /** Copy of the data as float32, in this tensor's layout. */
  async toFloat32(): Promise<Float32Array> {
    const data = await this.toHost();
    if (this.dtype === 'float32') return data as Float32Array;
    return this.dtype === 'bfloat16' ? fromBFloat16(data as Uint16Array) : fromFloat16(data as Uint16Array);
  }

  /** A copy on another device (same dtype and layout). */
  async to(device: DeviceSpec): Promise<Tensor> {
    const target = resolveDevice(device);
    const data = await this.toHost();
    return tensor(data, { shape: this.shape, dtype: this.dtype, layout: this.layout, device: deviceName(target) as DeviceSpec });
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
    await handle.upload(checked);
  } catch (e) {
    handle.dispose();
    throw e;
  }
  return new Tensor(handle, r.shape, r.dtype, r.layout);
}

/** A zero-filled tensor. */
export function empty(shape: Shape4, opts: Omit<TensorOptions, 'shape'> = {}): Tensor {
  const r = resolveOptions({ ...readOptions(opts, ['dtype', 'layout', 'device']), shape });
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

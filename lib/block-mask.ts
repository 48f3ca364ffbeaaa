// BlockMask: the selected key blocks of every query-block row, on the device,
// in compact rows (CSR) as block-sparse libraries take them: counts
// (FlexAttention's kv_num_blocks), row pointers (FlashInfer's indptr) and the
// selected indices of all rows, sized by the selection, never nq * nk. The
// dense uint8 mask is stored only when asked for. blockMask() builds one from
// block lists given by the caller (another estimator, a test).
import { blockGrid, visibleBlocks } from './grid';
import { native, NativeDType, type NativeBlockList, type NativeTensor } from './native';
import { isArray, readField, show, typedArrayName, typeName } from './args';
import { checkOptionFields } from './options';
import { deviceName, isNativeTensor, MAX_ARRAY_LENGTH, resolveDevice, VIEW_ALIGNMENT } from './tensor';
import { whileGpuWorks } from './wait-policy';
import type { DeviceSpec, HostBlockMask } from './types';

/** Device parts of a mask: counts i32 [b, H, nq], rowPtr i64 [rows + 1], indices i32, temps f32 [b, H, 2], mask u8 (optional). */
export interface BlockMaskParts {
  counts: NativeTensor;
  rowPtr: NativeTensor;
  indices: NativeTensor;
  temps: NativeTensor;
  mask: NativeTensor | null;
}

/** Geometry of a mask: the tensors it was made for and its block size. */
export interface BlockMaskShape {
  batch: number;
  heads: number;
  queryLength: number;
  keyLength: number;
  block: number;
}

/** Selected key blocks per (batch, query head, query block), kept on the tensors' device. */
export class BlockMask {
  readonly batch: number;
  readonly heads: number;
  /** Query and key blocks, on the absolute token grid: nq = nk - floor((keyLength - queryLength) / block). */
  readonly nq: number;
  readonly nk: number;
  readonly block: number;
  /** Query and key lengths in tokens. */
  readonly queryLength: number;
  readonly keyLength: number;
  readonly device: string;
  /** Selected blocks over all rows (rowPtr[rows]). */
  readonly selected: number;
  /** Milliseconds per timed run of the estimate() that produced this mask ([ms] of the single run by default). */
  timesMs: number[] = [];
  /** @internal */
  readonly parts: BlockMaskParts;

  /** @internal created by estimate(), prefill() and blockMask() */
  constructor(shape: BlockMaskShape, device: string, selected: number, parts: BlockMaskParts) {
    if (!validConstruction(shape, device, selected, parts)) {
      throw new TypeError('BlockMask is made by estimate(), prefill() or blockMask(): shape, device, selection count and native parts');
    }
    this.batch = shape.batch;
    this.heads = shape.heads;
    this.queryLength = shape.queryLength;
    this.keyLength = shape.keyLength;
    this.block = shape.block;
    const grid = blockGrid(shape.queryLength, shape.keyLength, shape.block);
    this.nq = grid.nq;
    this.nk = grid.nk;
    this.device = device;
    this.selected = selected;
    this.parts = parts;
  }

  get disposed(): boolean {
    return this.parts.counts.disposed;
  }

  /** Device bytes this mask holds. */
  get byteLength(): number {
    const p = this.parts;
    return p.counts.byteLength + p.rowPtr.byteLength + p.indices.byteLength + p.temps.byteLength + (p.mask ? p.mask.byteLength : 0);
  }

  /** @internal */
  live(): BlockMaskParts {
    if (this.disposed) throw new Error('block mask has been disposed');
    return this.parts;
  }

  /** @internal the list attention and massRecall read */
  list(): NativeBlockList {
    const p = this.live();
    return { counts: p.counts, rowPtr: p.rowPtr, indices: p.indices };
  }

  /**
   * Copies the selection to the host: counts, row pointers, indices,
   * temperatures, and the dense [b, H, nq, nk] mask (expanded on the host from
   * the rows; `{ mask: false }` skips it for very long inputs).
   */
  async toHost(options: { mask?: boolean } | null = {}): Promise<HostBlockMask> {
    if (options !== null && (typeof options !== 'object' || isArray(options))) throw new TypeError(`toHost options must be an object { mask? }, got ${typeName(options)}`);
    const opts = checkOptionFields(options, ['mask'], 'toHost option', 'toHost options') as { mask?: boolean }; // null: the defaults
    if (opts.mask !== undefined && typeof opts.mask !== 'boolean') throw new TypeError(`toHost: mask must be a boolean, got ${typeName(opts.mask)}`);
    const rows = this.batch * this.heads * this.nq;
    if (opts.mask !== false && rows * this.nk > MAX_ARRAY_LENGTH) {
      throw new RangeError(
        `toHost: the dense mask would have ${rows * this.nk} entries (${rows} rows x ${this.nk} key blocks), more than one typed array holds (${MAX_ARRAY_LENGTH}); call toHost({ mask: false }) for the compact rows`,
      );
    }
    const p = this.live();
    const [counts, rowPtr, indices, temps] = await Promise.all([
      p.counts.toHost(),
      p.rowPtr.toHost(),
      p.indices.toHost(),
      p.temps.toHost(),
    ]);
    const c = new Int32Array(counts);
    const rp = Float64Array.from(new BigInt64Array(rowPtr), (x) => Number(x));
    const idx = new Int32Array(indices).subarray(0, this.selected);
    let mask = new Uint8Array(0);
    if (opts.mask !== false) {
      mask = new Uint8Array(c.length * this.nk);
      for (let r = 0; r < c.length; r++) {
        for (let t = rp[r]; t < rp[r + 1]; t++) mask[r * this.nk + idx[t]] = 1;
      }
    }
    return {
      batch: this.batch,
      heads: this.heads,
      nq: this.nq,
      nk: this.nk,
      block: this.block,
      counts: c,
      rowPtr: rp,
      indices: idx,
      temperatures: new Float32Array(temps),
      mask,
    };
  }

  /** Selected visible blocks / all visible blocks, over every batch, head and row (causal). */
  density(): number {
    return densityOf(this, this.selected);
  }

  /** Frees the device memory now (idempotent). */
  dispose(): void {
    const p = this.parts;
    for (const t of [p.counts, p.rowPtr, p.indices, p.temps, p.mask]) t?.dispose();
  }
}

/** The constructor's arguments as the library passes them (never throws). */
function validConstruction(shape: unknown, device: unknown, selected: unknown, parts: unknown): boolean {
  try {
    if (shape === null || typeof shape !== 'object' || parts === null || typeof parts !== 'object') return false;
    const s = shape as Record<string, unknown>;
    const p = parts as Record<string, unknown>;
    const dims = [s.batch, s.heads, s.queryLength, s.keyLength, s.block];
    return (
      dims.every((x) => typeof x === 'number' && Number.isSafeInteger(x) && x >= 1) &&
      typeof device === 'string' &&
      /^(cpu|cuda:\d+)$/.test(device) &&
      typeof selected === 'number' &&
      Number.isSafeInteger(selected) &&
      selected >= 0 &&
      [p.counts, p.rowPtr, p.indices, p.temps].every((t) => isNativeTensor(t)) &&
      (p.indices as NativeTensor).byteLength === 4 * Math.max(1, selected) &&
      (p.mask === null || isNativeTensor(p.mask))
    );
  } catch {
    return false;
  }
}

/** Selected visible blocks / all visible blocks for a selection count. */
export function densityOf(shape: BlockMaskShape, selected: number): number {
  const { nq, nk } = blockGrid(shape.queryLength, shape.keyLength, shape.block);
  let visible = 0;
  for (let i = 0; i < nq; i++) visible += visibleBlocks(i, nq, nk);
  return selected / (visible * shape.batch * shape.heads);
}

/** A dtype code of the addon (a value of NativeDType). */
type DTypeCode = (typeof NativeDType)[keyof typeof NativeDType];

/** Where an estimation writes its selection (the indices come back with the result). */
export type SelectionParts = { counts: NativeTensor; rowPtr: NativeTensor; temps: NativeTensor; mask: NativeTensor | null };
type SelectionPart = 'counts' | 'rowPtr' | 'temps' | 'mask';

/** Disposes the tensors of a selection (null: none; parts not yet made are skipped). */
export function disposeSelection(parts: SelectionParts | null): void {
  if (parts) for (const x of Object.values(parts) as Array<NativeTensor | null>) x?.dispose();
}

/** The tensors of one selection: counts, rowPtr, temps and (denseMask) the dense mask, with their dtypes and shapes. */
function selectionDims(shape: BlockMaskShape, denseMask: boolean): Array<[SelectionPart, DTypeCode, number[]]> {
  const { nq, nk } = blockGrid(shape.queryLength, shape.keyLength, shape.block);
  const rows = shape.batch * shape.heads * nq;
  const parts: Array<[SelectionPart, DTypeCode, number[]]> = [
    ['counts', NativeDType.I32, [shape.batch, shape.heads, nq]],
    ['rowPtr', NativeDType.I64, [rows + 1]],
    ['temps', NativeDType.F32, [shape.batch, shape.heads, 2]],
  ];
  if (denseMask) parts.push(['mask', NativeDType.U8, [shape.batch, shape.heads, nq, nk]]);
  return parts;
}

/** SelectionParts from one tensor a part (dispose what was made if one throws). */
function makeParts(dims: Array<[SelectionPart, DTypeCode, number[]]>, make: (dtype: DTypeCode, shape: number[], part: number) => NativeTensor): SelectionParts {
  const out: SelectionParts = { counts: null as never, rowPtr: null as never, temps: null as never, mask: null };
  try {
    dims.forEach(([key, dtype, shape], j) => (out[key] = make(dtype, shape, j)));
  } catch (e) {
    disposeSelection(out);
    throw e;
  }
  return out;
}

export function allocateSelection(shape: BlockMaskShape, device: number, denseMask: boolean): SelectionParts {
  const N = native();
  return makeParts(selectionDims(shape, denseMask), (dtype, dims) => new N.Tensor(device, dtype, dims, 0));
}

const DTYPE_BYTES: Partial<Record<DTypeCode, number>> = { [NativeDType.I32]: 4, [NativeDType.I64]: 8, [NativeDType.F32]: 4, [NativeDType.U8]: 1 };

/**
 * allocateSelection for many selections at once (null entries: none): one
 * zero-filled allocation per kind of tensor, each selection's tensors views
 * into it. On a GPU that is three or four allocations for a ragged batch,
 * where each selection took three or four, each a few CUDA calls on the
 * calling thread. The memory goes when the last view of it is disposed.
 */
export function allocateSelections(shapes: ReadonlyArray<BlockMaskShape | null>, device: number, denseMask: boolean): Array<SelectionParts | null> {
  const N = native();
  // Each tensor's element offset in its kind's allocation, starts 64-byte aligned.
  const totals = new Map<DTypeCode, number>();
  const plans = shapes.map((shape) => {
    if (!shape) return null;
    const dims = selectionDims(shape, denseMask);
    const at = dims.map(([, dtype, d]) => {
      const size = DTYPE_BYTES[dtype]!;
      const start = totals.get(dtype) ?? 0;
      totals.set(dtype, start + Math.ceil((d.reduce((a, b) => a * b, 1) * size) / VIEW_ALIGNMENT) * (VIEW_ALIGNMENT / size));
      return start;
    });
    return { dims, at };
  });
  const parents = new Map<DTypeCode, NativeTensor>();
  const made: Array<SelectionParts | null> = [];
  try {
    for (const [dtype, total] of totals) parents.set(dtype, new N.Tensor(device, dtype, [Math.max(1, total)], 0));
    for (const plan of plans) made.push(plan ? makeParts(plan.dims, (dtype, dims, j) => parents.get(dtype)!.view(dims, 0, plan.at[j])) : null);
  } catch (e) {
    made.forEach(disposeSelection);
    throw e;
  } finally {
    for (const p of parents.values()) p.dispose(); // the views keep the memory
  }
  return made;
}

/** Block lists given by the caller: one ascending list per row, or compact rows. */
export type BlockLists = ArrayLike<ArrayLike<number>> | { rowPtr: ArrayLike<number>; indices: ArrayLike<number> };

export interface BlockMaskOptions extends BlockMaskShape {
  /** Default 'auto' (as tensor()). */
  device?: DeviceSpec;
}

function hasField(x: object, key: string): boolean {
  try {
    return key in x;
  } catch (e) {
    throw new TypeError(`lists could not be read: ${e instanceof Error ? e.message : show(e)}`, { cause: e });
  }
}

function positiveInt(name: string, x: unknown, min: number, max = Number.MAX_SAFE_INTEGER): number {
  if (typeof x !== 'number' || !Number.isSafeInteger(x) || x < min || x > max) {
    const range = max === Number.MAX_SAFE_INTEGER ? `>= ${min}` : `in [${min}, ${max}]`;
    throw new RangeError(`${name} must be an integer ${range}, got ${show(x)}`);
  }
  return x;
}

// The block sizes the attention takes on every backend (the addon's attention
// params); a mask of another block could be made but not used.
const MASK_FIELDS: readonly string[] = ['batch', 'heads', 'queryLength', 'keyLength', 'block', 'device'];
const MIN_MASK_BLOCK = 16;
const MAX_MASK_BLOCK = 1024;

// A module constant: a global looked up once per selected block is slow in
// sandboxed contexts (jest's test environment: 16 s for 1.3e8 lookups).
const isInteger = Number.isInteger;

/**
 * Copies one row's key blocks to out[base...] while checking them (ascending,
 * distinct integers below `visible`); the position of the first bad one, or -1.
 * A function of its own so that the engine optimizes the loop that runs over
 * every selected block.
 */
function copyRow(row: ArrayLike<number>, len: number, out: Int32Array, base: number, visible: number): number {
  let prev = -1;
  for (let t = 0; t < len; t++) {
    const j = row[t];
    if (typeof j !== 'number' || !isInteger(j) || j <= prev || j >= visible) return t;
    out[base + t] = j;
    prev = j;
  }
  return -1;
}

// Indices room to start from where the rows do not say their total (it doubles as needed).
const INDICES_START = 1024;

/** Indices the compact rows hold, where their row pointers say so plainly (INDICES_START otherwise). */
function csrTotal(rp: ArrayLike<number> | null, rows: number): number {
  if (rp === null || rows < 1) return INDICES_START;
  let total = 0;
  for (let r = 0; r < rows; r++) {
    const n = rp[r + 1] - rp[r];
    if (!Number.isSafeInteger(n) || n < 0) return INDICES_START; // the row loop names the bad range
    total += n;
  }
  return Math.min(Math.max(total, 1), MAX_ARRAY_LENGTH);
}

/**
 * A BlockMask from caller-given block lists. Rows are query-block rows,
 * row = (b * heads + h) * nq + i with nq on the block grid (see BlockMask.nq);
 * each row lists ascending, distinct key blocks j <= i + nk - nq (visible).
 * Either one list per row, or compact rows { rowPtr (rows + 1 entries), indices }.
 */
export async function blockMask(lists: BlockLists, opts: BlockMaskOptions): Promise<BlockMask> {
  if (opts === null || typeof opts !== 'object' || isArray(opts)) {
    throw new TypeError(`opts must be an object { batch, heads, queryLength, keyLength, block, device? }, got ${typeName(opts)}`);
  }
  const fields = checkOptionFields(opts, MASK_FIELDS, 'blockMask option');
  const field = (key: string) => fields[key];
  const batch = positiveInt('opts.batch', field('batch'), 1);
  const heads = positiveInt('opts.heads', field('heads'), 1);
  const queryLength = positiveInt('opts.queryLength', field('queryLength'), 1);
  const keyLength = positiveInt('opts.keyLength', field('keyLength'), 1);
  const block = positiveInt('opts.block', field('block'), MIN_MASK_BLOCK, MAX_MASK_BLOCK);
  const deviceSpec = field('device') as DeviceSpec | undefined;
  if (queryLength > keyLength) throw new RangeError(`opts.queryLength (${queryLength}) must not exceed opts.keyLength (${keyLength})`);
  const shape = { batch, heads, queryLength, keyLength, block };
  const { nq, nk } = blockGrid(queryLength, keyLength, block);
  const rows = batch * heads * nq;
  if (lists === null || typeof lists !== 'object') throw new TypeError(`lists must be an array of per-row lists or { rowPtr, indices }, got ${typeName(lists)}`);
  const csr = hasField(lists, 'rowPtr') && hasField(lists, 'indices');
  const rpGiven = csr ? readField(lists, 'rowPtr', 'lists.rowPtr') : null;
  // Row pointers in int64 (the form a BlockMask keeps them in) are read as numbers: an
  // entry past 2^53 becomes an unsafe integer, which the row loop rejects.
  const rpName = typedArrayName(rpGiven);
  const rp = (rpName === 'BigInt64Array' || rpName === 'BigUint64Array' ? Float64Array.from(rpGiven as BigInt64Array, Number) : rpGiven) as ArrayLike<number> | null;
  const ix = csr ? (readField(lists, 'indices', 'lists.indices') as ArrayLike<number>) : null;
  const count = csr ? rows + 1 : readField(lists, 'length', 'lists.length');
  if (csr && (rp === null || typeof rp !== 'object' || ix === null || typeof ix !== 'object')) {
    throw new TypeError('lists.rowPtr and lists.indices must be arrays of integers');
  }
  // An object without a length (a DataView, a plain object) would read as empty rows.
  const ixLength = csr ? readField(ix as object, 'length', 'lists.indices.length') : 0;
  if (csr && !(typeof ixLength === 'number' && Number.isSafeInteger(ixLength) && ixLength >= 0)) {
    throw new TypeError(`lists.indices must be an array of integers (with a length), got ${typeName(ix)}`);
  }
  // A typed array's rows are read as views (no copy); anything else is copied row by row.
  const ixTyped = csr && typedArrayName(ix) !== undefined;

  const counts = new Int32Array(rows);
  const rowPtr = new BigInt64Array(rows + 1);
  // The indices in a typed buffer, sized up front from compact rows (growing
  // by doubling otherwise): a JS array of more than ~10^8 numbers (a 1M-token
  // selection has 2 * 10^8) aborts the process.
  let flat = new Int32Array(csrTotal(rp, rows));
  let selected = 0;
  const reserve = (n: number): void => {
    if (selected + n <= flat.length) return;
    if (selected + n > MAX_ARRAY_LENGTH) {
      throw new RangeError(`lists: more than ${MAX_ARRAY_LENGTH} selected blocks, more than one typed array holds`);
    }
    const grown = new Int32Array(Math.min(MAX_ARRAY_LENGTH, Math.max(2 * flat.length, selected + n)));
    grown.set(flat.subarray(0, selected));
    flat = grown;
  };
  if (csr && (rp as ArrayLike<number>).length !== rows + 1) {
    throw new RangeError(`lists.rowPtr must have ${rows + 1} entries (rows + 1), got ${String((rp as ArrayLike<number>).length)}`);
  }
  if (!csr && count !== rows) {
    throw new RangeError(`lists must have one list per row: ${rows} rows (batch ${batch} x heads ${heads} x nq ${nq}), got ${show(count)}`);
  }
  // Row r's key blocks and their count (read once: a getter may answer
  // differently the next time).
  const rowList = (r: number): { row: ArrayLike<number>; len: number } => {
    if (rp !== null && ix !== null) {
      const a = rp[r];
      const b = rp[r + 1];
      if (!Number.isSafeInteger(a) || !Number.isSafeInteger(b) || a < 0 || b < a || b > (ixLength as number)) {
        throw new RangeError(`lists.rowPtr[${r}..${r + 1}] = ${show(a)}..${show(b)} is not a valid range of lists.indices`);
      }
      return { row: ixTyped ? (ix as unknown as Int32Array).subarray(a, b) : (Array.prototype.slice.call(ix, a, b) as number[]), len: b - a };
    }
    const row = readField(lists, String(r), `lists[${r}]`) as ArrayLike<number>;
    const len = row === null || typeof row !== 'object' ? undefined : readField(row, 'length', `lists[${r}].length`);
    if (typeof len !== 'number') throw new TypeError(`lists[${r}] must be an array of key blocks, got ${typeName(row)}`);
    if (!Number.isSafeInteger(len) || len < 0) throw new RangeError(`lists[${r}].length must be an integer >= 0, got ${show(len)}`);
    return { row, len };
  };
  for (let r = 0; r < rows; r++) {
    const { row, len } = rowList(r);
    const visible = visibleBlocks(r % nq, nq, nk);
    if (len > visible) {
      throw new RangeError(`lists: row ${r} lists ${len} key blocks; query block ${r % nq} sees ${visible}, each at most once`);
    }
    reserve(len);
    const bad = copyRow(row, len, flat, selected, visible);
    if (bad >= 0) {
      throw new RangeError(
        `lists: row ${r}: key blocks must be ascending distinct integers in [0, ${visible - 1}] (visible to query block ${r % nq}), got ${show(row[bad])} at position ${bad}`,
      );
    }
    selected += len;
    counts[r] = len;
    rowPtr[r + 1] = BigInt(selected);
  }
  const device = resolveDevice(deviceSpec);
  const N = native();
  // Uploaded off the event loop (a tensor made with its data would copy and
  // wait for the device on this thread), all four at once.
  const made: NativeTensor[] = [];
  const upload = async (dtype: number, dims: number[], data: ArrayBufferView): Promise<NativeTensor> => {
    const t = new N.Tensor(device, dtype, dims, 0);
    made.push(t);
    await whileGpuWorks(device, t.upload(data));
    return t;
  };
  try {
    const [c, rp, ix, temps] = await Promise.all([
      upload(NativeDType.I32, [batch, heads, nq], counts),
      upload(NativeDType.I64, [rows + 1], rowPtr),
      upload(NativeDType.I32, [Math.max(1, selected)], flat.subarray(0, Math.max(1, selected))),
      upload(NativeDType.F32, [batch, heads, 2], new Float32Array(batch * heads * 2).fill(NaN)),
    ]);
    const parts: BlockMaskParts = { counts: c, rowPtr: rp, indices: ix, temps, mask: null };
    return new BlockMask(shape, deviceName(device), selected, parts);
  } catch (e) {
    for (const t of made) t.dispose();
    throw e;
  }
}


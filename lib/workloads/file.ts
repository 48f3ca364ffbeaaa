// Q/K/V from files: NumPy .npy (format versions 1, 2 and 3) and .safetensors.
//
// Layout (both formats): Q [batch, Hq, Nq, d], K and V [batch, Hkv, Nk, d],
// row-major, RoPE already applied to Q and K. A 3-D tensor [H, N, d] means
// batch 1. Hq must be a multiple of Hkv and Nq <= Nk (the queries are the last
// Nq positions).
//
// Element types:
//   .npy          '<f4' float32, '<f2' float16, '<f8' float64 (read as float32),
//                 '<u2' / '|V2' / '<V2': raw 16-bit patterns, which is how
//                 bfloat16 is usually saved from NumPy; they need the caller to
//                 say what the bits are (dtype 'bfloat16' or 'float16').
//   .safetensors  F32, F16, BF16 (F64 is read as float32).
// Data is little-endian. The result is converted to `dtype` when one is given;
// otherwise the three tensors must share one dtype.

import * as fs from 'fs';
import * as path from 'path';
import type { DType, Layout } from '../types';
import { fromBFloat16, fromFloat16, toBFloat16, toFloat16 } from '../dtype';

export type HostData = Float32Array | Uint16Array;

/** One tensor read from a file. */
export interface LoadedTensor {
  /** file it came from */
  file: string;
  /** tensor name (safetensors) or file base name (.npy) */
  name: string;
  dtype: DType;
  shape: number[];
  /** Float32Array for float32, Uint16Array of bit patterns for float16/bfloat16 */
  data: HostData;
}

/** Q/K/V and their geometry, in the same form as the generated workloads. */
export interface FileWorkload {
  q: HostData;
  k: HostData;
  v: HostData;
  shape: { batch: number; hq: number; hkv: number; nq: number; nk: number; d: number };
  dtype: DType;
  layout: Layout;
  /** where the tensors came from, e.g. ['q.npy', 'k.npy', 'v.npy'] or ['x.safetensors:q', ...] */
  sources: [string, string, string];
}

/** A file that cannot be read as what it claims to be. The message names the file. */
export class FileFormatError extends Error {
  readonly file: string;
  constructor(file: string, message: string) {
    super(`${file}: ${message}`);
    this.name = 'FileFormatError';
    this.file = file;
  }
}

export interface ReadOptions {
  /**
   * Target dtype. Data of another dtype is converted; raw 16-bit patterns
   * ('<u2', '|V2') are interpreted as this dtype (must then be 16-bit).
   */
  dtype?: DType;
}

// --- byte helpers ----------------------------------------------------------

const NPY_MAGIC = [0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59]; // \x93NUMPY
const CHUNK = 1 << 30;

function littleEndianHost(): boolean {
  return new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;
}

function readExact(fd: number, file: string, target: Uint8Array, position: number): void {
  let done = 0;
  while (done < target.length) {
    const want = Math.min(CHUNK, target.length - done);
    const got = fs.readSync(fd, target, done, want, position + done);
    if (got === 0) {
      throw new FileFormatError(file, `truncated: expected ${target.length} bytes of data at offset ${position}, found ${done}`);
    }
    done += got;
  }
}

function product(shape: readonly number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}

/** Raw element kinds the files can hold, before conversion. */
type RawKind = 'f32' | 'f16' | 'bf16' | 'f64' | 'bits16';

function rawSize(kind: RawKind): number {
  return kind === 'f32' ? 4 : kind === 'f64' ? 8 : 2;
}

function withOpen<T>(file: string, fn: (fd: number, size: number) => T): T {
  let fd: number;
  try {
    fd = fs.openSync(file, 'r');
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    throw new FileFormatError(file, err.code === 'ENOENT' ? 'no such file' : `cannot open (${err.code ?? err.message})`);
  }
  try {
    const st = fs.fstatSync(fd);
    if (!st.isFile()) throw new FileFormatError(file, 'not a regular file');
    return fn(fd, st.size);
  } finally {
    fs.closeSync(fd);
  }
}

/** Reads `count` elements of `kind` at `offset` and converts them to the target dtype. */
function readData(fd: number, file: string, offset: number, count: number, kind: RawKind, target: DType | undefined, what: string): { dtype: DType; data: HostData } {
  if (!littleEndianHost()) throw new FileFormatError(file, 'only little-endian hosts are supported');
  const bytes = count * rawSize(kind);
  let raw: Float32Array | Uint16Array | Float64Array;
  if (kind === 'f32') raw = new Float32Array(count);
  else if (kind === 'f64') raw = new Float64Array(count);
  else raw = new Uint16Array(count);
  readExact(fd, file, new Uint8Array(raw.buffer, 0, bytes), offset);

  let dtype: DType;
  if (kind === 'bits16') {
    if (target !== 'bfloat16' && target !== 'float16') {
      throw new FileFormatError(file, `${what} holds raw 16-bit values; say what they are (bfloat16 bits: --dtype bf16; float16 bits: --dtype fp16)`);
    }
    return { dtype: target, data: raw as Uint16Array };
  }
  if (kind === 'f64') {
    raw = Float32Array.from(raw as Float64Array);
    dtype = 'float32';
  } else {
    dtype = kind === 'f32' ? 'float32' : kind === 'f16' ? 'float16' : 'bfloat16';
  }
  return { dtype: target ?? dtype, data: convert(raw as HostData, dtype, target ?? dtype) };
}

/** Converts host data between float32 and the 16-bit formats (copy-free when equal). */
export function convert(data: HostData, from: DType, to: DType): HostData {
  if (from === to) return data;
  const f32 = from === 'float32' ? (data as Float32Array) : from === 'bfloat16' ? fromBFloat16(data as Uint16Array) : fromFloat16(data as Uint16Array);
  if (to === 'float32') return f32;
  return to === 'bfloat16' ? toBFloat16(f32) : toFloat16(f32);
}

// --- .npy -------------------------------------------------------------------

export interface NpyHeader {
  version: [number, number];
  descr: string;
  fortranOrder: boolean;
  shape: number[];
  /** byte offset of the data */
  dataOffset: number;
}

/** Parses the header of a .npy file from its first bytes. */
export function parseNpyHeader(file: string, head: Uint8Array, fileSize: number): NpyHeader {
  if (head.length < 10 || NPY_MAGIC.some((b, i) => head[i] !== b)) {
    throw new FileFormatError(file, 'not a .npy file (bad magic; expected \\x93NUMPY)');
  }
  const major = head[6];
  const minor = head[7];
  let headerLen: number;
  let start: number;
  if (major === 1) {
    headerLen = head[8] | (head[9] << 8);
    start = 10;
  } else if (major === 2 || major === 3) {
    if (head.length < 12) throw new FileFormatError(file, 'truncated .npy header');
    headerLen = (head[8] | (head[9] << 8) | (head[10] << 16)) + head[11] * 16777216;
    start = 12;
  } else {
    throw new FileFormatError(file, `unsupported .npy format version ${major}.${minor} (1, 2 and 3 are supported)`);
  }
  if (start + headerLen > fileSize) throw new FileFormatError(file, `truncated .npy header (needs ${start + headerLen} bytes, file has ${fileSize})`);
  if (start + headerLen > head.length) throw new FileFormatError(file, `.npy header too long (${headerLen} bytes)`);
  const bytes = head.subarray(start, start + headerLen);
  const text = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length).toString(major === 3 ? 'utf8' : 'latin1');
  const dict = parsePyDict(file, text);

  const descr = dict.get('descr');
  const fortran = dict.get('fortran_order');
  const shape = dict.get('shape');
  if (typeof descr !== 'string') throw new FileFormatError(file, `.npy header has no usable 'descr' (${text.trim()})`);
  if (typeof fortran !== 'boolean') throw new FileFormatError(file, `.npy header has no usable 'fortran_order'`);
  if (!Array.isArray(shape) || shape.some((s) => typeof s !== 'number')) throw new FileFormatError(file, `.npy header has no usable 'shape'`);
  return { version: [major, minor], descr, fortranOrder: fortran, shape: shape as number[], dataOffset: start + headerLen };
}

type PyValue = string | number | boolean | PyValue[] | null;

/** A parser for the tiny subset of Python literal syntax .npy headers use. */
function parsePyDict(file: string, text: string): Map<string, PyValue> {
  let i = 0;
  const fail = (why: string): never => {
    throw new FileFormatError(file, `bad .npy header (${why}): ${text.trim().slice(0, 120)}`);
  };
  const ws = () => {
    while (i < text.length && /\s/.test(text[i])) i++;
  };
  const value = (): PyValue => {
    ws();
    const c = text[i];
    if (c === "'" || c === '"') {
      const end = text.indexOf(c, i + 1);
      if (end < 0) fail('unterminated string');
      const s = text.slice(i + 1, end);
      i = end + 1;
      return s;
    }
    if (c === '(' || c === '[') {
      const close = c === '(' ? ')' : ']';
      i++;
      const items: PyValue[] = [];
      for (;;) {
        ws();
        if (text[i] === close) { i++; break; }
        items.push(value());
        ws();
        if (text[i] === ',') { i++; continue; }
        if (text[i] === close) { i++; break; }
        fail('expected , or ' + close);
      }
      return items;
    }
    const m = /^(True|False|None|-?\d+)L?/.exec(text.slice(i));
    if (!m) return fail(`unexpected '${text.slice(i, i + 10)}'`);
    i += m[0].length;
    if (m[1] === 'True') return true;
    if (m[1] === 'False') return false;
    if (m[1] === 'None') return null;
    return Number(m[1]);
  };
  ws();
  if (text[i] !== '{') fail('expected {');
  i++;
  const out = new Map<string, PyValue>();
  for (;;) {
    ws();
    if (text[i] === '}') { i++; break; }
    const key = value();
    if (typeof key !== 'string') fail('keys must be strings');
    ws();
    if (text[i] !== ':') fail('expected :');
    i++;
    out.set(key as string, value());
    ws();
    if (text[i] === ',') { i++; continue; }
    if (text[i] === '}') { i++; break; }
    fail('expected , or }');
  }
  return out;
}

function npyKind(file: string, descr: string): RawKind {
  switch (descr) {
    case '<f4': return 'f32';
    case '<f2': return 'f16';
    case '<f8': return 'f64';
    case '<u2': case '<i2': case '|V2': case '<V2': return 'bits16';
    default:
      if (descr.startsWith('>')) throw new FileFormatError(file, `big-endian data ('${descr}') is not supported; save little-endian ('<f4', '<f2')`);
      throw new FileFormatError(file, `unsupported element type '${descr}' (supported: '<f4', '<f2', '<f8', and '<u2' or '|V2' holding bfloat16/float16 bits)`);
  }
}

/** The header of the open .npy file `fd` (of `size` bytes). */
function readNpyHeader(fd: number, file: string, size: number): NpyHeader {
  const head = new Uint8Array(Math.min(size, 1 << 20));
  if (head.length > 0) readExact(fd, file, head, 0);
  return parseNpyHeader(file, head, size);
}

/** Reads one .npy file. */
export function readNpy(file: string, opts: ReadOptions = {}): LoadedTensor {
  return withOpen(file, (fd, size) => {
    const h = readNpyHeader(fd, file, size);
    if (h.fortranOrder) throw new FileFormatError(file, 'Fortran-ordered arrays are not supported (save a C-contiguous array: np.ascontiguousarray)');
    checkShape(file, h.shape);
    const kind = npyKind(file, h.descr);
    const count = product(h.shape);
    const need = count * rawSize(kind);
    const have = size - h.dataOffset;
    if (have < need) throw new FileFormatError(file, `truncated: shape [${h.shape.join(', ')}] of '${h.descr}' needs ${need} bytes of data, file has ${have}`);
    if (have > need) throw new FileFormatError(file, `${have - need} unexpected bytes after the data of shape [${h.shape.join(', ')}]`);
    const { dtype, data } = readData(fd, file, h.dataOffset, count, kind, opts.dtype, `'${h.descr}'`);
    return { file, name: path.basename(file, '.npy'), dtype, shape: h.shape, data };
  });
}

// --- .safetensors ------------------------------------------------------------

interface SafetensorsEntry {
  dtype: string;
  shape: number[];
  data_offsets: [number, number];
}

const MAX_SAFETENSORS_HEADER = 100 * 1024 * 1024;

/** Names accepted for each role, compared case-insensitively. */
export const SAFETENSORS_NAMES: Record<'q' | 'k' | 'v', readonly string[]> = {
  q: ['q', 'query'],
  k: ['k', 'key'],
  v: ['v', 'value'],
};

/** Reads the header of a .safetensors file: tensor name -> entry, and the data start. */
export function readSafetensorsHeader(file: string): { entries: Map<string, SafetensorsEntry>; dataStart: number; fileSize: number } {
  return withOpen(file, (fd, size) => {
    if (size < 8) throw new FileFormatError(file, `not a .safetensors file (${size} bytes; the 8-byte header length is missing)`);
    const lenBytes = new Uint8Array(8);
    readExact(fd, file, lenBytes, 0);
    const dv = new DataView(lenBytes.buffer);
    const len = dv.getUint32(0, true) + dv.getUint32(4, true) * 4294967296;
    if (len === 0 || len > MAX_SAFETENSORS_HEADER) throw new FileFormatError(file, `not a .safetensors file (header length ${len} is implausible)`);
    if (8 + len > size) throw new FileFormatError(file, `truncated: the header says ${len} bytes, the file has ${size - 8} after the length`);
    const headerBytes = new Uint8Array(len);
    readExact(fd, file, headerBytes, 8);
    let json: unknown;
    try {
      json = JSON.parse(new TextDecoder('utf-8').decode(headerBytes));
    } catch (e) {
      throw new FileFormatError(file, `bad .safetensors header (not JSON: ${(e as Error).message})`);
    }
    if (typeof json !== 'object' || json === null || Array.isArray(json)) throw new FileFormatError(file, 'bad .safetensors header (not a JSON object)');
    const entries = new Map<string, SafetensorsEntry>();
    for (const [name, raw] of Object.entries(json as Record<string, unknown>)) {
      if (name === '__metadata__') continue;
      const e = raw as Partial<SafetensorsEntry>;
      if (
        typeof e !== 'object' || e === null || typeof e.dtype !== 'string' || !Array.isArray(e.shape) ||
        !Array.isArray(e.data_offsets) || e.data_offsets.length !== 2 ||
        !e.shape.every((s) => Number.isSafeInteger(s) && s >= 0) ||
        !e.data_offsets.every((s) => Number.isSafeInteger(s) && s >= 0) || e.data_offsets[1] < e.data_offsets[0]
      ) {
        throw new FileFormatError(file, `bad .safetensors header entry '${name}' (needs dtype, shape and data_offsets [begin, end])`);
      }
      entries.set(name, e as SafetensorsEntry);
    }
    return { entries, dataStart: 8 + len, fileSize: size };
  });
}

function safetensorsKind(file: string, name: string, dtype: string): RawKind {
  switch (dtype) {
    case 'F32': return 'f32';
    case 'F16': return 'f16';
    case 'BF16': return 'bf16';
    case 'F64': return 'f64';
    default: throw new FileFormatError(file, `tensor '${name}' has dtype ${dtype} (supported: F32, F16, BF16)`);
  }
}

/** Reads the named tensors of a .safetensors file. */
export function readSafetensors(file: string, names: readonly string[], opts: ReadOptions = {}): LoadedTensor[] {
  const { entries, dataStart, fileSize } = readSafetensorsHeader(file);
  return withOpen(file, (fd) =>
    names.map((name) => {
      const e = entries.get(name);
      if (!e) throw new FileFormatError(file, `no tensor named '${name}' (has: ${[...entries.keys()].join(', ') || 'none'})`);
      const kind = safetensorsKind(file, name, e.dtype);
      checkShape(`${file}:${name}`, e.shape);
      const count = product(e.shape);
      const need = count * rawSize(kind);
      const [begin, end] = e.data_offsets;
      if (end - begin !== need) {
        throw new FileFormatError(file, `tensor '${name}': shape [${e.shape.join(', ')}] of ${e.dtype} needs ${need} bytes, data_offsets span ${end - begin}`);
      }
      if (dataStart + end > fileSize) {
        throw new FileFormatError(file, `truncated: tensor '${name}' ends at byte ${dataStart + end}, the file has ${fileSize}`);
      }
      const { dtype, data } = readData(fd, file, dataStart + begin, count, kind, opts.dtype, `tensor '${name}'`);
      return { file, name, dtype, shape: e.shape, data };
    }),
  );
}

/** Finds the Q/K/V tensor names in a safetensors header. */
export function findQkvNames(file: string, names: Iterable<string>): [string, string, string] {
  const all = [...names];
  const pick = (role: 'q' | 'k' | 'v'): string => {
    const found = all.filter((n) => SAFETENSORS_NAMES[role].includes(n.toLowerCase()));
    if (found.length === 0) {
      throw new FileFormatError(file, `no ${role.toUpperCase()} tensor: expected one named ${SAFETENSORS_NAMES[role].join(' or ')} (has: ${all.join(', ') || 'none'})`);
    }
    if (found.length > 1) throw new FileFormatError(file, `several ${role.toUpperCase()} tensors (${found.join(', ')}); keep one`);
    return found[0];
  };
  return [pick('q'), pick('k'), pick('v')];
}

// --- Q/K/V assembly ------------------------------------------------------------

function checkShape(file: string, shape: readonly number[]): void {
  if (shape.length !== 3 && shape.length !== 4) {
    throw new FileFormatError(file, `shape [${shape.join(', ')}] has ${shape.length} dims; expected [batch, heads, N, d] or [heads, N, d]`);
  }
  if (shape.some((s) => !Number.isSafeInteger(s) || s <= 0)) throw new FileFormatError(file, `shape [${shape.join(', ')}] has an empty or invalid dim`);
}

function as4d(shape: readonly number[]): [number, number, number, number] {
  return shape.length === 3 ? [1, shape[0], shape[1], shape[2]] : [shape[0], shape[1], shape[2], shape[3]];
}

/** Checks the three shapes against each other and builds the workload. */
export function assembleQkv(q: LoadedTensor, k: LoadedTensor, v: LoadedTensor, sources: [string, string, string]): FileWorkload {
  const [qb, hq, nq, dq] = as4d(q.shape);
  const [kb, hk, nk, dk] = as4d(k.shape);
  const vs = as4d(v.shape);
  const where = (t: LoadedTensor) => sources[t === q ? 0 : t === k ? 1 : 2];
  if (q.shape.length !== k.shape.length || k.shape.length !== v.shape.length) {
    throw new FileFormatError(where(q), `Q, K and V must all be 3-D or all 4-D (got [${q.shape.join(', ')}], [${k.shape.join(', ')}], [${v.shape.join(', ')}])`);
  }
  if (vs.some((s, i) => s !== [kb, hk, nk, dk][i])) {
    throw new FileFormatError(where(v), `V shape [${v.shape.join(', ')}] differs from K shape [${k.shape.join(', ')}]`);
  }
  if (qb !== kb) throw new FileFormatError(where(k), `batch ${kb} differs from Q's batch ${qb}`);
  if (dq !== dk) throw new FileFormatError(where(k), `head dim ${dk} differs from Q's head dim ${dq}`);
  if (dq % 2 !== 0) throw new FileFormatError(where(q), `head dim ${dq} is odd; RoPE pairs need an even head dim`);
  if (hq % hk !== 0) throw new FileFormatError(where(k), `Q has ${hq} heads, not a multiple of K/V's ${hk} heads`);
  if (nq > nk) throw new FileFormatError(where(q), `Q has ${nq} positions, more than K/V's ${nk} (queries must be the last Nq <= Nk positions)`);
  if (q.dtype !== k.dtype || k.dtype !== v.dtype) {
    throw new FileFormatError(where(q), `Q, K and V have different dtypes (${q.dtype}, ${k.dtype}, ${v.dtype}); choose one (e.g. --dtype bf16) to convert them`);
  }
  return {
    q: q.data,
    k: k.data,
    v: v.data,
    shape: { batch: qb, hq, hkv: hk, nq, nk, d: dq },
    dtype: q.dtype,
    layout: 'bhnd',
    sources,
  };
}

/** Loads Q, K and V from three .npy files. */
export function loadNpyQkv(files: readonly [string, string, string], opts: ReadOptions = {}): FileWorkload {
  const [q, k, v] = files.map((f) => readNpy(f, opts));
  return assembleQkv(q, k, v, [files[0], files[1], files[2]]);
}

/** Loads Q, K and V from one .safetensors file (tensors q/k/v or query/key/value). */
export function loadSafetensorsQkv(file: string, opts: ReadOptions = {}): FileWorkload {
  const { entries } = readSafetensorsHeader(file);
  const names = findQkvNames(file, entries.keys());
  const [q, k, v] = readSafetensors(file, names, opts);
  return assembleQkv(q, k, v, [`${file}:${names[0]}`, `${file}:${names[1]}`, `${file}:${names[2]}`]);
}

/** Loads Q/K/V from either kind of input. */
export function loadQkvFiles(src: { files?: readonly [string, string, string] | null; safetensors?: string | null }, opts: ReadOptions = {}): FileWorkload {
  if (src.files && src.safetensors) throw new TypeError('loadQkvFiles: give files or safetensors, not both');
  if (src.files) return loadNpyQkv(src.files, opts);
  if (src.safetensors) return loadSafetensorsQkv(src.safetensors, opts);
  throw new TypeError('loadQkvFiles: give files (three .npy) or safetensors (one file)');
}

/**
 * The head dim (last dimension) of the Q tensor of `src`, read from its header
 * alone; null when it cannot be read (loading the files reports why).
 */
export function peekQueryHeadDim(src: { files?: readonly [string, string, string] | null; safetensors?: string | null }): number | null {
  try {
    let shape: number[];
    if (src.safetensors) {
      const { entries } = readSafetensorsHeader(src.safetensors);
      const [qName] = findQkvNames(src.safetensors, entries.keys());
      shape = entries.get(qName)!.shape;
    } else if (src.files) {
      const file = src.files[0];
      shape = withOpen(file, (fd, size) => readNpyHeader(fd, file, size).shape);
    } else {
      return null;
    }
    const d = shape[shape.length - 1];
    return Number.isSafeInteger(d) && d > 0 ? d : null;
  } catch {
    return null;
  }
}

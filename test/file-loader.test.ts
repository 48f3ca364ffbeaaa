// lib/workloads/file.ts: .npy and .safetensors Q/K/V. Every fixture is written
// by this test into a temporary directory (independent writers below).

import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import {
  FileFormatError,
  loadNpyQkv,
  loadQkvFiles,
  loadSafetensorsQkv,
  parseNpyHeader,
  readNpy,
} from '../lib/workloads/file';
import { fromBFloat16, fromFloat16, toBFloat16, toFloat16 } from '../lib/dtype';

let dir: string;
beforeAll(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'prism-file-'));
});
afterAll(() => {
  fs.rmSync(dir, { recursive: true, force: true });
});

// --- writers -----------------------------------------------------------------

function npyBytes(descr: string, shape: number[], data: Uint8Array, version: 1 | 2 | 3 = 1, fortran = false): Buffer {
  const shapeText = shape.length === 1 ? `(${shape[0]},)` : `(${shape.join(', ')})`;
  let header = `{'descr': '${descr}', 'fortran_order': ${fortran ? 'True' : 'False'}, 'shape': ${shapeText}, }`;
  const pre = version === 1 ? 10 : 12;
  const total = Math.ceil((pre + header.length + 1) / 64) * 64;
  header = header.padEnd(total - pre - 1, ' ') + '\n';
  const out = Buffer.alloc(pre + header.length + data.length);
  out.set([0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59, version, 0], 0);
  if (version === 1) out.writeUInt16LE(header.length, 8);
  else out.writeUInt32LE(header.length, 8);
  out.write(header, pre, version === 3 ? 'utf8' : 'latin1');
  out.set(data, pre + header.length);
  return out;
}

function bytesOf(a: Float32Array | Uint16Array | Float64Array): Uint8Array {
  return new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
}

function writeNpy(name: string, descr: string, shape: number[], data: Float32Array | Uint16Array | Float64Array, version: 1 | 2 | 3 = 1): string {
  const f = path.join(dir, name);
  fs.writeFileSync(f, npyBytes(descr, shape, bytesOf(data), version));
  return f;
}

function safetensorsBytes(tensors: Record<string, { dtype: string; shape: number[]; data: Uint8Array }>, meta?: Record<string, string>): Buffer {
  const header: Record<string, unknown> = {};
  if (meta) header.__metadata__ = meta;
  let off = 0;
  const chunks: Uint8Array[] = [];
  for (const [name, t] of Object.entries(tensors)) {
    header[name] = { dtype: t.dtype, shape: t.shape, data_offsets: [off, off + t.data.length] };
    off += t.data.length;
    chunks.push(t.data);
  }
  let json = JSON.stringify(header);
  json = json.padEnd(Math.ceil(json.length / 8) * 8, ' ');
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(json.length));
  return Buffer.concat([len, Buffer.from(json, 'utf8'), ...chunks]);
}

function writeSafetensors(name: string, tensors: Record<string, { dtype: string; shape: number[]; data: Uint8Array }>): string {
  const f = path.join(dir, name);
  fs.writeFileSync(f, safetensorsBytes(tensors, { format: 'pt' }));
  return f;
}

function ramp(n: number, seed: number): Float32Array {
  const a = new Float32Array(n);
  for (let i = 0; i < n; i++) a[i] = Math.sin(i * 0.37 + seed) * 3 + (i % 7) * 0.125;
  return a;
}

const B = 2;
const HQ = 4;
const HKV = 2;
const N = 8;
const D = 6;
const qShape = [B, HQ, N, D];
const kShape = [B, HKV, N, D];
const q32 = ramp(B * HQ * N * D, 1);
const k32 = ramp(B * HKV * N * D, 2);
const v32 = ramp(B * HKV * N * D, 3);

// --- .npy ----------------------------------------------------------------------

/** Writes `bytes` to `name` in the test folder and reads it with `read`, which must throw a FileFormatError. */
function formatErrorOf(name: string, bytes: Buffer | Uint8Array, read: (file: string) => unknown): { file: string; error: FileFormatError } {
  const file = path.join(dir, name);
  fs.writeFileSync(file, bytes);
  try {
    read(file);
  } catch (e) {
    expect(e).toBeInstanceOf(FileFormatError);
    return { file, error: e as FileFormatError };
  }
  throw new Error('expected an error');
}

describe('.npy', () => {
  test.each([1, 2, 3] as const)('float32, header version %i, 4-D round trip', (version) => {
    const files: [string, string, string] = [
      writeNpy(`q${version}.npy`, '<f4', qShape, q32, version),
      writeNpy(`k${version}.npy`, '<f4', kShape, k32, version),
      writeNpy(`v${version}.npy`, '<f4', kShape, v32, version),
    ];
    const w = loadNpyQkv(files);
    expect(w.dtype).toBe('float32');
    expect(w.layout).toBe('bhnd');
    expect(w.shape).toEqual({ batch: B, hq: HQ, hkv: HKV, nq: N, nk: N, d: D });
    expect(Array.from(w.q as Float32Array)).toEqual(Array.from(q32));
    expect(Array.from(w.k as Float32Array)).toEqual(Array.from(k32));
    expect(Array.from(w.v as Float32Array)).toEqual(Array.from(v32));
    expect(w.sources).toEqual(files);
  });

  test('float16 3-D [H, N, d] is batch 1, values exact', () => {
    const q16 = toFloat16(q32.subarray(0, HQ * N * D));
    const k16 = toFloat16(k32.subarray(0, HKV * N * D));
    const files: [string, string, string] = [
      writeNpy('q16.npy', '<f2', [HQ, N, D], q16),
      writeNpy('k16.npy', '<f2', [HKV, N, D], k16),
      writeNpy('v16.npy', '<f2', [HKV, N, D], k16),
    ];
    const w = loadNpyQkv(files);
    expect(w.dtype).toBe('float16');
    expect(w.shape).toEqual({ batch: 1, hq: HQ, hkv: HKV, nq: N, nk: N, d: D });
    expect(Array.from(w.q as Uint16Array)).toEqual(Array.from(q16));
    // asked for float32: decoded exactly
    const w32 = loadNpyQkv(files, { dtype: 'float32' });
    expect(Array.from(w32.k as Float32Array)).toEqual(Array.from(fromFloat16(k16)));
  });

  test('bfloat16 stored as uint16 bits (<u2) and as |V2 needs the dtype', () => {
    const qb = toBFloat16(q32);
    const kb = toBFloat16(k32);
    const vb = toBFloat16(v32);
    const files: [string, string, string] = [
      writeNpy('qb.npy', '<u2', qShape, qb),
      writeNpy('kb.npy', '|V2', kShape, kb),
      writeNpy('vb.npy', '<u2', kShape, vb),
    ];
    expect(() => loadNpyQkv(files)).toThrow(/raw 16-bit values.*--dtype bf16/);
    const w = loadNpyQkv(files, { dtype: 'bfloat16' });
    expect(w.dtype).toBe('bfloat16');
    expect(Array.from(w.q as Uint16Array)).toEqual(Array.from(qb));
    expect(Array.from(fromBFloat16(w.v as Uint16Array))).toEqual(Array.from(fromBFloat16(vb)));
  });

  test('float32 converted to bfloat16 on request (round to nearest even)', () => {
    const files: [string, string, string] = [
      writeNpy('qc.npy', '<f4', qShape, q32),
      writeNpy('kc.npy', '<f4', kShape, k32),
      writeNpy('vc.npy', '<f4', kShape, v32),
    ];
    const w = loadNpyQkv(files, { dtype: 'bfloat16' });
    expect(Array.from(w.k as Uint16Array)).toEqual(Array.from(toBFloat16(k32)));
  });

  test('float64 is read as float32', () => {
    const t = readNpy(writeNpy('f8.npy', '<f8', [1, 2, 2], Float64Array.from([1.5, -2, 0.1, 3])));
    expect(t.dtype).toBe('float32');
    expect(Array.from(t.data as Float32Array)).toEqual(Array.from(Float32Array.from([1.5, -2, 0.1, 3])));
  });

  test('header parser accepts old-style long ints and extra spaces', () => {
    const text = "{'descr':'<f4','fortran_order':False,'shape':(2L, 3L, 4L)}";
    const head = Buffer.alloc(10 + text.length + 1);
    head.set([0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59, 1, 0]);
    head.writeUInt16LE(text.length + 1, 8);
    head.write(text + '\n', 10, 'latin1');
    const h = parseNpyHeader('x.npy', head, head.length + 96);
    expect(h.shape).toEqual([2, 3, 4]);
    expect(h.descr).toBe('<f4');
    expect(h.fortranOrder).toBe(false);
  });
});

describe('.npy errors', () => {
  const good = () => npyBytes('<f4', [1, 2, 4, 2], bytesOf(ramp(16, 0)));

  function errorOf(name: string, bytes: Buffer | Uint8Array): FileFormatError {
    const { file, error } = formatErrorOf(name, bytes, readNpy);
    expect(error.message.startsWith(file)).toBe(true);
    return error;
  }

  test('bad magic', () => {
    const b = good();
    b[1] = 0x58;
    expect(errorOf('magic.npy', b).message).toMatch(/bad magic/);
  });
  test('empty file', () => {
    expect(errorOf('empty.npy', Buffer.alloc(0)).message).toMatch(/not a \.npy file/);
  });
  test('unsupported version', () => {
    const b = good();
    b[6] = 9;
    expect(errorOf('version.npy', b).message).toMatch(/format version 9/);
  });
  test('truncated header', () => {
    expect(errorOf('shorthead.npy', good().subarray(0, 40)).message).toMatch(/truncated \.npy header/);
  });
  test('garbled header', () => {
    const b = good();
    b.write('#', 11, 'latin1');
    expect(errorOf('garbled.npy', b).message).toMatch(/bad \.npy header/);
  });
  test('truncated data', () => {
    const b = good();
    expect(errorOf('shortdata.npy', b.subarray(0, b.length - 5)).message).toMatch(/truncated: shape \[1, 2, 4, 2\].*needs 64 bytes.*has 59/);
  });
  test('trailing bytes', () => {
    expect(errorOf('long.npy', Buffer.concat([good(), Buffer.alloc(4)])).message).toMatch(/4 unexpected bytes/);
  });
  test('unsupported dtype', () => {
    expect(errorOf('int.npy', npyBytes('<i4', [1, 2, 2], new Uint8Array(16))).message).toMatch(/unsupported element type '<i4'/);
  });
  test('big-endian', () => {
    expect(errorOf('be.npy', npyBytes('>f4', [1, 2, 2], new Uint8Array(16))).message).toMatch(/big-endian/);
  });
  test('Fortran order', () => {
    expect(errorOf('fortran.npy', npyBytes('<f4', [1, 2, 2], new Uint8Array(16), 1, true)).message).toMatch(/Fortran/);
  });
  test('wrong rank', () => {
    expect(errorOf('rank2.npy', npyBytes('<f4', [4, 4], new Uint8Array(64))).message).toMatch(/has 2 dims; expected \[batch, heads, N, d\]/);
  });
  test('missing file', () => {
    expect(() => readNpy(path.join(dir, 'nope.npy'))).toThrow(/no such file/);
  });

  test('shape mismatches between Q, K and V', () => {
    const q = writeNpy('mq.npy', '<f4', [1, 3, 4, 2], new Float32Array(24));
    const k = writeNpy('mk.npy', '<f4', [1, 2, 4, 2], new Float32Array(16));
    const v = writeNpy('mv.npy', '<f4', [1, 2, 4, 2], new Float32Array(16));
    expect(() => loadNpyQkv([q, k, v])).toThrow(/Q has 3 heads, not a multiple of K\/V's 2 heads/);
    const q2 = writeNpy('mq2.npy', '<f4', [1, 2, 4, 4], new Float32Array(32));
    expect(() => loadNpyQkv([q2, k, v])).toThrow(/head dim 2 differs from Q's head dim 4/);
    const v2 = writeNpy('mv2.npy', '<f4', [1, 2, 3, 2], new Float32Array(12));
    expect(() => loadNpyQkv([k, k, v2])).toThrow(/V shape \[1, 2, 3, 2\] differs from K shape/);
    const q3 = writeNpy('mq3.npy', '<f4', [1, 2, 8, 2], new Float32Array(32));
    expect(() => loadNpyQkv([q3, k, v])).toThrow(/Q has 8 positions, more than K\/V's 4/);
    const q4 = writeNpy('mq4.npy', '<f4', [2, 4, 2], new Float32Array(16));
    expect(() => loadNpyQkv([q4, k, v])).toThrow(/must all be 3-D or all 4-D/);
    const k16 = writeNpy('mk16.npy', '<f2', [1, 2, 4, 2], new Uint16Array(16));
    expect(() => loadNpyQkv([k, k16, v])).toThrow(/different dtypes.*--dtype bf16/);
    // Nq < Nk is chunked prefill: accepted
    const q5 = writeNpy('mq5.npy', '<f4', [1, 2, 2, 2], new Float32Array(8));
    expect(loadNpyQkv([q5, k, v]).shape).toEqual({ batch: 1, hq: 2, hkv: 2, nq: 2, nk: 4, d: 2 });
  });
});

// --- .safetensors --------------------------------------------------------------------

describe('.safetensors', () => {
  test.each([
    ['F32', 'float32', (x: Float32Array) => bytesOf(x)],
    ['F16', 'float16', (x: Float32Array) => bytesOf(toFloat16(x))],
    ['BF16', 'bfloat16', (x: Float32Array) => bytesOf(toBFloat16(x))],
  ] as const)('%s, names q/k/v, 4-D round trip', (st, dtype, enc) => {
    const f = writeSafetensors(`qkv-${st}.safetensors`, {
      v: { dtype: st, shape: kShape, data: enc(v32) },
      q: { dtype: st, shape: qShape, data: enc(q32) },
      k: { dtype: st, shape: kShape, data: enc(k32) },
    });
    const w = loadSafetensorsQkv(f);
    expect(w.dtype).toBe(dtype);
    expect(w.shape).toEqual({ batch: B, hq: HQ, hkv: HKV, nq: N, nk: N, d: D });
    expect(Buffer.from(bytesOf(w.q))).toEqual(Buffer.from(enc(q32)));
    expect(Buffer.from(bytesOf(w.k))).toEqual(Buffer.from(enc(k32)));
    expect(Buffer.from(bytesOf(w.v))).toEqual(Buffer.from(enc(v32)));
    expect(w.sources).toEqual([`${f}:q`, `${f}:k`, `${f}:v`]);
  });

  test('names query/key/value, 3-D, converted to float32', () => {
    const q3 = q32.subarray(0, HQ * N * D);
    const k3 = k32.subarray(0, HKV * N * D);
    const f = writeSafetensors('qkv-long.safetensors', {
      query: { dtype: 'BF16', shape: [HQ, N, D], data: bytesOf(toBFloat16(q3)) },
      key: { dtype: 'BF16', shape: [HKV, N, D], data: bytesOf(toBFloat16(k3)) },
      value: { dtype: 'BF16', shape: [HKV, N, D], data: bytesOf(toBFloat16(k3)) },
      other: { dtype: 'F32', shape: [2], data: new Uint8Array(8) },
    });
    const w = loadQkvFiles({ safetensors: f }, { dtype: 'float32' });
    expect(w.shape.batch).toBe(1);
    expect(Array.from(w.q as Float32Array)).toEqual(Array.from(fromBFloat16(toBFloat16(q3))));
  });

  function errorOf(name: string, bytes: Buffer): string {
    return formatErrorOf(name, bytes, loadSafetensorsQkv).error.message;
  }

  const good = () =>
    safetensorsBytes({
      q: { dtype: 'F32', shape: [1, 2, 4, 2], data: new Uint8Array(64) },
      k: { dtype: 'F32', shape: [1, 1, 4, 2], data: new Uint8Array(32) },
      v: { dtype: 'F32', shape: [1, 1, 4, 2], data: new Uint8Array(32) },
    });

  test('good fixture loads (sanity for the error cases)', () => {
    const f = path.join(dir, 'good.safetensors');
    fs.writeFileSync(f, good());
    expect(loadSafetensorsQkv(f).shape).toEqual({ batch: 1, hq: 2, hkv: 1, nq: 4, nk: 4, d: 2 });
  });
  test('too short', () => {
    expect(errorOf('short.safetensors', Buffer.alloc(3))).toMatch(/header length is missing/);
  });
  test('implausible header length (not a safetensors file)', () => {
    const b = Buffer.from(npyBytes('<f4', [1, 1, 1], new Uint8Array(4)));
    expect(errorOf('npy.safetensors', b)).toMatch(/header length .* implausible|truncated: the header says/);
  });
  test('header longer than the file', () => {
    const b = good();
    b.writeUInt32LE(b.length, 0);
    expect(errorOf('longhdr.safetensors', b)).toMatch(/truncated: the header says/);
  });
  test('header not JSON', () => {
    const b = good();
    b.write('!', 8, 'latin1');
    expect(errorOf('notjson.safetensors', b)).toMatch(/not JSON/);
  });
  test('truncated data', () => {
    const b = good();
    expect(errorOf('trunc.safetensors', b.subarray(0, b.length - 10))).toMatch(/truncated: tensor 'v' ends at byte/);
  });
  test('unsupported dtype', () => {
    const b = safetensorsBytes({
      q: { dtype: 'I32', shape: [1, 1, 1], data: new Uint8Array(4) },
      k: { dtype: 'F32', shape: [1, 1, 1], data: new Uint8Array(4) },
      v: { dtype: 'F32', shape: [1, 1, 1], data: new Uint8Array(4) },
    });
    expect(errorOf('i32.safetensors', b)).toMatch(/tensor 'q' has dtype I32 \(supported: F32, F16, BF16\)/);
  });
  test('offsets disagree with shape', () => {
    const b = safetensorsBytes({
      q: { dtype: 'F32', shape: [1, 1, 2], data: new Uint8Array(4) },
      k: { dtype: 'F32', shape: [1, 1, 1], data: new Uint8Array(4) },
      v: { dtype: 'F32', shape: [1, 1, 1], data: new Uint8Array(4) },
    });
    expect(errorOf('offs.safetensors', b)).toMatch(/needs 8 bytes, data_offsets span 4/);
  });
  test('missing tensor names', () => {
    const b = safetensorsBytes({
      q: { dtype: 'F32', shape: [1, 1, 1], data: new Uint8Array(4) },
      keys: { dtype: 'F32', shape: [1, 1, 1], data: new Uint8Array(4) },
      v: { dtype: 'F32', shape: [1, 1, 1], data: new Uint8Array(4) },
    });
    expect(errorOf('names.safetensors', b)).toMatch(/no K tensor: expected one named k or key \(has: q, keys, v\)/);
  });
  test('ambiguous names', () => {
    const t = { dtype: 'F32', shape: [1, 1, 1], data: new Uint8Array(4) };
    expect(errorOf('amb.safetensors', safetensorsBytes({ q: t, query: t, k: t, v: t }))).toMatch(/several Q tensors/);
  });
  test('bad entry', () => {
    const json = JSON.stringify({ q: { dtype: 'F32', shape: [1, 1, 1] } }).padEnd(64, ' ');
    const len = Buffer.alloc(8);
    len.writeBigUInt64LE(BigInt(json.length));
    expect(errorOf('entry.safetensors', Buffer.concat([len, Buffer.from(json), Buffer.alloc(16)]))).toMatch(/bad \.safetensors header entry 'q'/);
  });
});

// Ragged-batch and paged-KV test data: packed tensors, the same sequences as
// separate tensors, page pools, and comparisons (shared by the CPU and GPU suites).
import { bhndToBnhd, bnhdToBhnd } from '../../lib/validate';
import { tensor, type Tensor } from '../../lib/tensor';
import type { BlockMask } from '../../lib/block-mask';
import type { DeviceSpec, DType, HostBlockMask, Layout } from '../../lib/types';
import { rounded, values } from './data';

export type Raw = Float32Array | Uint16Array;

/** A packed ragged problem: host data in bhnd order [heads, total, d]. */
export interface RaggedCase {
  hq: number;
  hkv: number;
  d: number;
  dtype: DType;
  layout: Layout;
  qLens: number[];
  kLens: number[];
  cuSeqlensQ: Int32Array;
  cuSeqlensK: Int32Array;
  totalQ: number;
  totalK: number;
  /** raw (upload) data and float32 values, bhnd [heads, total, d] */
  q: { raw: Raw; values: Float32Array };
  k: { raw: Raw; values: Float32Array };
  v: { raw: Raw; values: Float32Array };
}

function cumsum(lens: number[]): Int32Array {
  const c = new Int32Array(lens.length + 1);
  lens.forEach((n, i) => (c[i + 1] = c[i] + n));
  return c;
}

export function raggedCase(o: { hq: number; hkv: number; d: number; dtype: DType; layout: Layout; qLens: number[]; kLens: number[]; seed: number }): RaggedCase {
  const cuSeqlensQ = cumsum(o.qLens);
  const cuSeqlensK = cumsum(o.kLens);
  const totalQ = cuSeqlensQ[o.qLens.length];
  const totalK = cuSeqlensK[o.kLens.length];
  const gen = (n: number, seed: number) => rounded(values(n, seed), o.dtype);
  return {
    ...o,
    cuSeqlensQ,
    cuSeqlensK,
    totalQ,
    totalK,
    q: gen(o.hq * totalQ * o.d, o.seed),
    k: gen(o.hkv * totalK * o.d, o.seed + 1),
    v: gen(o.hkv * totalK * o.d, o.seed + 2),
  };
}

/** Tokens [start, start + n) of a bhnd [heads, total, d] array. */
export function slice<T extends Raw | Float64Array>(x: T, heads: number, total: number, d: number, start: number, n: number): T {
  const out = new (x.constructor as new (n: number) => T)(heads * n * d);
  for (let h = 0; h < heads; h++) out.set(x.subarray((h * total + start) * d, (h * total + start + n) * d), h * n * d);
  return out;
}

/** A [1, heads, n, d] tensor of bhnd host data in `layout`. */
export async function upload(raw: Raw, heads: number, n: number, d: number, dtype: DType, layout: Layout, device: DeviceSpec): Promise<Tensor> {
  const data = layout === 'bnhd' ? bhndToBnhd(raw, 1, heads, n, d) : raw;
  return tensor(data, { shape: [1, heads, n, d], dtype, layout, device });
}

/** The packed tensors of a case. */
export async function packed(c: RaggedCase, device: DeviceSpec): Promise<{ q: Tensor; k: Tensor; v: Tensor }> {
  return {
    q: await upload(c.q.raw, c.hq, c.totalQ, c.d, c.dtype, c.layout, device),
    k: await upload(c.k.raw, c.hkv, c.totalK, c.d, c.dtype, c.layout, device),
    v: await upload(c.v.raw, c.hkv, c.totalK, c.d, c.dtype, c.layout, device),
  };
}

/** Sequence i's own tensors q [1, hq, nq_i, d], k and v [1, hkv, nk_i, d]. */
export async function sequence(c: RaggedCase, i: number, device: DeviceSpec): Promise<{ q: Tensor; k: Tensor; v: Tensor }> {
  const q0 = c.cuSeqlensQ[i];
  const k0 = c.cuSeqlensK[i];
  const nq = c.qLens[i];
  const nk = c.kLens[i];
  return {
    q: await upload(slice(c.q.raw, c.hq, c.totalQ, c.d, q0, nq), c.hq, nq, c.d, c.dtype, c.layout, device),
    k: await upload(slice(c.k.raw, c.hkv, c.totalK, c.d, k0, nk), c.hkv, nk, c.d, c.dtype, c.layout, device),
    v: await upload(slice(c.v.raw, c.hkv, c.totalK, c.d, k0, nk), c.hkv, nk, c.d, c.dtype, c.layout, device),
  };
}

/** A [1, heads, n, d] tensor's data as bhnd raw bits. */
export async function rawBhnd(t: Tensor): Promise<Raw> {
  const [b, h, n, d] = t.shape;
  const x = (await t.toHost()) as Raw;
  return t.layout === 'bnhd' ? bnhdToBhnd(x, b, h, n, d) : x;
}

/** A [1, heads, n, d] tensor's values as bhnd float32. */
export async function valuesBhnd(t: Tensor): Promise<Float32Array> {
  const [b, h, n, d] = t.shape;
  const x = await t.toFloat32();
  return t.layout === 'bnhd' ? bnhdToBhnd(x, b, h, n, d) : x;
}

/** Index of the first element where a and b differ bitwise (NaN-safe), -1 when equal. */
export function firstDifference(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) return Math.min(a.length, b.length);
  for (let i = 0; i < a.length; i++) if (!Object.is(a[i], b[i])) return i;
  return -1;
}

/** The parts of two host masks that must agree, as one comparable object. */
export function maskParts(m: HostBlockMask): Record<string, unknown> {
  return {
    nq: m.nq,
    nk: m.nk,
    counts: Array.from(m.counts),
    rowPtr: Array.from(m.rowPtr),
    indices: Array.from(m.indices),
    temperatures: Array.from(m.temperatures),
  };
}

export async function hostMask(m: BlockMask | null): Promise<HostBlockMask | null> {
  return m ? m.toHost({ mask: false }) : null;
}

/** maskParts of each sequence's mask (null for a sequence without queries), to compare two batches' selections. */
export async function batchMaskParts(masks: Array<BlockMask | null>): Promise<Array<Record<string, unknown> | null>> {
  return Promise.all(masks.map(async (m) => (m === null ? null : maskParts((await hostMask(m))!))));
}

/** Random lengths: zero-length queries, lengths off the block grid, Nq_i <= Nk_i. */
export function randomLengths(batch: number, maxK: number, seed: number): { qLens: number[]; kLens: number[] } {
  let x = seed >>> 0;
  const rnd = (n: number): number => {
    x = (Math.imul(x, 1664525) + 1013904223) >>> 0;
    return x % n;
  };
  const qLens: number[] = [];
  const kLens: number[] = [];
  for (let i = 0; i < batch; i++) {
    const nk = 1 + rnd(maxK);
    const kind = rnd(4);
    const nq = i === 1 || kind === 0 ? 0 : kind === 1 ? nk : 1 + rnd(nk);
    qLens.push(nq);
    kLens.push(nk);
  }
  if (!qLens.some((n) => n > 0)) qLens[0] = kLens[0];
  return { qLens, kLens };
}

/** Page pools holding a case's K and V: pages of pageSize in `layout`, handed out shuffled (and with unused pages). */
export function pagePools(
  c: RaggedCase,
  pageSize: number,
  kvLayout: 'NHD' | 'HND',
  seed: number,
): { k: Raw; v: Raw; numPages: number; pageTable: number[][]; kvLens: number[] } {
  const need = c.kLens.map((n) => Math.ceil(n / pageSize));
  const numPages = need.reduce((a, b) => a + b, 0) + 3;
  const ids = Array.from({ length: numPages }, (_, i) => i);
  let x = seed >>> 0;
  for (let i = ids.length - 1; i > 0; i--) {
    x = (Math.imul(x, 1664525) + 1013904223) >>> 0;
    const j = x % (i + 1);
    [ids[i], ids[j]] = [ids[j], ids[i]];
  }
  let next = 0;
  const pageTable = need.map((n) => ids.slice(next, (next += n)));
  const make = (src: Raw): Raw => {
    const pool = new (src.constructor as new (n: number) => Raw)(numPages * pageSize * c.hkv * c.d);
    // Slots no sequence owns (past a sequence's last key, unused pages) hold NaN,
    // as a real cache may hold anything there: nothing may read them into a result.
    pool.fill(pool instanceof Float32Array ? NaN : 0x7fff); // 0x7fff: NaN in bf16 and in fp16
    for (let i = 0; i < c.kLens.length; i++) {
      for (let t = 0; t < c.kLens[i]; t++) {
        const page = pageTable[i][Math.floor(t / pageSize)];
        const slot = t % pageSize;
        for (let h = 0; h < c.hkv; h++) {
          const dst = kvLayout === 'NHD' ? ((page * pageSize + slot) * c.hkv + h) * c.d : ((page * c.hkv + h) * pageSize + slot) * c.d;
          const from = (h * c.totalK + c.cuSeqlensK[i] + t) * c.d;
          pool.set(src.subarray(from, from + c.d), dst);
        }
      }
    }
    return pool;
  };
  return { k: make(c.k.raw), v: make(c.v.raw), numPages, pageTable, kvLens: c.kLens };
}

/** A page pool tensor [numPages, hkv, pageSize, d]: NHD is layout 'bnhd', HND 'bhnd'. */
export function poolTensor(raw: Raw, c: RaggedCase, numPages: number, pageSize: number, kvLayout: 'NHD' | 'HND', device: DeviceSpec): Promise<Tensor> {
  return tensor(raw, { shape: [numPages, c.hkv, pageSize, c.d], dtype: c.dtype, layout: kvLayout === 'NHD' ? 'bnhd' : 'bhnd', device });
}

/** A case's page pools (pagePools) and their K and V tensors on `device`. */
export async function pagedKV(
  c: RaggedCase,
  pageSize: number,
  kvLayout: 'NHD' | 'HND',
  seed: number,
  device: DeviceSpec,
): Promise<{ pools: ReturnType<typeof pagePools>; k: Tensor; v: Tensor }> {
  const pools = pagePools(c, pageSize, kvLayout, seed);
  const k = await poolTensor(pools.k, c, pools.numPages, pageSize, kvLayout, device);
  const v = await poolTensor(pools.v, c, pools.numPages, pageSize, kvLayout, device);
  return { pools, k, v };
}

export function disposeAll(...ts: Array<{ dispose(): void } | null | undefined>): void {
  for (const t of ts) t?.dispose();
}

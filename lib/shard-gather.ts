// Gathering per-device parts of a head-sharded prefill (lib/sharded.ts) back
// into one array or tensor along the heads.
import { typeName } from './args';
import { checkTensor, deviceName, empty, resolveDevice, tensor, type Shape4, type Tensor, type TensorData } from './tensor';
import type { DeviceSpec, Layout } from './types';
import { count, readList, showShape } from './shard-plan';
import { alloc, MAX_HOST_ELEMENTS } from './shard-host';

/** Elements per piece when copying between devices through the host. */
const CHUNK = 2 ** 26;

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
/** A target known only at run time: a host array for 'host', a tensor otherwise. */
export function gatherHeads(parts: readonly Tensor[], target: 'host' | DeviceSpec): Promise<TensorData | Tensor>;
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

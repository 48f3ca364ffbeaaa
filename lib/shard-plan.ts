// Which heads each device gets in a head-sharded prefill (lib/sharded.ts):
// kv-head ranges planned from a device list, or read off per-device tensors,
// and the small argument helpers the sharding files share.
import { isArray, readField, show, typeName } from './args';
import { deviceName, resolveDevice, type Tensor } from './tensor';
import type { DeviceSpec } from './types';

/** One device's part of a head-sharded prefill. Ranges are [first, end). */
export interface HeadShard {
  /** Position in the device list. */
  index: number;
  /** 'cpu' or 'cuda:N' */
  device: string;
  kvHeads: readonly [number, number];
  queryHeads: readonly [number, number];
}

/** An error of the same class with `prefix: ` before its message (the original as the cause). */
export function prefixed(e: unknown, prefix: string): unknown {
  if (!(e instanceof Error)) return e;
  const C = e instanceof TypeError ? TypeError : e instanceof RangeError ? RangeError : Error;
  return new C(`${prefix}: ${e.message}`, { cause: e });
}

export function positiveInteger(x: unknown, name: string): number {
  if (typeof x !== 'number') throw new TypeError(`${name} must be a number, got ${typeName(x)}`);
  if (!Number.isSafeInteger(x) || x < 1) throw new RangeError(`${name} must be a positive integer, got ${show(x)}`);
  return x;
}

/** Elements of a [b, h, n, d] shape. */
export function count(shape: readonly number[]): number {
  return shape[0] * shape[1] * shape[2] * shape[3];
}

export function showShape(shape: readonly number[]): string {
  return `[${shape.join(', ')}]`;
}

/** The entries of an array argument, each read once. */
export function readList(list: unknown, name: string, what: string): unknown[] {
  if (!isArray(list)) throw new TypeError(`${name} must be an array of ${what}, got ${typeName(list)}`);
  const length = readField(list, 'length', `${name}.length`) as number;
  return Array.from({ length }, (_, i) => readField(list, String(i), `${name}[${i}]`));
}

/** Device specs resolved to 'cpu' / 'cuda:N'; errors name the entry. */
export function resolveDevices(devices: unknown, name: string): string[] {
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
  return planShards(hq, hkv, resolveDevices(devices, 'devices'), split, 'split');
}

/** Splits hkv kv heads over resolved devices, evenly or by `split` (read from the argument named `splitName`). */
export function planShards(hq: number, hkv: number, devices: string[], split: unknown, splitName: string): HeadShard[] {
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
  return consecutiveShards(devices, sizes, hq / hkv);
}

/** Device i gets the next sizes[i] kv heads and the `group` query heads of each. */
export function consecutiveShards(devices: readonly string[], sizes: readonly number[], group: number): HeadShard[] {
  let at = 0;
  return devices.map((device, index) => {
    const kv = [at, at + sizes[index]] as const;
    at += sizes[index];
    return Object.freeze({ index, device, kvHeads: Object.freeze(kv), queryHeads: Object.freeze([kv[0] * group, kv[1] * group] as const) });
  });
}

/** Checks per-device tensors and derives the head ranges from their shapes. */
export function planFromTensors(q: Tensor[], k: Tensor[], v: Tensor[]): HeadShard[] {
  const n = q.length;
  if (k.length !== n || v.length !== n) {
    throw new RangeError(`q, k and v must hold one tensor per device: got ${q.length}, ${k.length} and ${v.length}`);
  }
  const [b0, , nq0, d0] = q[0].shape;
  const nk0 = k[0].shape[2];
  const group = q[0].shape[1] / k[0].shape[1];
  const sizes = q.map((qi, i) => {
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
    return hk;
  });
  return consecutiveShards(q.map((t) => t.device), sizes, group);
}

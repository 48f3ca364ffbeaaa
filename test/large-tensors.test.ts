// Tensors written and read in parts (write(data, offset) / read(offset,
// length)), for tensors larger than one typed array; range checks; byte sizes
// near the limits.
import * as os from 'os';
import * as prism from '../lib/index';
import type { Tensor } from '../lib/index';
import { native } from '../lib/native';
import { MAX_ARRAY_LENGTH } from '../lib/tensor';
import { describeGpu } from './helpers/gpu';
import { nativeError } from './helpers/data';

type Device = 'cpu' | 'cuda';

function pattern(n: number, seed: number): Uint16Array {
  const a = new Uint16Array(n);
  for (let i = 0; i < n; i++) a[i] = (seed * 7919 + i * 31) & 0xffff;
  return a;
}

function partsSuite(device: Device) {
  test('written in parts, read back whole and in parts (float32, float16)', async () => {
    const shape = [1, 2, 10, 8] as const; // 160 elements
    for (const dtype of ['float32', 'float16'] as const) {
      const t = prism.empty(shape, { device, dtype });
      const whole = dtype === 'float32' ? Float32Array.from(pattern(160, 1), (x) => x / 7) : pattern(160, 2);
      const cuts = [0, 50, 120, 160];
      // Out of order, to show each part lands at its own offset.
      for (const i of [2, 0, 1]) await t.write(whole.subarray(cuts[i], cuts[i + 1]), cuts[i]);
      await t.write(whole.subarray(0, 0), 160); // empty write at the end
      expect(Array.from(await t.toHost())).toEqual(Array.from(whole));
      for (const [offset, length] of [
        [0, 160],
        [0, 1],
        [159, 1],
        [37, 90],
        [160, 0],
      ]) {
        const part = await t.read(offset, length);
        expect(part.constructor).toBe(whole.constructor);
        expect(Array.from(part)).toEqual(Array.from(whole.subarray(offset, offset + length)));
      }
      t.dispose();
    }
  });

  test('offsets and lengths out of range are RangeErrors; wrong types TypeErrors', async () => {
    const t = prism.empty([1, 1, 4, 8], { device, dtype: 'bfloat16' }); // 32 elements
    const data = pattern(8, 3);
    await expect(t.write(data, 25)).rejects.toThrow('8 elements at offset 25 run past the tensor\'s 32');
    await expect(t.write(data, -1)).rejects.toThrow(RangeError);
    await expect(t.write(data, 1.5)).rejects.toThrow(RangeError);
    await expect(t.write(data, 33)).rejects.toThrow(RangeError);
    await expect(t.write(data, '1' as never)).rejects.toThrow(TypeError);
    await expect(t.write(new Float32Array(8), 0)).rejects.toThrow(TypeError);
    await expect(t.read(30, 3)).rejects.toThrow('elements [30, 33) run past the tensor\'s 32');
    await expect(t.read(33, 0)).rejects.toThrow(RangeError);
    await expect(t.read(0, -1)).rejects.toThrow(RangeError);
    await expect(t.read(0, 2 ** 53)).rejects.toThrow(RangeError);
    await expect(t.read(NaN, 1)).rejects.toThrow(RangeError);
    // The addon checks again.
    const N = t.native;
    expect(nativeError(() => N.upload(data, 25))).toBe("RangeError: 8 elements at offset 25 run past the tensor's 32");
    expect(nativeError(() => N.upload(data, -1))).toBe('RangeError: offset must be in [0, 32]');
    expect(nativeError(() => N.toHost(30, 3))).toBe("RangeError: elements [30, 33) run past the tensor's 32");
    expect(nativeError(() => N.toHost(0, 1.5))).toBe('RangeError: length must be an integer');
    t.dispose();
    await expect(t.read(0, 1)).rejects.toThrow('tensor has been disposed');
    await expect(t.write(data, 0)).rejects.toThrow('tensor has been disposed');
  });
}

describe('tensor parts on the CPU', () => partsSuite('cpu'));
describeGpu('tensor parts on the GPU', () => partsSuite('cuda'));

describe('sizes near the limits', () => {
  test('byte lengths above 2^53 - 1 are RangeErrors, computed without overflow', () => {
    const before = prism.memoryStats('cpu').allocations;
    // 2^52 float32 elements: 2^54 bytes.
    expect(() => prism.empty([1, 1, 2 ** 26, 2 ** 26], { device: 'cpu' })).toThrow(
      'a tensor of 4503599627370496 float32 elements (18014398509481984 bytes) is larger than 2^53 - 1 bytes',
    );
    // 2^51 float32 elements: 2^53 bytes, one more than allowed.
    expect(() => prism.empty([2, 2, 2 ** 24, 2 ** 25], { device: 'cpu' })).toThrow(/\(9007199254740992 bytes\)/);
    // Elements at the limit of a safe integer, 2 bytes each.
    expect(() => prism.empty([1, 1, 1, Number.MAX_SAFE_INTEGER], { device: 'cpu', dtype: 'float16' })).toThrow(RangeError);
    expect(prism.memoryStats('cpu').allocations).toBe(before); // nothing was tried
    // The addon applies the same rule.
    expect(nativeError(() => new (native().Tensor)(-1, 0, [2 ** 25, 2 ** 26], 0))).toBe(
      'RangeError: a tensor of 2251799813685248 float32 elements is larger than 2^53 - 1 bytes',
    );
    // 2^51 bfloat16 elements (2^52 bytes) pass the size rule; no host has that memory.
    expect(() => prism.empty([2, 2, 2 ** 24, 2 ** 25], { device: 'cpu', dtype: 'bfloat16' })).toThrow('out of host memory');
  });

  test('to() copies through the host in parts', async () => {
    const n = 2 ** 26 + 1024; // two parts
    const t = prism.empty([1, 1, n / 4, 4], { device: 'cpu', dtype: 'float16' });
    const edge = pattern(400, 4);
    await t.write(edge, 2 ** 26 - 200); // across the part boundary
    await t.write(edge.subarray(0, 10), 0);
    const copy = await t.to('cpu');
    expect(Array.from(await copy.read(2 ** 26 - 200, 400))).toEqual(Array.from(edge));
    expect(Array.from(await copy.read(0, 12))).toEqual([...edge.subarray(0, 10), 0, 0]);
    t.dispose();
    copy.dispose();
  });
});

// 2^32 + 4096 16-bit elements: 8 GiB of memory, more than one typed array holds.
const HUGE = [1, 1, 2 ** 22 + 4, 1024] as const;
const HUGE_LENGTH = 2 ** 32 + 4096;

function hugeSuite(device: Device) {
  let t: Tensor;
  afterAll(() => t?.dispose());

  test('empty() allocates on the device without host data', () => {
    const rss = process.memoryUsage().rss;
    const before = prism.memoryStats(device);
    t = prism.empty(HUGE, { device, dtype: 'bfloat16' });
    expect(t.length).toBe(HUGE_LENGTH);
    expect(t.length).toBeGreaterThan(MAX_ARRAY_LENGTH - 1);
    expect(t.byteLength).toBe(2 * HUGE_LENGTH);
    expect(prism.memoryStats(device).tensorBytes - before.tensorBytes).toBe(2 * HUGE_LENGTH);
    // No host buffer of its size was made (on the CPU: pages are taken when written).
    expect(process.memoryUsage().rss - rss).toBeLessThan(256 * 2 ** 20);
  });

  test('written and read in parts across the 2^32 boundary', async () => {
    const a = pattern(4096, 5);
    const b = pattern(1024, 6);
    await t.write(a, 2 ** 32 - 2048); // straddles element 2^32
    await t.write(b, HUGE_LENGTH - 1024); // the last elements
    expect(Array.from(await t.read(2 ** 32 - 2048, 4096))).toEqual(Array.from(a));
    expect(Array.from(await t.read(2 ** 32, 8))).toEqual(Array.from(a.subarray(2048, 2056)));
    expect(Array.from(await t.read(2 ** 32 - 2050, 3))).toEqual([0, 0, a[0]]);
    expect(Array.from(await t.read(HUGE_LENGTH - 1030, 1030))).toEqual([...new Array(6).fill(0), ...b]);
    expect(Array.from(await t.read(0, 4))).toEqual([0, 0, 0, 0]);
    await expect(t.read(HUGE_LENGTH - 5, 6)).rejects.toThrow(`elements [${HUGE_LENGTH - 5}, ${HUGE_LENGTH + 1}) run past`);
    await expect(t.write(b, HUGE_LENGTH - 1023)).rejects.toThrow(RangeError);
    await expect(t.toHost()).rejects.toThrow(/read it in parts with read\(offset, length\)/);
  });
}

// The CPU tensor takes its pages lazily, but the OS may refuse 8 GiB of address
// space on a machine with less memory than that.
const enoughHostMemory = os.totalmem() >= 16 * 2 ** 30;
if (enoughHostMemory) {
  describe('a tensor of more than 2^32 elements on the CPU', () => hugeSuite('cpu'));
} else {
  console.warn(`[skipped: ${os.totalmem()} bytes of RAM] a tensor of more than 2^32 elements on the CPU`);
  describe.skip('a tensor of more than 2^32 elements on the CPU', () => hugeSuite('cpu'));
}
describeGpu('a tensor of more than 2^32 elements on the GPU', () => hugeSuite('cuda'));

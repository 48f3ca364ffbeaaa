// The JS thread's current CUDA device belongs to the process (another addon
// may use CUDA on it): every call on cuda:N must leave it as it was. With one
// GPU every device is device 0, so the calls are checked on two.

import { describeGpus, gpu } from './helpers/gpu';
import { native } from '../lib/native';
import { prefill } from '../lib/ops';
import { prefillVarlen } from '../lib/varlen';
import { memoryStats, releaseCachedMemory } from '../lib/memory';
import { empty } from '../lib/tensor';
import { packed, raggedCase } from './helpers/varlen';
import { nativeError } from './helpers/data';
import type { DeviceSpec } from '../lib/types';

const testing = native().testing;

(gpu.available ? describe : describe.skip)('currentDevice / setCurrentDevice (testing helpers)', () => {
  test('an absent device is refused, as by every call; the current one is kept', () => {
    const before = testing.currentDevice();
    // native errors come from the addon's realm: compared by name and message
    expect(nativeError(() => testing.setCurrentDevice(1000))).toMatch(/^Error: device cuda:1000 is not available/);
    expect(nativeError(() => testing.setCurrentDevice(-1))).toBe('RangeError: device must be in [0, 1023]');
    expect(testing.currentDevice()).toBe(before);
  });
});

describeGpus(2, 'calls on one GPU leave the calling thread on another', () => {
  afterEach(() => testing.setCurrentDevice(0));

  for (const [other, used] of [
    [1, 0],
    [0, 1],
  ] as const) {
    test(`current cuda:${other}, calls on cuda:${used}`, async () => {
      const device: DeviceSpec = `cuda:${used}`;
      testing.setCurrentDevice(other);
      const stays = (what: string) => expect([what, testing.currentDevice()]).toEqual([what, other]);
      const c = raggedCase({ hq: 4, hkv: 2, d: 64, dtype: 'bfloat16', layout: 'bhnd', qLens: [300, 129], kLens: [300, 400], seed: 11 });
      // the first call on a device also creates its context and streams
      const scratch = empty([1, 1, 8, 64], { dtype: 'bfloat16', device });
      stays('empty');
      const t = await packed(c, device);
      stays('upload');
      const one = prefill(t.q, t.k, t.v, { block: 64 }, { returnMask: true });
      stays('prefill (enqueue)');
      const res = await one;
      stays('prefill');
      const batch = prefillVarlen(t.q, t.k, t.v, { cuSeqlensQ: c.cuSeqlensQ, cuSeqlensK: c.cuSeqlensK }, { block: 64, returnLse: true }, { returnMask: true });
      stays('prefillVarlen (enqueue)');
      const vr = await batch;
      stays('prefillVarlen');
      expect(memoryStats(device).device).toBe(device);
      stays('memoryStats');
      await res.output.toHost();
      stays('toHost');
      for (const x of [res.output, vr.output, vr.lse, scratch]) x?.dispose();
      res.mask?.dispose();
      for (const m of vr.masks ?? []) m?.dispose();
      for (const x of [t.q, t.k, t.v]) x.dispose();
      stays('dispose');
      await releaseCachedMemory(device);
      stays('releaseCachedMemory');
    });
  }
});

// The JS thread's current CUDA device belongs to the process (another addon
// may use CUDA on it): every call on cuda:N must leave it as it was, except
// that no device gets a context only to be set back (a process that uses only
// cuda:1 makes none on device 0, the default of a thread that chose none).
// With one GPU every device is device 0, so the calls are checked on two.

import { describeGpus, gpu } from './helpers/gpu';
import { native } from '../lib/native';
import { prefill } from '../lib/ops';
import { prefillVarlen } from '../lib/varlen';
import { memoryStats, releaseCachedMemory } from '../lib/memory';
import { empty } from '../lib/tensor';
import { packed, raggedCase } from './helpers/varlen';
import { nativeError } from './helpers/data';
import type { DeviceSpec } from '../lib/types';
import { spawnSync } from 'child_process';
import * as path from 'path';

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

// A fresh process whose calls all run on cuda:1: its JS thread chose no device
// (cudaGetDevice reads 0), and device 0 must get no context from the calls.
const onlyDeviceOne = `
const lib = require(process.argv[1]);
const { native } = require(process.argv[2]);
(async () => {
  const t = native().testing;
  const before = [t.primaryContextActive(0), t.primaryContextActive(1)];
  const x = await lib.tensor(new Uint16Array(4 * 256 * 64).fill(0x3f80), { shape: [1, 4, 256, 64], dtype: 'bfloat16', device: 'cuda:1' });
  const r = await lib.prefill(x, x, x, { block: 64 });
  await r.output.toHost();
  r.output.dispose();
  r.mask.dispose();
  x.dispose();
  await lib.releaseCachedMemory('cuda:1');
  process.stdout.write(JSON.stringify({ before, after: [t.primaryContextActive(0), t.primaryContextActive(1)], current: t.currentDevice() }));
})().catch((e) => { console.error(e); process.exit(2); });
`;

describeGpus(2, 'a process that only uses cuda:1', () => {
  test('makes no context on device 0; its JS thread is left on cuda:1', () => {
    const root = path.resolve(__dirname, '..');
    const r = spawnSync(process.execPath, ['-e', onlyDeviceOne, path.join(root, 'dist', 'lib', 'index.js'), path.join(root, 'dist', 'lib', 'native.js')], { cwd: root, encoding: 'utf8', timeout: 60_000 });
    expect({ status: r.status, stderr: r.stderr }).toEqual({ status: 0, stderr: '' });
    expect(JSON.parse(r.stdout)).toEqual({ before: [false, false], after: [false, true], current: 1 });
  });
});

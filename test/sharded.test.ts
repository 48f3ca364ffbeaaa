// prefillSharded: the heads of one prefill split over several devices. On
// this machine the device list is ['cpu', 'cpu', ...]: splitting the heads
// must give exactly the single-device outputs, selections and lse. With two
// GPUs, the same against one GPU.

import { describeGpu, describeGpus } from './helpers/gpu';
import {
  gatherHeads,
  planHeadShards,
  prefillSharded,
  ShardedPrefillResult,
  uploadHeadShards,
  type HostHeads,
} from '../lib/sharded';
import * as api from '../lib/index';
import { prefill } from '../lib/ops';
import { empty, tensor, Tensor } from '../lib/tensor';
import { structuredGenerator, structuredWorkload } from '../lib/workloads/structured';
import { bhndToBnhd } from './helpers/compare';
import type { DeviceSpec, DType, HostBlockMask, Layout } from '../lib/types';

const same = (a: ArrayLike<number>, b: ArrayLike<number>): boolean => {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i] && !(Number.isNaN(a[i]) && Number.isNaN(b[i]))) return false;
  return true;
};

interface Problem {
  batch: number;
  hq: number;
  hkv: number;
  n: number;
  d: number;
  dtype: DType;
  layout: Layout;
}

/** Structured inputs as host data in the problem's layout. */
function hostInputs(p: Problem, seed = 3): { q: HostHeads; k: HostHeads; v: HostHeads } {
  const w = structuredWorkload({ batch: p.batch, hq: p.hq, hkv: p.hkv, seqLen: p.n, d: p.d, dtype: p.dtype, seed, segmentLength: 256 });
  const lay = (x: Float32Array | Uint16Array, h: number): Float32Array | Uint16Array => {
    return p.layout === 'bhnd' ? x : bhndToBnhd(x, p.batch, h, p.n, p.d);
  };
  const host = (data: Float32Array | Uint16Array, h: number): HostHeads => ({
    shape: [p.batch, h, p.n, p.d],
    data: lay(data, h),
    dtype: p.dtype,
    layout: p.layout,
  });
  return { q: host(w.q, p.hq), k: host(w.k, p.hkv), v: host(w.v, p.hkv) };
}

async function upload(x: HostHeads, device: DeviceSpec): Promise<Tensor> {
  return tensor(x.data as Float32Array | Uint16Array, { shape: x.shape, dtype: x.dtype, layout: x.layout, device });
}

/** Query-head slice [h0, h1) of a dense host mask [b, H, nq, nk]. */
function maskHeads(m: HostBlockMask, h0: number, h1: number): Uint8Array {
  const per = m.nq * m.nk;
  const out = new Uint8Array(m.batch * (h1 - h0) * per);
  for (let b = 0; b < m.batch; b++) out.set(m.mask.subarray((b * m.heads + h0) * per, (b * m.heads + h1) * per), b * (h1 - h0) * per);
  return out;
}

/** The single-device prefill and the sharded one agree exactly: outputs, lse, selections, density. */
async function expectSameAsSingle(p: Problem, devices: DeviceSpec[], single: DeviceSpec, split?: number[], block = 64): Promise<ShardedPrefillResult> {
  const inputs = hostInputs(p);
  const opts = { block, returnLse: true as const };
  const [q, k, v] = [await upload(inputs.q, single), await upload(inputs.k, single), await upload(inputs.v, single)];
  const one = await prefill(q, k, v, opts);
  const res = await prefillSharded(inputs.q, inputs.k, inputs.v, opts, { devices, ...(split ? { split } : {}) });
  try {
    expect(res).toBeInstanceOf(ShardedPrefillResult);
    expect(res.shards.map((s) => s.device)).toEqual(devices.map((d) => (d === 'cuda' ? 'cuda:0' : d)));
    expect(same(await res.gather(), await one.output.toHost())).toBe(true);
    expect(same(await res.gatherLse(), await one.lse!.toHost())).toBe(true);
    const full = await one.mask!.toHost();
    for (const s of res.shards) {
      expect(s.output.shape).toEqual([p.batch, s.queryHeads[1] - s.queryHeads[0], p.n, p.d]);
      expect(s.output.device).toBe(s.device);
      expect(same((await s.mask!.toHost()).mask, maskHeads(full, s.queryHeads[0], s.queryHeads[1]))).toBe(true);
    }
    expect(res.stats.density).toBeCloseTo(one.stats.density, 12);
    expect(res.stats.wallMs).toBeGreaterThan(0);
    expect(res.stats.uploadMs).toBeGreaterThan(0);
    expect(res.stats.deviceMs).toBe(Math.max(...res.shards.map((s) => s.stats.estimateMs + s.stats.attentionMs)));
    return res;
  } finally {
    for (const t of [q, k, v, one.output, one.lse!]) t.dispose();
    one.mask!.dispose();
  }
}

describe('planHeadShards', () => {
  test('as even as possible, the first devices one more', () => {
    const p = planHeadShards(32, 8, ['cpu', 'cpu', 'cpu']);
    expect(p.map((s) => s.kvHeads)).toEqual([[0, 3], [3, 6], [6, 8]]);
    expect(p.map((s) => s.queryHeads)).toEqual([[0, 12], [12, 24], [24, 32]]);
    expect(p.map((s) => [s.index, s.device])).toEqual([[0, 'cpu'], [1, 'cpu'], [2, 'cpu']]);
    expect(planHeadShards(8, 8, ['cpu', 'cpu']).map((s) => s.queryHeads)).toEqual([[0, 4], [4, 8]]);
    expect(planHeadShards(4, 1, ['cpu']).map((s) => s.queryHeads)).toEqual([[0, 4]]);
    expect(Object.isFrozen(p[0])).toBe(true);
  });

  test('an explicit split', () => {
    expect(planHeadShards(16, 8, ['cpu', 'cpu'], [6, 2]).map((s) => s.queryHeads)).toEqual([[0, 12], [12, 16]]);
  });

  test('errors name the argument', () => {
    expect(() => planHeadShards(32, 2, ['cpu', 'cpu', 'cpu'])).toThrow(
      new RangeError('devices: 3 devices but 2 kv heads; every device needs at least one kv head (list at most 2 devices)'),
    );
    expect(() => planHeadShards(32, 6, ['cpu'])).toThrow(new RangeError('query heads (32) must be a multiple of kv heads (6)'));
    expect(() => planHeadShards(32, 8, [])).toThrow(new RangeError('devices must list at least one device'));
    expect(() => planHeadShards(32, 8, 'cpu' as never)).toThrow(TypeError);
    expect(() => planHeadShards(32, 8, ['cpu', 'gpu' as DeviceSpec])).toThrow(/^devices\[1\]: device must be 'auto', 'cpu', 'cuda' or 'cuda:N', got 'gpu'$/);
    expect(() => planHeadShards(32, 8, ['cpu', 'cpu'], [4, 3])).toThrow(new RangeError('split must add up to the kv heads (8), got 7'));
    expect(() => planHeadShards(32, 8, ['cpu', 'cpu'], [8])).toThrow(new RangeError('split has 1 entries for 2 devices'));
    expect(() => planHeadShards(32, 8, ['cpu', 'cpu'], [8, 0])).toThrow(new RangeError('split[1] must be a positive integer, got 0'));
    expect(() => planHeadShards(0, 8, ['cpu'])).toThrow(RangeError);
    expect(() => planHeadShards(32, '8' as never, ['cpu'])).toThrow(TypeError);
  });

  test('an unavailable GPU is named', () => {
    const count = api.info().cudaUnavailableReason === null ? api.info().devices.length : 0;
    expect(() => planHeadShards(8, 2, ['cpu', `cuda:${count}` as DeviceSpec])).toThrow(
      new RegExp(`^devices\\[1\\]: device 'cuda:${count}' is not available: `),
    );
  });
});

describe('prefillSharded on the CPU', () => {
  test("['cpu', 'cpu'] gives exactly the single-device outputs (bf16, GQA 4)", async () => {
    const res = await expectSameAsSingle({ batch: 1, hq: 8, hkv: 2, n: 640, d: 64, dtype: 'bfloat16', layout: 'bhnd' }, ['cpu', 'cpu'], 'cpu');
    expect(res.shards.map((s) => s.kvHeads)).toEqual([[0, 1], [1, 2]]);
    res.dispose();
    expect(res.shards.every((s) => s.output.disposed && s.mask!.disposed && s.lse!.disposed)).toBe(true);
    res.dispose(); // idempotent
  });

  test('three devices, an uneven split, batch 2, bnhd layout, float32', async () => {
    const res = await expectSameAsSingle({ batch: 2, hq: 6, hkv: 3, n: 300, d: 32, dtype: 'float32', layout: 'bnhd' }, ['cpu', 'cpu', 'cpu'], 'cpu');
    expect(res.shards.map((s) => s.queryHeads)).toEqual([[0, 2], [2, 4], [4, 6]]);
    res.dispose();
    const uneven = await expectSameAsSingle({ batch: 1, hq: 8, hkv: 4, n: 256, d: 32, dtype: 'float16', layout: 'bhnd' }, ['cpu', 'cpu'], 'cpu', [3, 1]);
    expect(uneven.shards.map((s) => s.queryHeads)).toEqual([[0, 6], [6, 8]]);
    uneven.dispose();
  });

  test('host data made head by head (a function) and per-device tensor shards', async () => {
    const p = { batch: 1, hq: 4, hkv: 2, n: 512, d: 64 };
    const gen = structuredGenerator({ batch: 1, hq: p.hq, hkv: p.hkv, seqLen: p.n, d: p.d, dtype: 'bfloat16', seed: 9 });
    const whole = structuredWorkload({ batch: 1, hq: p.hq, hkv: p.hkv, seqLen: p.n, d: p.d, dtype: 'bfloat16', seed: 9 });
    const calls: string[] = [];
    const q: HostHeads = {
      shape: [1, p.hq, p.n, p.d],
      dtype: 'bfloat16',
      data: (b, h) => {
        calls.push(`q${b}.${h}`);
        return gen.queryHead(b, h);
      },
    };
    const k: HostHeads = { shape: [1, p.hkv, p.n, p.d], dtype: 'bfloat16', data: (b, g) => gen.keyValueHead(b, g).k };
    const v: HostHeads = { shape: [1, p.hkv, p.n, p.d], dtype: 'bfloat16', data: (b, g) => gen.keyValueHead(b, g).v };
    const shards = await uploadHeadShards(q, k, v, { devices: ['cpu', 'cpu'] });
    expect(calls.sort()).toEqual(['q0.0', 'q0.1', 'q0.2', 'q0.3']);
    expect(same(await shards.q[1].toHost(), whole.q.subarray(2 * p.n * p.d))).toBe(true);
    expect(same(await shards.v[0].toHost(), whole.v.subarray(0, p.n * p.d))).toBe(true);

    const single = await prefill(
      await tensor(whole.q, { shape: [1, p.hq, p.n, p.d], dtype: 'bfloat16', device: 'cpu' }),
      await tensor(whole.k, { shape: [1, p.hkv, p.n, p.d], dtype: 'bfloat16', device: 'cpu' }),
      await tensor(whole.v, { shape: [1, p.hkv, p.n, p.d], dtype: 'bfloat16', device: 'cpu' }),
      { block: 64 },
      { returnMask: false },
    );
    const want = await single.output.toHost();
    // a server's loop: the same shards, caller-owned outputs reused, no masks
    const out = shards.q.map((t) => empty(t.shape, { dtype: t.dtype, device: 'cpu' }));
    for (let it = 0; it < 2; it++) {
      const res = await prefillSharded(shards.q, shards.k, shards.v, { block: 64 }, { out, returnMask: false, devices: ['cpu', 'cpu'] });
      expect(res.shards.map((s) => s.output)).toEqual(out);
      expect(res.shards.every((s) => s.mask === null)).toBe(true);
      expect(res.stats.uploadMs).toBe(0);
      expect(same(await res.gather(), want)).toBe(true);
      const onCpu = await res.gather('cpu');
      expect(onCpu.shape).toEqual([1, p.hq, p.n, p.d]);
      expect(same(await onCpu.toHost(), want)).toBe(true);
      onCpu.dispose();
      res.dispose();
      expect(out.every((t) => !t.disposed)).toBe(true); // caller-owned: kept
    }
    expect(same(await gatherHeads(out), want)).toBe(true);
    shards.dispose();
    expect(shards.q.every((t) => t.disposed)).toBe(true);
    for (const t of out) t.dispose();
    single.output.dispose();
  });

  test('host data made head by head is written head by head; batch entries of a whole array in place', async () => {
    const write = jest.spyOn(Tensor.prototype, 'write');
    try {
      const p = { hq: 4, hkv: 2, n: 256, d: 32 };
      const whole = structuredWorkload({ hq: p.hq, hkv: p.hkv, seqLen: p.n, d: p.d, dtype: 'bfloat16', seed: 2 });
      const gen = structuredGenerator({ hq: p.hq, hkv: p.hkv, seqLen: p.n, d: p.d, dtype: 'bfloat16', seed: 2 });
      const host = (h: number, f: (b: number, h: number) => Uint16Array | Float32Array): HostHeads => ({ shape: [1, h, p.n, p.d], dtype: 'bfloat16', data: f });
      const shards = await uploadHeadShards(
        host(p.hq, (b, h) => gen.queryHead(b, h)),
        host(p.hkv, (b, g) => gen.keyValueHead(b, g).k),
        host(p.hkv, (b, g) => gen.keyValueHead(b, g).v),
        { devices: ['cpu', 'cpu'] },
      );
      expect(write.mock.calls.map((c) => c[1]).sort((a, b) => a! - b!)).toEqual([0, 0, 0, 0, 0, 0, p.n * p.d, p.n * p.d]);
      expect(same(await shards.q[1].toHost(), whole.q.subarray(2 * p.n * p.d))).toBe(true);
      expect(same(await shards.k[1].toHost(), whole.k.subarray(p.n * p.d))).toBe(true);
      shards.dispose();

      // a whole array with batch 2: one write per batch entry and shard, no host copy
      write.mockClear();
      const two = hostInputs({ batch: 2, hq: 4, hkv: 2, n: 128, d: 32, dtype: 'float32', layout: 'bhnd' });
      const s2 = await uploadHeadShards(two.q, two.k, two.v, { devices: ['cpu', 'cpu'] });
      expect(write).toHaveBeenCalledTimes(2 * 3 * 2);
      const qd = two.q.data as Float32Array;
      expect(same(await s2.q[1].toHost(), [...qd.subarray(2 * 128 * 32, 4 * 128 * 32), ...qd.subarray(6 * 128 * 32, 8 * 128 * 32)])).toBe(true);
      s2.dispose();
    } finally {
      write.mockRestore();
    }
  });

  test('gathering to a device goes piece by piece (read / write)', async () => {
    const { q, k, v } = hostInputs({ batch: 2, hq: 6, hkv: 3, n: 96, d: 16, dtype: 'float16', layout: 'bhnd' });
    const res = await prefillSharded(q, k, v, { block: 32 }, { devices: ['cpu', 'cpu', 'cpu'], returnMask: false });
    const read = jest.spyOn(Tensor.prototype, 'read');
    try {
      const onCpu = await res.gather('cpu');
      expect(read).toHaveBeenCalledTimes(3 * 2);
      expect(same(await onCpu.toHost(), await res.gather())).toBe(true);
      onCpu.dispose();
    } finally {
      read.mockRestore();
      res.dispose();
    }
  });

  test('argument errors reject before any work', async () => {
    const { q, k, v } = hostInputs({ batch: 1, hq: 4, hkv: 2, n: 128, d: 32, dtype: 'float32', layout: 'bhnd' });
    const ts = await uploadHeadShards(q, k, v, { devices: ['cpu', 'cpu'] });
    try {
      await expect(prefillSharded(q, k, v, {}, {})).rejects.toThrow(new TypeError('run.devices is required with host inputs: the devices to split the heads over'));
      await expect(prefillSharded(q, ts.k, ts.v, {}, { devices: ['cpu', 'cpu'] })).rejects.toThrow(/^q, k and v must all be arrays of per-device Tensors or all host inputs/);
      await expect(prefillSharded(q, k, v, { blok: 64 } as never, { devices: ['cpu'] })).rejects.toThrow(/^unknown prefill option field 'blok'/);
      await expect(prefillSharded(q, k, v, { block: 100 }, { devices: ['cpu'] })).rejects.toThrow(RangeError);
      await expect(prefillSharded(q, k, v, {}, { devices: ['cpu'], bogus: 1 } as never)).rejects.toThrow(/^unknown sharded run option field 'bogus'/);
      await expect(prefillSharded(q, k, v, {}, { devices: ['cpu', 'cpu', 'cpu'] })).rejects.toThrow(/^devices: 3 devices but 2 kv heads/);
      await expect(prefillSharded({ ...q, data: new Float32Array(3) }, k, v, {}, { devices: ['cpu'] })).rejects.toThrow(
        new RangeError('q.data has 3 elements but shape [1, 4, 128, 32] needs 16384'),
      );
      await expect(prefillSharded({ ...q, shape: [1, 4, 64, 32] }, k, { ...v, shape: [1, 2, 100, 32] }, {}, { devices: ['cpu'] })).rejects.toThrow(
        /^q.data has 16384 elements/,
      );
      await expect(prefillSharded(ts.q, ts.k, ts.v, {}, { split: [1, 1] })).rejects.toThrow(new TypeError('run.split applies to host inputs; tensor shards carry their heads'));
      await expect(prefillSharded(ts.q, ts.k, ts.v, {}, { devices: ['cpu'] })).rejects.toThrow(/^run.devices \(cpu\) do not match the tensors' devices \(cpu, cpu\)/);
      await expect(prefillSharded(ts.q, [ts.k[0]], ts.v)).rejects.toThrow(new RangeError('q, k and v must hold one tensor per device: got 2, 1 and 2'));
      await expect(prefillSharded([ts.q[0], ts.k[1]], ts.k, ts.v)).rejects.toThrow(/^q\[1\] has 1 heads for k\[1\]'s 1 kv heads; shard 0 has 2 query heads per kv head/);
      await expect(prefillSharded([], [], [])).rejects.toThrow(new RangeError('q must hold one tensor per device, got an empty array'));
      await expect(prefillSharded(ts.q, ts.k, ts.v, {}, { out: [ts.q[1], ts.k[0]] })).rejects.toThrow(
        new RangeError('run.out[1] must match q[1]: [1, 2, 128, 32] float32 bhnd on cpu, got [1, 1, 128, 32] float32 bhnd on cpu'),
      );
      await expect(prefillSharded(q, k, v, {}, { devices: ['cpu', 'cpu'], out: [ts.q[0]] })).rejects.toThrow(new RangeError('run.out has 1 tensors for 2 devices'));
      const short = await tensor(new Float32Array(64 * 32), { shape: [1, 1, 64, 32], device: 'cpu' });
      await expect(prefillSharded([ts.q[0], ts.q[1]], [ts.k[0], short], ts.v)).rejects.toThrow(/^shard 1 holds other tokens than shard 0/);
      short.dispose();
      // nothing leaked into the shards
      expect([...ts.q, ...ts.k, ...ts.v].every((t) => !t.disposed)).toBe(true);
      await expect(gatherHeads([])).rejects.toThrow(RangeError);
      await expect(gatherHeads([ts.q[0], ts.k[0], ts.q[1]], 'host')).resolves.toHaveLength(5 * 128 * 32);
    } finally {
      ts.dispose();
    }
  });

  test('each part is checked as prefill() checks it, and no run.out overlaps an input or another run.out, before any device starts', async () => {
    const { q, k, v } = hostInputs({ batch: 1, hq: 4, hkv: 2, n: 128, d: 32, dtype: 'float32', layout: 'bhnd' });
    const ts = await uploadHeadShards(q, k, v, { devices: ['cpu', 'cpu'] });
    const o0 = empty([...ts.q[0].shape], { device: 'cpu' });
    const o1 = empty([...ts.q[1].shape], { device: 'cpu' });
    const longV = await tensor(new Float32Array(256 * 32), { shape: [1, 1, 256, 32], device: 'cpu' });
    try {
      const q0 = await ts.q[0].toHost();
      await expect(prefillSharded(ts.q, ts.k, ts.v, {}, { out: [o0, ts.q[0]] })).rejects.toThrow(
        new RangeError('run.out[1] shares memory with q[0]: the output must not overlap an input'),
      );
      await expect(prefillSharded(ts.q, ts.k, ts.v, {}, { out: [o0, o0] })).rejects.toThrow(
        new RangeError('run.out[1] shares memory with run.out[0]: each part needs its own output'),
      );
      await expect(prefillSharded(ts.q, ts.k, [ts.v[0], longV], {}, { out: [o0, o1] })).rejects.toThrow(
        /^part 1 \(q\[1\], k\[1\], v\[1\]\): k and v must have the same shape/,
      );
      // no part ran: q[0] and the outputs are as they were (zeros)
      expect(same(await ts.q[0].toHost(), q0)).toBe(true);
      for (const o of [o0, o1]) expect((await o.toHost()).every((x) => x === 0)).toBe(true);
      // a result without lse rejects its gatherLse(), it does not throw
      const res = await prefillSharded(ts.q, ts.k, ts.v, {}, {});
      let thrown = false;
      let promise: Promise<unknown> | undefined;
      try {
        promise = res.gatherLse();
      } catch {
        thrown = true;
      }
      expect(thrown).toBe(false);
      await expect(promise).rejects.toThrow('gatherLse: no row log-sum-exp; run prefillSharded with opts.returnLse');
      res.dispose();
    } finally {
      ts.dispose();
      for (const t of [o0, o1, longV]) t.dispose();
    }
  });

  test('exported from the package entry', () => {
    expect(api.prefillSharded).toBe(prefillSharded);
    expect(api.planHeadShards).toBe(planHeadShards);
    expect(api.uploadHeadShards).toBe(uploadHeadShards);
    expect(api.gatherHeads).toBe(gatherHeads);
  });
});

describeGpu('prefillSharded on one GPU listed twice', () => {
  test("the kernels' limits reject, named with the device", async () => {
    const { q, k, v } = hostInputs({ batch: 1, hq: 4, hkv: 2, n: 256, d: 32, dtype: 'bfloat16', layout: 'bhnd' });
    await expect(prefillSharded(q, k, v, {}, { devices: ['cpu', 'cuda:0'] })).rejects.toThrow(/^cuda:0 \(kv heads \[1, 2\)\): head_dim 32 is not supported by CUDA attention/);
    const f = hostInputs({ batch: 1, hq: 4, hkv: 2, n: 256, d: 64, dtype: 'float32', layout: 'bhnd' });
    await expect(prefillSharded(f.q, f.k, f.v, {}, { devices: ['cuda:0', 'cuda:0'] })).rejects.toThrow(TypeError);
  });

  test("['cuda:0', 'cuda:0'] gives exactly the single-GPU outputs", async () => {
    const res = await expectSameAsSingle({ batch: 1, hq: 8, hkv: 2, n: 2048, d: 128, dtype: 'bfloat16', layout: 'bhnd' }, ['cuda:0', 'cuda:0'], 'cuda:0', undefined, 128);
    res.dispose();
  });
});

describeGpus(2, 'prefillSharded on two GPUs', () => {
  test('cuda:0 + cuda:1 give exactly the outputs of cuda:0 alone (32 q / 8 kv heads, bf16, d 128)', async () => {
    const res = await expectSameAsSingle({ batch: 1, hq: 32, hkv: 8, n: 4096, d: 128, dtype: 'bfloat16', layout: 'bhnd' }, ['cuda:0', 'cuda:1'], 'cuda:0', undefined, 128);
    expect(res.shards.map((s) => s.kvHeads)).toEqual([[0, 4], [4, 8]]);
    // gathered onto one GPU
    const onGpu = await res.gather('cuda:1');
    expect(onGpu.device).toBe('cuda:1');
    expect(same(await onGpu.toHost(), await res.gather())).toBe(true);
    onGpu.dispose();
    res.dispose();
  });

  test('per-device tensor shards (a tensor-parallel layout), fp16, batch 2, uneven split', async () => {
    const p: Problem = { batch: 2, hq: 12, hkv: 3, n: 1024, d: 64, dtype: 'float16', layout: 'bhnd' };
    const inputs = hostInputs(p, 5);
    const shards = await uploadHeadShards(inputs.q, inputs.k, inputs.v, { devices: ['cuda:1', 'cuda:0'], split: [1, 2] });
    const [q, k, v] = [await upload(inputs.q, 'cuda:0'), await upload(inputs.k, 'cuda:0'), await upload(inputs.v, 'cuda:0')];
    try {
      const one = await prefill(q, k, v, { block: 128 }, { returnMask: false });
      const res = await prefillSharded(shards.q, shards.k, shards.v, { block: 128 }, { returnMask: false });
      expect(res.shards.map((s) => [s.device, s.queryHeads])).toEqual([['cuda:1', [0, 4]], ['cuda:0', [4, 12]]]);
      expect(same(await res.gather(), await one.output.toHost())).toBe(true);
      expect(res.stats.density).toBeCloseTo(one.stats.density, 12);
      res.dispose();
      one.output.dispose();
    } finally {
      shards.dispose();
      for (const t of [q, k, v]) t.dispose();
    }
  });
});

// Public API surface: info(), tensor round trips for every dtype and layout,
// a small CPU estimate + attention, and loading through require and import.
import { execFileSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import * as prism from '../lib/index';
import { native } from '../lib/native';
import { describeGpu } from './helpers/gpu';
import { values } from './helpers/data';

const root = path.resolve(__dirname, '..');
const DTYPES = ['float32', 'float16', 'bfloat16'] as const;
const LAYOUTS = ['bhnd', 'bnhd'] as const;


function encode(x: Float32Array, dtype: (typeof DTYPES)[number]): Float32Array | Uint16Array {
  if (dtype === 'float32') return x;
  return dtype === 'bfloat16' ? prism.toBFloat16(x) : prism.toFloat16(x);
}

describe('info()', () => {
  test('reports build and device facts', () => {
    const i = prism.info();
    expect(i.napiVersion).toBe(8);
    expect(typeof i.cudaCompiled).toBe('boolean');
    expect(typeof i.cudaArchs).toBe('string');
    if (i.cudaCompiled) expect(i.cudaArchs).toMatch(/^(sm|compute)_\d+a?(,(sm|compute)_\d+a?)*$/);
    expect(i.cudaUnavailableReason === null || typeof i.cudaUnavailableReason === 'string').toBe(true);
    expect(typeof i.cudaRuntimeVersion).toBe('number');
    expect(typeof i.cudaDriverVersion).toBe('number');
    if (i.cudaCompiled) {
      // The major version of the runtime linked in; minor version compatibility covers the rest.
      expect(i.minDriverVersion).toBe(Math.floor(i.cudaRuntimeVersion / 1000) * 1000);
      expect(i.minDriver).toMatch(/^NVIDIA driver >= \d+ \(CUDA \d+\.0\)$|^a driver with CUDA \d+\.0 support$/);
      if (i.cudaRuntimeVersion >= 13000 && i.cudaRuntimeVersion < 14000) expect(i.minDriver).toBe('NVIDIA driver >= 580 (CUDA 13.0)');
      if (i.cudaUnavailableReason === null) expect(i.cudaDriverVersion).toBeGreaterThanOrEqual(i.minDriverVersion);
    } else {
      expect(i.minDriverVersion).toBe(0);
      expect(i.minDriver).toBeNull();
    }
    expect(Array.isArray(i.devices)).toBe(true);
    if (i.devices.length === 0) expect(i.cudaUnavailableReason).toEqual(expect.any(String));
    for (const d of i.devices) {
      expect(d).toEqual({
        index: expect.any(Number),
        name: expect.any(String),
        major: expect.any(Number),
        minor: expect.any(Number),
        multiProcessors: expect.any(Number),
        totalMemory: expect.any(Number),
        attentionPath: expect.any(String),
      });
    }
    expect(i.cpuThreads).toBeGreaterThanOrEqual(1);
  });

  test('says which driver is needed when the installed one is too old', () => {
    const reason = native().testing.driverReason;
    expect(reason(12080, 13000)).toBe('the NVIDIA driver supports CUDA 12.8; this binary needs CUDA 13.0 (driver >= 580)');
    expect(reason(12000, 13000)).toBe('the NVIDIA driver supports CUDA 12.0; this binary needs CUDA 13.0 (driver >= 580)');
    expect(reason(11040, 12000)).toBe('the NVIDIA driver supports CUDA 11.4; this binary needs CUDA 12.0 (driver >= 525)');
    expect(reason(0, 13000)).toBe('no NVIDIA driver found; this binary needs CUDA 13.0 (driver >= 580)');
    expect(reason(13000, 14000)).toBe('the NVIDIA driver supports CUDA 13.0; this binary needs CUDA 14.0');
  });
});

function roundTrips(device: 'cpu' | 'cuda') {
  for (const dtype of DTYPES) {
    for (const layout of LAYOUTS) {
      test(`${dtype} ${layout}`, async () => {
        const shape = [2, 3, 5, 8] as const;
        const data = encode(values(2 * 3 * 5 * 8, 7), dtype);
        const t = await prism.tensor(data, { shape, dtype, layout, device });
        expect(t.shape).toEqual([2, 3, 5, 8]);
        expect(t.dtype).toBe(dtype);
        expect(t.layout).toBe(layout);
        expect(t.device).toBe(device === 'cpu' ? 'cpu' : 'cuda:0');
        expect(t.byteLength).toBe(data.byteLength);
        expect(await t.toHost()).toEqual(data);
        const f32 = await t.toFloat32();
        expect(f32).toBeInstanceOf(Float32Array);
        const decoded =
          dtype === 'float32'
            ? data
            : dtype === 'bfloat16'
              ? prism.fromBFloat16(data as Uint16Array)
              : prism.fromFloat16(data as Uint16Array);
        expect(f32).toEqual(decoded);
        const copy = await t.to('cpu');
        expect(await copy.toHost()).toEqual(data);
        t.dispose();
        copy.dispose();
      });
    }
  }
}

describe('tensor round trip on the CPU', () => {
  roundTrips('cpu');

  test('toFloat32 decodes 16-bit data', async () => {
    const x = values(64, 3);
    const bf = await prism.tensor(prism.toBFloat16(x), { shape: [1, 1, 8, 8], dtype: 'bfloat16', device: 'cpu' });
    expect(await bf.toFloat32()).toEqual(prism.fromBFloat16(prism.toBFloat16(x)));
    const hf = await prism.tensor(prism.toFloat16(x), { shape: [1, 1, 8, 8], dtype: 'float16', device: 'cpu' });
    expect(await hf.toFloat32()).toEqual(prism.fromFloat16(prism.toFloat16(x)));
  });

  test('empty() is zero-filled and auto picks a device', async () => {
    const t = prism.empty([1, 2, 3, 4], { device: 'cpu' });
    expect(Array.from(await t.toHost())).toEqual(new Array(24).fill(0));
    const a = prism.empty([1, 1, 1, 2]);
    expect(a.device).toBe(prism.info().devices.length > 0 && prism.info().cudaUnavailableReason === null ? 'cuda:0' : 'cpu');
  });
});

describeGpu('tensor round trip on the GPU', () => roundTrips('cuda'));

describe('CPU estimate + attention', () => {
  test('mask has sink and diagonal; attention output is finite; sparse ~ dense', async () => {
    const [b, hq, hkv, nq, nk, d] = [1, 4, 2, 200, 256, 32];
    const q = await prism.tensor(values(b * hq * nq * d, 1), { shape: [b, hq, nq, d], device: 'cpu' });
    const k = await prism.tensor(values(b * hkv * nk * d, 2), { shape: [b, hkv, nk, d], device: 'cpu' });
    const v = await prism.tensor(values(b * hkv * nk * d, 3), { shape: [b, hkv, nk, d], device: 'cpu' });
    const mask = await prism.estimate(q, k, { block: 32 });
    const h = await mask.toHost();
    expect([h.nq, h.nk, h.block]).toEqual([7, 8, 32]);
    const off = h.nk - h.nq;
    for (let row = 0; row < b * hq * h.nq; row++) {
      const i = row % h.nq;
      expect(h.mask[row * h.nk]).toBe(1);
      expect(h.mask[row * h.nk + i + off]).toBe(1);
      expect(h.counts[row]).toBeGreaterThanOrEqual(2);
    }
    const density = mask.density();
    expect(density).toBeGreaterThan(0);
    expect(density).toBeLessThanOrEqual(1);
    const out = await prism.attention(q, k, v, mask);
    expect(out.shape).toEqual(q.shape);
    const o = await out.toFloat32();
    expect(o.every(Number.isFinite)).toBe(true);
    const dense = await prism.attention(q, k, v, null);
    expect(await prism.relativeError(dense, dense)).toBe(0);
    const recall = await prism.massRecall(q, k, null, [[0, 0, 0], [0, 3, nq - 1]]);
    expect(Array.from(recall)).toEqual([1, 1]);
    const p = await prism.prefill(q, k, v, { block: 32 });
    expect(p.stats.density).toBeCloseTo(density, 6);
    expect(p.stats.estimateMs).toBeGreaterThanOrEqual(0);
    expect(p.stats.attentionMs).toBeGreaterThanOrEqual(0);
    expect(await p.output.toFloat32()).toEqual(o);
    const timed = await prism.timeAttention(q, k, v, mask, {}, { warmup: 1, iters: 3 });
    expect(timed.timesMs).toHaveLength(3);
    for (const t of [q, k, v, out, dense, p.output, timed.output]) t.dispose();
    mask.dispose();
    p.mask?.dispose();
  });
});

describe('package entry points', () => {
  const script = `
    const p = PRISM;
    (async () => {
      const t = await p.tensor(new Float32Array([1, 2, 3, 4]), { shape: [1, 1, 2, 2], device: 'cpu' });
      const back = Array.from(await t.toHost());
      console.log(JSON.stringify({ back, napi: p.info().napiVersion, names: typeof p.estimate }));
    })();
  `;

  test('require() loads the CommonJS build', () => {
    const out = execFileSync(process.execPath, ['-e', script.replace('PRISM', "require('prism-attention')")], {
      cwd: root,
      encoding: 'utf8',
    });
    expect(JSON.parse(out)).toEqual({ back: [1, 2, 3, 4], napi: 8, names: 'function' });
  });

  test('import() loads the ESM entry', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'prism-esm-'));
    const file = path.join(dir, 'load.mjs');
    const entry = path.join(root, 'dist', 'lib', 'index.mjs');
    fs.writeFileSync(
      file,
      `import * as P from ${JSON.stringify(entry)};\nimport def from ${JSON.stringify(entry)};\n` +
        `if (def.tensor !== P.tensor) throw new Error('default and named exports differ');\n` +
        script.replace('PRISM', 'P'),
    );
    const out = execFileSync(process.execPath, [file], { encoding: 'utf8' });
    expect(JSON.parse(out)).toEqual({ back: [1, 2, 3, 4], napi: 8, names: 'function' });
    fs.rmSync(dir, { recursive: true, force: true });
  });
});

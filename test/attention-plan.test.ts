// The addon's answers about the CUDA attention plan that need no GPU:
// supports() (the kernels' own table, which lib/ops.ts turns into its error
// messages), the internal tuning entry (argument checks, defaults, round trip
// in CUDA builds), and that no native code reads environment variables.
import * as fs from 'fs';
import * as path from 'path';
import { info, native, NativeDType } from '../lib/native';

const root = path.resolve(__dirname, '..');

/** The error fn throws, as "Name: message" (the addon's errors come from another realm than jest's). */
function thrown(fn: () => unknown): string {
  try {
    fn();
  } catch (e) {
    return typeof e === 'object' && e !== null && 'name' in e && 'message' in e ? `${String(e.name)}: ${String(e.message)}` : String(e);
  }
  return 'nothing thrown';
}

describe('native.supports', () => {
  const s = (dtype: number, d: number, block: number, device = 0): ReturnType<ReturnType<typeof native>['supports']> =>
    native().supports(dtype, d, block, device);

  test('CUDA: the kernels table', () => {
    for (const dtype of [NativeDType.F16, NativeDType.BF16]) {
      for (const d of [64, 128]) {
        for (const block of [64, 128, 256]) expect(s(dtype, d, block)).toMatchObject({ supported: true, unsupported: null });
      }
    }
    const r = s(NativeDType.BF16, 128, 128);
    expect(r.headDims).toEqual([64, 128]);
    expect(r.dtypes).toEqual([NativeDType.F16, NativeDType.BF16]);
    expect(r.blocks).toEqual([64, 128, 256]);
  });

  test('CUDA: the first rule broken, in the order head_dim, dtype, block', () => {
    expect(s(NativeDType.F32, 96, 16).unsupported).toBe('headDim');
    expect(s(NativeDType.F32, 64, 16).unsupported).toBe('dtype');
    expect(s(NativeDType.F16, 64, 16)).toMatchObject({ supported: false, unsupported: 'block' });
    expect(s(NativeDType.BF16, 128, 512).unsupported).toBe('block');
  });

  test('CPU: any head_dim, block and float dtype (its own checks apply elsewhere)', () => {
    expect(s(NativeDType.F32, 96, 16, -1)).toEqual({ supported: true, unsupported: null, headDims: [], dtypes: [], blocks: [] });
  });

  test('bad arguments are TypeError / RangeError naming them', () => {
    expect(thrown(() => native().supports(NativeDType.BF16, 1.5, 128, 0))).toBe('RangeError: headDim must be an integer');
    expect(thrown(() => native().supports(9, 64, 128, 0))).toBe('RangeError: dtype must be in [0, 5]');
    expect(thrown(() => (native().supports as unknown as (a: string) => unknown)('bf16'))).toBe('TypeError: dtype must be a number');
    expect(thrown(() => native().supports(NativeDType.BF16, 64, 128, -2))).toBe('RangeError: device must be in [-1, 1023]');
  });
});

describe('native.tuning (internal)', () => {
  const tuner = (): ReturnType<typeof native>['tuning'] => native().tuning;
  const defaults = { path: 'auto', persistent: -1, maxCtas: 0, pingpong: false, sortWindow: -1 };
  afterEach(() => tuner().setAttention({}));

  test('defaults', () => {
    expect(tuner().getAttention()).toEqual(defaults);
    tuner().setAttention({});
    expect(tuner().getAttention()).toEqual(defaults);
  });

  test('bad values are refused and change nothing', () => {
    const set = (t: unknown): string => thrown(() => tuner().setAttention(t as Record<string, never>));
    expect(set(null)).toBe('TypeError: tuning must be an object');
    expect(set({ path: 'sm80' })).toBe("RangeError: tuning.path must be 'auto' or 'portable', got 'sm80'");
    expect(set({ path: 1 })).toBe("TypeError: tuning.path must be 'auto' or 'portable'");
    expect(set({ persistent: 2 })).toBe('RangeError: tuning.persistent must be in [-1, 1]');
    expect(set({ maxCtas: -1 })).toBe('RangeError: tuning.maxCtas must be in [0, 2147483647]');
    expect(set({ maxCtas: 1.5 })).toBe('RangeError: tuning.maxCtas must be an integer');
    expect(set({ pingpong: 1 })).toBe('TypeError: tuning.pingpong must be a boolean');
    expect(set({ persistant: 1 })).toBe("TypeError: tuning has no field 'persistant' (path, persistent, maxCtas, pingpong, sortWindow)");
    expect(set({ sortWindow: 2049 })).toBe('RangeError: tuning.sortWindow must be in [-1, 2048]');
    expect(set({ sortWindow: -2 })).toBe('RangeError: tuning.sortWindow must be in [-1, 2048]');
    expect(set({ sortWindow: 1.5 })).toBe('RangeError: tuning.sortWindow must be an integer');
    expect(tuner().getAttention()).toEqual(defaults);
  });

  const cuda = info().cudaCompiled;
  (cuda ? test : test.skip)('CUDA build: set, read back, restore', () => {
    tuner().setAttention({ path: 'portable', persistent: 1, maxCtas: 3, sortWindow: 132 });
    expect(tuner().getAttention()).toEqual({ path: 'portable', persistent: 1, maxCtas: 3, pingpong: false, sortWindow: 132 });
    // ping-pong exists only in PRISM_TUNING_VARIANTS builds (the native harnesses), never the addon
    expect(thrown(() => tuner().setAttention({ pingpong: true }))).toMatch(/^RangeError: .*PRISM_TUNING_VARIANTS/);
    tuner().setAttention({ persistent: 0 });
    expect(tuner().getAttention()).toEqual({ ...defaults, persistent: 0 });
  });

  (cuda ? test.skip : test)('CPU-only build: only the defaults can be set', () => {
    expect(thrown(() => tuner().setAttention({ persistent: 1 }))).toMatch(/^Error: .*no CUDA backend/);
    expect(thrown(() => tuner().setAttention({ sortWindow: 0 }))).toMatch(/^Error: .*no CUDA backend/);
    expect(tuner().getAttention()).toEqual(defaults);
  });
});

describe('native.tuning.setVarlen (internal)', () => {
  const tuner = (): ReturnType<typeof native>['tuning'] => native().tuning;
  afterEach(() => tuner().setVarlen({}));

  test('default 4 lanes; set, read back, restore', () => {
    expect(tuner().getVarlen()).toEqual({ maxLanes: 4 });
    tuner().setVarlen({ maxLanes: 1 });
    expect(tuner().getVarlen()).toEqual({ maxLanes: 1 });
    tuner().setVarlen({});
    expect(tuner().getVarlen()).toEqual({ maxLanes: 4 });
  });

  test('bad values are refused and change nothing', () => {
    tuner().setVarlen({ maxLanes: 2 });
    const set = (t: unknown): string => thrown(() => tuner().setVarlen(t as { maxLanes?: number }));
    expect(set(undefined)).toBe('TypeError: tuning must be an object');
    expect(set({ maxLanes: 0 })).toBe('RangeError: tuning.maxLanes must be in [1, 4]');
    expect(set({ maxLanes: 5 })).toBe('RangeError: tuning.maxLanes must be in [1, 4]');
    expect(set({ maxLanes: 2.5 })).toBe('RangeError: tuning.maxLanes must be an integer');
    expect(set({ lanes: 2 })).toBe("TypeError: varlen tuning has no field 'lanes' (maxLanes)");
    expect(tuner().getVarlen()).toEqual({ maxLanes: 2 });
  });
});

test('native code reads no environment variable (tuning goes through native.tuning)', () => {
  const walk = (dir: string): string[] =>
    fs.readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
      e.isDirectory() ? walk(path.join(dir, e.name)) : [path.join(dir, e.name)],
    );
  const readers = walk(path.join(root, 'csrc'))
    .filter((f) => /\.(h|cc|cu|cuh)$/.test(f) && /\b(getenv|secure_getenv)\s*\(/.test(fs.readFileSync(f, 'utf8')))
    .map((f) => path.relative(root, f));
  expect(readers).toEqual([]);
});

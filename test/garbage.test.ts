// Every function and class exported at the top of the package, called with
// garbage in one argument at a time (numbers, strings, symbols, BigInts,
// null-prototype objects, Proxies whose traps throw, revoked Proxies, getters
// that throw, forged Tensors): each call must throw (sync functions) or
// reject (async ones) with a TypeError or RangeError whose message starts with
// the argument's name. Run in a child process on dist/, as a user would load
// the package, so that a crash of the process also fails the test.
import { spawnSync } from 'child_process';
import * as path from 'path';

const root = path.resolve(__dirname, '..');

const script = String.raw`
'use strict';
const p = require(process.argv[1]);
process.on('unhandledRejection', (e) => {
  console.error('unhandled rejection', e);
  process.exit(3);
});

const trap = () => { throw new Error('trap'); };
const throwing = new Proxy({}, { get: trap, has: trap, ownKeys: trap, getPrototypeOf: trap, getOwnPropertyDescriptor: trap });
const revoked = Proxy.revocable({}, {});
revoked.revoke();
const getterThrows = (field) => Object.defineProperty({}, field, { enumerable: true, get() { throw new Error('getter'); } });

// name -> value; the kinds below leave out the values that are valid for them
const GARBAGE = {
  zero: 0, negative: -1, NaN: NaN, fraction: 1.5, string: 'x', emptyString: '', symbol: Symbol('s'), bigint: 10n,
  function: () => 1, array: [1, 2], nullPrototype: Object.create(null), object: {}, date: new Date(0),
  throwingProxy: throwing, revokedProxy: revoked.proxy, forgedTensor: Object.create(p.Tensor.prototype),
  forgedMask: Object.create(p.BlockMask.prototype), forgedSummaries: Object.create(p.KeySummaries.prototype), null: null, undefined: undefined, true: true,
};
// Objects without own fields (forged ones included) are empty options: the defaults.
const EMPTY_OPTIONS = ['undefined', 'null', 'nullPrototype', 'object', 'date', 'forgedTensor', 'forgedMask', 'forgedSummaries'];
const VALID = {
  required: [],
  options: EMPTY_OPTIONS,
  timing: ['undefined'],
  maskOrNull: ['null'],
  maskOptional: ['undefined', 'null'],
  device: ['undefined', 'null'], // 'auto'
  out: ['undefined', 'null'],
  ptr: ['bigint'],
  flag: ['undefined', 'true'], // an optional boolean
};

(async () => {
  const shape = [1, 2, 16, 8];
  const data = new Float32Array(256).map((_, i) => Math.sin(i));
  const q = await p.tensor(data, { shape, device: 'cpu' });
  const mask = await p.estimate(q, q, { block: 16 });
  const sums = await p.summarizeKeys(q, { block: 16 });
  // run.keySummaries and run.appendKeySummaries, one field of run at a time
  const appending = (keySummaries, appendKeySummaries) => ({ keySummaries, appendKeySummaries });
  const f32 = new Float32Array(4);
  const u16 = new Uint16Array(4);

  // [function, async?, call(args), valid args, per argument: [name, kind, message start, field for a throwing getter]]
  const table = [
    ['tensor', true, (a) => p.tensor(...a), [data, { shape, device: 'cpu' }],
      [['data', 'required', '^data for float32 must be a Float32Array'], ['opts', 'required', '^(opts(\\.\\w+)?|shape) ', 'shape']]],
    ['empty', false, (a) => p.empty(...a), [shape, { device: 'cpu' }],
      [['shape', 'required', '^shape'], ['opts', 'options', '^opts(\\.\\w+)? ', 'dtype']]],
    ['fromDevicePointer', false, (a) => p.fromDevicePointer(...a), [1n, { shape, device: 'cpu' }],
      [['ptr', 'ptr', '^ptr must be'], ['opts', 'required', '^(opts(\\.\\w+)?|shape) ', 'shape']]],
    ['resolveDevice', false, (a) => p.resolveDevice(...a), ['cpu'], [['spec', 'device', '^device must be']]],
    ['Tensor.to', true, (a) => q.to(...a), ['cpu'], [['device', 'device', '^device must be']]],
    ['resolveEstimateOptions', false, (a) => p.resolveEstimateOptions(...a), [{}, 64],
      [['opts', 'options', '^opts(\\.\\w+)? ', 'tauHigh'], ['headDim', 'required', '^headDim must be']]],
    ['resolveAttentionOptions', false, (a) => p.resolveAttentionOptions(...a), [{}],
      [['opts', 'options', '^opts(\\.\\w+)? ', 'softmaxScale']]],
    ['estimate', true, (a) => p.estimate(...a), [q, q, {}, {}],
      [['q', 'required', '^q must be a Tensor'], ['k', 'required', '^k must be a Tensor'],
       ['opts', 'options', '^opts(\\.\\w+)? ', 'block'], ['run', 'options', '^run(\\.\\w+)? ', 'timing']]],
    ['timeEstimate', true, (a) => p.timeEstimate(...a), [q, q, {}, { iters: 1 }],
      [['q', 'required', '^q must be a Tensor'], ['k', 'required', '^k must be a Tensor'],
       ['opts', 'options', '^opts(\\.\\w+)? ', 'block'], ['timing', 'timing', '^timing(\\.\\w+)? ', 'iters']]],
    ['attention', true, (a) => p.attention(...a), [q, q, q, null, {}, {}],
      [['q', 'required', '^q must be a Tensor'], ['k', 'required', '^k must be a Tensor'], ['v', 'required', '^v must be a Tensor'],
       ['mask', 'maskOptional', '^mask must be a BlockMask'], ['opts', 'options', '^opts(\\.\\w+)? ', 'softmaxScale'],
       ['run', 'options', '^run(\\.\\w+)? ', 'timing']]],
    ['timeAttention', true, (a) => p.timeAttention(...a), [q, q, q, null, {}, { iters: 1 }],
      [['q', 'required', '^q must be a Tensor'], ['k', 'required', '^k must be a Tensor'], ['v', 'required', '^v must be a Tensor'],
       ['mask', 'maskOptional', '^mask must be a BlockMask'], ['opts', 'options', '^opts(\\.\\w+)? ', 'softmaxScale'],
       ['timing', 'timing', '^timing(\\.\\w+)? ', 'warmup']]],
    ['prefill', true, (a) => p.prefill(...a), [q, q, q, { block: 16 }, {}],
      [['q', 'required', '^q must be a Tensor'], ['k', 'required', '^k must be a Tensor'], ['v', 'required', '^v must be a Tensor'],
       ['opts', 'options', '^opts(\\.\\w+)? ', 'tauLow'], ['run', 'options', '^run(\\.\\w+)? ', 'returnMask']]],
    ['estimate', true, (a) => p.estimate(q, q, { block: 16 }, appending(...a)), [sums, true],
      [['run.keySummaries', 'required', '^run\\.(keySummaries|appendKeySummaries) '], ['run.appendKeySummaries', 'flag', '^run\\.appendKeySummaries must be a boolean']]],
    ['prefill', true, (a) => p.prefill(q, q, q, { block: 16 }, appending(...a)), [sums, true],
      [['run.keySummaries', 'required', '^run\\.(keySummaries|appendKeySummaries) '], ['run.appendKeySummaries', 'flag', '^run\\.appendKeySummaries must be a boolean']]],
    ['summarizeKeys', true, (a) => p.summarizeKeys(...a), [q, { block: 16 }, {}],
      [['k', 'required', '^k must be a Tensor'], ['opts', 'options', '^opts(\\.\\w+)? ', 'block'], ['run', 'options', '^run(\\.\\w+)? ', 'maxKeys']]],
    ['summarizeKeysVarlen', true, (a) => p.summarizeKeysVarlen(...a), [q, { cuSeqlensK: [0, 16] }, { block: 16 }, {}],
      [['k', 'required', '^k must be a Tensor'], ['batch', 'required', '^batch', 'cuSeqlensK'],
       ['opts', 'options', '^opts(\\.\\w+)? ', 'block'], ['run', 'options', '^run(\\.\\w+)? ', 'into']]],
    ['blockMask', true, (a) => p.blockMask(...a), [[[0]], { batch: 1, heads: 1, queryLength: 16, keyLength: 16, block: 16, device: 'cpu' }],
      [['lists', 'required', '^lists'], ['opts', 'required', '^opts(\\.\\w+)? ', 'block']]],
    ['massRecall', true, (a) => p.massRecall(...a), [q, q, mask, [[0, 0, 0]], {}],
      [['q', 'required', '^q must be a Tensor'], ['k', 'required', '^k must be a Tensor'],
       ['mask', 'maskOrNull', '^mask must be a BlockMask'], ['rows', 'required', '^(a flat )?rows'],
       ['opts', 'options', '^opts(\\.\\w+)? ', 'softmaxScale']]],
    ['relativeError', true, (a) => p.relativeError(...a), [q, q],
      [['a', 'required', '^a must be a Tensor'], ['b', 'required', '^b must be a Tensor']]],
    ['toBFloat16', false, (a) => p.toBFloat16(...a), [f32, u16],
      [['x', 'required', '^toBFloat16: x must be'], ['out', 'out', '^toBFloat16: out ']]],
    ['toFloat16', false, (a) => p.toFloat16(...a), [f32, u16],
      [['x', 'required', '^toFloat16: x must be'], ['out', 'out', '^toFloat16: out ']]],
    ['fromBFloat16', false, (a) => p.fromBFloat16(...a), [u16, f32],
      [['x', 'required', '^fromBFloat16: x must be'], ['out', 'out', '^fromBFloat16: out ']]],
    ['fromFloat16', false, (a) => p.fromFloat16(...a), [u16, f32],
      [['x', 'required', '^fromFloat16: x must be'], ['out', 'out', '^fromFloat16: out ']]],
    ['validate', true, (a) => p.validate(...a), [{ device: 'cpu', quick: true }],
      [['opts', 'options', '^(opts(\\.\\w+)?|unknown validate option field) ', 'seed']]],
    ['new Tensor', false, (a) => new p.Tensor(...a), [q.native, shape, 'float32', 'bhnd'],
      [['handle', 'required', '^handle must be a native tensor']]],
    ['new BlockMask', false, (a) => new p.BlockMask(...a), [{ batch: 1, heads: 1, queryLength: 16, keyLength: 16, block: 16 }, 'cpu', mask.selected, mask.parts],
      [['shape', 'required', '^BlockMask is made by estimate\\(\\)'],
       ['device', 'required', '^BlockMask is made by estimate\\(\\)'],
       ['selected', 'required', '^BlockMask is made by estimate\\(\\)'],
       ['parts', 'required', '^BlockMask is made by estimate\\(\\)']]],
    ['new KeySummaries', false, (a) => new p.KeySummaries(...a), [null, {}, 'cpu', {}],
      [['token', 'required', '^KeySummaries are made by summarizeKeys\\(\\)']]],
  ];

  const results = [];
  for (const [fn, isAsync, call, valid, args] of table) {
    args.forEach(([arg, kind, message, getterField], position) => {
      const values = Object.entries(GARBAGE).filter(([name]) => !VALID[kind].includes(name));
      if (getterField) values.push([getterField + ' getter throws', getterThrows(getterField)]);
      for (const [name, value] of values) {
        const a = [...valid];
        a[position] = value;
        results.push({ fn, isAsync, arg, name, message, run: () => call(a) });
      }
    });
  }

  const report = [];
  for (const r of results) {
    let outcome;
    try {
      const ret = r.run();
      if (r.isAsync) {
        if (!(ret instanceof Promise)) outcome = { how: 'returned a non-promise' };
        else outcome = await ret.then(() => ({ how: 'resolved' }), (e) => ({ how: 'rejected', e }));
      } else {
        outcome = { how: 'returned' };
      }
    } catch (e) {
      outcome = { how: 'threw', e };
    }
    const e = outcome.e;
    const kind = e instanceof TypeError ? 'TypeError' : e instanceof RangeError ? 'RangeError' : e === undefined ? 'none' : String(e && e.name);
    const text = e instanceof Error ? e.message : String(e);
    const ok = outcome.how === (r.isAsync ? 'rejected' : 'threw') && (kind === 'TypeError' || kind === 'RangeError') && new RegExp(r.message).test(text);
    report.push({ call: r.fn + ' ' + r.arg + ' = ' + r.name, ok, how: outcome.how, kind, text });
  }
  process.stdout.write(JSON.stringify(report));
})().catch((e) => {
  console.error('harness failed', e);
  process.exit(2);
});
`;

interface Row {
  call: string;
  ok: boolean;
  how: string;
  kind: string;
  text: string;
}

test('garbage in any argument of any public function is a TypeError or RangeError naming the argument', () => {
  const r = spawnSync(process.execPath, ['-e', script, path.join(root, 'dist', 'lib', 'index.js')], {
    cwd: root,
    encoding: 'utf8',
    timeout: 60_000,
    maxBuffer: 64 * 1024 * 1024,
  });
  expect({ status: r.status, signal: r.signal, stderr: r.stderr }).toEqual({ status: 0, signal: null, stderr: '' });
  const rows = JSON.parse(r.stdout) as Row[];
  const bad = rows.filter((x) => !x.ok).map((x) => `${x.call}: ${x.how} ${x.kind}: ${x.text}`);
  expect(bad).toEqual([]);
  // The table really ran: every function, each with many values.
  const functions = new Set(rows.map((x) => x.call.split(' ')[0] + (x.call.startsWith('new ') ? ' ' + x.call.split(' ')[1] : '')));
  expect(functions.size).toBe(25);
  expect(rows.length).toBeGreaterThan(500);
  // A sample of the messages, as the user sees them.
  const text = (call: string): string | undefined => rows.find((x) => x.call === call)?.text;
  expect(text('estimate q = undefined')).toBe('q must be a Tensor (from tensor(), empty(), fromDevicePointer() or an op), got undefined');
  expect(text('estimate opts = throwingProxy')).toBe('opts could not be read: trap');
  expect(text('estimate opts = block getter throws')).toBe('opts.block could not be read: getter');
  expect(text('tensor data = symbol')).toBe('data for float32 must be a Float32Array, got symbol');
  expect(text('massRecall rows = revokedProxy')).toMatch(/^rows\.length could not be read: /);
  expect(text('estimate run.appendKeySummaries = string')).toBe('run.appendKeySummaries must be a boolean, got string');
  expect(text('prefill run.keySummaries = undefined')).toBe('run.appendKeySummaries needs run.keySummaries (the summaries to append the pooled key blocks to)');
  expect(text('prefill run.keySummaries = forgedSummaries')).toBe('run.keySummaries must be KeySummaries (from summarizeKeys or summarizeKeysVarlen), got KeySummaries');
});

// Arrays that claim more elements than the package could ever read (holes, or
// a Proxy lying about its length), and look-alikes of typed arrays: each call
// fails at once with an error that says what is wrong. Building a JS array of
// ~10^8 values, as these calls once did, aborts the process (a V8 fatal error,
// no exception), hence the child process.
const hugeScript = String.raw`
'use strict';
const p = require(process.argv[1]);
(async () => {
  const q = await p.tensor(new Float32Array(128), { shape: [1, 1, 16, 8], device: 'cpu' });
  const k = await p.tensor(new Float32Array(40 * 64), { shape: [1, 1, 40, 64], device: 'cpu' });
  const lying = (length, value) => new Proxy([], { get: (_, key) => (key === 'length' ? length : value(key)) });
  const cases = {
    'massRecall rows = new Array(2^32 - 1)': () => p.massRecall(q, q, null, new Array(2 ** 32 - 1)),
    'massRecall rows = new Array(30)': () => p.massRecall(q, q, null, new Array(30)),
    'massRecall rows = Proxy of 1e12 valid triples': () => p.massRecall(q, q, null, lying(1e12, () => [0, 0, 1])),
    'massRecall rows = [[0, 0, 99], [0, "x", 0]]': () => p.massRecall(q, q, null, [[0, 0, 99], [0, 'x', 0]]),
    'prefillVarlen cuSeqlensQ = Proxy of length 1e12': () =>
      p.prefillVarlen(k, k, k, { cuSeqlensQ: lying(1e12, (key) => (key === '1' ? 40 : 0)), cuSeqlensK: [0, 40] }),
    'tensor data = Proxy of a Float32Array': () => p.tensor(new Proxy(new Float32Array(8), {}), { shape: [1, 1, 1, 8], device: 'cpu' }),
    'estimate run.denseMask = null': () => p.estimate(q, q, { block: 16 }, { denseMask: null }),
    'estimate run.stream = null': () => p.estimate(q, q, { block: 16 }, { stream: null }),
  };
  const out = {};
  for (const [name, call] of Object.entries(cases)) {
    const t0 = Date.now();
    try {
      await call();
      out[name] = { kind: 'none' };
    } catch (e) {
      out[name] = { kind: e.constructor.name, text: e.message, ms: Date.now() - t0 };
    }
  }
  // int64 row pointers (what a BlockMask keeps) read like any other integers
  const opts = { batch: 1, heads: 1, queryLength: 256, keyLength: 256, block: 128 };
  const a = await p.blockMask({ rowPtr: new BigInt64Array([0n, 1n, 3n]), indices: new Int32Array([0, 0, 1]) }, opts);
  const b = await p.blockMask({ rowPtr: [0, 1, 3], indices: [0, 0, 1] }, opts);
  const ha = await a.toHost();
  const hb = await b.toHost();
  out.bigintRowPtr = { same: JSON.stringify([...ha.counts, ...ha.indices]) === JSON.stringify([...hb.counts, ...hb.indices]), counts: [...ha.counts] };
  try {
    await p.blockMask({ rowPtr: new BigInt64Array([0n, 2n ** 60n, 3n]), indices: new Int32Array([0, 0, 1]) }, opts);
    out.bigintPast2e53 = { kind: 'none' };
  } catch (e) {
    out.bigintPast2e53 = { kind: e.constructor.name, text: e.message };
  }
  process.stdout.write(JSON.stringify(out));
})().catch((e) => {
  console.error('harness failed', e);
  process.exit(2);
});
`;

test('huge or lying array-likes and typed-array look-alikes fail at once with a clear error', () => {
  const r = spawnSync(process.execPath, ['-e', hugeScript, path.join(root, 'dist', 'lib', 'index.js')], {
    cwd: root,
    encoding: 'utf8',
    timeout: 60_000,
  });
  expect({ status: r.status, signal: r.signal, stderr: r.stderr }).toEqual({ status: 0, signal: null, stderr: '' });
  const out = JSON.parse(r.stdout) as Record<string, { kind: string; text?: string; ms?: number; same?: boolean; counts?: number[] }>;
  const expected: Array<[string, string, RegExp]> = [
    ['massRecall rows = new Array(2^32 - 1)', 'RangeError', /^rows: at most 16777216 rows, got 4294967295 values$/],
    ['massRecall rows = new Array(30)', 'TypeError', /^rows\[0\]: batch must be a number, got undefined$/],
    ['massRecall rows = Proxy of 1e12 valid triples', 'RangeError', /^rows: at most 16777216 rows, got 1000000000000$/],
    ['massRecall rows = [[0, 0, 99], [0, "x", 0]]', 'TypeError', /^rows\[1\]: head must be a number, got string$/],
    ['prefillVarlen cuSeqlensQ = Proxy of length 1e12', 'RangeError', /^batch\.cuSeqlensQ\.length must be an integer in \[0, 2147483647\], got 1000000000000$/],
    ['tensor data = Proxy of a Float32Array', 'TypeError', /^data for float32 must be a Float32Array, got a Float32Array look-alike \(a Proxy\?\), not a typed array$/],
    ['estimate run.denseMask = null', 'TypeError', /^run\.denseMask must be a boolean, got null$/],
    ['estimate run.stream = null', 'TypeError', /^run\.stream must be a bigint \(a cudaStream_t\), got null$/],
  ];
  for (const [name, kind, text] of expected) {
    expect({ name, kind: out[name].kind }).toEqual({ name, kind });
    expect(out[name].text).toMatch(text);
    expect(out[name].ms).toBeLessThan(5000); // at once, not after reading 10^8 elements
  }
  expect(out.bigintRowPtr).toEqual({ same: true, counts: [1, 2] });
  expect(out.bigintPast2e53.kind).toBe('RangeError');
  expect(out.bigintPast2e53.text).toMatch(/^lists\.rowPtr\[0\.\.1\] = 0\.\.\d+ is not a valid range of lists\.indices$/);
});

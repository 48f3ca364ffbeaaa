// Command-line parsing for prism-bench. Pure functions, no I/O: parseArgs()
// turns argv into what the user wrote; resolveConfig() (bench/config.ts) fills
// the defaults for the backend that will run and checks the combination.

import type { BatchPreset, KvLayoutName } from './batch-args';

export type BenchDType = 'bf16' | 'fp16' | 'f32';
export type BenchBackend = 'auto' | 'cuda' | 'cpu';
export type BenchWorkload = 'random' | 'structured' | 'file';
export type BenchMethod = 'dense' | 'prism' | 'meanpool';
export type BenchRope = 'half' | 'interleaved';

/** An error in the command line: the CLI prints it with a usage hint and exits 2. */
export class UsageError extends Error {
  readonly option: string | undefined;
  /** the message without the option's name */
  readonly detail: string;
  constructor(message: string, option?: string) {
    super(option ? `${option}: ${message}` : message);
    this.name = 'UsageError';
    this.option = option;
    this.detail = message;
  }
}

/** What the user wrote; undefined means "use the default". */
export interface ParsedArgs {
  seq?: number[];
  batch?: number;
  heads?: number;
  kvHeads?: number;
  headDim?: number;
  dtype?: BenchDType;
  block?: number;
  highDims?: number;
  lowDims?: number;
  tau?: number;
  tauHigh?: number;
  tauLow?: number;
  calibrate: boolean;
  tempHigh?: number;
  tempLow?: number;
  topk?: number;
  rope?: BenchRope;
  backend: BenchBackend;
  workload?: BenchWorkload;
  files?: [string, string, string];
  safetensors?: string;
  methods?: BenchMethod[];
  warmup?: number;
  iters?: number;
  recallRows?: number;
  seed?: number;
  /** --device N: the GPU of the single-device runs */
  device?: number;
  /** --devices LIST: 'cuda:N' or 'cpu' entries to split the heads over */
  devices?: string[];
  /** --tau-sweep LIST: top-p thresholds swept for both bands */
  tauSweep?: number[];
  /** --gen-threads N: worker threads generating the structured workload (0 = the main thread) */
  genThreads?: number;
  /** batch benchmarks (bench/batch-args.ts): --batch-workload, --lengths, --chunked, --page-size, --kv-layout, --paged-sweep, --paged-tokens */
  batchWorkload?: BatchPreset;
  lengths?: number[];
  chunked?: { total: number; chunk: number };
  pageSize?: number;
  kvLayout?: KvLayoutName | 'both';
  pagedSweep?: number[];
  pagedTokens?: { total: number; chunk: number };
  json?: string;
  svg?: string;
  quiet: boolean;
  help: boolean;
  version: boolean;
}

/** The sizes and run counts of a backend's default run; in a BenchConfig, the resolved ones. */
export interface Defaults {
  /** Sequence lengths (Nq = Nk = N). For the file workload: taken from the files. */
  seq: number[];
  batch: number;
  heads: number;
  kvHeads: number;
  headDim: number;
  dtype: BenchDType;
  warmup: number;
  iters: number;
  recallRows: number;
}

export const GPU_DEFAULTS: Readonly<Defaults> = Object.freeze({
  seq: [8192, 32768, 131072],
  batch: 1,
  heads: 32,
  kvHeads: 8,
  headDim: 128,
  dtype: 'bf16' as const,
  warmup: 2,
  iters: 5,
  recallRows: 256,
});

/** The GPU's defaults, sized down for the CPU backend. */
export const CPU_DEFAULTS: Readonly<Defaults> = Object.freeze({ ...GPU_DEFAULTS, seq: [2048, 8192], heads: 4, kvHeads: 1, headDim: 64, warmup: 1, iters: 2, recallRows: 64 });

export const DEFAULT_SEED = 1;
// The library's limits on a timing (run.timing: warmup in [0, 10000], iters in [1, 100000]).
const MAX_WARMUP = 10000;
const MAX_ITERS = 100000;
export const ALL_METHODS: readonly BenchMethod[] = ['dense', 'prism', 'meanpool'];

// --- option table --------------------------------------------------------

type Kind = 'flag' | 'value';
interface OptionSpec {
  kind: Kind;
  arg?: string;
  help: string;
}

const OPTIONS: Record<string, OptionSpec> = {
  '--seq': { kind: 'value', arg: 'LIST', help: 'sequence lengths, e.g. 8k,32k,128k (k = 1024) or plain integers' },
  '--batch': { kind: 'value', arg: 'N', help: 'batch size' },
  '--heads': { kind: 'value', arg: 'N', help: 'query heads' },
  '--kv-heads': { kind: 'value', arg: 'N', help: 'key/value heads (divides --heads; GQA)' },
  '--head-dim': { kind: 'value', arg: 'N', help: 'head dimension (even; 64 or 128 typical)' },
  '--dtype': { kind: 'value', arg: 'T', help: 'bf16 | fp16 | f32' },
  '--block': { kind: 'value', arg: 'N', help: 'block size in tokens (library default 128)' },
  '--high-dims': { kind: 'value', arg: 'N', help: 'dims in the high-frequency band (default 64*d/128)' },
  '--low-dims': { kind: 'value', arg: 'N', help: 'dims in the low-frequency band (default 96*d/128)' },
  '--tau': { kind: 'value', arg: 'P', help: 'top-p threshold for both bands, in [2^-149, 1] (default 0.95)' },
  '--tau-high': { kind: 'value', arg: 'P', help: 'top-p threshold of the high band' },
  '--tau-low': { kind: 'value', arg: 'P', help: 'top-p threshold of the low band' },
  '--no-calibrate': { kind: 'flag', help: 'fixed temperatures instead of the energy-based ones' },
  '--temp-high': { kind: 'value', arg: 'T', help: 'high-band temperature with --no-calibrate (default 1)' },
  '--temp-low': { kind: 'value', arg: 'T', help: 'low-band temperature with --no-calibrate (default 1)' },
  '--topk': { kind: 'value', arg: 'N', help: 'top-k selection: keep the N best blocks per band and row' },
  '--rope': { kind: 'value', arg: 'L', help: 'RoPE pair layout of the inputs: half | interleaved (default half)' },
  '--backend': { kind: 'value', arg: 'B', help: 'auto | cuda | cpu (default auto)' },
  '--workload': { kind: 'value', arg: 'W', help: 'structured | random | file (default structured)' },
  '--files': { kind: 'value', arg: 'Q,K,V', help: 'three .npy files, Q [b,Hq,N,d], K/V [b,Hkv,N,d] (implies --workload file)' },
  '--safetensors': { kind: 'value', arg: 'FILE', help: 'one .safetensors file with tensors q/k/v or query/key/value' },
  '--methods': { kind: 'value', arg: 'LIST', help: 'any of dense,prism,meanpool (default all three)' },
  '--warmup': { kind: 'value', arg: 'N', help: 'untimed runs before timing' },
  '--iters': { kind: 'value', arg: 'N', help: 'timed runs; the median is reported' },
  '--recall-rows': { kind: 'value', arg: 'N', help: 'query rows sampled for attention-mass recall (0 = skip)' },
  '--seed': { kind: 'value', arg: 'N', help: `workload and row-sampling seed (default ${DEFAULT_SEED})` },
  '--device': { kind: 'value', arg: 'N', help: 'the GPU of the single-device runs (default 0)' },
  '--devices': { kind: 'value', arg: 'LIST', help: 'also split the heads over these GPUs (e.g. 0,1) and time the sharded prefill against one GPU' },
  '--tau-sweep': { kind: 'value', arg: 'LIST', help: 'top-p thresholds to sweep (both bands), e.g. 0.8,0.9,0.95,0.98: recall vs speedup' },
  '--gen-threads': { kind: 'value', arg: 'N', help: 'worker threads generating the structured workload (0 = main thread; default: CPUs - 1, at most 8)' },
  '--batch-workload': { kind: 'value', arg: 'W', help: 'time a ragged batch (prefillVarlen) vs one by one vs dense: mixed (2K..128K, 256K tokens) | 8x4k' },
  '--lengths': { kind: 'value', arg: 'LIST', help: 'the ragged batch\'s request lengths instead of a preset, e.g. 4k,4k,16k' },
  '--chunked': { kind: 'value', arg: 'T:C', help: 'time a chunked prefill of a T-token prompt in C-token chunks over a paged KV cache, e.g. 128k:8k' },
  '--page-size': { kind: 'value', arg: 'N', help: 'page size of the chunked prefill\'s KV cache: 16..256 (default 128)' },
  '--kv-layout': { kind: 'value', arg: 'L', help: 'page layout of the chunked prefill\'s / paged sweep\'s KV cache: NHD | HND | both (sweep only; default NHD)' },
  '--paged-sweep': { kind: 'value', arg: 'LIST', help: 'time prefillVarlen over a paged KV cache at these page sizes vs packed K/V, e.g. 16,32,64,128,256' },
  '--paged-tokens': { kind: 'value', arg: 'T:C', help: 'the paged sweep\'s sequence: the last C of T tokens as queries (default 128k:8k; 2k:512 on the CPU)' },
  '--json': { kind: 'value', arg: 'FILE', help: 'write every figure, the configuration and the device as JSON' },
  '--svg': { kind: 'value', arg: 'FILE', help: 'write a chart of speedup and density vs length' },
  '--quiet': { kind: 'flag', help: 'no progress display' },
  '--version': { kind: 'flag', help: 'print the package version' },
  '--help': { kind: 'flag', help: 'this text' },
};

const ALIASES: Record<string, string> = { '-h': '--help', '-q': '--quiet', '-V': '--version' };

export function usage(): string {
  const lines: string[] = [];
  lines.push('Usage: prism-bench [options]');
  lines.push('');
  lines.push('Benchmarks dense attention, Prism and mean-pool block selection side by side on');
  lines.push('the same inputs: estimation and attention time, TFLOP/s, speedup over dense,');
  lines.push('block density, attention-mass recall and relative error.');
  lines.push('');
  lines.push('Options:');
  for (const [name, spec] of Object.entries(OPTIONS)) {
    const left = spec.arg ? `${name} ${spec.arg}` : name;
    lines.push(`  ${left.padEnd(22)} ${spec.help}`);
  }
  lines.push('');
  lines.push('Defaults with a GPU:   --seq 8k,32k,128k --heads 32 --kv-heads 8 --head-dim 128 --dtype bf16');
  lines.push('                       --warmup 2 --iters 5 --recall-rows 256');
  lines.push('Defaults on the CPU:   --seq 2k,8k --heads 4 --kv-heads 1 --head-dim 64 --dtype bf16');
  lines.push('                       --warmup 1 --iters 2 --recall-rows 64');
  lines.push('When only --heads is given, --kv-heads defaults to gcd(heads, default kv heads).');
  lines.push('');
  lines.push('Input files: Q [batch, Hq, N, d], K and V [batch, Hkv, N, d] (3-D [H, N, d] = batch 1), RoPE applied.');
  lines.push(".npy '<f4' / '<f2' / '<f8', or bfloat16 saved as 16-bit patterns ('<u2', '<i2', '|V2') with --dtype bf16;");
  lines.push('.safetensors with tensors q/k/v or query/key/value (F32, F16, BF16). The stored dtype is kept');
  lines.push('unless --dtype is given (float32 becomes bf16 on the GPU).');
  lines.push('');
  lines.push('Examples:');
  lines.push('  prism-bench --seq 8k,32k,64k,128k --json bench.json --svg bench.svg');
  lines.push('  prism-bench --backend cpu --seq 1k --heads 2 --kv-heads 1 --iters 1');
  lines.push('  prism-bench --files q.npy,k.npy,v.npy --dtype bf16');
  lines.push('  prism-bench --seq 128k,1m --methods dense,prism --devices 0,1 --json sharded.json');
  lines.push('  prism-bench --seq 32k,128k --tau-sweep 0.8,0.9,0.95,0.98 --svg pareto.svg');
  lines.push('  prism-bench --batch-workload mixed --chunked 128k:8k --json batch.json');
  lines.push('  prism-bench --paged-sweep 16,32,64,128,256 --kv-layout both --json paged.json');
  return lines.join('\n') + '\n';
}

export const USAGE_HINT = "Run 'prism-bench --help' for usage.";

// --- value parsers --------------------------------------------------------

/** "8k" -> 8192, "128K" -> 131072, "1m" -> 1048576, "3000" -> 3000. */
export function parseSize(text: string, option: string): number {
  const m = /^\s*(\d+)\s*([kKmM]?)\s*$/.exec(text);
  if (!m && /^\s*-\s*\d/.test(text)) throw new UsageError(`'${text}' is negative; sizes must be at least 1`, option);
  if (!m) {
    throw new UsageError(`'${text}' is not a size (a positive integer, optionally with a k or m suffix: 8k = 8192)`, option);
  }
  const mult = m[2] === '' ? 1 : m[2].toLowerCase() === 'k' ? 1024 : 1024 * 1024;
  const value = Number(m[1]) * mult;
  if (!Number.isSafeInteger(value)) throw new UsageError(`'${text}' is too large`, option);
  if (value <= 0) throw new UsageError(`'${text}' must be at least 1`, option);
  return value;
}

/** "8k,32k" -> [8192, 32768]; `distinct`: an entry given twice is an error (a length measured twice). */
export function parseSizeList(text: string, option: string, distinct = false): number[] {
  const parts = text.split(',');
  if (parts.some((p) => p.trim() === '')) {
    throw new UsageError(`'${text}' has an empty entry (write e.g. 8k,32k,128k)`, option);
  }
  const sizes = parts.map((p) => parseSize(p, option));
  const twice = distinct ? sizes.find((x, i) => sizes.indexOf(x) !== i) : undefined;
  if (twice !== undefined) throw new UsageError(`'${text}' lists ${twice} twice`, option);
  return sizes;
}

/** "128k:8k" -> { total: 131072, chunk: 8192 } */
function parseTotalChunk(text: string, option: string): { total: number; chunk: number } {
  const parts = text.split(':');
  if (parts.length !== 2 || parts.some((x) => x.trim() === '')) throw new UsageError(`'${text}' is not TOTAL:CHUNK (e.g. 128k:8k: a 128K prompt in 8K chunks)`, option);
  return { total: parseSize(parts[0], option), chunk: parseSize(parts[1], option) };
}

function parseInteger(text: string, option: string, min: number, max = Number.MAX_SAFE_INTEGER): number {
  if (!/^\s*-?\d+\s*$/.test(text)) throw new UsageError(`'${text}' is not an integer`, option);
  const value = Number(text);
  if (!Number.isSafeInteger(value)) throw new UsageError(`'${text}' is too large`, option);
  if (value < min) throw new UsageError(`'${text}' must be at least ${min}`, option);
  if (value > max) throw new UsageError(`'${text}' must be at most ${max}`, option);
  return value;
}

function parseNumber(text: string, option: string): number {
  const t = text.trim();
  const value = t === '' ? NaN : Number(t);
  if (!Number.isFinite(value)) throw new UsageError(`'${text}' is not a number`, option);
  return value;
}

function parseProbability(text: string, option: string): number {
  const value = parseNumber(text, option);
  if (!(value > 0 && value <= 1)) throw new UsageError(`'${text}' must be in (0, 1]`, option);
  return value;
}

function parseChoice<T extends string>(text: string, option: string, choices: readonly T[], aliases: Record<string, T> = {}): T {
  const key = text.trim().toLowerCase();
  if (key in aliases) return aliases[key];
  if ((choices as readonly string[]).includes(key)) return key as T;
  throw new UsageError(`'${text}' is not one of ${choices.join(', ')}`, option);
}

const DTYPE_ALIASES: Record<string, BenchDType> = {
  bf16: 'bf16', bfloat16: 'bf16',
  fp16: 'fp16', f16: 'fp16', float16: 'fp16', half: 'fp16',
  f32: 'f32', fp32: 'f32', float32: 'f32', float: 'f32',
};

// --- parseArgs -------------------------------------------------------------

/** Parses argv (without node and script). Throws UsageError. */
export function parseArgs(argv: readonly string[]): ParsedArgs {
  const out: ParsedArgs = { calibrate: true, backend: 'auto', quiet: false, help: false, version: false };
  const seen = new Set<string>();
  for (let i = 0; i < argv.length; i++) {
    const raw = argv[i];
    let name = raw;
    let value: string | undefined;
    if (raw.startsWith('--') && raw.includes('=')) {
      name = raw.slice(0, raw.indexOf('='));
      value = raw.slice(raw.indexOf('=') + 1);
    }
    name = ALIASES[name] ?? name;
    const spec = OPTIONS[name];
    if (!spec) {
      if (!raw.startsWith('-')) throw new UsageError(`unexpected argument '${raw}' (options start with --)`);
      const near = suggest(name);
      throw new UsageError(`unknown option '${name}'${near ? ` (did you mean ${near}?)` : ''}`);
    }
    if (spec.kind === 'flag') {
      if (value !== undefined) throw new UsageError('takes no value', name);
    } else if (value === undefined) {
      const next = argv[i + 1];
      if (next === undefined || (next.startsWith('--') && next.length > 2)) {
        throw new UsageError(`needs a value (${spec.arg})`, name);
      }
      value = next;
      i++;
    }
    if (seen.has(name) && spec.kind === 'value') throw new UsageError('given more than once', name);
    seen.add(name);
    applyOption(out, name, value ?? '');
  }
  return out;
}

function applyOption(out: ParsedArgs, name: string, v: string): void {
  switch (name) {
    case '--seq': out.seq = parseSizeList(v, name, true); break;
    case '--batch': out.batch = parseSize(v, name); break;
    case '--heads': out.heads = parseSize(v, name); break;
    case '--kv-heads': out.kvHeads = parseSize(v, name); break;
    case '--head-dim': out.headDim = parseSize(v, name); break;
    case '--dtype': out.dtype = parseChoice<BenchDType>(v, name, ['bf16', 'fp16', 'f32'], DTYPE_ALIASES); break;
    case '--block': out.block = parseSize(v, name); break;
    case '--high-dims': out.highDims = parseInteger(v, name, 0); break;
    case '--low-dims': out.lowDims = parseInteger(v, name, 0); break;
    case '--tau': out.tau = parseProbability(v, name); break;
    case '--tau-high': out.tauHigh = parseProbability(v, name); break;
    case '--tau-low': out.tauLow = parseProbability(v, name); break;
    case '--no-calibrate': out.calibrate = false; break;
    case '--temp-high': out.tempHigh = positive(parseNumber(v, name), v, name); break;
    case '--temp-low': out.tempLow = positive(parseNumber(v, name), v, name); break;
    case '--topk': out.topk = parseInteger(v, name, 1); break;
    case '--rope': out.rope = parseChoice<BenchRope>(v, name, ['half', 'interleaved']); break;
    case '--backend': out.backend = parseChoice<BenchBackend>(v, name, ['auto', 'cuda', 'cpu'], { gpu: 'cuda' }); break;
    case '--workload': out.workload = parseChoice<BenchWorkload>(v, name, ['structured', 'random', 'file']); break;
    case '--files': {
      const parts = v.split(',').map((s) => s.trim());
      if (parts.length !== 3 || parts.some((p) => p === '')) {
        throw new UsageError(`expects three files separated by commas (q.npy,k.npy,v.npy), got '${v}'`, name);
      }
      out.files = [parts[0], parts[1], parts[2]];
      break;
    }
    case '--safetensors':
      if (v.trim() === '') throw new UsageError('needs a file name', name);
      out.safetensors = v;
      break;
    case '--methods': out.methods = parseMethods(v, name); break;
    case '--warmup': out.warmup = parseInteger(v, name, 0, MAX_WARMUP); break;
    case '--iters': out.iters = parseInteger(v, name, 1, MAX_ITERS); break;
    case '--recall-rows': out.recallRows = parseInteger(v, name, 0); break;
    case '--seed': out.seed = parseInteger(v, name, 0); break;
    case '--device': out.device = parseInteger(v, name, 0); break;
    case '--devices': out.devices = parseDevices(v, name); break;
    case '--tau-sweep': out.tauSweep = parseTauList(v, name); break;
    case '--gen-threads': out.genThreads = parseInteger(v, name, 0); break;
    case '--batch-workload': out.batchWorkload = parseChoice<BatchPreset>(v, name, ['mixed', '8x4k'], { '8x4096': '8x4k' }); break;
    case '--lengths': out.lengths = parseSizeList(v, name); break;
    case '--chunked': out.chunked = parseTotalChunk(v, name); break;
    case '--page-size': out.pageSize = parseSize(v, name); break;
    case '--kv-layout': out.kvLayout = parseChoice<KvLayoutName | 'both'>(v, name, ['NHD', 'HND', 'both'], { nhd: 'NHD', hnd: 'HND' }); break;
    case '--paged-sweep': out.pagedSweep = parseSizeList(v, name); break;
    case '--paged-tokens': out.pagedTokens = parseTotalChunk(v, name); break;
    case '--json': out.json = nonEmpty(v, name); break;
    case '--svg': out.svg = nonEmpty(v, name); break;
    case '--quiet': out.quiet = true; break;
    case '--help': out.help = true; break;
    case '--version': out.version = true; break;
    default: throw new UsageError(`unknown option '${name}'`);
  }
}

function positive(value: number, text: string, option: string): number {
  if (!(value > 0)) throw new UsageError(`'${text}' must be greater than 0`, option);
  return value;
}

function nonEmpty(v: string, option: string): string {
  if (v.trim() === '') throw new UsageError('needs a file name', option);
  return v;
}

/** "0,1" / "cuda:0,cuda:1" / "cpu,cpu" -> ['cuda:0', 'cuda:1'] / ['cpu', 'cpu']. */
export function parseDevices(text: string, option: string): string[] {
  const parts = text.split(',').map((p) => p.trim().toLowerCase());
  if (parts.some((p) => p === '')) throw new UsageError(`'${text}' has an empty entry (write e.g. 0,1 or cuda:0,cuda:1)`, option);
  return parts.map((p) => {
    if (p === 'cpu') return 'cpu';
    if (p === 'cuda') return 'cuda:0';
    const m = /^(?:cuda:)?(\d+)$/.exec(p);
    if (!m || !Number.isSafeInteger(Number(m[1]))) throw new UsageError(`'${p}' is not a device (a GPU index, cuda:N or cpu)`, option);
    return `cuda:${Number(m[1])}`;
  });
}

/** "0.8,0.9" -> [0.8, 0.9]: thresholds in (0, 1], no repeats. */
function parseTauList(text: string, option: string): number[] {
  const parts = text.split(',');
  if (parts.some((p) => p.trim() === '')) throw new UsageError(`'${text}' has an empty entry (write e.g. 0.8,0.9,0.95)`, option);
  const list = parts.map((p) => parseProbability(p, option));
  const seen = new Set<number>();
  for (const t of list) {
    if (seen.has(t)) throw new UsageError(`${t} listed twice`, option);
    seen.add(t);
  }
  return list;
}

function parseMethods(text: string, option: string): BenchMethod[] {
  const list: BenchMethod[] = [];
  for (const part of text.split(',')) {
    const m = parseChoice<BenchMethod>(part, option, ALL_METHODS, { 'mean-pool': 'meanpool', mean: 'meanpool' });
    if (list.includes(m)) throw new UsageError(`'${m}' listed twice`, option);
    list.push(m);
  }
  // Always the same order in the report: dense first.
  return ALL_METHODS.filter((m) => list.includes(m));
}

function suggest(name: string): string | undefined {
  let best: string | undefined;
  let bestDist = 3;
  for (const candidate of Object.keys(OPTIONS)) {
    const d = editDistance(name, candidate);
    if (d < bestDist) { bestDist = d; best = candidate; }
  }
  return best;
}

function editDistance(a: string, b: string): number {
  const row = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    let prev = row[0];
    row[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const tmp = row[j];
      row[j] = Math.min(row[j] + 1, row[j - 1] + 1, prev + (a[i - 1] === b[j - 1] ? 0 : 1));
      prev = tmp;
    }
  }
  return row[b.length];
}

/** Maps an estimation-option field name (as the library names it) to our flag. */
export const FIELD_TO_FLAG: Record<string, string> = {
  head_dim: '--head-dim',
  block: '--block',
  highDims: '--high-dims',
  lowDims: '--low-dims',
  ropeLayout: '--rope',
  tempHigh: '--temp-high',
  tempLow: '--temp-low',
  tauHigh: '--tau-high',
  tauLow: '--tau-low',
  topkHigh: '--topk',
  topkLow: '--topk',
};

/** Library dtype names. */
export function libDType(d: BenchDType): 'bfloat16' | 'float16' | 'float32' {
  return d === 'bf16' ? 'bfloat16' : d === 'fp16' ? 'float16' : 'float32';
}

/** "8k" for 8192, "1000" for 1000: the short form used in tables. */
export function formatSize(n: number): string {
  if (n >= 1024 * 1024 && n % (1024 * 1024) === 0) return `${n / (1024 * 1024)}M`;
  if (n >= 1024 && n % 1024 === 0) return `${n / 1024}K`;
  return String(n);
}

// Loads the native addon (prebuilds/ or build/Release via node-gyp-build) on
// first use and describes its surface. Nothing else in lib/ touches the
// binary directly except through `native()`.
import * as fs from 'fs';
import * as path from 'path';

/** dtype codes of the addon (prism::DType). */
export const NativeDType = { F32: 0, F16: 1, BF16: 2, U8: 3, I32: 4, I64: 5 } as const;

export interface NativeTensor {
  readonly device: number;
  readonly dtype: number;
  readonly shape: number[];
  readonly layout: number;
  readonly byteLength: number;
  readonly disposed: boolean;
  readonly pointer: bigint;
  /** Elements [offset, offset + length) in memory order (default: all / all from offset). */
  toHost(offset?: number, length?: number): Promise<ArrayBuffer>;
  /** Without offset, data fills the tensor; with it, data goes to [offset, offset + data.length). */
  upload(data: ArrayBufferView, offset?: number): Promise<void>;
  dispose(): void;
  /** A tensor over elements [offset, offset + count(shape)) of this one's memory, which it keeps alive. */
  view(shape: number[], layout: number, offset: number): NativeTensor;
}

export interface NativeTensorConstructor {
  new (device: number, dtype: number, shape: number[], layout: number, data?: ArrayBufferView): NativeTensor;
  wrap(device: number, dtype: number, shape: number[], layout: number, pointer: bigint): NativeTensor;
}

/** Compact rows: counts int32 [b, H, nq], rowPtr int64 [rows + 1], indices int32 [n]. */
export interface NativeBlockList {
  counts: NativeTensor;
  rowPtr: NativeTensor;
  indices: NativeTensor;
}

/** Where estimation writes a selection; the compact indices come back with the result. */
export interface NativeSelectionOut {
  counts: NativeTensor;
  rowPtr: NativeTensor;
  temps: NativeTensor;
  /** optional (null or absent: no dense mask) */
  mask?: NativeTensor | null;
}

export interface NativeAttentionParams {
  block: number;
  softmaxScale: number;
  /** float32 [b, Hq, Nq, 1]: receives the row log-sum-exp */
  lse?: NativeTensor;
}

export interface NativeTiming {
  warmup: number;
  iters: number;
}

/** One CUDA device as the addon reports it. */
export interface DeviceInfo {
  index: number;
  name: string;
  major: number;
  minor: number;
  multiProcessors: number;
  totalMemory: number;
  /** Attention kernel path taken on this device: 'sm90-wgmma' (Hopper) or 'sm80-mma'. */
  attentionPath: string;
}

/** What the binary was built with and what it can use on this machine. */
export interface Info {
  /** Node-API version the addon was built against. */
  napiVersion: number;
  cudaCompiled: boolean;
  /** Compiled CUDA architectures, e.g. 'sm_80,sm_86,sm_89,sm_90a,compute_90'; '' without CUDA. */
  cudaArchs: string;
  /** Why no GPU can be used (built without CUDA, no driver, no device); null when one can. */
  cudaUnavailableReason: string | null;
  cudaRuntimeVersion: number;
  cudaDriverVersion: number;
  /**
   * CUDA version the NVIDIA driver must support, as cudaDriverGetVersion reports
   * it: the major version of the CUDA runtime linked in (13000 for CUDA 13.x); 0 without CUDA.
   */
  minDriverVersion: number;
  /** The same for people: 'NVIDIA driver >= 580 (CUDA 13.0)'; null without CUDA. */
  minDriver: string | null;
  devices: DeviceInfo[];
  cpuThreads: number;
}

/** native.supports(): whether attention on a device takes a call (from the kernels' own table). */
export interface NativeSupport {
  supported: boolean;
  /** The first rule the call breaks, in the order head_dim, dtype, block; null when supported. */
  unsupported: null | 'headDim' | 'dtype' | 'block';
  /** The device's allowed values (dtype codes as NativeDType); empty for the CPU: any. */
  headDims: number[];
  dtypes: number[];
  blocks: number[];
}

/**
 * @internal Tuning switches of the CUDA attention plan, for tests and
 * measurements only (never set by lib/). Process-wide.
 */
export interface NativeAttentionTuning {
  /** 'portable': every call takes the portable sm80-mma kernel. */
  path: 'auto' | 'portable';
  /** Hopper scheduling: -1 the plan's default, 0 never persistent, 1 always. */
  persistent: -1 | 0 | 1;
  /** > 0: cap on the persistent grid (0: one CTA per SM). */
  maxCtas: number;
  /** Hopper consumer ping-pong; only in builds with PRISM_TUNING_VARIANTS (never the addon). */
  pingpong: boolean;
  /** Hopper persistent sparse calls: items run longest list first in windows of this many (-1: the plan's default, 0: never). */
  sortWindow: number;
}

/** @internal native.tuning: set replaces the whole tuning (a field left out takes its default). */
export interface NativeTuning {
  getAttention(): NativeAttentionTuning;
  setAttention(t: Partial<NativeAttentionTuning>): void;
  /** maxLanes: streams a ragged batch's short sequences may run on at once (1-4, default 4). */
  getVarlen(): { maxLanes: number };
  setVarlen(t: { maxLanes?: number }): void;
}

/** What the addon reports for one device (lib/memory.ts names the device). */
export interface NativeMemoryStats {
  /** -1 = cpu, N = cuda:N */
  device: number;
  /** Bytes of the live tensors the package allocated (fromDevicePointer views are not counted). */
  tensorBytes: number;
  tensorCount: number;
  /** Bytes in the cached workspace pool, idle and in use (0 on the CPU). */
  workspaceBytes: number;
  /** Of which lent to ops running now. */
  workspaceInUseBytes: number;
  /** Allocations the package has made on this device since the process started: tensor storages and workspace buffers. */
  allocations: number;
  /** cudaMemGetInfo of the device; null on the CPU and on GPUs this process has not used yet. */
  deviceFreeBytes: number | null;
  deviceTotalBytes: number | null;
}

/** Sequence table of a ragged batch: (qOffset, nq, kOffset, nk) per sequence; paged: the page table too. */
export interface NativeVarlenSpec {
  seqs: BigInt64Array;
  /** int32 [batch * maxPages] page ids (paged KV only) */
  pageTable?: Int32Array;
  maxPages?: number;
}

/**
 * Key summaries as the addon reads them (lib/key-summaries.ts): valid blocks
 * [0, blocks); append: the estimation also writes the full key blocks it pools
 * ([blocks, floor(Nk / block))) into the summaries' rows.
 */
export interface NativeKeySummaries {
  rows: NativeTensor;
  energies: NativeTensor | null;
  blocks: number;
  append?: boolean;
}

/** One summarizeKeys job: key blocks [from, to) into these summaries' tensors. */
export interface NativeSummaryJob {
  rows: NativeTensor;
  energies: NativeTensor | null;
  from: number;
  to: number;
}

export interface NativeBinding {
  Tensor: NativeTensorConstructor;
  info(): Info;
  memoryStats(device: number): NativeMemoryStats;
  /** Frees idle cached workspace (and trims the device's memory pool); resolves to the bytes freed. */
  releaseCachedMemory(device: number): Promise<number>;
  /** Process-wide: true, worker threads poll an op's completion event; false, they sleep on it. */
  setWaitPolicy(spin: boolean): void;
  getWaitPolicy(): boolean;
  /** Caps the threads of each CPU op, process-wide (0: every core). */
  setCpuThreads(n: number): void;
  estimate(
    q: NativeTensor,
    k: NativeTensor,
    params: object,
    out: NativeSelectionOut,
    timing?: NativeTiming,
    stream?: bigint,
    keys?: NativeKeySummaries,
  ): Promise<{ timesMs: number[]; indices: NativeTensor; selected: number }>;
  attention(
    q: NativeTensor,
    k: NativeTensor,
    v: NativeTensor,
    out: NativeTensor,
    list: NativeBlockList | null,
    params: NativeAttentionParams,
    timing?: NativeTiming,
    stream?: bigint,
  ): Promise<number[]>;
  prefill(
    q: NativeTensor,
    k: NativeTensor,
    v: NativeTensor,
    out: NativeTensor,
    estimateParams: object,
    attentionParams: NativeAttentionParams,
    selection: NativeSelectionOut | null,
    stream?: bigint,
    keys?: NativeKeySummaries,
  ): Promise<{ estimateMs: number; attentionMs: number; selected: number; indices?: NativeTensor }>;
  /** Ragged batches and paged KV caches (ops_varlen.cc): estimation, attention or both per sequence. */
  varlen(
    q: NativeTensor,
    k: NativeTensor,
    v: NativeTensor | null,
    out: NativeTensor | null,
    spec: NativeVarlenSpec,
    estimateParams: object | null,
    attentionParams: NativeAttentionParams | null,
    selections: Array<NativeSelectionOut | null> | null,
    lists: Array<NativeBlockList | null> | null,
    stream?: bigint,
    keys?: Array<NativeKeySummaries | null>,
  ): Promise<{ estimateMs: number; attentionMs: number; selected: number[]; indices: Array<NativeTensor | null> }>;
  /**
   * Key summaries (key_summaries.h): pools key blocks [from, to) of k into each
   * job's tensors; spec null: contiguous k, one job; else one job (or null) per
   * sequence of packed or paged keys. Resolves to the device milliseconds.
   */
  summarizeKeys(k: NativeTensor, params: object, jobs: Array<NativeSummaryJob | null>, spec: NativeVarlenSpec | null, stream?: bigint): Promise<number>;
  /** float32 words of a summary row and of a block's energies (0: none) on a device for head_dim and options. */
  keySummaryLayout(device: number, headDim: number, params: object): { rowFloats: number; energyFloats: number };
  massRecall(
    q: NativeTensor,
    k: NativeTensor,
    list: NativeBlockList | null,
    params: NativeAttentionParams,
    rows: BigInt64Array,
  ): Promise<Float32Array>;
  diffNorms(a: NativeTensor, b: NativeTensor): Promise<[number, number]>;
  supports(dtype: number, headDim: number, block: number, device: number): NativeSupport;
  /** @internal tests and measurements only */
  tuning: NativeTuning;
  /** src's bytes into dst (same device, dtype, shape, layout), run like an op. */
  copy(dst: NativeTensor, src: NativeTensor, stream?: bigint): Promise<number[]>;
  /** @internal helpers for the package's own tests */
  testing: NativeTesting;
}

/** @internal */
export interface NativeTesting {
  /** A new non-blocking stream on a CUDA device (a cudaStream_t as a bigint). */
  createStream(device: number): bigint;
  destroyStream(stream: bigint): void;
  /**
   * Enqueues now, from the calling thread, on `stream` (undefined: the device's
   * own stream) a host wait of delayMs and then the copy of src into dst;
   * resolves when the copy is done.
   */
  copyAfterDelay(dst: NativeTensor, src: NativeTensor, stream: bigint | undefined, delayMs: number): Promise<void>;
  /** The cudaUnavailableReason given when the driver supports CUDA `driverVersion` (0: none) but `requiredVersion` is needed. */
  driverReason(driverVersion: number, requiredVersion: number): string;
  /** Whether the device's primary CUDA context exists in this process (asked without creating one). */
  primaryContextActive(device: number): boolean;
  /** The calling thread's current CUDA device (cudaGetDevice; CUDA builds only). */
  currentDevice(): number;
  /** Makes `device` current on the calling thread (cudaSetDevice; CUDA builds only). */
  setCurrentDevice(device: number): void;
  /** An External value this addon's tensors did not make, to show that it is refused. */
  foreignExternal(): unknown;
  /** The workspace buffer size a request of `bytes` is given (CUDA builds only). */
  workspaceSizeClass(bytes: number): number;
  /** Indices of the idle workspace buffers (their sizes) freed before a new one of `want` bytes is made (CUDA builds only). */
  workspaceEvictions(idleSizes: number[], want: number): number[];
  /** Which stream each sequence of a CUDA ragged batch runs on (plan_lanes, varlen.h); kvTokenBytes: the gathered bytes of a key (paged keys for the estimation), 0 when nothing is gathered. */
  planLanes(lengths: Array<[number, number]>, heads: number, kvTokenBytes: number, maxLanes: number): { lanes: number; lane: number[] };
}

/** The directory holding this package's package.json (works from lib/ and dist/lib/). */
export function packageRoot(): string {
  let dir = __dirname;
  for (;;) {
    const manifest = path.join(dir, 'package.json');
    if (fs.existsSync(manifest)) {
      try {
        if (JSON.parse(fs.readFileSync(manifest, 'utf8')).name === 'prism-attention') return dir;
      } catch {
        // unreadable manifest: keep walking up
      }
    }
    const parent = path.dirname(dir);
    if (parent === dir) throw new Error('prism-attention: cannot find the package root');
    dir = parent;
  }
}

let binding: NativeBinding | undefined;

/** The addon, loaded on first call; throws a clear Error when no binary is there. */
export function native(): NativeBinding {
  if (binding) return binding;
  const root = packageRoot();
  let load: (dir: string) => unknown;
  try {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    load = require('node-gyp-build');
  } catch {
    throw new Error('prism-attention: the node-gyp-build dependency is missing; reinstall the package');
  }
  try {
    binding = load(root) as NativeBinding;
  } catch (e) {
    const reason = e instanceof Error ? e.message.split('\n')[0] : String(e);
    throw new Error(
      `prism-attention: no usable native binary (${reason}). ` +
        'Build it with `npm rebuild prism-attention` (in a clone of the repository: `npm run build:native`; see docs/building.md).',
      { cause: e },
    );
  }
  // Configuration reaches the native code from here, never from its own environment reads.
  const cap = cpuThreadsFromEnv(process.env.PRISM_CPU_THREADS);
  if (cap !== null) binding.setCpuThreads(cap);
  return binding;
}

/** Build and device facts of the loaded addon. */
export function info(): Info {
  return native().info();
}

let deviceSummary: { count: number; unavailable: string | null } | null = null;

/**
 * @internal How many CUDA devices ops can use, or why none: read from info()
 * once (it queries every device's properties) and fixed for the process.
 */
export function cudaDevices(): { count: number; unavailable: string | null } {
  if (deviceSummary === null) {
    const i = native().info();
    deviceSummary = { count: i.devices.length, unavailable: i.cudaUnavailableReason };
  }
  return deviceSummary;
}

/**
 * PRISM_CPU_THREADS as a cap on each CPU op's threads: a whole number from 1
 * to 4096, or null (unset or anything else, which is ignored: every core).
 */
export function cpuThreadsFromEnv(value: string | undefined): number | null {
  if (value === undefined || !/^[0-9]+$/.test(value)) return null;
  const n = Number(value);
  return n >= 1 && n <= 4096 ? n : null;
}

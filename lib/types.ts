// Public types shared by the API, the reference implementation and the benchmark.

export type DType = 'float32' | 'float16' | 'bfloat16';
export type Layout = 'bhnd' | 'bnhd';
/** 'auto' picks cuda:0 when a GPU is usable, else the CPU. */
export type DeviceSpec = 'auto' | 'cpu' | 'cuda' | `cuda:${number}`;
export type RopeLayout = 'half' | 'interleaved';
export type Method = 'prism' | 'meanpool';
export type SelectionMode = 'topp' | 'topk';

/** Estimation options as a caller writes them; every field optional. */
export interface EstimateOptions {
  /** Rows per query block and per key block. Default 128. */
  block?: number;
  /** Dims in the high-frequency band. Default 64 * d / 128. */
  highDims?: number;
  /** Dims in the low-frequency band. Default 96 * d / 128. */
  lowDims?: number;
  /** RoPE pair layout. Default 'half'. */
  ropeLayout?: RopeLayout;
  /** 'prism' (dual band) or 'meanpool' (single-band baseline). Default 'prism'. */
  method?: Method;
  /** Energy-based temperatures. Default true. */
  calibrate?: boolean;
  /** Fixed temperatures used when calibrate is false, in [1e-24, 1e24]. Default 1. */
  tempHigh?: number;
  tempLow?: number;
  /** 'topp' (default) or 'topk'. */
  selection?: SelectionMode;
  /** Top-p thresholds in [2^-149, 1] (2^-149: the smallest float32 > 0). Default 0.95. */
  tauHigh?: number;
  tauLow?: number;
  /** Top-k counts (selection 'topk'), integers >= 1. Default 16. */
  topkHigh?: number;
  topkLow?: number;
  /** Force key block 0 on. Default true. */
  forceSink?: boolean;
  /** Force the diagonal key block on. Default true. */
  forceDiagonal?: boolean;
}

/** Every field resolved and validated for a given head_dim. */
export type ResolvedEstimateOptions = Required<EstimateOptions>;

export interface AttentionOptions {
  /** Softmax scale, in [1e-24, 1e24]. Default 1/sqrt(d). */
  softmaxScale?: number;
  /**
   * Also return the row log-sum-exp: float32 [b, Hq, Nq, 1], natural log of the
   * softmax denominator over the keys attended (scale applied), -Infinity for a
   * row that met no key. As FlashAttention's softmax_lse: merge this output with
   * attention over other keys by weighting each with exp(lse - max lse). Default false.
   */
  returnLse?: boolean;
}

/**
 * Estimation options as the estimation takes them: a value that also holds
 * attention fields (a PrefillOptions) does not fit, since the estimation
 * rejects those fields at run time.
 */
export type EstimateOnlyOptions = EstimateOptions & { [K in keyof AttentionOptions]?: never };

/**
 * Host-side copy of a block mask. Rows are query-block rows,
 * row = (b * heads + h) * nq + i; row r selects the key blocks
 * indices[rowPtr[r] .. rowPtr[r + 1]), ascending (compact rows, CSR).
 */
export interface HostBlockMask {
  batch: number;
  heads: number;
  nq: number;
  nk: number;
  block: number;
  /** int32 [batch, heads, nq]: selected blocks per row (kv_num_blocks) */
  counts: Int32Array;
  /** [batch * heads * nq + 1] row pointers (exact integers); rowPtr[rows] = selected blocks in all */
  rowPtr: Float64Array;
  /** int32 [rowPtr[rows]]: the selected key blocks of every row, row after row */
  indices: Int32Array;
  /** float32 [batch, heads, 2]: (t_high, t_low) */
  temperatures: Float32Array;
  /** uint8 [batch, heads, nq, nk], 1 where selected; expanded on the host (toHost({ mask: false }) skips it) */
  mask: Uint8Array;
}

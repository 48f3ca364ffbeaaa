// Defaults and validation of the estimation and attention options. Errors
// name the offending field: TypeError for an unknown field or a wrong type,
// RangeError for a value outside its allowed range.
import { isArray, ownKeys, readMember, show, typeName } from './args';
import type {
  AttentionOptions,
  EstimateOnlyOptions,
  EstimateOptions,
  Method,
  ResolvedEstimateOptions,
  RopeLayout,
  SelectionMode,
} from './types';

const ESTIMATE_FIELDS: ReadonlyArray<keyof EstimateOptions> = [
  'block',
  'highDims',
  'lowDims',
  'ropeLayout',
  'method',
  'calibrate',
  'tempHigh',
  'tempLow',
  'selection',
  'tauHigh',
  'tauLow',
  'topkHigh',
  'topkLow',
  'forceSink',
  'forceDiagonal',
];

const ATTENTION_FIELDS: ReadonlyArray<keyof AttentionOptions> = ['softmaxScale', 'returnLse'];

/**
 * Throws TypeError unless `opts` (the argument `name`) is undefined, null or an
 * object with only `allowed` keys; returns the allowed fields, each read once
 * (so a throwing getter is reported here, naming the field).
 */
export function checkOptionFields(
  opts: unknown,
  allowed: readonly string[],
  what: string,
  name = 'opts',
): Record<string, unknown> {
  if (opts === undefined || opts === null) return {};
  if (typeof opts !== 'object' || isArray(opts)) {
    throw new TypeError(`${name} must be an object of ${what}s, got ${typeName(opts)}`);
  }
  for (const key of ownKeys(opts, name)) {
    if (!allowed.includes(key)) {
      throw new TypeError(`unknown ${what} field '${key}' (allowed: ${allowed.join(', ')})`);
    }
  }
  const fields: Record<string, unknown> = {};
  for (const key of allowed) fields[key] = readMember(opts, key, name);
  return fields;
}

function numberField(name: string, value: unknown): number {
  if (typeof value !== 'number') throw new TypeError(`${name} must be a number, got ${typeName(value)}`);
  if (!Number.isFinite(value)) throw new RangeError(`${name} must be finite, got ${value}`);
  return value;
}

export function integerIn(name: string, value: unknown, min: number, max: number, extra = ''): number {
  const x = numberField(name, value);
  if (!Number.isInteger(x) || x < min || x > max) {
    throw new RangeError(`${name} must be an integer in [${min}, ${max}]${extra}, got ${x}`);
  }
  return x;
}

export function booleanField(name: string, value: unknown): boolean {
  if (typeof value !== 'boolean') throw new TypeError(`${name} must be a boolean, got ${typeName(value)}`);
  return value;
}

function choiceField<T extends string>(name: string, value: unknown, choices: readonly T[]): T {
  if (typeof value !== 'string') throw new TypeError(`${name} must be a string, got ${typeName(value)}`);
  if (!(choices as readonly string[]).includes(value)) {
    throw new RangeError(`${name} must be one of ${choices.map((c) => `'${c}'`).join(', ')}, got '${value}'`);
  }
  return value as T;
}

function evenDims(name: string, value: unknown, headDim: number): number {
  const x = integerIn(name, value, 2, headDim);
  if (x % 2 !== 0) throw new RangeError(`${name} must be an even integer in [2, ${headDim}], got ${x}`);
  return x;
}

/**
 * Range of tempHigh / tempLow and softmaxScale. The kernels use these values
 * as float32 and fold them into the logits as a factor log2(e) / (sqrt(D) t)
 * (estimation, D = band dims) or scale * log2(e) (attention). Within
 * [1e-24, 1e24] that factor stays a finite, normal float32 and, for inputs in
 * the float16 range (|x| <= 65504), logits of head_dim up to ~50000 stay
 * finite: overflowing logits would turn the softmax into NaN. Outside it, a
 * value could round to 0 or infinity, which the backends read as "default".
 */
export const SCALE_RANGE: readonly [number, number] = [1e-24, 1e24];

/** Smallest positive float32 (2^-149): a smaller tau rounds to 0 in float32 and would select nothing. */
export const TAU_MIN = 2 ** -149;

function inScaleRange(name: string, value: unknown): number {
  const x = numberField(name, value);
  const [lo, hi] = SCALE_RANGE;
  if (!(x >= lo && x <= hi)) throw new RangeError(`${name} must be in [${lo}, ${hi}], got ${x}`);
  return x;
}

function fraction(name: string, value: unknown): number {
  const x = numberField(name, value);
  if (!(x >= TAU_MIN && x <= 1)) {
    throw new RangeError(`${name} must be in [${TAU_MIN} (2^-149, the smallest float32 > 0), 1], got ${x}`);
  }
  return x;
}

/** A default band width: the even number of dims nearest below numerator / 128 of headDim, at least 2. */
export function defaultBandDims(headDim: number, numerator: number): number {
  return Math.max(2, 2 * Math.floor((numerator * headDim) / 256));
}

/** Checks a head_dim as the estimator needs it: an even integer >= 2. */
export function checkHeadDim(headDim: unknown, name = 'head_dim'): void {
  if (typeof headDim !== 'number') throw new TypeError(`${name} must be a number, got ${typeName(headDim)}`);
  if (!Number.isInteger(headDim) || headDim < 2 || headDim % 2 !== 0) {
    throw new RangeError(`${name} must be an even integer >= 2 (RoPE pairs), got ${show(headDim)}`);
  }
}

/**
 * Every estimation option resolved for `headDim`: defaults filled
 * (block 128, highDims 64*d/128, lowDims 96*d/128, 'half', 'prism', calibrate,
 * temperatures 1, 'topp' with tau 0.95/0.95, top-k 16/16, sink and diagonal on)
 * and each field validated.
 */
export function resolveEstimateOptions(opts: EstimateOnlyOptions | undefined, headDim: number): ResolvedEstimateOptions {
  checkHeadDim(headDim, 'headDim');
  const o = checkOptionFields(opts, ESTIMATE_FIELDS as readonly string[], 'estimate option');
  const pick = <T>(key: keyof EstimateOptions, fallback: T): unknown => (o[key] === undefined ? fallback : o[key]);
  const block = integerIn('block', pick('block', 128), 16, 1024, ' and a multiple of 16');
  if (block % 16 !== 0) throw new RangeError(`block must be an integer in [16, 1024] and a multiple of 16, got ${block}`);
  return {
    block,
    highDims: evenDims('highDims', pick('highDims', defaultBandDims(headDim, 64)), headDim),
    lowDims: evenDims('lowDims', pick('lowDims', defaultBandDims(headDim, 96)), headDim),
    ropeLayout: choiceField<RopeLayout>('ropeLayout', pick('ropeLayout', 'half'), ['half', 'interleaved']),
    method: choiceField<Method>('method', pick('method', 'prism'), ['prism', 'meanpool']),
    calibrate: booleanField('calibrate', pick('calibrate', true)),
    tempHigh: inScaleRange('tempHigh', pick('tempHigh', 1)),
    tempLow: inScaleRange('tempLow', pick('tempLow', 1)),
    selection: choiceField<SelectionMode>('selection', pick('selection', 'topp'), ['topp', 'topk']),
    tauHigh: fraction('tauHigh', pick('tauHigh', 0.95)),
    tauLow: fraction('tauLow', pick('tauLow', 0.95)),
    topkHigh: integerIn('topkHigh', pick('topkHigh', 16), 1, 2 ** 31 - 1),
    topkLow: integerIn('topkLow', pick('topkLow', 16), 1, 2 ** 31 - 1),
    forceSink: booleanField('forceSink', pick('forceSink', true)),
    forceDiagonal: booleanField('forceDiagonal', pick('forceDiagonal', true)),
  };
}

/** Attention options resolved: softmaxScale defaults to 1/sqrt(d) (sent as 0). */
export function resolveAttentionOptions(opts: AttentionOptions | undefined): { softmaxScale: number; returnLse: boolean } {
  const o = checkOptionFields(opts, ATTENTION_FIELDS as readonly string[], 'attention option');
  const returnLse = o.returnLse === undefined ? false : booleanField('returnLse', o.returnLse);
  if (o.softmaxScale === undefined) return { softmaxScale: 0, returnLse };
  return { softmaxScale: inScaleRange('softmaxScale', o.softmaxScale), returnLse };
}

/** Names of the estimation and attention fields (used to split prefill options). */
export const estimateOptionFields: readonly string[] = ESTIMATE_FIELDS;
export const attentionOptionFields: readonly string[] = ATTENTION_FIELDS;
/** Both, the fields a prefill call's options may hold. */
export const prefillOptionFields: readonly string[] = [...ESTIMATE_FIELDS, ...ATTENTION_FIELDS];

/** The object the addon's estimate() reads (enums as the native codes). */
export function toNativeEstimateParams(o: ResolvedEstimateOptions): Record<string, number | boolean> {
  return {
    block: o.block,
    highDims: o.highDims,
    lowDims: o.lowDims,
    ropeLayout: o.ropeLayout === 'half' ? 0 : 1,
    method: o.method === 'prism' ? 0 : 1,
    calibrate: o.calibrate,
    tempHigh: o.tempHigh,
    tempLow: o.tempLow,
    selection: o.selection === 'topp' ? 0 : 1,
    tauHigh: o.tauHigh,
    tauLow: o.tauLow,
    topkHigh: o.topkHigh,
    topkLow: o.topkLow,
    forceSink: o.forceSink,
    forceDiagonal: o.forceDiagonal,
  };
}

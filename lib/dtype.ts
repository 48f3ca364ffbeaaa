// bfloat16 / float16 <-> float32 conversion on typed arrays.
//
// All conversions to the 16-bit formats round to nearest, ties to even (RNE),
// the same rounding the GPU intrinsics (__float2bfloat16_rn, __float2half_rn)
// use. NaN stays NaN (quiet, sign kept), +-Inf stays +-Inf, float16 overflow
// rounds to +-Inf, values below the smallest subnormal round to signed zero,
// subnormals of both formats are produced and read exactly.
//
// The loops alias one Float32Array and one Uint32Array over the same scratch
// buffer (no DataView) so V8 keeps them monomorphic and fast.

import { typeName, typedArrayLength, typedArrayName } from './args';

const scratchF32 = new Float32Array(1);
const scratchU32 = new Uint32Array(scratchF32.buffer);

/** Bits of a float32 value (the argument is rounded to float32 first). */
export function float32Bits(x: number): number {
  scratchF32[0] = x;
  return scratchU32[0];
}

/** float32 bits -> bfloat16 bits, round to nearest even. */
export function bf16BitsFromF32Bits(u: number): number {
  if ((u & 0x7fffffff) > 0x7f800000) return ((u >>> 16) | 0x0040) & 0xffff; // quiet NaN
  return ((u + 0x7fff + ((u >>> 16) & 1)) >>> 16) & 0xffff;
}

/** float32 bits -> float16 bits, round to nearest even. */
export function f16BitsFromF32Bits(u: number): number {
  const sign = (u >>> 16) & 0x8000;
  const abs = u & 0x7fffffff;
  if (abs >= 0x7f800000) {
    // Inf or NaN (NaN keeps its top payload bits and is forced quiet)
    return abs === 0x7f800000 ? sign | 0x7c00 : sign | 0x7e00 | ((abs >>> 13) & 0x3ff);
  }
  if (abs >= 0x38800000) {
    // normal in float16 range (or overflowing): rebias exponent 127 -> 15
    const r = abs - 0x38000000;
    const h = (r + 0x0fff + ((r >>> 13) & 1)) >>> 13;
    return sign | (h >= 0x7c00 ? 0x7c00 : h);
  }
  if (abs <= 0x33000000) return sign; // <= 2^-25: rounds to zero (2^-25 is a tie -> even 0)
  // float16 subnormal: value / 2^-24 = m * 2^(exp - 126)
  const exp = abs >>> 23;
  const m = (abs & 0x7fffff) | 0x800000;
  const shift = 126 - exp; // 14 .. 24
  let q = m >>> shift;
  const rem = m & ((1 << shift) - 1);
  const half = 1 << (shift - 1);
  if (rem > half || (rem === half && (q & 1) !== 0)) q++;
  return sign | q;
}

/** float16 bits -> float32 bits (exact). */
export function f32BitsFromF16Bits(h: number): number {
  const sign = (h & 0x8000) << 16;
  const exp = (h >>> 10) & 0x1f;
  const mant = h & 0x3ff;
  if (exp === 0x1f) return (sign | 0x7f800000 | (mant << 13)) >>> 0;
  if (exp !== 0) return (sign | (((exp + 112) << 23) | (mant << 13))) >>> 0;
  if (mant === 0) return sign >>> 0;
  // subnormal: normalise
  let e = 113;
  let m = mant;
  while ((m & 0x400) === 0) {
    m <<= 1;
    e--;
  }
  return (sign | (e << 23) | ((m & 0x3ff) << 13)) >>> 0;
}

let f16Table: Uint32Array | null = null;
/** Lookup table of float32 bits for all 65536 float16 bit patterns. */
function f16ToF32Table(): Uint32Array {
  if (f16Table === null) {
    const t = new Uint32Array(65536);
    for (let h = 0; h < 65536; h++) t[h] = f32BitsFromF16Bits(h);
    f16Table = t;
  }
  return f16Table;
}

function asU32(x: Float32Array): Uint32Array {
  return new Uint32Array(x.buffer, x.byteOffset, x.length);
}

/**
 * Checks a conversion's input x and optional out (TypeError naming them);
 * returns the element count n and the output (out, or a new array of n).
 */
function checkConversion<O extends Float32Array | Uint16Array>(
  fn: string,
  x: unknown,
  input: 'Float32Array' | 'Uint16Array',
  out: unknown,
  Output: { new (n: number): O; readonly name: string },
): [number, O] {
  if (typedArrayName(x) !== input) throw new TypeError(`${fn}: x must be a ${input}, got ${typeName(x)}`);
  const n = typedArrayLength(x as ArrayBufferView);
  if (out === undefined || out === null) return [n, new Output(n)];
  if (typedArrayName(out) !== Output.name) throw new TypeError(`${fn}: out must be a ${Output.name}, got ${typeName(out)}`);
  if (typedArrayLength(out as ArrayBufferView) < n) throw new RangeError(`${fn}: out is shorter than the input`);
  return [n, out as O];
}

/** float32 -> bfloat16 bit patterns, round to nearest even. */
export function toBFloat16(x: Float32Array, out?: Uint16Array): Uint16Array {
  const [n, o] = checkConversion('toBFloat16', x, 'Float32Array', out, Uint16Array);
  const u = asU32(x);
  for (let i = 0; i < n; i++) {
    const b = u[i];
    o[i] = (b & 0x7fffffff) > 0x7f800000 ? (b >>> 16) | 0x0040 : (b + 0x7fff + ((b >>> 16) & 1)) >>> 16;
  }
  return o;
}

/** bfloat16 bit patterns -> float32 (exact). */
export function fromBFloat16(x: Uint16Array, out?: Float32Array): Float32Array {
  const [n, o] = checkConversion('fromBFloat16', x, 'Uint16Array', out, Float32Array);
  const u = asU32(o);
  for (let i = 0; i < n; i++) u[i] = x[i] << 16;
  return o;
}

/** float32 -> float16 bit patterns, round to nearest even, overflow to +-Inf. */
export function toFloat16(x: Float32Array, out?: Uint16Array): Uint16Array {
  const [n, o] = checkConversion('toFloat16', x, 'Float32Array', out, Uint16Array);
  const u = asU32(x);
  for (let i = 0; i < n; i++) o[i] = f16BitsFromF32Bits(u[i]);
  return o;
}

/** float16 bit patterns -> float32 (exact). */
export function fromFloat16(x: Uint16Array, out?: Float32Array): Float32Array {
  const [n, o] = checkConversion('fromFloat16', x, 'Uint16Array', out, Float32Array);
  const t = f16ToF32Table();
  const u = asU32(o);
  for (let i = 0; i < n; i++) u[i] = t[x[i]];
  return o;
}

/** Round a number to bfloat16 and back (scalar helper for tests and references). */
export function roundBFloat16(x: number): number {
  scratchU32[0] = bf16BitsFromF32Bits(float32Bits(x)) << 16;
  return scratchF32[0];
}

/** Round a number to float16 and back (scalar helper). */
export function roundFloat16(x: number): number {
  scratchU32[0] = f32BitsFromF16Bits(f16BitsFromF32Bits(float32Bits(x)));
  return scratchF32[0];
}

/** Quantize float32 data to a dtype and back (float32 is returned as a copy). */
export function quantize(x: Float32Array, dtype: 'float32' | 'float16' | 'bfloat16'): Float32Array {
  if (dtype === 'float32') return new Float32Array(x);
  if (dtype === 'bfloat16') return fromBFloat16(toBFloat16(x));
  return fromFloat16(toFloat16(x));
}

/** Decode 16-bit patterns of the given dtype to float32. */
export function decode16(bits: Uint16Array, dtype: 'float16' | 'bfloat16'): Float32Array {
  return dtype === 'bfloat16' ? fromBFloat16(bits) : fromFloat16(bits);
}

/** Encode float32 to the 16-bit patterns of the given dtype. */
export function encode16(x: Float32Array, dtype: 'float16' | 'bfloat16'): Uint16Array {
  return dtype === 'bfloat16' ? toBFloat16(x) : toFloat16(x);
}

import {
  toBFloat16,
  fromBFloat16,
  toFloat16,
  fromFloat16,
  roundBFloat16,
  roundFloat16,
  quantize,
} from '../lib/dtype';
import { Rng } from '../lib/rng';

const allPatterns = (): Uint16Array => {
  const a = new Uint16Array(65536);
  for (let i = 0; i < 65536; i++) a[i] = i;
  return a;
};

const bitsOf = (x: Float32Array): Uint32Array => new Uint32Array(x.buffer, x.byteOffset, x.length);
const f32FromBits = (u: number): number => new Float32Array(new Uint32Array([u >>> 0]).buffer)[0];

/** Value of a float16 bit pattern computed from the definition. */
function f16Value(h: number): number {
  const s = h & 0x8000 ? -1 : 1;
  const e = (h >>> 10) & 0x1f;
  const m = h & 0x3ff;
  if (e === 0x1f) return m === 0 ? s * Infinity : NaN;
  if (e === 0) return s * m * 2 ** -24;
  return s * (1 + m / 1024) * 2 ** (e - 15);
}

/** Independent float16 rounding: nearest finite float16 by value, ties to the even pattern. */
function slowToF16(x: number): number {
  if (Number.isNaN(x)) return 0x7e00;
  const neg = x < 0 || Object.is(x, -0);
  const a = Math.abs(x);
  const sign = neg ? 0x8000 : 0;
  if (a >= 65520) return sign | 0x7c00;
  // binary search over positive finite patterns 0..0x7bff (monotone in value)
  let lo = 0;
  let hi = 0x7bff;
  while (hi - lo > 1) {
    const mid = (lo + hi) >>> 1;
    if (f16Value(mid) <= a) lo = mid;
    else hi = mid;
  }
  const dl = a - f16Value(lo);
  const dh = f16Value(hi) - a;
  let r: number;
  if (dl < dh) r = lo;
  else if (dh < dl) r = hi;
  else r = (lo & 1) === 0 ? lo : hi;
  if (f16Value(hi) <= a) r = hi;
  return sign | r;
}

/** Independent bfloat16 rounding by value. */
function slowToBF16(x: number): number {
  const u = bitsOf(new Float32Array([x]))[0];
  if (Number.isNaN(x)) return -1;
  const lo = u >>> 16;
  const vlo = f32FromBits(lo << 16);
  // the pattern after the largest finite one stands for 2^128 (IEEE overflow rule)
  const vhi = (lo & 0x7fff) === 0x7f7f ? Math.sign(x) * 2 ** 128 : f32FromBits(((lo + 1) << 16) >>> 0);
  const dl = Math.abs(x - vlo);
  const dh = Math.abs(vhi - x);
  if (!Number.isFinite(x)) return lo;
  if (dl < dh) return lo;
  if (dh < dl) return (lo + 1) & 0xffff;
  return (lo & 1) === 0 ? lo : (lo + 1) & 0xffff;
}

/**
 * +-Inf keep their patterns; NaN stays NaN, including a signalling NaN whose
 * payload sits only in the bits the conversion drops (it must not become Inf).
 */
function expectInfNaN(to: (x: Float32Array) => Uint16Array, from: (h: Uint16Array) => Float32Array, posInf: number, negInf: number): void {
  const r = to(new Float32Array([Infinity, -Infinity, NaN, f32FromBits(0x7f800001)]));
  expect(r[0]).toBe(posInf);
  expect(r[1]).toBe(negInf);
  expect(Number.isNaN(from(r.subarray(2, 3))[0])).toBe(true);
  expect(Number.isNaN(from(r.subarray(3, 4))[0])).toBe(true);
}

describe('bfloat16', () => {
  test('all 65536 bit patterns round-trip (NaN stays NaN)', () => {
    const bits = allPatterns();
    const f = fromBFloat16(bits);
    const back = toBFloat16(f);
    const fb = bitsOf(f);
    for (let i = 0; i < 65536; i++) {
      if (fb[i] !== (i << 16) >>> 0) throw new Error(`bf16 pattern ${i.toString(16)} decodes to bits ${fb[i].toString(16)}`);
      const isNaN = (i & 0x7f80) === 0x7f80 && (i & 0x7f) !== 0;
      if (isNaN) {
        expect(Number.isNaN(f[i])).toBe(true);
        expect((back[i] & 0x7f80) === 0x7f80 && (back[i] & 0x7f) !== 0).toBe(true);
        expect(back[i] & 0x8000).toBe(i & 0x8000);
      } else if (back[i] !== i) {
        throw new Error(`bf16 pattern ${i.toString(16)} -> ${back[i].toString(16)}`);
      }
    }
  });

  test('round to nearest even on ties, up above, down below', () => {
    const x = new Float32Array([
      f32FromBits(0x3f808000), // 1 + 2^-8: tie between 0x3f80 and 0x3f81 -> 0x3f80
      f32FromBits(0x3f818000), // tie between 0x3f81 and 0x3f82 -> 0x3f82
      f32FromBits(0x3f808001), // just above the tie -> 0x3f81
      f32FromBits(0x3f817fff), // just below the tie -> 0x3f81
      f32FromBits(0xbf808000), // negative tie -> 0xbf80
      f32FromBits(0x7f7fffff), // max float32 rounds up to +Inf
      f32FromBits(0x00018000), // subnormal tie -> 0x0002
      -0,
    ]);
    expect(Array.from(toBFloat16(x))).toEqual([0x3f80, 0x3f82, 0x3f81, 0x3f81, 0xbf80, 0x7f80, 0x0002, 0x8000]);
  });

  test('Inf and NaN', () => expectInfNaN(toBFloat16, fromBFloat16, 0x7f80, 0xff80));

  test('random float32 bit patterns match an independent by-value rounding', () => {
    const rng = new Rng(7);
    const n = 200000;
    const x = new Float32Array(n);
    const u = bitsOf(x);
    for (let i = 0; i < n; i++) u[i] = rng.nextU32();
    const r = toBFloat16(x);
    for (let i = 0; i < n; i++) {
      if (Number.isNaN(x[i])) {
        expect(Number.isNaN(fromBFloat16(r.subarray(i, i + 1))[0])).toBe(true);
        continue;
      }
      const want = slowToBF16(x[i]);
      if (r[i] !== want) throw new Error(`bf16(${x[i]}) = ${r[i].toString(16)}, want ${want.toString(16)}`);
    }
  });

  test('scalar helper agrees with the array path', () => {
    expect(roundBFloat16(1.00390625)).toBe(1); // tie -> even
    expect(roundBFloat16(3.14159)).toBe(fromBFloat16(toBFloat16(new Float32Array([3.14159])))[0]);
  });
});

describe('float16', () => {
  test('all 65536 bit patterns decode to their defined value and round-trip', () => {
    const bits = allPatterns();
    const f = fromFloat16(bits);
    const back = toFloat16(f);
    for (let i = 0; i < 65536; i++) {
      const want = f16Value(i);
      if (Number.isNaN(want)) {
        expect(Number.isNaN(f[i])).toBe(true);
        expect((back[i] & 0x7c00) === 0x7c00 && (back[i] & 0x3ff) !== 0).toBe(true);
        continue;
      }
      if (!Object.is(f[i], want)) throw new Error(`f16 pattern ${i.toString(16)} decodes to ${f[i]}, want ${want}`);
      if (back[i] !== i) throw new Error(`f16 pattern ${i.toString(16)} -> ${back[i].toString(16)}`);
    }
  });

  test('ties to even, overflow to Inf, subnormals and underflow', () => {
    const x = new Float32Array([
      1 + 2 ** -11, // tie between 1 and 1+2^-10 -> 1 (0x3c00)
      1 + 3 * 2 ** -11, // tie -> 1 + 2^-9 (0x3c02)
      65504, // max
      65519.99, // rounds down to max
      65520, // tie with the next binade -> Inf
      1e10,
      -1e10,
      2 ** -24, // smallest subnormal
      2 ** -25, // tie between 0 and 2^-24 -> 0
      2 ** -25 * 1.0000001, // just above -> 2^-24
      3 * 2 ** -25, // tie between 1 and 2 ulps -> 2 (even)
      2 ** -14 - 2 ** -25, // tie between max subnormal 0x3ff and min normal 0x400 -> 0x400
      1e-40, // float32 subnormal -> 0
      -0,
      -(2 ** -26),
    ]);
    expect(Array.from(toFloat16(x)).map((v) => v.toString(16))).toEqual(
      [0x3c00, 0x3c02, 0x7bff, 0x7bff, 0x7c00, 0x7c00, 0xfc00, 0x0001, 0x0000, 0x0001, 0x0002, 0x0400, 0x0000, 0x8000, 0x8000].map(
        (v) => v.toString(16),
      ),
    );
  });

  test('Inf and NaN', () => expectInfNaN(toFloat16, fromFloat16, 0x7c00, 0xfc00));

  test('random float32 values in and around the float16 range match an independent by-value rounding', () => {
    const rng = new Rng(11);
    const n = 100000;
    const x = new Float32Array(n);
    for (let i = 0; i < n; i++) {
      const e = rng.range(-30, 17); // covers underflow, subnormals, normals, overflow
      x[i] = (rng.uniform() < 0.5 ? -1 : 1) * 2 ** e;
    }
    const u = bitsOf(x);
    // also raw bit patterns whose low 13 bits sit at or next to the rounding tie
    for (let i = 0; i < 2000; i++) {
      const base = (rng.nextU32() & 0x8fffe000) | 0x38000000;
      u[i] = (base | 0x1000 | (i % 3 === 0 ? 0 : i % 3 === 1 ? 1 : 0)) >>> 0;
      if (i % 3 === 2) u[i] = (u[i] - 1) >>> 0;
    }
    const r = toFloat16(x);
    for (let i = 0; i < n; i++) {
      const want = slowToF16(x[i]);
      if (r[i] !== want) throw new Error(`f16(${x[i]}) = ${r[i].toString(16)}, want ${want.toString(16)}`);
    }
  });

  test('quantize and scalar helpers', () => {
    const x = new Float32Array([0.1, -2.5, 70000]);
    const q = quantize(x, 'float16');
    expect(q[0]).toBe(roundFloat16(0.1));
    expect(q[1]).toBe(-2.5);
    expect(q[2]).toBe(Infinity);
    expect(quantize(x, 'float32')).toEqual(x);
  });
});

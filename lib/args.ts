// Building blocks of the argument checks. A caller's value may be anything (a
// Proxy, an object with a null prototype, a getter that throws, a symbol), so
// these helpers never throw anything but the TypeError they mean, and that
// error names the argument.

const TYPED_ARRAY_NAMES = new Set([
  'Int8Array', 'Uint8Array', 'Uint8ClampedArray', 'Int16Array', 'Uint16Array', 'Int32Array', 'Uint32Array',
  'Float32Array', 'Float64Array', 'BigInt64Array', 'BigUint64Array',
]);

/** The kind of a value for messages: 'undefined', 'number', 'Float64Array', 'object with a null prototype', ... */
export function typeName(x: unknown): string {
  if (x === null) return 'null';
  if (typeof x !== 'object' && typeof x !== 'function') return typeof x;
  if (typeof x === 'function') return 'function';
  try {
    const typed = typedArrayName(x);
    if (typed !== undefined) return typed;
    if (Array.isArray(x)) return 'Array';
    const proto: unknown = Object.getPrototypeOf(x);
    if (proto === null) return 'object with a null prototype';
    const ctor = Object.getOwnPropertyDescriptor(proto, 'constructor')?.value as unknown;
    const name = typeof ctor === 'function' ? Object.getOwnPropertyDescriptor(ctor, 'name')?.value : undefined;
    if (typeof name === 'string' && TYPED_ARRAY_NAMES.has(name)) return `a ${name} look-alike (a Proxy?), not a typed array`;
    return typeof name === 'string' && name !== '' ? name : 'object';
  } catch {
    return 'object'; // a Proxy whose traps throw
  }
}

/** A value for messages: numbers and short strings as written, anything else by its kind. Never throws. */
export function show(x: unknown): string {
  if (typeof x === 'number' || typeof x === 'boolean') return String(x);
  if (typeof x === 'bigint') return `${x}n`;
  if (typeof x === 'string') return x.length <= 40 ? `'${x}'` : `'${x.slice(0, 40)}…'`;
  if (typeof x === 'symbol') return String(x);
  return typeName(x);
}

/** The message of whatever a caller's code threw. */
function reason(e: unknown): string {
  try {
    if (e instanceof Error) return e.message;
  } catch {
    // a Proxy as the thrown value
  }
  return show(e);
}

/** The TypeError of a value `name` whose getter or Proxy trap threw `e`. */
function unreadable(name: string, e: unknown): TypeError {
  return new TypeError(`${name} could not be read: ${reason(e)}`, { cause: e });
}

/** obj[key], turning an exception of a getter or Proxy into a TypeError naming `name`. */
export function readField(obj: object, key: string, name: string): unknown {
  try {
    return (obj as Record<string, unknown>)[key];
  } catch (e) {
    throw unreadable(name, e);
  }
}

/** readField(obj, key, `${prefix}.${key}`), the name built only for the error (a hot path). */
export function readMember(obj: object, key: string, prefix: string): unknown {
  try {
    return (obj as Record<string, unknown>)[key];
  } catch (e) {
    throw unreadable(`${prefix}.${key}`, e);
  }
}

/** Own enumerable string keys of `obj`, or a TypeError naming `name` when a Proxy trap throws. */
export function ownKeys(obj: object, name: string): string[] {
  try {
    return Object.keys(obj);
  } catch (e) {
    throw unreadable(name, e);
  }
}

/** `x instanceof C` that answers false instead of throwing (a Proxy's getPrototypeOf trap may throw). */
export function isInstance(x: unknown, C: abstract new (...args: never[]) => unknown): boolean {
  try {
    return x instanceof C;
  } catch {
    return false;
  }
}

/**
 * An instance of C made by its own code, not forged from C.prototype: its own
 * data property `key` (the native handle) passes `check`. False when reading
 * it throws (a revoked Proxy).
 */
export function isMadeInstance(x: unknown, C: abstract new (...args: never[]) => unknown, key: string, check: (value: unknown) => boolean): boolean {
  if (!isInstance(x, C)) return false;
  try {
    const d = Object.getOwnPropertyDescriptor(x, key);
    return d !== undefined && 'value' in d && check(d.value);
  } catch {
    return false;
  }
}

/** True when `x` is an array (Array.isArray throws on a revoked Proxy). */
export function isArray(x: unknown): x is unknown[] {
  try {
    return Array.isArray(x);
  } catch {
    return false;
  }
}

// %TypedArray%.prototype getters: they read the internal slots, so neither an
// own property shadowing `length` nor an object from another realm fools them.
const typedArrayProto = Object.getPrototypeOf(Uint8Array.prototype) as object;
const getter = (obj: object, key: PropertyKey): ((this: unknown) => unknown) =>
  Object.getOwnPropertyDescriptor(obj, key)!.get!;
const tagOf = getter(typedArrayProto, Symbol.toStringTag);
const lengthOf = getter(typedArrayProto, 'length');
const bufferOf = getter(typedArrayProto, 'buffer');
const sharedByteLength = getter(SharedArrayBuffer.prototype, 'byteLength');

/** 'Float32Array', 'Uint16Array', ... for a typed array (of any realm), else undefined. */
export function typedArrayName(x: unknown): string | undefined {
  return tagOf.call(x) as string | undefined;
}

/** The element count of a typed array, read from its internal slot. */
export function typedArrayLength(x: ArrayBufferView): number {
  return lengthOf.call(x) as number;
}

/** True when a typed array's memory is a SharedArrayBuffer (other threads may write it at any time). */
export function isShared(x: ArrayBufferView): boolean {
  try {
    sharedByteLength.call(bufferOf.call(x));
    return true;
  } catch {
    return false;
  }
}

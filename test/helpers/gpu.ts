// Whether a usable CUDA GPU is present, and describeGpu(): GPU-only suites
// that skip visibly without a GPU, or fail when PRISM_REQUIRE_GPU=1. Also
// whether the native addon loads at all (whenNative()).
import { info } from '../../lib/native';

function probe(): { available: boolean; reason: string } {
  try {
    const i = info();
    if (i.cudaUnavailableReason !== null) return { available: false, reason: i.cudaUnavailableReason };
    if (i.devices.length === 0) return { available: false, reason: 'no CUDA device found' };
    return { available: true, reason: '' };
  } catch (e) {
    return { available: false, reason: e instanceof Error ? e.message : String(e) };
  }
}

/** Why the native addon does not load, or null when it does. */
export const addonLoadError: string | null = (() => {
  try {
    info();
    return null;
  } catch (e) {
    return (e as Error).message;
  }
})();

/** `fn` (describe or test) when the native addon loads; otherwise its .skip, with one warning naming `what`. */
export function whenNative<T extends jest.Describe | jest.It>(fn: T, what: string): T {
  if (addonLoadError === null) return fn;
  console.warn(`${what} skipped: native addon not loadable: ${addonLoadError}`);
  return fn.skip as T;
}

export const gpu: { available: boolean; reason: string } = probe();

export const gpuRequired = process.env.PRISM_REQUIRE_GPU === '1';

export const describeGpu = (name: string, fn: () => void): void => {
  if (gpu.available) {
    describe(name, fn);
  } else if (gpuRequired) {
    describe(name, () => {
      test('needs a GPU (PRISM_REQUIRE_GPU=1)', () => {
        throw new Error(`PRISM_REQUIRE_GPU=1 but no usable GPU: ${gpu.reason}`);
      });
    });
  } else {
    console.warn(`[skipped: no GPU] ${name}: ${gpu.reason}`);
    describe.skip(name, fn);
  }
};

/** Usable CUDA devices (0 without a GPU). */
export const gpuCount: number = gpu.available ? info().devices.length : 0;

/**
 * A suite that needs `n` GPUs of one host: skipped with a notice when fewer
 * are present, failing instead when PRISM_REQUIRE_GPUS is set to n or more.
 */
export const describeGpus = (n: number, name: string, fn: () => void): void => {
  const required = Number(process.env.PRISM_REQUIRE_GPUS ?? 0) >= n;
  if (gpuCount >= n) {
    describe(name, fn);
  } else if (required) {
    describe(name, () => {
      test(`needs ${n} GPUs (PRISM_REQUIRE_GPUS=${process.env.PRISM_REQUIRE_GPUS})`, () => {
        throw new Error(`PRISM_REQUIRE_GPUS=${process.env.PRISM_REQUIRE_GPUS} but ${gpuCount} usable GPU(s)${gpu.available ? '' : `: ${gpu.reason}`}`);
      });
    });
  } else {
    console.warn(`[skipped: needs ${n} GPUs, found ${gpuCount}] ${name}${gpu.available ? '' : `: ${gpu.reason}`}`);
    describe.skip(name, fn);
  }
};

// Whether a usable CUDA GPU is present, and describeGpu(): GPU-only suites
// that skip visibly without a GPU, or fail when PRISM_REQUIRE_GPU=1.
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

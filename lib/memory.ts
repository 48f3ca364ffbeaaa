// Memory visibility for long-running processes: what the package holds per
// device, and handing idle cached memory back.
import { cudaDevices, native, type NativeMemoryStats } from './native';
import { deviceName, resolveDevice } from './tensor';
import type { DeviceSpec } from './types';

/** Memory the package holds on one device (process-wide, all threads). */
export interface MemoryStats extends Omit<NativeMemoryStats, 'device'> {
  /** 'cpu' or 'cuda:N' */
  device: string;
}

/** Every device the package can use: the CPU, then each usable CUDA device. */
function allDevices(): number[] {
  const cuda = cudaDevices();
  const gpus = cuda.unavailable === null ? Array.from({ length: cuda.count }, (_, i) => i) : [];
  return [-1, ...gpus];
}

function stats(device: number): MemoryStats {
  const s = native().memoryStats(device);
  return { ...s, device: deviceName(s.device) };
}

/** Memory stats of every device (CPU first), or of one. */
export function memoryStats(): MemoryStats[];
export function memoryStats(device: DeviceSpec): MemoryStats;
export function memoryStats(device?: DeviceSpec): MemoryStats | MemoryStats[] {
  if (device === undefined) return allDevices().map(stats);
  return stats(resolveDevice(device));
}

/**
 * Frees the idle buffers of the workspace cache and returns the device's
 * unused pooled memory to the driver, on one device or all. Buffers in use
 * by running ops stay. Resolves to the workspace bytes freed.
 */
export async function releaseCachedMemory(device?: DeviceSpec): Promise<number> {
  const devices = device === undefined ? allDevices() : [resolveDevice(device)];
  let freed = 0;
  for (const d of devices) freed += await native().releaseCachedMemory(d);
  return freed;
}

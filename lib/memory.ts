// Memory visibility for long-running processes: what the package holds per
// device, and handing idle cached memory back.
import { native } from './native';
import { deviceName, resolveDevice } from './tensor';
import type { DeviceSpec } from './types';

/** Memory the package holds on one device (process-wide, all threads). */
export interface MemoryStats {
  /** 'cpu' or 'cuda:N' */
  device: string;
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

/** Every device the package can use: the CPU, then each usable CUDA device. */
function allDevices(): number[] {
  const i = native().info();
  const gpus = i.cudaUnavailableReason === null ? i.devices.map((d) => d.index) : [];
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

// native.memoryStats(device) and native.releaseCachedMemory(device): what the
// package holds on a device, and handing its idle cached memory back.
#pragma once
#include <napi.h>

namespace prism::binding {

// memoryStats(device) -> { device, tensorBytes, tensorCount, workspaceBytes,
//   workspaceInUseBytes, allocations, deviceFreeBytes | null, deviceTotalBytes | null }
Napi::Value memory_stats(const Napi::CallbackInfo& info);
// releaseCachedMemory(device) -> Promise<number> (idle workspace bytes freed)
Napi::Value release_cached_memory(const Napi::CallbackInfo& info);

}  // namespace prism::binding

// native.testing: helpers for the package's own tests, not part of the API.
#pragma once
#include <napi.h>

namespace prism::binding {

// { createStream(device): bigint, destroyStream(stream: bigint): void,
//   copyAfterDelay(dst, src, stream: bigint | undefined, delayMs): Promise<void>,
//   driverReason(driverVersion, requiredVersion): string,
//   planLanes(lengths: [nq, nk][], heads, kvTokenBytes, maxLanes): { lanes, lane: number[] }, ... }
Napi::Object testing_exports(Napi::Env env);

}  // namespace prism::binding

// Host <-> tensor copies, run off the event loop: upload from a typed array
// and download into a fresh ArrayBuffer.
#pragma once
#include <napi.h>

#include <memory>

#include "binding/storage.h"

namespace prism::binding {

// Blocking copies of `bytes` at byte `offset` of the storage, for worker
// threads (and the synchronous constructor). The caller checks the range.
void copy_host_to_storage(const Storage& dst, size_t offset, const void* src, size_t bytes);
void copy_storage_to_host(void* dst, const Storage& src, size_t offset, size_t bytes);

// Promise<undefined>: `source` into `dst` from byte `offset`; `source` must
// stay unmodified until it settles.
Napi::Promise start_upload(Napi::Env env, std::shared_ptr<Storage> dst, size_t offset,
                           Napi::TypedArray source);
// Promise<ArrayBuffer> holding a copy of `bytes` bytes from byte `offset`.
Napi::Promise start_download(Napi::Env env, std::shared_ptr<Storage> src, size_t offset,
                             size_t bytes);

// copy(dst, src, stream?) -> Promise<number[]>: src's bytes into dst (same
// device, dtype, shape and layout), run like an op (streams.h).
Napi::Value copy_tensor(const Napi::CallbackInfo& info);

}  // namespace prism::binding

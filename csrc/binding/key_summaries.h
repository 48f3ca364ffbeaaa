// Key summaries (prism_types.h KeySummaries): the pooled key blocks of full
// blocks, computed once by summarizeKeys and read by later estimations
// instead of pooling those blocks again. lib/key-summaries.ts owns the
// objects and checks every argument; here the tensors are checked again for
// memory safety only.
#pragma once
#include <napi.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "binding/storage.h"
#include "common/prism_types.h"

namespace prism::binding {

// float32 words of one summary row and of one block's energies on `device`
// (-1 = cpu): the backend's format (KeySummaries).
int64_t summary_row_floats(int device, int64_t head_dim, const EstimateParams& p);
int64_t summary_energy_floats(int device);

// { rows: Tensor, energies: Tensor | null, blocks, append?: boolean } for keys
// k (a view of [batch, Hkv, Nk, d]) on `device`, or undefined / null: no
// summaries (blocks 0). With append the estimation writes the full blocks it
// pools back into the summaries (KeySummaries::append). RangeError when the
// tensors do not fit k, p and the device (with append: without rows for k's
// full blocks) or blocks exceeds k's full blocks. Appends the storages to keep
// alive.
KeySummaries read_key_summaries(Napi::Env env, Napi::Value v, const QkvView& k,
                                const EstimateParams& p, int device,
                                std::vector<std::shared_ptr<Storage>>& keep,
                                const std::string& what);

// keySummaryLayout(device, headDim, estimateParams) -> { rowFloats, energyFloats }
Napi::Value key_summary_layout(const Napi::CallbackInfo& info);

// summarizeKeys(k, params, jobs: ({ rows, energies, from, to } | null)[], spec | null, stream?)
//   -> Promise<number>   (device ms: CUDA events, or the CPU's steady clock)
// Pools key blocks [from, to) into each job's summaries. Without spec: k is
// [batch, Hkv, Nk, d] and jobs has one entry (summaries of k's batch). With
// spec (read_varlen_spec, no queries): one job per sequence of packed or
// paged keys, summaries of batch 1; paged keys are gathered from the pages
// that hold blocks [from, to) only.
Napi::Value summarize_keys(const Napi::CallbackInfo& info);

}  // namespace prism::binding

#include "binding/args.h"
#include "binding/block_list.h"
#include "binding/errors.h"
#include "binding/op_runner.h"
#include "binding/ops.h"
#include "binding/views.h"
#include "cpu/cpu_backend.h"
#if PRISM_WITH_CUDA
#include "cuda/cuda_backend.h"
#endif

namespace prism::binding {

TensorWrap* read_lse_out(Napi::Env env, Napi::Value params, const QkvView& q) {
  if (!params.IsObject()) return nullptr;
  Napi::Value v = params.As<Napi::Object>().Get("lse");
  if (v.IsUndefined() || v.IsNull()) return nullptr;
  TensorWrap& t = TensorWrap::unwrap(env, v, "lse");
  check_plain(t, DType::F32, {q.batch, q.heads, q.n, 1}, "lse");
  return &t;
}

Napi::Value attention(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return js_guard(env, [&]() -> Napi::Value {
    const AttentionArgs in = read_attention_args(info);
    const QkvView q = in.q, k = in.k, v = in.v;
    OutView o = in.o;
    AttentionParams p = read_attention_params(arg(info, 5));
    BlockListArgs list = read_block_list(env, arg(info, 4), q, k, p.block);
    TensorWrap* lse = read_lse_out(env, arg(info, 5), q);

    OpCall call;
    call.name = "attention";
    call.device = common_device({&in.qt, &in.kt, &in.vt, &in.ot, lse});
    for (const TensorWrap* t : list.tensors) common_device({&in.qt, t});
    call.timing = read_timing(arg(info, 6));
    call.stream = read_stream(arg(info, 7), call.device);
    call.keep_alive = in.storages();
    if (lse != nullptr) {
      call.keep_alive.push_back(lse->storage());
      o.lse = static_cast<float*>(lse->storage()->data());
    }
    for (auto& s : list.storages) call.keep_alive.push_back(s);
    BlockList l = list.list;
    call.cpu = [q, k, v, o, l, p]() { prism::cpu::attention(q, k, v, o, l, p, 0); };
#if PRISM_WITH_CUDA
    if (call.device >= 0) {
      call.workspace_bytes = prism::cuda::attention_workspace_bytes(q, k, l, p);
      call.gpu = [q, k, v, o, l, p](void* ws, cudaStream_t s) {
        return prism::cuda::attention(q, k, v, o, l, p, ws, s);
      };
    }
#endif
    return start_timed_op(env, std::move(call));
  });
}

}  // namespace prism::binding

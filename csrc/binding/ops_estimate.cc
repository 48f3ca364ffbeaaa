#include "binding/args.h"
#include "binding/errors.h"
#include "binding/op_runner.h"
#include "binding/ops.h"
#include "binding/views.h"
#include "cpu/cpu_backend.h"
#if PRISM_WITH_CUDA
#include "cuda/cuda_backend.h"
#endif

namespace prism::binding {

Napi::Value estimate(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return js_guard(env, [&]() -> Napi::Value {
    TensorWrap& qt = TensorWrap::unwrap(env, arg(info, 0), "q");
    TensorWrap& kt = TensorWrap::unwrap(env, arg(info, 1), "k");
    QkvView q = input_view(qt, "q");
    QkvView k = input_view(kt, "k");
    check_query_key(q, k);
    if (q.d % 2 != 0) throw_range("head_dim must be even (RoPE pairs), got " + std::to_string(q.d));
    EstimateParams p = read_estimate_params(arg(info, 2), q.d);

    Napi::Object out = get_object(arg(info, 3), "out");
    TensorWrap& mask = TensorWrap::unwrap(env, field(out, "mask"), "out.mask");
    TensorWrap& counts = TensorWrap::unwrap(env, field(out, "counts"), "out.counts");
    TensorWrap& indices = TensorWrap::unwrap(env, field(out, "indices"), "out.indices");
    TensorWrap& temps = TensorWrap::unwrap(env, field(out, "temps"), "out.temps");
    int64_t nq = num_blocks(q.n, p.block), nk = num_blocks(k.n, p.block);
    check_plain(mask, DType::U8, {q.batch, q.heads, nq, nk}, "out.mask");
    check_plain(counts, DType::I32, {q.batch, q.heads, nq}, "out.counts");
    check_plain(indices, DType::I32, {q.batch, q.heads, nq, nk}, "out.indices");
    check_plain(temps, DType::F32, {q.batch, q.heads, 2}, "out.temps");

    OpCall call;
    call.name = "estimate";
    call.device = common_device({&qt, &kt, &mask, &counts, &indices, &temps});
    call.timing = read_timing(arg(info, 4));
    call.stream = read_stream(arg(info, 5), call.device);
    call.keep_alive = {qt.storage(), kt.storage(), mask.storage(), counts.storage(),
                       indices.storage(), temps.storage()};
    BlockMaskOut o;
    o.mask = static_cast<uint8_t*>(call.keep_alive[2]->data());
    o.counts = static_cast<int32_t*>(call.keep_alive[3]->data());
    o.indices = static_cast<int32_t*>(call.keep_alive[4]->data());
    o.temps = static_cast<float*>(call.keep_alive[5]->data());
    call.cpu = [q, k, p, o]() { prism::cpu::estimate(q, k, p, o, 0); };
#if PRISM_WITH_CUDA
    if (call.device >= 0) {
      call.workspace_bytes = prism::cuda::estimate_workspace_bytes(q, k, p);
      call.gpu = [q, k, p, o](void* ws, cudaStream_t s) { return prism::cuda::estimate(q, k, p, o, ws, s); };
    }
#endif
    return start_timed_op(env, std::move(call));
  });
}

}  // namespace prism::binding

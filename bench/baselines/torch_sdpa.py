#!/usr/bin/env python3
"""Dense causal attention through PyTorch's SDPA backends, timed like prism-bench.

The baseline of the dense comparison in docs/benchmarks.md: run it on the same
card as `prism-bench --methods dense` (alternating the two) so that both see the
same clocks and power cap. Shape as prism-bench's defaults (batch 1, 32 query /
8 kv heads, head_dim 128, bf16); K and V are expanded to the query heads, as
SDPA's cuDNN backend needs. Times: CUDA events around each call, the median of
--iters after --warmup untimed calls. TFLOP/s counts causal work,
4 * N^2 * d * heads / 2. Prints one JSON line per (backend, N).

    python3 bench/baselines/torch_sdpa.py --seq 32k,128k --backends cudnn,flash
"""
import argparse
import json
import statistics

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

BACKENDS = {
    "cudnn": SDPBackend.CUDNN_ATTENTION,
    "flash": SDPBackend.FLASH_ATTENTION,
    "efficient": SDPBackend.EFFICIENT_ATTENTION,
}
DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def length(text):
    text = text.strip().lower()
    return int(text[:-1]) * 1024 if text.endswith("k") else int(text)


def time_backend(backend, n, args):
    gen = torch.Generator(device="cuda").manual_seed(args.seed)
    dtype = DTYPES[args.dtype]
    shape_q = (args.batch, args.heads, n, args.head_dim)
    shape_kv = (args.batch, args.kv_heads, n, args.head_dim)
    q = torch.randn(shape_q, device="cuda", dtype=dtype, generator=gen)
    k = torch.randn(shape_kv, device="cuda", dtype=dtype, generator=gen)
    v = torch.randn(shape_kv, device="cuda", dtype=dtype, generator=gen)
    group = args.heads // args.kv_heads
    k = k.repeat_interleave(group, dim=1)
    v = v.repeat_interleave(group, dim=1)
    times = []
    with sdpa_kernel([BACKENDS[backend]]):
        for i in range(args.warmup + args.iters):
            start = torch.cuda.Event(enable_timing=True)
            end = torch.cuda.Event(enable_timing=True)
            start.record()
            out = F.scaled_dot_product_attention(q, k, v, is_causal=True)
            end.record()
            end.synchronize()
            if i >= args.warmup:
                times.append(start.elapsed_time(end))
            del out
    flops = 4 * n * n * args.head_dim * args.heads * args.batch / 2
    ms = statistics.median(times)
    return {
        "backend": backend,
        "seq": n,
        "ms": ms,
        "timesMs": times,
        "tflops": flops / (ms * 1e-3) / 1e12,
        "device": torch.cuda.get_device_name(),
        "torch": torch.__version__,
        "cudnn": torch.backends.cudnn.version(),
    }


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seq", default="32k,128k", help="sequence lengths, e.g. 32k,128k")
    p.add_argument("--backends", default="cudnn,flash", help=",".join(BACKENDS))
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--heads", type=int, default=32)
    p.add_argument("--kv-heads", type=int, default=8)
    p.add_argument("--head-dim", type=int, default=128)
    p.add_argument("--dtype", choices=sorted(DTYPES), default="bf16")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--iters", type=int, default=5)
    p.add_argument("--seed", type=int, default=1)
    args = p.parse_args()
    if args.heads % args.kv_heads:
        p.error("--kv-heads must divide --heads")
    for backend in args.backends.split(","):
        if backend not in BACKENDS:
            p.error(f"unknown backend {backend!r}: one of {', '.join(BACKENDS)}")
        for n in (length(s) for s in args.seq.split(",")):
            print(json.dumps(time_backend(backend, n, args)), flush=True)
            torch.cuda.empty_cache()


if __name__ == "__main__":
    main()

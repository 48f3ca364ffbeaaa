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
import re
import statistics
import sys

# SDPBackend member of each backend name; PyTorch is imported only after the
# arguments are checked, so that they are checked without it.
BACKENDS = {
    "cudnn": "CUDNN_ATTENTION",
    "flash": "FLASH_ATTENTION",
    "efficient": "EFFICIENT_ATTENTION",
}
DTYPES = ("bf16", "fp16")


def length(text):
    """A sequence length: a positive integer, or one with a k suffix (x 1024)."""
    m = re.fullmatch(r"\s*([1-9][0-9]*)(k?)\s*", text.lower())
    if not m:
        raise argparse.ArgumentTypeError(f"not a sequence length: {text!r} (e.g. 32k or 4096)")
    return int(m.group(1)) * (1024 if m.group(2) else 1)


def lengths(text):
    return [length(s) for s in text.split(",")]


def backends(text):
    names = text.split(",")
    for name in names:
        if name not in BACKENDS:
            raise argparse.ArgumentTypeError(f"unknown backend {name!r}: one of {', '.join(BACKENDS)}")
    return names


def integer_at_least(minimum, expected):
    """An argparse type: an integer >= minimum; `expected` names it in the error."""

    def parse(text):
        try:
            v = int(text)
        except ValueError:
            v = minimum - 1
        if v < minimum:
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}")
        return v

    return parse


positive = integer_at_least(1, "a positive integer")
non_negative = integer_at_least(0, "an integer >= 0")


def time_backend(torch, backend, n, args):
    import torch.nn.functional as F
    from torch.nn.attention import SDPBackend, sdpa_kernel

    gen = torch.Generator(device="cuda").manual_seed(args.seed)
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}[args.dtype]
    shape_q = (args.batch, args.heads, n, args.head_dim)
    shape_kv = (args.batch, args.kv_heads, n, args.head_dim)
    q = torch.randn(shape_q, device="cuda", dtype=dtype, generator=gen)
    k = torch.randn(shape_kv, device="cuda", dtype=dtype, generator=gen)
    v = torch.randn(shape_kv, device="cuda", dtype=dtype, generator=gen)
    group = args.heads // args.kv_heads
    k = k.repeat_interleave(group, dim=1)
    v = v.repeat_interleave(group, dim=1)
    times = []
    with sdpa_kernel([getattr(SDPBackend, BACKENDS[backend])]):
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


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seq", type=lengths, default=lengths("32k,128k"), help="sequence lengths, e.g. 32k,128k")
    p.add_argument("--backends", type=backends, default=["cudnn", "flash"], help=",".join(BACKENDS))
    p.add_argument("--batch", type=positive, default=1)
    p.add_argument("--heads", type=positive, default=32)
    p.add_argument("--kv-heads", type=positive, default=8)
    p.add_argument("--head-dim", type=positive, default=128)
    p.add_argument("--dtype", choices=DTYPES, default="bf16")
    p.add_argument("--warmup", type=non_negative, default=2)
    p.add_argument("--iters", type=positive, default=5)
    p.add_argument("--seed", type=non_negative, default=1)
    args = p.parse_args(argv)
    if args.heads % args.kv_heads:
        p.error("--kv-heads must divide --heads")
    try:
        import torch
    except ImportError:
        sys.exit("torch_sdpa.py needs PyTorch (with CUDA): pip install torch")
    if not torch.cuda.is_available():
        sys.exit("torch_sdpa.py needs a CUDA GPU that PyTorch can use")
    for backend in args.backends:
        for n in args.seq:
            print(json.dumps(time_backend(torch, backend, n, args)), flush=True)
            torch.cuda.empty_cache()


if __name__ == "__main__":
    main()

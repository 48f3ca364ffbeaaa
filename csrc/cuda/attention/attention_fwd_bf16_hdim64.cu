// Explicit instantiation: bf16, head_dim 64, every sm80-mma variant.
#include "cuda/attention/attention_fwd_launch.cuh"

PRISM_ATTN_INSTANTIATE(__nv_bfloat16, 64)

// Explicit instantiation: sm_90a forward kernel, bf16, head_dim 128, segment-major items.
#include "cuda/attention/sm90/attention_sm90_launch.cuh"

PRISM_ATTN_SM90_INSTANTIATE(__nv_bfloat16, 128, SegmentTileScheduler)

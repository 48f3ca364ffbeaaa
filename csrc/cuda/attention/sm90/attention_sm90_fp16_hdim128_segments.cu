// Explicit instantiation: sm_90a forward kernel, fp16, head_dim 128, segment-major items.
#include "cuda/attention/sm90/attention_sm90_launch.cuh"

PRISM_ATTN_SM90_INSTANTIATE(__half, 128, SegmentTileScheduler)

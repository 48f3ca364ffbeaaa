// Public entry of prism-attention (CommonJS; dist/lib/index.mjs re-exports it for ESM).
export type * from './types';
export { info, packageRoot } from './native';
export type { DeviceInfo, Info } from './native';
export { resolveEstimateOptions, resolveAttentionOptions } from './options';
export { Tensor, tensor, empty, fromDevicePointer, resolveDevice } from './tensor';
export { memoryStats, releaseCachedMemory } from './memory';
export { setWaitPolicy, getWaitPolicy } from './wait-policy';
export type { WaitPolicy } from './wait-policy';
export type { MemoryStats } from './memory';
export type { Shape4, TensorData, TensorOptions } from './tensor';
export {
  BlockMask,
  estimate,
  attention,
  prefill,
  massRecall,
  relativeError,
  timeEstimate,
  timeAttention,
} from './ops';
export type {
  AttentionRunOptions,
  EstimateRunOptions,
  PrefillOptions,
  PrefillResult,
  PrefillRunOptions,
  PrefillStats,
  RunOptions,
  Timing,
} from './ops';
export { estimateVarlen, attentionVarlen, prefillVarlen, resolveBatch, PAGE_SIZES } from './varlen';
export type {
  IntList,
  KeyBatch,
  KvLayout,
  PagedBatch,
  RaggedBatch,
  SequenceMasks,
  SequenceTable,
  VarlenAttentionRunOptions,
  VarlenBatch,
  VarlenEstimateRunOptions,
  VarlenPrefillResult,
  VarlenPrefillRunOptions,
} from './varlen';
export { KeySummaries, summarizeKeys, summarizeKeysVarlen } from './key-summaries';
export type { KeySummariesShape, SummarizeKeysRunOptions, VarlenSummarizeKeysRunOptions } from './key-summaries';
export { blockMask } from './block-mask';
export type { BlockLists, BlockMaskOptions, BlockMaskShape } from './block-mask';
export { toBFloat16, fromBFloat16, toFloat16, fromFloat16 } from './dtype';
export * as dtype from './dtype';
export { validate } from './validate';
export type { ValidationReport, CaseReport, ValidationCase } from './validate';
export * from './sharded';

// Key summaries on the CPU backend: estimations that read the summaries of
// full key blocks select exactly what they select without them (contiguous,
// packed and paged keys, shifted query grids, chunked appends), and every
// misuse fails in TypeScript before any native work.
import { keySummaryCases, type SummaryConfig } from './helpers/key-summaries';

const configs: Array<[string, SummaryConfig]> = [
  ['bfloat16, d 32, block 16, bhnd', { dtype: 'bfloat16', d: 32, block: 16, layout: 'bhnd', opts: {}, seed: 1 }],
  ['float16, d 16, block 32, bnhd, interleaved', { dtype: 'float16', d: 16, block: 32, layout: 'bnhd', opts: { ropeLayout: 'interleaved', highDims: 8, lowDims: 10 }, seed: 2 }],
  ['float32, d 64, block 16, bnhd, meanpool', { dtype: 'float32', d: 64, block: 16, layout: 'bnhd', opts: { method: 'meanpool' }, seed: 3 }],
  ['bfloat16, d 16, block 48, bhnd, fixed temperatures, top-k', { dtype: 'bfloat16', d: 16, block: 48, layout: 'bhnd', opts: { calibrate: false, selection: 'topk', topkHigh: 2, topkLow: 1 }, seed: 4 }],
];

describe('key summaries (CPU)', () => {
  keySummaryCases('cpu', configs, true, [16, 32, 64, 128, 256]);
});

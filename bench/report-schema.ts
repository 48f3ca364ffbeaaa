// The validator of prism-bench's JSON document (bench/report.ts has its types):
// every field's type, the per-method and per-device invariants.

import type { BenchReport, MethodResult, RecallStats, ShardedLengthResult } from './report';
import { JSON_SCHEMA_ID } from './report';


type Check = (v: unknown) => boolean;
const isNum: Check = (v) => typeof v === 'number' && Number.isFinite(v);
const isNumOrNull: Check = (v) => v === null || isNum(v);
const isStr: Check = (v) => typeof v === 'string';
const isInt: Check = (v) => Number.isSafeInteger(v);
const isBool: Check = (v) => typeof v === 'boolean';

function expectFields(obj: unknown, where: string, fields: Record<string, Check>, errors: string[]): obj is Record<string, unknown> {
  if (typeof obj !== 'object' || obj === null || Array.isArray(obj)) {
    errors.push(`${where}: expected an object`);
    return false;
  }
  const o = obj as Record<string, unknown>;
  for (const [k, check] of Object.entries(fields)) {
    if (!(k in o)) errors.push(`${where}.${k}: missing`);
    else if (!check(o[k])) errors.push(`${where}.${k}: bad value ${JSON.stringify(o[k])}`);
  }
  return true;
}

/**
 * Checks a parsed prism-bench JSON document against the schema above.
 * Returns the list of problems (empty when valid).
 */
export function validateReport(doc: unknown): string[] {
  const errors: string[] = [];
  if (
    !expectFields(doc, '$', {
      schema: (v) => v === JSON_SCHEMA_ID,
      tool: (v) => v === 'prism-bench',
      version: isStr,
      timestamp: (v) => isStr(v) && !Number.isNaN(Date.parse(v as string)),
      argv: (v) => Array.isArray(v) && v.every(isStr),
      config: (v) => typeof v === 'object' && v !== null,
      estimateOptions: (v) => v === null || typeof v === 'object',
      device: (v) => typeof v === 'object' && v !== null,
      workload: (v) => typeof v === 'object' && v !== null,
      timing: (v) => typeof v === 'object' && v !== null,
      flops: isStr,
      notes: (v) => Array.isArray(v) && v.every(isStr),
      results: Array.isArray,
    }, errors)
  ) {
    return errors;
  }
  const d = doc as unknown as BenchReport;
  expectFields(d.config, '$.config', {
    backend: (v) => v === 'cuda' || v === 'cpu',
    workload: (v) => v === 'random' || v === 'structured' || v === 'file',
    seq: (v) => Array.isArray(v) && v.every(isInt),
    batch: isInt, heads: isInt, kvHeads: isInt, headDim: isInt,
    dtype: (v) => v === 'bf16' || v === 'fp16' || v === 'f32',
    methods: (v) => Array.isArray(v) && v.length > 0,
    estimate: (v) => typeof v === 'object' && v !== null,
    warmup: isInt, iters: isInt, recallRows: isInt, seed: isInt,
  }, errors);
  // Fields added with the sharded run and the sweep (absent in older documents).
  const optional: Record<string, Check> = {
    device: (v) => v === null || isInt(v),
    devices: (v) => v === null || (Array.isArray(v) && v.length > 0 && v.every(isStr)),
    tauSweep: (v) => v === null || (Array.isArray(v) && v.length > 0 && v.every((t) => isNum(t) && (t as number) > 0 && (t as number) <= 1)),
    genThreads: (v) => v === null || isInt(v),
  };
  for (const [k, check] of Object.entries(optional)) {
    const v = (d.config as unknown as Record<string, unknown>)[k];
    if (v !== undefined && !check(v)) errors.push(`$.config.${k}: bad value ${JSON.stringify(v)}`);
  }
  const shardDevices = (d.device as unknown as Record<string, unknown>)?.shardDevices;
  if (shardDevices !== undefined && !(Array.isArray(shardDevices) && shardDevices.every((x) => typeof x === 'object' && x !== null && isStr((x as { device: unknown }).device) && isStr((x as { name: unknown }).name)))) {
    errors.push(`$.device.shardDevices: bad value ${JSON.stringify(shardDevices)}`);
  }
  expectFields(d.device, '$.device', {
    backend: (v) => v === 'cuda' || v === 'cpu',
    name: isStr, attentionPath: isStr, cpuThreads: isInt,
    node: isStr, platform: isStr, arch: isStr, loadAverage: isNum,
  }, errors);
  expectFields(d.workload, '$.workload', { kind: isStr, seed: isInt, dtype: isStr, layout: isStr }, errors);
  expectFields(d.timing, '$.timing', { warmup: isInt, iters: isInt, statistic: (v) => v === 'median', clock: isStr }, errors);
  d.results.forEach((r, i) => {
    const w = `$.results[${i}]`;
    if (!expectFields(r, w, {
      seq: isInt, nq: isInt, nk: isInt, batch: isInt, hq: isInt, hkv: isInt, d: isInt, block: isInt,
      nqBlocks: isInt, nkBlocks: isInt, visibleBlocks: isInt, denseFlops: isNum, methods: Array.isArray,
    }, errors)) return;
    r.methods.forEach((m, j) => checkMethod(m, `${w}.methods[${j}]`, errors));
    if (r.tauSweep !== undefined) {
      if (!Array.isArray(r.tauSweep)) errors.push(`${w}.tauSweep: expected an array`);
      else {
        r.tauSweep.forEach((m, j) => {
          const wm = `${w}.tauSweep[${j}]`;
          if (!checkMethod(m, wm, errors)) return;
          if (!(isNum(m.tau) && m.tau > 0 && m.tau <= 1)) errors.push(`${wm}.tau: bad value ${JSON.stringify(m.tau)}`);
          if (m.method === 'dense') errors.push(`${wm}.method: the sweep holds sparse methods`);
        });
      }
    }
    if (r.sharded !== undefined) checkSharded(r.sharded, `${w}.sharded`, errors);
    if (r.inputs !== undefined) {
      expectFields(r.inputs, `${w}.inputs`, { mode: (v) => v === 'parts' || v === 'whole', threads: isInt, ms: isNum }, errors);
    }
  });
  void isBool;
  return errors;
}

const isRange: Check = (v) => Array.isArray(v) && v.length === 2 && v.every(isInt) && (v[0] as number) < (v[1] as number);

/** Checks one method's figures; false when it is not an object of the right fields. */
function checkMethod(m: MethodResult, wm: string, errors: string[]): boolean {
  if (!expectFields(m, wm, {
    method: (v) => v === 'dense' || v === 'prism' || v === 'meanpool',
    estimationMs: isNumOrNull, attentionMs: isNum, totalMs: isNum,
    estimationTimesMs: (v) => Array.isArray(v) && v.every(isNum),
    attentionTimesMs: (v) => Array.isArray(v) && v.length > 0 && v.every(isNum),
    density: (v) => isNum(v) && (v as number) >= 0 && (v as number) <= 1,
    pairDensity: (v) => isNum(v) && (v as number) >= 0 && (v as number) <= 1,
    tflopsEffective: isNum, tflopsComputed: isNum,
    speedup: isNumOrNull,
    recall: (v) => v === null || (typeof v === 'object' && isInt((v as RecallStats).rows)),
    relError: isNumOrNull,
    prefillApiMs: isNumOrNull,
    prefillGpuMs: isNumOrNull,
    prefillOverheadMs: isNumOrNull,
    temperatures: (v) => v === null || (typeof v === 'object' && isNum((v as { high: number }).high) && isNum((v as { low: number }).low)),
  }, errors)) return false;
  if (m.recall && m.recall.rows > 0) {
    for (const k of ['mean', 'min', 'p10'] as const) {
      const x = m.recall[k];
      if (!(isNum(x) && x >= -1e-6 && x <= 1 + 1e-6)) errors.push(`${wm}.recall.${k}: bad value ${JSON.stringify(x)}`);
    }
  }
  if (m.method === 'dense' && m.estimationMs !== null) errors.push(`${wm}.estimationMs: dense has no estimation`);
  if (m.method !== 'dense' && m.estimationMs === null) errors.push(`${wm}.estimationMs: missing for ${m.method}`);
  return true;
}

function checkSharded(sh: ShardedLengthResult, w: string, errors: string[]): void {
  if (!expectFields(sh, w, {
    devices: (v) => Array.isArray(v) && v.length > 0 && v.every(isStr),
    kvHeads: (v) => Array.isArray(v) && v.every(isRange),
    queryHeads: (v) => Array.isArray(v) && v.every(isRange),
    methods: Array.isArray,
  }, errors)) return;
  if (sh.kvHeads.length !== sh.devices.length || sh.queryHeads.length !== sh.devices.length) {
    errors.push(`${w}: one kv and one query head range per device`);
  }
  sh.methods.forEach((m, j) => {
    const wm = `${w}.methods[${j}]`;
    if (!expectFields(m, wm, {
      method: (v) => v === 'prism' || v === 'meanpool',
      wallMs: isNum,
      wallTimesMs: (v) => Array.isArray(v) && v.length > 0 && v.every(isNum),
      deviceMs: (v) => Array.isArray(v) && v.every(isNum),
      maxDeviceMs: isNum,
      density: (v) => isNum(v) && (v as number) >= 0 && (v as number) <= 1,
      singleApiMs: isNumOrNull, singleGpuMs: isNumOrNull, speedup: isNumOrNull, gpuSpeedup: isNumOrNull,
      identical: (v) => v === null || isBool(v),
    }, errors)) return;
    if (m.deviceMs.length !== sh.devices.length) errors.push(`${wm}.deviceMs: one figure per device`);
  });
}

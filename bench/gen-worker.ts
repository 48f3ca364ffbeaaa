// Worker thread of the benchmark's workload generation: makes kv-head groups
// of the structured workload (bench/inputs.ts sends { batch, kvHead } jobs)
// and transfers each group's arrays back. The generator's RoPE tables are
// built once per worker.
import { parentPort, workerData } from 'worker_threads';
import { StructuredGenerator, type StructuredWorkloadOptions } from '../lib/workloads/structured';

if (parentPort) {
  const port = parentPort;
  const gen = new StructuredGenerator(workerData as StructuredWorkloadOptions);
  port.on('message', (job: { batch: number; kvHead: number }) => {
    const part = gen.kvGroup(job.batch, job.kvHead);
    port.postMessage(part, [part.q.buffer as ArrayBuffer, part.k.buffer as ArrayBuffer, part.v.buffer as ArrayBuffer]);
  });
}

// The SVG charts of a benchmark run (bench/report.ts has its types): speedup,
// density and recall vs sequence length, or the Pareto picture of a tau sweep.

import type { BenchMethod } from './args';
import { formatSize } from './args';
import type { BenchReport } from './report';
import { PALETTE, Svg, lineChart, niceTicks } from './svg';


const METHOD_COLORS: Record<BenchMethod, string> = { dense: '#555555', prism: PALETTE[0], meanpool: PALETTE[1] };

/**
 * Speedup over dense (left) and density + recall (right) vs sequence length,
 * and with --devices the sharded prefill's speedup over one device (third
 * panel). With --tau-sweep: the Pareto picture instead (renderPareto).
 */
export function renderChart(report: Pick<BenchReport, 'results' | 'device' | 'config'>): string {
  if (report.results.some((r) => (r.tauSweep?.length ?? 0) > 0)) return renderPareto(report);
  // Lines run from the shortest length to the longest, whatever order --seq gave.
  const results = [...report.results].sort((a, b) => a.seq - b.seq);
  const lengths = results.map((r) => r.seq);
  const methods = [...new Set(results.flatMap((r) => r.methods.map((m) => m.method)))].filter((m) => m !== 'dense');
  const sharded = results.filter((r) => r.sharded && r.sharded.methods.length > 0);
  const PW = 490;
  const W = PW * (sharded.length > 0 ? 3 : 2);
  const H = 400;
  const svg = new Svg(W, H, 'prism-bench: speedup and density vs sequence length');
  const xTicks = [...new Set(lengths)].sort((a, b) => a - b).map((n) => ({ value: n, label: formatSize(n) }));

  const speedSeries = methods.map((m) => ({
    name: m,
    color: METHOD_COLORS[m],
    points: results.flatMap((r) => {
      const x = r.methods.find((mm) => mm.method === m);
      return x && x.speedup !== null ? [[r.seq, x.speedup] as [number, number]] : [];
    }),
  }));
  const maxSpeed = Math.max(1.2, ...speedSeries.flatMap((s) => s.points.map((p) => p[1]))) * 1.1;
  const yTicks = niceTicks(0, maxSpeed, 5).map((v) => ({ value: v, label: `${v}x` }));
  lineChart(svg, {
    x: 0, y: 24, width: PW, height: H - 44,
    title: 'Speedup over dense (total time)',
    xLabel: 'sequence length', yLabel: 'speedup',
    xLog2: true, xTicks,
    yMin: 0, yMax: yTicks[yTicks.length - 1]?.value ?? maxSpeed, yTicks,
    hlines: [{ value: 1, label: 'dense' }],
    series: speedSeries, legend: 'bottom-right',
  });

  const densSeries = methods.flatMap((m, i) => [
    {
      name: `${m} density`,
      color: METHOD_COLORS[m] ?? PALETTE[i],
      points: results.flatMap((r) => {
        const x = r.methods.find((mm) => mm.method === m);
        return x ? [[r.seq, x.density * 100] as [number, number]] : [];
      }),
    },
    {
      name: `${m} recall`,
      color: METHOD_COLORS[m] ?? PALETTE[i],
      dash: '5 4',
      points: results.flatMap((r) => {
        const x = r.methods.find((mm) => mm.method === m);
        return x && x.recall && x.recall.rows > 0 ? [[r.seq, x.recall.mean * 100] as [number, number]] : [];
      }),
    },
  ]);
  const pctTicks = [0, 20, 40, 60, 80, 100].map((v) => ({ value: v, label: `${v}%` }));
  lineChart(svg, {
    x: PW, y: 24, width: PW, height: H - 44,
    title: 'Block density (solid) and attention-mass recall (dashed)',
    xLabel: 'sequence length', yLabel: 'percent',
    xLog2: true, xTicks,
    yMin: 0, yMax: 105, yTicks: pctTicks,
    series: densSeries.filter((s) => s.points.length > 0), legend: 'bottom-left',
  });

  if (sharded.length > 0) {
    const devices = sharded[0].sharded!.devices;
    const shardMethods = [...new Set(sharded.flatMap((r) => r.sharded!.methods.map((m) => m.method)))];
    const series = shardMethods.flatMap((m) => [
      {
        name: `${m} (wall)`,
        color: METHOD_COLORS[m],
        points: sharded.flatMap((r) => {
          const x = r.sharded!.methods.find((mm) => mm.method === m);
          return x && x.speedup !== null ? [[r.seq, x.speedup] as [number, number]] : [];
        }),
      },
      {
        name: `${m} (GPU time)`,
        color: METHOD_COLORS[m],
        dash: '5 4',
        points: sharded.flatMap((r) => {
          const x = r.sharded!.methods.find((mm) => mm.method === m);
          return x && x.gpuSpeedup !== null ? [[r.seq, x.gpuSpeedup] as [number, number]] : [];
        }),
      },
    ]);
    const maxS = Math.max(devices.length, 1.2, ...series.flatMap((x) => x.points.map((p) => p[1]))) * 1.1;
    const ticks = niceTicks(0, maxS, 5).map((v) => ({ value: v, label: `${v}x` }));
    lineChart(svg, {
      x: 2 * PW, y: 24, width: PW, height: H - 44,
      title: `Prefill over ${devices.join(' + ')}: speedup over one device`,
      xLabel: 'sequence length', yLabel: 'speedup',
      xLog2: true, xTicks: [...new Set(sharded.map((r) => r.seq))].sort((a, b) => a - b).map((n) => ({ value: n, label: formatSize(n) })),
      yMin: 0, yMax: ticks[ticks.length - 1]?.value ?? maxS, yTicks: ticks,
      hlines: [{ value: 1, label: 'one device' }, { value: devices.length, label: `ideal: ${devices.length} devices` }],
      series: series.filter((x) => x.points.length > 0), legend: 'bottom-right',
    });
  }

  svg.text(W / 2, 16, caption(report), { 'text-anchor': 'middle', 'font-size': 12, fill: '#444' });
  return svg.toString();
}

function caption(report: Pick<BenchReport, 'device' | 'config'>): string {
  const c = report.config;
  const dev = report.device;
  const where = dev.backend === 'cuda' ? `${dev.name} (attention path ${dev.attentionPath})` : `${dev.name}, ${dev.cpuThreads} CPU threads`;
  const pl = (n: number, w: string) => `${n} ${w}${n === 1 ? '' : 's'}`;
  return (
    `${where} | batch ${c.batch}, ${pl(c.heads, 'q head')}, ${pl(c.kvHeads, 'kv head')}, d ${c.headDim}, ${c.dtype}, ` +
    `${c.workload} workload`
  );
}

/**
 * The --tau-sweep picture: per length, attention-mass recall (mean over the
 * sampled rows) against speedup over dense, one polyline per method through
 * its thresholds, each point labelled with its tau.
 */
export function renderPareto(report: Pick<BenchReport, 'results' | 'device' | 'config'>): string {
  const panels = report.results.filter((r) => (r.tauSweep?.length ?? 0) > 0);
  const PW = 490;
  const PH = 400;
  const cols = Math.min(3, panels.length);
  const rows = Math.ceil(panels.length / cols);
  const W = PW * cols;
  const H = 24 + PH * rows;
  const svg = new Svg(W, H, 'prism-bench: attention-mass recall vs speedup over dense, per top-p threshold');
  panels.forEach((r, idx) => {
    const methods = [...new Set(r.tauSweep!.map((p) => p.method))];
    const series = methods.map((m) => {
      const pts = r.tauSweep!.filter((p) => p.method === m && p.speedup !== null && p.recall !== null && p.recall.rows > 0).sort((a, b) => a.tau - b.tau);
      return {
        name: m,
        color: METHOD_COLORS[m],
        points: pts.map((p) => [p.speedup!, p.recall!.mean] as [number, number]),
        labels: pts.map((p) => `τ ${p.tau}`),
        // prism's labels above its points, meanpool's below: points of equal tau often sit close
        labelOffset: (m === 'meanpool' ? [6, 14] : [6, -6]) as [number, number],
      };
    });
    const xs = series.flatMap((x) => x.points.map((p) => p[0]));
    const ys = series.flatMap((x) => x.points.map((p) => p[1]));
    const x0 = xs.length ? Math.min(1, ...xs) : 0;
    const x1 = xs.length ? Math.max(...xs) * 1.12 : 2;
    const y0 = ys.length ? Math.max(0, Math.min(...ys) - 0.02) : 0;
    const xTicks = niceTicks(Math.floor(x0 * 2) / 2, x1, 5).map((v) => ({ value: v, label: `${v}x` }));
    const yTicks = niceTicks(y0, 1, 5).filter((v) => v <= 1 + 1e-9).map((v) => ({ value: v, label: v.toFixed(v >= 0.99 ? 3 : 2) }));
    lineChart(svg, {
      x: (idx % cols) * PW, y: 24 + Math.floor(idx / cols) * PH, width: PW, height: PH - 20,
      title: `N=${formatSize(r.seq)}: recall vs speedup over dense`,
      xLabel: 'speedup over dense (total time)', yLabel: 'attention-mass recall (mean)',
      xTicks, xMin: xTicks[0]?.value ?? x0, xMax: xTicks[xTicks.length - 1]?.value ?? x1,
      // headroom above recall 1 for the labels of the top points
      yMin: yTicks[0]?.value ?? y0, yMax: 1 + 0.06 * (1 - (yTicks[0]?.value ?? y0)), yTicks,
      series: series.filter((x) => x.points.length > 0), legend: 'bottom-left',
    });
  });
  svg.text(W / 2, 16, caption(report), { 'text-anchor': 'middle', 'font-size': 12, fill: '#444' });
  return svg.toString();
}

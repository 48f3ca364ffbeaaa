// A small SVG writer: self-contained documents (no scripts, no external
// fonts or stylesheets) for the benchmark chart and the documentation figures.

export function escapeXml(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;').replace(/'/g, '&apos;');
}

/** Coordinates with at most two decimals, no trailing zeros. */
export function num(x: number): string {
  if (!Number.isFinite(x)) return '0';
  const r = Math.round(x * 100) / 100;
  return Object.is(r, -0) ? '0' : String(r);
}

type Attrs = Record<string, string | number | undefined>;

function attrs(a: Attrs): string {
  return Object.entries(a)
    .filter(([, v]) => v !== undefined)
    .map(([k, v]) => ` ${k}="${typeof v === 'number' ? num(v) : escapeXml(v as string)}"`)
    .join('');
}

export const FONT = 'font-family="Helvetica, Arial, sans-serif"';

/** Builds an SVG document element by element. */
export class Svg {
  private readonly parts: string[] = [];

  constructor(readonly width: number, readonly height: number, private readonly title?: string) {}

  raw(s: string): this {
    this.parts.push(s);
    return this;
  }

  rect(x: number, y: number, w: number, h: number, a: Attrs = {}): this {
    return this.raw(`<rect${attrs({ x, y, width: w, height: h, ...a })}/>`);
  }

  line(x1: number, y1: number, x2: number, y2: number, a: Attrs = {}): this {
    return this.raw(`<line${attrs({ x1, y1, x2, y2, stroke: '#000', ...a })}/>`);
  }

  polyline(points: ReadonlyArray<readonly [number, number]>, a: Attrs = {}): this {
    const pts = points.map(([x, y]) => `${num(x)},${num(y)}`).join(' ');
    return this.raw(`<polyline${attrs({ points: pts, fill: 'none', stroke: '#000', ...a })}/>`);
  }

  path(d: string, a: Attrs = {}): this {
    return this.raw(`<path${attrs({ d, ...a })}/>`);
  }

  circle(cx: number, cy: number, r: number, a: Attrs = {}): this {
    return this.raw(`<circle${attrs({ cx, cy, r, ...a })}/>`);
  }

  text(x: number, y: number, s: string, a: Attrs = {}): this {
    return this.raw(`<text${attrs({ x, y, 'font-size': 12, fill: '#222', ...a })}>${escapeXml(s)}</text>`);
  }

  open(tag: string, a: Attrs = {}): this {
    return this.raw(`<${tag}${attrs(a)}>`);
  }

  close(tag: string): this {
    return this.raw(`</${tag}>`);
  }

  toString(): string {
    const head =
      `<?xml version="1.0" encoding="UTF-8"?>\n` +
      `<svg xmlns="http://www.w3.org/2000/svg" width="${num(this.width)}" height="${num(this.height)}" ` +
      `viewBox="0 0 ${num(this.width)} ${num(this.height)}" ${FONT}>\n`;
    const title = this.title ? `<title>${escapeXml(this.title)}</title>\n` : '';
    const bg = `<rect x="0" y="0" width="${num(this.width)}" height="${num(this.height)}" fill="#ffffff"/>\n`;
    return head + title + bg + this.parts.join('\n') + '\n</svg>\n';
  }
}

export const PALETTE = ['#1f77b4', '#d62728', '#2ca02c', '#ff7f0e', '#9467bd', '#8c564b', '#17becf'];

export interface Series {
  name: string;
  color: string;
  dash?: string;
  points: Array<[number, number]>;
  /** draw a marker at each point (default true) */
  markers?: boolean;
  /** a label beside each point (same order as `points`) */
  labels?: string[];
  /** where the labels sit relative to their points, in px (default [6, -6]: above right) */
  labelOffset?: [number, number];
}

export interface Tick {
  value: number;
  label: string;
}

export interface ChartSpec {
  x: number;
  y: number;
  width: number;
  height: number;
  title: string;
  xLabel: string;
  yLabel: string;
  xLog2?: boolean;
  xTicks: Tick[];
  xMin?: number;
  xMax?: number;
  yMin: number;
  yMax: number;
  yTicks: Tick[];
  series: Series[];
  /** horizontal reference lines, e.g. speedup 1 */
  hlines?: Array<{ value: number; label?: string }>;
  /** shaded vertical spans, e.g. frequency bands */
  spans?: Array<{ from: number; to: number; color: string; label?: string; labelX?: number; labelY?: number }>;
  legend?: 'top-right' | 'top-left' | 'bottom-right' | 'bottom-left' | 'none';
}

/** Draws a line chart with axes, ticks, grid, legend into `svg`. */
export function lineChart(svg: Svg, c: ChartSpec): void {
  const padL = 56;
  const padR = 12;
  const padT = 28;
  const padB = 42;
  const px = c.x + padL;
  const py = c.y + padT;
  const pw = c.width - padL - padR;
  const ph = c.height - padT - padB;
  const fx = (v: number) => (c.xLog2 ? Math.log2(v) : v);
  const xs = c.xTicks.map((t) => fx(t.value));
  let x0 = c.xMin !== undefined ? fx(c.xMin) : Math.min(...xs);
  let x1 = c.xMax !== undefined ? fx(c.xMax) : Math.max(...xs);
  if (x1 - x0 < 1e-9) {
    x0 -= 1;
    x1 += 1;
  } else if (c.xMin === undefined && c.xMax === undefined) {
    const m = (x1 - x0) * 0.06;
    x0 -= m;
    x1 += m;
  }
  const sx = (v: number) => px + ((fx(v) - x0) / (x1 - x0)) * pw;
  const sy = (v: number) => py + ph - ((v - c.yMin) / (c.yMax - c.yMin || 1)) * ph;

  svg.text(c.x + c.width / 2, c.y + 16, c.title, { 'text-anchor': 'middle', 'font-size': 14, 'font-weight': 'bold' });
  for (const s of c.spans ?? []) {
    const a = Math.max(px, Math.min(sx(s.from), sx(s.to)));
    const b = Math.min(px + pw, Math.max(sx(s.from), sx(s.to)));
    svg.rect(a, py, b - a, ph, { fill: s.color, 'fill-opacity': 0.18 });
    const lx = s.labelX !== undefined ? sx(s.labelX) : (a + b) / 2;
    const ly = s.labelY !== undefined ? py + s.labelY * ph : py + 14;
    if (s.label) svg.text(lx, ly, s.label, { 'text-anchor': 'middle', 'font-size': 11, fill: '#333' });
  }
  // grid + y ticks
  for (const t of c.yTicks) {
    const y = sy(t.value);
    svg.line(px, y, px + pw, y, { stroke: '#e3e3e3' });
    svg.text(px - 6, y + 4, t.label, { 'text-anchor': 'end', 'font-size': 11 });
  }
  for (const t of c.xTicks) {
    const x = sx(t.value);
    svg.line(x, py, x, py + ph, { stroke: '#efefef' });
    svg.text(x, py + ph + 16, t.label, { 'text-anchor': 'middle', 'font-size': 11 });
  }
  for (const h of c.hlines ?? []) {
    const y = sy(h.value);
    svg.line(px, y, px + pw, y, { stroke: '#777', 'stroke-dasharray': '4 3' });
    if (h.label) svg.text(px + 4, y - 4, h.label, { 'font-size': 10, fill: '#555' });
  }
  svg.rect(px, py, pw, ph, { fill: 'none', stroke: '#444' });
  svg.text(px + pw / 2, c.y + c.height - 6, c.xLabel, { 'text-anchor': 'middle' });
  const ly = py + ph / 2;
  svg.text(c.x + 14, ly, c.yLabel, { 'text-anchor': 'middle', transform: `rotate(-90 ${num(c.x + 14)} ${num(ly)})` });

  for (const s of c.series) {
    const kept = s.points.map((p, i) => [p, s.labels?.[i]] as const).filter(([[x, y]]) => Number.isFinite(x) && Number.isFinite(y));
    const pts = kept.map(([[x, y]]) => [sx(x), sy(y)] as [number, number]);
    if (pts.length === 0) continue;
    if (pts.length > 1) svg.polyline(pts, { stroke: s.color, 'stroke-width': 2, 'stroke-dasharray': s.dash });
    if (s.markers !== false) for (const [x, y] of pts) svg.circle(x, y, 3.5, { fill: s.color });
    const [dx, dy] = s.labelOffset ?? [6, -6];
    kept.forEach(([, label], i) => {
      if (label) svg.text(pts[i][0] + dx, pts[i][1] + dy, label, { 'font-size': 10, fill: s.color });
    });
  }

  if (c.legend !== 'none' && c.series.length > 0) {
    const pos = c.legend ?? 'top-right';
    const lw = Math.max(...c.series.map((s) => s.name.length)) * 6.5 + 34;
    const lh = c.series.length * 16 + 8;
    const lx = pos.endsWith('right') ? px + pw - lw - 6 : px + 6;
    const lyy = pos.startsWith('top') ? py + 6 : py + ph - lh - 6;
    svg.rect(lx, lyy, lw, lh, { fill: '#fff', 'fill-opacity': 0.85, stroke: '#bbb' });
    c.series.forEach((s, i) => {
      const yy = lyy + 14 + i * 16;
      svg.line(lx + 6, yy - 4, lx + 24, yy - 4, { stroke: s.color, 'stroke-width': 2, 'stroke-dasharray': s.dash });
      svg.text(lx + 30, yy, s.name, { 'font-size': 11 });
    });
  }
}

/** "Nice" tick values covering [lo, hi]. */
export function niceTicks(lo: number, hi: number, count = 5): number[] {
  if (!(hi > lo)) return [lo];
  const raw = (hi - lo) / count;
  const mag = Math.pow(10, Math.floor(Math.log10(raw)));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * mag).find((s) => s >= raw) ?? 10 * mag;
  const out: number[] = [];
  // from the step at or below lo, so that the axis it starts covers lo
  for (let v = Math.floor(lo / step + 1e-9) * step; v <= hi + 1e-9 * step; v += step) out.push(Math.round(v / step) * step);
  // cover hi: one more tick when the last one falls short
  if (out.length === 0 || out[out.length - 1] < hi - 1e-9 * step) out.push((out.length ? out[out.length - 1] : lo) + step);
  return out.map((v) => Number(v.toPrecision(12)));
}

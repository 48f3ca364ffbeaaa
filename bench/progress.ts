// Progress display on stderr. On a terminal one status line is rewritten in
// place (\r + erase to end of line); when stderr is not a terminal, or with
// --quiet, nothing is written at all, so logs and pipes stay clean.

export interface ProgressStream {
  isTTY?: boolean;
  columns?: number;
  write(chunk: string): unknown;
}

export class Progress {
  private readonly enabled: boolean;
  private shown = false;
  private readonly start = Date.now();
  private step = 0;
  private total = 0;

  constructor(private readonly stream: ProgressStream, opts: { quiet?: boolean } = {}) {
    this.enabled = !opts.quiet && stream.isTTY === true;
  }

  get active(): boolean {
    return this.enabled;
  }

  /** Sets the number of steps the run will take (for "[3/12]"). */
  setTotal(total: number): void {
    this.total = total;
    this.step = 0;
  }

  /** Moves to the next step and shows its text. */
  next(text: string): void {
    this.step++;
    this.update(text);
  }

  /** Rewrites the status line. */
  update(text: string): void {
    if (!this.enabled) return;
    const secs = ((Date.now() - this.start) / 1000).toFixed(1);
    const count = this.total > 0 ? `[${Math.min(this.step, this.total)}/${this.total}] ` : '';
    let line = `${count}${text}  ${secs}s`;
    const width = (this.stream.columns ?? 100) - 1;
    if (width > 10 && line.length > width) line = line.slice(0, width - 1) + '…';
    this.stream.write(`\r${line}\x1b[K`);
    this.shown = true;
  }

  /** Erases the status line (before printing results, or at the end). */
  clear(): void {
    if (!this.enabled || !this.shown) return;
    this.stream.write('\r\x1b[K');
    this.shown = false;
  }
}

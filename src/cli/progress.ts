import type { JobView } from '../jobs/view.js';
import { duration, rate, size } from './output.js';

const BAR_WIDTH = 28;

/** One line: `[#######-----]  45%  1.2 GiB / 2.0 GiB  35.2 MB/s  ETA 0:23  writing`. */
export function progressLine(done: number, total: number | null, extra: string): string {
  if (!total) return `${size(done)}  ${extra}`;
  const fraction = Math.min(1, done / total);
  const filled = Math.round(fraction * BAR_WIDTH);
  const bar = `[${'#'.repeat(filled)}${'-'.repeat(BAR_WIDTH - filled)}]`;
  return `${bar} ${String(Math.floor(fraction * 100)).padStart(3)}%  ${size(done)} / ${size(total)}  ${extra}`;
}

export function jobProgressLine(job: JobView): string {
  const eta = job.eta_seconds === null ? '' : `ETA ${duration(job.eta_seconds)}`;
  const extra = [rate(job.rate_bytes_per_second), eta, job.phase ?? job.state].filter((part) => part && part !== '-').join('  ');
  return progressLine(job.bytes_done, job.bytes_total, extra);
}

/**
 * Redraws a single status line on a terminal; elsewhere (logs, CI) prints only lines that
 * changed meaningfully, so piping the output stays readable.
 */
export function createStatusLine(stream: NodeJS.WriteStream = process.stderr) {
  const tty = Boolean(stream.isTTY);
  let lastPlain = '';
  let drawn = false;
  return {
    tty,
    update(line: string, plainKey = line) {
      if (tty) {
        const width = stream.columns ? stream.columns - 1 : 100;
        stream.write(`\r\x1b[K${line.slice(0, width)}`);
        drawn = true;
      } else if (plainKey !== lastPlain) {
        stream.write(`${line}\n`);
        lastPlain = plainKey;
      }
    },
    /** A line of its own (a warning), above the status line, which the next update redraws. */
    note(line: string) {
      stream.write(`${tty && drawn ? '\r\x1b[K' : ''}${line}\n`);
      drawn = false;
    },
    done() {
      if (tty && drawn) stream.write('\n');
      drawn = false;
    },
  };
}

import { closeSync, openSync, readSync, statSync } from 'node:fs';

/**
 * Follows a growing log file (dnsmasq's log-facility file in external mode), calling onLine for
 * each new line. Starts at the end: old lines were seen by an earlier run. A truncated or
 * replaced file (logrotate) is read again from its start.
 *
 * It polls with its own timer and compares against its own offset rather than using
 * fs.watchFile: watchFile takes its first stat asynchronously, so lines written between the
 * start and that first stat were never reported as a change and were lost.
 */
export function tailFile(path: string, onLine: (line: string) => void, intervalMs = 500): () => void {
  const statOrUndefined = () => {
    try {
      return statSync(path);
    } catch {
      return undefined;
    }
  };
  const initial = statOrUndefined();
  let offset = initial?.size ?? 0;
  let inode = initial?.ino;
  let partial = '';
  const read = () => {
    const stat = statOrUndefined();
    if (!stat) return;
    if (stat.ino !== inode || stat.size < offset) {
      inode = stat.ino;
      offset = 0;
      partial = '';
    }
    if (stat.size === offset) return;
    let fd: number;
    try {
      fd = openSync(path, 'r');
    } catch {
      return; // removed between the stat and the open (a rotation): the next tick sees the new file
    }
    try {
      const buffer = Buffer.alloc(stat.size - offset);
      const got = readSync(fd, buffer, 0, buffer.length, offset);
      offset += got;
      const lines = (partial + buffer.subarray(0, got).toString('utf8')).split('\n');
      partial = lines.pop() ?? '';
      for (const line of lines) onLine(line);
    } finally {
      closeSync(fd);
    }
  };
  const timer = setInterval(read, intervalMs);
  timer.unref();
  return () => clearInterval(timer);
}

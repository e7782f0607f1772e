import { closeSync, openSync, readSync, statSync, unwatchFile, watchFile } from 'node:fs';

/**
 * Follows a growing log file (dnsmasq's log-facility file in external mode), calling onLine for
 * each new line. Starts at the end: old lines were seen by an earlier run. A truncated or
 * replaced file (logrotate) is read again from its start.
 */
export function tailFile(path: string, onLine: (line: string) => void, intervalMs = 500): () => void {
  let offset = (() => {
    try {
      return statSync(path).size;
    } catch {
      return 0;
    }
  })();
  let partial = '';
  const read = () => {
    let size: number;
    try {
      size = statSync(path).size;
    } catch {
      return;
    }
    if (size < offset) offset = 0;
    if (size === offset) return;
    const fd = openSync(path, 'r');
    try {
      const buffer = Buffer.alloc(size - offset);
      readSync(fd, buffer, 0, buffer.length, offset);
      offset = size;
      const lines = (partial + buffer.toString('utf8')).split('\n');
      partial = lines.pop() ?? '';
      for (const line of lines) onLine(line);
    } finally {
      closeSync(fd);
    }
  };
  watchFile(path, { interval: intervalMs }, read);
  return () => unwatchFile(path, read);
}

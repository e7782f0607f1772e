import { renameSync, statSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { isAbsolute, join } from 'node:path';
import { badRequest } from '../shared/errors.js';

/** Where labels go: a printer's raw port (Zebra, JetDirect style: the bytes are the job), or a folder. */
export type LabelOutput = { kind: 'printer'; host: string; port: number } | { kind: 'spool'; dir: string };

export const RAW_PRINTER_PORT = 9100;

/** `tcp://host[:port]` (port 9100 by default) or an absolute folder path that exists. */
export function parseLabelOutput(text: string): LabelOutput {
  const value = text.trim();
  if (value.startsWith('tcp://')) {
    let url: URL;
    try {
      url = new URL(value);
    } catch {
      throw badRequest(`${value} is not a printer address: expected tcp://host:9100`);
    }
    if (!url.hostname || url.pathname.replace(/^\/$/, '') || url.search || url.username) {
      throw badRequest(`${value} is not a printer address: expected tcp://host:9100`);
    }
    return { kind: 'printer', host: url.hostname.replace(/^\[|\]$/g, ''), port: url.port ? Number(url.port) : RAW_PRINTER_PORT };
  }
  if (!isAbsolute(value)) throw badRequest(`${value} is neither a printer (tcp://host:9100) nor an absolute spool folder path`);
  let isDir = false;
  try {
    isDir = statSync(value).isDirectory();
  } catch {
    throw badRequest(`the spool folder ${value} does not exist on the server`);
  }
  if (!isDir) throw badRequest(`${value} is not a folder`);
  return { kind: 'spool', dir: value };
}

/** Sends one label; resolves once the printer took every byte and closed, or the file is in place. */
export function sendLabel(output: LabelOutput, zpl: string, name: string, timeoutMs: number, signal: AbortSignal): Promise<void> {
  if (output.kind === 'spool') {
    // Written aside and renamed, so a print daemon watching the folder never reads half a label.
    const file = join(output.dir, `${name}.zpl`);
    writeFileSync(`${file}.part`, zpl);
    renameSync(`${file}.part`, file);
    return Promise.resolve();
  }
  return new Promise((resolve, reject) => {
    const socket = connect({ host: output.host, port: output.port });
    const fail = (error: Error) => {
      socket.destroy();
      reject(error);
    };
    const timer = setTimeout(() => fail(new Error(`the printer did not take the label within ${timeoutMs / 1000} s`)), timeoutMs);
    const abort = () => fail(new Error('the server is stopping'));
    signal.addEventListener('abort', abort, { once: true });
    socket.once('connect', () => socket.end(zpl));
    // A raw port has nothing to say back: the label is sent when both sides closed cleanly.
    socket.resume();
    socket.once('error', (error) => fail(new Error((error as NodeJS.ErrnoException).code ?? error.message)));
    let flushed = false;
    socket.once('finish', () => (flushed = true));
    socket.once('close', (hadError) => {
      clearTimeout(timer);
      signal.removeEventListener('abort', abort);
      if (flushed && !hadError) resolve();
      else reject(new Error('the printer closed the connection before taking the label'));
    });
  });
}

import { EventEmitter } from 'node:events';
import { close, read } from 'node:fs';
import type { ServerResponse } from 'node:http';
import { STREAM_CHUNK_BYTES } from '../shared/files.js';

/** Buffers per transfer: one is read from disk while the others are being sent. */
const BUFFERS_PER_TRANSFER = 3;
/** Idle buffers kept for the next transfer; beyond this they go to the garbage collector. */
const POOL_LIMIT = 48;
const pool: Buffer[] = [];
const takeBuffer = () => pool.pop() ?? Buffer.allocUnsafeSlow(STREAM_CHUNK_BYTES);
const returnBuffer = (buffer: Buffer) => {
  if (pool.length < POOL_LIMIT) pool.push(buffer);
};

/** A file body on its way out: `destroy()` cuts it, 'close' fires once it ended either way. */
export class FileTransfer extends EventEmitter {
  #closed = false;
  #reason: Error | undefined;

  constructor(private readonly response: ServerResponse) {
    super();
  }

  get closed() {
    return this.#closed;
  }

  destroy(reason?: Error) {
    if (this.#closed) return;
    this.#reason = reason ?? new Error('transfer cut');
    this.response.destroy(this.#reason);
  }

  /** @internal */
  end(error?: Error) {
    if (this.#closed) return;
    this.#closed = true;
    this.#reason ??= error;
    this.emit('close', this.#reason);
  }
}

/**
 * Sends bytes [start, end] of an open file (`fd`, closed when the transfer ends) as the response
 * body, headers already written.
 *
 * Node's fs.ReadStream allocates a fresh buffer for every read; at GB/s that allocation and its
 * page faults cost as much as the copy itself. Here a few pooled 1 MiB buffers rotate instead: a
 * buffer is read into again only after the socket's write callback says the kernel has its bytes.
 * Measured on loopback this doubles throughput and halves CPU per GB (bench/ serving).
 */
export function sendFileBody(response: ServerResponse, fd: number, start: number, end: number): FileTransfer {
  const transfer = new FileTransfer(response);
  const buffers: Buffer[] = [];
  let next = start; // next byte to read
  let inFlight = 0; // buffers being read or written
  let failed = false;
  let reading = false;
  let fdOpen = true;
  // Not while a read is in flight: the number could be reused by another open meanwhile.
  const closeFile = () => {
    if (!fdOpen || reading) return;
    fdOpen = false;
    close(fd, () => undefined);
  };

  const finish = (error?: Error) => {
    if (transfer.closed) return;
    for (const buffer of buffers.splice(0)) returnBuffer(buffer);
    closeFile();
    transfer.end(error);
  };
  const fail = (error: Error) => {
    failed = true;
    response.destroy(error);
    finish(error);
  };

  // One read at a time (bytes must go out in order); up to BUFFERS_PER_TRANSFER - 1 writes in
  // flight behind it.
  const pump = () => {
    if (reading || failed || response.destroyed || inFlight >= BUFFERS_PER_TRANSFER || next > end) return;
    reading = true;
    inFlight += 1;
    const buffer = buffers.pop() ?? takeBuffer();
    const at = next;
    const length = Math.min(buffer.length, end - at + 1);
    next += length;
    read(fd, buffer, 0, length, at, (error, bytesRead) => {
      reading = false;
      if (transfer.closed) closeFile();
      if (error) return fail(error);
      if (response.destroyed) {
        inFlight -= 1;
        returnBuffer(buffer);
        return;
      }
      if (bytesRead !== length) return fail(new Error('the file ended early: it changed while being sent'));
      response.write(bytesRead === buffer.length ? buffer : buffer.subarray(0, bytesRead), (writeError) => {
        inFlight -= 1;
        buffers.push(buffer); // the kernel has the bytes: safe to read into again
        if (writeError) return;
        if (next > end && inFlight === 0) response.end();
        else pump();
      });
      pump();
    });
  };

  response.once('close', () => finish(response.writableFinished ? undefined : new Error('the client went away')));
  if (response.destroyed) finish();
  else pump();
  return transfer;
}

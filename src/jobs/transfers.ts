import type { Clock } from '../shared/clock.js';

/** What a transfer can say about itself: a counter that grows while bytes move (a socket's). */
export type BytesMoved = () => number;

/** Bytes a socket has moved either way: while this grows, the transfer on it is alive. */
export function socketBytes(socket: { bytesRead: number; bytesWritten: number } | null | undefined): BytesMoved {
  let last = 0;
  // A closed socket keeps its counts; a missing one counts as not moving.
  return () => (socket ? (last = socket.bytesRead + socket.bytesWritten) : last);
}

interface Transfer {
  abort: (reason: Error) => void;
  moved?: BytesMoved;
  lastCount: number;
  lastMovedAt: number;
}

/**
 * Streams in flight for each job (image downloads, backup uploads). Ending a job aborts them,
 * so a cancelled job's URL stops moving bytes at once. A transfer keeps its job alive only while
 * its bytes move: one that has gone silent (a device that stopped sending but keeps the socket
 * open) no longer holds off the stall timeout.
 */
export function createTransferRegistry(clock: Clock) {
  const byJob = new Map<number, Set<Transfer>>();

  /** Reads each transfer's counter; a changed count is a sign of life now. */
  function refresh(transfer: Transfer, now: number) {
    const count = transfer.moved?.() ?? 0;
    if (count !== transfer.lastCount) {
      transfer.lastCount = count;
      transfer.lastMovedAt = now;
    }
  }

  return {
    /** Registers an abort callback (and a byte counter); call the returned function when the transfer ends. */
    track(jobId: number, abort: (reason: Error) => void, moved?: BytesMoved): () => void {
      let set = byJob.get(jobId);
      if (!set) byJob.set(jobId, (set = new Set()));
      const transfer: Transfer = { abort, moved, lastCount: moved?.() ?? 0, lastMovedAt: clock.now() };
      set.add(transfer);
      return () => {
        set!.delete(transfer);
        if (set!.size === 0) byJob.delete(jobId);
      };
    },
    isActive: (jobId: number) => (byJob.get(jobId)?.size ?? 0) > 0,
    /** True while some transfer of the job has moved a byte within the last `windowMs`. */
    isMoving(jobId: number, now: number, windowMs: number): boolean {
      let moving = false;
      for (const transfer of byJob.get(jobId) ?? []) {
        refresh(transfer, now);
        if (now - transfer.lastMovedAt < windowMs) moving = true;
      }
      return moving;
    },
    abortAll(jobId: number, reason: Error) {
      for (const transfer of [...(byJob.get(jobId) ?? [])]) transfer.abort(reason);
      byJob.delete(jobId);
    },
  };
}

export type TransferRegistry = ReturnType<typeof createTransferRegistry>;

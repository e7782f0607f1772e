/**
 * Streams in flight for each job (image downloads, backup uploads). Ending a job aborts them,
 * so a cancelled job's URL stops moving bytes at once, and the stall watchdog does not fail a
 * job whose bytes are still flowing.
 */
export function createTransferRegistry() {
  const byJob = new Map<number, Set<(reason: Error) => void>>();

  return {
    /** Registers an abort callback; call the returned function when the transfer ends. */
    track(jobId: number, abort: (reason: Error) => void): () => void {
      let set = byJob.get(jobId);
      if (!set) byJob.set(jobId, (set = new Set()));
      set.add(abort);
      return () => {
        set!.delete(abort);
        if (set!.size === 0) byJob.delete(jobId);
      };
    },
    isActive: (jobId: number) => (byJob.get(jobId)?.size ?? 0) > 0,
    abortAll(jobId: number, reason: Error) {
      for (const abort of [...(byJob.get(jobId) ?? [])]) abort(reason);
      byJob.delete(jobId);
    },
  };
}

export type TransferRegistry = ReturnType<typeof createTransferRegistry>;

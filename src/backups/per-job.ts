/**
 * Runs async work for one job at a time, in the order asked. A backup job's received body is a
 * file on this station's disk and its upload fields a row: a new upload attempt, a late end of an
 * older one, the device's result and the clean-up after the job ends each read one and change
 * the other across several awaits, so they must not interleave. Work for other jobs runs freely.
 */
export function createPerJobQueue() {
  const tails = new Map<number, Promise<void>>();

  return function oneAtATime<T>(jobId: number, work: () => Promise<T>): Promise<T> {
    const result = (tails.get(jobId) ?? Promise.resolve()).then(work);
    // The queue goes on whether `work` fails or not; the caller sees its failure in `result`.
    const tail: Promise<void> = result.then(settled, settled);
    function settled() {
      if (tails.get(jobId) === tail) tails.delete(jobId);
    }
    tails.set(jobId, tail);
    return result;
  };
}

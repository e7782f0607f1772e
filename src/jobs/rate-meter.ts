/**
 * Current transfer rate per running job, from the device's progress reports. Kept in memory:
 * it is a live reading, not history. Smoothed so one slow flush does not swing the ETA.
 */
export function createRateMeter() {
  const readings = new Map<number, { phase: string | null; bytes: number; at: number; rate: number | null }>();

  return {
    record(jobId: number, phase: string | null, bytes: number, at: number) {
      const last = readings.get(jobId);
      if (!last || last.phase !== phase || bytes < last.bytes) {
        readings.set(jobId, { phase, bytes, at, rate: null });
        return;
      }
      const seconds = (at - last.at) / 1000;
      if (seconds <= 0) return;
      const instant = (bytes - last.bytes) / seconds;
      const rate = last.rate === null ? instant : last.rate * 0.6 + instant * 0.4;
      readings.set(jobId, { phase, bytes, at, rate });
    },
    rateOf: (jobId: number) => readings.get(jobId)?.rate ?? null,
    forget: (jobId: number) => readings.delete(jobId),
  };
}

export type RateMeter = ReturnType<typeof createRateMeter>;

/** The value below which `fraction` of the samples lie (nearest rank). */
export function percentile(samples: number[], fraction: number): number {
  if (samples.length === 0) return NaN;
  const sorted = [...samples].sort((a, b) => a - b);
  const rank = Math.ceil(fraction * sorted.length);
  return sorted[Math.min(sorted.length, Math.max(1, rank)) - 1]!;
}

/**
 * `items` rotated by `round`: run 1 measures A, B, C, run 2 B, C, A, and so on, so that no
 * contender always comes first (a cold disk) or right after the heaviest one.
 */
export function rotate<T>(items: readonly T[], round: number): T[] {
  const shift = round % items.length;
  return [...items.slice(shift), ...items.slice(0, shift)];
}

/** Median (the mean of the middle two for an even count). */
export function median(samples: number[]): number {
  if (samples.length === 0) return NaN;
  const sorted = [...samples].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[middle]! : (sorted[middle - 1]! + sorted[middle]!) / 2;
}

export const MB = 1e6;
export const MIB = 1024 * 1024;
export const GIB = 1024 * MIB;

export const fmt = {
  seconds: (value: number) => `${value.toFixed(value < 10 ? 2 : 1)} s`,
  ms: (value: number) => `${value.toFixed(value < 10 ? 2 : 1)} ms`,
  rate: (bytesPerSecond: number) => `${(bytesPerSecond / MB).toFixed(0)} MB/s`,
  size: (bytes: number) => (bytes >= GIB ? `${(bytes / GIB).toFixed(bytes % GIB ? 2 : 0)} GiB` : `${(bytes / MIB).toFixed(0)} MiB`),
  mb: (bytes: number) => `${(bytes / MB).toFixed(0)} MB`,
  ratio: (value: number) => `${value.toFixed(2)}×`,
  list: (values: number[], each: (value: number) => string) => values.map(each).join(', '),
};

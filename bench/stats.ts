/** Order statistics of latency samples. */

/** Points of the empirical distribution kept in the results: percentiles 0, 1, ..., 100. */
export const DISTRIBUTION_POINTS = 101;

/** Sorts a copy, ascending. */
export function sorted(values: readonly number[]): number[] {
  return [...values].sort((a, b) => a - b);
}

/** Nearest-rank percentile (`p` in 0..100) of ascending samples; `null` for none. */
export function percentile(ascending: readonly number[], p: number): number | null {
  if (ascending.length === 0) return null;
  const rank = Math.ceil((p / 100) * ascending.length);
  return ascending[Math.min(ascending.length - 1, Math.max(0, rank - 1))]!;
}

/** The middle value, or the mean of the two middle values. */
export function median(values: readonly number[]): number | null {
  const ascending = sorted(values);
  const n = ascending.length;
  if (n === 0) return null;
  return n % 2 === 1 ? ascending[(n - 1) / 2]! : (ascending[n / 2 - 1]! + ascending[n / 2]!) / 2;
}

/** Percentiles 0..100 of ascending samples, for plotting the distribution. */
export function distribution(ascending: readonly number[]): number[] {
  if (ascending.length === 0) return [];
  return Array.from({ length: DISTRIBUTION_POINTS }, (_, i) =>
    i === 0 ? ascending[0]! : percentile(ascending, (i * 100) / (DISTRIBUTION_POINTS - 1))!,
  );
}

/** `a / b`, or `null` when either is missing or `b` is 0. */
export function ratio(a: number | null | undefined, b: number | null | undefined): number | null {
  if (a === null || a === undefined || b === null || b === undefined || b === 0) return null;
  return a / b;
}

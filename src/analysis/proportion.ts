/** How sure an accuracy of k right out of n is: the Wilson score interval (good at small n and near 0 or 1). */

/** z for a two-sided 95% interval. */
export const Z95 = 1.959963984540054;

/** The Wilson score interval of a proportion `correct / n` at the given z (default 95%); [0, 1] when n = 0. */
export function wilsonInterval(correct: number, n: number, z = Z95): [number, number] {
  if (!(n > 0)) return [0, 1];
  const p = correct / n;
  const z2 = z * z;
  const centre = (p + z2 / (2 * n)) / (1 + z2 / n);
  const half = (z / (1 + z2 / n)) * Math.sqrt((p * (1 - p)) / n + z2 / (4 * n * n));
  return [Math.max(0, centre - half), Math.min(1, centre + half)];
}

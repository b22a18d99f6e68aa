import { describe, expect, it } from 'vitest';
import { cholesky, choleskySolve, LeastSquaresSums, solveRidge } from '../../src/analysis/linear-fit.ts';
import { seededRandom } from '../../src/engine/sampling.ts';

function randomMatrix(rows: number, cols: number, seed: number): Float64Array {
  const random = seededRandom(seed);
  return Float64Array.from({ length: rows * cols }, () => random() * 2 - 1);
}

/** C = A B for row-major A (n × k), B (k × m). */
function multiply(a: Float64Array, b: Float64Array, n: number, k: number, m: number): Float64Array {
  const c = new Float64Array(n * m);
  for (let i = 0; i < n; i++) for (let p = 0; p < k; p++) for (let j = 0; j < m; j++) c[i * m + j] += a[i * k + p] * b[p * m + j];
  return c;
}

const maxAbs = (a: ArrayLike<number>, b: ArrayLike<number>) => Math.max(...Array.from(a, (v, i) => Math.abs(v - b[i])));

describe('streaming ridge least squares (healing fit)', () => {
  const width = 7;
  const rows = 300;
  const m = randomMatrix(rows, width, 1);
  const truth = randomMatrix(width, width, 2);
  const d = multiply(m, truth, rows, width, width);

  it('recovers an exactly linear map to float64 precision with no ridge, residual 0', () => {
    const sums = new LeastSquaresSums(width);
    sums.add(m, d, rows);
    const fit = solveRidge(sums, 0);
    expect(maxAbs(fit.transform, truth)).toBeLessThan(1e-10);
    expect(fit.residual).toBeLessThan(1e-12);
    expect(fit.rows).toBe(rows);
  });

  it('gives the same sums whether rows arrive at once or in pieces (memory does not grow with the data)', () => {
    const once = new LeastSquaresSums(width);
    once.add(m, d, rows);
    const pieces = new LeastSquaresSums(width);
    for (const [from, to] of [
      [0, 17],
      [17, 200],
      [200, 300],
    ]) {
      pieces.add(m.subarray(from * width, to * width), d.subarray(from * width, to * width), to - from);
    }
    expect(maxAbs(pieces.mtm, once.mtm)).toBeLessThan(1e-9);
    expect(maxAbs(pieces.mtd, once.mtd)).toBeLessThan(1e-9);
    expect(Math.abs(pieces.ddSum - once.ddSum)).toBeLessThan(1e-9);
  });

  it('reports the residual of the fit and of T = I as computed directly over the rows', () => {
    const random = seededRandom(3);
    const noisy = Float64Array.from(d, (v) => v + 0.3 * (random() - 0.5));
    const sums = new LeastSquaresSums(width);
    sums.add(m, noisy, rows);
    const ridge = 1e-3;
    const fit = solveRidge(sums, ridge);
    const direct = (t: Float64Array) => {
      const mt = multiply(m, t, rows, width, width);
      let err = 0;
      let norm = 0;
      for (let i = 0; i < mt.length; i++) {
        err += (mt[i] - noisy[i]) ** 2;
        norm += noisy[i] ** 2;
      }
      return err / norm;
    };
    const identity = Float64Array.from({ length: width * width }, (_, i) => (i % (width + 1) === 0 ? 1 : 0));
    expect(fit.residual).toBeCloseTo(direct(fit.transform), 10);
    expect(fit.identityResidual).toBeCloseTo(direct(identity), 10);
    // λ = ridge × trace(MᵀM) / width
    let trace = 0;
    for (let i = 0; i < rows * width; i++) trace += m[i] * m[i];
    expect(fit.lambda).toBeCloseTo((ridge * trace) / width, 8);
    // The ridge solution satisfies (MᵀM + λI) T = MᵀD.
    const full = new Float64Array(width * width);
    for (let i = 0; i < width; i++) for (let j = 0; j < width; j++) full[i * width + j] = sums.mtm[Math.min(i, j) * width + Math.max(i, j)] + (i === j ? fit.lambda : 0);
    expect(maxAbs(multiply(full, fit.transform, width, width, width), sums.mtd)).toBeLessThan(1e-8);
  });

  it('Cholesky solves a symmetric positive-definite system (checked by multiplying back)', () => {
    const n = 9;
    const b = randomMatrix(n, n, 4);
    const a = multiply(
      b,
      Float64Array.from({ length: n * n }, (_, k) => b[(k % n) * n + Math.floor(k / n)]),
      n,
      n,
      n,
    ); // B Bᵀ
    for (let i = 0; i < n; i++) a[i * n + i] += 1;
    const rhs = randomMatrix(n, 3, 5);
    const l = a.slice();
    cholesky(l, n);
    const x = choleskySolve(l, n, rhs, 3);
    expect(maxAbs(multiply(a, x, n, n, 3), rhs)).toBeLessThan(1e-10);
  });

  it('refuses normal equations that are not positive definite, naming the ridge', () => {
    const sums = new LeastSquaresSums(3);
    sums.add([1, 0, 0, 2, 0, 0], [1, 0, 0, 2, 0, 0], 2); // columns 2 and 3 never vary: MᵀM is singular
    expect(() => solveRidge(sums, 0)).toThrow(/field ridge: .*not positive definite.*larger ridge/);
    expect(solveRidge(sums, 1e-6).transform[0]).toBeCloseTo(1, 5);
  });
});

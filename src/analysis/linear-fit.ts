/**
 * Streaming ridge least squares for healing (ReplaceMe's linear map): min_T ‖M T − D‖² + λ‖T‖² over all
 * calibration rows, where M and D are rows × width. Only MᵀM, MᵀD and Σ‖D‖² are kept (width² float64
 * each), so memory does not grow with the calibration set; the solve is a float64 Cholesky on the CPU.
 */
import { PruneLabError } from '../engine/errors.ts';

export class LeastSquaresSums {
  /** MᵀM, width × width row-major; only the upper triangle is accumulated (it is symmetric). */
  readonly mtm: Float64Array;
  /** MᵀD, width × width row-major. */
  readonly mtd: Float64Array;
  /** Σ‖D‖² over all rows. */
  ddSum = 0;
  rows = 0;

  constructor(readonly width: number) {
    this.mtm = new Float64Array(width * width);
    this.mtd = new Float64Array(width * width);
  }

  /** Adds `rows` rows of M and D (each rows × width, row-major). */
  add(m: ArrayLike<number>, d: ArrayLike<number>, rows: number): void {
    const w = this.width;
    if (m.length !== rows * w || d.length !== rows * w) throw new RangeError(`expected ${rows} × ${w} values, got ${m.length} and ${d.length}`);
    // Column-major float64 copies make every entry of MᵀM and MᵀD one contiguous dot product.
    const mc = new Float64Array(rows * w);
    const dc = new Float64Array(rows * w);
    for (let r = 0; r < rows; r++) {
      for (let c = 0; c < w; c++) {
        mc[c * rows + r] = m[r * w + c];
        const dv = d[r * w + c];
        dc[c * rows + r] = dv;
        this.ddSum += dv * dv;
      }
    }
    for (let a = 0; a < w; a++) {
      const ma = a * rows;
      for (let b = a; b < w; b++) {
        const mb = b * rows;
        let s = 0;
        for (let r = 0; r < rows; r++) s += mc[ma + r] * mc[mb + r];
        this.mtm[a * w + b] += s;
      }
      for (let b = 0; b < w; b++) {
        const db = b * rows;
        let s = 0;
        for (let r = 0; r < rows; r++) s += mc[ma + r] * dc[db + r];
        this.mtd[a * w + b] += s;
      }
    }
    this.rows += rows;
  }
}

export interface LinearFit {
  /** T, width × width row-major: the fitted rows are M T. */
  transform: Float64Array;
  /** The absolute ridge λ = ridge · trace(MᵀM) / width. */
  lambda: number;
  /** ‖M T − D‖² / ‖D‖² over the calibration rows. */
  residual: number;
  /** The same for T = I (what the rows were before the fit). */
  identityResidual: number;
  rows: number;
}

/** In-place Cholesky A = L Lᵀ of a symmetric positive-definite n × n matrix (lower triangle written). */
export function cholesky(a: Float64Array, n: number): void {
  for (let j = 0; j < n; j++) {
    let diag = a[j * n + j];
    for (let k = 0; k < j; k++) diag -= a[j * n + k] * a[j * n + k];
    if (!(diag > 0))
      throw new PruneLabError(`the normal equations are not positive definite (pivot ${j} is ${diag}); use more calibration tokens or a larger ridge`, { field: 'ridge' });
    const ljj = Math.sqrt(diag);
    a[j * n + j] = ljj;
    for (let i = j + 1; i < n; i++) {
      let s = a[i * n + j];
      for (let k = 0; k < j; k++) s -= a[i * n + k] * a[j * n + k];
      a[i * n + j] = s / ljj;
    }
  }
}

/** Solves L Lᵀ X = B for X (n × cols, row-major) given the Cholesky factor in `l`'s lower triangle. */
export function choleskySolve(l: Float64Array, n: number, b: Float64Array, cols: number): Float64Array {
  const x = b.slice();
  // L Z = B, row by row (each row update is contiguous).
  for (let i = 0; i < n; i++) {
    const row = i * cols;
    for (let k = 0; k < i; k++) {
      const f = l[i * n + k];
      if (f === 0) continue;
      const other = k * cols;
      for (let c = 0; c < cols; c++) x[row + c] -= f * x[other + c];
    }
    const inv = 1 / l[i * n + i];
    for (let c = 0; c < cols; c++) x[row + c] *= inv;
  }
  // Lᵀ X = Z, from the last row up.
  for (let i = n - 1; i >= 0; i--) {
    const row = i * cols;
    for (let k = i + 1; k < n; k++) {
      const f = l[k * n + i];
      if (f === 0) continue;
      const other = k * cols;
      for (let c = 0; c < cols; c++) x[row + c] -= f * x[other + c];
    }
    const inv = 1 / l[i * n + i];
    for (let c = 0; c < cols; c++) x[row + c] *= inv;
  }
  return x;
}

/**
 * Solves (MᵀM + λI) T = MᵀD with λ = ridge · trace(MᵀM) / width (a ridge relative to the mean eigenvalue,
 * so it means the same at every scale of the activations).
 */
export function solveRidge(sums: LeastSquaresSums, ridge: number): LinearFit {
  const n = sums.width;
  if (sums.rows === 0) throw new PruneLabError('no calibration rows were accumulated', { field: 'calibration' });
  if (!(ridge >= 0)) throw new PruneLabError(`must be ≥ 0, got ${ridge}`, { field: 'ridge' });
  const a = new Float64Array(n * n);
  let trace = 0;
  for (let i = 0; i < n; i++) {
    trace += sums.mtm[i * n + i];
    for (let j = i; j < n; j++) {
      a[i * n + j] = sums.mtm[i * n + j];
      a[j * n + i] = sums.mtm[i * n + j];
    }
  }
  const lambda = (ridge * trace) / n;
  for (let i = 0; i < n; i++) a[i * n + i] += lambda;
  cholesky(a, n);
  const transform = choleskySolve(a, n, sums.mtd, n);
  // ‖MT − D‖² = tr(TᵀMᵀMT) − 2 tr(TᵀMᵀD) + ‖D‖², and MᵀMT = MᵀD − λT at the solution, so it is
  // ‖D‖² − tr(TᵀMᵀD) − λ‖T‖²: O(width²), no second pass over the data.
  let tb = 0;
  let tt = 0;
  let traceB = 0;
  for (let i = 0; i < n * n; i++) {
    tb += transform[i] * sums.mtd[i];
    tt += transform[i] * transform[i];
  }
  for (let i = 0; i < n; i++) traceB += sums.mtd[i * n + i];
  const dd = sums.ddSum;
  const residual = dd > 0 ? Math.max(0, dd - tb - lambda * tt) / dd : 0;
  const identityResidual = dd > 0 ? Math.max(0, trace - 2 * traceB + dd) / dd : 0;
  return { transform, lambda, residual, identityResidual, rows: sums.rows };
}

/** Comparisons of the state-reading analyses (similarity heatmap, logit lens) between two runs, for the streamed-vs-resident tests. */
import { expect } from 'vitest';
import { blockScores } from '../../src/analysis/influence.ts';
import type { LogitLens } from '../../src/analysis/logit-lens.ts';
import type { SimilarityMatrix } from '../../src/analysis/similarity.ts';
import type { Model } from '../../src/engine/model.ts';
import type { Plan } from '../../src/engine/plan.ts';

/** Largest |Δ| over the cells above the diagonal of both grids (NaN elsewhere in both). */
export function matrixDifference(a: SimilarityMatrix, b: SimilarityMatrix): number {
  expect(b.blocks).toEqual(a.blocks);
  expect(b.tokens).toBe(a.tokens);
  let worst = 0;
  for (const grid of ['cos', 'angular'] as const) {
    for (const [i, row] of a[grid].entries()) {
      for (const [j, v] of row.entries()) {
        if (j <= i) expect(b[grid][i][j]).toBeNaN();
        else worst = Math.max(worst, Math.abs(b[grid][i][j] - v));
      }
    }
  }
  return worst;
}

/** Same rows, same top token ids per cell; returns the largest |Δ| of their probabilities. */
export function lensDifference(a: LogitLens, b: LogitLens): number {
  expect(b.blocks).toEqual(a.blocks);
  expect(b.positions).toEqual(a.positions);
  expect(b.rows.map((r) => [r.state, r.afterBlock])).toEqual(a.rows.map((r) => [r.state, r.afterBlock]));
  let worst = 0;
  for (const [s, row] of a.rows.entries()) {
    for (const [t, cell] of row.positions.entries()) {
      expect(b.rows[s].positions[t].map((x) => x.id)).toEqual(cell.map((x) => x.id));
      for (const [k, x] of cell.entries()) worst = Math.max(worst, Math.abs(b.rows[s].positions[t][k].prob - x.prob));
    }
  }
  return worst;
}

/** The streamed score's BI / angular per block: what the heatmap's j = i + 1 cells must equal. */
export async function expectDiagonalMatchesScore(model: Model, ids: number[][], plan: Plan, matrix: SimilarityMatrix): Promise<void> {
  const scores = blockScores(await model.score(ids, plan));
  scores.forEach((s, i) => {
    expect(Math.abs(matrix.cos[i][i + 1] - (1 - s.bi))).toBeLessThanOrEqual(1e-6);
    expect(Math.abs(matrix.angular[i][i + 1] - s.angular)).toBeLessThanOrEqual(1e-6);
  });
}

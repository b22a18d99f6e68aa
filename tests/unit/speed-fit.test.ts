import { describe, expect, it } from 'vitest';
import { speedFit } from '../../src/analysis/speed.ts';

const L = 12;
/** Points of a machine whose decode takes `fixed` ms plus `perBlock` ms for each block that runs, plus noise. */
const points = (fixed: number, perBlock: number, noise: (k: number) => number = () => 0) =>
  Array.from({ length: L }, (_, k) => ({ k, msPerToken: fixed + perBlock * (L - k) + noise(k) }));

describe('speedFit: decode time = fixed + per block × blocks that run', () => {
  it('recovers the fixed and per-block time of noise-free points', () => {
    const fit = speedFit(points(1.5, 0.25), L);
    expect(fit?.fixedMs).toBeCloseTo(1.5, 10);
    expect(fit?.perBlockMs).toBeCloseTo(0.25, 10);
  });

  it('is the least-squares line: residuals sum to zero and are orthogonal to the block count', () => {
    const noisy = points(2, 0.3, (k) => Math.sin(k * 1.7) * 0.2);
    const fit = speedFit(noisy, L);
    if (!fit) throw new Error('no fit');
    const residuals = noisy.map((p) => p.msPerToken - (fit.fixedMs + fit.perBlockMs * (L - p.k)));
    expect(Math.abs(residuals.reduce((a, r) => a + r, 0))).toBeLessThan(1e-9);
    expect(Math.abs(residuals.reduce((a, r, k) => a + r * (L - k), 0))).toBeLessThan(1e-9);
    // measured points fall on both sides of the line
    expect(residuals.some((r) => r > 0) && residuals.some((r) => r < 0)).toBe(true);
  });

  it('a negative fixed part is refitted through the origin; missing points are skipped; one block count is no fit', () => {
    const fit = speedFit([{ k: 0, msPerToken: 12 }, undefined, { k: 6, msPerToken: 5 }], L);
    // the free line would be 14 × ... − 2: fixed < 0, so b = Σxy / Σx² = (12·12 + 6·5) / (144 + 36)
    expect(fit?.fixedMs).toBe(0);
    expect(fit?.perBlockMs).toBeCloseTo((12 * 12 + 6 * 5) / (144 + 36), 12);
    expect(speedFit([{ k: 3, msPerToken: 2 }], L)).toBeNull();
  });
});

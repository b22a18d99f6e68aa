import { describe, expect, it } from 'vitest';
import type { Strategy, SweepStep } from '../../src/analysis/sweep.ts';
import { jsonToBase64url } from '../../src/share/codec.ts';
import type { SweepShare } from '../../src/share/sweep-link.ts';
import { decodeState, defaultState, encodeState, validateForModel } from '../../src/share/url-state.ts';

const L = 12;
const step = (removed: number[], ppl: number, extra: Partial<SweepStep> = {}): SweepStep => ({ removed, ppl, nll: Math.log(ppl), ...extra });

/** A sweep as runSweep leaves it: nested orders, angular windows, random with a seed range, attention halves. */
function sampleSweep(): SweepShare {
  const order = [5, 2, 6, 4, 9];
  const nested = (scale: number) =>
    order
      .map((_, k) =>
        step(
          order.slice(0, k).sort((a, b) => a - b),
          20 * scale ** k,
        ),
      )
      .concat([
        step(
          [...order].sort((a, b) => a - b),
          20 * scale ** 5,
        ),
      ]);
  return {
    layers: L,
    maxRemoved: 5,
    seeds: 5,
    calibrationWindows: { sequences: 2, seqLen: 64 },
    evaluation: 'moby-dick-eval',
    evaluationWindows: { sequences: 2, seqLen: 64 },
    evaluationTokens: 126,
    strategies: {
      bi: nested(1.3),
      reverse: nested(2.5),
      angular: Array.from({ length: 6 }, (_, k) =>
        step(
          Array.from({ length: k }, (_, i) => 6 + i),
          20 * 1.4 ** k,
        ),
      ),
      random: Array.from({ length: 6 }, (_, k) =>
        step(
          [11, 3, 7, 1, 8].slice(0, k).sort((a, b) => a - b),
          20 * 2 ** k,
          { pplMin: 20 * 1.5 ** k, pplMax: 20 * 3 ** k, seed: k % 5 },
        ),
      ),
      'bi-attn': Array.from({ length: 6 }, (_, k) => step([], 20 * 1.05 ** k, k ? { removedAttention: [7, 3, 10, 2, 5].slice(0, k).sort((a, b) => a - b) } : {})),
    },
  };
}

describe('a strategies sweep in the share link', () => {
  it('survives a link round trip: the same strategies, removal sets at every step, and perplexities within the quantisation bound', () => {
    const sweep = sampleSweep();
    const decoded = decodeState(encodeState({ ...defaultState(), sweep }));
    expect(decoded.notices).toEqual([]);
    const back = decoded.state.sweep;
    if (!back) throw new Error('no sweep decoded');
    expect({ ...back, strategies: undefined }).toEqual({ ...sweep, strategies: undefined });
    const all = Object.values(sweep.strategies).flatMap((steps) => steps.flatMap((s) => [s.ppl, s.pplMin ?? s.ppl, s.pplMax ?? s.ppl]));
    // ln(ppl) is quantised over [min, max] of all of them: a factor of exp(span / (2 · 65534)) at most.
    const factor = Math.exp((Math.log(Math.max(...all)) - Math.log(Math.min(...all))) / (2 * 65534)) * (1 + 1e-12);
    for (const [strategy, steps] of Object.entries(sweep.strategies) as [Strategy, SweepStep[]][]) {
      const got = back.strategies[strategy] ?? [];
      expect(got.length).toBe(steps.length);
      steps.forEach((s, k) => {
        expect(got[k].removed).toEqual(s.removed);
        expect(got[k].removedAttention ?? []).toEqual(s.removedAttention ?? []);
        expect(Math.max(got[k].ppl / s.ppl, s.ppl / got[k].ppl)).toBeLessThanOrEqual(factor);
        if (s.pplMin !== undefined) expect(Math.max((got[k].pplMin as number) / s.pplMin, s.pplMin / (got[k].pplMin as number))).toBeLessThanOrEqual(factor);
        expect(got[k].nll).toBeCloseTo(Math.log(got[k].ppl), 12);
      });
    }
  });

  it('a nested strategy travels as its order: a 80-block sweep of 7 strategies stays a short link', () => {
    const order = Array.from({ length: 79 }, (_, i) => (i * 37) % 80);
    const steps = Array.from({ length: 80 }, (_, k) =>
      step(
        order.slice(0, k).sort((a, b) => a - b),
        10 + k,
      ),
    );
    const strategies = Object.fromEntries((['bi', 'bi-iter', 'relmag', 'reverse', 'sleb'] as Strategy[]).map((s) => [s, steps]));
    const hash = encodeState({ ...defaultState(), sweep: { ...sampleSweep(), layers: 80, maxRemoved: 79, strategies } });
    expect(hash.length).toBeLessThan(8000);
    expect(decodeState(hash).state.sweep?.strategies.sleb?.[79].removed).toEqual(order.slice(0, 79).sort((a, b) => a - b));
  });

  it('a hostile or damaged sweep is dropped with one notice and the rest of the link applies', () => {
    const good = JSON.parse(Buffer.from(encodeState({ ...defaultState(), removed: [2], sweep: sampleSweep() }).slice(3), 'base64url').toString('utf8'));
    const cases: [string, (w: Record<string, unknown>) => void][] = [
      ['unknown strategy', (w) => ((w.s as unknown[][])[0][0] = 'constructor')],
      ['block out of range', (w) => ((w.s as unknown[][])[0][2] = [5, 99])],
      ['truncated data', (w) => (w.d = (w.d as string).slice(0, 10))],
      ['bad range', (w) => (w.q = [3, 1])],
      ['too many layers', (w) => (w.l = 1e9)],
      ['not an object', (w) => Object.assign(w, { s: 'x' })],
    ];
    for (const [what, damage] of cases) {
      const wire = structuredClone(good);
      damage(wire.w);
      const decoded = decodeState(`v1.${jsonToBase64url(wire)}`);
      expect(decoded.state.sweep, what).toBeUndefined();
      expect(decoded.notices.filter((n) => n.includes('strategies sweep')).length, what).toBe(1);
      expect(decoded.state.removed, what).toEqual([2]);
    }
  });

  it('a sweep of a model with another block count is dropped when the model loads', () => {
    const { state, notices } = validateForModel({ ...defaultState(), sweep: sampleSweep() }, 24);
    expect(state.sweep).toBeUndefined();
    expect(notices.join(' ')).toMatch(/12 blocks, this one has 24/);
    expect(validateForModel({ ...defaultState(), sweep: sampleSweep() }, 12).state.sweep).toBeDefined();
  });
});

import { describe, expect, it } from 'vitest';
import { healCutProblem, removedSpans, spanLabel } from '../../src/analysis/heal-spans.ts';
import { jsonToBase64url } from '../../src/share/codec.ts';
import { decodeState, defaultState, encodeState, historyAction, validateForModel } from '../../src/share/url-state.ts';

describe('which cuts can be healed', () => {
  it('splits removed blocks into maximal contiguous spans, in order, whatever the input order', () => {
    expect(removedSpans([6, 4, 5, 9, 1, 9])).toEqual([
      { start: 1, end: 2 },
      { start: 4, end: 7 },
      { start: 9, end: 10 },
    ]);
    expect(removedSpans([])).toEqual([]);
    expect(spanLabel({ start: 4, end: 7 })).toBe('[4–6]');
    expect(spanLabel({ start: 9, end: 10 })).toBe('[9]');
  });

  it('needs a block before every span, whole blocks only, and something removed', () => {
    expect(healCutProblem({ blocks: [4, 5, 6] })).toBeNull();
    expect(healCutProblem({ blocks: [2, 7, 8], attention: [], mlp: [] })).toBeNull();
    expect(healCutProblem({ blocks: [0, 1, 5] })).toMatch(/span \[0–1\] starts at block 0/);
    expect(healCutProblem({ blocks: [3], mlp: [5] })).toMatch(/half cuts/);
    expect(healCutProblem({ blocks: [] })).toMatch(/no block is removed/);
  });
});

describe('the heal in the share link', () => {
  const hashOf = (wire: Record<string, unknown>) => `#v1.${jsonToBase64url({ ...wire })}`;

  it('round-trips as h: 1 (the maps are not in the link) and is absent when not healed', () => {
    const healed = { ...defaultState(), removed: [4, 5, 6], heal: true };
    const hash = encodeState(healed);
    expect(decodeState(hash, { layers: 12 })).toEqual({ state: healed, notices: [], found: true });
    const plain = { ...defaultState(), removed: [4, 5, 6] };
    expect(decodeState(encodeState(plain)).state.heal).toBeUndefined();
    // Healing (or un-healing) the same cut is a step back / forward walks through.
    expect(historyAction(plain, healed)).toBe('push');
  });

  it('drops a heal flag that is not 1, or that asks for a cut that cannot be healed, with a notice', () => {
    const bad = decodeState(hashOf({ r: [4], h: '1' }));
    expect(bad.state.heal).toBeUndefined();
    expect(bad.notices.join(' ')).toMatch(/heal flag \("1"\): it must be 1 or absent/);
    const fromZero = decodeState(hashOf({ r: [0, 1], h: 1 }), { layers: 12 });
    expect(fromZero.state.heal).toBeUndefined();
    expect(fromZero.state.removed).toEqual([0, 1]);
    expect(fromZero.notices.join(' ')).toMatch(/Ignored the link's heal: the span \[0–1\] starts at block 0/);
    const halves = validateForModel({ ...defaultState(), removed: [3], removedMlp: [5], heal: true }, 12);
    expect(halves.state.heal).toBeUndefined();
    expect(halves.notices.join(' ')).toMatch(/half cuts/);
  });
});

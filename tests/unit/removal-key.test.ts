import { describe, expect, it } from 'vitest';
import { parseRemovalKey, removalKey } from '../../src/engine/plan.ts';

describe('the removal key', () => {
  it('is the same for equal sets in any order, and parses back to the normalised set', () => {
    expect(removalKey({ blocks: [5, 2, 2], mlp: [7] })).toBe('b2,5|a|m7');
    expect(removalKey({})).toBe('b|a|m');
    expect(parseRemovalKey('b2,5|a3|m7')).toEqual({ blocks: [2, 5], attention: [3], mlp: [7] });
    expect(parseRemovalKey(removalKey({ attention: [1] }))).toEqual({ blocks: [], attention: [1], mlp: [] });
    expect(parseRemovalKey('{"blocks":[1]}')).toBeNull();
    expect(parseRemovalKey('')).toBeNull();
  });
});

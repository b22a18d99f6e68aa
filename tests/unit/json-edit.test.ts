import { describe, expect, it } from 'vitest';
import { setTopLevelKeys } from '../../src/export/json-edit.ts';

describe('setTopLevelKeys', () => {
  const text = '{\n  "a": 3.0,\n  "n": {"x": [1, "}"]},\n  "s": "q\\"}",\n  "layers": 6,\n  "list": [1, 2, 3]\n}\n';
  it('replaces top-level values in place and keeps every other byte (3.0 stays 3.0)', () => {
    const out = setTopLevelKeys(text, { layers: 4, list: [1, 3] });
    expect(out).toBe('{\n  "a": 3.0,\n  "n": {"x": [1, "}"]},\n  "s": "q\\"}",\n  "layers": 4,\n  "list": [1,3]\n}\n');
    expect(JSON.parse(out)).toEqual({ a: 3, n: { x: [1, '}'] }, s: 'q"}', layers: 4, list: [1, 3] });
  });
  it('appends new keys before the closing brace', () => {
    const out = setTopLevelKeys(text, { layer_types: ['full_attention'] });
    expect(JSON.parse(out).layer_types).toEqual(['full_attention']);
    expect(out).toContain('"a": 3.0');
    expect(JSON.parse(setTopLevelKeys('{}', { k: 1 }))).toEqual({ k: 1 });
  });
});

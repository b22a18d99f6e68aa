import { describe, expect, it } from 'vitest';
import { jsonToBase64url } from '../../src/share/codec.ts';
import { decodeState, defaultState, encodeState } from '../../src/share/url-state.ts';

const COMMIT = '0123456789abcdef0123456789abcdef01234567';

describe('a hub model in the link records its commit', () => {
  it('round trip: the revision as given and the commit the weights were loaded at', () => {
    const state = { ...defaultState(), model: { kind: 'hub' as const, id: 'org/model', revision: 'main', commit: COMMIT } };
    const decoded = decodeState(encodeState(state));
    expect(decoded.notices).toEqual([]);
    expect(decoded.state.model).toEqual({ kind: 'hub', id: 'org/model', revision: 'main', commit: COMMIT });
  });

  it('a link without a commit (made before) still opens; a bad commit is dropped with a notice, the model kept', () => {
    const wire = (m: unknown[]) => `v1.${jsonToBase64url({ m })}`;
    expect(decodeState(wire(['h', 'org/model', 'main'])).state.model).toEqual({ kind: 'hub', id: 'org/model', revision: 'main' });
    const bad = decodeState(wire(['h', 'org/model', 'main', 'not-a-commit']));
    expect(bad.state.model).toEqual({ kind: 'hub', id: 'org/model', revision: 'main' });
    expect(bad.notices.join(' ')).toMatch(/commit .*40 hexadecimal digits/);
  });

  it('the token is not part of the experiment: nothing in the state can hold it', () => {
    const hash = encodeState({ ...defaultState(), model: { kind: 'hub', id: 'org/model', revision: 'main', commit: COMMIT } });
    expect(hash).not.toMatch(/hf_/);
    expect(Object.keys(decodeState(hash).state.model).sort()).toEqual(['commit', 'id', 'kind', 'revision']);
  });
});

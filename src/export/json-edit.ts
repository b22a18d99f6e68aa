/**
 * Edits top-level keys of a JSON object's text, leaving every other byte as written. Needed because
 * JSON.parse forgets that `3.0` was a float, and transformers 5's strict config classes reject `3` for a
 * float field (e.g. final_logit_softcapping): an exported config must keep the source's spelling.
 */
import { PruneLabError } from '../engine/errors.ts';

/** End index (exclusive) of the JSON value starting at `i` (whitespace already skipped). */
function valueEnd(text: string, i: number): number {
  const c = text[i];
  if (c === '"') {
    let j = i + 1;
    while (j < text.length && text[j] !== '"') j += text[j] === '\\' ? 2 : 1;
    return j + 1;
  }
  if (c === '{' || c === '[') {
    let depth = 0;
    let j = i;
    while (j < text.length) {
      const d = text[j];
      if (d === '"') {
        j = valueEnd(text, j);
        continue;
      }
      if (d === '{' || d === '[') depth++;
      else if (d === '}' || d === ']') {
        depth--;
        if (depth === 0) return j + 1;
      }
      j++;
    }
    return j;
  }
  let j = i;
  while (j < text.length && !/[,}\]\s]/.test(text[j])) j++;
  return j;
}

const skipSpace = (text: string, i: number) => {
  while (i < text.length && /\s/.test(text[i])) i++;
  return i;
};

/** `text` with the given top-level keys set (replaced in place, or appended at the end), formatted like JSON.stringify(value). */
export function setTopLevelKeys(text: string, changes: Record<string, unknown>, file = 'config.json'): string {
  const parsed = JSON.parse(text) as unknown;
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) throw new PruneLabError('must be a JSON object', { file });
  const spans = new Map<string, [number, number]>();
  let i = skipSpace(text, 0) + 1;
  let closing = text.lastIndexOf('}');
  for (;;) {
    i = skipSpace(text, i);
    if (text[i] === '}') {
      closing = i;
      break;
    }
    const keyEnd = valueEnd(text, i);
    const key = JSON.parse(text.slice(i, keyEnd)) as string;
    i = skipSpace(text, keyEnd) + 1; // past ':'
    i = skipSpace(text, i);
    const end = valueEnd(text, i);
    spans.set(key, [i, end]);
    i = skipSpace(text, end);
    if (text[i] === ',') i++;
  }
  const edits = Object.entries(changes)
    .filter(([key]) => spans.has(key))
    .map(([key, value]) => ({ span: spans.get(key) as [number, number], value: JSON.stringify(value) }))
    .sort((a, b) => b.span[0] - a.span[0]);
  let out = text;
  for (const { span, value } of edits) out = out.slice(0, span[0]) + value + out.slice(span[1]);
  const added = Object.entries(changes).filter(([key]) => !spans.has(key));
  if (added.length > 0) {
    const closeAt = out.lastIndexOf('}', closing + (out.length - text.length));
    const body = out.slice(0, closeAt).trimEnd();
    const comma = spans.size > 0 ? ',' : '';
    out = `${body}${comma}\n${added.map(([k, v]) => `  ${JSON.stringify(k)}: ${JSON.stringify(v)}`).join(',\n')}\n${out.slice(closeAt)}`;
  }
  return out;
}

/**
 * Which cuts can be healed (src/analysis/heal.ts), as pure functions the page can use without the engine:
 * the removed blocks' contiguous spans, and why a cut cannot be healed.
 */

/** A removed run of blocks [start, end). */
export interface Span {
  start: number;
  end: number;
}

/** The maximal contiguous runs of a set of block indices, ascending. */
export function removedSpans(removed: readonly number[]): Span[] {
  const sorted = [...new Set(removed)].sort((a, b) => a - b);
  const spans: Span[] = [];
  for (const i of sorted) {
    const last = spans[spans.length - 1];
    if (last && last.end === i) last.end = i + 1;
    else spans.push({ start: i, end: i + 1 });
  }
  return spans;
}

export function spanLabel(span: Span): string {
  return span.end - span.start === 1 ? `[${span.start}]` : `[${span.start}–${span.end - 1}]`;
}

/**
 * Why this cut cannot be healed, or null when it can: each span needs a block before it to fold its map
 * into, and only whole removed blocks are replaced (a half-block cut has no span output to fit).
 */
export function healCutProblem(removal: { blocks: readonly number[]; attention?: readonly number[]; mlp?: readonly number[] }): string | null {
  if ((removal.attention?.length ?? 0) + (removal.mlp?.length ?? 0) > 0) return 'healing replaces whole removed blocks; undo the attention / MLP half cuts first';
  const spans = removedSpans(removal.blocks);
  if (spans.length === 0) return 'nothing to heal: no block is removed';
  if (spans[0].start === 0) return `the span ${spanLabel(spans[0])} starts at block 0: there is no block before it to fold the map into, so it cannot be healed`;
  return null;
}

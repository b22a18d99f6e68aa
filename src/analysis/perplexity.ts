/**
 * Perplexity of removal sets over one fixed sequence set, memoised by removal. A sweep measures the same
 * set many times (every strategy's k = 0, BI one-shot and iterative agreeing on the first block, SLEB's
 * candidates); the engine is deterministic, so a cached number is the number a fresh run would give.
 */
import type { Model, NllResult } from '../engine/model.ts';
import { makePlan, normalizeRemoval, type Removal, removalKey } from '../engine/plan.ts';

export interface MeterOptions {
  signal?: AbortSignal;
}

/** Measures (and remembers) perplexity of a model over one sequence set under removal sets. */
export class PerplexityMeter {
  private readonly measured = new Map<string, Promise<NllResult>>();
  /** Forward passes over the whole sequence set actually run (cache misses). */
  runs = 0;

  constructor(
    readonly model: Model,
    readonly sequences: readonly (readonly number[])[],
  ) {}

  /** Sum of sequence lengths minus one per sequence: the predicted tokens. */
  get predictedTokens(): number {
    return this.sequences.reduce((a, s) => a + Math.max(0, s.length - 1), 0);
  }

  has(removal: Removal): boolean {
    return this.measured.has(removalKey(removal));
  }

  measure(removal: Removal, options: MeterOptions = {}): Promise<NllResult> {
    const key = removalKey(removal);
    let result = this.measured.get(key);
    if (!result) {
      this.runs++;
      const plan = makePlan(this.model.spec.layers, normalizeRemoval(removal));
      result = this.model.perplexity(this.sequences, plan, { signal: options.signal });
      // A failed or cancelled run must not poison the cache.
      result.catch(() => this.measured.delete(key));
      this.measured.set(key, result);
    }
    return result;
  }
}

/**
 * Inputs against the model's limits, said the same way by the CLI (stderr / error) and the lab (notice /
 * disabled button): sequence length vs the context, a calibration text vs one window, a prompt vs the
 * context. Each check returns a finding (an error to refuse, a warning to state) or null.
 */
import type { ModelSpec } from './config.ts';

export interface Finding {
  level: 'error' | 'warning';
  message: string;
}

/** The part of a ModelSpec these checks read (the lab has it from ModelInfo). */
export type ContextSpec = Pick<ModelSpec, 'maxPositions' | 'learnedPositions'>;

const plural = (n: number, one: string, many = `${one}s`) => `${n.toLocaleString('en-US')} ${n === 1 ? one : many}`;

/**
 * A sequence longer than the context: GPT-2's learned position table has no row past n_positions (an
 * error); RoPE models run but were never trained that far (a warning).
 */
export function checkSequenceLength(length: number, spec: ContextSpec, subject = `sequence length ${length}`): Finding | null {
  if (length <= spec.maxPositions) return null;
  if (spec.learnedPositions) {
    return { level: 'error', message: `${subject} exceeds the model's ${spec.maxPositions} learned positions (n_positions); use at most ${spec.maxPositions}` };
  }
  return {
    level: 'warning',
    message: `${subject} exceeds max_position_embeddings ${spec.maxPositions}: positions past ${spec.maxPositions} were never trained, so those tokens' numbers are extrapolation`,
  };
}

/** What consecutive windows of `seqLen` over `total` tokens hold (the rule of tokenizer.windows). */
export function plannedWindows(total: number, seqLen: number, maxSequences: number): { sequences: number; tokens: number } {
  const full = Math.floor(total / seqLen);
  const available = full + (total - full * seqLen >= 2 ? 1 : 0);
  const sequences = Math.min(maxSequences, available);
  return { sequences, tokens: Math.min(total, sequences * seqLen) };
}

/** "4 × 128 tokens", or "1 sequence of 37 tokens" when that is what a run measures. */
export function describeWindows(total: number, seqLen: number, maxSequences: number): string {
  const planned = plannedWindows(total, seqLen, maxSequences);
  if (planned.sequences === 1) return `1 sequence of ${plural(planned.tokens, 'token')}`;
  if (planned.tokens === planned.sequences * seqLen) return `${planned.sequences} × ${seqLen} tokens`;
  return `${planned.sequences} sequences, ${plural(planned.tokens, 'token')} (last one shorter)`;
}

/** A text (calibration or evaluation) against one window: too short to use, or shorter than one window. */
export function checkTextLength(tokens: number, seqLen: number, what = 'calibration text', verb = 'scoring'): Finding | null {
  if (tokens < 2) return { level: 'error', message: `the ${what} is ${plural(tokens, 'token')}; a sequence needs at least 2` };
  if (tokens < seqLen) {
    return { level: 'warning', message: `the ${what} is ${plural(tokens, 'token')}, shorter than one ${seqLen}-token window: ${verb} 1 sequence of ${plural(tokens, 'token')}` };
  }
  return null;
}

/**
 * A prompt against the context. Generation never runs past the context (the KV cache holds at most
 * maxPositions tokens), so a longer prompt is refused and a shorter one that leaves less room than
 * `maxNewTokens` is stated.
 */
export function checkPrompt(promptTokens: number, maxNewTokens: number, spec: Pick<ContextSpec, 'maxPositions'>): Finding | null {
  if (promptTokens === 0) return { level: 'error', message: 'the prompt has no tokens' };
  const context = spec.maxPositions;
  if (promptTokens > context) {
    return {
      level: 'error',
      message: `the prompt is ${plural(promptTokens, 'token')}, longer than the model's context of ${plural(context, 'token')}; shorten it by at least ${plural(promptTokens - context, 'token')}`,
    };
  }
  const room = context - promptTokens + 1;
  if (maxNewTokens > room) {
    return {
      level: 'warning',
      message: `the prompt is ${plural(promptTokens, 'token')} and the context ${plural(context, 'token')}: generation stops after at most ${plural(room, 'new token')}, not ${maxNewTokens}`,
    };
  }
  return null;
}

/** After a run: whether generation ended because the context was full (not at an end-of-text token or maxNewTokens). */
export function contextStop(promptTokens: number, generated: number, maxNewTokens: number, spec: Pick<ContextSpec, 'maxPositions'>): string | null {
  // The KV cache holds maxPositions tokens; the last new token is never fed back, hence + 1.
  const room = spec.maxPositions - promptTokens + 1;
  if (generated >= maxNewTokens || generated < room) return null;
  return `stopped at the model's context of ${spec.maxPositions} tokens (prompt ${promptTokens} + ${generated} new)`;
}

/** A removal set must leave a block to run: with none, "the pruned model" is the embedding and the head alone. */
export function checkRemovalLeavesBlock(layers: number, removedBlocks: number): Finding | null {
  return removedBlocks >= layers ? { level: 'error', message: `all ${layers} blocks are removed; at least one block must remain` } : null;
}

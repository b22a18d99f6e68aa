/** Next-token choice from one row of logits: greedy, or temperature + top-k + top-p with a seeded RNG. */

export interface SamplingOptions {
  /** 0 (or absent) = greedy argmax. */
  temperature?: number;
  topK?: number;
  topP?: number;
  seed?: number;
}

/** mulberry32: small, fast, reproducible across platforms. */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export function argmax(row: Float32Array): number {
  let best = 0;
  for (let i = 1; i < row.length; i++) if (row[i] > row[best]) best = i;
  return best;
}

/** Softmax probabilities (float64) of the k most likely tokens, most likely first. */
export function topTokens(row: Float32Array, k: number): { id: number; prob: number }[] {
  let max = Number.NEGATIVE_INFINITY;
  for (const v of row) if (v > max) max = v;
  let sum = 0;
  for (const v of row) sum += Math.exp(v - max);
  const order = Array.from(row.keys())
    .sort((a, b) => row[b] - row[a] || a - b)
    .slice(0, k);
  return order.map((id) => ({ id, prob: Math.exp(row[id] - max) / sum }));
}

/**
 * One sampled pick with its random draw already made: the form a backend takes in ForwardRequest.pick so
 * it can sample where the logits are (WebGPU: on the device) with the caller's random stream.
 */
export interface TokenSample {
  /** > 0 (greedy is the 'argmax' pick). */
  temperature: number;
  /** 0 = no cut. */
  topK: number;
  /** 1 = no cut; 0 < topP ≤ 1. */
  topP: number;
  /** The uniform draw in [0, 1) that sampleToken would take from its RNG for this step. */
  u: number;
}

/** What picks the next token: the first maximum, or a sample. */
export type TokenPick = 'argmax' | TokenSample;

/**
 * The pick of one decode step under `options`, drawing from `random` exactly as sampleToken would (one
 * draw when sampling, none when greedy), so pickToken(row, drawPick(options, random)) ≡ sampleToken(row, options, random).
 */
export function drawPick(options: SamplingOptions, random: () => number): TokenPick {
  const temperature = options.temperature ?? 0;
  if (temperature <= 0) return 'argmax';
  return { temperature, topK: options.topK ?? 0, topP: options.topP ?? 1, u: random() };
}

/** The token `pick` chooses from one logits row, by sampleToken's rule (float64). */
export function pickToken(row: Float32Array, pick: TokenPick): number {
  if (pick === 'argmax') return argmax(row);
  return sampleToken(row, pick, () => pick.u);
}

export function sampleToken(row: Float32Array, options: SamplingOptions, random: () => number): number {
  const temperature = options.temperature ?? 0;
  if (temperature <= 0) return argmax(row);
  let order = Array.from(row.keys()).sort((a, b) => row[b] - row[a] || a - b);
  if (options.topK && options.topK > 0) order = order.slice(0, options.topK);
  const max = row[order[0]];
  let probs = order.map((id) => Math.exp((row[id] - max) / temperature));
  let total = probs.reduce((a, b) => a + b, 0);
  probs = probs.map((p) => p / total);
  if (options.topP !== undefined && options.topP < 1) {
    let cumulative = 0;
    let keep = 0;
    while (keep < probs.length && cumulative < options.topP) cumulative += probs[keep++];
    order = order.slice(0, Math.max(1, keep));
    probs = probs.slice(0, order.length);
    total = probs.reduce((a, b) => a + b, 0);
    probs = probs.map((p) => p / total);
  }
  let u = random();
  for (let i = 0; i < order.length; i++) {
    u -= probs[i];
    if (u <= 0) return order[i];
  }
  return order[order.length - 1];
}

// What both sides of the bench measure the same way — our engine (engine-bench.ts) and the transformers.js
// peer (tjs-bench.mjs): the prompt ids, the statistics, and prefill / decode throughput from timed generations.
// Plain JavaScript so the peer's Node runner and the bench pages import it as they are (types: measure.d.mts).

/** Deterministic token ids in [1, vocab): the same prompt for every engine. */
export function syntheticIds(count, vocab, seed) {
  let a = seed >>> 0;
  const out = [];
  for (let i = 0; i < count; i++) {
    a = (Math.imul(a, 1664525) + 1013904223) >>> 0;
    out.push(1 + (a % (vocab - 1)));
  }
  return out;
}

/** The median (the mean of the middle two for an even count); NaN for no values. */
export function median(xs) {
  if (xs.length === 0) return Number.NaN;
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

export function round(x, digits = 3) {
  return Number.isFinite(x) ? Number(x.toFixed(digits)) : x;
}

/**
 * Prefill and decode throughput from `config.reps` timed greedy generations of `config.decode` steps after a
 * `config.prompt`-token prompt: prefill = the median prompt → first token time, decode = the median of every
 * later single-token step.
 */
export async function measureThroughput(generate, config) {
  const prefill = [];
  const steps = [];
  let tokens = [];
  for (let r = 0; r < config.reps; r++) {
    const run = await generate();
    prefill.push(run.prefillMs);
    steps.push(...run.stepMs);
    tokens = run.tokens;
  }
  const prefillMs = median(prefill);
  const stepMs = median(steps);
  return {
    prefillMs,
    stepMs,
    throughput: {
      prompt: config.prompt,
      decode: config.decode,
      reps: config.reps,
      prefillMs: prefill.map((x) => round(x, 1)),
      decodeStepMs: steps.map((x) => round(x, 1)),
      prefillTokS: round((config.prompt * 1000) / prefillMs),
      decodeTokS: round(1000 / stepMs),
      tokens,
    },
  };
}

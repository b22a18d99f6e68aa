export function syntheticIds(count: number, vocab: number, seed: number): number[];
export function median(xs: readonly number[]): number;
export function round(x: number, digits?: number): number;
export interface TimedGeneration {
  prefillMs: number;
  stepMs: number[];
  tokens: number[];
}
export interface Throughput {
  prompt: number;
  decode: number;
  reps: number;
  prefillMs: number[];
  decodeStepMs: number[];
  prefillTokS: number;
  decodeTokS: number;
  tokens: number[];
}
export function measureThroughput(
  generate: () => Promise<TimedGeneration>,
  config: { prompt: number; decode: number; reps: number },
): Promise<{ prefillMs: number; stepMs: number; throughput: Throughput }>;

/** Shared helpers for tests that read the PyTorch-made fixture checkpoints in tests/fixtures/. */
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

export const FIXTURES_DIR = join(import.meta.dirname, '..', 'fixtures');
/** Checkpoints written by Hugging Face transformers itself (tools/hf-fixtures), goldens from its own float64 forward. */
export const HF_FIXTURES_DIR = join(import.meta.dirname, '..', 'fixtures-hf');

export interface GoldenBlock {
  index: number;
  cosSum: number;
  angularSum: number;
  relMagnitudeSum: number;
  tokens: number;
  bi: number;
  angular: number;
  relMagnitude: number;
}
export interface GoldenNll {
  sum: number;
  count: number;
  mean: number;
  ppl: number;
}
export interface Golden {
  name: string;
  modelType: string;
  dtype: string;
  layers: number;
  vocabSize: number;
  ids: number[][];
  blocks: GoldenBlock[];
  lastLogits: number[][];
  nll: GoldenNll;
  removal: { removed: number[]; blocks: GoldenBlock[]; nll: GoldenNll; lastLogits: number[][] };
  attnOnlyRemoval: { removedAttention: number[]; blocks: GoldenBlock[]; nll: GoldenNll; lastLogits: number[][] };
  mlpOnlyRemoval: { removedMlp: number[]; blocks: GoldenBlock[]; nll: GoldenNll; lastLogits: number[][] };
}

export function fixtureNames(dir = FIXTURES_DIR): string[] {
  return readdirSync(dir, { withFileTypes: true })
    .filter((d) => d.isDirectory())
    .map((d) => d.name)
    .sort();
}

export function readGolden(name: string, dir = FIXTURES_DIR): Golden {
  return JSON.parse(readFileSync(join(dir, name, 'golden.json'), 'utf8')) as Golden;
}

/** Every fixture of both sets: the hand-written float64 reference's and transformers' own. */
export function allFixtures(): { label: string; name: string; dir: string }[] {
  return [
    ...fixtureNames(FIXTURES_DIR).map((name) => ({ label: name, name, dir: FIXTURES_DIR })),
    ...fixtureNames(HF_FIXTURES_DIR).map((name) => ({ label: `hf/${name}`, name, dir: HF_FIXTURES_DIR })),
  ];
}

export function maxRelativeError(actual: ArrayLike<number>, expected: ArrayLike<number>): number {
  let scale = 0;
  for (let i = 0; i < expected.length; i++) scale = Math.max(scale, Math.abs(expected[i]));
  let worst = 0;
  for (let i = 0; i < expected.length; i++) worst = Math.max(worst, Math.abs(actual[i] - expected[i]) / scale);
  return worst;
}

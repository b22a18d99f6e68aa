import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { checkHealable, type Healed, healSpans, removedSpans } from '../../src/analysis/heal.ts';
import { loadCheckpoint } from '../../src/engine/checkpoint.ts';
import { createBackend, Model } from '../../src/engine/model.ts';
import { makePlan } from '../../src/engine/plan.ts';
import { seededRandom } from '../../src/engine/sampling.ts';
import { decodeToF32, encodeAs, parseSafetensors, type TensorToWrite, writeSafetensors } from '../../src/engine/safetensors.ts';
import { directorySource } from '../../src/engine/sources.ts';
import { prunedCheckpointFiles } from '../../src/export/pruned-checkpoint.ts';
import { FIXTURES_DIR, maxRelativeError } from './fixtures.ts';

const ROOT = join(import.meta.dirname, '..', '..');

/** Names of the tensors the synthetic construction edits, per layout. */
interface Layout {
  /** Stored down projection of block p, and whether it is a Conv1D [in, out] (GPT-2). */
  down: (p: number) => string;
  downBias: (p: number) => string;
  conv1d: boolean;
  /** The pre-norm gains of a block (zeroed: the block then adds a constant). */
  preNorms: (i: number) => string[];
}

const GPT2: Layout = {
  down: (p) => `h.${p}.mlp.c_proj.weight`,
  downBias: (p) => `h.${p}.mlp.c_proj.bias`,
  conv1d: true,
  preNorms: (i) => [`h.${i}.ln_1.weight`, `h.${i}.ln_2.weight`],
};
const LLAMA: Layout = {
  down: (p) => `model.layers.${p}.mlp.down_proj.weight`,
  downBias: (p) => `model.layers.${p}.mlp.down_proj.bias`,
  conv1d: false,
  preNorms: (i) => [`model.layers.${i}.input_layernorm.weight`, `model.layers.${i}.post_attention_layernorm.weight`],
};

/**
 * A copy of a fixture (all F32) in which each removed span is exactly linear in the preceding block's MLP
 * output. The span's blocks get zero pre-norm gains, so each of their halves sees a constant input
 * (LayerNorm's bias, or qwen2's q/k/v biases after an all-zero RMSNorm) and adds a constant c to the stream.
 * Block p = start − 1 gets an MLP output whose last coordinate is exactly 1 (that output row of down_proj
 * zeroed, bias 1 there). Then x_j = H + M + c = H + M T with T = I + e_last ⊗ c: a fit must find it, and
 * the healed model must give the original model's logits to float precision.
 */
function exactlyLinearCopy(fixture: string, layout: Layout, removed: number[]): string {
  const dir = mkdtempSync(join(tmpdir(), `prunelab-heal-${fixture}-`));
  const source = join(FIXTURES_DIR, fixture);
  writeFileSync(join(dir, 'config.json'), readFileSync(join(source, 'config.json')));
  const stored = parseSafetensors(new Uint8Array(readFileSync(join(source, 'model.safetensors'))), 'model.safetensors');
  const values = new Map<string, { shape: number[]; data: Float32Array }>();
  for (const [name, t] of stored) if (['F32', 'F16', 'BF16'].includes(t.dtype)) values.set(name, { shape: t.shape, data: decodeToF32(t) });
  const hidden = (values.get(layout.down(0)) as { shape: number[] }).shape[layout.conv1d ? 1 : 0];
  for (const span of removedSpans(removed)) {
    const p = span.start - 1;
    const down = values.get(layout.down(p)) as { shape: number[]; data: Float32Array };
    const [rows, cols] = down.shape;
    for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) if ((layout.conv1d ? c : r) === hidden - 1) down.data[r * cols + c] = 0;
    const bias = values.get(layout.downBias(p)) ?? { shape: [hidden], data: new Float32Array(hidden) };
    bias.data[hidden - 1] = 1;
    values.set(layout.downBias(p), bias);
    for (let i = span.start; i < span.end; i++) for (const norm of layout.preNorms(i)) (values.get(norm) as { data: Float32Array }).data.fill(0);
  }
  const tensors: TensorToWrite[] = [...values].map(([name, v]) => ({ name, dtype: 'F32', shape: v.shape, bytes: encodeAs(v.data, 'F32') }));
  writeFileSync(join(dir, 'model.safetensors'), writeSafetensors(tensors));
  return dir;
}

function randomSequences(count: number, length: number, vocab: number, seed: number): number[][] {
  const random = seededRandom(seed);
  return Array.from({ length: count }, () => Array.from({ length }, () => Math.floor(random() * vocab)));
}

async function allLogits(model: Model, ids: number[], removed: number[]): Promise<Float32Array> {
  const { logits } = await model.backend.forward({ ids, plan: makePlan(model.spec.layers, { blocks: removed }), logits: 'all' });
  return logits as Float32Array;
}

describe('healing a span that is exactly linear in the MLP output', () => {
  const cases: { fixture: string; layout: Layout; removed: number[] }[] = [
    { fixture: 'gpt2', layout: GPT2, removed: [2] },
    { fixture: 'gpt2', layout: GPT2, removed: [1, 3] },
    { fixture: 'qwen2-bias', layout: LLAMA, removed: [2, 3] },
    { fixture: 'qwen2-bias', layout: LLAMA, removed: [1, 3] },
  ];
  for (const { fixture, layout, removed } of cases) {
    it(`${fixture}, removed [${removed}]: the healed model gives the original logits to float precision, plain removal does not`, async () => {
      const original = await Model.load(directorySource(exactlyLinearCopy(fixture, layout, removed)), 'cpu-reference');
      // Calibrate on random tokens; test on the fixture's own ids (tokens the fit never saw).
      const calibration = randomSequences(6, 40, original.spec.vocabSize, 7);
      const healed: Healed = await healSpans(original, calibration, removed, { ridge: 1e-12, openBackend: (checkpoint) => createBackend('cpu-reference', checkpoint) });
      try {
        expect(healed.spans.map((s) => s.block)).toEqual(removedSpans(removed).map((s) => s.start - 1));
        for (const s of healed.spans) {
          expect(s.residual).toBeLessThan(1e-9);
          expect(s.removalResidual).toBeGreaterThan(1e-3);
          expect(s.tokens).toBe(240);
        }
        const ids = JSON.parse(readFileSync(join(FIXTURES_DIR, fixture, 'ids.json'), 'utf8')) as number[][];
        for (const seq of ids) {
          const reference = await allLogits(original, seq, []);
          expect(maxRelativeError(await allLogits(healed.model, seq, removed), reference)).toBeLessThan(2e-5);
          expect(maxRelativeError(await allLogits(original, seq, removed), reference)).toBeGreaterThan(1e-2);
        }
        // The healed checkpoint as written (stored layout: GPT-2's Conv1D transposed) reloads to the same model.
        const { files } = prunedCheckpointFiles(healed.checkpoint, removed);
        const out = mkdtempSync(join(tmpdir(), 'prunelab-healed-'));
        for (const [name, bytes] of files) writeFileSync(join(out, name), bytes);
        const reloaded = await Model.load(directorySource(out), 'cpu-reference');
        expect(reloaded.spec.layers).toBe(original.spec.layers - removed.length);
        const seq = ids[0];
        expect(maxRelativeError(await allLogits(reloaded, seq, []), await allLogits(healed.model, seq, removed))).toBe(0);
        reloaded.dispose();
      } finally {
        healed.model.dispose();
        original.dispose();
      }
    });
  }
});

describe('where healing is refused', () => {
  it('a span starting at block 0 has no block before it', async () => {
    const checkpoint = await loadCheckpoint(directorySource(join(FIXTURES_DIR, 'gpt2')));
    expect(() => checkHealable(checkpoint.spec, [0, 1])).toThrow(/field remove: the span \[0–1\] starts at block 0: there is no block before it/);
    expect(() => checkHealable(checkpoint.spec, [])).toThrow(/nothing to heal/);
    expect(() => checkHealable(checkpoint.spec, [4])).toThrow(/block 4 does not exist/);
    expect(checkHealable(checkpoint.spec, [3, 1, 2])).toEqual([{ start: 1, end: 4 }]);
  });

  for (const [fixture, why] of [
    ['olmo2', /olmo2: .*post_feedforward_layernorm/],
    ['gemma2', /gemma2: .*post_feedforward_layernorm/],
    ['pythia', /gpt_neox: .*parallel/],
  ] as const) {
    it(`${fixture}: its MLP output is not added to the stream as is, so it says so instead of folding`, async () => {
      const checkpoint = await loadCheckpoint(directorySource(join(ROOT, 'tests', 'fixtures-hf', fixture)));
      expect(() => checkHealable(checkpoint.spec, [1])).toThrow(why);
    });
  }
});

interface HealGolden {
  removed: number[];
  calibration: number[][];
  evaluation: number[][];
  results: {
    ridge: number;
    spans: { start: number; end: number; block: number; residual: number; removalResidual: number; tokens: number }[];
    calibration: { original: number; removed: number; healed: number; tokens: number };
    evaluation: { original: number; removed: number; healed: number; tokens: number };
  }[];
}

describe('healing the embedded model against the float64 transformers reference (tools/heal/heal_reference.py)', () => {
  for (const name of ['4-5-6', '3-6-7']) {
    it(`removed [${name.replaceAll('-', ', ')}]: fit residuals and held-out perplexities match, and healing beats plain removal by ≥ 3 %`, async () => {
      const golden = JSON.parse(readFileSync(join(ROOT, 'tests', 'golden', `sotu-llama-heal-${name}.json`), 'utf8')) as HealGolden;
      const [expected] = golden.results;
      const model = await Model.load(directorySource(join(ROOT, 'public', 'models', 'sotu-llama')), 'cpu');
      const healed = await healSpans(model, golden.calibration, golden.removed, { ridge: expected.ridge, openBackend: (checkpoint) => createBackend('cpu', checkpoint) });
      try {
        expect(healed.spans.map(({ start, end, block, tokens }) => ({ start, end, block, tokens }))).toEqual(
          expected.spans.map(({ start, end, block, tokens }) => ({ start, end, block, tokens })),
        );
        healed.spans.forEach((s, k) => {
          expect(Math.abs(s.residual - expected.spans[k].residual)).toBeLessThan(1e-4);
          expect(Math.abs(s.removalResidual - expected.spans[k].removalResidual)).toBeLessThan(1e-4);
        });
        const plan = makePlan(model.spec.layers, { blocks: golden.removed });
        const removed = await model.perplexity(golden.evaluation, plan);
        const after = await healed.model.perplexity(golden.evaluation, plan);
        expect(after.tokens).toBe(expected.evaluation.tokens);
        expect(Math.abs(removed.ppl / expected.evaluation.removed - 1)).toBeLessThan(1e-4);
        // Fitted on float32 activations here, float64 there: the maps agree to about 1e-5.
        expect(Math.abs(after.ppl / expected.evaluation.healed - 1)).toBeLessThan(1e-3);
        expect(after.ppl).toBeLessThan(0.97 * removed.ppl);
      } finally {
        healed.model.dispose();
        model.dispose();
      }
    }, 300_000);
  }
});

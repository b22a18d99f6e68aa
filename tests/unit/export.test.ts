import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { unzipSync } from 'fflate';
import { describe, expect, it } from 'vitest';
import { type BlockScore, blockScores, rankBlocks } from '../../src/analysis/influence.ts';
import { loadCheckpoint } from '../../src/engine/checkpoint.ts';
import { Model } from '../../src/engine/model.ts';
import { makePlan } from '../../src/engine/plan.ts';
import { parseSafetensors } from '../../src/engine/safetensors.ts';
import { directorySource, type ModelSource } from '../../src/engine/sources.ts';
import { blockResults, CSV_HEADER, csvField, resultsCsv, resultsJson, toCsv } from '../../src/export/results.ts';
import { prunedCheckpointZip, prunedFolderName } from '../../src/export/zip.ts';
import { defaultState } from '../../src/share/url-state.ts';
import { FIXTURES_DIR } from '../engine/fixtures.ts';

/** The files of one folder inside an unzipped archive, as a source loadCheckpoint can read. */
function memorySource(files: Record<string, Uint8Array>, folder: string): ModelSource {
  return {
    label: `zip:${folder}`,
    async read(name) {
      return files[`${folder}/${name}`] ?? null;
    },
  };
}

const SCORES: BlockScore[] = [
  { index: 0, bi: 0.3125, angular: 0.11, relMagnitude: 0.9, tokens: 100 },
  { index: 1, bi: 0.0123456789012345, angular: 0.05, relMagnitude: 0.25, tokens: 100 },
  { index: 2, bi: 0.05, angular: 0.02, relMagnitude: 1.5e-7, tokens: 100 },
  { index: 3, bi: 0.2, angular: 0.2, relMagnitude: 0.4, tokens: 100 },
];

describe('pruned checkpoint zip', () => {
  it('unzipped and loaded back, it gives the perplexity of the original with those blocks skipped (llama-gqa)', async () => {
    const dir = join(FIXTURES_DIR, 'llama-gqa');
    const ids = JSON.parse(readFileSync(join(dir, 'ids.json'), 'utf8')) as number[][];
    const original = await Model.load(directorySource(dir), 'cpu');
    // The fast CPU backend was handed the blocks; the export reads them again.
    await original.checkpoint.makeResident();
    const removed = [1, 2];
    const zip = prunedCheckpointZip(original.checkpoint, removed, {
      metric: 'bi',
      scores: SCORES,
      createdAt: new Date('2025-01-02T03:04:05Z'),
      generationConfig: { do_sample: false, max_new_tokens: 16 },
    });
    const files = unzipSync(zip);
    const folder = prunedFolderName(original.checkpoint.label);
    expect(folder).toBe('llama-gqa-pruned');
    expect(Object.keys(files).sort()).toEqual([`${folder}/PRUNELAB.md`, `${folder}/config.json`, `${folder}/generation_config.json`, `${folder}/model.safetensors`]);

    const pruned = await Model.load(memorySource(files, folder), 'cpu');
    expect(pruned.spec.layers).toBe(2);
    const config = JSON.parse(new TextDecoder().decode(files[`${folder}/config.json`])) as Record<string, unknown>;
    expect(config.num_hidden_layers).toBe(2);
    const header = parseSafetensors(files[`${folder}/model.safetensors`], 'model.safetensors');
    expect([...header.keys()].some((n) => n.includes('layers.2.'))).toBe(false);

    const expected = await original.perplexity(ids, makePlan(4, { blocks: removed }));
    const actual = await pruned.perplexity(ids, makePlan(2));
    expect(Math.abs(actual.ppl - expected.ppl) / expected.ppl).toBeLessThan(1e-6);
    expect(actual.tokens).toBe(expected.tokens);
    // and it is a different model from the unpruned one
    const full = await original.perplexity(ids, makePlan(4));
    expect(Math.abs(full.ppl - actual.ppl) / full.ppl).toBeGreaterThan(1e-4);

    const note = new TextDecoder().decode(files[`${folder}/PRUNELAB.md`]);
    expect(note).toContain('Removed original blocks (0-based): **1, 2**');
    expect(note).toContain('Block Influence (`bi`)');
    expect(note).toContain('0←0, 1←3');
    expect(note).toContain('| 1 | 0.012346 | 0.050000 | 0.250000 | yes |');
    expect(note).toContain('2025-01-02T03:04:05.000Z');
  });

  it('a sharded checkpoint zips to one safetensors file that loads back', async () => {
    const original = await loadCheckpoint(directorySource(join(FIXTURES_DIR, 'qwen3-qknorm')));
    const files = unzipSync(prunedCheckpointZip(original, [0], { metric: null, scores: [] }));
    const folder = prunedFolderName(original.label);
    const back = await loadCheckpoint(memorySource(files, folder));
    expect(back.spec.layers).toBe(original.spec.layers - 1);
    expect(new TextDecoder().decode(files[`${folder}/PRUNELAB.md`])).toContain('Chosen by: hand');
  });

  it('the embedded model keeps its tokenizer files: the pruned copy encodes text the same way', async () => {
    const dir = join(FIXTURES_DIR, '..', '..', 'public', 'models', 'sotu-llama');
    const original = await Model.load(directorySource(dir), 'cpu');
    await original.checkpoint.makeResident();
    const files = unzipSync(prunedCheckpointZip(original.checkpoint, [0], { metric: 'angular', scores: [] }));
    const folder = prunedFolderName(original.checkpoint.label);
    expect(Object.keys(files)).toEqual(expect.arrayContaining([`${folder}/tokenizer.json`, `${folder}/tokenizer_config.json`]));
    const pruned = await Model.load(memorySource(files, folder), 'cpu');
    const text = 'The state of the Union is strong.';
    expect(pruned.requireTokenizer().encode(text)).toEqual(original.requireTokenizer().encode(text));
  });

  it('refuses a block that does not exist', async () => {
    const original = await loadCheckpoint(directorySource(join(FIXTURES_DIR, 'llama-gqa')));
    expect(() => prunedCheckpointZip(original, [4], { metric: 'bi', scores: [] })).toThrow(/block 4 does not exist/);
  });

  it('folder names come from paths, URLs and hub ids', () => {
    expect(prunedFolderName('Qwen/Qwen2.5-0.5B@main')).toBe('Qwen2.5-0.5B-pruned');
    expect(prunedFolderName('http://127.0.0.1:5173/models/sotu-llama/')).toBe('sotu-llama-pruned');
    expect(prunedFolderName('../../')).toBe('model-pruned');
  });
});

describe('results as CSV and JSON', () => {
  it('CSV rows hold exactly the numbers given, ranks by every metric and the removed flag', () => {
    const csv = resultsCsv(SCORES, [1, 2], 'bi');
    expect(csv.endsWith('\r\n')).toBe(true);
    const lines = csv.trimEnd().split('\r\n');
    expect(lines[0]).toBe(CSV_HEADER.join(','));
    expect(lines).toHaveLength(5);
    const rows = lines.slice(1).map((l) => l.split(','));
    for (const [k, s] of SCORES.entries()) {
      const row = rows[k];
      expect(Number(row[0])).toBe(s.index);
      expect(Number(row[1])).toBe(s.bi);
      expect(Number(row[2])).toBe(s.angular);
      expect(Number(row[3])).toBe(s.relMagnitude);
      expect(Number(row[4])).toBe(s.tokens);
    }
    // ranks: 1 = least influential
    expect(rows.map((r) => Number(r[5]))).toEqual([4, 1, 2, 3]); // bi: 1 < 2 < 3 < 0
    expect(rows.map((r) => Number(r[6]))).toEqual([3, 2, 1, 4]); // angular: 2 < 1 < 0 < 3
    expect(rows.map((r) => Number(r[7]))).toEqual([4, 2, 1, 3]); // relMagnitude: 2 < 1 < 3 < 0
    expect(rows.map((r) => r[8])).toEqual(rows.map((r) => r[5]));
    expect(rows.map((r) => r[9])).toEqual(['false', 'true', 'true', 'false']);
    expect(resultsCsv(SCORES, [], 'angular').split('\r\n')[1].split(',')[8]).toBe('3');
  });

  it('the ranks agree with rankBlocks, and scores from real block sums pass through', async () => {
    const sums = SCORES.map((s) => ({
      index: s.index,
      cosSum: (1 - s.bi) * s.tokens,
      angularSum: s.angular * s.tokens,
      relMagnitudeSum: s.relMagnitude * s.tokens,
      tokens: s.tokens,
    }));
    const scores = blockScores(sums);
    const results = blockResults(scores, []);
    for (const metric of ['bi', 'angular', 'relMagnitude'] as const) {
      const order = rankBlocks(scores, metric);
      expect(results.map((b) => order.indexOf(b.index) + 1)).toEqual(results.map((b) => b.rank[metric]));
    }
  });

  it('RFC 4180 quoting: commas, quotes and line breaks are quoted, quotes doubled; non-finite numbers are empty', () => {
    expect(csvField('plain')).toBe('plain');
    expect(csvField('a,b')).toBe('"a,b"');
    expect(csvField('say "hi"')).toBe('"say ""hi"""');
    expect(csvField('two\nlines')).toBe('"two\nlines"');
    expect(csvField('cr\r')).toBe('"cr\r"');
    expect(csvField(Number.NaN)).toBe('');
    expect(csvField(null)).toBe('');
    expect(csvField(-0.5)).toBe('-0.5');
    expect(
      toCsv([
        ['a', 'b'],
        [1, 'x,y'],
      ]),
    ).toBe('a,b\r\n1,"x,y"\r\n');
    const withNaN = resultsCsv([{ index: 0, bi: Number.NaN, angular: 0.1, relMagnitude: 0.2, tokens: 0 }], [], 'bi');
    // The error-bar columns (CI bounds, P(lowest)) stay empty without error bars.
    expect(withNaN.split('\r\n')[1]).toBe('0,,0.1,0.2,0,1,1,1,1,false,,,,,,,');
  });

  it('JSON holds the experiment (without quantised scores), full-precision blocks, removal and extras', () => {
    const state = { ...defaultState(), removed: [1, 2], scores: SCORES };
    const parsed = JSON.parse(
      resultsJson(state, SCORES, [2, 1, 2], { createdAt: '2025-01-01T00:00:00.000Z', perplexity: { original: 12.5, pruned: 14.25 }, link: 'https://x/#v1.abc' }),
    );
    expect(parsed.format).toBe('prunelab-results');
    expect(parsed.createdAt).toBe('2025-01-01T00:00:00.000Z');
    expect(parsed.metric).toBe('bi');
    expect(parsed.removed).toEqual([1, 2]);
    expect(parsed.experiment.scores).toBeUndefined();
    expect(parsed.experiment.prompt).toBe(state.prompt);
    expect(parsed.blocks.map((b: { bi: number }) => b.bi)).toEqual(SCORES.map((s) => s.bi));
    expect(parsed.blocks[1]).toEqual({
      index: 1,
      bi: SCORES[1].bi,
      angular: 0.05,
      relMagnitude: 0.25,
      tokens: 100,
      rank: { bi: 1, angular: 2, relMagnitude: 2 },
      removed: true,
      ci: null,
      pLowest: null,
    });
    expect(parsed.errorBars).toBeNull();
    expect(parsed.extras.perplexity).toEqual({ original: 12.5, pruned: 14.25 });
  });
});

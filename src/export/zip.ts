/**
 * The pruned checkpoint as one download: a zip (fflate, never hand-written) of the HF-layout files from
 * prunedCheckpointFiles plus PRUNELAB.md, which says which original blocks were removed, by what metric,
 * with what scores, and how the files were made.
 */
import { zipSync, type Zippable } from 'fflate';
import { type BlockScore, type Metric, METRICS } from '../analysis/influence.ts';
import type { SpanHeal } from '../analysis/heal.ts';
import { spanLabel } from '../analysis/heal-spans.ts';
import type { Checkpoint } from '../engine/checkpoint.ts';
import { PruneLabError } from '../engine/errors.ts';
import { prunedCheckpointFiles } from './pruned-checkpoint.ts';

export interface ZipNote {
  /** The metric the removed blocks were chosen by (null: chosen by hand). */
  metric: Metric | null;
  /** Per-block scores of the original model, as measured (may be empty). */
  scores: readonly BlockScore[];
  /** Written verbatim as generation_config.json when given (HF format). */
  generationConfig?: Record<string, unknown>;
  /** A few words on the calibration text, e.g. "moby-dick, 16 × 128 tokens". */
  calibration?: string;
  /** The share link of the experiment. */
  link?: string;
  /** Where the original weights came from (a hub model's commit), e.g. "owner/name at commit abc… (revision main)". */
  weights?: string;
  /** Folder name inside the zip (default: the model's name + "-pruned"). */
  folder?: string;
  /** Time stamp of the files and the note (default: now). */
  createdAt?: Date;
  /** Set when the removed spans were healed (the checkpoint passed in is then the healed one). */
  heal?: HealNote;
}

/** What PRUNELAB.md says about a heal (src/analysis/heal.ts). */
export interface HealNote {
  spans: readonly SpanHeal[];
  /** The relative ridge. */
  ridge: number;
  /** The calibration data the maps were fitted on, e.g. "moby-dick.txt, 64 × 256 tokens". */
  calibration: string;
  /** Perplexities measured when it was made, e.g. on the calibration and a held-out text. */
  perplexity?: readonly { data: string; original?: number; removed: number; healed: number }[];
}

/** fflate writes no zip64 records: every offset must fit in 32 bits. */
const ZIP_LIMIT = 0xffffffff - (1 << 20);

/** "owner/name@rev", "/models/sotu-llama/", "sotu-llama" -> "name-pruned" / "sotu-llama-pruned" (or -healed). */
export function prunedFolderName(label: string, suffix: 'pruned' | 'healed' = 'pruned'): string {
  const base =
    label
      .replace(/[?#].*$/, '')
      .replace(/\/+$/, '')
      .split('/')
      .pop()
      ?.replace(/@.*$/, '') ?? '';
  const safe = base
    .replace(/[^\w.-]+/g, '_')
    .replace(/^[._]+/, '')
    .slice(0, 80);
  return `${safe || 'model'}-${suffix}`;
}

const fmt = (v: number) => (Number.isFinite(v) ? v.toFixed(6) : '—');

export function prunelabNote(checkpoint: Checkpoint, removed: readonly number[], keptBlocks: readonly number[], note: ZipNote): string {
  const layers = checkpoint.spec.layers;
  const gone = [...removed].sort((a, b) => a - b);
  const metricLabel = note.metric ? (METRICS.find((m) => m.id === note.metric)?.label ?? note.metric) : null;
  const heal = note.heal;
  const healedBlocks = heal ? heal.spans.map((s) => s.block) : [];
  const lines = [
    `# ${prunedFolderName(checkpoint.label, heal ? 'healed' : 'pruned')}`,
    '',
    `A copy of **${checkpoint.label}** with ${gone.length} of its ${layers} transformer blocks removed${heal ? ' and healed' : ''}, made with PruneLab.`,
    '',
    `- Removed original blocks (0-based): **${gone.join(', ') || 'none'}**`,
    `- Chosen by: ${metricLabel ? `${metricLabel} (\`${note.metric}\`), lowest first` : 'hand'}`,
    ...(note.calibration ? [`- Calibration text: ${note.calibration}`] : []),
    `- Blocks kept: ${keptBlocks.length} (new \`layers.N\` ← original block: ${keptBlocks.map((old, k) => `${k}←${old}`).join(', ')})`,
    `- Made: ${(note.createdAt ?? new Date()).toISOString()}`,
    ...(note.weights ? [`- Original weights: ${note.weights}`] : []),
    ...(note.link ? [`- Experiment: ${note.link}`] : []),
    '',
    '## How it was made',
    '',
    'The tensors of the removed blocks were dropped and the remaining blocks renumbered from 0 in their',
    'original order; every other tensor is byte for byte as stored in the original',
    `(${checkpoint.dtypes.join(', ')})${heal ? `, except the MLP down projection of original block${healedBlocks.length > 1 ? 's' : ''} ${healedBlocks.join(', ')}, which carries the fitted map (see Healing)` : ''}.`,
    'config.json has the new layer count (and any per-layer lists cut to',
    'match); tokenizer files are copied unchanged. Load it like the original, e.g.',
    '`AutoModelForCausalLM.from_pretrained("<this folder>")`, or `npx prunelab ppl --model <this folder> ...`.',
  ];
  if (heal) lines.push('', ...healSection(heal, keptBlocks));
  if (note.scores.length > 0) {
    const tokens = note.scores[0].tokens;
    lines.push(
      '',
      `## Block scores of the original (${tokens} calibration tokens)`,
      '',
      'BI = 1 − mean cos(x_in, x_out) (ShortGPT); angular = mean arccos(cos)/π; relMagnitude = mean ‖f(x)‖/‖x + f(x)‖.',
      '',
      '| block | BI | angular | relMagnitude | removed |',
      '|---:|---:|---:|---:|:---:|',
      ...[...note.scores]
        .sort((a, b) => a.index - b.index)
        .map((s) => `| ${s.index} | ${fmt(s.bi)} | ${fmt(s.angular)} | ${fmt(s.relMagnitude)} | ${gone.includes(s.index) ? 'yes' : ''} |`),
    );
  }
  return `${lines.join('\n')}\n`;
}

function healSection(heal: HealNote, keptBlocks: readonly number[]): string[] {
  const lines = [
    '## Healing',
    '',
    'Each removed span [i, j) was replaced without training by one linear map T (ReplaceMe, Shopkhoev et al. 2025),',
    'fitted by ridge least squares so that block i − 1 writes M T instead of its MLP output M, with',
    "H + M T ≈ x_j (H: the stream before that MLP's add; x_j: the span's output in the original), and folded",
    "into that block's down projection (W ← Tᵀ W, b ← b T), so this is an ordinary checkpoint.",
    `Fitted on: ${heal.calibration}; ridge λ = ${heal.ridge} × trace(MᵀM) / hidden.`,
    '',
    '| removed span | healed into original block (now) | calibration tokens | fit residual ‖H + MT − x_j‖² / ‖x_j − H‖² | plain removal (T = I) |',
    '|---|---:|---:|---:|---:|',
    ...heal.spans.map((s) => `| ${spanLabel(s)} | ${s.block} (${keptBlocks.indexOf(s.block)}) | ${s.tokens} | ${fmt(s.residual)} | ${fmt(s.removalResidual)} |`),
  ];
  if (heal.perplexity?.length) {
    lines.push(
      '',
      '| perplexity on | original | blocks removed | removed and healed |',
      '|---|---:|---:|---:|',
      ...heal.perplexity.map((p) => `| ${p.data} | ${p.original === undefined ? '—' : p.original.toFixed(3)} | ${p.removed.toFixed(3)} | ${p.healed.toFixed(3)} |`),
    );
  }
  return lines;
}

/** The zip's bytes: `<folder>/config.json, model.safetensors, tokenizer files, [generation_config.json], PRUNELAB.md`. */
export function prunedCheckpointZip(checkpoint: Checkpoint, removed: readonly number[], note: ZipNote): Uint8Array {
  const gone = [...new Set(removed)].sort((a, b) => a - b);
  const { files, keptBlocks } = prunedCheckpointFiles(checkpoint, gone, {
    prunelab_removed_blocks: gone.join(','),
    ...(note.metric ? { prunelab_metric: note.metric } : {}),
    ...(note.heal ? { prunelab_healed_into: note.heal.spans.map((s) => s.block).join(',') } : {}),
  });
  const encode = (text: string) => new TextEncoder().encode(text);
  if (note.generationConfig) files.set('generation_config.json', encode(`${JSON.stringify(note.generationConfig, null, 2)}\n`));
  files.set('PRUNELAB.md', encode(prunelabNote(checkpoint, gone, keptBlocks, note)));
  const total = [...files.values()].reduce((a, b) => a + b.byteLength, 0);
  if (total > ZIP_LIMIT) throw new PruneLabError(`the pruned checkpoint is ${(total / 2 ** 30).toFixed(1)} GiB; a zip download holds at most 4 GiB`, { field: 'export' });
  const folder = note.folder ?? prunedFolderName(checkpoint.label, note.heal ? 'healed' : 'pruned');
  const mtime = note.createdAt ?? new Date();
  const entries: Zippable = {};
  for (const [name, bytes] of files) {
    // Weights barely compress; storing them keeps the export fast.
    entries[`${folder}/${name}`] = [bytes, { level: name.endsWith('.safetensors') ? 0 : 6, mtime }];
  }
  return zipSync(entries, { mtime });
}

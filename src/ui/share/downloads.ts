/**
 * What leaves the browser: the pruned checkpoint (built in the worker), the chart's numbers as JSON / CSV,
 * and the influence chart as SVG (computed styles inlined, so it looks the same outside the page) and PNG.
 */
import { parseRemovalKey } from '../../engine/plan.ts';
import { lowestBlocks } from '../../analysis/influence.ts';
import { prunedFolderName } from '../../export/zip.ts';
import { resultsCsv, resultsJson } from '../../export/results.ts';
import type { HandoffFormat, HandoffSource } from '../../export/handoff.ts';
import { parseHubId } from '../../engine/sources.ts';
import pkg from '../../../package.json';
import { type StrategiesData, strategiesCsv, strategiesJson, strategiesValue } from '../../export/strategies-results.ts';
import { strategies } from '../strategies/state.svelte.ts';
import { engine } from '../engine-client.ts';
import { BUILTIN_MODEL, lab, notify } from '../state.svelte.ts';
import { currentExperiment, currentShareUrl, share } from './url-sync.svelte.ts';

/** Saves bytes as a file through a temporary <a download>. */
export function saveFile(data: BlobPart, fileName: string, type: string): void {
  const url = URL.createObjectURL(new Blob([data], { type }));
  const link = document.createElement('a');
  link.href = url;
  link.download = fileName;
  link.style.display = 'none';
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 60_000);
}

function baseName(): string {
  return prunedFolderName(lab.model?.name ?? 'model').replace(/-pruned$/, '');
}

function calibrationLabel(): string {
  const source = lab.calibration;
  const name = source.kind === 'builtin' ? source.name : source.label;
  return `${name}, up to ${lab.windows.maxSequences} × ${lab.windows.seqLen} tokens`;
}

/** The metric that chose the cut, when the cut is exactly the n lowest by the metric shown. */
function chosenBy() {
  const removed = lab.removal.blocks;
  if (removed.length === 0 || lab.scores.length === 0) return null;
  const lowest = lowestBlocks(lab.scores, lab.metric, removed.length);
  return lowest.join(',') === removed.join(',') ? lab.metric : null;
}

export async function exportPrunedModel(): Promise<void> {
  if (!lab.model) return;
  const removal = lab.removal;
  const outcome = await engine.prunedZip({
    removed: [...removal.blocks],
    metric: chosenBy(),
    scores: lab.scores,
    calibration: lab.scores.length ? calibrationLabel() : undefined,
    link: currentShareUrl(),
    weights: weightsLabel(),
  });
  if (!outcome.ok) {
    notify('error', 'Could not export the pruned model', outcome.message, 'The lab is unchanged; try again with fewer blocks cut.');
    return;
  }
  saveFile(outcome.value.bytes as Uint8Array<ArrayBuffer>, outcome.value.fileName, 'application/zip');
  if (removal.attention.length + removal.mlp.length > 0) {
    notify(
      'info',
      'Half-block cuts are not in the zip',
      `An HF checkpoint can only drop whole blocks: the attention / MLP cuts (${[...removal.attention, ...removal.mlp].join(', ')}) are kept in the exported model.`,
    );
  }
}

/** The healed model (the cut's spans replaced by fitted maps, src/analysis/heal.ts) as a zip, with the perplexities shown. */
export async function exportHealedModel(): Promise<void> {
  const summary = lab.heal?.summary;
  if (!lab.model || !summary) return;
  const [original, removed, healed] = [lab.pplOriginal.result, lab.pplPruned.result, lab.pplHealed.result];
  const evaluation = lab.evaluation;
  const evalName = evaluation.kind === 'builtin' ? evaluation.name : evaluation.label;
  const outcome = await engine.healedZip({
    removed: summary.removed,
    metric: chosenBy(),
    scores: lab.scores,
    calibration: lab.scores.length ? calibrationLabel() : undefined,
    link: currentShareUrl(),
    perplexity:
      removed && healed
        ? [
            {
              data: `${evalName}, first ${lab.evalWindows.maxSequences} × ${lab.evalWindows.seqLen} tokens (held out)`,
              original: original?.ppl,
              removed: removed.ppl,
              healed: healed.ppl,
            },
          ]
        : undefined,
  });
  if (!outcome.ok) {
    notify('error', 'Could not export the healed model', outcome.message, 'The lab is unchanged; try again.');
    return;
  }
  saveFile(outcome.value.bytes as Uint8Array<ArrayBuffer>, outcome.value.fileName, 'application/zip');
}

/** A hub model's weights as exports name them: the repository at its commit (the revision as given alongside). */
function weightsLabel(): string | undefined {
  const source = lab.modelSource;
  if (source?.kind !== 'hub') return undefined;
  const { repo, revision } = parseHubId(source.id);
  return source.commit ? `${repo} at commit ${source.commit} (revision ${revision})` : `${repo} at revision ${revision} (not resolved to a commit)`;
}

/** Where the hand-off files load the original from: the hub id, the embedded model's folder in the repository, or a folder the user names. */
function handoffSource(): HandoffSource {
  const source = lab.modelSource;
  if (source?.kind === 'hub') {
    const { repo, revision } = parseHubId(source.id);
    return { kind: 'hub', repo, revision, ...(source.commit ? { commit: source.commit } : {}) };
  }
  if (source === null || source.kind === 'builtin') {
    const name = source?.name ?? BUILTIN_MODEL;
    return { kind: 'path', path: `public/models/${name}`, label: name };
  }
  return { kind: 'path', path: null, label: lab.model?.name ?? 'model' };
}

/** The cut as a transformers script or a mergekit config (written in the worker, from the loaded checkpoint's config). */
export async function exportHandoff(format: HandoffFormat): Promise<void> {
  if (!lab.model) return;
  const outcome = await engine.handoff({
    format,
    source: handoffSource(),
    removed: [...lab.removal.blocks],
    version: pkg.version,
    chosenBy: { metric: chosenBy(), calibration: lab.scores.length ? calibrationLabel() : undefined, link: currentShareUrl() },
  });
  if (!outcome.ok) {
    notify('error', `Could not write the ${format} hand-off`, outcome.message);
    return;
  }
  saveFile(outcome.value.text, outcome.value.fileName, format === 'transformers' ? 'text/x-python' : 'application/yaml');
  const { attention, mlp } = lab.removal;
  if (attention.length + mlp.length > 0) {
    notify(
      'info',
      'Half-block cuts are not in the hand-off',
      `transformers and mergekit drop whole blocks: the attention / MLP cuts (${[...attention, ...mlp].join(', ')}) are not applied.`,
    );
  }
}

/** A hub model's revision as given and the commit it was loaded at (exports record both). */
function hubRevision(): { revision?: string; commit?: string | null } {
  const source = lab.modelSource;
  if (source?.kind !== 'hub') return {};
  return { revision: parseHubId(source.id).revision, commit: source.commit ?? null };
}

function resultExtras(): Record<string, unknown> {
  const model = lab.model;
  const ppl = (side: typeof lab.pplOriginal) => (side.result ? { ...side.result, removal: parseRemovalKey(side.removalKey) } : null);
  return {
    model: model
      ? {
          name: model.name,
          source: model.source,
          ...hubRevision(),
          modelType: model.modelType,
          blocks: model.blocks,
          parameters: model.parameters,
          dtypes: model.dtypes,
        }
      : null,
    scoresFrom: share.fromLink ? 'link' : 'measured',
    calibration: calibrationLabel(),
    scoredTokens: lab.scoreSummary?.tokens ?? lab.scores[0]?.tokens ?? null,
    perplexity: {
      evaluation: lab.evaluation.kind === 'builtin' ? lab.evaluation.name : lab.evaluation.label,
      windows: { ...lab.evalWindows },
      original: ppl(lab.pplOriginal),
      pruned: ppl(lab.pplPruned),
    },
    removedAttention: [...lab.removal.attention],
    removedMlp: [...lab.removal.mlp],
    link: currentShareUrl(),
    strategies: strategiesValue(strategiesData()),
  };
}

// ---------------------------------------------------------------- strategies

/** The Strategies section's results as they stand: sweep (finished or cancelled), MC, MC along a sweep, speed. */
export function strategiesData(): StrategiesData {
  const run = strategies.run;
  const mc = strategies.mc.value;
  const along = strategies.mcAlong;
  const speed = strategies.speed;
  return {
    sweep:
      run && !run.running
        ? {
            layers: run.layers,
            maxRemoved: run.settings.maxRemoved,
            seeds: run.settings.seeds,
            calibrationWindows: { ...run.settings.calibrationWindows },
            evaluation: run.settings.evaluation.kind === 'builtin' ? run.settings.evaluation.name : run.settings.evaluation.label,
            evaluationWindows: { ...run.settings.evaluationWindows },
            evaluationTokens: run.evaluationTokens,
            fromLink: !!run.fromLink,
            ...(run.measuredOn ? { measuredOn: run.measuredOn } : {}),
            steps: run.steps,
          }
        : null,
    mc: mc
      ? {
          source: strategies.mcSource.kind === 'cloze' ? `cloze (${strategies.clozeCount} questions)` : strategies.mcSource.label,
          removal: mc.removal,
          original: mc.original,
          pruned: mc.pruned,
        }
      : null,
    mcAlong: along.strategy && along.points.some(Boolean) ? { strategy: along.strategy, steps: along.steps, points: along.points } : null,
    speed: speed.points.some(Boolean) ? { layers: speed.layers, orderLabel: speed.orderLabel, points: speed.points } : null,
  };
}

export function exportStrategiesJson(): void {
  saveFile(strategiesJson(strategiesData(), { model: lab.model?.name ?? null, link: currentShareUrl() }), `${baseName()}-prunelab-strategies.json`, 'application/json');
}

export function exportStrategiesCsv(): void {
  saveFile(strategiesCsv(strategiesData()), `${baseName()}-prunelab-strategies.csv`, 'text/csv');
}

function sweepSvg(): SVGSVGElement | null {
  // The plot, not a legend swatch (also an <svg>).
  return document.querySelector<SVGSVGElement>('[data-testid=sweep-chart] svg[role=img]');
}

export function exportSweepSvg(): void {
  const svg = sweepSvg();
  if (svg) saveFile(chartSvgText(svg, sweepLegend()).text, `${baseName()}-sweep.svg`, 'image/svg+xml');
}

export async function exportSweepPng(): Promise<void> {
  const svg = sweepSvg();
  if (!svg) return;
  const { text, width, height } = chartSvgText(svg, sweepLegend());
  try {
    saveFile(await svgToPng(text, width, height), `${baseName()}-sweep.png`, 'image/png');
  } catch (e) {
    notify('error', 'Could not draw the sweep as PNG', (e as Error)?.message ?? String(e), 'The SVG export holds the same picture.');
  }
}

export function exportResultsJson(): void {
  const state = currentExperiment();
  saveFile(resultsJson(state, lab.scores, lab.removal.blocks, resultExtras(), errorBars()), `${baseName()}-prunelab-results.json`, 'application/json');
}

/** The intervals of the scores shown (computed here or from the link) and the slider cut's stability. */
function errorBars() {
  return { intervals: lab.intervals, stability: lab.stability };
}

export function exportResultsCsv(): void {
  saveFile(resultsCsv(lab.scores, lab.removal.blocks, lab.metric, errorBars()), `${baseName()}-prunelab-results.csv`, 'text/csv');
}

// ---------------------------------------------------------------- chart images

/** Presentation properties copied from the page's computed styles onto each element of the copy. */
const SVG_STYLE = [
  'fill',
  'fill-opacity',
  'stroke',
  'stroke-width',
  'stroke-dasharray',
  'stroke-opacity',
  // Labels with a halo (a wide stroke drawn under the fill) keep it under the fill in the file too.
  'paint-order',
  'stroke-linejoin',
  'opacity',
  'font-family',
  'font-size',
  'font-weight',
  'font-variant-numeric',
  'text-anchor',
  'dominant-baseline',
  'visibility',
  'display',
] as const;

function influenceSvg(): SVGSVGElement | null {
  return document.querySelector<SVGSVGElement>('[data-testid=influence-chart] svg[role=group]');
}

function influenceLegend(): Element | null {
  return document.querySelector('[data-testid=influence-chart] .legend');
}

function sweepLegend(): Element | null {
  return document.querySelector('[data-testid=sweep-chart] .legend');
}

/** Copies the computed SVG styles of `original` and its descendants onto `copy` (same tree), dropping page-only attributes. */
function inlineStyles(original: Element, copy: Element): void {
  const originals = [original, ...original.querySelectorAll('*')];
  const copies = [copy, ...copy.querySelectorAll('*')];
  originals.forEach((element, i) => {
    const target = copies[i] as SVGElement;
    const computed = getComputedStyle(element);
    const style = SVG_STYLE.map((p) => `${p}:${computed.getPropertyValue(p)}`).join(';');
    target.setAttribute('style', style);
    target.removeAttribute('class');
    for (const attribute of ['role', 'tabindex', 'aria-pressed', 'aria-hidden', 'data-testid']) target.removeAttribute(attribute);
  });
}

const SVG_NS = 'http://www.w3.org/2000/svg';
const LEGEND_ROW = 18;

/**
 * The chart's legend drawn into the file, below the plot: every `[data-legend-item]` under `legend` (its value is
 * the label) whose series is shown (not aria-pressed="false"), with its `<svg>` swatch copied, styles inlined.
 * Rows wrap at the chart's width. Returns the group and its height.
 */
function legendGroup(legend: Element, x: number, y: number, width: number): { group: SVGGElement; height: number } | null {
  const items = [...legend.querySelectorAll<HTMLElement>('[data-legend-item]')].filter((item) => item.getAttribute('aria-pressed') !== 'false');
  if (items.length === 0) return null;
  const group = document.createElementNS(SVG_NS, 'g');
  const measure = document.createElement('canvas').getContext('2d');
  let cx = 0;
  let row = 0;
  for (const item of items) {
    const label = item.dataset.legendItem ?? '';
    const swatch = item.querySelector('svg');
    const font = getComputedStyle(item);
    if (measure) measure.font = `${font.fontWeight} ${font.fontSize} ${font.fontFamily}`;
    const swatchWidth = swatch ? Number(swatch.getAttribute('width')) || 12 : 0;
    const swatchHeight = swatch ? Number(swatch.getAttribute('height')) || 12 : 0;
    const itemWidth = swatchWidth + 4 + (measure ? measure.measureText(label).width : label.length * 6.5) + 14;
    if (cx > 0 && cx + itemWidth > width) {
      cx = 0;
      row++;
    }
    const top = row * LEGEND_ROW;
    if (swatch) {
      const copy = swatch.cloneNode(true) as SVGSVGElement;
      inlineStyles(swatch, copy);
      copy.setAttribute('x', String(x + cx));
      copy.setAttribute('y', String(y + top + (LEGEND_ROW - swatchHeight) / 2));
      group.append(copy);
    }
    const text = document.createElementNS(SVG_NS, 'text');
    text.textContent = label;
    text.setAttribute('x', String(x + cx + swatchWidth + 4));
    text.setAttribute('y', String(y + top + LEGEND_ROW / 2));
    text.setAttribute('style', `fill:${font.color};font-family:${font.fontFamily};font-size:${font.fontSize};dominant-baseline:central`);
    group.append(text);
    cx += itemWidth;
  }
  return { group, height: (row + 1) * LEGEND_ROW + 6 };
}

/**
 * The chart as a standalone SVG document: styles inlined, interaction layers dropped, a background added, and
 * the chart's legend (the HTML one beside it on the page) drawn below the plot when given.
 */
export function chartSvgText(svg: SVGSVGElement, legend: Element | null = null): { text: string; width: number; height: number } {
  // The chart lets long axis labels overflow its box on the page; the file's box takes them in.
  const box = { x: 0, y: 0, width: Number(svg.getAttribute('width')) || svg.clientWidth, height: Number(svg.getAttribute('height')) || svg.clientHeight };
  try {
    const content = svg.getBBox();
    const left = Math.floor(Math.min(0, content.x)) - (content.x < 0 ? 4 : 0);
    const top = Math.floor(Math.min(0, content.y)) - (content.y < 0 ? 4 : 0);
    const right = Math.max(box.width, Math.ceil(content.x + content.width));
    const bottom = Math.max(box.height, Math.ceil(content.y + content.height));
    Object.assign(box, { x: left, y: top, width: right - left, height: bottom - top });
  } catch {
    // not rendered (no layout): keep the chart's own box
  }
  const copy = svg.cloneNode(true) as SVGSVGElement;
  inlineStyles(svg, copy);
  for (const hit of copy.querySelectorAll('rect[aria-label]')) hit.remove();
  const drawn = legend ? legendGroup(legend, box.x + 8, box.y + box.height + 2, box.width - 16) : null;
  if (drawn) {
    copy.append(drawn.group);
    box.height += drawn.height;
  }
  const { width, height } = box;
  copy.setAttribute('xmlns', SVG_NS);
  copy.setAttribute('viewBox', `${box.x} ${box.y} ${width} ${height}`);
  copy.setAttribute('width', String(width));
  copy.setAttribute('height', String(height));
  copy.style.setProperty('overflow', 'visible');
  const background = document.createElementNS(SVG_NS, 'rect');
  background.setAttribute('x', String(box.x));
  background.setAttribute('y', String(box.y));
  background.setAttribute('width', String(width));
  background.setAttribute('height', String(height));
  background.setAttribute('style', `fill:${getComputedStyle(svg.closest('.panel') ?? document.body).backgroundColor}`);
  const title = document.createElementNS(SVG_NS, 'title');
  title.textContent = `PruneLab · ${lab.model?.name ?? 'model'} · ${svg.getAttribute('aria-label') ?? 'block influence'}`;
  copy.prepend(title, background);
  return { text: `<?xml version="1.0" encoding="UTF-8"?>\n${new XMLSerializer().serializeToString(copy)}\n`, width, height };
}

export function exportChartSvg(): void {
  const svg = influenceSvg();
  if (!svg) return;
  saveFile(chartSvgText(svg, influenceLegend()).text, `${baseName()}-influence-${lab.metric}.svg`, 'image/svg+xml');
}

/** Draws the SVG onto a canvas at `scale`× and encodes it as PNG. */
export async function svgToPng(text: string, width: number, height: number, scale = 2): Promise<Blob> {
  const url = URL.createObjectURL(new Blob([text], { type: 'image/svg+xml' }));
  try {
    const image = new Image();
    image.src = url;
    await image.decode();
    const canvas = document.createElement('canvas');
    canvas.width = Math.round(width * scale);
    canvas.height = Math.round(height * scale);
    const context = canvas.getContext('2d');
    if (!context) throw new Error('this browser gives no 2D canvas');
    context.scale(scale, scale);
    context.drawImage(image, 0, 0, width, height);
    return await new Promise<Blob>((resolve, reject) => canvas.toBlob((blob) => (blob ? resolve(blob) : reject(new Error('the canvas could not be encoded as PNG'))), 'image/png'));
  } finally {
    URL.revokeObjectURL(url);
  }
}

export async function exportChartPng(): Promise<void> {
  const svg = influenceSvg();
  if (!svg) return;
  const { text, width, height } = chartSvgText(svg, influenceLegend());
  try {
    saveFile(await svgToPng(text, width, height), `${baseName()}-influence-${lab.metric}.png`, 'image/png');
  } catch (e) {
    notify('error', 'Could not draw the chart as PNG', (e as Error)?.message ?? String(e), 'The SVG export holds the same picture.');
  }
}

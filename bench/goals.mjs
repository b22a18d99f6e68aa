// The goals of issue 13, computed from one bench run's rows (run.mjs writes them to results.goals).
import { median } from './measure.mjs';

/**
 * The goals computed from this run's rows, per model: value null (and met false) with `why` when a row
 * they need did not run. Peer ratios compare our WebGPU backend in Chromium with the fair peer on
 * transformers.js WebGPU in the same Chromium, like with like: our F16 weights vs the peer's fp16 when that
 * row ran (else fp32, said in `basis`). The engine-only goals use our Node WebGPU row (Dawn, the same kernels).
 */
const okRow = (results, model, runtime, variant) =>
  results.runs.find((r) => r.model === model && r.runtime === runtime && (variant === undefined || r.variant === variant) && r.result && !r.result.error)?.result ?? null;

/**
 * Which fair-peer variant the peer goals compare with: like with like (our F16 weights vs fp16) when that row
 * ran, else the other (run.mjs re-runs this pair for the paired rounds).
 */
export function peerChoice(results, model) {
  const dtypes = okRow(results, model, 'ours-webgpu-node')?.model?.dtypes ?? okRow(results, model, 'ours-webgpu-chromium')?.model?.dtypes ?? [];
  const want = dtypes.includes('F16') ? ['fp16', 'fp32'] : ['fp32', 'fp16'];
  return { dtypes, want, variant: want.find((v) => okRow(results, model, 'tjs-webgpu-chromium', v)?.throughput) ?? null };
}


export function computeGoals(results, models) {
  const ok = (model, runtime, variant) => okRow(results, model, runtime, variant);
  const goals = [];
  const add = (id, model, value, goal, pass, basis, why) => {
    const finite = Number.isFinite(value);
    goals.push({ id, model, value: finite ? Number(value.toFixed(4)) : null, goal, met: finite ? pass(value) : false, basis, ...(finite ? {} : { why }) });
  };
  for (const model of models) {
    const missingWhy = (variant) => {
      const run = results.runs.find((r) => r.model === model && r.runtime === 'tjs-webgpu-chromium' && r.variant === variant);
      return run?.skipped ?? run?.result?.error ?? 'not selected';
    };
    const ours = ok(model, 'ours-webgpu-chromium')?.throughput;
    const { dtypes, want, variant: peerVariant } = peerChoice(results, model);
    const peer = peerVariant ? ok(model, 'tjs-webgpu-chromium', peerVariant).throughput : null;
    // the rows and the paired rounds run after them (run.mjs): the median of the per-pair ratios
    const pairs = results.paired?.[model]?.variant === peerVariant ? results.paired[model].rounds : ours && peer ? [{ ours, peer }] : [];
    const pairedNote = pairs.length > 1 ? `; median of ${pairs.length} back-to-back pairs (the rows + ${pairs.length - 1} alternating re-runs)` : '';
    const peerBasis = peerVariant
      ? `ours-webgpu-chromium (${dtypes.join('+') || '?'} weights) ÷ tjs-webgpu-chromium fair peer ${peerVariant}${peerVariant !== want[0] ? ` (the like-for-like ${want[0]} peer did not run: ${missingWhy(want[0])})` : ''}${pairedNote}`
      : 'ours-webgpu-chromium ÷ tjs-webgpu-chromium fair peer';
    const peerWhy = !ours ? 'our WebGPU Chromium row has no throughput' : 'no fair-peer WebGPU row ran (see "Not measured")';
    const ratio = (key) => (ours && peer ? median(pairs.map((p) => p.ours[key] / p.peer[key])) : Number.NaN);
    add('decode-vs-peer-webgpu', model, ratio('decodeTokS'), '≥ 2', (v) => v >= 2, peerBasis, peerWhy);
    add('prefill-vs-peer-webgpu', model, ratio('prefillTokS'), '≥ 1', (v) => v >= 1, peerBasis, peerWhy);
    const node = ok(model, 'ours-webgpu-node');
    const cases = node?.pruned?.cases ?? [];
    // the paired per-round ratio (engine-bench.ts): load drifting between rounds does not move it
    const deviations = cases.map((c) => Math.abs(c.bytesDeviationPaired ?? c.bytesDeviation));
    add(
      'pruned-decode-vs-bytes-ideal',
      model,
      deviations.length && deviations.every(Number.isFinite) ? Math.max(...deviations) : Number.NaN,
      '≤ 0.10',
      (v) => v <= 0.1,
      'ours-webgpu-node: max over k of |paired decode-time ratio ÷ bytes-ideal − 1| (median over rounds of the pruned ÷ full median step in the same round), bytes-ideal = (fixed bytes + kept blocks’ bytes) / all bytes read per decode step',
      'no pruned section in our Node WebGPU row',
    );
    add(
      'scoring-overhead',
      model,
      node?.scoring?.overheadPaired ?? node?.scoring?.overhead ?? Number.NaN,
      '≤ 0.10',
      (v) => v <= 0.1,
      'ours-webgpu-node: stats forward ÷ plain forward − 1, the median over reps of the two timed back to back (paired)',
      'no scoring section in our Node WebGPU row',
    );
    add(
      'toggle-ms',
      model,
      node?.toggle?.planChangeToSubmitMs?.max ?? Number.NaN,
      '< 50',
      (v) => v < 50,
      'ours-webgpu-node: worst plan change → queue.submit (ms)',
      'no toggle section in our Node WebGPU row',
    );
    add('peak-gpu-memory-ratio', model, node?.memory?.ratio ?? Number.NaN, '≤ 1.3', (v) => v <= 1.3, 'ours-webgpu-node: peak live GPU buffer bytes ÷ checkpoint weight bytes', 'no memory section in our Node WebGPU row');
    const perBlock = cases.filter((c) => Number.isFinite(c.dispatches) && c.k > 0).map((c) => (node.pruned.fullDispatches - c.dispatches) / c.k);
    add(
      'dispatches-per-block-decode',
      model,
      perBlock.length ? Math.max(...perBlock) : Number.NaN,
      '≤ 6',
      (v) => v <= 6,
      'ours-webgpu-node: (dispatches of a full decode step − with k blocks removed) ÷ k',
      'no pruned section (with dispatch counts) in our Node WebGPU row',
    );
  }
  return goals;
}


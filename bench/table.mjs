// Renders bench results (run.mjs's JSON) as the markdown table in bench/results/table.md. Every row has
// a measured figure or says why there is none.

const OURS = ['ours-webgpu-node', 'ours-webgpu-chromium', 'ours-cpu-node', 'ours-cpu-chromium', 'ours-cpu-reference-node'];
const PEER = {
  'ours-webgpu-node': 'tjs-webgpu-chromium',
  'ours-webgpu-chromium': 'tjs-webgpu-chromium',
  'ours-cpu-node': 'tjs-cpu-node',
  'ours-cpu-chromium': 'tjs-wasm-chromium',
  'ours-cpu-reference-node': 'tjs-cpu-node',
};
const PEER_SHORT = { 'tjs-webgpu-chromium': 'tjs WebGPU', 'tjs-cpu-node': 'tjs CPU', 'tjs-wasm-chromium': 'tjs wasm' };
/** Variant labels of the transformers.js rows (bench/run.mjs: the fair peer's dtype, or the traced graph). */
const VARIANT = {
  fp32: 'fair peer fp32',
  fp16: 'fair peer fp16',
  q4: 'fair peer 4-bit (MatMulNBits, fp32 activations)',
  q4f16: 'fair peer 4-bit (MatMulNBits, fp16 activations)',
  'traced-fp32': 'traced graph fp32',
};
const CPU_ROWS = new Set(['ours-cpu-node', 'ours-cpu-chromium', 'ours-cpu-reference-node']);

const WARMUP = { full: 'one full untimed run', prompt: 'the same prompt + 1 step', short: 'a 4-token prompt + 2 steps', minimal: 'a 2-token prompt + 1 step' };
const fmt = (x, digits = 1) => {
  if (x === null || x === undefined || !Number.isFinite(x)) return '—';
  if (Math.abs(x) >= 100) return x.toFixed(0);
  if (Math.abs(x) >= 10) return x.toFixed(digits);
  return x.toPrecision(Math.max(2, digits + 1));
};
const pct = (x) => (Number.isFinite(x) ? `${x >= 0 ? '+' : ''}${(x * 100).toFixed(1)}%` : '—');
const mib = (b) => (Number.isFinite(b) ? `${(b / 2 ** 20).toFixed(1)} MiB` : '—');
const ok = (pass) => (pass ? 'yes' : '**no**');
const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
};

function sectionReason(run, section) {
  if (run.skipped) return `not run: ${run.skipped}`;
  if (run.result?.error) return `failed: ${run.result.error}`;
  if (section === 'memory' && CPU_ROWS.has(run.runtime)) return 'n/a: the CPU backend holds its weights in host memory (no GPU)';
  if (!run.sections?.includes(section))
    return `not run for this shape: ${run.sectionReason ?? 'time budget on the software adapter'} (measured here: ${run.sections?.join(', ') || 'nothing'})`;
  return 'no result';
}

export function renderTable(results, { RUNTIME_TITLES }) {
  const { meta, runs } = results;
  const title = (r) => RUNTIME_TITLES[r] ?? r;
  const rowTitle = (run) => (run.variant && run.runtime === 'tjs-webgpu-chromium' ? `${title(run.runtime)} — ${VARIANT[run.variant] ?? run.variant}` : title(run.runtime));
  const byModel = new Map();
  for (const run of runs) {
    if (!byModel.has(run.model)) byModel.set(run.model, []);
    byModel.get(run.model).push(run);
  }
  const find = (model, runtime) => byModel.get(model)?.find((r) => r.runtime === runtime);
  /** The peer row a ratio is taken against: transformers.js WebGPU's fair peer in the weights' precision (fp16 for F16 weights) where it ran, else fp32. */
  const peerRow = (model, runtime, dtypes) => {
    if (runtime !== 'tjs-webgpu-chromium') return find(model, runtime);
    const order = (dtypes ?? []).includes('F16') ? ['fp16', 'fp32'] : ['fp32', 'fp16'];
    for (const v of order) {
      const r = byModel.get(model)?.find((x) => x.runtime === runtime && x.variant === v);
      if (r?.result?.throughput) return r;
    }
    return byModel.get(model)?.find((x) => x.runtime === runtime && x.variant === 'fp32');
  };
  const adapter = runs.map((r) => r.result?.device).find((d) => typeof d === 'string' && d.startsWith('WebGPU')) ?? 'WebGPU adapter (none measured)';
  const out = [];
  out.push(`# PruneLab benchmark — ${meta.date}`);
  out.push('');
  out.push(
    "> **Software adapter.** Every WebGPU figure here ran on SwiftShader (the CPU Vulkan implementation inside Debian's chromium) on a " +
      `${meta.host.cpus}-core machine with no GPU, for our kernels and for transformers.js alike. These numbers rank kernels ` +
      '(dispatch count, fusion, bytes touched) on a CPU emulating a GPU; they are **not** hardware performance and say little about a real GPU.',
  );
  out.push('');
  out.push(`- host: ${meta.host.cpuModel ?? 'cpu'} × ${meta.host.cpus}, Node ${meta.host.node}${meta.chromium ? `, Chromium ${meta.chromium}` : ''}`);
  out.push(`- adapter: ${adapter.replace(/^WebGPU: /, '')}`);
  if (meta.loadAverageAtStart) {
    out.push(
      `- load average (1/5/15 min) at start ${meta.loadAverageAtStart.join(' / ')}, at end ${meta.loadAverageAtEnd?.join(' / ') ?? '—'}: on ${meta.host.cpus} cores, anything else running inflates these times (each row's notes give the 1-min load when it started)`,
    );
  }
  out.push(`- total run time: ${meta.totalSeconds} s (${(meta.totalSeconds / 60).toFixed(1)} min), flags: ${JSON.stringify(meta.flags)}`);
  out.push(
    '- timing: wall clock (performance.now), after a warm-up run (shader compiles, buffer growth). Greedy generation with a KV cache; ' +
      'prefill = prompt → first new token (one forward + argmax), decode = each later single-token step (median). ' +
      'Our engine computes logits for the last position only; the ONNX graph computes them for every prompt position.',
  );
  out.push(
    '- weights: our engine reads the F16 safetensors (f16 pairs packed in u32 on the GPU, f32 math; f32 on the CPU backend). ' +
      "transformers.js runs the **fair peer** of the very same values (tools/fair-peer/build_peer.py: transformers' LlamaForCausalLM → torch.onnx dynamo → " +
      'RotaryEmbedding + GroupQueryAttention, SimplifiedLayerNormalization / SkipSimplifiedLayerNormalization; fp32, fp16, 4-bit MatMulNBits), ' +
      'and, as a secondary row, the older traced fp32 graph (tools/fixture-model/export_onnx.py: unfused). Ratios are taken against the fair peer in the ' +
      "weights' precision (fp16) where it ran, else fp32 (the row says which).",
  );
  for (const [name, m] of Object.entries(meta.models)) {
    const s = m.sizes;
    out.push(
      `- ${m.title} (${m.shape}): prompt ${s.prompt}, decode ${s.decode} step(s), ${s.reps} timed rep(s), warm-up ${WARMUP[s.warmup]}` +
        `${name === 'embedded' ? '' : ' — **counts shrunk** for the software adapter'}; scoring forwards of ${s.scoreLen} tokens × ${s.scoreReps} each; ` +
        `${s.toggles} toggles of ${s.toggleLen}-token forwards; pruned: ${s.prunedRounds} round(s) of a ${s.prunedPrompt}-token prompt + ${s.prunedSteps} step(s) per plan` +
        " (a row may take more samples where it is cheap: each section's table gives its counts)",
    );
  }
  out.push('');

  // ---- goals
  if (results.goals?.length) {
    out.push('## Goals (issue 13), computed in this run');
    out.push('');
    out.push('| goal | model | value | target | met | basis |');
    out.push('|---|---|---|---|---|---|');
    for (const g of results.goals) {
      out.push(`| ${g.id} | ${g.model} | ${g.value === null ? '—' : fmt(g.value, 3)} | ${g.goal} | ${g.met ? 'yes' : '**no**'} | ${g.basis}${g.why ? ` — not measured: ${g.why}` : ''} |`);
    }
    out.push('');
    for (const [model, paired] of Object.entries(results.paired ?? {})) {
      const pairs = paired.rounds.map((r) => `${fmt(r.ours.decodeTokS)} / ${fmt(r.peer.decodeTokS)} (${fmt(r.ours.decodeTokS / r.peer.decodeTokS, 3)}×)`);
      out.push(`Pairs for the peer goals (${model}, fair peer ${paired.variant}; decode tok/s ours / peer): ${pairs.join(' · ')} — the first pair is the rows above, the rest alternating re-runs.`);
      out.push('');
    }
  }

  // ---- throughput
  out.push('## Prefill and decode throughput');
  out.push('');
  out.push('| model | runtime | prompt / decode | prefill tok/s | decode tok/s | vs peer: prefill / decode | greedy tokens = CPU ref | notes |');
  out.push('|---|---|---|---|---|---|---|---|');
  for (const [model, list] of byModel) {
    // greedy tokens of the oracle (or of the fast CPU backend where the oracle did not run)
    const ref = (find(model, 'ours-cpu-reference-node')?.result ?? find(model, 'ours-cpu-node')?.result)?.throughput?.tokens;
    for (const run of list) {
      const th = run.result?.throughput;
      const sizes = `${run.sizes.prompt} / ${run.sizes.decode}`;
      if (!th) {
        out.push(
          `| ${model} | ${rowTitle(run)} | ${sizes} | — | — | — | — | ${run.skipped ? `not measured: ${run.skipped}` : run.result?.error ? `failed: ${run.result.error}` : 'no result'} |`,
        );
        continue;
      }
      const peerRun = PEER[run.runtime] ? peerRow(model, PEER[run.runtime], run.result?.model?.dtypes) : null;
      const peer = peerRun?.result?.throughput;
      const peerName = `${PEER_SHORT[PEER[run.runtime]]}${peerRun?.variant ? ` ${peerRun.variant}` : ''}`;
      const ratio = peer
        ? `${fmt(th.prefillTokS / peer.prefillTokS, 2)}× / ${fmt(th.decodeTokS / peer.decodeTokS, 2)}× ${peerName}`
        : PEER[run.runtime]
          ? `— (${PEER_SHORT[PEER[run.runtime]]} not measured)`
          : 'peer';
      const same = ref && th.tokens ? (JSON.stringify(ref) === JSON.stringify(th.tokens) ? 'same' : `differs (${th.tokens.slice(0, 6).join(',')}…)`) : '—';
      const notes = [];
      if (run.result.load) notes.push(`load ${fmt((run.result.load.loadMs ?? run.result.load.readMs + run.result.load.createBackendMs) / 1000, 1)} s`);
      notes.push(`prefill ${fmt(median(th.prefillMs), 1)} ms, decode ${fmt(median(th.decodeStepMs), 1)} ms/token`);
      if (th.dispatchesPerDecodeStep) notes.push(`${th.dispatchesPerDecodeStep} dispatches per decode step`);
      if (run.result.wasmThreads) notes.push(`${run.result.wasmThreads} wasm thread(s)`);
      if (CPU_ROWS.has(run.runtime) && run.result.device) notes.push(run.result.device);
      if (run.loadAverage1m !== undefined) notes.push(`1-min load avg ${run.loadAverage1m}`);
      if (th.pickedOnDevice) notes.push('greedy pick on the GPU (one token id read back per step)');
      const sd = th.sampledDecode;
      if (sd) notes.push(`sampled (T ${sd.temperature}, top-k ${sd.topK}, top-p ${sd.topP}) ${fmt(median(sd.decodeStepMs), 1)} ms/token${th.pickedOnDevice ? `, on the GPU${sd.pickedOnHost ? ` (${sd.pickedOnHost} steps on the host)` : ''}` : ''}`);
      out.push(`| ${model} | ${rowTitle(run)} | ${sizes} | ${fmt(th.prefillTokS)} | ${fmt(th.decodeTokS)} | ${ratio} | ${same} | ${notes.join('; ')} |`);
    }
  }
  out.push('');

  const oursRuns = [];
  for (const [model] of byModel)
    for (const rt of OURS) {
      const run = find(model, rt);
      if (run) oursRuns.push(run);
    }

  // ---- scoring overhead
  out.push('## Scoring overhead: forward with block statistics vs without (target ≤ 10%)');
  out.push('');
  out.push(
    '| model | runtime | tokens × runs | forward without, best (median) ms | with stats, best (median) ms | overhead: paired (best; medians) | dispatches without → with | paired ≤ 10%? |',
  );
  out.push('|---|---|---|---|---|---|---|---|');
  for (const run of oursRuns) {
    const s = run.result?.scoring;
    if (!s) out.push(`| ${run.model} | ${title(run.runtime)} | — | — | — | — | — | ${sectionReason(run, 'scoring')} |`);
    else {
      const d = s.dispatches ? `${s.dispatches.plain} → ${s.dispatches.stats} (${pct(s.dispatches.stats / s.dispatches.plain - 1)})` : 'n/a (CPU)';
      out.push(
        `| ${run.model} | ${title(run.runtime)} | ${s.tokens} × ${s.reps} | ${fmt(s.plainMs)} (${fmt(s.plainMedianMs)}) | ${fmt(s.statsMs)} (${fmt(s.statsMedianMs)}) | ${pct(s.overheadPaired ?? Number.NaN)} (${pct(s.overhead)}; ${pct(s.overheadMedian)}) | ${d} | ${ok((s.overheadPaired ?? s.overhead) <= 0.1)} |`,
      );
    }
  }
  out.push('');
  out.push(
    'Interleaved runs; each forward is timed until the GPU queue is idle (`onSubmittedWorkDone`). The verdict uses the paired overhead: each run times the two forwards back to back, and the median of the per-run ratios is what load drifting between runs cannot move; best of N and the medians show the spread. Statistics add one copy (x → x_in, once per forward), one dispatch per block (the stats kernel, which also advances x_in) and one reduction at the end; the dispatch count is exact and machine-independent, and on this dispatch-bound software adapter it is the better guide to the cost.',
  );
  out.push('');

  // ---- toggle latency
  out.push('## Toggle latency: plan change → next forward start (target < 50 ms)');
  out.push('');
  out.push('| model | runtime | plan change → queue.submit, median (max) | forward after a toggle vs steady state | compiled / buffers created by toggles | < 50 ms? |');
  out.push('|---|---|---|---|---|---|');
  for (const run of oursRuns) {
    const tg = run.result?.toggle;
    if (!tg) {
      out.push(`| ${run.model} | ${title(run.runtime)} | — | — | — | ${sectionReason(run, 'toggle')} |`);
      continue;
    }
    const sub = tg.planChangeToSubmitMs;
    const latency = sub
      ? `${fmt(sub.median, 2)} ms (${fmt(sub.max, 2)} ms)${Number.isFinite(tg.steadyCallToSubmitMs) ? `; same plan again: ${fmt(tg.steadyCallToSubmitMs, 2)} ms` : ''}`
      : 'n/a: the CPU backend has no queue; the forward starts inside the call';
    const created = tg.created ? `${tg.created.pipelines} pipelines, ${tg.created.shaderModules} shader modules, ${tg.created.buffers} buffers` : 'n/a (CPU)';
    const pass = sub ? ok(sub.max < 50) : 'n/a';
    out.push(
      `| ${run.model} | ${title(run.runtime)} | ${latency} | ${fmt(tg.forwardAfterToggleMs)} ms vs ${fmt(tg.steadyForwardMs)} ms (best; ${tg.tokens}-token forwards, stats + last logits) | ${created} | ${pass} |`,
    );
  }
  out.push('');
  out.push(
    'The plan is built (`makePlan` with one block removed, a different block each time) and passed to `forward`; the time is taken at the forward\'s `queue.submit`, seen through the metered device (bench/gpu-meter.ts). "Same plan again" is the call → submit time of a forward whose plan did not change: the part of the latency that is recording/encoding, not the toggle. Counts of pipelines / shader modules / buffers created during the toggled forwards show that a plan change compiles and uploads nothing.',
  );
  out.push('');

  // ---- pruned decode
  out.push("## Decode with k of L blocks removed vs the bytes-ideal (fixed bytes + kept blocks' bytes) / all bytes (target within 10%)");
  out.push('');
  out.push(
    '| model | runtime | L | k | ms/token, all L | ms/token, k removed | measured ratio: paired (best; medians) | (L − k)/L | bytes-ideal | deviation from bytes-ideal: paired (best; medians) | dispatches per step, ratio | paired within 10% of bytes-ideal? | fit: fixed + per block |',
  );
  out.push('|---|---|---|---|---|---|---|---|---|---|---|---|---|');
  for (const run of oursRuns) {
    const p = run.result?.pruned;
    const L = run.result?.model?.layers ?? '—';
    if (!p) {
      out.push(`| ${run.model} | ${title(run.runtime)} | ${L} | — | — | — | — | — | — | — | — | ${sectionReason(run, 'pruned')} | — |`);
      continue;
    }
    for (const c of p.cases) {
      out.push(
        `| ${run.model} | ${title(run.runtime)} | ${L} | ${c.k} | ${fmt(p.fullMsPerToken)} | ${fmt(c.msPerToken)} | ${fmt(c.ratioPaired ?? Number.NaN, 3)} (${fmt(c.ratio, 3)}; ${fmt(c.ratioMedian, 3)}) | ${fmt(c.ideal, 3)} | ${fmt(c.bytesIdeal, 3)} | ${pct(c.bytesDeviationPaired ?? Number.NaN)} (${pct(c.bytesDeviation)}; ${pct(c.bytesDeviationMedian)}) | ${c.dispatches ? `${p.fullDispatches} → ${c.dispatches} (${fmt(c.dispatchRatio, 3)})` : 'n/a (CPU)'} | ${ok(Math.abs(c.bytesDeviationPaired ?? c.bytesDeviation) <= 0.1)} | ${fmt(p.fit.fixedMs)} ms + ${fmt(p.fit.perBlockMs, 2)} ms × blocks |`,
      );
    }
  }
  out.push('');
  out.push(
    'Paired ratio: in every round each plan runs back to back, so a pruned plan’s median step ÷ the full plan’s median step in the same round is immune to load drifting between rounds; the paired ratio is the median of those per-round ratios (the goal uses it). Alongside: the best decode step and the median over all rounds, per plan, ' +
      'over short generations (sizes above) in rounds alternating the full and pruned plans; removed blocks are spread over the stack. The fit (least squares over the plans) separates the per-step cost that does not scale with the block count (embedding, final norm, LM head over the vocabulary, read-back, sampling, dispatch/submit overhead) from the per-block cost; that fixed part is why a measured ratio sits above (L − k)/L. The bytes-ideal counts what a decode step reads from the weights: (lm head + final norm + one embedding row + the kept blocks’ tensors) ÷ (the same with every block) — the ratio a bandwidth-bound GPU would show; on a dispatch-bound software adapter the per-step fixed cost (submit, read-back, head) weighs more than its bytes.',
  );
  out.push('');

  // ---- memory
  out.push('## Peak GPU memory ÷ weight bytes (target ≤ 1.3)');
  out.push('');
  out.push('| model | runtime | weights (checkpoint) | weights on the GPU | after load | peak | peak ÷ weights | ≤ 1.3? | workload |');
  out.push('|---|---|---|---|---|---|---|---|---|');
  for (const run of oursRuns) {
    const mem = run.result?.memory;
    if (!mem) {
      out.push(`| ${run.model} | ${title(run.runtime)} | — | — | — | — | — | ${sectionReason(run, 'memory')} | — |`);
      continue;
    }
    out.push(
      `| ${run.model} | ${title(run.runtime)} | ${mib(mem.checkpointWeightBytes)} | ${mib(mem.backendWeightBytes)} | ${mib(mem.afterLoadBytes)} | ${mib(mem.peakBytes)} | ${fmt(mem.ratio, 3)} | ${ok(mem.ratio <= 1.3)} | ${mem.workload} |`,
    );
  }
  out.push('');
  out.push(
    'How measured: WebGPU has no memory-usage query, so the bench hands the engine a metered `navigator.gpu` (bench/gpu-meter.ts) that adds every `createBuffer` size and subtracts it at `destroy`; peak = the highest sum of live buffers (weights, activations, KV cache, uniforms, staging). Driver-internal memory (pipelines, bind groups, command buffers) is not included. "Weights (checkpoint)" is the bytes of all tensors in the safetensors files; "on the GPU" is what the backend reports it uploaded.',
  );
  out.push('');

  // ---- profile (--profile)
  const profiled = oursRuns.filter((r) => r.result?.profile);
  if (profiled.length) {
    out.push('## Profile: GPU time per kernel (timestamp-query, --profile)');
    out.push('');
    out.push('| model | runtime | step | wall ms | GPU ms | per block GPU ms | fixed ms (embed + head + outside kernels) | kernels: dispatches × GPU ms (achieved GB/s of weights read) |');
    out.push('|---|---|---|---|---|---|---|---|');
    for (const run of profiled) {
      const p = run.result.profile;
      if (p.skipped) {
        out.push(`| ${run.model} | ${title(run.runtime)} | — | — | — | — | — | ${p.skipped} |`);
        continue;
      }
      for (const [step, d] of [
        [`prefill ${p.prefill.tokens}`, p.prefill],
        ['decode', p.decode],
      ]) {
        const kernels = d.kernels.map((k) => `${k.kernel} ${k.dispatches} × ${fmt(k.gpuMs / k.dispatches, 2)}${k.gbPerS === null ? '' : ` (${fmt(k.gbPerS, 2)} GB/s)`}`).join('; ');
        out.push(`| ${run.model} | ${title(run.runtime)} | ${step} | ${fmt(d.wallMs)} | ${fmt(d.gpuMs)} | ${fmt(d.perBlockGpuMs, 2)} | ${fmt(d.fixedMs)} | ${kernels} |`);
      }
    }
    out.push('');
    out.push(
      'Each dispatch runs in its own compute pass with begin/end timestamps (extra pass overhead: rank kernels with it, do not add it up as a step time). GB/s = weight bytes the kernel read ÷ its GPU time; compare with the adapter’s memory bandwidth on real hardware.',
    );
    out.push('');
  }

  // ---- not measured
  const missing = [];
  for (const run of runs) {
    if (run.skipped) missing.push(`- ${run.model} / ${rowTitle(run)}: ${run.skipped}`);
    else if (run.result?.error) missing.push(`- ${run.model} / ${rowTitle(run)}: failed — ${run.result.error}`);
  }
  // ---- block-streamed scoring (bench/streaming-bench.ts renders its own section)
  if (results.streaming) {
    const r = results.streaming.result;
    out.push(r?.table ?? `## Block-streamed scoring\n\nfailed: ${r?.error ?? 'no result'}\n`);
  }

  out.push('## Not measured, and why');
  out.push('');
  out.push(missing.length ? missing.join('\n') : '- everything selected was measured');
  out.push('');
  return out.join('\n');
}

/**
 * Phi-3 / Phi-3.5 / Phi-4-mini: llama-shaped with fused `qkv_proj` (q rows, then k, then v) and fused
 * `gate_up_proj` (gate rows, then up), split here as views (export writes the stored fused tensors);
 * partial rotary (partial_rotary_factor), longrope scaling, one sliding window for all layers.
 */
import { allLayersWindow, type Json } from '../config-fields.ts';
import type { ModelSpec } from '../config.ts';
import { type BlockWeights, rowSlice } from '../weights.ts';
import type { FamilyDefinition } from './family.ts';
import { blockNorms, isRotaryBuffer, LLAMA_EXPORT, linear, llamaEnds, llamaShapedSpec, PRE_NORM_NAMES, withWindows } from './llama.ts';

/** Early Phi-3 checkpoints name longrope "su" (or "yarn"); HF's Phi3Config reads both as longrope. */
function withLongropeName(c: Json): Json {
  for (const key of ['rope_scaling', 'rope_parameters']) {
    const rope = c[key] as Json | null | undefined;
    const kind = rope?.rope_type ?? rope?.type;
    if (rope && (kind === 'su' || kind === 'yarn')) {
      const { type: _, ...rest } = rope;
      return { ...c, [key]: { ...rest, rope_type: 'longrope' } };
    }
  }
  return c;
}

function parsePhi3(config: Json): ModelSpec {
  const c = withLongropeName(config);
  const spec = llamaShapedSpec('phi3', c, { normEps: 1e-5 });
  spec.layerKinds = withWindows(
    spec.layerKinds,
    spec.layerKinds.map(() => allLayersWindow(c)),
  );
  return spec;
}

export const phi3Family: FamilyDefinition = {
  name: 'phi3',
  modelTypes: ['phi3'],
  parseConfig: parsePhi3,
  bindBlock(spec, store, i): BlockWeights {
    const { hidden, intermediate, heads, kvHeads, headDim } = spec;
    {
      const p = `layers.${i}`;
      const qRows = heads * headDim;
      const kvRows = kvHeads * headDim;
      const qkv = linear(store, `${p}.self_attn.qkv_proj`, qRows + 2 * kvRows, hidden, false);
      const gateUp = linear(store, `${p}.mlp.gate_up_proj`, 2 * intermediate, hidden, false);
      const part = (l: typeof qkv, begin: number, end: number, what: string) => ({
        weight: rowSlice(l.weight, begin, end, `${l.weight.name}[${what}]`),
        bias: l.bias ? rowSlice(l.bias, begin, end, `${l.bias.name}[${what}]`) : null,
      });
      return {
        ...blockNorms(store, p, PRE_NORM_NAMES, hidden),
        q: part(qkv, 0, qRows, 'q'),
        k: part(qkv, qRows, qRows + kvRows, 'k'),
        v: part(qkv, qRows + kvRows, qRows + 2 * kvRows, 'v'),
        o: linear(store, `${p}.self_attn.o_proj`, hidden, qRows, false),
        qNorm: null,
        kNorm: null,
        gate: part(gateUp, 0, intermediate, 'gate'),
        up: part(gateUp, intermediate, 2 * intermediate, 'up'),
        down: linear(store, `${p}.mlp.down_proj`, hidden, intermediate, false),
      };
    }
  },
  bindEnds: (spec, store) => llamaEnds(store, spec),
  isBuffer: isRotaryBuffer,
  ...LLAMA_EXPORT,
  healUnsupported: null,
  hubSuggestions: [{ id: 'microsoft/Phi-4-mini-instruct', size: '≈7.7 GB' }],
  summary:
    'phi3: fused qkv_proj and gate_up_proj (split as views at load, written fused on export), partial rotary, longrope (short factors; positions beyond the original context are refused), sliding_window',
};

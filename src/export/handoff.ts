/**
 * Hand-off: the same cut, applied where the real work happens. Two texts, both pure functions of a plan:
 * - a self-contained Python script (transformers + torch; accelerate's device_map="auto" when installed)
 *   that loads the original model, removes the blocks and sets the config keys PruneLab's export changes
 *   (prunedConfigChanges: the family's layer count and per-layer lists), measures perplexity with
 *   PruneLab's windowing (`--eval FILE [--seq-len N]`) and saves the pruned checkpoint (`--out DIR`);
 * - a mergekit passthrough config whose slices are the kept blocks as contiguous layer ranges.
 * Used by `prunelab export` (cli/export.ts) and the lab's Share and export panel.
 */
import { type Metric, METRICS } from '../analysis/influence.ts';
import { PruneLabError } from '../engine/errors.ts';
import { prunedFolderName } from './zip.ts';

export type HandoffFormat = 'transformers' | 'mergekit';
export const HANDOFF_FORMATS: readonly HandoffFormat[] = ['transformers', 'mergekit'];

/** Where the original model lives: a hub repository (at a revision, ideally resolved to its commit) or a folder. */
export type HandoffSource =
  | { kind: 'hub'; repo: string; revision: string; commit?: string }
  /** `path: null`: a folder the exporter cannot name (a folder picked in the browser); the user passes it. */
  | { kind: 'path'; path: string | null; label: string };

export interface HandoffPlan {
  source: HandoffSource;
  /** Blocks in the original model. */
  layers: number;
  /** Original block indices to remove (0-based). */
  removed: readonly number[];
  /** config.json keys the cut changes and their new values: prunedConfigChanges of the original config. */
  configChanges: Record<string, unknown>;
  /** The stored dtypes of the checkpoint's weights (safetensors names, e.g. ['BF16'] or ['F32', 'BF16']). */
  dtypes: readonly string[];
  /** PruneLab's version (package.json). */
  version: string;
  /** What chose the blocks, for the header. */
  chosenBy?: { metric?: Metric | null; calibration?: string; link?: string };
}

/** safetensors dtype -> torch / mergekit name. */
const DTYPE_NAMES: Record<string, string> = { F32: 'float32', F16: 'float16', BF16: 'bfloat16' };

/**
 * The dtype a checkpoint is "in": mixed checkpoints keep norms (and sometimes embeddings) in F32 and the
 * matrices in 16 bits, and the matrices are what matter, so a 16-bit dtype wins over F32.
 */
export function storageDtype(dtypes: readonly string[]): string {
  for (const d of ['BF16', 'F16', 'F32']) if (dtypes.includes(d)) return DTYPE_NAMES[d];
  throw new PruneLabError(`no float weights to take a dtype from (stored: ${dtypes.join(', ') || 'none'})`, { field: 'dtype' });
}

/** Kept original block indices, after checking the removal against the model. */
export function keptBlocks(layers: number, removed: readonly number[]): number[] {
  if (!Number.isInteger(layers) || layers < 1) throw new PruneLabError(`the model must have at least one block, got ${layers}`, { field: 'layers' });
  for (const i of removed) {
    if (!Number.isInteger(i) || i < 0 || i >= layers) throw new PruneLabError(`block ${i} does not exist (0..${layers - 1})`, { field: 'remove' });
  }
  const gone = new Set(removed);
  const kept = Array.from({ length: layers }, (_, i) => i).filter((i) => !gone.has(i));
  if (kept.length === 0) throw new PruneLabError('cannot remove every block', { field: 'remove' });
  return kept;
}

/** Kept blocks as half-open ranges [start, end) of consecutive indices, in order. */
export function keptRanges(layers: number, removed: readonly number[]): [number, number][] {
  const ranges: [number, number][] = [];
  for (const i of keptBlocks(layers, removed)) {
    const last = ranges[ranges.length - 1];
    if (last && last[1] === i) last[1] = i + 1;
    else ranges.push([i, i + 1]);
  }
  return ranges;
}

/** What a person calls the source: "owner/name", "owner/name@v2", a folder. */
export function sourceLabel(source: HandoffSource): string {
  if (source.kind === 'path') return source.path ?? source.label;
  return source.revision === 'main' ? source.repo : `${source.repo}@${source.revision}`;
}

/** File names for the downloads: "<name>-pruned.py" / "<name>-pruned-mergekit.yml". */
export function handoffFileName(source: HandoffSource, format: HandoffFormat): string {
  const base = prunedFolderName(sourceLabel(source));
  return format === 'transformers' ? `${base.replace(/[^\w]/g, '_')}.py` : `${base}-mergekit.yml`;
}

/** Comment lines shared by both files: what is cut, from which weights, chosen how. */
function headerLines(plan: HandoffPlan, kept: readonly number[]): string[] {
  const { source } = plan;
  const removed = [...new Set(plan.removed)].sort((a, b) => a - b);
  const oneLine = (text: string) => text.replace(/[\r\n\u2028\u2029]+/g, ' ').trim();
  const lines = [
    `PruneLab ${plan.version} hand-off: ${oneLine(sourceLabel(source))} with block${removed.length === 1 ? '' : 's'} ${removed.join(', ') || '(none)'} removed (${kept.length} of ${plan.layers} kept).`,
  ];
  if (source.kind === 'hub') {
    lines.push(
      source.commit
        ? `Weights: ${source.repo} at commit ${source.commit} (revision "${oneLine(source.revision)}" when scored).`
        : `Weights: ${source.repo} at revision "${oneLine(source.revision)}" (not resolved to a commit).`,
    );
  } else if (source.path === null) {
    lines.push(`Weights: the local folder "${oneLine(source.label)}" (its path is not known here: pass it).`);
  }
  const metric = plan.chosenBy?.metric;
  const metricLabel = metric ? `${METRICS.find((m) => m.id === metric)?.label ?? metric} (${metric}), lowest first` : 'by hand (or not recorded)';
  lines.push(`Chosen by: ${metricLabel}${plan.chosenBy?.calibration ? `; calibration: ${oneLine(plan.chosenBy.calibration)}` : ''}.`);
  if (plan.chosenBy?.link) lines.push(`Experiment: ${oneLine(plan.chosenBy.link)}`);
  return lines;
}

// ---------------------------------------------------------------- mergekit

/** A mergekit passthrough config: one slice per run of kept blocks, from the original at its commit. */
export function mergekitConfig(plan: HandoffPlan): string {
  const kept = keptBlocks(plan.layers, plan.removed);
  const { source } = plan;
  let model: string;
  const notes: string[] = [];
  if (source.kind === 'hub') model = `${source.repo}@${source.commit ?? source.revision}`;
  else if (source.path !== null) model = source.path;
  else {
    model = `./${prunedFolderName(source.label).replace(/-pruned$/, '')}`;
    notes.push(`Replace ${model} below with the path of the original model's folder.`);
  }
  const lines = [...headerLines(plan, kept), ...notes, 'Run: mergekit-yaml this-file.yml ./pruned-model  (layer_range is [first, last + 1) of the original blocks)'].map(
    (l) => `# ${l}`,
  );
  lines.push('slices:');
  // JSON strings are valid YAML double-quoted scalars: any path or id is safe.
  for (const [start, end] of keptRanges(plan.layers, plan.removed)) {
    lines.push('  - sources:', `      - model: ${JSON.stringify(model)}`, `        layer_range: [${start}, ${end}]`);
  }
  lines.push('merge_method: passthrough', `dtype: ${storageDtype(plan.dtypes)}`);
  return `${lines.join('\n')}\n`;
}

// ---------------------------------------------------------------- transformers

/** A Python literal for a JSON value (JSON's string escapes and number forms are valid Python). */
export function pyLiteral(value: unknown): string {
  if (value === null || value === undefined) return 'None';
  if (value === true) return 'True';
  if (value === false) return 'False';
  if (typeof value === 'number') {
    if (!Number.isFinite(value)) throw new PruneLabError(`cannot write ${value} into the script`, { field: 'config' });
    return JSON.stringify(value);
  }
  if (typeof value === 'string') return JSON.stringify(value);
  if (Array.isArray(value)) return `[${value.map(pyLiteral).join(', ')}]`;
  if (typeof value === 'object') {
    return `{${Object.entries(value as Record<string, unknown>)
      .map(([k, v]) => `${JSON.stringify(k)}: ${pyLiteral(v)}`)
      .join(', ')}}`;
  }
  throw new PruneLabError(`cannot write a ${typeof value} into the script`, { field: 'config' });
}

function pyString(value: string | null): string {
  return value === null ? 'None' : JSON.stringify(value);
}

/** The Python script. Everything it needs is in it; `--model` overrides where the original is read from. */
export function transformersScript(plan: HandoffPlan): string {
  const kept = keptBlocks(plan.layers, plan.removed);
  const removed = [...new Set(plan.removed)].sort((a, b) => a - b);
  const { source } = plan;
  const model = source.kind === 'hub' ? source.repo : source.path;
  const revision = source.kind === 'hub' ? (source.commit ?? source.revision) : null;
  const header = headerLines(plan, kept).map((l) => `# ${l}`);
  return `#!/usr/bin/env python3
${header.join('\n')}
#
#   python ${handoffFileName(source, 'transformers')} --eval text.txt [--seq-len 256]   one JSON line {"ppl", "nll", "tokens"}:
#       perplexity as \`prunelab ppl --remove ${removed.join(',')} --text text.txt\` measures it (same tokenization,
#       same windows; PruneLab computes in float32, so does this script on CPU, or with --dtype float32)
#   python ${handoffFileName(source, 'transformers')} --out pruned/                        the pruned checkpoint + tokenizer
#
# Needs torch and transformers; with accelerate installed the model is placed with device_map="auto"
# (sharded over every GPU, spilling to CPU). Gated repositories read the token from HF_TOKEN.
import argparse
import json
import math
import os
import shutil
import sys

MODEL = ${pyString(model)}  # hub id or folder of the original model; --model overrides
REVISION = ${pyString(revision)}  # the commit PruneLab scored (None for a folder)
LAYERS = ${plan.layers}
REMOVED = ${pyLiteral(removed)}
KEPT = ${pyLiteral(kept)}
# config.json keys the cut changes, as PruneLab's export writes them (the layer count, per-layer lists cut to KEPT)
CONFIG_CHANGES = ${pyLiteral(plan.configChanges)}
STORED_DTYPE = ${pyString(storageDtype(plan.dtypes))}
# Files copied unchanged next to the pruned weights (PruneLab's export copies the tokenizer as stored).
EXTRA_FILES = ["tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "tokenizer.model", "vocab.json", "merges.txt", "chat_template.jinja", "generation_config.json"]


def log(message):
    print(message, file=sys.stderr, flush=True)


def hf_file(source, name, token):
    """Path of one file of the original (downloaded from the hub when source is a hub id); None if absent."""
    from transformers.utils import cached_file

    revision = None if os.path.isdir(source) else REVISION
    return cached_file(source, name, revision=revision, token=token, _raise_exceptions_for_missing_entries=False)


def load(source, dtype_name, token):
    import torch
    import transformers
    from transformers import AutoModelForCausalLM

    if dtype_name == "auto":
        # PruneLab computes in float32; a GPU runs the checkpoint's own dtype.
        dtype_name = STORED_DTYPE if torch.cuda.is_available() else "float32"
    kwargs = {"token": token}
    if not os.path.isdir(source) and REVISION is not None:
        kwargs["revision"] = REVISION
    version = tuple(int(p) for p in transformers.__version__.split(".")[:2] if p.isdigit())
    kwargs["dtype" if version >= (4, 56) else "torch_dtype"] = getattr(torch, dtype_name)
    try:
        import accelerate  # noqa: F401

        kwargs["device_map"] = "auto"
    except ImportError:
        pass
    log(f"loading {source} ({dtype_name}{', device_map=auto' if 'device_map' in kwargs else ''})")
    model = AutoModelForCausalLM.from_pretrained(source, **kwargs)
    model.eval()
    return model


def block_list(model):
    """The ModuleList of transformer blocks and its owner."""
    import torch

    for path in ("model.layers", "model.language_model.layers", "transformer.h", "model.decoder.layers", "gpt_neox.layers"):
        owner, found = None, model
        for part in path.split("."):
            owner, found = found, getattr(found, part, None)
            if found is None:
                break
        if isinstance(found, torch.nn.ModuleList):
            return owner, path.split(".")[-1], found
    sys.exit(f"error: cannot find the transformer blocks of {type(model).__name__}")


def remove_blocks(model):
    import torch

    owner, name, blocks = block_list(model)
    if len(blocks) != LAYERS:
        sys.exit(f"error: the model has {len(blocks)} blocks; this plan was made for {LAYERS}")
    kept = torch.nn.ModuleList([blocks[i] for i in KEPT])
    for new_index, block in enumerate(kept):
        # Attention layers index the KV cache by layer_idx: renumber as the saved checkpoint will be.
        for module in block.modules():
            if isinstance(getattr(module, "layer_idx", None), int):
                module.layer_idx = new_index
    setattr(owner, name, kept)
    apply_config(model.config, CONFIG_CHANGES)
    log(f"removed blocks {REMOVED}; {len(KEPT)} of {LAYERS} kept")


def apply_config(config, changes):
    for key, value in changes.items():
        current = getattr(config, key, None)
        if isinstance(value, dict) and hasattr(current, "to_dict"):
            apply_config(current, value)  # a nested config (text_config): set its keys, keep the object
        else:
            setattr(config, key, value)


def read_text(path):
    # As Node reads it: UTF-8, line ends untouched, bad bytes replaced.
    with open(path, encoding="utf-8", errors="replace", newline="") as f:
        return f.read()


def token_ids(source, text, token):
    """The document's ids as PruneLab makes them: tokenizer.json alone, special tokens (BOS) as its post-processor adds them."""
    from tokenizers import Tokenizer

    path = hf_file(source, "tokenizer.json", token)
    if path is None:
        sys.exit(f"error: no tokenizer.json in {source}")
    tokenizer = Tokenizer.from_file(path)
    tokenizer.no_truncation()
    tokenizer.no_padding()
    return tokenizer.encode(text, add_special_tokens=True).ids


def windows(ids, length, max_windows):
    """Consecutive windows of \`length\` tokens; the last partial one kept if it has at least 2 (PruneLab's windows())."""
    out = []
    for at in range(0, len(ids), length):
        if len(out) >= max_windows:
            break
        window = ids[at : at + length]
        if len(window) >= 2:
            out.append(window)
    return out


def perplexity(model, sequences):
    """exp(mean NLL of token t+1 given tokens <= t), all sequences pooled."""
    import torch

    device = model.get_input_embeddings().weight.device
    total, count = 0.0, 0
    with torch.no_grad():
        for sequence in sequences:
            ids = torch.tensor([sequence], device=device)
            logits = model(input_ids=ids, use_cache=False).logits[0, :-1].float()
            targets = ids[0, 1:].to(logits.device)
            total += torch.nn.functional.cross_entropy(logits, targets, reduction="sum").item()
            count += len(sequence) - 1
    nll = total / count
    return {"ppl": math.exp(nll), "nll": nll, "tokens": count}


def save(model, source, out, token):
    import torch

    dtype = getattr(torch, STORED_DTYPE)
    for tensor in list(model.parameters()) + list(model.buffers()):
        if tensor.is_floating_point() and tensor.dtype != dtype:
            tensor.data = tensor.data.to(dtype)
    os.makedirs(out, exist_ok=True)
    model.save_pretrained(out)
    for name in EXTRA_FILES:
        path = hf_file(source, name, token)
        if path is not None:
            shutil.copyfile(path, os.path.join(out, name))
    log(f"wrote {out}")


def main():
    parser = argparse.ArgumentParser(description=f"Remove blocks {REMOVED} from {MODEL or 'the model'} (PruneLab hand-off).")
    parser.add_argument("--model", default=MODEL, required=MODEL is None, help="hub id or folder of the original model")
    parser.add_argument("--eval", metavar="FILE", help="text file: print one JSON line {ppl, nll, tokens} of the pruned model")
    parser.add_argument("--seq-len", type=int, default=256, help="window length in tokens (default 256, as prunelab ppl)")
    parser.add_argument("--max-sequences", type=int, default=None, help="use only the first N windows")
    parser.add_argument("--out", metavar="DIR", help="write the pruned checkpoint and tokenizer here")
    parser.add_argument("--dtype", default="auto", choices=["auto", "float32", "float16", "bfloat16"], help="compute dtype (auto: float32 on CPU, the stored dtype on GPU)")
    args = parser.parse_args()
    if args.eval is None and args.out is None:
        parser.error("nothing to do: pass --eval FILE and/or --out DIR")
    if args.seq_len < 2:
        parser.error("--seq-len must be at least 2")
    token = os.environ.get("HF_TOKEN") or None
    text = read_text(args.eval) if args.eval is not None else None
    model = load(args.model, args.dtype, token)
    remove_blocks(model)
    if text is not None:
        sequences = windows(token_ids(args.model, text, token), args.seq_len, args.max_sequences or float("inf"))
        if not sequences:
            sys.exit(f"error: {args.eval} gives no window of at least 2 tokens")
        print(json.dumps(perplexity(model, sequences)), flush=True)
    if args.out is not None:
        save(model, args.model, args.out, token)


if __name__ == "__main__":
    main()
`;
}

/** The hand-off file for a format. */
export function handoffText(plan: HandoffPlan, format: HandoffFormat): string {
  return format === 'transformers' ? transformersScript(plan) : mergekitConfig(plan);
}

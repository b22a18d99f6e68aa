"""Hugging Face transformers as the reference: load a checkpoint in float64 (eager attention), run it with the
decoder layers hooked, and measure Block Influence / angular distance / relative magnitude and NLL exactly as
DESIGN.md defines them. Shared by make_hf_fixtures.py, check_export.py and hf_score.py (dev-time only).

Definitions (same as tools/fixture-model/reference.py): x_k = input of decoder layer k on the residual stream,
x_{k+1} = its output (forward pre-hook / forward hook on the layer module, before the final norm);
per token cos = cos(x_k, x_{k+1}), angular = arccos(cos)/pi, relMagnitude = |x_{k+1} - x_k| / |x_{k+1}|;
NLL of token t+1 given tokens <= t, pooled over all sequences. Each sequence runs on its own, positions from 0.
"""
import glob
import json
import math
import os
import re

import torch
import transformers
from safetensors.torch import load_file, save_file

transformers.logging.set_verbosity_error()
transformers.logging.disable_progress_bar()
torch.set_num_threads(1)

# decoder-layer lists by family layout; the first attribute path that exists wins
LAYER_PATHS = ("model.layers", "gpt_neox.layers", "transformer.h")
# the attribute holding a layer's attention / MLP module, per layer class layout
ATTN_ATTRS = ("self_attn", "attention", "attn")
MLP_ATTRS = ("mlp",)
# per-layer config lists that must be renumbered with the layers (a pruned checkpoint rewrites them)
PER_LAYER_KEYS = ("layer_types", "no_rope_layers")
LAYER_KEY = re.compile(r"^(.*?\.(?:layers|h))\.(\d+)\.(.*)$")


def load(folder):
    """The checkpoint in float64 with eager attention; refuses to run with missing or unexpected weights."""
    model, info = transformers.AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float64, attn_implementation="eager", output_loading_info=True)
    bad = {k: v for k, v in info.items() if v and k in ("missing_keys", "unexpected_keys", "mismatched_keys")}
    if bad:
        raise SystemExit(f"{folder}: transformers did not load the checkpoint cleanly: {bad}")
    model.eval()
    return model


def layer_list(model):
    """(owner module, attribute name) of the decoder-layer ModuleList."""
    for path in LAYER_PATHS:
        owner = model
        parts = path.split(".")
        for p in parts[:-1]:
            owner = getattr(owner, p, None)
            if owner is None:
                break
        if owner is not None and isinstance(getattr(owner, parts[-1], None), torch.nn.ModuleList):
            return owner, parts[-1]
    raise SystemExit(f"{type(model).__name__}: no decoder layer list at any of {LAYER_PATHS}")


def layers(model):
    owner, attr = layer_list(model)
    return getattr(owner, attr)


def _sub_attr(layer, names, what):
    for n in names:
        if hasattr(layer, n):
            return n
    raise SystemExit(f"{type(layer).__name__}: no {what} module at any of {names}")


class ZeroAttention(torch.nn.Module):
    """Stands in for a skipped attention: its branch adds exactly nothing to the residual stream (a post-norm after
    it maps 0 to 0, and a parallel-residual block just loses the attention term)."""

    def forward(self, *args, **kwargs):
        x = args[0] if args else kwargs["hidden_states"]
        return torch.zeros_like(x), None


class ZeroMlp(torch.nn.Module):
    def forward(self, x):
        return torch.zeros_like(x)


def remove_blocks(model, removed):
    """Drop whole decoder layers in memory, as a pruned and renumbered checkpoint would: the kept layers keep
    their own modules (so their per-layer settings made at construction), and every per-layer config list is
    rewritten to the kept entries, because the model indexes e.g. config.layer_types[i] by position i."""
    owner, attr = layer_list(model)
    old = getattr(owner, attr)
    n = len(old)
    for i in removed:
        if not 0 <= i < n:
            raise SystemExit(f"--remove: block {i} out of range (model has {n})")
    kept = [i for i in range(n) if i not in set(removed)]
    setattr(owner, attr, torch.nn.ModuleList([old[i] for i in kept]))
    cfg = model.config
    for key in PER_LAYER_KEYS:
        value = getattr(cfg, key, None)
        if isinstance(value, list):
            setattr(cfg, key, [value[i] for i in kept])
    cfg.num_hidden_layers = len(kept)  # gpt2 maps this to n_layer
    return kept


def skip_branches(model, removed_attn=(), removed_mlp=()):
    ls = layers(model)
    for i in removed_attn:
        setattr(ls[i], _sub_attr(ls[i], ATTN_ATTRS, "attention"), ZeroAttention())
    for i in removed_mlp:
        setattr(ls[i], _sub_attr(ls[i], MLP_ATTRS, "MLP"), ZeroMlp())


def block_stats(a, b):
    """Per-token sums for one block: a = block input [T, H], b = block output [T, H]."""
    cos = torch.nn.functional.cosine_similarity(a, b, dim=-1, eps=0.0).clamp(-1, 1)
    rel = (b - a).norm(dim=-1) / b.norm(dim=-1)
    return {"cosSum": cos.sum().item(), "angularSum": (torch.arccos(cos) / math.pi).sum().item(), "relMagnitudeSum": rel.sum().item(), "tokens": a.shape[0]}


def run(model, ids, block_index=None):
    """All sequences one at a time through the (possibly pruned) model.
    Returns (blocks, nll, lastLogits); blocks carry block_index[k] (the original index) for the k-th layer run."""
    ls = layers(model)
    block_index = list(range(len(ls))) if block_index is None else block_index
    captured = {}

    def pre(k):
        def hook(_module, args, kwargs):
            captured[("in", k)] = args[0] if args else kwargs["hidden_states"]

        return hook

    def post(k):
        def hook(_module, _args, output):
            captured[("out", k)] = output[0] if isinstance(output, tuple) else output

        return hook

    handles = []
    for k, layer in enumerate(ls):
        handles.append(layer.register_forward_pre_hook(pre(k), with_kwargs=True))
        handles.append(layer.register_forward_hook(post(k)))
    sums = [{"cosSum": 0.0, "angularSum": 0.0, "relMagnitudeSum": 0.0, "tokens": 0} for _ in ls]
    nll, count, last = 0.0, 0, []
    try:
        with torch.no_grad():
            for seq in ids:
                captured.clear()
                x = torch.tensor([seq], dtype=torch.long)
                logits = model(input_ids=x, use_cache=False).logits[0]
                if logits.dtype != torch.float64:
                    raise SystemExit(f"logits came back as {logits.dtype}, expected float64")
                for k in range(len(ls)):
                    s = block_stats(captured[("in", k)][0], captured[("out", k)][0])
                    for key in sums[k]:
                        sums[k][key] += s[key]
                logp = torch.log_softmax(logits[:-1], -1)
                target = x[0, 1:, None]
                nll += -logp.gather(1, target).sum().item()
                count += len(seq) - 1
                last.append([float(v) for v in logits[-1].tolist()])
    finally:
        for h in handles:
            h.remove()
    blocks = []
    for k, s in enumerate(sums):
        n = s["tokens"]
        blocks.append({
            "index": block_index[k],
            "cosSum": s["cosSum"],
            "angularSum": s["angularSum"],
            "relMagnitudeSum": s["relMagnitudeSum"],
            "tokens": n,
            "bi": 1.0 - s["cosSum"] / n,
            "angular": s["angularSum"] / n,
            "relMagnitude": s["relMagnitudeSum"] / n,
        })
    mean = nll / count
    return blocks, {"sum": nll, "count": count, "mean": mean, "ppl": math.exp(mean)}, last


def evaluate(folder, ids, removed=(), removed_attn=(), removed_mlp=()):
    """Fresh float64 load, apply the plan, run: (blocks, nll, lastLogits)."""
    model = load(folder)
    skip_branches(model, removed_attn, removed_mlp)
    kept = remove_blocks(model, list(removed)) if removed else None
    return run(model, ids, kept)


def write_pruned(folder, removed, out):
    """A pruned checkpoint as an exporter must write it: kept blocks renumbered 0..n-1 in one safetensors file,
    num_hidden_layers (n_layer for gpt2) set, every per-layer list rewritten to the kept entries."""
    with open(os.path.join(folder, "config.json")) as f:
        cfg = json.load(f)
    n = cfg.get("num_hidden_layers", cfg.get("n_layer"))
    kept = [i for i in range(n) if i not in set(removed)]
    renumber = {old: new for new, old in enumerate(kept)}
    tensors = {}
    for path in sorted(glob.glob(os.path.join(folder, "*.safetensors"))):
        for name, t in load_file(path).items():
            m = LAYER_KEY.match(name)
            if m is None:
                tensors[name] = t
            elif int(m.group(2)) in renumber:
                tensors[f"{m.group(1)}.{renumber[int(m.group(2))]}.{m.group(3)}"] = t
    os.makedirs(out, exist_ok=True)
    save_file(tensors, os.path.join(out, "model.safetensors"), metadata={"format": "pt"})
    cfg["n_layer" if "n_layer" in cfg else "num_hidden_layers"] = len(kept)
    for key in PER_LAYER_KEYS:
        if isinstance(cfg.get(key), list):
            cfg[key] = [cfg[key][i] for i in kept]
    with open(os.path.join(out, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
    return kept


def read_ids(path):
    with open(path) as f:
        ids = json.load(f)
    if not (isinstance(ids, list) and ids and all(isinstance(s, list) and len(s) >= 2 and all(isinstance(t, int) for t in s) for s in ids)):
        raise SystemExit(f"{path}: expected a JSON list of token-id lists (each at least 2 ids)")
    return ids

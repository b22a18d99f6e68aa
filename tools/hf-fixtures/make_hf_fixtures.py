"""Writes PruneLab's transformers-made fixture checkpoints and their float64 goldens (dev-time only).

    /work/hf/bin/python tools/hf-fixtures/make_hf_fixtures.py               # all, into tests/fixtures-hf/<name>/
    /work/hf/bin/python tools/hf-fixtures/make_hf_fixtures.py gemma2 phi3   # only these

Hugging Face transformers itself is the ground truth here: each fixture is a tiny random config instantiated
with AutoModelForCausalLM.from_config, given "trained-looking" weights (blocks differ), cast to the dtype the
family ships in and written with save_pretrained (config.json untouched). The folder is then loaded back with
from_pretrained(dtype=float64, attn_implementation="eager") and the goldens come from that forward pass with
the decoder layers hooked (tools/hf-fixtures/hfref.py). golden.json has the layout of tests/fixtures/*/golden.json
(tests/engine/fixtures.ts `Golden`) plus "source" and "torch".

Deterministic: fixed seeds, one CPU thread, so a re-run writes byte-identical files. Each build also checks
that the in-memory removal equals a pruned, renumbered checkpoint reloaded by transformers, and prints how
much the family's special features move the result (sliding window, soft-capping, ...), so a fixture that
silently stopped exercising a feature shows up.
"""
import json
import math
import os
import shutil
import sys
import tempfile

import torch
import transformers

import hfref

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "tools", "fixtures"))
from make_fixtures import write_json  # noqa: E402  (one JSON layout for all goldens)

OUT = os.path.join(ROOT, "tests", "fixtures-hf")
TORCH_DTYPE = {"F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16}
SEQ_LENS = (24, 17)  # both longer than every sliding window below (8)
TOKENS = {"pad_token_id": 0, "bos_token_id": 1, "eos_token_id": 2}

# What each fixture exercises: the table in README.md. scale: multipliers of 1/sqrt(fan_in) per weight role
# (see fill_weights); the defaults keep logits O(1).
FIXTURES = [
    {
        "name": "llama3-v5",
        "model_type": "llama",
        "dtype": "BF16",
        "seed": 1101,
        "config": dict(
            vocab_size=384, hidden_size=64, intermediate_size=160, num_hidden_layers=4, num_attention_heads=4, num_key_value_heads=2,
            max_position_embeddings=512, rms_norm_eps=1e-5, tie_word_embeddings=False,
            # head_dim 16: wavelengths 6.3, 32.4, 167, ... against 64/4 = 16 and 64/1 = 64 -> all three llama3 bands
            rope_parameters={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                             "original_max_position_embeddings": 64, "rope_theta": 500000.0},
        ),
    },
    {
        "name": "qwen2-v5",
        "model_type": "qwen2",
        "dtype": "BF16",
        "seed": 1202,
        "config": dict(
            vocab_size=448, hidden_size=64, intermediate_size=176, num_hidden_layers=4, num_attention_heads=4, num_key_value_heads=2,
            max_position_embeddings=512, rms_norm_eps=1e-6, tie_word_embeddings=True,
            use_sliding_window=True, sliding_window=8, max_window_layers=2, rope_parameters={"rope_type": "default", "rope_theta": 1000000.0},
        ),
    },
    {
        "name": "qwen3-v5",
        "model_type": "qwen3",
        "dtype": "BF16",
        "seed": 1303,
        "shard": "100KB",
        "config": dict(
            vocab_size=512, hidden_size=48, intermediate_size=144, num_hidden_layers=4, num_attention_heads=4, num_key_value_heads=2, head_dim=16,
            max_position_embeddings=512, rms_norm_eps=1e-6, tie_word_embeddings=True, rope_parameters={"rope_type": "default", "rope_theta": 1000000.0},
        ),
    },
    {
        "name": "mistral-v5",
        "model_type": "mistral",
        "dtype": "F16",
        "seed": 1404,
        "config": dict(
            vocab_size=256, hidden_size=32, intermediate_size=96, num_hidden_layers=4, num_attention_heads=4, num_key_value_heads=2,
            max_position_embeddings=512, rms_norm_eps=1e-5, tie_word_embeddings=False, sliding_window=8,
            rope_parameters={"rope_type": "default", "rope_theta": 10000.0},
        ),
    },
    {
        "name": "gpt2-v5",
        "model_type": "gpt2",
        "dtype": "F32",
        "seed": 1505,
        "config": dict(vocab_size=300, n_embd=48, n_head=4, n_layer=4, n_positions=64, activation_function="gelu_new", layer_norm_epsilon=1e-5),
    },
    {
        "name": "gemma2",
        "model_type": "gemma2",
        "dtype": "BF16",
        "seed": 1606,
        "gemma_norm": True,
        "post_norms": True,
        "removed": [1, 3],  # kept 0 and 2 are both sliding: the default pattern would make position 1 full
        "scale": {"embed": 2.5, "qk": 1.6},
        "config": dict(
            vocab_size=320, hidden_size=48, intermediate_size=128, num_hidden_layers=4, num_attention_heads=4, num_key_value_heads=2, head_dim=16,
            max_position_embeddings=512, rms_norm_eps=1e-6, tie_word_embeddings=True, hidden_activation="gelu_pytorch_tanh",
            query_pre_attn_scalar=24, attn_logit_softcapping=5.0, final_logit_softcapping=3.0, sliding_window=8,
            rope_parameters={"rope_type": "default", "rope_theta": 10000.0},
        ),
    },
    {
        "name": "gemma3-text",
        "model_type": "gemma3_text",
        "dtype": "BF16",
        "seed": 1707,
        "gemma_norm": True,
        "post_norms": True,
        "scale": {"embed": 1.5},
        "config": dict(
            vocab_size=256, hidden_size=40, intermediate_size=112, num_hidden_layers=6, num_attention_heads=4, num_key_value_heads=1, head_dim=16,
            max_position_embeddings=512, rms_norm_eps=1e-6, tie_word_embeddings=True, hidden_activation="gelu_pytorch_tanh",
            query_pre_attn_scalar=20, sliding_window=8,
            rope_parameters={"sliding_attention": {"rope_type": "default", "rope_theta": 10000.0},
                             "full_attention": {"rope_type": "linear", "factor": 8.0, "rope_theta": 1000000.0}},
        ),
    },
    {
        "name": "phi3",
        "model_type": "phi3",
        "dtype": "BF16",
        "seed": 1808,
        "config": dict(
            vocab_size=384, hidden_size=64, intermediate_size=160, num_hidden_layers=4, num_attention_heads=4, num_key_value_heads=2,
            max_position_embeddings=512, original_max_position_embeddings=512, rms_norm_eps=1e-5, tie_word_embeddings=True, sliding_window=None,
            rope_parameters={"rope_type": "default", "rope_theta": 10000.0, "partial_rotary_factor": 0.75},
        ),
    },
    {
        "name": "olmo2",
        "model_type": "olmo2",
        "dtype": "F32",
        "seed": 1909,
        "post_norms": True,
        "scale": {"embed": 1.0},
        "config": dict(
            vocab_size=256, hidden_size=32, intermediate_size=96, num_hidden_layers=4, num_attention_heads=4, num_key_value_heads=2,
            max_position_embeddings=512, rms_norm_eps=1e-6, tie_word_embeddings=False, rope_parameters={"rope_type": "default", "rope_theta": 500000.0},
        ),
    },
    {
        "name": "granite",
        "model_type": "granite",
        "dtype": "BF16",
        "seed": 2010,
        "scale": {"embed": 2.0, "out": 1.6, "mlp_out": 1.2},
        "config": dict(
            vocab_size=384, hidden_size=64, intermediate_size=160, num_hidden_layers=4, num_attention_heads=4, num_key_value_heads=2,
            max_position_embeddings=512, rms_norm_eps=1e-6, tie_word_embeddings=True, rope_parameters={"rope_type": "default", "rope_theta": 10000.0},
            embedding_multiplier=6.0, residual_multiplier=0.5, attention_multiplier=0.15, logits_scaling=2.5,
        ),
    },
    {
        "name": "smollm3",
        "model_type": "smollm3",
        "dtype": "BF16",
        "seed": 2111,
        "config": dict(
            vocab_size=384, hidden_size=64, intermediate_size=160, num_hidden_layers=4, num_attention_heads=4, num_key_value_heads=2,
            max_position_embeddings=512, rms_norm_eps=1e-6, tie_word_embeddings=True, no_rope_layer_interval=4,
            rope_parameters={"rope_type": "default", "rope_theta": 2000000.0},
        ),
    },
    {
        "name": "pythia",
        "model_type": "gpt_neox",
        "dtype": "F16",
        "seed": 2212,
        "config": dict(
            vocab_size=320, hidden_size=64, intermediate_size=192, num_hidden_layers=4, num_attention_heads=4, max_position_embeddings=512,
            layer_norm_eps=1e-5, tie_word_embeddings=False, use_parallel_residual=True, hidden_act="gelu",
            rope_parameters={"rope_type": "default", "rope_theta": 10000.0, "partial_rotary_factor": 0.25},
        ),
    },
    {
        "name": "neox-sequential",
        "model_type": "gpt_neox",
        "dtype": "F32",
        "seed": 2313,
        "config": dict(
            vocab_size=256, hidden_size=32, intermediate_size=96, num_hidden_layers=4, num_attention_heads=4, max_position_embeddings=512,
            layer_norm_eps=1e-5, tie_word_embeddings=False, use_parallel_residual=False, hidden_act="gelu",
            rope_parameters={"rope_type": "default", "rope_theta": 10000.0, "partial_rotary_factor": 0.5},
        ),
    },
]
DEFAULT_REMOVED, REMOVED_ATTN, REMOVED_MLP = [1, 2], [1], [2]

# weight roles by module name; std = scale[role] / sqrt(fan_in) (per-block gain g on the block's output roles)
ROLES = {
    "q_proj": "qk", "k_proj": "qk", "qkv_proj": "qk", "c_attn": "qk", "query_key_value": "qk",
    "v_proj": "v",
    "o_proj": "out", "dense": "out",
    "gate_proj": "mlp_in", "up_proj": "mlp_in", "gate_up_proj": "mlp_in", "c_fc": "mlp_in", "dense_h_to_4h": "mlp_in",
    "down_proj": "mlp_out", "dense_4h_to_h": "mlp_out",
    "lm_head": "head", "embed_out": "head",
}
SCALE = {"qk": 1.0, "v": 0.8, "out": 0.8, "mlp_in": 1.0, "mlp_out": 0.6, "head": 1.0, "bias": 0.05}
POST_NORMS = ("post_attention_layernorm", "post_feedforward_layernorm")  # block-output norms where post_norms is set


class Rand:
    def __init__(self, seed):
        self.g = torch.Generator().manual_seed(seed)

    def normal(self, shape, std, mean=0.0):
        return torch.randn(shape, generator=self.g, dtype=torch.float64) * std + mean


def role_of(model, name):
    """(role, module) for a parameter name; raises on anything it does not know, so no weight keeps its init."""
    mod_name, _, leaf = name.rpartition(".")
    module = model.get_submodule(mod_name)
    short = mod_name.rpartition(".")[2]
    if isinstance(module, torch.nn.Embedding):
        return "embed" if short != "wpe" else "pos", module
    if isinstance(module, torch.nn.LayerNorm) or "RMSNorm" in type(module).__name__:
        return ("norm" if leaf == "weight" else "norm_bias"), module
    role = ROLES.get(short)
    if short == "c_proj":  # gpt2 reuses the name for both output projections
        role = "out" if ".attn." in name + "." else "mlp_out"
    if role is None:
        raise SystemExit(f"{name}: no weight role for module {short!r} ({type(module).__name__})")
    return (role if leaf == "weight" else "bias"), module


def fill_weights(model, fx, r):
    """Random normal weights so blocks differ: per-block output gains g in [0.3, 1.6] on the output projections
    (and on the post-norms of post-norm families, whose output scale is set by that norm); norm weights
    1 + 0.1 N(0,1), or w = 0.1 N(0,1) for gemma's (1 + w) norms; nonzero biases wherever the module has them."""
    n_layers = model.config.num_hidden_layers
    gains = [float(g) for g in torch.rand(n_layers, generator=r.g, dtype=torch.float64) * 1.3 + 0.3]
    hidden = model.config.hidden_size
    scale = dict(SCALE, **fx.get("scale", {}))
    tied = model.config.tie_word_embeddings
    with torch.no_grad():
        for name, p in sorted(model.named_parameters()):
            role, module = role_of(model, name)
            m = hfref.LAYER_KEY.match(name)
            g = gains[int(m.group(2))] if m else 1.0
            is_post = fx.get("post_norms") and any(f".{n}." in name for n in POST_NORMS)
            if role == "norm":
                gain = g if is_post else 1.0
                # gemma stores w for (1 + w): w = gain - 1 + noise keeps the effective scale at gain
                v = r.normal(p.shape, 0.1, gain - 1.0 if fx.get("gemma_norm") else gain)
            elif role == "norm_bias":
                v = r.normal(p.shape, 0.02)
            elif role == "embed":
                # a tied head reads logits off the embeddings: keep them O(1)
                v = r.normal(p.shape, scale.get("embed", 1.2) / math.sqrt(hidden) if tied else scale.get("embed", 0.4))
            elif role == "pos":
                v = r.normal(p.shape, 0.05)
            elif role == "bias":
                v = r.normal(p.shape, scale["bias"])
            else:
                fan_in = p.shape[0] if type(module).__name__ == "Conv1D" else p.shape[1]  # Conv1D stores [in, out]
                std = scale[role] / math.sqrt(fan_in)
                if role in ("out", "mlp_out"):
                    std *= g
                v = r.normal(p.shape, std)
            p.copy_(v.to(p.dtype))


def build_model(fx):
    cfg = transformers.AutoConfig.for_model(fx["model_type"], **dict(TOKENS, **fx["config"]))
    torch.manual_seed(fx["seed"])  # from_config's own init (overwritten below) stays reproducible anyway
    model = transformers.AutoModelForCausalLM.from_config(cfg)
    model.to(TORCH_DTYPE[fx["dtype"]])
    fill_weights(model, fx, Rand(fx["seed"]))
    return model


def make_ids(seed, vocab):
    g = torch.Generator().manual_seed(seed)
    return [torch.randint(0, vocab, (n,), generator=g).tolist() for n in SEQ_LENS]


def max_diff(a, b):
    """Largest absolute difference over two (blocks, nll, lastLogits) results."""
    (ab, an, al), (bb, bn, bl) = a, b
    d = abs(an["mean"] - bn["mean"])
    for x, y in zip(ab, bb):
        assert x["index"] == y["index"]
        d = max(d, abs(x["bi"] - y["bi"]), abs(x["angular"] - y["angular"]), abs(x["relMagnitude"] - y["relMagnitude"]))
    for x, y in zip(al, bl):
        d = max(d, max(abs(u - v) for u, v in zip(x, y)))
    return d


def effect(base, other):
    """How far a variant moves the result: (max |d BI|, relative d NLL, max |d logit|)."""
    (bb, bn, bl), (ob, on, ol) = base, other
    dbi = max(abs(x["bi"] - y["bi"]) for x, y in zip(bb, ob))
    dl = max(max(abs(u - v) for u, v in zip(x, y)) for x, y in zip(bl, ol))
    return dbi, abs(on["mean"] - bn["mean"]) / bn["mean"], dl


def variant(folder, ids, edit):
    model = hfref.load(folder)
    edit(model)
    return hfref.run(model, ids)


def diagnostics(fx, folder, ids, base, removed, removal):
    """Evidence that each special feature changes the numbers (printed; not part of the golden)."""
    cfg = hfref.load(folder).config
    out = {}
    if getattr(cfg, "sliding_window", None) and "sliding_attention" in (getattr(cfg, "layer_types", None) or ["sliding_attention"]):
        out["window off"] = effect(base, variant(folder, ids, lambda m: setattr(m.config, "sliding_window", 4096)))
    if getattr(cfg, "attn_logit_softcapping", None):

        def no_attn_cap(m):
            for layer in hfref.layers(m):
                layer.self_attn.attn_logit_softcapping = None

        out["attn softcap off"] = effect(base, variant(folder, ids, no_attn_cap))
    if getattr(cfg, "final_logit_softcapping", None):
        out["final softcap off"] = effect(base, variant(folder, ids, lambda m: setattr(m.config, "final_logit_softcapping", None)))
    if fx.get("gemma_norm"):

        def bf16_scale(m):
            emb = m.model.embed_tokens
            emb.embed_scale = torch.tensor(emb.scalar_embed_scale, dtype=torch.bfloat16).to(torch.float64)

        out["embed scale in bf16"] = effect(base, variant(folder, ids, bf16_scale))
    # the per-layer lists must follow the kept layers: what a pruned config without them would compute instead
    lists = [k for k in hfref.PER_LAYER_KEYS if isinstance(getattr(cfg, k, None), list) and len(set(getattr(cfg, k))) > 1]
    if lists:
        with tempfile.TemporaryDirectory() as tmp:
            hfref.write_pruned(folder, removed, tmp)
            path = os.path.join(tmp, "config.json")
            with open(path) as f:
                c = json.load(f)
            for k in lists:
                c.pop(k)
            with open(path, "w") as f:
                json.dump(c, f)
            m = hfref.load(tmp)
            kept = [i for i in range(cfg.num_hidden_layers) if i not in removed]
            stale = hfref.run(m, ids, kept)
        out["pruned w/o " + "+".join(lists)] = effect(removal, stale)
    return out


def golden(fx, folder, ids, removed):
    model = hfref.load(folder)
    cfg = model.config
    base = hfref.run(model, ids)
    r = hfref.evaluate(folder, ids, removed=removed)
    a = hfref.evaluate(folder, ids, removed_attn=REMOVED_ATTN)
    m = hfref.evaluate(folder, ids, removed_mlp=REMOVED_MLP)
    # the in-memory removal must be exactly what a pruned, renumbered checkpoint computes in transformers
    with tempfile.TemporaryDirectory() as tmp:
        kept = hfref.write_pruned(folder, removed, tmp)
        exported = hfref.run(hfref.load(tmp), ids, kept)
    d = max_diff(r, exported)
    if d > 1e-12:
        raise SystemExit(f"{fx['name']}: in-memory removal differs from the reloaded pruned checkpoint by {d:.3g}")
    g = {
        "name": fx["name"],
        "modelType": cfg.model_type,
        "dtype": fx["dtype"],
        "layers": cfg.num_hidden_layers,
        "vocabSize": cfg.vocab_size,
        "ids": ids,
        "blocks": base[0],
        "lastLogits": base[2],
        "nll": base[1],
        "removal": {"removed": removed, "blocks": r[0], "nll": r[1], "lastLogits": r[2]},
        "attnOnlyRemoval": {"removedAttention": REMOVED_ATTN, "nll": a[1], "blocks": a[0], "lastLogits": a[2]},
        "mlpOnlyRemoval": {"removedMlp": REMOVED_MLP, "nll": m[1], "blocks": m[0], "lastLogits": m[2]},
        "source": f"transformers {transformers.__version__}",
        "torch": torch.__version__,
    }
    return g, base, r


def check_stored(model, folder):
    """The float64 reload must hold exactly the values written (rounded once to the storage dtype)."""
    ref = {k: v.to(torch.float64) for k, v in model.state_dict().items()}
    got = hfref.load(folder).state_dict()
    for k, v in ref.items():
        if k not in got or not torch.equal(got[k], v):
            raise SystemExit(f"{folder}: {k} did not round-trip through save_pretrained/from_pretrained")


def build(fx):
    folder = os.path.join(OUT, fx["name"])
    if os.path.isdir(folder):
        shutil.rmtree(folder)  # stale shards from an older layout
    model = build_model(fx)
    kwargs = {"max_shard_size": fx["shard"]} if "shard" in fx else {}
    model.save_pretrained(folder, **kwargs)
    check_stored(model, folder)
    removed = fx.get("removed", DEFAULT_REMOVED)
    ids = make_ids(fx["seed"] + 1, model.config.vocab_size)
    write_json(os.path.join(folder, "ids.json"), ids)
    g, base, removal = golden(fx, folder, ids, removed)
    write_json(os.path.join(folder, "golden.json"), g)
    size = sum(os.path.getsize(os.path.join(folder, f)) for f in os.listdir(folder))
    bi = ", ".join(f"{b['bi']:.3f}" for b in g["blocks"])
    print(f"{fx['name']:16s} {fx['dtype']:4s} {size:8d} B  ppl {g['nll']['ppl']:9.2f}  -{removed} {g['removal']['nll']['ppl']:9.2f}  BI [{bi}]")
    for what, (dbi, dnll, dlog) in diagnostics(fx, folder, ids, base, removed, removal).items():
        print(f"{'':16s} {what:26s} moves BI by {dbi:.2e}, NLL by {dnll:.2e} rel, logits by {dlog:.2e}")


def main(names):
    known = {fx["name"] for fx in FIXTURES}
    for n in names:
        if n not in known:
            sys.exit(f"unknown fixture {n!r}; known: {', '.join(sorted(known))}")
    print(f"transformers {transformers.__version__}, torch {torch.__version__}")
    for fx in FIXTURES:
        if not names or fx["name"] in names:
            build(fx)


if __name__ == "__main__":
    main(sys.argv[1:])

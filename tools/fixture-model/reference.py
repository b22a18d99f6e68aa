"""Independent HF-semantics forward pass (float64 for goldens, float32 + autograd for training).

One functional implementation for every supported family, written from the HF modeling conventions:
llama / mistral / qwen2 (qkv bias) / qwen3 (per-head q/k RMSNorm, explicit head_dim) and gpt2 (Conv1D
[in, out] weights, gelu_new, learned positions, LayerNorm). Weights are a dict name -> tensor using HF names
without the `model.` / `transformer.` prefix handling (see `canonical_weights`).

A plan removes whole blocks (`removed`) or only a block's attention (`removed_attn`) / MLP (`removed_mlp`).
"""
import json
import math
import struct

import torch

DTYPES = {"F32": (torch.float32, 4), "F16": (torch.float16, 2), "BF16": (torch.bfloat16, 2)}


# ---------------------------------------------------------------- safetensors (no external package here)
def load_safetensors(path):
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + n])
    out = {}
    base = 8 + n
    for name, info in header.items():
        if name == "__metadata__":
            continue
        dtype, size = DTYPES[info["dtype"]]
        a, b = info["data_offsets"]
        buf = bytearray(data[base + a : base + b])
        t = torch.frombuffer(buf, dtype=dtype) if b > a else torch.zeros(0, dtype=dtype)
        out[name] = t.reshape(info["shape"]).clone()
    return out


def save_safetensors(path, tensors, dtype="F32", metadata=None):
    torch_dtype, size = DTYPES[dtype]
    header = {}
    blobs = []
    offset = 0
    for name in sorted(tensors):
        t = tensors[name].detach().to(torch_dtype).contiguous()
        raw = t.view(torch.int16).numpy().tobytes() if size == 2 else t.numpy().tobytes()
        header[name] = {"dtype": dtype, "shape": list(t.shape), "data_offsets": [offset, offset + len(raw)]}
        blobs.append(raw)
        offset += len(raw)
    if metadata:
        header["__metadata__"] = metadata
    head = json.dumps(header, separators=(",", ":")).encode()
    head += b" " * ((8 - len(head) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(head)))
        f.write(head)
        for raw in blobs:
            f.write(raw)


# ---------------------------------------------------------------- config
def spec_from_config(cfg):
    family = "gpt2" if cfg["model_type"] == "gpt2" else "llama"
    if family == "gpt2":
        hidden = cfg["n_embd"]
        heads = cfg["n_head"]
        return {
            "family": "gpt2",
            "layers": cfg["n_layer"],
            "hidden": hidden,
            "heads": heads,
            "kv_heads": heads,
            "head_dim": hidden // heads,
            "eps": cfg.get("layer_norm_epsilon", 1e-5),
            "tie": True,
        }
    hidden = cfg["hidden_size"]
    heads = cfg["num_attention_heads"]
    return {
        "family": "llama",
        "model_type": cfg["model_type"],
        "layers": cfg["num_hidden_layers"],
        "hidden": hidden,
        "heads": heads,
        "kv_heads": cfg.get("num_key_value_heads") or heads,
        "head_dim": cfg.get("head_dim") or hidden // heads,
        "eps": cfg.get("rms_norm_eps", 1e-6),
        "theta": cfg.get("rope_theta", 10000.0),
        "rope_scaling": cfg.get("rope_scaling"),
        "qk_norm": cfg["model_type"] == "qwen3",
        "tie": cfg.get("tie_word_embeddings", False),
    }


def canonical_weights(raw, spec):
    """Strips `model.` / `transformer.` prefixes; drops buffers; ties the head when asked."""
    w = {}
    for name, t in raw.items():
        for prefix in ("model.", "transformer."):
            if name.startswith(prefix):
                name = name[len(prefix) :]
        if name.endswith("rotary_emb.inv_freq") or (spec["family"] == "gpt2" and (name.endswith(".attn.bias") or name.endswith(".attn.masked_bias"))):
            continue
        w[name] = t
    if "lm_head.weight" not in w:
        w["lm_head.weight"] = w["embed_tokens.weight"] if spec["family"] == "llama" else w["wte.weight"]
    return w


# ---------------------------------------------------------------- llama family
def rope_inv_freq(spec, dtype):
    d = spec["head_dim"]
    inv = 1.0 / (spec["theta"] ** (torch.arange(0, d, 2, dtype=torch.float64) / d))
    sc = spec.get("rope_scaling")
    if sc:
        kind = sc.get("rope_type", sc.get("type"))
        if kind == "linear":
            inv = inv / sc["factor"]
        elif kind == "llama3":
            factor, lo, hi = sc["factor"], sc["low_freq_factor"], sc["high_freq_factor"]
            old = sc["original_max_position_embeddings"]
            lo_wl, hi_wl = old / lo, old / hi
            wl = 2 * math.pi / inv
            scaled = torch.where(wl > lo_wl, inv / factor, inv)
            smooth = (old / wl - lo) / (hi - lo)
            smoothed = (1 - smooth) * scaled / factor + smooth * scaled
            medium = ~(wl < hi_wl) & ~(wl > lo_wl)
            inv = torch.where(medium, smoothed, scaled)
        elif kind != "default":
            raise ValueError(f"unsupported rope type {kind}")
    return inv.to(dtype)


def rms_norm(x, w, eps):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * w


def rotate_half(x):
    h = x.shape[-1] // 2
    return torch.cat([-x[..., h:], x[..., :h]], dim=-1)


def causal_attention(q, k, v):
    """q [B, H, T, D], k/v [B, KV, T, D] -> [B, T, H*D]; GQA: query head h reads kv head h // (H / KV)."""
    b, heads, t, d = q.shape
    rep = heads // k.shape[1]
    k = k.repeat_interleave(rep, dim=1)
    v = v.repeat_interleave(rep, dim=1)
    scores = q @ k.transpose(-1, -2) / math.sqrt(d)
    mask = torch.triu(torch.ones(t, t, dtype=torch.bool), 1)
    scores = scores.masked_fill(mask, float("-inf"))
    return (torch.softmax(scores, -1) @ v).transpose(1, 2).reshape(b, t, heads * d)


def linear(x, w, name):
    y = x @ w[name + ".weight"].T
    b = w.get(name + ".bias")
    return y + b if b is not None else y


def llama_attention(x, w, p, spec, cos, sin):
    bsz, t = x.shape[0], x.shape[1]
    h, kv, d = spec["heads"], spec["kv_heads"], spec["head_dim"]
    q = linear(x, w, p + "self_attn.q_proj").view(bsz, t, h, d).transpose(1, 2)
    k = linear(x, w, p + "self_attn.k_proj").view(bsz, t, kv, d).transpose(1, 2)
    v = linear(x, w, p + "self_attn.v_proj").view(bsz, t, kv, d).transpose(1, 2)
    if spec.get("qk_norm"):
        q = rms_norm(q, w[p + "self_attn.q_norm.weight"], spec["eps"])
        k = rms_norm(k, w[p + "self_attn.k_norm.weight"], spec["eps"])
    q = q * cos + rotate_half(q) * sin
    k = k * cos + rotate_half(k) * sin
    return linear(causal_attention(q, k, v), w, p + "self_attn.o_proj")


def llama_mlp(x, w, p):
    gate = linear(x, w, p + "mlp.gate_proj")
    up = linear(x, w, p + "mlp.up_proj")
    return linear(torch.nn.functional.silu(gate) * up, w, p + "mlp.down_proj")


# ---------------------------------------------------------------- gpt2
def layer_norm(x, w, b, eps):
    mu = x.mean(-1, keepdim=True)
    var = (x - mu).pow(2).mean(-1, keepdim=True)
    return (x - mu) / torch.sqrt(var + eps) * w + b


def gelu_new(x):
    return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x.pow(3))))


def conv1d(x, w, name):
    return x @ w[name + ".weight"] + w[name + ".bias"]


def gpt2_attention(x, w, p, spec):
    bsz, t = x.shape[0], x.shape[1]
    h, d = spec["heads"], spec["head_dim"]
    qkv = conv1d(x, w, p + "attn.c_attn")
    q, k, v = qkv.split(spec["hidden"], dim=-1)
    q, k, v = (z.view(bsz, t, h, d).transpose(1, 2) for z in (q, k, v))
    return conv1d(causal_attention(q, k, v), w, p + "attn.c_proj")


def gpt2_mlp(x, w, p):
    return conv1d(gelu_new(conv1d(x, w, p + "mlp.c_fc")), w, p + "mlp.c_proj")


# ---------------------------------------------------------------- forward
def forward(spec, w, ids, removed=(), removed_attn=(), removed_mlp=(), dtype=torch.float64):
    """Returns (logits [T, V], states) where states[0] is the block input stream and states[k+1] the
    output of the k-th *active* block (residual stream, before the final norm). ids may be [T] or [B, T]."""
    ids = torch.as_tensor(ids, dtype=torch.long)
    single = ids.dim() == 1
    if single:
        ids = ids[None]
    t = ids.shape[1]
    wd = {k: v.to(dtype) for k, v in w.items()}
    eps = spec["eps"]
    if spec["family"] == "gpt2":
        x = wd["wte.weight"][ids] + wd["wpe.weight"][:t]
    else:
        x = wd["embed_tokens.weight"][ids]
        pos = torch.arange(t, dtype=torch.float64)
        freqs = torch.outer(pos, rope_inv_freq(spec, torch.float64))
        emb = torch.cat([freqs, freqs], -1)
        cos, sin = emb.cos().to(dtype), emb.sin().to(dtype)
    states = [x]
    for i in range(spec["layers"]):
        if i in removed:
            continue
        if spec["family"] == "gpt2":
            p = f"h.{i}."
            if i not in removed_attn:
                x = x + gpt2_attention(layer_norm(x, wd[p + "ln_1.weight"], wd[p + "ln_1.bias"], eps), wd, p, spec)
            if i not in removed_mlp:
                x = x + gpt2_mlp(layer_norm(x, wd[p + "ln_2.weight"], wd[p + "ln_2.bias"], eps), wd, p)
        else:
            p = f"layers.{i}."
            if i not in removed_attn:
                x = x + llama_attention(rms_norm(x, wd[p + "input_layernorm.weight"], eps), wd, p, spec, cos, sin)
            if i not in removed_mlp:
                x = x + llama_mlp(rms_norm(x, wd[p + "post_attention_layernorm.weight"], eps), wd, p)
        states.append(x)
    if spec["family"] == "gpt2":
        h = layer_norm(x, wd["ln_f.weight"], wd["ln_f.bias"], eps)
    else:
        h = rms_norm(x, wd["norm.weight"], eps)
    logits = h @ wd["lm_head.weight"].T
    if single:
        return logits[0], [s[0] for s in states]
    return logits, states


def block_stats(states, active):
    """Per active block: BI, angular distance (n=1) and relative magnitude, as DESIGN.md defines them."""
    out = []
    for k, i in enumerate(active):
        a, b = states[k], states[k + 1]
        cos = torch.nn.functional.cosine_similarity(a, b, dim=-1, eps=0.0).clamp(-1, 1)
        rel = (b - a).norm(dim=-1) / b.norm(dim=-1)
        out.append({"index": i, "cosSum": cos.sum().item(), "angularSum": (torch.arccos(cos) / math.pi).sum().item(), "relMagnitudeSum": rel.sum().item(), "tokens": a.shape[0]})
    return out


def nll_sum(logits, ids):
    ids = torch.as_tensor(ids, dtype=torch.long)
    logp = torch.log_softmax(logits[:-1], -1)
    return -logp.gather(1, ids[1:, None]).sum().item(), ids.shape[0] - 1


def load_model(folder):
    import glob
    import os

    with open(os.path.join(folder, "config.json")) as f:
        cfg = json.load(f)
    spec = spec_from_config(cfg)
    raw = {}
    for path in sorted(glob.glob(os.path.join(folder, "*.safetensors"))):
        raw.update(load_safetensors(path))
    return spec, canonical_weights(raw, spec), cfg

"""ONNX export of a llama-family HF folder for the transformers.js benchmark peer (dev/bench time only).

    /usr/bin/python3 tools/fixture-model/export_onnx.py <model-dir> [<out-dir>]
    /usr/bin/python3 tools/fixture-model/export_onnx.py --random smollm2-135m <out-dir>   # random weights, real shape

Writes <out-dir>/config.json, generation_config.json, tokenizer files (when present) and onnx/model.onnx with
the I/O transformers.js expects for text generation (see ../../../shared/notes/transformersjs-peer.md):
inputs input_ids, attention_mask, position_ids, past_key_values.{i}.key|value; outputs logits,
present.{i}.key|value. RoPE cos/sin come from a float64 table gathered by position (no Sin/Cos nodes).
The --random mode also writes model.safetensors (F16) so our engine runs the very same weights.
"""
import json
import math
import os
import shutil
import sys

import torch

import reference

SHAPES = {
    "smollm2-135m": {"vocab_size": 49152, "hidden_size": 576, "intermediate_size": 1536, "num_hidden_layers": 30, "num_attention_heads": 9, "num_key_value_heads": 3, "rope_theta": 100000.0, "rms_norm_eps": 1e-5, "tie_word_embeddings": True},
    "qwen2.5-0.5b": {"vocab_size": 151936, "hidden_size": 896, "intermediate_size": 4864, "num_hidden_layers": 24, "num_attention_heads": 14, "num_key_value_heads": 2, "rope_theta": 1000000.0, "rms_norm_eps": 1e-6, "tie_word_embeddings": True, "model_type": "qwen2"},
}
MAX_POSITIONS = 2048


class CachedLlama(torch.nn.Module):
    def __init__(self, spec, w):
        super().__init__()
        self.spec = spec
        self.w = {k: v.float() for k, v in w.items()}
        pos = torch.arange(MAX_POSITIONS, dtype=torch.float64)
        freqs = torch.outer(pos, reference.rope_inv_freq(spec, torch.float64))
        emb = torch.cat([freqs, freqs], -1)
        self.register_buffer("cos_table", emb.cos().float())
        self.register_buffer("sin_table", emb.sin().float())
        for k, v in self.w.items():
            self.register_buffer(k.replace(".", "_"), v)

    def weight(self, name):
        return getattr(self, name.replace(".", "_"))

    def linear(self, x, name):
        y = x @ self.weight(name + ".weight").T
        bias = name + ".bias"
        return y + self.weight(bias) if bias in self.w else y

    def forward(self, input_ids, attention_mask, position_ids, *past):
        s = self.spec
        b, t = input_ids.shape
        h, kv, d, eps = s["heads"], s["kv_heads"], s["head_dim"], s["eps"]
        x = self.weight("embed_tokens.weight")[input_ids]
        cos = self.cos_table[position_ids][:, None]
        sin = self.sin_table[position_ids][:, None]
        total = attention_mask.shape[1]
        past_len = total - t
        # causal mask over [past + new] built from attention_mask
        key_pos = torch.arange(total)[None, :]
        query_pos = (torch.arange(t) + past_len)[:, None]
        allowed = (key_pos <= query_pos)[None, None] & (attention_mask[:, None, None, :] > 0)
        presents = []
        for i in range(s["layers"]):
            p = f"layers.{i}."
            n = reference.rms_norm(x, self.weight(p + "input_layernorm.weight"), eps)
            q = self.linear(n, p + "self_attn.q_proj").view(b, t, h, d).transpose(1, 2)
            k = self.linear(n, p + "self_attn.k_proj").view(b, t, kv, d).transpose(1, 2)
            v = self.linear(n, p + "self_attn.v_proj").view(b, t, kv, d).transpose(1, 2)
            q = q * cos + reference.rotate_half(q) * sin
            k = k * cos + reference.rotate_half(k) * sin
            k = torch.cat([past[2 * i], k], dim=2)
            v = torch.cat([past[2 * i + 1], v], dim=2)
            presents += [k, v]
            # GQA as unsqueeze + expand + reshape: torch 1.13's export of repeat_interleave makes a graph
            # onnxruntime 1.30 rejects at run time ("left operand cannot broadcast").
            rep = h // kv
            kk = k.unsqueeze(2).expand(-1, -1, rep, -1, -1).reshape(b, h, -1, d)
            vv = v.unsqueeze(2).expand(-1, -1, rep, -1, -1).reshape(b, h, -1, d)
            scores = q @ kk.transpose(-1, -2) / math.sqrt(d)
            scores = scores.masked_fill(~allowed, -1e9)
            a = (torch.softmax(scores, -1) @ vv).transpose(1, 2).reshape(b, t, h * d)
            x = x + self.linear(a, p + "self_attn.o_proj")
            n = reference.rms_norm(x, self.weight(p + "post_attention_layernorm.weight"), eps)
            x = x + self.linear(torch.nn.functional.silu(self.linear(n, p + "mlp.gate_proj")) * self.linear(n, p + "mlp.up_proj"), p + "mlp.down_proj")
        x = reference.rms_norm(x, self.weight("norm.weight"), eps)
        return (x @ self.weight("lm_head.weight").T, *presents)


def random_model(shape, out):
    cfg = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_act": "silu", "max_position_embeddings": MAX_POSITIONS, "bos_token_id": 0, "eos_token_id": 0, "torch_dtype": "float16", **SHAPES[shape]}
    g = torch.Generator().manual_seed(0)
    c, f, heads, kvh = cfg["hidden_size"], cfg["intermediate_size"], cfg["num_attention_heads"], cfg["num_key_value_heads"]
    d = c // heads
    t = {"model.embed_tokens.weight": torch.randn(cfg["vocab_size"], c, generator=g) * 0.02, "model.norm.weight": torch.ones(c)}
    for i in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{i}."
        t[p + "input_layernorm.weight"] = torch.ones(c)
        t[p + "post_attention_layernorm.weight"] = torch.ones(c)
        for name, shp in [("self_attn.q_proj", (heads * d, c)), ("self_attn.k_proj", (kvh * d, c)), ("self_attn.v_proj", (kvh * d, c)), ("self_attn.o_proj", (c, heads * d)), ("mlp.gate_proj", (f, c)), ("mlp.up_proj", (f, c)), ("mlp.down_proj", (c, f))]:
            t[p + name + ".weight"] = torch.randn(*shp, generator=g) * 0.02
        if cfg["model_type"] == "qwen2":
            for name, n in [("q_proj", heads * d), ("k_proj", kvh * d), ("v_proj", kvh * d)]:
                t[p + "self_attn." + name + ".bias"] = torch.randn(n, generator=g) * 0.02
    os.makedirs(out, exist_ok=True)
    reference.save_safetensors(os.path.join(out, "model.safetensors"), t, "F16", {"format": "pt"})
    json.dump(cfg, open(os.path.join(out, "config.json"), "w"), indent=2)
    return out


def export(model_dir, out):
    spec, w, cfg = reference.load_model(model_dir)
    if spec["family"] != "llama" or spec.get("qk_norm"):
        raise SystemExit("export_onnx: only llama/mistral/qwen2-style models are exported")
    os.makedirs(os.path.join(out, "onnx"), exist_ok=True)
    for name in ("config.json", "tokenizer.json", "tokenizer_config.json", "generation_config.json"):
        src = os.path.join(model_dir, name)
        if os.path.exists(src) and os.path.abspath(model_dir) != os.path.abspath(out):
            shutil.copy(src, os.path.join(out, name))
    if not os.path.exists(os.path.join(out, "generation_config.json")):
        json.dump({"bos_token_id": cfg.get("bos_token_id", 0), "eos_token_id": cfg.get("eos_token_id", 0)}, open(os.path.join(out, "generation_config.json"), "w"))
    module = CachedLlama(spec, w).eval()
    layers, kv, d = spec["layers"], spec["kv_heads"], spec["head_dim"]
    ids = torch.tensor([[1, 2, 3]])
    past = [torch.zeros(1, kv, 2, d) for _ in range(2 * layers)]
    mask = torch.ones(1, 5, dtype=torch.long)
    pos = torch.tensor([[2, 3, 4]])
    past_names = [f"past_key_values.{i}.{kind}" for i in range(layers) for kind in ("key", "value")]
    present_names = [f"present.{i}.{kind}" for i in range(layers) for kind in ("key", "value")]
    # transformers.js builds the empty first-step cache from the input metadata and resolves only the symbol
    # "batch_size" for the batch axis: any other name becomes 0.
    axes = {"input_ids": {0: "batch_size", 1: "seq"}, "attention_mask": {0: "batch_size", 1: "total"}, "position_ids": {0: "batch_size", 1: "seq"}, "logits": {0: "batch_size", 1: "seq"}}
    for n in past_names:
        axes[n] = {0: "batch_size", 2: "past"}
    for n in present_names:
        axes[n] = {0: "batch_size", 2: "total"}
    with torch.no_grad():
        torch.onnx.export(module, (ids, mask, pos, *past), os.path.join(out, "onnx", "model.onnx"), input_names=["input_ids", "attention_mask", "position_ids", *past_names], output_names=["logits", *present_names], dynamic_axes=axes, opset_version=14)
    print(f"wrote {out}/onnx/model.onnx")


if __name__ == "__main__":
    torch.set_num_threads(2)
    if sys.argv[1] == "--random":
        folder = random_model(sys.argv[2], sys.argv[3])
        export(folder, folder)
    else:
        export(sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else sys.argv[1])

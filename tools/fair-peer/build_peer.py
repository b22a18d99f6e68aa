"""The bench's fair transformers.js peer: a llama-family checkpoint exported the way onnx-community's
text-generation models are built, in fp32, fp16 and 4-bit variants (dev / bench time only; never npm test).

    /work/hf/bin/python tools/fair-peer/build_peer.py <hf-dir> <out-dir> [--variants fp32,fp16,q4,q4f16] [--check]

Needs torch ≥ 2.9, transformers 5, onnx, onnxscript and onnxruntime (with onnxruntime.transformers).

How (the recipe of onnx-community's exports: HF's modeling code, torch.onnx's dynamo exporter, onnxruntime's
contrib-op fusions, fp16 conversion, MatMulNBits 4-bit):
1. transformers' own LlamaForCausalLM (embedding, decoder layers, RMSNorm, MLP, head) is exported with
   `torch.onnx.export(dynamo=True)`. Its attention is the one thing swapped, for what onnxruntime's
   optimizer would fuse it into (its pattern matchers do not match transformers 5's dynamo graph, see
   README.md): q / k go through com.microsoft RotaryEmbedding (cos/sin caches from a float64 table, as our
   engine), then com.microsoft GroupQueryAttention with the KV cache as past/present (no key/value
   repeat, no mask tensor: seqlens_k and total_sequence_length come from attention_mask, as in
   onnxruntime-genai's model builder).
2. onnxruntime.transformers.optimizer (model_type gpt2, the one its llama converter uses) fuses RMSNorm
   into SimplifiedLayerNormalization and each residual add + norm into SkipSimplifiedLayerNormalization;
   a residual add the optimizer leaves unfused (it needs shape inference that the dynamo graph defeats)
   is fused here by the same rule (see fuse_skip_norms).
3. fp16: onnxruntime.transformers.float16 (weights, activations, KV cache and logits in fp16, as
   onnx-community's model_fp16.onnx). 4-bit: onnxruntime.quantization MatMulNBitsQuantizer (block 32,
   symmetric, as the model builder's int4) on every MatMul with a constant weight: model_q4.onnx from
   fp32, model_q4f16.onnx from fp16 (transformers.js dtype names 'q4' and 'q4f16').
--check runs the fp32 graph in onnxruntime against transformers' eager forward (logits, 12 greedy tokens).
The output folder is a transformers.js model folder: config.json, generation_config.json, tokenizer files,
onnx/model{,_fp16,_q4,_q4f16}.onnx, and fair-peer.json (what was built, fusions counted per variant).
"""
import argparse
import json
import math
import os
import shutil
import sys
import time
from collections import Counter

import numpy as np
import onnx
import torch

MAX_POSITIONS = 2048


def log(*a):
    print("[fair-peer]", *a, file=sys.stderr, flush=True)


# ---------------------------------------------------------------- custom ops (eager math + ONNX translation)


@torch.library.custom_op("fairpeer::rotary", mutates_args=())
def rotary(x: torch.Tensor, position_ids: torch.Tensor, cos_cache: torch.Tensor, sin_cache: torch.Tensor, num_heads: int) -> torch.Tensor:
    """rotate_half RoPE on x [B, S, N·D] at position_ids [B, S]; caches [positions, D/2]."""
    b, s, width = x.shape
    d = width // num_heads
    xs = x.view(b, s, num_heads, d)
    cos = cos_cache[position_ids][:, :, None, :]
    sin = sin_cache[position_ids][:, :, None, :]
    x1, x2 = xs[..., : d // 2], xs[..., d // 2 :]
    return torch.cat([x1 * cos - x2 * sin, x2 * cos + x1 * sin], -1).reshape(b, s, width)


@rotary.register_fake
def _(x, position_ids, cos_cache, sin_cache, num_heads):
    return torch.empty_like(x)


@torch.library.custom_op("fairpeer::gqa", mutates_args=())
def gqa(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, past_k: torch.Tensor, past_v: torch.Tensor, mask: torch.Tensor, num_heads: int, kv_heads: int, scale: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Causal GQA over [past, new] (batch rows unpadded): q [B, S, H·D], k/v [B, S, KV·D], past [B, KV, P, D].

    mask (attention_mask [B, P + S]) is what the ONNX op derives seqlens_k / total_sequence_length from;
    the eager math assumes unpadded rows (the bench's single sequences)."""
    b, s, width = q.shape
    d = width // num_heads
    qh = q.view(b, s, num_heads, d).transpose(1, 2)
    present_k = torch.cat([past_k, k.view(b, s, kv_heads, d).transpose(1, 2)], 2)
    present_v = torch.cat([past_v, v.view(b, s, kv_heads, d).transpose(1, 2)], 2)
    rep = num_heads // kv_heads
    kk = present_k.repeat_interleave(rep, 1)
    vv = present_v.repeat_interleave(rep, 1)
    total = present_k.shape[2]
    scores = (qh @ kk.transpose(-1, -2)) * scale
    allowed = torch.arange(total)[None, :] <= (torch.arange(s) + total - s)[:, None]
    scores = scores.masked_fill(~allowed, float("-inf"))
    out = (torch.softmax(scores, -1) @ vv).transpose(1, 2).reshape(b, s, width)
    return out, present_k, present_v


@gqa.register_fake
def _(q, k, v, past_k, past_v, mask, num_heads, kv_heads, scale):
    b, s, _ = q.shape
    p = past_k.shape[2]
    d = past_k.shape[3]
    return torch.empty_like(q), past_k.new_empty(b, kv_heads, p + s, d), past_v.new_empty(b, kv_heads, p + s, d)


def contrib_schema(name, inputs, outputs, attributes):
    from onnx.defs import OpSchema

    types = ["tensor(float)", "tensor(float16)", "tensor(int64)", "tensor(int32)"]
    kinds = {"INT": OpSchema.AttrType.INT, "FLOAT": OpSchema.AttrType.FLOAT}
    return OpSchema(
        name,
        "com.microsoft",
        1,
        inputs=[OpSchema.FormalParameter(n, f"T{i}") for i, n in enumerate(inputs)],
        outputs=[OpSchema.FormalParameter(n, f"O{i}") for i, n in enumerate(outputs)],
        type_constraints=[(f"T{i}", types, "") for i in range(len(inputs))] + [(f"O{i}", types, "") for i in range(len(outputs))],
        attributes=[OpSchema.Attribute(a, kinds[k], "") for a, k in attributes.items()],
    )


def onnx_translations():
    import onnxscript
    from onnxscript import opset18 as op

    msft = onnxscript.values.Opset("com.microsoft", 1)
    # onnxruntime's contrib ops have no onnx schema; the exporter needs one to emit a node: declare the
    # inputs / outputs / attributes used here (the op semantics are onnxruntime's)
    rotary_op = onnxscript.values.Op(msft, "RotaryEmbedding", contrib_schema("RotaryEmbedding", ["input", "position_ids", "cos_cache", "sin_cache"], ["output"], {"interleaved": "INT", "num_heads": "INT"}))
    gqa_op = onnxscript.values.Op(
        msft,
        "GroupQueryAttention",
        contrib_schema(
            "GroupQueryAttention",
            ["query", "key", "value", "past_key", "past_value", "seqlens_k", "total_sequence_length"],
            ["output", "present_key", "present_value"],
            {"num_heads": "INT", "kv_num_heads": "INT", "scale": "FLOAT"},
        ),
    )

    def rotary_onnx(x, position_ids, cos_cache, sin_cache, num_heads: int):
        return rotary_op(x, position_ids, cos_cache, sin_cache, interleaved=0, num_heads=num_heads)

    def gqa_onnx(q, k, v, past_k, past_v, mask, num_heads: int, kv_heads: int, scale: float):
        # as the model builder: seqlens_k = Σ attention_mask − 1 per row, total = attention_mask's width
        seqlens_k = op.Cast(op.Sub(op.ReduceSum(mask, op.Constant(value_ints=[1]), keepdims=0), op.Constant(value_int=1)), to=6)
        total = op.Cast(op.Gather(op.Shape(mask), op.Constant(value_int=1), axis=0), to=6)
        return gqa_op(q, k, v, past_k, past_v, seqlens_k, total, num_heads=num_heads, kv_num_heads=kv_heads, scale=scale, _outputs=3)

    return rotary_onnx, gqa_onnx


# ---------------------------------------------------------------- transformers' model with the attention swapped

CONTEXT = {}


def rope_tables(config):
    """float64 cos/sin [positions, rotary/2] (× attention factor), the engine's ropeTable in numpy."""
    from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS

    rope_type = (getattr(config, "rope_parameters", None) or {}).get("rope_type", "default")
    if rope_type == "default":
        base = config.rope_parameters["rope_theta"] if getattr(config, "rope_parameters", None) else config.rope_theta
        dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
        inv = 1.0 / (base ** (np.arange(0, dim, 2, dtype=np.float64) / dim))
        factor = 1.0
    else:
        inv_t, factor = ROPE_INIT_FUNCTIONS[rope_type](config, "cpu")
        inv = inv_t.double().numpy()
    angles = np.outer(np.arange(MAX_POSITIONS, dtype=np.float64), inv)
    return torch.from_numpy((np.cos(angles) * factor).astype(np.float32)), torch.from_numpy((np.sin(angles) * factor).astype(np.float32))


def patched_attention_forward(self, hidden_states, position_embeddings=None, attention_mask=None, past_key_values=None, **kwargs):
    """LlamaAttention.forward with its rotary + cache + eager attention as RotaryEmbedding + GroupQueryAttention."""
    ctx = CONTEXT
    cfg = self.config
    heads, kv = cfg.num_attention_heads, cfg.num_key_value_heads
    q = self.q_proj(hidden_states)
    k = self.k_proj(hidden_states)
    v = self.v_proj(hidden_states)
    q = torch.ops.fairpeer.rotary(q, ctx["position_ids"], ctx["cos"], ctx["sin"], heads)
    k = torch.ops.fairpeer.rotary(k, ctx["position_ids"], ctx["cos"], ctx["sin"], kv)
    i = self.layer_idx
    out, pk, pv = torch.ops.fairpeer.gqa(q, k, v, ctx["past"][2 * i], ctx["past"][2 * i + 1], ctx["mask"], heads, kv, float(self.scaling))
    ctx["present"][2 * i] = pk
    ctx["present"][2 * i + 1] = pv
    return self.o_proj(out), None


class PeerWrapper(torch.nn.Module):
    """transformers.js' decoder I/O: input_ids, attention_mask, position_ids, past_key_values.* → logits, present.*."""

    def __init__(self, model):
        super().__init__()
        self.model = model
        cos, sin = rope_tables(model.config)
        self.register_buffer("cos_cache", cos)
        self.register_buffer("sin_cache", sin)

    def forward(self, input_ids, attention_mask, position_ids, *past):
        layers = self.model.config.num_hidden_layers
        CONTEXT.update(mask=attention_mask, position_ids=position_ids, cos=self.cos_cache, sin=self.sin_cache, past=past, present=[None] * (2 * layers))
        hidden = self.model.model(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids, use_cache=False).last_hidden_state
        logits = self.model.lm_head(hidden)
        return (logits, *CONTEXT["present"])


def load_hf(model_dir):
    import transformers.models.llama.modeling_llama as ml
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32, attn_implementation="eager").eval()
    if model.config.model_type not in ("llama", "mistral", "qwen2"):
        raise SystemExit(f"build_peer: {model_dir}: model_type {model.config.model_type} is not a llama-style decoder")
    if model.lm_head.weight is model.model.embed_tokens.weight:
        # onnx-community's exports store a tied head as its own [hidden, vocab] weight: a constant MatMul
        # input (no per-step Transpose of the embedding) that MatMulNBits can quantize
        model.lm_head.weight = torch.nn.Parameter(model.model.embed_tokens.weight.detach().clone())
    return model, ml


# ---------------------------------------------------------------- export, fuse, convert


def export_fp32(model, path):
    cfg = model.config
    layers, kv = cfg.num_hidden_layers, cfg.num_key_value_heads
    d = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
    wrapper = PeerWrapper(model).eval()
    b, s, p = 2, 3, 5
    ids = torch.randint(1, cfg.vocab_size, (b, s))
    mask = torch.ones(b, p + s, dtype=torch.long)
    pos = torch.arange(p, p + s)[None].expand(b, s).contiguous()
    past = tuple(torch.randn(b, kv, p, d) for _ in range(2 * layers))
    Dim = torch.export.Dim
    batch, seq, past_len, total = Dim("batch_size", max=64), Dim("sequence_length", max=MAX_POSITIONS), Dim("past_sequence_length", max=MAX_POSITIONS), Dim("total_sequence_length", max=MAX_POSITIONS)
    shapes = {"input_ids": {0: batch, 1: seq}, "attention_mask": {0: batch, 1: total}, "position_ids": {0: batch, 1: seq}, "past": tuple({0: batch, 2: past_len} for _ in range(2 * layers))}
    past_names = [f"past_key_values.{i}.{kind}" for i in range(layers) for kind in ("key", "value")]
    present_names = [f"present.{i}.{kind}" for i in range(layers) for kind in ("key", "value")]
    rotary_onnx, gqa_onnx = onnx_translations()

    t = time.time()
    with torch.no_grad():
        torch.onnx.export(
            wrapper,
            (ids, mask, pos, *past),
            path,
            input_names=["input_ids", "attention_mask", "position_ids", *past_names],
            output_names=["logits", *present_names],
            dynamic_shapes=shapes,
            dynamo=True,
            optimize=True,
            opset_version=18,
            external_data=False,
            custom_translation_table={torch.ops.fairpeer.rotary.default: rotary_onnx, torch.ops.fairpeer.gqa.default: gqa_onnx},
        )
    log(f"dynamo export {time.time() - t:.0f} s")


def fuse_skip_norms(model):
    """Add → SimplifiedLayerNormalization pairs left unfused → SkipSimplifiedLayerNormalization (same math).

    The residual sum the Add produced is the Skip op's 4th output, so later uses of it are rewired there."""
    graph = model.graph
    producers = {o: n for n in graph.node for o in n.output}
    consumers = Counter(i for n in graph.node for i in n.input)
    new_nodes, fused = [], 0
    drop = set()
    replace = {}
    for n in graph.node:
        if n.op_type != "SimplifiedLayerNormalization" or n.domain not in ("", "ai.onnx"):
            continue
        add = producers.get(n.input[0])
        if add is None or add.op_type != "Add" or id(add) in drop:
            continue
        eps = next((a.f for a in n.attribute if a.name == "epsilon"), 1e-5)
        skip = onnx.helper.make_node(
            "SkipSimplifiedLayerNormalization",
            [add.input[0], add.input[1], n.input[1]],
            [n.output[0], "", "", add.output[0] + "_sum"],
            domain="com.microsoft",
            epsilon=eps,
            name=(n.name or "norm") + "_skip",
        )
        replace[id(n)] = skip
        drop.add(id(add))
        # every other consumer of the add's output reads the skip op's sum output instead
        if consumers[add.output[0]] > 1:
            for m in graph.node:
                if m is n:
                    continue
                for j, name in enumerate(m.input):
                    if name == add.output[0]:
                        m.input[j] = add.output[0] + "_sum"
            for o in graph.output:
                if o.name == add.output[0]:
                    raise RuntimeError("residual sum is a graph output")
        fused += 1
    for n in graph.node:
        if id(n) in drop:
            continue
        new_nodes.append(replace.get(id(n), n))
    del graph.node[:]
    graph.node.extend(new_nodes)
    return fused


def topo_sort(model):
    graph = model.graph
    ready = {i.name for i in graph.input} | {i.name for i in graph.initializer} | {""}
    pending = list(graph.node)
    ordered = []
    while pending:
        rest = []
        for n in pending:
            if all(i in ready for i in n.input):
                ordered.append(n)
                ready.update(n.output)
            else:
                rest.append(n)
        if len(rest) == len(pending):
            raise RuntimeError(f"graph has a cycle or a missing input near {rest[0].name}")
        pending = rest
    del graph.node[:]
    graph.node.extend(ordered)


def optimize(src, dst, cfg):
    from onnxruntime.transformers.fusion_options import FusionOptions
    from onnxruntime.transformers.optimizer import optimize_model

    opt = optimize_model(src, model_type="gpt2", num_heads=cfg.num_attention_heads, hidden_size=cfg.hidden_size, opt_level=0, optimization_options=FusionOptions("gpt2"), only_onnxruntime=False)
    model = opt.model
    fused = fuse_skip_norms(model)
    topo_sort(model)
    if not any(o.domain == "com.microsoft" for o in model.opset_import):
        model.opset_import.append(onnx.helper.make_opsetid("com.microsoft", 1))
    onnx.save(model, dst)
    log(f"optimizer: {fused} residual adds fused here into SkipSimplifiedLayerNormalization")
    return model


def to_fp16(src, dst):
    from onnxruntime.transformers.float16 import convert_float_to_float16

    model = convert_float_to_float16(onnx.load(src), keep_io_types=False, disable_shape_infer=True)
    onnx.save(model, dst)


def to_q4(src, dst):
    import logging

    from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer

    logging.getLogger("onnxruntime.quantization.matmul_nbits_quantizer").setLevel(logging.WARNING)
    q = MatMulNBitsQuantizer(onnx.load(src), block_size=32, is_symmetric=True, accuracy_level=4)
    q.process()
    q.model.save_model_to_file(dst, use_external_data_format=False)


def op_counts(path):
    return dict(Counter(n.op_type for n in onnx.load(path, load_external_data=False).graph.node).most_common())


# ---------------------------------------------------------------- check


def check(model, path, steps=12):
    import onnxruntime as ort

    cfg = model.config
    layers, kv = cfg.num_hidden_layers, cfg.num_key_value_heads
    d = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
    sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    prompt = [(i * 7919 + 13) % cfg.vocab_size for i in range(8)]
    with torch.no_grad():
        ref_logits = model(torch.tensor([prompt])).logits[0].numpy()
        ref = model.generate(torch.tensor([prompt]), max_new_tokens=steps, min_new_tokens=steps, do_sample=False).tolist()[0][len(prompt) :]
    past = {f"past_key_values.{i}.{k}": np.zeros((1, kv, 0, d), np.float32) for i in range(layers) for k in ("key", "value")}
    ids, n, tokens = prompt, 0, []
    first_logits = None
    for _ in range(steps):
        total = n + len(ids)
        out = sess.run(None, {"input_ids": np.array([ids], np.int64), "attention_mask": np.ones((1, total), np.int64), "position_ids": np.arange(n, total, dtype=np.int64)[None], **past})
        if first_logits is None:
            first_logits = out[0][0]
        tok = int(out[0][0, -1].argmax())
        tokens.append(tok)
        past = {f"past_key_values.{i}.{k}": out[1 + 2 * i + j] for i in range(layers) for j, k in enumerate(("key", "value"))}
        n, ids = total, [tok]
    err = float(np.abs(first_logits - ref_logits).max())
    log(f"check: max |logits − transformers| {err:.2e}; greedy {'equal' if tokens == ref else 'DIFFERENT'} ({tokens[:6]}… vs {ref[:6]}…)")
    if tokens != ref or err > 1e-3:
        raise SystemExit(f"build_peer: {path} does not reproduce transformers (max error {err:.2e}, tokens {tokens} vs {ref})")
    return {"maxAbsLogitError": err, "greedyTokens": tokens}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model_dir")
    ap.add_argument("out_dir")
    ap.add_argument("--variants", default="fp32,fp16,q4,q4f16")
    ap.add_argument("--check", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    variants = args.variants.split(",")
    for v in variants:
        if v not in ("fp32", "fp16", "q4", "q4f16"):
            raise SystemExit(f"build_peer: unknown variant {v} (fp32, fp16, q4, q4f16)")
    model, ml = load_hf(args.model_dir)
    onnx_dir = os.path.join(args.out_dir, "onnx")
    os.makedirs(onnx_dir, exist_ok=True)
    for name in ("config.json", "tokenizer.json", "tokenizer_config.json", "generation_config.json"):
        src = os.path.join(args.model_dir, name)
        if os.path.exists(src) and os.path.abspath(args.model_dir) != os.path.abspath(args.out_dir):
            shutil.copy(src, os.path.join(args.out_dir, name))
    if not os.path.exists(os.path.join(args.out_dir, "generation_config.json")):
        json.dump({"bos_token_id": model.config.bos_token_id or 0, "eos_token_id": model.config.eos_token_id or 0}, open(os.path.join(args.out_dir, "generation_config.json"), "w"))
    raw = os.path.join(onnx_dir, "raw_export.onnx")
    fp32 = os.path.join(onnx_dir, "model.onnx")
    original = ml.LlamaAttention.forward
    ml.LlamaAttention.forward = patched_attention_forward
    try:
        export_fp32(model, raw)
    finally:
        ml.LlamaAttention.forward = original
    optimize(raw, fp32, model.config)
    os.remove(raw)
    info = {"recipe": "transformers LlamaForCausalLM → torch.onnx dynamo → RotaryEmbedding + GroupQueryAttention, onnxruntime.transformers optimizer (SimplifiedLayerNormalization, SkipSimplifiedLayerNormalization)", "variants": {}}
    if args.check:
        info["check"] = check(model, fp32)
    built = {"fp32": fp32}
    t = time.time()
    if "fp16" in variants or "q4f16" in variants:
        built["fp16"] = os.path.join(onnx_dir, "model_fp16.onnx")
        to_fp16(fp32, built["fp16"])
    if "q4" in variants:
        built["q4"] = os.path.join(onnx_dir, "model_q4.onnx")
        to_q4(fp32, built["q4"])
    if "q4f16" in variants:
        built["q4f16"] = os.path.join(onnx_dir, "model_q4f16.onnx")
        to_q4(built["fp16"], built["q4f16"])
    log(f"variants {time.time() - t:.0f} s")
    for v, path in built.items():
        if v not in variants:
            os.remove(path)
            continue
        info["variants"][v] = {"file": os.path.relpath(path, args.out_dir), "bytes": os.path.getsize(path), "ops": op_counts(path)}
        log(f"{v}: {os.path.getsize(path) / 2**20:.1f} MiB, {info['variants'][v]['ops']}")
    json.dump(info, open(os.path.join(args.out_dir, "fair-peer.json"), "w"), indent=2)


if __name__ == "__main__":
    main()

"""Side by side with `prunelab ppl`: transformers on PyTorch, float32, one thread, on SmolLM2-135M's shape
with random BF16 weights (issue 16's acceptance). Run by bench/ppl-vs-torch.mjs with the dev-time venv
(default /work/hf/bin/python: torch, transformers, safetensors); never part of `npm test`.

    python bench/ppl_vs_torch.py make <dir>            random BF16 SmolLM2-135M-shaped folder + ids.json (2 × 128 tokens)
    python bench/ppl_vs_torch.py time <dir> <reps>     load once, then <reps> timed perplexity passes; prints JSON

The timed part is the forwards over the sequences and the NLL, as in PruneLab's `ppl` (load excluded).
"""
import json
import math
import os
import sys
import time

import torch

SHAPE = {
    "architectures": ["LlamaForCausalLM"],
    "model_type": "llama",
    "hidden_size": 576,
    "intermediate_size": 1536,
    "num_hidden_layers": 30,
    "num_attention_heads": 9,
    "num_key_value_heads": 3,
    "head_dim": 64,
    "vocab_size": 49152,
    "max_position_embeddings": 8192,
    "rms_norm_eps": 1e-5,
    "rope_theta": 100000.0,
    "hidden_act": "silu",
    "tie_word_embeddings": True,
    "attention_bias": False,
    "mlp_bias": False,
    "bos_token_id": 0,
    "eos_token_id": 0,
    "torch_dtype": "bfloat16",
}
SEQUENCES, TOKENS = 2, 128


def make(out):
    from safetensors.torch import save_file

    g = torch.Generator().manual_seed(0)
    c, f, heads, kvh, d = SHAPE["hidden_size"], SHAPE["intermediate_size"], SHAPE["num_attention_heads"], SHAPE["num_key_value_heads"], SHAPE["head_dim"]
    t = {"model.embed_tokens.weight": torch.randn(SHAPE["vocab_size"], c, generator=g) * 0.02, "model.norm.weight": torch.ones(c)}
    for i in range(SHAPE["num_hidden_layers"]):
        p = f"model.layers.{i}."
        t[p + "input_layernorm.weight"] = torch.ones(c)
        t[p + "post_attention_layernorm.weight"] = torch.ones(c)
        for name, shp in [("self_attn.q_proj", (heads * d, c)), ("self_attn.k_proj", (kvh * d, c)), ("self_attn.v_proj", (kvh * d, c)), ("self_attn.o_proj", (c, heads * d)), ("mlp.gate_proj", (f, c)), ("mlp.up_proj", (f, c)), ("mlp.down_proj", (c, f))]:
            t[p + name + ".weight"] = torch.randn(*shp, generator=g) * 0.02
    os.makedirs(out, exist_ok=True)
    save_file({k: v.to(torch.bfloat16).contiguous() for k, v in t.items()}, os.path.join(out, "model.safetensors"), {"format": "pt"})
    json.dump(SHAPE, open(os.path.join(out, "config.json"), "w"), indent=2)
    ids = torch.randint(0, SHAPE["vocab_size"], (SEQUENCES, TOKENS), generator=g).tolist()
    json.dump(ids, open(os.path.join(out, "ids.json"), "w"))
    print(f"wrote {out}")


def timed(folder, reps):
    from transformers import AutoModelForCausalLM

    torch.set_num_threads(1)
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    ids = json.load(open(os.path.join(folder, "ids.json")))
    results = []
    with torch.inference_mode():
        for _ in range(reps):
            t0, c0 = time.perf_counter(), time.process_time()
            nll, count = 0.0, 0
            for seq in ids:
                x = torch.tensor([seq])
                logits = model(x).logits[0, :-1].double()
                nll += torch.nn.functional.cross_entropy(logits, x[0, 1:], reduction="sum").item()
                count += len(seq) - 1
            results.append({"seconds": time.perf_counter() - t0, "cpuSeconds": time.process_time() - c0, "ppl": math.exp(nll / count)})
    print(json.dumps({"threads": torch.get_num_threads(), "torch": torch.__version__, "runs": results}))


if __name__ == "__main__":
    if sys.argv[1] == "make":
        make(sys.argv[2])
    elif sys.argv[1] == "time":
        timed(sys.argv[2], int(sys.argv[3]))
    else:
        raise SystemExit(f"unknown mode {sys.argv[1]}")

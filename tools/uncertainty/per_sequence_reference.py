"""Per-sequence block means of the embedded model with Hugging Face transformers (float64, eager): the
reference the error-bar test (tests/engine/uncertainty.test.ts) checks the engine's per-sequence sums and
the bootstrap's half-widths against.

    /work/hf/bin/python tools/uncertainty/per_sequence_reference.py   # writes tests/golden/sotu-llama-per-sequence.json

The calibration is what `prunelab score --text public/calibration/moby-dick.txt --seq-len 128
--max-sequences 16` scores: the file tokenized as a document (tokenizer.json, special tokens as configured)
and cut into 16 consecutive windows of 128 tokens. For block i with input x_i and output x_{i+1} (hooks on
model.model.layers[i]; the last block's output before the final norm), per sequence and per token t:
cos(x_i,t, x_i+1,t), arccos(cos)/pi and |x_i+1 - x_i| / |x_i+1|, averaged over the sequence's tokens.
"""
import json
import math
import os

import torch
from tokenizers import Tokenizer
from transformers import AutoModelForCausalLM

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
MODEL = os.path.join(ROOT, "public", "models", "sotu-llama")
TEXT = os.path.join(ROOT, "public", "calibration", "moby-dick.txt")
OUT = os.path.join(ROOT, "tests", "golden", "sotu-llama-per-sequence.json")
SEQ_LEN = 128
SEQUENCES = 16


def main():
    torch.set_num_threads(1)
    tokenizer = Tokenizer.from_file(os.path.join(MODEL, "tokenizer.json"))
    with open(TEXT, encoding="utf-8", newline="") as f:
        ids = tokenizer.encode(f.read()).ids
    windows = [ids[i * SEQ_LEN : (i + 1) * SEQ_LEN] for i in range(SEQUENCES)]
    assert all(len(w) == SEQ_LEN for w in windows), "the text is shorter than 16 windows"

    model = AutoModelForCausalLM.from_pretrained(MODEL, dtype=torch.float64, attn_implementation="eager").eval()
    layers = model.model.layers
    captured = {}

    def pre_hook(i):
        def hook(module, args, kwargs):
            captured[("in", i)] = (kwargs.get("hidden_states") if "hidden_states" in kwargs else args[0]).detach()

        return hook

    def post_hook(i):
        def hook(module, args, output):
            captured[("out", i)] = (output[0] if isinstance(output, tuple) else output).detach()

        return hook

    for i, layer in enumerate(layers):
        layer.register_forward_pre_hook(pre_hook(i), with_kwargs=True)
        layer.register_forward_hook(post_hook(i))

    per_sequence = []
    with torch.no_grad():
        for window in windows:
            captured.clear()
            model(torch.tensor([window]), use_cache=False)
            blocks = []
            for i in range(len(layers)):
                x = captured[("in", i)][0]
                y = captured[("out", i)][0]
                cos = torch.nn.functional.cosine_similarity(x, y, dim=-1).clamp(-1, 1)
                rel = (y - x).norm(dim=-1) / y.norm(dim=-1)
                blocks.append(
                    {
                        "index": i,
                        "tokens": len(window),
                        "bi": 1 - cos.mean().item(),
                        "angular": (torch.arccos(cos) / math.pi).mean().item(),
                        "relMagnitude": rel.mean().item(),
                    }
                )
            per_sequence.append(blocks)

    golden = {
        "model": "sotu-llama",
        "note": "Hugging Face transformers, float64, eager attention, on the stored F16 weights (tools/uncertainty/per_sequence_reference.py)",
        "text": "public/calibration/moby-dick.txt",
        "seqLen": SEQ_LEN,
        "ids": windows,
        "perSequence": per_sequence,
    }
    with open(OUT, "w") as f:
        json.dump(golden, f)
        f.write("\n")
    print(f"wrote {OUT}: {len(windows)} sequences x {len(layers)} blocks")


if __name__ == "__main__":
    main()

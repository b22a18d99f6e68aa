"""Goldens and model-card numbers for the embedded model, from the float64 reference (reference.py).

    /usr/bin/python3 tools/fixture-model/goldens.py            # writes tests/golden/sotu-llama.json
    /usr/bin/python3 tools/fixture-model/goldens.py --card     # also prints the model card's quality table

Calibration: Moby-Dick chapters 1-20; evaluation: chapters 100-110 (never trained on; the model saw only
State of the Union addresses). Every number is computed from public/models/sotu-llama as stored (F16).
"""
import json
import math
import os
import random
import statistics
import sys

import torch

import bpe
import reference
import train

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, "..", ".."))
MODEL = os.path.join(ROOT, "public", "models", "sotu-llama")
OUT = os.path.join(ROOT, "tests", "golden", "sotu-llama.json")
SEQ = 128

TOKENIZER_CASES = [
    "Call me Ishmael. Some years ago—never mind how long precisely—having little or no money in my purse,",
    "The President said: \"We the People of the United States, in Order to form a more perfect Union...\"",
    "  Numbers 1790, 2024 and 3.14159;\ttabs,\n\nnew lines   and   spaces.  ",
    "Unicode: café, naïve, Zürich, 東京, emoji 🐋 and ’curly’ quotes.",
    "<|endoftext|>A second document after the special token.",
]
PROMPTS = ["The President said", "Call me Ishmael. Some years ago"]
GREEDY_TOKENS = 24


def chapters(first, last):
    import glob

    out = []
    for n in range(first, last + 1):
        path = os.path.join(train.CORPUS, "datasets-moby-dick", "data", f"chapter_{n}.txt")
        out.append(open(path, encoding="utf-8").read().strip())
    return "\n\n".join(out)


def windows(ids, n, count):
    return [ids[i * n : (i + 1) * n] for i in range(min(count, len(ids) // n))]


def stats_for(spec, w, seqs, removed=()):
    active = [i for i in range(spec["layers"]) if i not in removed]
    total = None
    for ids in seqs:
        _, states = reference.forward(spec, w, ids, removed=removed)
        s = reference.block_stats(states, active)
        if total is None:
            total = s
        else:
            for t, x in zip(total, s):
                for k in ("cosSum", "angularSum", "relMagnitudeSum", "tokens"):
                    t[k] += x[k]
    for t in total:
        t["bi"] = 1 - t["cosSum"] / t["tokens"]
        t["angular"] = t["angularSum"] / t["tokens"]
        t["relMagnitude"] = t["relMagnitudeSum"] / t["tokens"]
    return total


def nll_for(spec, w, seqs, removed=(), dtype=torch.float64):
    total, count = 0.0, 0
    for ids in seqs:
        logits, _ = reference.forward(spec, w, ids, removed=removed, dtype=dtype)
        s, c = reference.nll_sum(logits, ids)
        total += s
        count += c
    return {"sum": total, "count": count, "mean": total / count, "ppl": math.exp(total / count)}


def greedy(spec, w, ids, n):
    ids = list(ids)
    out, margins = [], []
    for _ in range(n):
        logits, _ = reference.forward(spec, w, ids)
        top = torch.topk(logits[-1], 2)
        out.append(int(top.indices[0]))
        margins.append(float(top.values[0] - top.values[1]))
        ids.append(out[-1])
    return out, min(margins)


def main():
    torch.set_num_threads(2)
    spec, w, cfg = reference.load_model(MODEL)
    tok = train.load_tokenizer(MODEL)
    calib_ids = tok.encode(chapters(1, 20))
    eval_ids = tok.encode(chapters(100, 110))
    calib = windows(calib_ids, SEQ, 8)
    evals = windows(eval_ids, SEQ, 8)

    blocks = stats_for(spec, w, calib)
    n_remove = spec["layers"] // 4
    lowest = sorted(sorted(range(spec["layers"]), key=lambda i: (blocks[i]["bi"], i))[:n_remove])
    logits0, _ = reference.forward(spec, w, calib[0])
    positions = [0, 37, SEQ - 1]
    golden = {
        "model": "sotu-llama",
        "note": "float64 reference (tools/fixture-model/reference.py) on the stored F16 weights",
        "tokenizer": [{"text": t, "ids": tok.encode(t)} for t in TOKENIZER_CASES],
        "calibration": {"source": "Moby-Dick chapters 1-20", "ids": calib},
        "evaluation": {"source": "Moby-Dick chapters 100-110", "ids": evals},
        "blocks": blocks,
        "logits": {"sequence": 0, "positions": positions, "rows": [logits0[p].tolist() for p in positions]},
        "nll": nll_for(spec, w, evals),
        "lowestBiRemoval": {"removed": lowest, "nll": nll_for(spec, w, evals, removed=lowest)},
        "greedy": [],
    }
    for prompt in PROMPTS:
        ids = tok.encode(prompt)
        cont, margin = greedy(spec, w, ids, GREEDY_TOKENS)
        golden["greedy"].append({"prompt": prompt, "promptIds": ids, "continuation": cont, "text": tok.decode(cont), "minTop2Margin": margin})
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    with open(OUT, "w") as f:
        json.dump(golden, f)
    print(f"wrote {OUT}: lowest-BI removal {lowest}, eval ppl {golden['nll']['ppl']:.2f} -> {golden['lowestBiRemoval']['nll']['ppl']:.2f}")
    for g in golden["greedy"]:
        print(f"  {g['prompt']!r} -> {g['text']!r} (min top-2 logit margin {g['minTop2Margin']:.4f})")
    if "--card" in sys.argv:
        card(spec, w, tok, blocks, calib_ids, eval_ids)


def card(spec, w, tok, blocks, calib_ids, eval_ids):
    """The model card's quality table: held-out PPL vs unigram, and BI-ordered vs reverse vs random removal."""
    evals = windows(eval_ids, SEQ, 32)
    ids = torch.load(os.path.join(train.WORK, "ids.pt"))
    train_ids = ids["train"].long()
    counts = torch.bincount(train_ids, minlength=spec.get("vocab", 4096)).double() + 1.0
    logp = torch.log(counts / counts.sum())
    predicted = torch.tensor([t for s in evals for t in s[1:]])
    unigram_ppl = math.exp(-logp[predicted].mean().item())
    full = nll_for(spec, w, evals, dtype=torch.float32)
    sotu_val = [ids["val"][i * SEQ : (i + 1) * SEQ].tolist() for i in range(16)]
    sotu = nll_for(spec, w, sotu_val, dtype=torch.float32)
    layers = spec["layers"]
    k = layers // 4
    bi_set = sorted(sorted(range(layers), key=lambda i: (blocks[i]["bi"], i))[:k])
    reverse_set = list(range(layers - k, layers))
    rng = random.Random(0)
    random_sets = [sorted(rng.sample(range(layers), k)) for _ in range(10)]
    bi_ppl = nll_for(spec, w, evals, removed=bi_set, dtype=torch.float32)["ppl"]
    rev_ppl = nll_for(spec, w, evals, removed=reverse_set, dtype=torch.float32)["ppl"]
    rnd = [nll_for(spec, w, evals, removed=s, dtype=torch.float32)["ppl"] for s in random_sets]
    print("\n| measure (Moby-Dick ch. 100-110, 32 x 128 tokens unless said) | value |")
    print("|---|---|")
    print(f"| unigram baseline PPL (same tokenizer, add-one on the training text) | {unigram_ppl:.1f} |")
    print(f"| held-out PPL, full model | {full['ppl']:.2f} |")
    print(f"| in-domain PPL (8 held-out SOTU addresses, 16 x 128) | {sotu['ppl']:.2f} |")
    print(f"| PPL, {k} lowest-BI blocks removed {bi_set} | {bi_ppl:.2f} |")
    print(f"| PPL, last {k} blocks removed {reverse_set} | {rev_ppl:.2f} |")
    print(f"| PPL, {k} random blocks removed, median of 10 sets (min-max) | {statistics.median(rnd):.2f} ({min(rnd):.2f}-{max(rnd):.2f}) |")
    print("\nBI per block (calibration ch. 1-20, 8 x 128):", ", ".join(f"{b['index']}:{b['bi']:.4f}" for b in blocks))


if __name__ == "__main__":
    main()

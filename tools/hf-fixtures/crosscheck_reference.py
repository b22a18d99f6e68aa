"""Cross-checks the transformers goldens against the project's own float64 reference (tools/fixture-model/
reference.py) on the fixtures that reference can run (llama / qwen3 / gpt2 maths without sliding windows):

    /work/hf/bin/python tools/hf-fixtures/crosscheck_reference.py

The reference reads the transformers-4 keys, so the v5 `rope_parameters` are mapped back to `rope_theta` /
`rope_scaling` in memory. Agreement to ~1e-7 confirms the hook placement and the metric definitions; the rest
is transformers' own float32 steps inside a float64 model (RMSNorm variance, softmax, RoPE angles).
"""
import json
import os
import sys

import hfref  # noqa: F401  (one thread, quiet transformers)

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "tools", "fixtures"))
import make_fixtures  # noqa: E402
import reference  # noqa: E402  (put on the path by make_fixtures)

FIXTURES = ("llama3-v5", "qwen3-v5", "gpt2-v5")


def v4_config(cfg):
    cfg = dict(cfg)
    rp = cfg.pop("rope_parameters", None)
    if rp:
        cfg["rope_theta"] = rp["rope_theta"]
        if rp.get("rope_type", "default") != "default":
            cfg["rope_scaling"] = {k: v for k, v in rp.items() if k != "rope_theta"}
    return cfg


def worst(gold, mine):
    """max |difference| over BI / angular / relMagnitude, NLL mean (relative) and last logits."""
    (gb, gn, gl), (mb, mn, ml) = gold, mine
    d_block = max(abs(x[k] - y[k]) for x, y in zip(gb, mb) for k in ("bi", "angular", "relMagnitude"))
    d_nll = abs(gn["mean"] - mn["mean"]) / gn["mean"]
    d_logit = max(abs(u - v) for x, y in zip(gl, ml) for u, v in zip(x, y))
    return d_block, d_nll, d_logit


def main():
    for name in FIXTURES:
        folder = os.path.join(ROOT, "tests", "fixtures-hf", name)
        with open(os.path.join(folder, "golden.json")) as f:
            g = json.load(f)
        with open(os.path.join(folder, "config.json")) as f:
            cfg = v4_config(json.load(f))
        spec = reference.spec_from_config(cfg)
        raw = {}
        for fname in sorted(os.listdir(folder)):
            if fname.endswith(".safetensors"):
                raw.update(reference.load_safetensors(os.path.join(folder, fname)))
        w = reference.canonical_weights(raw, spec)
        def gold(key):
            part = g[key] if key else g
            return part["blocks"], part["nll"], part["lastLogits"]

        plans = [
            ("plain", {}, gold(None)),
            ("removal", {"removed": g["removal"]["removed"]}, gold("removal")),
            ("attn-only", {"removed_attn": g["attnOnlyRemoval"]["removedAttention"]}, gold("attnOnlyRemoval")),
            ("mlp-only", {"removed_mlp": g["mlpOnlyRemoval"]["removedMlp"]}, gold("mlpOnlyRemoval")),
        ]
        for label, kw, want in plans:
            mine = make_fixtures.run(spec, w, g["ids"], **kw)
            db, dn, dl = worst(want, mine)
            print(f"{name:12s} {label:9s} |dBI/angular/relMag| {db:.1e}  |dNLL|/NLL {dn:.1e}  |dlogit| {dl:.1e}")


if __name__ == "__main__":
    main()

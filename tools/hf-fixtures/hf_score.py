"""Per-block Block Influence / angular distance / relative magnitude as transformers computes them (ad-hoc checks):

    /work/hf/bin/python tools/hf-fixtures/hf_score.py <hf folder> <ids.json> [--remove 1,2] [--remove-attn 1] [--remove-mlp 2]

Prints one JSON line {"blocks": [{"index", "bi", "angular", "relMagnitude"}, ...], "nll": {"sum", "count", "mean", "ppl"}}
with the definitions of tools/hf-fixtures/hfref.py (block input/output on the residual stream, before the final
norm; float64, eager attention). --remove drops whole blocks (the remaining ones keep their original index);
--remove-attn / --remove-mlp zero that branch of the named blocks.
"""
import argparse
import json
import sys

import hfref


def index_list(text):
    try:
        return [int(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated block indices, got {text!r}") from None


def main(argv):
    ap = argparse.ArgumentParser(description="per-block scores from transformers' own forward pass")
    ap.add_argument("folder")
    ap.add_argument("ids")
    ap.add_argument("--remove", type=index_list, default=[])
    ap.add_argument("--remove-attn", type=index_list, default=[])
    ap.add_argument("--remove-mlp", type=index_list, default=[])
    a = ap.parse_args(argv)
    blocks, nll, _ = hfref.evaluate(a.folder, hfref.read_ids(a.ids), removed=a.remove, removed_attn=a.remove_attn, removed_mlp=a.remove_mlp)
    keep = ("index", "bi", "angular", "relMagnitude")
    print(json.dumps({"blocks": [{k: b[k] for k in keep} for b in blocks], "nll": nll}))


if __name__ == "__main__":
    main(sys.argv[1:])

"""Perplexity of a (pruned) Hugging Face checkpoint as transformers computes it, for checking PruneLab's export:

    /work/hf/bin/python tools/hf-fixtures/check_export.py <hf folder> <ids.json>

Loads the folder with from_pretrained(dtype=float64, attn_implementation="eager") (refusing missing or unexpected
weights) and prints one JSON line {"nll", "ppl", "tokens"}: the mean NLL of token t+1 given tokens <= t pooled over
the sequences in ids.json (a list of token-id lists, each run on its own from position 0), exp of it, and how many
tokens were predicted. Compare with `prunelab ppl --remove ...` on the unpruned checkpoint.
"""
import json
import sys

import hfref


def main(argv):
    if len(argv) != 2:
        raise SystemExit(__doc__.strip())
    folder, ids_path = argv
    _, nll, _ = hfref.run(hfref.load(folder), hfref.read_ids(ids_path))
    print(json.dumps({"nll": nll["mean"], "ppl": nll["ppl"], "tokens": nll["count"]}))


if __name__ == "__main__":
    main(sys.argv[1:])

"""Float64 reference for PruneLab's healing (src/analysis/heal.ts), on transformers' own forward pass (dev-time only):

    /work/hf/bin/python tools/heal/heal_reference.py <hf folder> --calib <ids.json> [--eval <ids.json>] --remove 4,5,6
        [--ridge 1e-4 [--ridge 1e-2 ...]] [--golden <out.json>]

For each removed contiguous span [i, j) in order (ReplaceMe, training-free): over the calibration sequences take
M = the MLP output of block i-1 (forward hook on its MLP module), H = x_i - M (x_i = that block's output), and
Y = x_j, the output of block j-1 in the *original* model, while M and H come from the model with the earlier spans
already removed and healed. Solve (MᵀM + λI) T = Mᵀ(Y - H), λ = ridge · trace(MᵀM) / hidden, with torch.linalg.solve
in float64 (not Cholesky: an independent route), fold T into block i-1's down projection (Linear W -> Tᵀ W, bias
b -> b T; GPT-2's Conv1D [in, out] weight -> W T), rounded once to the stored dtype as a checkpoint would hold it.
Prints, per ridge, the fit residuals and the perplexities (original, plain removal, healed) on the calibration and
evaluation ids; --golden writes them (with the ids) for tests/engine/heal.test.ts.
"""
import argparse
import copy
import json
import math
import os
import sys

import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "hf-fixtures"))
import hfref  # noqa: E402


def index_list(text):
    return [int(t) for t in text.split(",") if t.strip()]


def spans_of(removed):
    spans = []
    for i in sorted(set(removed)):
        if spans and spans[-1][1] == i:
            spans[-1][1] = i + 1
        else:
            spans.append([i, i + 1])
    return [tuple(s) for s in spans]


def down_module(layer):
    mlp = layer.mlp
    for name in ("down_proj", "c_proj", "dense_4h_to_h"):
        if hasattr(mlp, name):
            return getattr(mlp, name)
    raise SystemExit(f"{type(mlp).__name__}: no down projection")


def layer_outputs(model, ids):
    """Per sequence, the output of every decoder layer (before the final norm), float64."""
    ls = hfref.layers(model)
    out = {}
    handles = [layer.register_forward_hook(lambda _m, _a, o, k=k: out.__setitem__(k, (o[0] if isinstance(o, tuple) else o)[0])) for k, layer in enumerate(ls)]
    try:
        with torch.no_grad():
            for seq in ids:
                out.clear()
                model(input_ids=torch.tensor([seq]), use_cache=False)
                yield dict(out)
    finally:
        for h in handles:
            h.remove()


def mlp_and_output(model, k, ids):
    """Per sequence (M, x_out) of decoder layer k: its MLP output and the layer's output."""
    layer = hfref.layers(model)[k]
    got = {}
    h1 = layer.mlp.register_forward_hook(lambda _m, _a, o: got.__setitem__("m", o[0]))
    h2 = layer.register_forward_hook(lambda _m, _a, o: got.__setitem__("x", (o[0] if isinstance(o, tuple) else o)[0]))
    try:
        with torch.no_grad():
            for seq in ids:
                model(input_ids=torch.tensor([seq]), use_cache=False)
                yield got["m"], got["x"]
    finally:
        h1.remove()
        h2.remove()


def stored_dtype(folder):
    from safetensors import safe_open

    for name in sorted(os.listdir(folder)):
        if name.endswith(".safetensors"):
            with safe_open(os.path.join(folder, name), "pt") as f:
                for key in f.keys():
                    if "mlp" in key and key.endswith("weight"):
                        return f.get_tensor(key).dtype
    raise SystemExit(f"{folder}: no MLP weight found")


def heal(folder, calib, removed, ridge):
    original = hfref.load(folder)
    dtype = stored_dtype(folder)
    is_conv1d = type(down_module(hfref.layers(original)[0])).__name__ == "Conv1D"
    healed = copy.deepcopy(original)
    layers = list(hfref.layers(healed))
    kept = list(range(len(layers)))  # original index of each layer the healed model runs
    fits = []
    for start, end in spans_of(removed):
        if start == 0:
            raise SystemExit("a span starting at block 0 cannot be healed")
        p = start - 1
        hidden = original.config.hidden_size
        mtm = torch.zeros(hidden, hidden, dtype=torch.float64)
        mtd = torch.zeros(hidden, hidden, dtype=torch.float64)
        dd = 0.0
        targets = [outs[end - 1] for outs in layer_outputs(original, calib)]
        for (m, x), y in zip(mlp_and_output(healed, kept.index(p), calib), targets):
            h = x - m
            d = y - h
            mtm += m.T @ m
            mtd += m.T @ d
            dd += (d * d).sum().item()
        trace = torch.trace(mtm).item()
        lam = ridge * trace / hidden
        t = torch.linalg.solve(mtm + lam * torch.eye(hidden, dtype=torch.float64), mtd)
        # residuals from the sums, like the TypeScript side, and checked against a direct pass below
        resid = (torch.trace(t.T @ mtm @ t) - 2 * torch.trace(t.T @ mtd)).item() + dd
        ident = trace - 2 * torch.trace(mtd).item() + dd
        down = down_module(hfref.layers(healed)[kept.index(p)])
        with torch.no_grad():
            w = down.weight.data
            folded = (w @ t) if is_conv1d else (t.T @ w)
            down.weight.data = folded.to(dtype).to(torch.float64)
            if down.bias is not None:
                down.bias.data = (down.bias.data @ t).to(dtype).to(torch.float64)
        # drop the span's layers from the healed model
        drop = [kept.index(i) for i in range(start, end)]
        hfref.remove_blocks(healed, drop)
        kept = [i for i in kept if not start <= i < end]
        fits.append({"start": start, "end": end, "block": p, "residual": resid / dd, "removalResidual": ident / dd, "lambda": lam, "tokens": sum(len(s) for s in calib)})
    return healed, kept, fits


def ppl(model, ids, kept=None):
    _, nll, _ = hfref.run(model, ids, kept)
    return nll


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("folder")
    ap.add_argument("--calib", required=True)
    ap.add_argument("--eval")
    ap.add_argument("--remove", type=index_list, required=True)
    ap.add_argument("--ridge", type=float, action="append")
    ap.add_argument("--golden")
    a = ap.parse_args(argv)
    calib = hfref.read_ids(a.calib)
    evaluation = hfref.read_ids(a.eval) if a.eval else None
    ridges = a.ridge or [1e-4]
    base = hfref.load(a.folder)
    plain = copy.deepcopy(base)
    plain_kept = hfref.remove_blocks(plain, a.remove)
    sets = {"calibration": calib, **({"evaluation": evaluation} if evaluation else {})}
    reference = {name: {"original": ppl(base, ids), "removed": ppl(plain, ids, plain_kept)} for name, ids in sets.items()}
    results = []
    for ridge in ridges:
        healed, kept, fits = heal(a.folder, calib, a.remove, ridge)
        row = {"ridge": ridge, "spans": fits}
        for name, ids in sets.items():
            row[name] = {**{k: v["ppl"] for k, v in reference[name].items()}, "healed": ppl(healed, ids, kept)["ppl"], "tokens": reference[name]["original"]["count"]}
        results.append(row)
        print(json.dumps(row))
    if a.golden:
        with open(a.golden, "w") as f:
            json.dump({"folder": os.path.relpath(a.folder), "removed": sorted(a.remove), "calibration": calib, "evaluation": evaluation, "results": results}, f)
            f.write("\n")


if __name__ == "__main__":
    main(sys.argv[1:])

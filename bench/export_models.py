"""Model folders for `npm run bench`, through tools/fixture-model/export_onnx.py (Debian torch, /usr/bin/python3).

    python3 bench/export_models.py onnx <llama-dir> <out-dir>          ONNX export of a checkpoint (transformers.js peer)
    python3 bench/export_models.py random <shape> <out-dir>            random F16 weights in a real shape + its ONNX export
    python3 bench/export_models.py random-weights <shape> <out-dir>    random F16 weights only (no ONNX)

export_onnx.py names the batch axis "batch_size" and exports GQA without repeat_interleave: both are
needed for transformers.js 4.3.2 / onnxruntime 1.30 to run the export (see the comments there).
"""
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tools", "fixture-model"))

import torch  # noqa: E402

import export_onnx  # noqa: E402

# torch ≥ 2.9 exports through dynamo by default, which rejects export_onnx.py's dynamic_axes: ask for the
# TorchScript exporter that Debian's torch 1.13 always used (a venv's newer torch then works too).
if "dynamo" in torch.onnx.export.__code__.co_varnames:
    _export = torch.onnx.export

    def _legacy_export(*args, **kwargs):
        kwargs.setdefault("dynamo", False)
        return _export(*args, **kwargs)

    torch.onnx.export = _legacy_export

if __name__ == "__main__":
    torch.set_num_threads(2)
    mode, what, out = sys.argv[1:4]
    if mode == "onnx":
        export_onnx.export(what, out)
    elif mode == "random":
        export_onnx.export(export_onnx.random_model(what, out), out)
    elif mode == "random-weights":
        export_onnx.random_model(what, out)
        print(f"wrote {out}/model.safetensors")
    else:
        raise SystemExit(f"unknown mode {mode}")

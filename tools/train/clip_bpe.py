"""CLIP's byte-level BPE (the SD 1.x tokenizer), enough for plain English captions.

Same rules as libldm's src/core/clip_tokenizer.c and openai/CLIP simple_tokenizer.py: lower-case,
split into words, byte->unicode map, merge by rank, "</w>" on the last symbol of a word;
[49406] + ids[:75] + [49407], padded to 77 with 49407.
"""
import gzip
import os
import re

BOS, EOS, CTX = 49406, 49407, 77
_PAT = re.compile(r"""<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[a-z]+|[0-9]|[^\sa-z0-9]+""")


def _bytes_to_unicode():
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + \
        list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs)))


class Tokenizer:
    def __init__(self, vocab_gz=None):
        if vocab_gz is None:
            here = os.path.dirname(os.path.abspath(__file__))
            vocab_gz = os.path.join(here, "..", "..", "data", "vocab", "bpe_simple_vocab_16e6.txt.gz")
        merges = gzip.open(vocab_gz).read().decode("utf-8").split("\n")
        merges = [tuple(m.split()) for m in merges[1:49152 - 256 - 2 + 1]]
        self.byte_enc = _bytes_to_unicode()
        vocab = list(self.byte_enc.values())
        vocab = vocab + [v + "</w>" for v in vocab]
        vocab += ["".join(m) for m in merges]
        vocab += ["<|startoftext|>", "<|endoftext|>"]
        self.encoder = {v: i for i, v in enumerate(vocab)}
        self.ranks = {m: i for i, m in enumerate(merges)}
        self.cache = {}

    def _bpe(self, token):
        if token in self.cache:
            return self.cache[token]
        word = list(token[:-1]) + [token[-1] + "</w>"]
        while len(word) > 1:
            # merge every occurrence of the best-ranked adjacent pair, left to right
            rank, best = min((self.ranks.get(p, 1 << 30), p) for p in zip(word, word[1:]))
            if rank == 1 << 30:
                break
            merged, i = [], 0
            while i < len(word):
                if i < len(word) - 1 and (word[i], word[i + 1]) == best:
                    merged.append(word[i] + word[i + 1])
                    i += 2
                else:
                    merged.append(word[i])
                    i += 1
            word = merged
        self.cache[token] = word
        return word

    def encode(self, text):
        text = re.sub(r"\s+", " ", text).strip().lower()
        ids = []
        for tok in _PAT.findall(text):
            tok = "".join(self.byte_enc[b] for b in tok.encode("utf-8"))
            ids += [self.encoder[p] for p in self._bpe(tok)]
        return ids

    def __call__(self, text):
        ids = [BOS] + self.encode(text)[:CTX - 2] + [EOS]
        return ids + [EOS] * (CTX - len(ids))

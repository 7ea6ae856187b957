#!/usr/bin/env python3
"""Writes the small reference checkpoints of tests/data/ckpt/ with real torch.save (run once, by
hand: needs torch and numpy, e.g. Debian's python3-torch 1.13.1; the tests never need torch):

  views.ckpt        {"state_dict": OrderedDict, training metadata} with the tensor shapes people's
                    checkpoints hold: contiguous, transposed, sliced (offset + strides), expanded
                    (stride 0), channels-last, 0-d, empty, shared storages, a Parameter, float16,
                    bfloat16, int64; and numpy scalars / dicts / lists / floats / None beside them
  views_proto4.pt   the same state dict saved with pickle protocol 4 (FRAME, MEMOIZE,
                    STACK_GLOBAL, SHORT_BINUNICODE)
  views.safetensors the expected tensors, contiguous, for bit-exact comparison
  legacy.pt         the pre-1.6 non-zip format (_use_new_zipfile_serialization=False): refused

usage: gen_torch_ckpt_refs.py OUTDIR   (then also checks torch.load of tools/ckpt_variants.py output
       when given --check-variants DIR SRC.safetensors)
"""
import collections
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ckpt_variants as cv  # noqa: E402

DT = {torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16", torch.int64: "I64", torch.float64: "F64",
      torch.int32: "I32", torch.uint8: "U8", torch.bool: "BOOL", torch.int16: "I16", torch.int8: "I8"}


def state_dict():
    g = torch.Generator().manual_seed(1234)
    base = torch.randn(4, 6, generator=g)
    big = torch.randn(5, 7, generator=g)
    shared = torch.arange(20, dtype=torch.float32) * 0.5 - 3
    conv = torch.randn(3, 2, 3, 3, generator=g)
    sd = collections.OrderedDict()
    sd["contig"] = base
    sd["transposed"] = base.t()
    sd["slice"] = big[1:4, ::2]
    sd["row"] = big[2]
    sd["expanded"] = torch.arange(3, dtype=torch.float32).expand(2, 3)
    sd["channels_last"] = conv.to(memory_format=torch.channels_last)
    sd["scalar"] = torch.tensor(1.5)
    sd["empty"] = torch.zeros(0, 4)
    sd["shared_a"] = shared[2:10]
    sd["shared_b"] = shared[5:15].view(2, 5)
    sd["param"] = torch.nn.Parameter(torch.randn(3, generator=g))
    sd["half"] = (torch.randn(2, 5, generator=g) * 10).half()
    sd["half_t"] = sd["half"].t()
    sd["bf16"] = torch.randn(4, 2, generator=g).to(torch.bfloat16)
    sd["int64"] = torch.arange(77).unsqueeze(0)
    sd["f64"] = torch.randn(3, generator=g, dtype=torch.float64)
    return sd


def main(argv):
    out = argv[1]
    os.makedirs(out, exist_ok=True)
    sd = state_dict()
    extra = {"epoch": 3, "global_step": np.int64(1234), "lr": np.float64(1e-4), "best": None, "flag": True,
             "hparams": {"channels": [1, 2, 4], "name": "ref", "scale": 0.18215}}
    torch.save(dict({"state_dict": sd}, **extra), os.path.join(out, "views.ckpt"))
    torch.save(sd, os.path.join(out, "views_proto4.pt"), pickle_protocol=4)
    torch.save({"w": torch.ones(2)}, os.path.join(out, "legacy.pt"), _use_new_zipfile_serialization=False)
    cv.write_safetensors(os.path.join(out, "views.safetensors"),
                         [(k, DT[v.dtype], list(v.shape), v.detach().contiguous().view(-1).view(torch.uint8).numpy()
                           .tobytes() if v.numel() else b"") for k, v in sd.items()],
                         {"torch": torch.__version__})
    # the files must load back in torch as written
    back = torch.load(os.path.join(out, "views.ckpt"))["state_dict"]
    assert all(torch.equal(back[k], v) for k, v in sd.items())
    print("wrote", sorted(os.listdir(out)), "with torch", torch.__version__)


if __name__ == "__main__":
    sys.exit(main(sys.argv))

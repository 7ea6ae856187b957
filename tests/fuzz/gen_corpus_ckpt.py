#!/usr/bin/env python3
"""Regenerates the seed corpora of the checkpoint fuzz harnesses (tests/fuzz/corpus/{ckpt,pickle,
diffusers_names}): small valid torch zip checkpoints (made by tools/ckpt_variants.py's writer and
the real torch.save files of tests/data/ckpt), their pickles, the broken variants test_checkpoint.c
checks, and seeded random mutations. Deterministic; run from anywhere:
python3 tests/fuzz/gen_corpus_ckpt.py. Files named fuzz-* (kept from fuzzing runs) are left alone."""
import io
import os
import random
import shutil
import struct
import sys
import zipfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, "tools"))
import ckpt_variants as cv  # noqa: E402

W = struct.pack("<6f", 1.5, -2.0, 3.25, 0.0, 1e-3, -7.0)


def zip_bytes(records, prefix="archive", compress=False):
    b = io.BytesIO()
    with zipfile.ZipFile(b, "w", zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED) as z:
        for name, data in records:
            zi = zipfile.ZipInfo(prefix + "/" + name, date_time=(1980, 1, 1, 0, 0, 0))
            zi.compress_type = zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED
            z.writestr(zi, data)
    return b.getvalue()


def pickle_of(obj):
    return cv.Pickler().finish(obj)


def T(key, dtype, numel, offset, shape, stride):
    return cv.Tensor(key, dtype, numel, offset, shape, stride)


def ckpt(obj, storages, **kw):
    return zip_bytes([("data.pkl", pickle_of(obj))] + [("data/" + k, v) for k, v in storages.items()], **kw)


def sd(**tensors):
    d = cv.OrderedDictMarker()
    d.update(tensors)
    return d


def pk(body, proto=2):
    return bytes([0x80, proto]) + body + b"."


def g(mod, name):
    return b"c" + mod.encode() + b"\n" + name.encode() + b"\n"


def s(text):
    b = text.encode()
    return b"X" + struct.pack("<I", len(b)) + b


def pickles():
    c = {}
    w = T("0", "F32", 6, 0, [2, 3], [3, 1])
    c["valid_state_dict"] = pickle_of({"state_dict": sd(w=w), "epoch": 3, "global_step": 10 ** 12})
    c["valid_flat"] = pickle_of(sd(a=w, b=T("0", "F32", 6, 0, [3, 2], [1, 3]), c=T("1", "F16", 4, 1, [3], [1])))
    c["valid_views"] = pickle_of(sd(e=T("0", "F32", 6, 2, [2, 2], [0, 1]), s=T("0", "F32", 6, 5, [], []),
                                    z=T("0", "BF16", 0, 0, [0, 4], [4, 1])))
    c["valid_metadata"] = pk(b"}(" + s("cb") + g("pytorch_lightning.callbacks.model_checkpoint", "ModelCheckpoint") +
                             b")\x81}b" + s("lr") + g("numpy.core.multiarray", "scalar") + g("numpy", "dtype") +
                             s("f8") + b"\x89\x88\x87R" + g("_codecs", "encode") + s("\x01") + s("latin1") +
                             b"\x86R\x86R" + s("x") + b"G" + struct.pack(">d", 0.5) + s("set") +
                             b"\x8f(K\x01\x90" + s("by") + b"C\x02ab" + b"u")
    c["valid_proto4"] = pk(b"\x95\x10\0\0\0\0\0\0\0}\x94(\x8c\x01a\x94\x8c\x05torch\x94\x8c\x04Size\x94\x93\x94u", 4)
    c["os_system"] = pk(g("os", "system") + s("echo pwned") + b"\x85R")
    c["builtins_eval_stack_global"] = pk(b"\x8c\x08builtins\x8c\x04eval\x93" + s("1+1") + b"\x85R", 4)
    c["subprocess_value"] = pk(b"}" + s("w") + g("subprocess", "Popen") + b"s")
    c["qtensor"] = pk(g("torch._utils", "_rebuild_qtensor"))
    c["unknown_opcode"] = pk(b"\xff")
    c["inst"] = pk(b"iposix\nsystem\n")
    c["huge_memo"] = pk(b"}r\xff\xff\xff\x7f")
    c["unset_memo"] = pk(b"h\x05")
    c["underflow"] = pk(b"R")
    c["odd_setitems"] = pk(b"}(K\x01u")
    c["append_tuple"] = pk(b")K\x01a")
    c["legacy_pid"] = pk(b"(" + s("storage") + g("torch", "FloatStorage") + s("0") + s("cpu") + b"K\x06NtQ")
    c["deep_tuples"] = pk(b")" + b"\x85" * 5000)
    c["many_marks"] = pk(b"(" * 5000)
    c["self_reference"] = pk(b"}q\x00" + s("state_dict") + b"h\x00s" + s("l") + b"]q\x01" + b"h\x01a" * 50 + b"s")
    laughs = s("lol") + b"r\0\0\0\0"
    for lvl in range(1, 12):
        laughs += b"(" + (b"j" + struct.pack("<I", lvl - 1)) * 10 + b"lr" + struct.pack("<I", lvl)
    c["laughs"] = pk(laughs + b"0}")
    c["no_stop"] = b"\x80\x02}"
    c["empty"] = b""
    return c


def ckpts():
    c = {}
    w = T("0", "F32", 6, 0, [2, 3], [3, 1])
    good = ckpt({"state_dict": sd(w=w)}, {"0": W})
    c["valid"] = good
    c["valid_transposed"] = ckpt(sd(t=T("0", "F32", 6, 0, [3, 2], [1, 3])), {"0": W})
    c["valid_half_bf16"] = ckpt(sd(h=T("0", "F16", 12, 0, [3, 4], [4, 1]), b=T("1", "BF16", 12, 2, [2, 5], [5, 1])),
                                {"0": W, "1": W})
    c["valid_prefix_named"] = ckpt(sd(w=w), {"0": W}, prefix="sd-v1-4")
    c["view_past_storage"] = ckpt(sd(w=T("0", "F32", 6, 1, [2, 3], [3, 1])), {"0": W})
    c["numel_past_entry"] = ckpt(sd(w=T("0", "F32", 7, 0, [2, 3], [3, 1])), {"0": W})
    c["missing_storage"] = ckpt(sd(w=w), {})
    c["deflated"] = ckpt(sd(w=w), {"0": W}, compress=True)
    c["no_data_pkl"] = zip_bytes([("other", b"x")])
    c["evil"] = zip_bytes([("data.pkl", pickles()["os_system"]), ("data/0", W)])
    c["truncated_half"] = good[:len(good) // 2]
    c["truncated_end"] = good[:-1]
    c["empty"] = b""
    c["legacy_magic"] = b"\x80\x02\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19."
    for f in ("views.ckpt", "views_proto4.pt", "legacy.pt"):
        with open(os.path.join(ROOT, "tests", "data", "ckpt", f), "rb") as fh:
            c["torch_" + f.replace(".", "_")] = fh.read()
    return c


def names():
    unet = "\n".join(["conv_in.weight", "time_embedding.linear_1.bias", "down_blocks.0.resnets.0.norm1.weight",
                      "down_blocks.0.resnets.1.conv_shortcut.weight", "down_blocks.1.attentions.0.proj_in.weight",
                      "down_blocks.1.downsamplers.0.conv.weight", "mid_block.resnets.1.conv2.bias",
                      "mid_block.attentions.0.transformer_blocks.0.attn1.to_q.weight",
                      "up_blocks.0.resnets.2.conv1.weight", "up_blocks.0.upsamplers.0.conv.weight",
                      "up_blocks.1.attentions.2.norm.weight", "up_blocks.1.upsamplers.0.conv.bias",
                      "down_blocks.01.resnets.0.conv1.weight", "add_embedding.linear_1.weight", "conv_out.weight.x"])
    vae = "\n".join(["encoder.conv_in.weight", "encoder.down_blocks.1.resnets.0.conv_shortcut.bias",
                     "encoder.mid_block.attentions.0.query.weight", "decoder.mid_block.attentions.0.to_out.0.weight",
                     "decoder.up_blocks.0.resnets.2.conv2.weight", "decoder.up_blocks.3.upsamplers.0.conv.weight",
                     "quant_conv.bias", "decoder.conv_norm_out.weight", "decoder.down_blocks.0.resnets.0.conv1.weight"])
    text = "\n".join(["text_model.embeddings.token_embedding.weight", "text_model.final_layer_norm.bias",
                      "text_projection.weight", "text_model."])
    oclip = "\n".join(["text_model.embeddings.token_embedding.weight", "text_model.embeddings.position_ids",
                       "text_model.embeddings.position_embedding.weight", "text_model.final_layer_norm.weight",
                       "text_model.encoder.layers.0.self_attn.q_proj.weight",
                       "text_model.encoder.layers.1.self_attn.v_proj.bias", "text_model.encoder.layers.1.mlp.fc2.weight",
                       "text_model.encoder.layers.1.layer_norm1.bias", "text_model.encoder.layers.0.self_attn.x_proj.weight",
                       "text_model.encoder.layers.9999.mlp.fc1.bias", "text_projection.weight"])
    return {"unet": b"\x00" + unet.encode(), "vae": b"\x01" + vae.encode(), "text": b"\x02" + text.encode(),
            "openclip": b"\x03" + oclip.encode(), "long": b"\x00down_blocks.9.attentions.9." + b"x" * 200}


def mutations(seeds, rng, n):
    out = {}
    keys = sorted(seeds)
    for i in range(n):
        b = bytearray(seeds[keys[rng.randrange(len(keys))]])
        if not b:
            continue
        for _ in range(rng.randrange(1, 5)):
            op = rng.randrange(3)
            p = rng.randrange(len(b) + 1)
            if op == 0 and p < len(b):
                b[p] ^= 1 << rng.randrange(8)
            elif op == 1:
                del b[p:p + rng.randrange(1, 16)]
            else:
                b[p:p] = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 8)))
        out["mut_%03d" % i] = bytes(b)
    return out


def write(name, cases):
    d = os.path.join(HERE, "corpus", name)
    os.makedirs(d, exist_ok=True)
    for f in os.listdir(d):
        if not f.startswith("fuzz-"):
            os.remove(os.path.join(d, f))
    for k, v in sorted(cases.items()):
        with open(os.path.join(d, k), "wb") as f:
            f.write(v)
    print("%s: %d files, %d bytes" % (name, len(cases), sum(len(v) for v in cases.values())))


def main():
    rng = random.Random(20240605)
    p = pickles()
    write("pickle", dict(p, **mutations(p, rng, 40)))
    c = ckpts()
    write("ckpt", dict(c, **mutations({k: v for k, v in c.items() if len(v) < 8192}, rng, 40)))
    write("diffusers_names", names())


if __name__ == "__main__":
    main()

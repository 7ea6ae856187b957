#!/usr/bin/python3
"""Reference outputs of the training code's own sampler, for libldm's demo-model test.

Loads the shipped F16 checkpoint into tools/train/nets.py, runs train.sample() (k-diffusion's
discrete Euler with classifier-free guidance, SEEDED_CONTRACT.md's --rng cpu noise) and writes
the final latents and decoded images as F32 tensors. tests/test_demo_model.c runs the same prompts
and seeds through the C library and compares within the golden tolerances.

Usage: /usr/bin/python3 tools/train/make_reference.py MODEL.safetensors OUT.safetensors
"""
import json
import os
import struct
import sys

os.environ.setdefault("OPENBLAS_CORETYPE", "SkylakeX")
import numpy as np  # noqa: E402
import torch  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import nets  # noqa: E402
import train  # noqa: E402
from clip_bpe import Tokenizer  # noqa: E402

# (prompt, seed, steps, cfg): a seen and a held-out combination, and an unconditional-free run
CASES = [
    ("a red circle on a blue background", 7, 20, 5.0),
    ("a green triangle on a red background", 1234, 20, 5.0),   # held out of training
    ("a pink square on a black background", 99, 12, 1.0),
]

DT = {"F16": np.float16, "F32": np.float32, "I64": np.int64}


def read_safetensors(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    out = {}
    for k, v in header.items():
        if k == "__metadata__":
            continue
        a, b = v["data_offsets"]
        out[k] = torch.from_numpy(np.frombuffer(data[a:b], DT[v["dtype"]]).reshape(v["shape"]).astype(np.float32))
    return out


def load(path):
    sd = read_safetensors(path)
    ae = nets.AutoencoderKL(**train.AE_CFG)
    unet = nets.UNetModel(**train.UNET_CFG)
    te = nets.CLIPTextModel(range(49408), **train.TE_CFG)
    pre = "cond_stage_model.transformer.text_model."

    def part(prefix):
        return {k[len(prefix):]: v for k, v in sd.items() if k.startswith(prefix)}

    ae.load_state_dict(part("first_stage_model."))
    unet.load_state_dict(part("model.diffusion_model."))
    t = part(pre)
    with torch.no_grad():
        te.token_rows.copy_(t.pop("embeddings.token_embedding.weight"))
        te.position_embedding.copy_(t.pop("embeddings.position_embedding.weight"))
        t.pop("embeddings.position_ids", None)
        for i, layer in enumerate(te.layers):
            layer.load_state_dict({k[len(f"encoder.layers.{i}."):]: v for k, v in t.items()
                                   if k.startswith(f"encoder.layers.{i}.")})
        te.final_layer_norm.load_state_dict({k[len("final_layer_norm."):]: v for k, v in t.items()
                                             if k.startswith("final_layer_norm.")})
    return ae.eval(), unet.eval(), te.eval()


def write_f32(path, tensors, meta):
    header, blobs, off = {"__metadata__": meta}, [], 0
    for k in sorted(tensors):
        b = tensors[k].detach().float().contiguous().numpy().tobytes()
        header[k] = {"dtype": "F32", "shape": list(tensors[k].shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))


def main():
    torch.set_num_threads(1)
    ae, unet, te = load(sys.argv[1])
    tok = Tokenizer()
    out, meta = {}, {"cases": str(len(CASES)), "sampler": "euler", "scheduler": "discrete", "rng": "cpu"}
    with torch.no_grad():
        for i, (prompt, seed, steps, cfg) in enumerate(CASES):
            lat = train.sample(unet, te, tok, prompt, seed=seed, steps=steps, cfg=cfg)
            img = ae.decode(lat / train.SCALE)
            out[f"case{i}/latent_final"] = lat
            out[f"case{i}/image"] = img
            meta[f"case{i}.prompt"] = prompt
            meta[f"case{i}.seed"] = str(seed)
            meta[f"case{i}.steps"] = str(steps)
            meta[f"case{i}.cfg_scale"] = repr(cfg)
    write_f32(sys.argv[2], out, meta)


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Re-saves a single-file SD 1.x safetensors checkpoint in the other layouts people download, with
the Python standard library only (no torch, no numpy), so the tests can make them at build time:

  OUT/<stem>.ckpt            torch.save zip of {"state_dict": OrderedDict, ...}, float32
  OUT/<stem>-f16.ckpt        the same with every float tensor in float16 (as model.half())
  OUT/<stem>-f16.safetensors the float16 conversion as safetensors (the reference for the f16 files)
  OUT/<stem>-bf16.ckpt       the bare state dict (torch.save(model.state_dict())) in bfloat16
                             (round to nearest even, as tensor.to(torch.bfloat16))
  OUT/<stem>-diffusers/      diffusers folder: unet/ vae/ text_encoder/ (safetensors), configs,
                             VAE attention with the current to_q/to_k/to_v/to_out.0 names
  OUT/<stem>-diffusers-fp16/ .fp16 variants; VAE attention with the old query/key/value/proj_attn
                             names; text_encoder as pytorch_model.fp16.bin (a torch zip)
  OUT/<stem>-diffusers.stamp, OUT/<stem>-diffusers-fp16.stamp   (build system markers)
  OUT/<stem>{,-f16,-bf16}.json  copies of SRC's hyper-parameter file <stem>.json when it exists
                             (ldm-conform reads X.json beside X.ckpt); its head counts, scale
                             factor and betas also go into the diffusers configs, as diffusers'
                             converter takes them from the CompVis yaml

The torch files follow torch/serialization.py _save (protocol-2 pickle with persistent ids
('storage', torch.<T>Storage, key, 'cpu', numel), tensors as torch._utils._rebuild_tensor_v2,
entries stored uncompressed with their data 64-byte aligned); tools/gen_torch_ckpt_refs.py checks
once that torch.load reads them. The diffusers names follow the mapping of diffusers'
scripts/convert_original_stable_diffusion_to_diffusers.py (inverted by checkpoint.c).

usage: ckpt_variants.py SRC.safetensors OUTDIR [--only ckpt|diffusers]
"""
import array
import json
import os
import re
import struct
import sys
import zipfile

# ---- safetensors --------------------------------------------------------------------------

DT_SIZE = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1, "BOOL": 1}


def read_safetensors(path):
    """[(name, dtype, shape, bytes)] in data order, and the __metadata__ dict."""
    with open(path, "rb") as f:
        raw = f.read()
    n = struct.unpack("<Q", raw[:8])[0]
    header = json.loads(raw[8:8 + n])
    meta = header.pop("__metadata__", {})
    base = 8 + n
    out = []
    for name, e in sorted(header.items(), key=lambda kv: kv[1]["data_offsets"][0]):
        b, en = e["data_offsets"]
        out.append((name, e["dtype"], list(e["shape"]), raw[base + b:base + en]))
    return out, meta


def write_safetensors(path, tensors, meta=None):
    header, off = {}, 0
    if meta:
        header["__metadata__"] = meta
    for name, dt, shape, data in tensors:
        assert len(data) == DT_SIZE[dt] * prod(shape), name
        header[name] = {"dtype": dt, "shape": shape, "data_offsets": [off, off + len(data)]}
        off += len(data)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h)
        for t in tensors:
            f.write(t[3])


def prod(shape):
    n = 1
    for d in shape:
        n *= d
    return n


# ---- float conversion ---------------------------------------------------------------------

def f32_to_f16(data):
    vals = array.array("f")
    vals.frombytes(data)
    return struct.pack("<%de" % len(vals), *vals)  # IEEE round to nearest even


def f32_to_bf16(data):
    words = array.array("I")
    words.frombytes(data)
    out = array.array("H", [(w >> 16) | 0x40 if (w & 0x7FFFFFFF) > 0x7F800000 else  # NaN stays NaN
                            ((w + 0x7FFF + ((w >> 16) & 1)) >> 16) & 0xFFFF for w in words])
    return out.tobytes()


def convert(tensors, dtype):
    """Float tensors to dtype (F32/F16/BF16); integer buffers unchanged (as nn.Module.half())."""
    if dtype == "F32":
        return tensors
    fn = f32_to_f16 if dtype == "F16" else f32_to_bf16
    return [(n, dtype, s, fn(d)) if dt == "F32" else (n, dt, s, d) for n, dt, s, d in tensors]


# ---- torch zip writer ---------------------------------------------------------------------

STORAGE = {"F32": "FloatStorage", "F16": "HalfStorage", "BF16": "BFloat16Storage", "F64": "DoubleStorage",
           "I64": "LongStorage", "I32": "IntStorage", "I16": "ShortStorage", "I8": "CharStorage",
           "U8": "ByteStorage", "BOOL": "BoolStorage"}


class Pickler:
    """Protocol 2, memoising the way pickle.py does for the objects torch.save writes."""

    def __init__(self):
        self.out = bytearray(b"\x80\x02")
        self.memo = {}

    def put(self, key=None):
        idx = len(self.memo)
        self.memo[key if key is not None else ("anon", idx)] = idx
        self.out += (b"q" + bytes([idx])) if idx < 256 else (b"r" + struct.pack("<I", idx))

    def get(self, key):
        idx = self.memo[key]
        self.out += (b"h" + bytes([idx])) if idx < 256 else (b"j" + struct.pack("<I", idx))

    def glob(self, module, name):
        key = ("global", module, name)
        if key in self.memo:
            return self.get(key)
        self.out += b"c" + module.encode() + b"\n" + name.encode() + b"\n"
        self.put(key)

    def string(self, s):
        key = ("str", s)
        if key in self.memo:
            return self.get(key)
        b = s.encode("utf-8")
        self.out += b"X" + struct.pack("<I", len(b)) + b
        self.put(key)

    def integer(self, v):
        if 0 <= v < 256:
            self.out += b"K" + bytes([v])
        elif 0 <= v < 65536:
            self.out += b"M" + struct.pack("<H", v)
        elif -2 ** 31 <= v < 2 ** 31:
            self.out += b"J" + struct.pack("<i", v)
        else:
            b = v.to_bytes((v.bit_length() + 8) // 8, "little", signed=True)
            self.out += b"\x8a" + bytes([len(b)]) + b

    def value(self, v):
        if isinstance(v, bool):
            self.out += b"\x88" if v else b"\x89"
        elif isinstance(v, int):
            self.integer(v)
        elif isinstance(v, str):
            self.string(v)
        elif v is None:
            self.out += b"N"
        elif isinstance(v, float):
            self.out += b"G" + struct.pack(">d", v)
        elif isinstance(v, tuple):
            self.tuple(v)
        elif isinstance(v, dict):
            self.dict(v)
        elif isinstance(v, Tensor):
            self.tensor(v)
        else:
            raise TypeError(type(v))

    def tuple(self, items):
        if not items:
            self.out += b")"
            return
        if len(items) <= 3:
            for it in items:
                self.value(it)
            self.out += bytes([0x84 + len(items)])
        else:
            self.out += b"("
            for it in items:
                self.value(it)
            self.out += b"t"
        self.put()

    def setitems(self, items):
        items = list(items.items())
        for i in range(0, len(items), 1000):  # pickle.py _batch_setitems
            batch = items[i:i + 1000]
            if len(batch) == 1:
                self.value(batch[0][0])
                self.value(batch[0][1])
                self.out += b"s"
                continue
            self.out += b"("
            for k, v in batch:
                self.value(k)
                self.value(v)
            self.out += b"u"

    def dict(self, d):
        if isinstance(d, OrderedDictMarker):
            self.glob("collections", "OrderedDict")
            self.out += b")R"
        else:
            self.out += b"}"
        self.put()
        self.setitems(d)

    def tensor(self, t):
        self.glob("torch._utils", "_rebuild_tensor_v2")
        self.out += b"("
        self.out += b"("
        self.string("storage")
        self.glob("torch", STORAGE[t.dtype])
        self.string(t.key)
        self.string("cpu")
        self.integer(t.numel)
        self.out += b"t"
        self.put()
        self.out += b"Q"
        self.integer(t.offset)
        self.tuple(tuple(t.shape))
        self.tuple(tuple(t.stride))
        self.out += b"\x89"  # requires_grad False
        self.dict(OrderedDictMarker())  # backward hooks
        self.out += b"t"
        self.put()
        self.out += b"R"
        self.put()

    def finish(self, obj):
        self.value(obj)
        self.out += b"."
        return bytes(self.out)


class OrderedDictMarker(dict):
    pass


class Tensor:
    def __init__(self, key, dtype, numel, offset, shape, stride):
        self.key, self.dtype, self.numel, self.offset, self.shape, self.stride = key, dtype, numel, offset, shape, stride


def contiguous_strides(shape):
    st, acc = [], 1
    for d in reversed(shape):
        st.append(acc)
        acc *= d
    return list(reversed(st))


def write_torch_zip(path, obj, storages, prefix):
    """obj: picklable tree with Tensor leaves; storages: {key: bytes}."""
    pkl = Pickler().finish(obj)
    records = [("data.pkl", pkl)]
    if prefix == "archive":  # the records newer torch releases add
        records.append(("byteorder", b"little"))
    records += [("data/%s" % k, storages[k]) for k in sorted(storages, key=int)]
    records.append(("version", b"3\n"))
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED, allowZip64=True) as z:
        for name, data in records:
            zi = zipfile.ZipInfo(prefix + "/" + name, date_time=(1980, 1, 1, 0, 0, 0))
            zi.compress_type = zipfile.ZIP_STORED
            # torch aligns every record's data to 64 bytes with a padding extra field ("FB")
            start = z.fp.tell() + 30 + len(zi.filename.encode())
            pad = -(start + 4) % 64
            zi.extra = b"FB" + struct.pack("<H", pad) + b"Z" * pad
            z.writestr(zi, data)


def state_dict_ckpt(path, tensors, prefix, extra=None, wrap=True):
    sd, storages = OrderedDictMarker(), {}
    for i, (name, dt, shape, data) in enumerate(tensors):
        key = str(i)
        storages[key] = data
        sd[name] = Tensor(key, dt, len(data) // DT_SIZE[dt], 0, shape, contiguous_strides(shape))
    top = {"state_dict": sd} if wrap else sd
    if wrap:
        top.update(extra or {})
    write_torch_zip(path, top, storages, prefix)


# ---- diffusers ----------------------------------------------------------------------------

UNET = "model.diffusion_model."
VAE = "first_stage_model."
CLIP = "cond_stage_model.transformer."
OPENCLIP = "cond_stage_model.model."

UNET_RES = {"in_layers.0": "norm1", "in_layers.2": "conv1", "emb_layers.1": "time_emb_proj",
            "out_layers.0": "norm2", "out_layers.3": "conv2", "skip_connection": "conv_shortcut"}
VAE_ATTN_NEW = {"norm": "group_norm", "q": "to_q", "k": "to_k", "v": "to_v", "proj_out": "to_out.0"}
VAE_ATTN_OLD = {"norm": "group_norm", "q": "query", "k": "key", "v": "value", "proj_out": "proj_attn"}


def res_sub(rest, table):
    for sd, hf in table.items():
        if rest.startswith(sd + "."):
            return hf + rest[len(sd):]
    raise KeyError(rest)


def unet_layout(names):
    """num_res_blocks from the first downsampler's index (input_blocks.<L+1>.0.op)."""
    ks = [int(m.group(1)) for n in names for m in [re.match(r"input_blocks\.(\d+)\.0\.op\.", n)] if m]
    return min(ks) - 1


def unet_name(n, L):
    fixed = {"input_blocks.0.0.": "conv_in.", "time_embed.0.": "time_embedding.linear_1.",
             "time_embed.2.": "time_embedding.linear_2.", "out.0.": "conv_norm_out.", "out.2.": "conv_out."}
    for sd, hf in fixed.items():
        if n.startswith(sd):
            return hf + n[len(sd):]
    m = re.match(r"input_blocks\.(\d+)\.(\d)\.(.*)", n)
    if m:
        k, part, rest = int(m.group(1)), int(m.group(2)), m.group(3)
        if rest.startswith("op."):
            return "down_blocks.%d.downsamplers.0.conv.%s" % (k // (L + 1) - 1, rest[3:])
        i, j = (k - 1) // (L + 1), (k - 1) % (L + 1)
        if part == 0:
            return "down_blocks.%d.resnets.%d.%s" % (i, j, res_sub(rest, UNET_RES))
        return "down_blocks.%d.attentions.%d.%s" % (i, j, rest)
    m = re.match(r"middle_block\.(\d)\.(.*)", n)
    if m:
        k, rest = int(m.group(1)), m.group(2)
        if k == 1:
            return "mid_block.attentions.0." + rest
        return "mid_block.resnets.%d.%s" % (k // 2, res_sub(rest, UNET_RES))
    m = re.match(r"output_blocks\.(\d+)\.(\d)\.(.*)", n)
    if m:
        k, part, rest = int(m.group(1)), int(m.group(2)), m.group(3)
        i, j = k // (L + 1), k % (L + 1)
        if part == 0:
            return "up_blocks.%d.resnets.%d.%s" % (i, j, res_sub(rest, UNET_RES))
        if rest.startswith("conv."):  # Upsample: .1 without attention, .2 after it
            return "up_blocks.%d.upsamplers.0.%s" % (i, rest)
        return "up_blocks.%d.attentions.%d.%s" % (i, j, rest)
    raise KeyError(n)


def vae_name(n, n_up, attn):
    m = re.match(r"(encoder|decoder)\.(.*)", n)
    if not m:
        return n  # quant_conv, post_quant_conv
    part, rest = m.groups()
    vres = {"nin_shortcut": "conv_shortcut", "norm1": "norm1", "norm2": "norm2", "conv1": "conv1", "conv2": "conv2"}
    if rest.startswith("norm_out."):
        return part + ".conv_norm_out." + rest[9:]
    m = re.match(r"down\.(\d+)\.block\.(\d+)\.(.*)", rest)
    if m:
        return "%s.down_blocks.%s.resnets.%s.%s" % (part, m.group(1), m.group(2), res_sub(m.group(3), vres))
    m = re.match(r"down\.(\d+)\.downsample\.(.*)", rest)
    if m:
        return "%s.down_blocks.%s.downsamplers.0.%s" % (part, m.group(1), m.group(2))
    m = re.match(r"up\.(\d+)\.block\.(\d+)\.(.*)", rest)
    if m:
        return "%s.up_blocks.%d.resnets.%s.%s" % (part, n_up - 1 - int(m.group(1)), m.group(2),
                                                   res_sub(m.group(3), vres))
    m = re.match(r"up\.(\d+)\.upsample\.(.*)", rest)
    if m:
        return "%s.up_blocks.%d.upsamplers.0.%s" % (part, n_up - 1 - int(m.group(1)), m.group(2))
    m = re.match(r"mid\.block_(\d)\.(.*)", rest)
    if m:
        return "%s.mid_block.resnets.%d.%s" % (part, int(m.group(1)) - 1, res_sub(m.group(2), vres))
    m = re.match(r"mid\.attn_1\.(\w+)\.(.*)", rest)
    if m:
        return "%s.mid_block.attentions.0.%s.%s" % (part, attn[m.group(1)], m.group(2))
    return n  # conv_in, conv_out


def split_components(tensors):
    unet, vae, text, oclip = [], [], [], []
    for t in tensors:
        for prefix, dst in ((UNET, unet), (VAE, vae), (CLIP, text), (OPENCLIP, oclip)):
            if t[0].startswith(prefix):
                dst.append((t[0][len(prefix):],) + t[1:])
    return unet, vae, text, oclip


OPENCLIP_LAYER = {"ln_1": "layer_norm1", "ln_2": "layer_norm2", "mlp.c_fc": "mlp.fc1", "mlp.c_proj": "mlp.fc2",
                  "attn.out_proj": "self_attn.out_proj"}


def openclip_to_hf(oclip):
    """SD 2.x's open_clip tower as diffusers stores it (convert_open_clip_checkpoint): HF names,
    the fused in_proj split into q/k/v, without the last layer (diffusers runs the penultimate
    layer as its last) nor text_projection / logit_scale."""
    n_layers = 1 + max(int(m.group(1)) for t in oclip for m in [re.match(r"transformer\.resblocks\.(\d+)\.", t[0])]
                       if m)
    out = []
    for n, dt, s, d in oclip:
        if n == "token_embedding.weight":
            out.append(("text_model.embeddings.token_embedding.weight", dt, s, d))
        elif n == "positional_embedding":
            out.append(("text_model.embeddings.position_embedding.weight", dt, s, d))
        elif n.startswith("ln_final."):
            out.append(("text_model.final_layer_norm." + n[9:], dt, s, d))
        elif n.startswith("transformer.resblocks."):
            if ".attn.in_proj_" in n:
                continue  # split below
            m = re.match(r"transformer\.resblocks\.(\d+)\.(.*)\.(weight|bias)$", n)
            layer, sub, leaf = int(m.group(1)), m.group(2), m.group(3)
            if layer == n_layers - 1:
                continue
            out.append(("text_model.encoder.layers.%d.%s.%s" % (layer, OPENCLIP_LAYER[sub], leaf), dt, s, d))
        elif n not in ("text_projection", "logit_scale"):
            raise KeyError(n)
    for n, dt, s, d in oclip:
        m = re.match(r"transformer\.resblocks\.(\d+)\.attn\.in_proj_(weight|bias)$", n)
        if not m or int(m.group(1)) == n_layers - 1:
            continue
        part = len(d) // 3
        rows = [s[0] // 3] + s[1:]
        for k, qkv in enumerate("qkv"):
            out.append(("text_model.encoder.layers.%s.self_attn.%s_proj.%s" % (m.group(1), qkv, m.group(2)), dt, rows,
                        d[k * part:(k + 1) * part]))
    return out


def dims(tensors, name):
    for t in tensors:
        if t[0] == name:
            return t[2]
    raise KeyError(name)


def write_json(path, obj):
    with open(path, "w") as f:
        json.dump(obj, f, indent=2, sort_keys=True)
        f.write("\n")


def write_diffusers(out, tensors, dtype, fp16_layout, hp):
    unet, vae, text, oclip = split_components(convert(tensors, dtype))
    if oclip:
        text = openclip_to_hf(oclip)
    L = unet_layout([t[0] for t in unet])
    n_up = 1 + max(int(m.group(1)) for t in vae for m in [re.match(r"decoder\.up\.(\d+)\.", t[0])] if m)
    attn = VAE_ATTN_OLD if fp16_layout else VAE_ATTN_NEW
    d_unet = [(unet_name(n, L), dt, s, d) for n, dt, s, d in unet]
    d_vae = []
    for n, dt, s, d in vae:
        hf = vae_name(n, n_up, attn)
        if ".mid_block.attentions.0." in hf and hf.endswith(".weight") and len(s) == 4:
            s = s[:2]  # 1x1 conv [C, C, 1, 1] -> Linear [C, C]
        d_vae.append((hf, dt, s, d))
    d_text = list(text)
    variant = ".fp16" if fp16_layout else ""
    for sub in ("unet", "vae", "text_encoder", "scheduler"):
        os.makedirs(os.path.join(out, sub), exist_ok=True)
    write_safetensors(os.path.join(out, "unet", "diffusion_pytorch_model%s.safetensors" % variant), d_unet)
    write_safetensors(os.path.join(out, "vae", "diffusion_pytorch_model%s.safetensors" % variant), d_vae)
    if fp16_layout:  # transformers' torch format, to exercise .bin components
        storages, sd = {}, OrderedDictMarker()
        for i, (n, dt, s, d) in enumerate(d_text):
            storages[str(i)] = d
            sd[n] = Tensor(str(i), dt, len(d) // DT_SIZE[dt], 0, s, contiguous_strides(s))
        write_torch_zip(os.path.join(out, "text_encoder", "pytorch_model.fp16.bin"), sd, storages, "archive")
    else:
        write_safetensors(os.path.join(out, "text_encoder", "model.safetensors"), d_text)

    # Configs: enough for diffusers/transformers to rebuild the modules (from the shapes).
    in_blocks = sorted({int(m.group(1)) for t in unet for m in [re.match(r"input_blocks\.(\d+)\.0\.in_layers", t[0])]
                        if m})
    n_levels = 1 + max((k - 1) // (L + 1) for k in in_blocks)
    chans = [dims(unet, "input_blocks.%d.0.in_layers.2.weight" % (1 + i * (L + 1)))[0] for i in range(n_levels)]
    down_attn = [any(t[0].startswith("input_blocks.%d.1." % (1 + i * (L + 1))) for t in unet) for i in range(n_levels)]
    ctx = [t[2][1] for t in unet if t[0].endswith("attn2.to_k.weight")]
    linear_proj = any(t[0].endswith(".proj_in.weight") and len(t[2]) == 2 for t in unet)
    if "unet_head_channels" in hp:  # SD 2.x: heads per block, the head width fixed
        heads = [c // hp["unet_head_channels"] for c in chans]
    else:
        heads = hp.get("unet_heads", 8)
    write_json(os.path.join(out, "unet", "config.json"), {
        "_class_name": "UNet2DConditionModel", "_diffusers_version": "0.21.0",
        "act_fn": "silu", "attention_head_dim": heads, "block_out_channels": chans,
        "use_linear_projection": linear_proj,
        "center_input_sample": False, "cross_attention_dim": ctx[0] if ctx else None,
        "down_block_types": ["CrossAttnDownBlock2D" if a else "DownBlock2D" for a in down_attn],
        "up_block_types": ["CrossAttnUpBlock2D" if a else "UpBlock2D" for a in reversed(down_attn)],
        "downsample_padding": 1, "flip_sin_to_cos": True, "freq_shift": 0,
        "in_channels": dims(unet, "input_blocks.0.0.weight")[1], "out_channels": dims(unet, "out.2.weight")[0],
        "layers_per_block": L, "mid_block_scale_factor": 1, "norm_eps": 1e-05, "norm_num_groups": 32,
        "sample_size": 64})
    vae_levels = 1 + max(int(m.group(1)) for t in vae for m in [re.match(r"encoder\.down\.(\d+)\.", t[0])] if m)
    vae_lpb = 1 + max(int(m.group(1)) for t in vae for m in [re.match(r"encoder\.down\.0\.block\.(\d+)\.", t[0])] if m)
    write_json(os.path.join(out, "vae", "config.json"), {
        "_class_name": "AutoencoderKL", "_diffusers_version": "0.21.0", "act_fn": "silu",
        "block_out_channels": [dims(vae, "encoder.down.%d.block.0.conv1.weight" % i)[0] for i in range(vae_levels)],
        "down_block_types": ["DownEncoderBlock2D"] * vae_levels, "up_block_types": ["UpDecoderBlock2D"] * vae_levels,
        "in_channels": dims(vae, "encoder.conv_in.weight")[1], "out_channels": dims(vae, "decoder.conv_out.weight")[0],
        "latent_channels": dims(vae, "post_quant_conv.weight")[0], "layers_per_block": vae_lpb,
        "norm_num_groups": 32, "sample_size": 256, "scaling_factor": hp.get("scale_factor", 0.18215)})
    width = dims(text, "text_model.final_layer_norm.weight")[0]
    layers = len({m.group(1) for t in text for m in [re.match(r"text_model\.encoder\.layers\.(\d+)\.", t[0])] if m})
    write_json(os.path.join(out, "text_encoder", "config.json"), {
        "architectures": ["CLIPTextModel"], "model_type": "clip_text_model",
        "hidden_act": "gelu" if oclip else "quick_gelu",
        "hidden_size": width, "intermediate_size": dims(text, "text_model.encoder.layers.0.mlp.fc1.weight")[0],
        "num_attention_heads": hp.get("text_heads", max(1, width // 64)), "num_hidden_layers": layers,
        "max_position_embeddings": 77,
        "vocab_size": dims(text, "text_model.embeddings.token_embedding.weight")[0], "layer_norm_eps": 1e-05,
        "torch_dtype": "float16" if fp16_layout else "float32"})
    write_json(os.path.join(out, "scheduler", "scheduler_config.json"), {
        "_class_name": "PNDMScheduler", "_diffusers_version": "0.21.0", "beta_end": hp.get("linear_end", 0.012),
        "beta_schedule": "scaled_linear", "beta_start": hp.get("linear_start", 0.00085), "num_train_timesteps": 1000,
        "prediction_type": "v_prediction" if hp.get("parameterization") == "v" else "epsilon",
        "set_alpha_to_one": False, "skip_prk_steps": True, "steps_offset": 1})
    write_json(os.path.join(out, "model_index.json"), {
        "_class_name": "StableDiffusionPipeline", "_diffusers_version": "0.21.0",
        "scheduler": ["diffusers", "PNDMScheduler"], "text_encoder": ["transformers", "CLIPTextModel"],
        "tokenizer": ["transformers", "CLIPTokenizer"], "unet": ["diffusers", "UNet2DConditionModel"],
        "vae": ["diffusers", "AutoencoderKL"], "safety_checker": [None, None], "feature_extractor": [None, None],
        "requires_safety_checker": False})


def hyper_parameters(src):
    """Head counts, scale factor and betas from the CompVis-style <stem>.json beside SRC."""
    path = src.rsplit(".", 1)[0] + ".json"
    if not os.path.exists(path):
        return {}, None
    with open(path) as f:
        cfg = json.load(f)
    p = cfg.get("model", {}).get("params", {})
    up = p.get("unet_config", {}).get("params", {})
    nhc = up.get("num_head_channels", -1)
    text_heads = (cfg.get("cond_stage", {}).get("hf_text_config", {}).get("num_attention_heads") or
                  cfg.get("open_clip_model_cfg", {}).get("text_cfg", {}).get("heads"))
    hp = {k: v for k, v in (("unet_heads", up.get("num_heads")), ("scale_factor", p.get("scale_factor")),
                             ("unet_head_channels", nhc if nhc and nhc > 0 else None),
                             ("linear_start", p.get("linear_start")), ("linear_end", p.get("linear_end")),
                             ("parameterization", p.get("parameterization")),
                             ("text_heads", text_heads)) if v is not None}
    return hp, path


def main(argv):
    if len(argv) < 3:
        sys.stderr.write(__doc__)
        return 2
    src, out = argv[1], argv[2]
    only = argv[4] if len(argv) > 4 and argv[3] == "--only" else None
    os.makedirs(out, exist_ok=True)
    stem = os.path.basename(src).rsplit(".", 1)[0]
    tensors, meta = read_safetensors(src)
    hp, hp_path = hyper_parameters(src)
    if hp_path:
        with open(hp_path, "rb") as f:
            hp_bytes = f.read()
        for suffix in ("", "-f16", "-bf16"):
            with open(os.path.join(out, stem + suffix + ".json"), "wb") as f:
                f.write(hp_bytes)
    if only in (None, "ckpt"):
        # CompVis/Lightning checkpoints carry training state beside the weights
        extra = {"epoch": 6, "global_step": 470000, "pytorch-lightning_version": "1.4.2"}
        state_dict_ckpt(os.path.join(out, stem + ".ckpt"), tensors, "archive", extra)
        state_dict_ckpt(os.path.join(out, stem + "-f16.ckpt"), convert(tensors, "F16"), stem + "-f16", extra)
        write_safetensors(os.path.join(out, stem + "-f16.safetensors"), convert(tensors, "F16"), meta)
        # torch.save(model.state_dict()): no wrapper
        state_dict_ckpt(os.path.join(out, stem + "-bf16.ckpt"), convert(tensors, "BF16"), "archive", wrap=False)
    if only in (None, "diffusers"):
        for name, dt, fp16 in (("-diffusers", "F32", False), ("-diffusers-fp16", "F16", True)):
            write_diffusers(os.path.join(out, stem + name), tensors, dt, fp16, hp)
            with open(os.path.join(out, stem + name + ".stamp"), "w") as f:
                f.write("written by tools/ckpt_variants.py\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))

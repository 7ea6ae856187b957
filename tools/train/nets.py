"""The three networks of an SD 1.x checkpoint, written small and from the paper's description.

Module and parameter names follow the single-file SD 1.x checkpoint layout exactly
(`first_stage_model.*` = CompVis `ldm.modules.diffusionmodules.model` Encoder/Decoder,
`model.diffusion_model.*` = `openaimodel.UNetModel` with `SpatialTransformer`,
`cond_stage_model.transformer.text_model.*` = Hugging Face `CLIPTextModel`), so that
`state_dict()` keys are the checkpoint keys and libldm runs the file through its SD 1.x code.
Only the sizes differ from SD 1.5.
"""
import math

import torch
import torch.nn as nn
import torch.nn.functional as F


def group_norm(ch, eps):
    return nn.GroupNorm(32, ch, eps=eps, affine=True)


# --------------------------------------------------------------------------------------------
# Autoencoder (CompVis ldm/modules/diffusionmodules/model.py: Encoder, Decoder; GroupNorm eps 1e-6)

class ResnetBlock(nn.Module):
    def __init__(self, cin, cout):
        super().__init__()
        self.norm1 = group_norm(cin, 1e-6)
        self.conv1 = nn.Conv2d(cin, cout, 3, 1, 1)
        self.norm2 = group_norm(cout, 1e-6)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1)
        if cin != cout:
            self.nin_shortcut = nn.Conv2d(cin, cout, 1)
        else:
            self.nin_shortcut = None

    def forward(self, x):
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(F.silu(self.norm2(h)))
        if self.nin_shortcut is not None:
            x = self.nin_shortcut(x)
        return x + h


class AttnBlock(nn.Module):
    def __init__(self, ch):
        super().__init__()
        self.norm = group_norm(ch, 1e-6)
        self.q = nn.Conv2d(ch, ch, 1)
        self.k = nn.Conv2d(ch, ch, 1)
        self.v = nn.Conv2d(ch, ch, 1)
        self.proj_out = nn.Conv2d(ch, ch, 1)

    def forward(self, x):
        b, c, hh, ww = x.shape
        h = self.norm(x)
        q = self.q(h).reshape(b, c, hh * ww).transpose(1, 2)
        k = self.k(h).reshape(b, c, hh * ww)
        v = self.v(h).reshape(b, c, hh * ww)
        w = torch.softmax(torch.bmm(q, k) * c ** -0.5, dim=2)
        h = torch.bmm(v, w.transpose(1, 2)).reshape(b, c, hh, ww)
        return x + self.proj_out(h)


class Downsample(nn.Module):
    def __init__(self, ch):
        super().__init__()
        self.conv = nn.Conv2d(ch, ch, 3, 2, 0)

    def forward(self, x):
        return self.conv(F.pad(x, (0, 1, 0, 1)))  # model.py Downsample: asymmetric pad


class Upsample(nn.Module):
    def __init__(self, ch):
        super().__init__()
        self.conv = nn.Conv2d(ch, ch, 3, 1, 1)

    def forward(self, x):
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class Level(nn.Module):
    pass


class Mid(nn.Module):
    def __init__(self, ch):
        super().__init__()
        self.block_1 = ResnetBlock(ch, ch)
        self.attn_1 = AttnBlock(ch)
        self.block_2 = ResnetBlock(ch, ch)

    def forward(self, x):
        return self.block_2(self.attn_1(self.block_1(x)))


class Encoder(nn.Module):
    def __init__(self, ch, ch_mult, num_res_blocks, z_channels):
        super().__init__()
        self.conv_in = nn.Conv2d(3, ch, 3, 1, 1)
        self.down = nn.ModuleList()
        in_mult = (1,) + tuple(ch_mult)
        for i, m in enumerate(ch_mult):
            lvl = Level()
            cin, cout = ch * in_mult[i], ch * m
            lvl.block = nn.ModuleList()
            for _ in range(num_res_blocks):
                lvl.block.append(ResnetBlock(cin, cout))
                cin = cout
            lvl.attn = nn.ModuleList()
            if i != len(ch_mult) - 1:
                lvl.downsample = Downsample(cout)
            self.down.append(lvl)
        c = ch * ch_mult[-1]
        self.mid = Mid(c)
        self.norm_out = group_norm(c, 1e-6)
        self.conv_out = nn.Conv2d(c, 2 * z_channels, 3, 1, 1)

    def forward(self, x):
        h = self.conv_in(x)
        for i, lvl in enumerate(self.down):
            for b in lvl.block:
                h = b(h)
            if hasattr(lvl, "downsample"):
                h = lvl.downsample(h)
        h = self.mid(h)
        return self.conv_out(F.silu(self.norm_out(h)))


class Decoder(nn.Module):
    def __init__(self, ch, ch_mult, num_res_blocks, z_channels):
        super().__init__()
        c = ch * ch_mult[-1]
        self.conv_in = nn.Conv2d(z_channels, c, 3, 1, 1)
        self.mid = Mid(c)
        ups = []
        for i in reversed(range(len(ch_mult))):
            lvl = Level()
            cout = ch * ch_mult[i]
            lvl.block = nn.ModuleList()
            for _ in range(num_res_blocks + 1):
                lvl.block.append(ResnetBlock(c, cout))
                c = cout
            lvl.attn = nn.ModuleList()
            if i != 0:
                lvl.upsample = Upsample(c)
            ups.insert(0, lvl)  # model.py: self.up.insert(0, up), so up[0] is the full-resolution level
        self.up = nn.ModuleList(ups)
        self.norm_out = group_norm(c, 1e-6)
        self.conv_out = nn.Conv2d(c, 3, 3, 1, 1)

    def forward(self, z):
        h = self.mid(self.conv_in(z))
        for i in reversed(range(len(self.up))):
            lvl = self.up[i]
            for b in lvl.block:
                h = b(h)
            if hasattr(lvl, "upsample"):
                h = lvl.upsample(h)
        return self.conv_out(F.silu(self.norm_out(h)))


class AutoencoderKL(nn.Module):
    def __init__(self, ch=32, ch_mult=(1, 2, 2, 4), num_res_blocks=2, z_channels=4):
        super().__init__()
        self.encoder = Encoder(ch, ch_mult, num_res_blocks, z_channels)
        self.decoder = Decoder(ch, ch_mult, num_res_blocks, z_channels)
        self.quant_conv = nn.Conv2d(2 * z_channels, 2 * z_channels, 1)
        self.post_quant_conv = nn.Conv2d(z_channels, z_channels, 1)

    def encode(self, x):
        moments = self.quant_conv(self.encoder(x))
        mean, logvar = torch.chunk(moments, 2, dim=1)
        return mean, torch.clamp(logvar, -30.0, 20.0)

    def decode(self, z):
        return self.decoder(self.post_quant_conv(z))

    @torch.no_grad()
    def rescale_latent(self, c):
        """Multiply the posterior by c (mean*c, std*c) and divide it back in post_quant_conv: the
        same autoencoder, with a latent whose spread suits SD's fixed scale factor 0.18215."""
        z = self.post_quant_conv.in_channels
        self.quant_conv.weight[:z] *= c
        self.quant_conv.bias[:z] *= c
        self.quant_conv.bias[z:] += 2.0 * math.log(c)
        self.post_quant_conv.weight /= c


# --------------------------------------------------------------------------------------------
# UNet (openaimodel.UNetModel, legacy=False, use_spatial_transformer=True, SD 1.x: conv proj_in)

def timestep_embedding(t, dim, max_period=10000):
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32) / half)
    args = t[:, None].float() * freqs[None]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)  # openaimodel: cos first


class ResBlock(nn.Module):
    def __init__(self, cin, emb_ch, cout):
        super().__init__()
        self.in_layers = nn.Sequential(group_norm(cin, 1e-5), nn.SiLU(), nn.Conv2d(cin, cout, 3, 1, 1))
        self.emb_layers = nn.Sequential(nn.SiLU(), nn.Linear(emb_ch, cout))
        self.out_layers = nn.Sequential(group_norm(cout, 1e-5), nn.SiLU(), nn.Dropout(0.0),
                                        nn.Conv2d(cout, cout, 3, 1, 1))
        self.skip_connection = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()

    def forward(self, x, emb):
        h = self.in_layers(x)
        h = h + self.emb_layers(emb)[:, :, None, None]
        h = self.out_layers(h)
        return self.skip_connection(x) + h


class CrossAttention(nn.Module):
    def __init__(self, dim, ctx_dim, heads):
        super().__init__()
        self.heads = heads
        self.to_q = nn.Linear(dim, dim, bias=False)
        self.to_k = nn.Linear(ctx_dim, dim, bias=False)
        self.to_v = nn.Linear(ctx_dim, dim, bias=False)
        self.to_out = nn.Sequential(nn.Linear(dim, dim), nn.Dropout(0.0))

    def forward(self, x, ctx):
        b, n, d = x.shape
        h = self.heads
        q = self.to_q(x).reshape(b, n, h, d // h).transpose(1, 2)
        k = self.to_k(ctx).reshape(b, ctx.shape[1], h, d // h).transpose(1, 2)
        v = self.to_v(ctx).reshape(b, ctx.shape[1], h, d // h).transpose(1, 2)
        w = torch.softmax(q @ k.transpose(-1, -2) * (d // h) ** -0.5, dim=-1)
        o = (w @ v).transpose(1, 2).reshape(b, n, d)
        return self.to_out(o)


class GEGLU(nn.Module):
    def __init__(self, dim, inner):
        super().__init__()
        self.proj = nn.Linear(dim, inner * 2)

    def forward(self, x):
        a, gate = self.proj(x).chunk(2, dim=-1)
        return a * F.gelu(gate)


class BasicTransformerBlock(nn.Module):
    def __init__(self, dim, ctx_dim, heads):
        super().__init__()
        self.attn1 = CrossAttention(dim, dim, heads)
        self.ff = nn.Module()
        self.ff.net = nn.Sequential(GEGLU(dim, dim * 4), nn.Dropout(0.0), nn.Linear(dim * 4, dim))
        self.attn2 = CrossAttention(dim, ctx_dim, heads)
        self.norm1 = nn.LayerNorm(dim)
        self.norm2 = nn.LayerNorm(dim)
        self.norm3 = nn.LayerNorm(dim)

    def forward(self, x, ctx):
        h = self.norm1(x)
        x = x + self.attn1(h, h)
        x = x + self.attn2(self.norm2(x), ctx)
        return x + self.ff.net(self.norm3(x))


class SpatialTransformer(nn.Module):
    def __init__(self, ch, ctx_dim, heads):
        super().__init__()
        self.norm = group_norm(ch, 1e-6)
        self.proj_in = nn.Conv2d(ch, ch, 1)
        self.transformer_blocks = nn.ModuleList([BasicTransformerBlock(ch, ctx_dim, heads)])
        self.proj_out = nn.Conv2d(ch, ch, 1)

    def forward(self, x, ctx):
        b, c, hh, ww = x.shape
        h = self.proj_in(self.norm(x))
        h = h.reshape(b, c, hh * ww).transpose(1, 2)
        for blk in self.transformer_blocks:
            h = blk(h, ctx)
        h = h.transpose(1, 2).reshape(b, c, hh, ww)
        return x + self.proj_out(h)


class Downsample2(nn.Module):
    def __init__(self, ch):
        super().__init__()
        self.op = nn.Conv2d(ch, ch, 3, 2, 1)

    def forward(self, x):
        return self.op(x)


class TimestepSequential(nn.Sequential):
    def forward(self, x, emb, ctx):
        for layer in self:
            if isinstance(layer, ResBlock):
                x = layer(x, emb)
            elif isinstance(layer, SpatialTransformer):
                x = layer(x, ctx)
            else:
                x = layer(x)
        return x


class UNetModel(nn.Module):
    def __init__(self, ch=64, ch_mult=(1, 2, 2), num_res_blocks=2, attn_levels=(0, 1, 2),
                 ctx_dim=128, heads=8, in_ch=4, out_ch=4):
        super().__init__()
        self.ch = ch
        emb = ch * 4
        self.time_embed = nn.Sequential(nn.Linear(ch, emb), nn.SiLU(), nn.Linear(emb, emb))
        self.input_blocks = nn.ModuleList([TimestepSequential(nn.Conv2d(in_ch, ch, 3, 1, 1))])
        chans = [ch]
        c = ch
        for lvl, m in enumerate(ch_mult):
            for _ in range(num_res_blocks):
                layers = [ResBlock(c, emb, ch * m)]
                c = ch * m
                if lvl in attn_levels:
                    layers.append(SpatialTransformer(c, ctx_dim, heads))
                self.input_blocks.append(TimestepSequential(*layers))
                chans.append(c)
            if lvl != len(ch_mult) - 1:
                self.input_blocks.append(TimestepSequential(Downsample2(c)))
                chans.append(c)
        self.middle_block = TimestepSequential(ResBlock(c, emb, c), SpatialTransformer(c, ctx_dim, heads),
                                               ResBlock(c, emb, c))
        self.output_blocks = nn.ModuleList()
        for lvl, m in reversed(list(enumerate(ch_mult))):
            for i in range(num_res_blocks + 1):
                layers = [ResBlock(c + chans.pop(), emb, ch * m)]
                c = ch * m
                if lvl in attn_levels:
                    layers.append(SpatialTransformer(c, ctx_dim, heads))
                if lvl and i == num_res_blocks:
                    layers.append(Upsample(c))
                self.output_blocks.append(TimestepSequential(*layers))
        self.out = nn.Sequential(group_norm(c, 1e-5), nn.SiLU(), nn.Conv2d(c, out_ch, 3, 1, 1))

    def forward(self, x, t, ctx):
        emb = self.time_embed(timestep_embedding(t, self.ch))
        hs = []
        h = x
        for blk in self.input_blocks:
            h = blk(h, emb, ctx)
            hs.append(h)
        h = self.middle_block(h, emb, ctx)
        for blk in self.output_blocks:
            h = blk(torch.cat([h, hs.pop()], dim=1), emb, ctx)
        return self.out(h)


# --------------------------------------------------------------------------------------------
# Text encoder (Hugging Face CLIPTextModel: pre-LN, causal mask, quick_gelu, final_layer_norm)

class CLIPAttention(nn.Module):
    def __init__(self, d, heads):
        super().__init__()
        self.heads = heads
        self.q_proj = nn.Linear(d, d)
        self.k_proj = nn.Linear(d, d)
        self.v_proj = nn.Linear(d, d)
        self.out_proj = nn.Linear(d, d)

    def forward(self, x, mask):
        b, n, d = x.shape
        h = self.heads
        q = self.q_proj(x).reshape(b, n, h, d // h).transpose(1, 2) * (d // h) ** -0.5
        k = self.k_proj(x).reshape(b, n, h, d // h).transpose(1, 2)
        v = self.v_proj(x).reshape(b, n, h, d // h).transpose(1, 2)
        w = torch.softmax(q @ k.transpose(-1, -2) + mask, dim=-1)
        return self.out_proj((w @ v).transpose(1, 2).reshape(b, n, d))


class CLIPMLP(nn.Module):
    def __init__(self, d, inner):
        super().__init__()
        self.fc1 = nn.Linear(d, inner)
        self.fc2 = nn.Linear(inner, d)

    def forward(self, x):
        h = self.fc1(x)
        return self.fc2(h * torch.sigmoid(1.702 * h))  # quick_gelu


class CLIPLayer(nn.Module):
    def __init__(self, d, heads):
        super().__init__()
        self.self_attn = CLIPAttention(d, heads)
        self.layer_norm1 = nn.LayerNorm(d)
        self.mlp = CLIPMLP(d, 4 * d)
        self.layer_norm2 = nn.LayerNorm(d)

    def forward(self, x, mask):
        x = x + self.self_attn(self.layer_norm1(x), mask)
        return x + self.mlp(self.layer_norm2(x))


class CLIPTextModel(nn.Module):
    """text_model.* of HF CLIPTextModel. The token table is the full 49408 x d of the CLIP vocab in
    the checkpoint; while training only the rows the captions use are parameters (`used_ids`), so the
    optimizer does not carry a 49408-row table for the ~40 tokens the data has."""

    def __init__(self, used_ids, d=128, layers=2, n_ctx=77, vocab=49408):
        super().__init__()
        self.d, self.vocab = d, vocab
        self.register_buffer("used_ids", torch.tensor(sorted(used_ids), dtype=torch.long))
        remap = torch.zeros(vocab, dtype=torch.long)
        remap[self.used_ids] = torch.arange(len(self.used_ids))
        self.register_buffer("remap", remap)
        self.token_rows = nn.Parameter(torch.randn(len(self.used_ids), d) * 0.02)
        self.position_embedding = nn.Parameter(torch.randn(n_ctx, d) * 0.01)
        self.layers = nn.ModuleList([CLIPLayer(d, max(1, d // 64)) for _ in range(layers)])
        self.final_layer_norm = nn.LayerNorm(d)
        mask = torch.full((n_ctx, n_ctx), float("-inf")).triu_(1)
        self.register_buffer("mask", mask)

    def forward(self, ids):
        x = self.token_rows[self.remap[ids]] + self.position_embedding[None]
        for layer in self.layers:
            x = layer(x, self.mask)
        return self.final_layer_norm(x)

    def checkpoint_tensors(self, prefix, seed):
        """The tensors under the HF names; unused vocabulary rows get small seeded random values."""
        g = torch.Generator().manual_seed(seed)
        table = torch.randn(self.vocab, self.d, generator=g) * 0.02
        table[self.used_ids] = self.token_rows.detach()
        out = {prefix + "embeddings.token_embedding.weight": table,
               prefix + "embeddings.position_embedding.weight": self.position_embedding.detach()}
        for i, layer in enumerate(self.layers):
            for k, v in layer.state_dict().items():
                out[f"{prefix}encoder.layers.{i}.{k}"] = v
        for k, v in self.final_layer_norm.state_dict().items():
            out[prefix + "final_layer_norm." + k] = v
        return out

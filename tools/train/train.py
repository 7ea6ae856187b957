#!/usr/bin/python3
"""Train libldm's demo model: the paper's two-stage recipe (Rombach et al. 2022, sec. 3) in miniature.

Stage 1: a KL-regularised autoencoder, f = 8, SD 1.x layout (64x64x3 -> 8x8x4).
Stage 2: a text-conditioned UNet (eps-prediction, SD's linear-sqrt beta schedule, classifier-free
guidance training with 10 % empty captions) and a small CLIP-style text encoder trained jointly.
The result is written as an SD 1.x single-file checkpoint in F16 plus a training report.

    OPENBLAS_CORETYPE=SkylakeX is set below: Debian's OpenBLAS 0.3.21 mistakes this machine's CPU
    for a Prescott and would run torch's matrix products 2-3x slower.

Usage: /usr/bin/python3 tools/train/train.py [--out DIR] [--seed N] [--quick]
Needs Debian's python3-torch and python3-numpy (apt install python3-torch python3-numpy).
The defaults are the shipped model's recipe, with fixed seeds, so the same command gives the same
losses. They use both cores: --threads 2 runs the autoencoder on two threads; --workers 2 runs the
UNet in two one-thread processes that each take half of every batch and average their gradients
with a gloo all-reduce, because torch's intra-op threads make this small UNet slower, not faster.
--threads 1 --workers 1 computes the same thing on one core, in another summation order.
"""
import os

os.environ.setdefault("OPENBLAS_CORETYPE", "SkylakeX")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse
import json
import math
import struct
import sys
import time
import zlib

import numpy as np
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import nets  # noqa: E402
import shapes_data  # noqa: E402
import shape_eval  # noqa: E402
from clip_bpe import Tokenizer  # noqa: E402

SCALE = 0.18215  # SD 1.x latent scale factor; the autoencoder is rescaled to suit it (rescale_latent)

AE_CFG = dict(ch=32, ch_mult=(1, 2, 2, 2), num_res_blocks=2, z_channels=4)
UNET_CFG = dict(ch=64, ch_mult=(1, 1, 2), num_res_blocks=2, attn_levels=(1, 2), ctx_dim=64, heads=8)
TE_CFG = dict(d=64, layers=2)


def log(report, msg):
    print(msg, flush=True)
    report["log"].append(msg)


def lr_at(step, total, peak, warmup):
    if step < warmup:
        return peak * (step + 1) / warmup
    p = (step - warmup) / max(1, total - warmup)
    return peak * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * p)))


def ddpm_schedule():
    # ldm/modules/diffusionmodules/util.py make_beta_schedule("linear"): linspace of sqrt, squared
    betas = torch.linspace(0.00085 ** 0.5, 0.012 ** 0.5, 1000, dtype=torch.float64) ** 2
    return torch.cumprod(1.0 - betas, 0).float()


# ---------------------------------------------------------------------------------------------
def train_autoencoder(args, report):
    torch.manual_seed(args.seed)
    ae = nets.AutoencoderKL(**AE_CFG)
    opt = torch.optim.Adam(ae.parameters(), lr=args.ae_lr)
    stream = shapes_data.Stream(args.seed + 1, shapes_data.all_combinations())  # any picture is fine here
    gen = torch.Generator().manual_seed(args.seed + 2)
    total = args.ae_steps + args.ae_full_steps
    t0 = time.time()
    for step in range(total):
        full = step >= args.ae_steps
        x, _ = stream.batch(8 if full else 16)
        x = torch.from_numpy(x)
        if not full:  # random 32x32 crops: same convolutions, a quarter of the cost
            oy, ox = stream.rng.integers(0, 33, 2)
            x = x[:, :, oy:oy + 32, ox:ox + 32]
        for g in opt.param_groups:
            g["lr"] = lr_at(step, total, args.ae_lr, 100)
        mean, logvar = ae.encode(x)
        std = torch.exp(0.5 * logvar)
        z = mean + std * torch.randn(mean.shape, generator=gen)
        y = ae.decode(z)
        rec = (y - x).abs().mean() + F.mse_loss(y, x)
        # edges: L1 on the image gradients keeps the shape outlines sharp
        edge = (torch.diff(y, dim=2) - torch.diff(x, dim=2)).abs().mean() + \
               (torch.diff(y, dim=3) - torch.diff(x, dim=3)).abs().mean()
        kl = 0.5 * (mean.pow(2) + std.pow(2) - 1.0 - logvar).sum(dim=(1, 2, 3)).mean()
        loss = rec + 0.5 * edge + 1e-6 * kl
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if step % 200 == 0 or step == total - 1:
            psnr = -10 * math.log10(F.mse_loss(y.clamp(-1, 1), x).item() / 4 + 1e-12)
            log(report, f"ae step {step:5d} loss {loss.item():.4f} rec {rec.item():.4f} "
                        f"edge {edge.item():.4f} kl {kl.item():.1f} psnr {psnr:.2f} dB "
                        f"({time.time() - t0:.0f} s)")
    return ae


@torch.no_grad()
def evaluate_autoencoder(ae, args, report):
    stream = shapes_data.Stream(args.seed + 3, shapes_data.all_combinations())
    x, _ = stream.batch(64)
    x = torch.from_numpy(x)
    mean, _ = ae.encode(x)
    y = ae.decode(mean).clamp(-1, 1)
    psnr = -10 * torch.log10(((y - x) ** 2).mean(dim=(1, 2, 3)) / 4)
    report["ae_psnr_db"] = [round(float(psnr.mean()), 2), round(float(psnr.min()), 2)]
    log(report, f"ae held-out PSNR mean {psnr.mean():.2f} dB, worst {psnr.min():.2f} dB")
    return mean


@torch.no_grad()
def encode_dataset(ae, args, report):
    stream = shapes_data.Stream(args.seed + 4)  # training combinations only
    means, stds, ids = [], [], []
    tok = Tokenizer()
    for _ in range(args.latents // 100):
        x, caps = stream.batch(100)
        mean, logvar = ae.encode(torch.from_numpy(x))
        means.append(mean)
        stds.append(torch.exp(0.5 * logvar))
        ids += [tok(c) for c in caps]
    mean, std = torch.cat(means), torch.cat(stds)
    c = 1.0 / (SCALE * float(mean.std()))
    ae.rescale_latent(c)
    log(report, f"latent std {float(mean.std()):.4f} -> rescaled by {c:.4f} for scale factor {SCALE}")
    return mean * c, std * c, torch.tensor(ids)


def make_text_encoder(ids, tok):
    used = sorted(set(ids.flatten().tolist()) | set(tok("")))
    return nets.CLIPTextModel(used, **TE_CFG)


def train_diffusion(latent_mean, latent_std, ids, args, report, tok, rank=0, world=1):
    """Every process draws the whole batch from the same generator (so the run is one function of
    the seed whatever `world` is) and computes the loss on its slice; the gradients are averaged."""
    torch.manual_seed(args.seed + 10)
    te = make_text_encoder(ids, tok)
    unet = nets.UNetModel(**UNET_CFG)
    params = list(unet.parameters()) + list(te.parameters())
    ema = [p.detach().clone() for p in params]
    opt = torch.optim.AdamW(params, lr=args.unet_lr, weight_decay=0.0)
    alphas_cumprod = ddpm_schedule()
    empty = torch.tensor(tok("")).unsqueeze(0)
    gen = torch.Generator().manual_seed(args.seed + 11)
    n = latent_mean.shape[0]
    part = slice(rank * args.batch // world, (rank + 1) * args.batch // world)
    t0 = time.time()
    smooth = None
    for step in range(args.unet_steps):
        idx = torch.randint(0, n, (args.batch,), generator=gen)
        z = SCALE * (latent_mean[idx] + latent_std[idx] * torch.randn(latent_mean[idx].shape, generator=gen))
        cap = ids[idx].clone()
        drop = torch.rand(args.batch, generator=gen) < 0.1  # classifier-free guidance: 10 % unconditional
        cap[drop] = empty
        t = torch.randint(0, 1000, (args.batch,), generator=gen)
        eps = torch.randn(z.shape, generator=gen)
        ab = alphas_cumprod[t].view(-1, 1, 1, 1)
        zt = ab.sqrt() * z + (1 - ab).sqrt() * eps
        for g in opt.param_groups:
            g["lr"] = lr_at(step, args.unet_steps, args.unet_lr, 100)
        loss = F.mse_loss(unet(zt[part], t[part], te(cap[part])), eps[part])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if world > 1:  # one all-reduce of every gradient and the loss: the mean over the whole batch
            flat = torch.cat([p.grad.reshape(-1) for p in params] + [loss.detach().reshape(1)])
            dist.all_reduce(flat)
            flat /= world
            off = 0
            for p in params:
                p.grad.copy_(flat[off:off + p.numel()].view_as(p))
                off += p.numel()
            loss_value = float(flat[-1])
        else:
            loss_value = loss.item()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        with torch.no_grad():
            d = min(args.ema, (1 + step) / (10 + step))
            for e, p in zip(ema, params):
                e.mul_(d).add_(p.detach(), alpha=1 - d)
        smooth = loss_value if smooth is None else 0.98 * smooth + 0.02 * loss_value
        if rank == 0 and (step % 100 == 0 or step == args.unet_steps - 1):
            log(report, f"unet step {step:5d} loss {loss_value:.4f} (smoothed {smooth:.4f}) "
                        f"({time.time() - t0:.0f} s)")
    report["unet_final_loss_smoothed"] = round(smooth, 4)
    with torch.no_grad():
        for e, p in zip(ema, params):
            p.copy_(e)
    return unet, te


def diffusion_worker(rank, world, workdir, args_dict):
    """One of the stage-2 processes (spawned by run_diffusion); rank 0 saves the result."""
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    dist.init_process_group("gloo", init_method="file://" + os.path.join(workdir, "rendezvous"),
                            rank=rank, world_size=world)
    data = torch.load(os.path.join(workdir, "latents.pt"))
    report = {"log": []}
    unet, te = train_diffusion(data["mean"], data["std"], data["ids"], argparse.Namespace(**args_dict),
                               report, Tokenizer(), rank, world)
    if rank == 0:
        torch.save({"unet": unet.state_dict(), "te": te.state_dict(), "log": report["log"],
                    "smooth": report["unet_final_loss_smoothed"]}, os.path.join(workdir, "result.pt"))
    dist.barrier()
    dist.destroy_process_group()


def run_diffusion(latent_mean, latent_std, ids, args, report, tok):
    if args.workers == 1:
        return train_diffusion(latent_mean, latent_std, ids, args, report, tok)
    workdir = os.path.join(args.out, ".stage2")
    os.makedirs(workdir, exist_ok=True)
    for f in ("rendezvous", "result.pt"):
        if os.path.exists(os.path.join(workdir, f)):
            os.remove(os.path.join(workdir, f))
    torch.save({"mean": latent_mean, "std": latent_std, "ids": ids}, os.path.join(workdir, "latents.pt"))
    os.environ["OMP_NUM_THREADS"] = os.environ["OPENBLAS_NUM_THREADS"] = "1"  # read by the new processes
    mp.start_processes(diffusion_worker, args=(args.workers, workdir, vars(args)), nprocs=args.workers,
                       start_method="spawn")
    res = torch.load(os.path.join(workdir, "result.pt"))
    report["log"] += res["log"]
    report["unet_final_loss_smoothed"] = res["smooth"]
    te = make_text_encoder(ids, tok)
    unet = nets.UNetModel(**UNET_CFG)
    unet.load_state_dict(res["unet"])
    te.load_state_dict(res["te"])
    for f in os.listdir(workdir):
        os.remove(os.path.join(workdir, f))
    os.rmdir(workdir)
    return unet, te


# ---------------------------------------------------------------------------------------------
def checkpoint_tensors(ae, unet, te, seed):
    out = {}
    for k, v in ae.state_dict().items():
        out["first_stage_model." + k] = v
    for k, v in unet.state_dict().items():
        out["model.diffusion_model." + k] = v
    out.update(te.checkpoint_tensors("cond_stage_model.transformer.text_model.", seed))
    return out


def write_safetensors(path, tensors, metadata):
    header, blobs, off = {"__metadata__": metadata}, [], 0
    for k in sorted(tensors):
        a = tensors[k].detach().to(torch.float16).contiguous().numpy()
        b = a.tobytes()
        header[k] = {"dtype": "F16", "shape": list(a.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)


def round_to_f16(*modules):
    """Give the networks the weights the F16 file holds."""
    with torch.no_grad():
        for m in modules:
            for p in m.parameters():
                p.copy_(p.to(torch.float16).float())


# ---------------------------------------------------------------------------------------------
# k-diffusion's discrete (CompVisDenoiser) Euler sampler with classifier-free guidance, written
# out so that the report's pictures and libldm's output can be compared on the same noise.

class Denoiser:
    def __init__(self, unet, alphas_cumprod):
        self.unet = unet
        self.sigmas = ((1 - alphas_cumprod) / alphas_cumprod) ** 0.5
        self.log_sigmas = self.sigmas.log()

    def sigma_to_t(self, sigma):  # k-diffusion DiscreteSchedule.sigma_to_t (quantize=False)
        log_sigma = sigma.log()
        dists = log_sigma - self.log_sigmas[:, None]
        low = dists.ge(0).cumsum(dim=0).argmax(dim=0).clamp(max=self.log_sigmas.shape[0] - 2)
        high = low + 1
        lo, hi = self.log_sigmas[low], self.log_sigmas[high]
        w = ((lo - log_sigma) / (lo - hi)).clamp(0, 1)
        return ((1 - w) * low + w * high).view(sigma.shape)

    def t_to_sigma(self, t):
        low, high, w = t.floor().long(), t.ceil().long(), t.frac()
        return ((1 - w) * self.log_sigmas[low] + w * self.log_sigmas[high]).exp()

    def get_sigmas(self, n):
        t = torch.linspace(self.sigmas.shape[0] - 1, 0, n)
        return torch.cat([self.t_to_sigma(t), t.new_zeros([1])])

    def __call__(self, x, sigma, ctx):
        c_in = 1 / (sigma ** 2 + 1) ** 0.5
        eps = self.unet(x * c_in, self.sigma_to_t(sigma).expand(x.shape[0]), ctx)
        return x - eps * sigma


@torch.no_grad()
def sample(unet, te, tok, prompt, seed, steps=20, cfg=7.5, negative=""):
    den = Denoiser(unet, ddpm_schedule())
    g = torch.Generator().manual_seed(seed)
    x = torch.randn([1, 4, 8, 8], generator=g)  # draw 0 of SEEDED_CONTRACT.md (--rng cpu)
    sigmas = den.get_sigmas(steps)
    x = x * sigmas[0]
    cond = te(torch.tensor([tok(prompt)]))
    uncond = te(torch.tensor([tok(negative)]))
    for i in range(steps):
        s = sigmas[i].reshape(1)
        if cfg == 1.0:
            d = den(x, s, cond)
        else:
            both = den(torch.cat([x, x]), s, torch.cat([uncond, cond]))
            u, c = both.chunk(2)
            d = u + cfg * (c - u)
        x = x + (x - d) / sigmas[i] * (sigmas[i + 1] - sigmas[i])
    return x


def to_u8(img):
    return ((img.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)[0].permute(1, 2, 0).numpy()


@torch.no_grad()
def evaluate(ae, unet, te, tok, report, cfg, steps, seeds=2):
    res = {"seen": [0, 0], "held_out": [0, 0]}
    held = set(shapes_data.HELD_OUT)
    seen = [c for c in shapes_data.train_combinations()][::8]
    pics = []
    for group, combos in (("seen", seen), ("held_out", shapes_data.HELD_OUT)):
        for combo in combos:
            for s in range(seeds):
                lat = sample(unet, te, tok, shapes_data.caption(*combo), seed=1000 + s, steps=steps, cfg=cfg)
                img = to_u8(ae.decode(lat / SCALE))
                ok = shape_eval.matches(img, *combo)
                res[group][0] += ok
                res[group][1] += 1
                if s == 0 and len(pics) < 40:
                    pics.append(img)
    assert not (set(seen) & held)
    return res, pics


def save_grid(path, pics, cols=8):
    rows = (len(pics) + cols - 1) // cols
    grid = np.full((rows * 66, cols * 66, 3), 128, np.uint8)
    for i, p in enumerate(pics):
        r, c = divmod(i, cols)
        grid[r * 66 + 1:r * 66 + 65, c * 66 + 1:c * 66 + 65] = p
    # an 8-bit RGB PNG written with zlib alone: no imaging library needed
    h, w, _ = grid.shape
    raw = b"".join(b"\0" + grid[y].tobytes() for y in range(h))

    def chunk(tag, data):
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)

    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)) +
                chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="models")
    ap.add_argument("--name", default="ldm-shapes-64")
    ap.add_argument("--seed", type=int, default=20261126)
    ap.add_argument("--ae-steps", type=int, default=3000)
    ap.add_argument("--ae-full-steps", type=int, default=1000)
    ap.add_argument("--ae-lr", type=float, default=5e-4)
    ap.add_argument("--latents", type=int, default=12000)
    ap.add_argument("--unet-steps", type=int, default=6000)
    ap.add_argument("--unet-lr", type=float, default=5e-4)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--ema", type=float, default=0.998)
    ap.add_argument("--threads", type=int, default=2, help="threads of the autoencoder stage (2: 1.9x faster)")
    ap.add_argument("--workers", type=int, default=2, help="processes of the UNet stage, one thread each (2: 1.5x faster)")
    ap.add_argument("--quick", action="store_true", help="a few steps of everything, to test the script")
    args = ap.parse_args()
    if args.quick:
        args.ae_steps, args.ae_full_steps, args.latents, args.unet_steps = 20, 4, 200, 20
    torch.set_num_threads(args.threads)
    torch.use_deterministic_algorithms(True)
    os.makedirs(args.out, exist_ok=True)
    report = {"args": vars(args), "log": [], "torch": torch.__version__}
    t0 = time.time()
    tok = Tokenizer()

    ae = train_autoencoder(args, report)
    ae.eval()
    lat_mean, lat_std, ids = encode_dataset(ae, args, report)
    evaluate_autoencoder(ae, args, report)
    unet, te = run_diffusion(lat_mean, lat_std, ids, args, report, tok)
    torch.set_num_threads(1)  # sampling for the report: this UNet runs best on one thread
    unet.eval()
    te.eval()
    report["train_seconds"] = round(time.time() - t0, 1)
    log(report, f"training done in {report['train_seconds']} s")

    tensors = checkpoint_tensors(ae, unet, te, args.seed + 20)
    meta = {"format": "pt", "ldm.model": args.name, "ldm.trained_by": "tools/train/train.py",
            "ldm.seed": str(args.seed), "ldm.image_size": "64"}  # libldm's default -W/-H
    path = os.path.join(args.out, args.name + ".safetensors")
    write_safetensors(path, tensors, meta)
    torch.save({k: v.detach().clone() for k, v in tensors.items()}, os.path.join(args.out, args.name + "-f32.pt"))
    log(report, f"wrote {path}: {sum(v.numel() for v in tensors.values()) / 1e6:.2f} M values (F16)")

    # From here on the networks carry the F16-rounded weights the file has.
    round_to_f16(ae, unet, te)
    for cfg in (3.0, 7.5):
        res, pics = evaluate(ae, unet, te, tok, report, cfg=cfg, steps=20)
        report[f"match_cfg{cfg}"] = res
        log(report, f"cfg {cfg}: seen {res['seen'][0]}/{res['seen'][1]}, "
                    f"held-out {res['held_out'][0]}/{res['held_out'][1]}")
        save_grid(os.path.join(args.out, f"{args.name}-samples-cfg{cfg}.png"), pics)
    report["total_seconds"] = round(time.time() - t0, 1)
    with open(os.path.join(args.out, args.name + "-report.json"), "w") as f:
        json.dump(report, f, indent=1)
    log(report, f"all done in {report['total_seconds']} s")


if __name__ == "__main__":
    main()

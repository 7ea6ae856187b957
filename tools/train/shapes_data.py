"""The demo model's data: 64x64 pictures of one shape on a background, with English captions.

Procedural and seeded, so the data set is a function of the seed. Every image is drawn at 4x the
resolution and box-filtered down, which gives anti-aliased edges. Captions use the form
"a {colour} {shape} on a {colour} background"; HELD_OUT lists the (colour, shape, background)
combinations that training never shows (the composition test, tests/test_demo_model.c).
"""
import numpy as np

COLOURS = {
    "red": (220, 30, 30), "green": (30, 170, 50), "blue": (30, 60, 220), "yellow": (240, 220, 30),
    "orange": (245, 140, 20), "purple": (140, 40, 180), "white": (245, 245, 245),
    "black": (15, 15, 15), "cyan": (30, 200, 220), "pink": (245, 130, 190),
}
SHAPES = ("circle", "square", "triangle")
NAMES = list(COLOURS)

# 30 of the 270 combinations: every colour is held out three times as the shape's colour (always with
# the same shape: colour i with shape i mod 3) and three times as the background; circles 12 times,
# squares and triangles 9. The same list is in models/README.md and tests/data/demo/eval_prompts.txt.
HELD_OUT = [
    (NAMES[i], SHAPES[i % 3], NAMES[(i + k) % 10])
    for k in (1, 4, 7) for i in range(10)
]


def all_combinations():
    return [(f, s, b) for f in NAMES for s in SHAPES for b in NAMES if f != b]


def train_combinations():
    held = set(HELD_OUT)
    return [c for c in all_combinations() if c not in held]


def caption(fg, shape, bg):
    return f"a {fg} {shape} on a {bg} background"


def render(rng, combos, size=64, ss=4):
    """Draw one image per (fg, shape, bg): uint8 [n, size, size, 3]."""
    n = len(combos)
    big = size * ss
    yy, xx = np.mgrid[0:big, 0:big].astype(np.float32) / ss + 0.5 / ss  # pixel units
    out = np.empty((n, size, size, 3), np.uint8)
    for i, (fg, shape, bg) in enumerate(combos):
        r = rng.uniform(12.0, 22.0)                         # half-size in pixels
        cx = rng.uniform(r + 2, size - r - 2)
        cy = rng.uniform(r + 2, size - r - 2)
        if shape == "circle":
            m = (xx - cx) ** 2 + (yy - cy) ** 2 <= r * r
        elif shape == "square":
            # the circle's bounding box, filled: at f = 8 the corners are what tells a square from a
            # circle, and a square cut to the circle's area (half-side 0.886 r) left them too faint
            m = (np.abs(xx - cx) <= r) & (np.abs(yy - cy) <= r)
        else:                                               # upright isosceles triangle
            top, bottom = cy - r, cy + r
            m = (yy >= top) & (yy <= bottom) & (np.abs(xx - cx) <= (yy - top) * 0.5 * 1.15)
        m = m.reshape(size, ss, size, ss).mean(axis=(1, 3))[..., None]
        fgc = np.array(COLOURS[fg], np.float32) + rng.normal(0, 6, 3)
        bgc = np.array(COLOURS[bg], np.float32) + rng.normal(0, 6, 3)
        # light texture: a gentle gradient and faint pixel noise on the background
        g = rng.normal(0, 6, 3)
        ramp = (np.linspace(-1, 1, size, dtype=np.float32)[None, :, None] if rng.random() < 0.5
                else np.linspace(-1, 1, size, dtype=np.float32)[:, None, None])
        bgimg = bgc + ramp * g + rng.normal(0, 2.0, (size, size, 3))
        img = m * fgc + (1 - m) * bgimg
        out[i] = np.clip(np.rint(img), 0, 255).astype(np.uint8)
    return out


class Stream:
    """An endless seeded stream of (images in [-1, 1] NCHW float32, captions)."""

    def __init__(self, seed, combos=None):
        self.rng = np.random.default_rng(seed)
        self.combos = combos if combos is not None else train_combinations()

    def batch(self, n):
        idx = self.rng.integers(0, len(self.combos), n)
        combos = [self.combos[i] for i in idx]
        img = render(self.rng, combos)
        x = img.astype(np.float32).transpose(0, 3, 1, 2) / 127.5 - 1.0
        return x, [caption(*c) for c in combos]

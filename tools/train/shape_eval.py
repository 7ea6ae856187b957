"""Does a picture show "a {colour} {shape} on a {colour} background"? Colour and shape statistics
only, no learned model. The same rules as tests/shape_eval.c (which the C test uses):

1. background = the median colour of the 2-pixel border, named by the nearest palette colour;
2. shape pixels = the largest 4-connected region of the pixels further than 40 from the background
   colour (RGB distance; the closest palette pair, yellow and orange, is 81 apart), so that stray
   speckles do not count; it must cover 3-70 % of the picture; the shape colour is its median,
   named by the nearest palette colour;
3. shape: over the rows of the shape's bounding box, the mean width of the top quarter against the
   bottom quarter < 0.55 -> triangle; else fill of the bounding box > 0.89 -> square; else circle.
"""
import numpy as np

from shapes_data import COLOURS

PAL = np.array(list(COLOURS.values()), np.float32)
NAMES = list(COLOURS)


def nearest(rgb):
    return NAMES[int(np.argmin(((PAL - rgb) ** 2).sum(1)))]


def largest_region(mask):
    """The largest 4-connected region of a boolean mask."""
    h, w = mask.shape
    label = np.zeros((h, w), np.int32)
    best, best_label, nxt = 0, 0, 0
    for y0, x0 in zip(*np.nonzero(mask)):
        if label[y0, x0]:
            continue
        nxt += 1
        label[y0, x0] = nxt
        stack, size = [(y0, x0)], 0
        while stack:
            y, x = stack.pop()
            size += 1
            for yy, xx in ((y, x - 1), (y, x + 1), (y - 1, x), (y + 1, x)):
                if 0 <= yy < h and 0 <= xx < w and mask[yy, xx] and not label[yy, xx]:
                    label[yy, xx] = nxt
                    stack.append((yy, xx))
        if size > best:
            best, best_label = size, nxt
    return label == best_label if best else np.zeros_like(mask)


def describe(img):
    img = img.astype(np.float32)
    h, w, _ = img.shape
    border = np.concatenate([img[:2].reshape(-1, 3), img[-2:].reshape(-1, 3),
                             img[:, :2].reshape(-1, 3), img[:, -2:].reshape(-1, 3)])
    bg = np.median(border, axis=0)
    mask = largest_region(np.sqrt(((img - bg) ** 2).sum(2)) > 40)
    area = int(mask.sum())
    if area < 0.03 * h * w or area > 0.70 * h * w:
        return nearest(bg), None, None
    fg = np.median(img[mask], axis=0)
    rows = np.nonzero(mask.any(1))[0]
    cols = np.nonzero(mask.any(0))[0]
    y0, y1, x0, x1 = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
    widths = mask[y0:y1].sum(1).astype(np.float32)
    q = max(1, (y1 - y0) // 4)
    ratio = widths[:q].mean() / max(1.0, widths[-q:].mean())
    fill = area / float((y1 - y0) * (x1 - x0))
    shape = "triangle" if ratio < 0.55 else ("square" if fill > 0.89 else "circle")
    return nearest(bg), nearest(fg), shape


def matches(img, fg, shape, bg):
    b, f, s = describe(img)
    return (f, s, b) == (fg, shape, bg)

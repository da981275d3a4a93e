"""The canonical input form, and the one function that maps any bitmap into it.

Every source draws the same doodle differently: the embedded sample is top-left aligned with ~1 px
strokes and a 28 px long side; Google's `numpy_bitmap` files are centred with ~2 px anti-aliased
strokes and a ~26 px long side; a canvas or a GAN produce whatever they produce. A model trained on
one rendering fails on another (README.md, "How it works"). So the models never see a source's
rendering, only this form:

    28 x 28 float32 in [0, 1], ink bright on black;
    the drawing's centreline scaled uniformly so its long side spans ~24 px, centred on its box;
    strokes re-drawn with one round brush, STROKE_WIDTH (1.5) px wide, anti-aliased at its edge.

`to_canonical` gets there from any bitmap: crop to ink, scale and centre onto a 4x canvas,
threshold, thin to a 1-px centreline (skeletonize), re-draw it with the brush.
Re-drawing the centreline is what removes stroke weight and anti-aliasing as a difference between
sources. `drawai.strokes` renders vector strokes through the same `draw_centreline`.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from skimage.morphology import skeletonize

from drawai import seeds

SIZE = 28  # the models' input is SIZE x SIZE
INK_LONG_SIDE = 25.0  # the source's ink box is scaled to this (its centreline ends up ~24 px)
STROKE_WIDTH = 1.5  # brush diameter in output pixels: Google's numpy_bitmap lines are 16/304*28 = 1.47
SUPERSAMPLE = 4  # the centreline is found on a canvas SUPERSAMPLE times finer
# A pixel is ink at >= this fraction of the drawing's brightest pixel, about where an anti-aliased line's edge is:
# lower, thick strokes' soft edges fatten the lines (docs/experiments/classifier.md, "The ink threshold").
INK_THRESHOLD = 0.45
# A vector drawing (no stroke width) is scaled so its centreline spans this; a bitmap's ink box
# spans INK_LONG_SIDE, and its centreline ends up ~0.5 px shorter (the ink at INK_THRESHOLD reaches
# ~0.25 px past the centreline of the sample's thin strokes): measured, strokes rendered at 24.5
# correlate best with to_canonical of the same strokes drawn like the sample (tests/test_strokes.py).
CENTRELINE_LONG_SIDE = INK_LONG_SIDE - 0.5
MIN_PEAK = 0.1  # a bitmap whose brightest pixel is below this (of full scale) is empty
MAX_INK_FRACTION = 0.8  # more ink than this is not a line drawing (inverted colours, a photo): above the sample's most


class BadBitmapError(ValueError):
    """A bitmap that cannot be read as a drawing: wrong shape, dtype, range, NaN."""


class EmptyDrawingError(BadBitmapError):
    """A bitmap with no ink in it."""


def as_float_images(images) -> tuple[np.ndarray, bool]:
    """Check and convert to float32 (N, H, W) in [0, 1]; also says whether one image was given.

    Accepts (H, W), (N, H, W), (784,) or (N, 784); bool, uint8 (0-255), other integers in 0-255,
    or floats in [0, 1]. Anything else is a BadBitmapError that says what was wrong.
    """
    if isinstance(images, torch.Tensor):
        images = images.detach().cpu().numpy()
    arr = np.asarray(images)
    if arr.dtype == object or not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
        raise BadBitmapError(f"a bitmap must be a numeric array, got dtype {arr.dtype}")
    if arr.ndim == 1 and arr.size == SIZE * SIZE:
        arr = arr.reshape(SIZE, SIZE)
    elif arr.ndim == 2 and arr.shape[1] == SIZE * SIZE:
        arr = arr.reshape(-1, SIZE, SIZE)
    single = arr.ndim == 2
    if single:
        arr = arr[None]
    if arr.ndim != 3 or arr.shape[0] == 0 or min(arr.shape[1:]) < 8:
        raise BadBitmapError(
            f"expected a drawing of shape (28, 28) (or (H, W) with H, W >= 8), a batch (N, 28, 28), "
            f"or flattened (784,) / (N, 784); got shape {np.shape(images)}")
    if arr.dtype == bool:
        return arr.astype(np.float32), single
    if np.issubdtype(arr.dtype, np.floating):
        if not np.isfinite(arr).all():
            raise BadBitmapError("the bitmap has NaN or infinite values")
        lo, hi = float(arr.min()), float(arr.max())
        if lo < -1e-3 or hi > 1 + 1e-3:
            hint = " (divide 0-255 values by 255)" if hi <= 255 and lo >= 0 else ""
            raise BadBitmapError(f"float bitmaps must be in [0, 1], got values in [{lo:.3g}, {hi:.3g}]{hint}")
        return np.clip(arr, 0, 1).astype(np.float32), single
    lo, hi = int(arr.min()), int(arr.max())
    if lo < 0 or hi > 255:
        raise BadBitmapError(f"integer bitmaps must be in 0-255, got values in [{lo}, {hi}]")
    return arr.astype(np.float32) / 255.0, single


def ink_box(image: np.ndarray, index: int | None = None) -> tuple[float, float, float, float]:
    """The ink's bounding box (y0, y1, x0, x1) in pixel-edge coordinates; raises on empty or inverted."""
    where = "" if index is None else f" (drawing {index} of the batch)"
    peak = float(image.max())
    if peak < MIN_PEAK:
        raise EmptyDrawingError(f"the drawing is empty: no ink{where}")
    ink = image >= INK_THRESHOLD * peak
    if ink.mean() > MAX_INK_FRACTION:
        raise BadBitmapError(
            f"{ink.mean():.0%} of the bitmap is ink{where}: draw-ai expects bright strokes on a dark "
            "background; if yours is dark on light, pass 1 - image (floats) or 255 - image (uint8)")
    rows, cols = np.flatnonzero(ink.any(1)), np.flatnonzero(ink.any(0))
    return rows[0], rows[-1] + 1.0, cols[0], cols[-1] + 1.0


def readable(images: np.ndarray) -> np.ndarray:
    """Indices of the float images (N, 28, 28) that `ink_box` accepts: not empty, not mostly ink."""
    keep = []
    for i, image in enumerate(images):
        try:
            ink_box(image)
        except BadBitmapError:
            continue
        keep.append(i)
    return np.array(keep, dtype=np.int64)


def draw_centreline(points: list[np.ndarray]) -> np.ndarray:
    """Centreline points, one (K, 2) array of (y, x) in output pixels per drawing -> (N, 28, 28).

    The one place where canonical strokes get their weight and anti-aliasing: every point is a round
    brush dab of diameter STROKE_WIDTH whose edge is anti-aliased by distance (coverage falls from 1 to
    0 over the pixel at the brush edge). Points must be dense (<= 0.5 px apart) to draw a solid line.
    """
    radius = STROKE_WIDTH / 2
    offsets = np.array([(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1)])  # enough for radius <= 1
    counts = [len(p) for p in points]
    pts = np.concatenate([np.asarray(p, dtype=np.float32).reshape(-1, 2) for p in points])
    owner = np.repeat(np.arange(len(points)), counts)
    cells = np.floor(pts)[:, None, :] + offsets[None]  # (K, 9, 2) pixel indices near each point
    dist = np.hypot(*(cells + 0.5 - pts[:, None, :]).transpose(2, 0, 1))
    value = np.clip(radius + 0.5 - dist, 0, 1)
    inside = ((cells >= 0) & (cells < SIZE)).all(-1) & (value > 0)
    flat = (owner[:, None] * SIZE * SIZE + cells[..., 0] * SIZE + cells[..., 1]).astype(np.int64)
    out = torch.zeros(len(points) * SIZE * SIZE)
    out.scatter_reduce_(0, torch.from_numpy(flat[inside]), torch.from_numpy(value[inside].astype(np.float32)),
                        reduce="amax")
    return out.reshape(len(points), SIZE, SIZE).numpy()


def to_canonical(images) -> np.ndarray:
    """Any bitmap(s) -> the canonical form: (28, 28) float32 for one image, (N, 28, 28) for a batch."""
    x, single = as_float_images(images)
    out = np.concatenate([_canonical_chunk(x[i:i + 256], None if single else i) for i in range(0, len(x), 256)])
    return out[0] if single else out


def _canonical_chunk(x: np.ndarray, first: int | None) -> np.ndarray:
    where = (lambda i: None) if first is None else (lambda i: first + i)  # noqa: E731 (batch index in errors)
    boxes = [ink_box(img, where(i)) for i, img in enumerate(x)]
    scales = [INK_LONG_SIDE / max(y1 - y0, x1 - x0) for y0, y1, x0, x1 in boxes]  # output px per source px
    shrink = int(np.ceil(1 / (min(scales) * SUPERSAMPLE)))
    if shrink > 1:  # a big bitmap (a 256-px canvas): shrink it first so thin lines are not skipped; by the
        # maximum, not the mean, which would dim a 3-px line to below INK_THRESHOLD where it runs diagonally
        x = F.max_pool2d(torch.from_numpy(x)[:, None], shrink, ceil_mode=True)[:, 0].numpy()
        boxes = [ink_box(img, where(i)) for i, img in enumerate(x)]
        scales = [INK_LONG_SIDE / max(y1 - y0, x1 - x0) for y0, y1, x0, x1 in boxes]
    n, h, w = x.shape
    fine = SIZE * SUPERSAMPLE
    # Where each fine output pixel samples the source, in grid_sample's normalised coordinates
    # (align_corners=False: -1 and 1 are the outer edges): scale about the ink box's centre.
    out = (np.arange(fine, dtype=np.float32) + 0.5) / fine * 2 - 1
    box = np.array(boxes, dtype=np.float32)
    s = np.array(scales, dtype=np.float32)[:, None]
    gx = out[None] * SIZE / (s * w) + ((box[:, 2:3] + box[:, 3:4]) / w - 1)
    gy = out[None] * SIZE / (s * h) + ((box[:, 0:1] + box[:, 1:2]) / h - 1)
    grid = torch.stack(torch.broadcast_tensors(torch.from_numpy(gx)[:, None, :], torch.from_numpy(gy)[:, :, None]), -1)
    placed = F.grid_sample(torch.from_numpy(x)[:, None], grid, mode="bilinear", align_corners=False)[:, 0].numpy()
    ink = placed >= INK_THRESHOLD * x.reshape(n, -1).max(1)[:, None, None]
    # Skeleton pixels of the fine canvas, as (y, x) centres in output pixels.
    points = [(np.argwhere(skeletonize(m)) + 0.5) / SUPERSAMPLE for m in ink]
    for i, p in enumerate(points):
        if not len(p):
            at = "" if first is None else f" (drawing {first + i})"
            raise EmptyDrawingError(f"no strokes left after scaling{at}")
    return draw_centreline(points)


SHIFT_SEED = 0  # the rendering-shifted test's jitter of size and stroke width: one seed, so its figures compare


def rendering_shifted(drawings):
    """The rendering-shifted test: `drawings` (a `data.Drawings`) re-rendered like Google's numpy_bitmap files
    (`numpy_bitmap_style`, seed SHIFT_SEED), as every notebook, job and benchmark scores it."""
    from drawai.data import Drawings

    return Drawings(numpy_bitmap_style(drawings.images, seed=SHIFT_SEED), drawings.labels, drawings.categories,
                    "numpy_bitmap style", drawings.checksum)


def numpy_bitmap_style(images, long_side: float = 26.0, stroke: float = 2.0, seed: int | None = None) -> np.ndarray:
    """Re-render bitmaps the way Google's `numpy_bitmap` files look: centred, long side ~26 px,
    ~2 px anti-aliased strokes. Returns uint8 (N, 28, 28).

    Deliberately a different code path from `to_canonical` (PIL resampling and dilation, no
    centreline), so the robustness test measures a real rendering shift. With `seed`, long side and
    stroke width are jittered (+-10 %) per drawing.
    """
    from PIL import Image, ImageFilter

    x, single = as_float_images(images)
    rng = seeds.rng(seed)
    k = 8  # work at 8x
    out = np.zeros((len(x), SIZE, SIZE), dtype=np.uint8)
    for i, img in enumerate(x):
        y0, y1, x0, x1 = (int(v) for v in ink_box(img, i))
        crop = Image.fromarray((img[y0:y1, x0:x1] * 255).astype(np.uint8))
        jitter = rng.uniform(0.9, 1.1, 2) if seed is not None else (1.0, 1.0)
        scale = long_side * jitter[0] * k / max(crop.size)
        size = (max(1, round(crop.size[0] * scale)), max(1, round(crop.size[1] * scale)))
        big = crop.resize(size, Image.Resampling.BILINEAR)
        # Thicken the scaled stroke to `stroke` output px: a ~1 px source stroke, bilinearly
        # upscaled, is already ~1.6 * scale fine px wide; dilate by the rest, then soften.
        grow = max(0, int(round(stroke * jitter[1] * k - 1.6 * scale)))
        if grow >= 2:
            big = big.filter(ImageFilter.MaxFilter(grow // 2 * 2 + 1))
        canvas = Image.new("L", (SIZE * k, SIZE * k))
        canvas.paste(big, ((SIZE * k - size[0]) // 2, (SIZE * k - size[1]) // 2))
        canvas = canvas.filter(ImageFilter.GaussianBlur(k / 8))
        out[i] = np.asarray(canvas.resize((SIZE, SIZE), Image.Resampling.BOX))
    return out[0] if single else out

"""Vector drawings (strokes) -> Google's simplified form -> the canonical 28x28 bitmap.

A drawing is a list of strokes; a stroke is the pen's path between pressing and lifting it. Two
layouts are accepted:

    points (canvas order):  [[(x0, y0), (x1, y1), ...], ...]     one (K, 2) array per stroke
    Google's ndjson:        [[[x0, x1, ...], [y0, y1, ...]], ...] one (2, K) array per stroke
                            (the raw files' third row, time, is ignored); a whole ndjson record,
                            a dict with a "drawing" key, is accepted too.

`layout="auto"` tells them apart by shape. The only ambiguous drawings are those whose every stroke
has two or three points (a (2, 2) array is both); they are read as points. Pass `layout="ndjson"` for
those. y grows downwards in both (canvas and Google alike), so it is the bitmap's row.

`simplify` is Google's preprocessing of the `simplified` dataset; `render_strokes` draws its
centreline through `bitmaps.draw_centreline`, the same brush that `bitmaps.to_canonical` uses, so a
drawing looks the same to the models whether it arrives as strokes or as a bitmap.
`traced_strokes` goes the other way, for drawings that have no strokes: a bitmap's skeleton walked into the
strokes a DrawingPad would send. `save_drawings`, `load_drawings` and `append_drawing` keep drawings made on the
DrawingPad in a small file (strokes, canonical bitmaps, labels).
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from skimage.morphology import skeletonize

from drawai import categories as cats
from drawai.bitmaps import CENTRELINE_LONG_SIDE, SIZE, EmptyDrawingError, draw_centreline, to_canonical
from drawai.data import Drawings
from drawai.io import atomic_write

SIMPLIFIED_RANGE = 255.0  # Google's simplified drawings span 0-255 on their long side
RDP_EPSILON = 2.0  # Google's Ramer-Douglas-Peucker tolerance, on that 0-255 scale
SAMPLE_SPACING = 0.25  # output px between brush dabs along a segment (draw_centreline needs <= 0.5)

__all__ = ["BadStrokesError", "EmptyDrawingError", "parse_strokes", "rdp", "simplify", "render_strokes", "render_many",
           "traced_strokes", "SavedDrawings", "save_drawings", "load_drawings", "append_drawing"]


class BadStrokesError(ValueError):
    """Strokes that cannot be read as a drawing: wrong nesting or shape, not numbers, NaN or infinity."""


def parse_strokes(strokes, layout: str = "auto") -> list[np.ndarray]:
    """Check strokes in either layout and return them as a list of float64 (K, 2) arrays of (x, y).

    Empty strokes are dropped (they carry no ink); a drawing with no points at all is an
    EmptyDrawingError. NaN or infinite coordinates are a BadStrokesError rather than being dropped:
    no drawing source produces them, so they mean a bug upstream, and silently drawing what is left
    would hide it.
    """
    if layout not in ("auto", "points", "ndjson"):
        raise ValueError(f"layout must be 'auto', 'points' or 'ndjson', got {layout!r}")
    if isinstance(strokes, dict):
        if "drawing" not in strokes:
            raise BadStrokesError(f"a dict of strokes must be a Google ndjson record with a 'drawing' key, "
                                  f"got keys {sorted(strokes)}")
        strokes, layout = strokes["drawing"], "ndjson"
    if isinstance(strokes, str | bytes) or not hasattr(strokes, "__len__"):
        raise BadStrokesError(f"strokes must be a list of strokes, got {type(strokes).__name__}")
    arrays = []
    for i, stroke in enumerate(strokes):
        try:
            a = np.asarray(stroke, dtype=np.float64)
        except (TypeError, ValueError) as e:
            raise BadStrokesError(f"stroke {i} is not an array of numbers ({e})") from None
        if a.size == 0:
            continue
        if a.ndim != 2:
            raise BadStrokesError(
                f"stroke {i} has shape {a.shape}: a stroke is a list of (x, y) points, shape (K, 2), or "
                "Google's [[xs], [ys]], shape (2, K); a single stroke still needs wrapping in a list")
        arrays.append((i, a))
    if not arrays:
        raise EmptyDrawingError("the drawing is empty: no strokes with points in them")

    points_ok = all(a.shape[1] == 2 for _, a in arrays)
    ndjson_ok = all(a.shape[0] in (2, 3) for _, a in arrays)
    if layout == "auto":
        layout = "points" if points_ok else "ndjson" if ndjson_ok else "mixed"
    if layout == "mixed" or (layout == "points" and not points_ok) or (layout == "ndjson" and not ndjson_ok):
        shapes = [a.shape for _, a in arrays][:5]
        raise BadStrokesError(
            f"strokes have shapes {shapes}{'...' if len(arrays) > 5 else ''}: expected every stroke as (x, y) "
            "points, shape (K, 2), or every stroke as Google's [[xs], [ys](, [ts])], shape (2 or 3, K)")
    out = [a if layout == "points" else a[:2].T for _, a in arrays]
    for (i, _), a in zip(arrays, out, strict=True):
        if not np.isfinite(a).all():
            raise BadStrokesError(f"stroke {i} has NaN or infinite coordinates")
    return out


def rdp(strokes: list[np.ndarray], epsilon: float = RDP_EPSILON) -> list[np.ndarray]:
    """Ramer-Douglas-Peucker on every stroke: the fewest of its points (endpoints always kept) that
    stay within `epsilon` of the original line.

    Distances are to the segment, not its infinite line (a closed stroke's endpoints coincide).
    All strokes' pending intervals are split together, one vectorised round per level of the
    usual recursion, so a drawing costs a few numpy calls per level rather than per point kept.
    """
    lengths = np.array([len(p) for p in strokes])
    x, y = np.concatenate(strokes).T
    ends = np.cumsum(lengths)
    keep = np.zeros(len(x), dtype=bool)
    keep[ends - lengths] = keep[ends - 1] = True
    i, j = ends - lengths, ends - 1  # the intervals still to split: (first, last) point indices
    while True:
        pending = j - i >= 2  # an interval with no interior point is done
        i, j = i[pending], j[pending]
        if len(i) == 0:
            break
        inner = j - i - 1
        offsets = np.cumsum(inner) - inner  # where each interval's interior starts in the flat arrays
        owner = np.repeat(np.arange(len(i)), inner)
        k = np.arange(inner.sum()) + (i + 1 - offsets)[owner]  # the interior points' indices
        ax, ay, abx, aby = x[i][owner], y[i][owner], (x[j] - x[i])[owner], (y[j] - y[i])[owner]
        length2 = abx * abx + aby * aby
        t = np.clip(((x[k] - ax) * abx + (y[k] - ay) * aby) / np.where(length2 > 0, length2, 1), 0, 1)
        d2 = (x[k] - ax - t * abx) ** 2 + (y[k] - ay - t * aby) ** 2
        far = np.maximum.reduceat(d2, offsets)
        # Split at the first point at the maximum distance. "At" allows for rounding: symmetric shapes
        # tie, and which of the tied points wins must not depend on where the drawing was on the page.
        at_max = np.flatnonzero(d2 >= far[owner] * (1 - 1e-9))
        first = np.ones(len(at_max), dtype=bool)
        first[1:] = owner[at_max][1:] != owner[at_max][:-1]
        split = far > epsilon * epsilon
        mid = k[at_max[first]][split]
        keep[mid] = True
        i, j = np.concatenate([i[split], mid]), np.concatenate([mid, j[split]])
    return [p[m] for p, m in zip(strokes, np.split(keep, ends[:-1]), strict=True)]


def simplify(strokes, layout: str = "auto") -> list[np.ndarray]:
    """Google's preprocessing for the `simplified` dataset: align to the minimum (0, 0), scale uniformly
    so the long side spans 0-255, Ramer-Douglas-Peucker with epsilon 2.0. Returns (K, 2) float arrays.

    Differences from Google, all below what a 28 px rendering can show (epsilon is 0.18 output px):
    coordinates stay floats (Google rounds them to integers); no 1-px resampling before RDP (it
    only adds points on the lines, which RDP takes out again); RDP measures the distance to the
    segment, not its infinite line, so closed strokes keep their shape.
    """
    pts = parse_strokes(strokes, layout)
    # Divide by the largest magnitude first: max - min of coordinates near 1e308 would overflow.
    magnitude = max(float(np.abs(p).max()) for p in pts)
    if magnitude > 0:
        pts = [p / magnitude for p in pts]
    lo = np.min([p.min(0) for p in pts], axis=0)
    hi = np.max([p.max(0) for p in pts], axis=0)
    extent = float((hi - lo).max())
    scale = SIMPLIFIED_RANGE / extent if extent > 0 else 0.0  # a drawing that is one point stays one point
    return rdp([(p - lo) * scale for p in pts])


def _centreline_points(strokes, layout: str) -> np.ndarray:
    """Simplify, place on the 28x28 canvas (long side CENTRELINE_LONG_SIDE, box centred), sample densely.

    Returns (M, 2) points as (y, x) in output pixels, pixel-edge coordinates (the canvas centre is 14.0).
    """
    pts = simplify(strokes, layout)
    lo = np.min([p.min(0) for p in pts], axis=0)
    hi = np.max([p.max(0) for p in pts], axis=0)
    scale = CENTRELINE_LONG_SIDE / SIMPLIFIED_RANGE  # simplify made the long side exactly 0-255 (or 0)
    placed = [(p - (lo + hi) / 2) * scale + SIZE / 2 for p in pts]
    # Every segment sampled at <= SAMPLE_SPACING, plus every vertex (that also makes a lone point a dot).
    starts = np.concatenate([p[:-1] for p in placed])
    steps = np.concatenate([p[1:] - p[:-1] for p in placed])
    # (- 1e-6: a segment an exact multiple of the spacing long must not gain a step from rounding)
    n = np.maximum(1, np.ceil(np.hypot(*steps.T) / SAMPLE_SPACING - 1e-6)).astype(np.int64)
    segment = np.repeat(np.arange(len(n)), n)
    t = (np.arange(n.sum()) - np.repeat(np.cumsum(n) - n, n)) / np.repeat(n, n)
    samples = starts[segment] + t[:, None] * steps[segment]
    return np.concatenate([samples, *placed])[:, ::-1]  # (x, y) -> (row, col)


def render_strokes(strokes, layout: str = "auto") -> np.ndarray:
    """One drawing's strokes -> (28, 28) float32 in the canonical form (see drawai.bitmaps)."""
    return draw_centreline([_centreline_points(strokes, layout)])[0]


def render_many(drawings, layout: str = "auto") -> np.ndarray:
    """Many drawings' strokes -> (N, 28, 28) float32; errors name the drawing's index."""
    points = []
    for i, strokes in enumerate(drawings):
        try:
            points.append(_centreline_points(strokes, layout))
        except ValueError as e:  # BadStrokesError, EmptyDrawingError: same type, with the index
            raise type(e)(f"drawing {i}: {e}") from None
    if not points:
        return np.zeros((0, SIZE, SIZE), dtype=np.float32)
    return draw_centreline(points)


# --- strokes traced from a bitmap ------------------------------------------------------------------

PAD_CANVAS, PAD_SPACING = 280, 4.0  # the DrawingPad's default size; pointer events a few pixels apart


def traced_strokes(image, canvas: int = PAD_CANVAS, spacing: float = PAD_SPACING) -> list[np.ndarray]:
    """A bitmap drawing as the DrawingPad would send it: strokes of (x, y) points on a `canvas`-px pad,
    about `spacing` px apart.

    The embedded sample has no strokes, so they are traced: the skeleton of the drawing's canonical
    bitmap enlarged to the pad, walked pixel by pixel, each walk starting at a line's end.
    """
    small = torch.from_numpy(to_canonical(image))[None, None]
    big = F.interpolate(small, size=(canvas, canvas), mode="bilinear", align_corners=False)[0, 0].numpy()
    pixels = [tuple(p) for p in np.argwhere(skeletonize(big >= 0.5)).tolist()]
    todo = set(pixels)
    steps = [(0, 1), (1, 0), (0, -1), (-1, 0), (1, 1), (1, -1), (-1, 1), (-1, -1)]  # straight before diagonal
    degree = {p: sum((p[0] + dy, p[1] + dx) in todo for dy, dx in steps) for p in pixels}
    strokes = []
    for start in sorted(pixels, key=lambda p: (degree[p], p)):  # line ends (degree 1) first
        if start not in todo:
            continue
        path, p = [start], start
        todo.discard(p)
        while True:
            p = next(((p[0] + dy, p[1] + dx) for dy, dx in steps if (p[0] + dy, p[1] + dx) in todo), None)
            if p is None:
                break
            todo.discard(p)
            path.append(p)
        if len(path) >= 3 or not strokes:  # 1-2 pixel walks are skeleton spurs, not strokes
            keep = path[::max(1, round(spacing))] + ([path[-1]] if (len(path) - 1) % round(spacing) else [])
            strokes.append(np.array(keep, dtype=np.float64)[:, ::-1] + 0.5)  # (row, col) -> (x, y) centres
    return strokes


# --- stroke drawings on disk -----------------------------------------------------------------------
# One .npz, no pickle: the ragged strokes are flattened into one points array plus lengths, labels are
# category names (so the file does not depend on any model's class order), and the canonical bitmaps
# are stored as rendered, so a reader needs nothing else to train on them.

@dataclass
class SavedDrawings:
    strokes: list[list[np.ndarray]]  # per drawing, its strokes as (K, 2) float arrays of (x, y)
    bitmaps: np.ndarray  # (N, 28, 28) float32, render_many(strokes)
    labels: list[str]  # category names

    def __len__(self) -> int:
        return len(self.labels)

    def to_drawings(self, categories="all") -> Drawings:
        """As `data.Drawings` (uint8 images, labels indexing `categories`), e.g. to train on them."""
        names = tuple(cats.resolve(categories))
        unknown = sorted(set(self.labels) - set(names))
        if unknown:
            raise ValueError(f"labels {unknown} are not among the {len(names)} categories {names[:5]}...")
        images = np.rint(self.bitmaps * 255).astype(np.uint8)
        labels = np.array([names.index(n) for n in self.labels], dtype=np.int64)
        return Drawings(images.reshape(-1, SIZE, SIZE), labels, names, "drawing pad (strokes, canonical form)")


def save_drawings(path, drawings, labels) -> Path:
    """Write drawings (each a list of strokes) and their category names to `path` (.npz), atomically."""
    labels = [cats.check_name(n) for n in labels]
    if len(labels) != len(drawings):
        raise ValueError(f"{len(drawings)} drawings but {len(labels)} labels")
    parsed = []
    for i, d in enumerate(drawings):
        try:
            parsed.append(parse_strokes(d))
        except ValueError as e:
            raise type(e)(f"drawing {i}: {e}") from None
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    arrays = {
        "format": np.array("drawai strokes 1"),
        "points": np.concatenate([np.zeros((0, 2))] + [p for d in parsed for p in d]),  # float64, as drawn
        "stroke_lengths": np.array([len(p) for d in parsed for p in d], dtype=np.int64),
        "drawing_strokes": np.array([len(d) for d in parsed], dtype=np.int64),
        "bitmaps": render_many(parsed, layout="points"),
        "labels": np.array(labels, dtype=str),
    }
    def write(tmp: Path) -> None:
        with open(tmp, "wb") as f:  # a file object: numpy would add ".npz" to a name without it
            np.savez_compressed(f, **arrays)

    return atomic_write(path, write)


def load_drawings(path) -> SavedDrawings:
    """Read a file written by `save_drawings`; a file that is not one is a ValueError saying so."""
    try:
        with np.load(path, allow_pickle=False) as f:  # an .npy gives an array, which has no `with`
            arrays = {k: f[k] for k in f.files}
    except (OSError, ValueError, TypeError, zipfile.BadZipFile) as e:  # missing, not an npz, pickles
        raise ValueError(f"cannot read drawings from {path}: {e}") from None
    needed = {"format", "points", "stroke_lengths", "drawing_strokes", "bitmaps", "labels"}
    if str(arrays.get("format")) != "drawai strokes 1" or needed - arrays.keys():
        raise ValueError(f"{path} is not a drawai strokes file (one written by strokes.save_drawings)")
    points, stroke_lengths, drawing_strokes = arrays["points"], arrays["stroke_lengths"], arrays["drawing_strokes"]
    bitmaps, labels = arrays["bitmaps"], [str(n) for n in arrays["labels"]]
    if (stroke_lengths.sum() != len(points) or drawing_strokes.sum() != len(stroke_lengths)
            or not len(drawing_strokes) == len(bitmaps) == len(labels)):
        raise ValueError(f"{path} is inconsistent (its counts do not add up): truncated or edited?")
    flat = np.split(points, np.cumsum(stroke_lengths)[:-1]) if len(points) else []
    bounds = np.concatenate([[0], np.cumsum(drawing_strokes)])
    strokes = [flat[a:b] for a, b in zip(bounds[:-1], bounds[1:], strict=True)]
    return SavedDrawings(strokes, bitmaps.astype(np.float32), labels)


def append_drawing(path, drawing, label: str) -> int:
    """Add one drawing to the file at `path` (created if missing); returns how many it now holds."""
    path = Path(path)
    old = load_drawings(path) if path.exists() else SavedDrawings([], np.zeros((0, SIZE, SIZE), np.float32), [])
    save_drawings(path, old.strokes + [drawing], old.labels + [label])
    return len(old) + 1

import numpy as np
import pytest

from drawai import bitmaps
from drawai.data import load_sample


@pytest.fixture(scope="module")
def sample():
    return load_sample("classic10").images[::20]  # 50 real drawings


def corr(a, b):
    return np.corrcoef(a.ravel(), b.ravel())[0, 1]


def test_canonical_form(sample):
    c = bitmaps.to_canonical(sample)
    assert c.shape == (50, 28, 28) and c.dtype == np.float32 and 0 <= c.min() and c.max() <= 1
    for img in c:
        ys, xs = np.nonzero(img > 0.3)
        extent = max(ys.max() - ys.min(), xs.max() - xs.min()) + 1
        assert 22 <= extent <= 27  # long side ~24-25 px of ink
        assert abs((ys.min() + ys.max() + 1) / 2 - 14) <= 1.0  # centred on its box
        assert abs((xs.min() + xs.max() + 1) / 2 - 14) <= 1.0
    one = bitmaps.to_canonical(sample[0])
    assert one.shape == (28, 28)
    np.testing.assert_allclose(one, c[0], atol=1e-6)


def test_position_and_scale_do_not_matter(sample):
    """The same drawing placed or sized differently on a larger canvas lands in the same canonical form."""
    img = sample[3]
    big = np.zeros((56, 56), np.uint8)
    big[20:48, 5:33] = img  # moved
    assert corr(bitmaps.to_canonical(big), bitmaps.to_canonical(img)) > 0.97
    double = np.kron(img, np.ones((2, 2), np.uint8))  # twice the size, twice the stroke
    assert corr(bitmaps.to_canonical(double), bitmaps.to_canonical(img)) > 0.9


def test_renderings_agree_after_canonicalisation(sample):
    """Google's numpy_bitmap look and the sample's look differ a lot raw, little after to_canonical."""
    shifted = bitmaps.numpy_bitmap_style(sample)
    raw = np.mean([corr(a, b) for a, b in zip(sample, shifted)])
    canon = np.mean([corr(a, b) for a, b in zip(bitmaps.to_canonical(sample), bitmaps.to_canonical(shifted))])
    assert raw < 0.5 < 0.8 < canon


def test_numpy_bitmap_style_looks_like_google(sample):
    nb = bitmaps.numpy_bitmap_style(sample)
    assert nb.dtype == np.uint8 and nb.shape == sample.shape
    for img in nb:
        ys, xs = np.nonzero(img > 40)
        assert 24 <= max(np.ptp(ys), np.ptp(xs)) + 1 <= 28
        assert abs((ys.min() + ys.max() + 1) / 2 - 14) <= 1.5
    # thicker, anti-aliased strokes: more ink pixels and many grey levels
    assert (nb > 40).mean() > 1.3 * (sample > 40).mean() * (26 / 28) ** 2
    assert len(np.unique(nb)) > 100


def test_canonical_is_nearly_a_fixed_point(sample):
    c = bitmaps.to_canonical(sample)
    cc = bitmaps.to_canonical(c)
    assert np.mean([corr(a, b) for a, b in zip(c, cc)]) > 0.8


def test_accepted_inputs(sample):
    img = sample[0]
    ref = bitmaps.to_canonical(img)
    for variant in (img.astype(np.float64) / 255, img.reshape(784), img.astype(np.int32), img.tolist()):
        np.testing.assert_allclose(bitmaps.to_canonical(variant), ref, atol=1e-5)
    assert bitmaps.to_canonical(img > 128).shape == (28, 28)
    assert bitmaps.to_canonical(sample[:3].reshape(3, 784)).shape == (3, 28, 28)


@pytest.mark.parametrize("bad, match", [
    (np.zeros((28, 28)), "empty"),
    (np.full((28, 28), 0.02), "empty"),
    (np.ones((28, 28)), "ink"),
    (np.full((28, 28), np.nan), "NaN"),
    (np.full((28, 28), 3.0), r"\[0, 1\]"),
    (np.full((28, 28), 300), "0-255"),
    (np.zeros((3, 4)), "shape"),
    (np.zeros((2, 3, 28, 28)), "shape"),
    (np.zeros((0, 28, 28)), "shape"),
    (np.array(["a"] * 784), "numeric"),
])
def test_bad_bitmaps(bad, match):
    with pytest.raises(bitmaps.BadBitmapError, match=match):
        bitmaps.to_canonical(bad)


def test_error_names_the_bad_drawing_in_a_batch(sample):
    batch = sample[:5].copy()
    batch[3] = 0
    with pytest.raises(bitmaps.EmptyDrawingError, match="drawing 3"):
        bitmaps.to_canonical(batch)


def test_inverted_drawing_is_explained(sample):
    with pytest.raises(bitmaps.BadBitmapError, match="255 - image"):
        bitmaps.to_canonical(255 - sample[0])


def test_draw_centreline_line():
    # a horizontal centreline through the centres of row 14, from x=2 to x=26: a 1.5 px anti-aliased line
    xs = np.arange(2, 26.01, 0.25)
    img = bitmaps.draw_centreline([np.stack([np.full_like(xs, 14.5), xs], 1)])[0]
    assert img[14, 3:25].min() == 1.0
    np.testing.assert_allclose(img[[13, 15], 3:25], 0.25)  # the brush edge covers a quarter of each neighbour
    assert img[:12].max() == 0 and img[17:].max() == 0 and img[:, 0].max() == 0
    # on a pixel boundary it is shared evenly between the two rows
    img = bitmaps.draw_centreline([np.stack([np.full_like(xs, 14.0), xs], 1)])[0]
    np.testing.assert_allclose(img[[13, 14], 3:25], 0.75)


def test_thin_lines_on_a_big_canvas_survive():
    """A 2-px line on a 256-px canvas (a screen capture) is averaged down, not skipped by sampling."""
    from PIL import Image, ImageDraw

    im = Image.new("L", (256, 256))
    ImageDraw.Draw(im).line([(30, 40), (220, 200)], fill=255, width=2)
    c = bitmaps.to_canonical(np.asarray(im))
    assert c.max() > 0.9 and 20 < (c > 0.5).sum() < 80
    ys, xs = np.nonzero(c > 0.5)
    assert np.ptp(xs) >= 24 and np.corrcoef(ys, xs)[0, 1] > 0.98  # one unbroken diagonal, full length


def test_readable_leaves_out_empty_and_mostly_ink_images():
    images = np.zeros((4, 28, 28), np.float32)
    images[1, 10:12, 5:20] = 1  # a line
    images[2] = 1  # all ink
    images[3, 3:25, 14] = 0.8  # another line
    assert bitmaps.readable(images).tolist() == [1, 3]


def test_the_rendering_shifted_test_is_one_seeded_rendering_with_the_same_labels(classic10):
    test = classic10[1]
    shifted = bitmaps.rendering_shifted(test)
    assert np.array_equal(shifted.images, bitmaps.numpy_bitmap_style(test.images, seed=bitmaps.SHIFT_SEED))
    assert np.array_equal(shifted.labels, test.labels) and shifted.categories == test.categories
    assert shifted.images.dtype == np.uint8 and not np.array_equal(shifted.images, test.images)

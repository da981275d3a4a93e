"""drawai.explain on known cases, with the shipped classifier restricted to 60 categories (an index of 1,600
training drawings builds in seconds): neighbours, saliency, bad input, and faithfulness checks that can fail."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from drawai import bitmaps, classifier, data, explain, strokes
from drawai import categories as cats
from drawai.paths import CLASSIFIER_DIR

# classic10, cats and every 7th category: with 60 categories the probabilities are not so sure of most drawings
# that many read exactly alike
NAMES = list(dict.fromkeys([*cats.resolve("classic10"), "cat", *cats.CATEGORIES[::7]]))


@pytest.fixture(scope="module")
def clf():
    torch.set_num_threads(1)
    return classifier.Classifier.load(CLASSIFIER_DIR, categories=NAMES)


@pytest.fixture(scope="module")
def split():
    return data.train_test(data.load_sample(NAMES), seed=data.SPLIT_SEED)


@pytest.fixture(scope="module")
def indexed(split):
    """Every third training drawing: an index of them builds in a few seconds (the whole split's in the slow test
    of `nearest_index`)."""
    train, _ = split
    return train.subset(np.arange(0, len(train), 3))


@pytest.fixture(scope="module")
def index(clf, indexed):
    return explain.build_index(clf, indexed)


@pytest.fixture(scope="module")
def guessed(clf, split):
    """Eight test drawings the classifier gets right, canonical, with their guesses."""
    _, test = split
    x = bitmaps.to_canonical(test.images)
    right = np.flatnonzero(clf.probabilities(x, canonical=True).argmax(1) == test.labels)[:8]
    return x[right], test.labels[right]


def test_a_training_drawing_is_its_own_nearest_neighbour(clf, indexed, index):
    train = indexed
    for i in (0, 123, len(train) - 1):
        near = explain.nearest(clf, train.images[i], k=3, index=index)
        assert near.index[0] == i and near.distances[0] < 1e-3
        assert near.labels[0] == train.categories[train.labels[i]]
        np.testing.assert_array_equal(near.images[0], train.images[i])
        assert np.all(np.diff(near.distances) >= 0)


def test_label_restricts_the_neighbours_to_that_category(clf, split, index):
    _, test = split
    drawing = test.images[0]
    anywhere = explain.nearest(clf, drawing, k=20, index=index)
    assert len(set(anywhere.labels)) > 1
    for label in ("cat", clf.categories.index("cat")):
        cats = explain.nearest(clf, drawing, k=7, label=label, index=index)
        assert cats.labels == ["cat"] * 7 and len(cats.images) == 7
        assert cats.distances[0] >= anywhere.distances[0]


@pytest.mark.slow
def test_the_index_is_saved_without_pickle_and_reused(clf, tmp_path):
    explain.forget_indexes()
    built = explain.nearest_index(clf, tmp_path)
    saved = list(tmp_path.glob("nearest-*.npz"))
    assert len(saved) == 1
    with np.load(saved[0], allow_pickle=False) as npz:
        np.testing.assert_array_equal(npz["vectors"], built.vectors)
    explain.forget_indexes()
    assert np.array_equal(explain.nearest_index(clf, tmp_path).vectors, built.vectors)
    saved[0].write_bytes(b"not an npz")  # a damaged cache is rebuilt
    explain.forget_indexes()
    assert np.array_equal(explain.nearest_index(clf, tmp_path).vectors, built.vectors)
    with np.load(saved[0], allow_pickle=False) as npz:
        assert str(npz["digest"]) == explain.model_digest(clf)


def test_changed_weights_get_another_index(clf):
    other = explain.randomised(clf)
    assert explain.model_digest(other) != explain.model_digest(clf)


def test_strokes_and_their_bitmap_are_explained_alike(clf, index):
    drawing = [[(0, 0), (40, 0), (40, 40), (0, 40), (0, 0)], [(10, 10), (30, 30)]]
    bitmap = strokes.render_strokes(drawing)
    np.testing.assert_array_equal(explain.saliency(clf, drawing), explain.saliency(clf, bitmap, canonical=True))
    by_strokes = explain.nearest(clf, drawing, index=index)
    np.testing.assert_array_equal(by_strokes.index, explain.nearest(clf, bitmap, canonical=True, index=index).index)
    ndjson = {"drawing": [np.array(s, dtype=float).T.tolist() for s in drawing]}  # Google's layout
    np.testing.assert_array_equal(explain.nearest(clf, ndjson, index=index).index, by_strokes.index)


def test_saliency_is_zero_off_the_ink_and_sums_to_the_rise_in_probability(clf, guessed):
    x, labels = guessed
    score = explain.scorer(clf)
    for image, label in zip(x[:4], labels[:4]):
        m = explain.saliency(clf, image, canonical=True)
        assert m.shape == (28, 28) and m.dtype == np.float32
        assert np.all(m[image == 0] == 0) and np.abs(m).max() > 0
        np.testing.assert_array_equal(m, explain.saliency(clf, image, label=clf.categories[label], canonical=True))
        fine = explain.saliency(clf, image, canonical=True, steps=64)
        with torch.no_grad():
            p = score(torch.from_numpy(np.stack([image, np.zeros_like(image)]))[:, None])[:, label].numpy()
        assert fine.sum() == pytest.approx(p[0] - p[1], abs=0.03)  # integrated gradients' completeness
        assert explain.rank_correlation(m[None], fine[None], image[None]) > 0.8  # the default's few steps suffice


def test_saliency_of_another_label_is_another_map(clf, guessed):
    image, label = guessed[0][0], int(guessed[1][0])
    other = (label + 1) % len(clf.categories)
    a, b = (explain.saliency(clf, image, label=c, canonical=True) for c in (label, other))
    assert explain.rank_correlation(a[None], b[None], image[None]) < 0.9


def test_bitmaps_from_any_source_go_through_the_canonical_form(clf, split):
    _, test = split
    drawing = test.images[3]
    np.testing.assert_array_equal(explain.saliency(clf, drawing),
                                  explain.saliency(clf, bitmaps.to_canonical(drawing), canonical=True))
    big = np.kron(drawing, np.ones((8, 8), np.uint8))  # a 224-px canvas
    assert explain.saliency(clf, big).shape == (28, 28)
    assert explain.saliency(clf, drawing.tolist()).shape == (28, 28)  # a nested list is a bitmap, not strokes


def cat_bitmap():
    return data.load_sample(["cat"]).images[0]


BAD = [
    ("empty bitmap", lambda c: explain.saliency(c, np.zeros((28, 28), np.uint8)), bitmaps.EmptyDrawingError,
     r"the drawing is empty"),
    ("blank canonical", lambda c: explain.nearest(c, np.zeros((28, 28), np.float32), canonical=True),
     bitmaps.EmptyDrawingError, r"the drawing is empty"),
    ("a batch", lambda c: explain.saliency(c, np.stack([cat_bitmap()] * 2)), bitmaps.BadBitmapError,
     r"one drawing at a time, got a batch of 2"),
    ("wrong shape", lambda c: explain.nearest(c, np.zeros((3, 4))), bitmaps.BadBitmapError, r"got shape \(3, 4\)"),
    ("floats 0-255", lambda c: explain.saliency(c, cat_bitmap().astype(np.float32)), bitmaps.BadBitmapError,
     r"divide 0-255 values by 255"),
    ("canonical not 28x28", lambda c: explain.saliency(c, np.ones((30, 30), np.float32) * 0.1, canonical=True),
     bitmaps.BadBitmapError, r"canonical input must be 28x28"),
    ("inverted", lambda c: explain.nearest(c, 255 - cat_bitmap()), bitmaps.BadBitmapError, r"dark on light"),
    ("strokes with NaN", lambda c: explain.saliency(c, [[(0, 0), (np.nan, 1)]]), strokes.BadStrokesError,
     r"NaN or infinite"),
    ("no strokes", lambda c: explain.nearest(c, [[], []]), bitmaps.EmptyDrawingError, r"no strokes"),
    ("unknown label", lambda c: explain.saliency(c, cat_bitmap(), label="unicorn"), ValueError,
     r"'unicorn' is not one of this classifier's 60 categories"),
    ("label out of range", lambda c: explain.nearest(c, cat_bitmap(), label=60), ValueError,
     r"category name or an index below 60, got 60"),
    ("k zero", lambda c: explain.nearest(c, cat_bitmap(), k=0), ValueError, r"k must be a positive integer, got 0"),
    ("k a float", lambda c: explain.nearest(c, cat_bitmap(), k=2.0), ValueError, r"k must be a positive integer"),
    ("text", lambda c: explain.saliency(c, "cat"), bitmaps.BadBitmapError, r"numeric array"),
]


@pytest.mark.parametrize("call, error, match", [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_bad_input_is_refused_clearly(clf, index, call, error, match, monkeypatch):
    monkeypatch.setattr(explain, "nearest_index", lambda c, folder=None: index)
    with pytest.raises(error, match=match):
        call(clf)


def test_deleting_the_salient_pixels_costs_more_than_random_ones_and_reversing_the_map_fails(clf, guessed):
    x, labels = guessed
    maps = np.stack([explain.saliency(clf, image, canonical=True) for image in x])
    curve = explain.deletion_curve(clf, x, maps, labels, ks=(5, 10))
    assert curve["salient"][0] > 1.5 * curve["random"][0]
    assert np.mean(curve["salient"]) > np.mean(curve["random"])
    reversed_curve = explain.deletion_curve(clf, x, -maps, labels, ks=(5, 10))
    assert not reversed_curve["salient"][0] > 1.5 * reversed_curve["random"][0]
    assert reversed_curve["random"] == curve["random"]  # the same random pixels: a fair comparison


def test_randomising_the_last_layers_changes_the_maps(clf, guessed):
    x, labels = guessed
    maps = np.stack([explain.saliency(clf, image, canonical=True) for image in x])
    shuffled = explain.randomised(clf)
    again = np.stack([explain.saliency(shuffled, image, label=int(c), canonical=True) for image, c in zip(x, labels)])
    assert explain.rank_correlation(maps, maps, x) == pytest.approx(1)
    assert explain.rank_correlation(maps, again, x) < 0.3
    assert not np.allclose(shuffled.model.head.weight.detach(), clf.model.head.weight.detach())


def test_neighbour_agreement(clf, split, indexed, index):
    train, test = indexed, split[1]
    x = bitmaps.to_canonical(train.images[:40])
    with torch.no_grad():
        guesses = explain.scorer(clf)(torch.from_numpy(x)[:, None]).argmax(1).numpy()
    # each training drawing is its own nearest: with k=1 the agreement is how many of them the model gets right
    assert explain.neighbour_agreement(clf, x, k=1, index=index) == np.mean(guesses == train.labels[:40]) < 1
    assert 0.5 <= explain.neighbour_agreement(clf, bitmaps.to_canonical(test.images), index=index) <= 1


def test_an_index_of_a_few_categories_maps_their_labels_to_the_classifiers(clf, split):
    train, test = split
    few = train.subset(np.flatnonzero(np.isin(np.array(train.categories)[train.labels], ["cat", "zebra"])))
    index = explain.build_index(clf, data.Drawings(few.images, few.labels, few.categories, few.source))
    assert sorted(set(index.labels)) == sorted(clf.categories.index(n) for n in ("cat", "zebra"))
    near = explain.nearest(clf, test.images[0], k=3, label="zebra", index=index)
    assert near.labels == ["zebra"] * 3
    assert explain.nearest(clf, few.images[5], k=1, index=index).distances[0] < 1e-3
    with pytest.raises(ValueError, match=r"categories the classifier does not know: \['yoga'\]"):
        explain.build_index(clf, data.load_sample(["cat", "yoga"]))


def test_the_overlay_tints_raising_pixels_red_and_lowering_ones_blue():
    image = np.zeros((28, 28), np.float32)
    image[5, 5:8] = 1
    m = np.zeros((28, 28), np.float32)
    m[5, 5], m[5, 6] = 0.5, -0.2
    rgb = explain.overlay(image, m)
    assert rgb.shape == (28, 28, 3) and rgb.min() >= 0 and rgb.max() <= 1
    assert rgb[5, 5, 0] == pytest.approx(1) and rgb[5, 6, 2] > rgb[5, 6, 0]  # red; blue
    np.testing.assert_allclose(rgb[5, 7], 0.45)  # ink that did nothing stays grey
    assert np.all(rgb[0, 0] == 0)

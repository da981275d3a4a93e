"""Model-free metrics (drawai/metrics.py) against cases with known answers."""

import numpy as np
import pytest

from drawai import metrics


@pytest.fixture
def rng():
    return np.random.default_rng(0)


def test_frechet_distance_of_a_set_with_itself_is_zero(rng):
    x = rng.normal(size=(500, 16))
    assert metrics.frechet_distance(x, x) == pytest.approx(0, abs=1e-6)


def test_frechet_distance_of_a_shift_is_the_squared_shift(rng):
    x = rng.normal(size=(400, 8))
    shift = np.arange(8) / 4
    # Same covariance, so only the means differ.
    assert metrics.frechet_distance(x, x + shift) == pytest.approx(np.sum(shift ** 2), rel=1e-6)


def test_frechet_distance_matches_the_gaussian_formula(rng):
    # N(0, I) vs N(0, 4I) in d dims: d * (1 + 4 - 2 * 2) = d.
    d = 4
    a, b = rng.normal(size=(20000, d)), 2 * rng.normal(size=(20000, d))
    assert metrics.frechet_distance(a, b) == pytest.approx(d, rel=0.05)
    assert metrics.frechet_distance(a, b) == pytest.approx(metrics.frechet_distance(b, a), rel=1e-6)


def test_frechet_distance_with_fewer_rows_than_features_is_finite(rng):
    a, b = rng.normal(size=(10, 50)), rng.normal(size=(12, 50)) + 1
    value = metrics.frechet_distance(a, b)
    assert np.isfinite(value) and value > 40  # the mean shift alone is 50


def test_images_are_flattened(rng):
    imgs = rng.random((30, 6, 6))
    assert metrics.frechet_distance(imgs, imgs) == pytest.approx(0, abs=1e-6)


def test_nearest_neighbours_finds_the_closest_row():
    refs = np.array([[0.0, 0.0], [10.0, 0.0], [0.0, 5.0]])
    dist, idx = metrics.nearest_neighbours(np.array([[9.0, 0.0], [0.0, 4.0], [0.0, 0.0]]), refs, chunk=2)
    assert idx.tolist() == [1, 2, 0]
    np.testing.assert_allclose(dist, [1.0, 1.0, 0.0], atol=1e-7)


def test_memorisation_ratio_copies_vs_fresh_draws(rng):
    train, held_out = rng.normal(size=(300, 10)), rng.normal(size=(100, 10))
    assert metrics.memorisation_ratio(train[:50], train, held_out) == pytest.approx(0, abs=1e-6)
    fresh = rng.normal(size=(100, 10))
    assert 0.8 < metrics.memorisation_ratio(fresh, train, held_out) < 1.25


def test_mean_pairwise_distance():
    assert metrics.mean_pairwise_distance(np.ones((5, 3))) == pytest.approx(0, abs=1e-6)
    assert metrics.mean_pairwise_distance(np.array([[0.0, 0.0], [3.0, 4.0]])) == pytest.approx(5)
    # Three points on a line at 0, 1, 3: pairs 1, 3, 2 -> mean 2.
    assert metrics.mean_pairwise_distance(np.array([[0.0], [1.0], [3.0]])) == pytest.approx(2)


@pytest.mark.parametrize("call, match", [
    (lambda: metrics.frechet_distance(np.zeros((5, 3)), np.zeros((5, 4))), "different feature sizes"),
    (lambda: metrics.frechet_distance(np.zeros((1, 3)), np.zeros((5, 3))), "at least 2 rows"),
    (lambda: metrics.frechet_distance(np.zeros(5), np.zeros(5)), "shape"),
    (lambda: metrics.mean_pairwise_distance(np.full((3, 2), np.nan)), "NaN"),
    (lambda: metrics.memorisation_ratio(np.ones((2, 2)), np.ones((2, 2)), np.ones((2, 2))), "copies"),
])
def test_bad_inputs_are_clear_errors(call, match):
    with pytest.raises(metrics.MetricInputError, match=match):
        call()

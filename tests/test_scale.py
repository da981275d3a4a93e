"""Past one machine, the parts beyond tests/test_distributed.py: the GAN's tf.data pipeline over the numpy_bitmap
files and tf.distribute (two replicas, two workers on 127.0.0.1), the streaming reader of simplified ndjson files,
and the train-classifier job launching torchrun."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from drawai import bitmaps, data, distributed
from drawai.paths import ROOT

CATS = ["apple", "cloud", "door"]


def small_sample(per_class: int = 20) -> data.Drawings:
    sample = data.load_sample(CATS)
    return sample.subset(np.sort(np.concatenate([np.flatnonzero(sample.labels == c)[:per_class] for c in range(3)])))


def tiny_config(**overrides):
    from drawai import gan

    return gan.GANConfig(**{"categories": CATS, "epochs": 2, "batch_size": 8, "noise_dim": 8, "width": 8,
                            "seed": 3, **overrides})


def write_bitmap_files(cache: Path, drawings: data.Drawings) -> None:
    for c, name in enumerate(drawings.categories):
        rows = bitmaps.numpy_bitmap_style(drawings.images[drawings.labels == c], seed=c)
        (cache / "numpy_bitmap").mkdir(parents=True, exist_ok=True)
        np.save(cache / "numpy_bitmap" / f"{name}.npy", rows.reshape(len(rows), 784))


# --- the GAN over the memory-mapped files ---------------------------------------------------------------------------

@pytest.mark.slow
def test_the_gan_trains_from_the_files_as_from_the_same_drawings_in_memory(tmp_path):
    """The tf.data pipeline reads and canonicalises each batch from the memory-mapped files as it goes; the
    result is the in-memory result for the same drawings, exactly, and its checkpoints resume the same way."""
    from drawai import gan

    write_bitmap_files(tmp_path / "cache", small_sample())
    files = distributed.NumpyBitmapDataset(CATS, "train", max_per_class=15, cache_dir=tmp_path / "cache")
    raw, labels = files.raw(np.arange(len(files)))
    in_memory = data.Drawings(raw, labels, files.categories, files.source, files.checksum)
    assert len(files) == 36  # 12 of the first 15 rows of each file: rows 0, 5, 10 are test rows

    straight = gan.train(in_memory, tiny_config(), verbose=0)
    streamed = gan.train(files, tiny_config(), run_dir=tmp_path / "run", verbose=0)
    for a, b in zip(straight.generator.variables, streamed.generator.variables, strict=True):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    assert streamed.train_record["data_checksum"] == files.checksum and streamed.train_record["n_train"] == 36
    resumed = gan.train(files, tiny_config(epochs=3), run_dir=tmp_path / "run", resume=True, verbose=0)
    assert [h["epoch"] for h in resumed.train_history] == [1, 2, 3]


@pytest.mark.slow
def test_distributed_training_refuses_what_cannot_be_split(tmp_path):
    """Checked in a child process, where TensorFlow can still be given two logical CPUs."""
    script = r"""
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
import sys
sys.path.insert(0, sys.argv[1])
from test_scale import small_sample, tiny_config
from drawai import gan
with tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"]).scope():
    for overrides in ({"batch_size": 9}, {"recipe": "per_label"}):
        try:
            gan.train(small_sample(), tiny_config(**overrides), verbose=0)
        except gan.GANInputError as e:
            print(e)
"""
    result = subprocess.run([sys.executable, "-c", script, str(ROOT / "tests")], capture_output=True, text=True,
                            env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "batch_size 9 must be divisible by the 2 replicas" in result.stdout
    assert "the per_label recipe trains one label's network per batch and is not distributed" in result.stdout


MIRRORED = r"""
import json, sys
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
import numpy as np
sys.path.insert(0, sys.argv[1])
from test_scale import small_sample, tiny_config
from drawai import gan
from drawai.gan.data import streamed_dataset

drawings, config = small_sample(), tiny_config()
plain = gan.train(drawings, config, verbose=0)
strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
images, labels = gan.training_arrays(drawings)
with strategy.scope():
    stream, _, _ = streamed_dataset(lambda i: (images[i], labels[i]), labels, range(1), 8, config.seed, False)
    first = [t.numpy().tolist() for t in strategy.experimental_local_results(next(iter(stream))[1])]
    mirrored = gan.train(drawings, config, verbose=0)
batch = gan.epoch_batches(labels, 0, 8, config.seed, False)[0]
moving = mirrored.generator.norms[0].norm.moving_mean.value.values
print(json.dumps({
    "replicas": strategy.num_replicas_in_sync,
    "first_batch": first, "expected": [labels[half].tolist() for half in np.array_split(batch, 2)],
    "weights": [float(f(np.concatenate([np.abs(a.numpy() - b.numpy()).ravel() for a, b in zip(
        plain.generator.variables + plain.discriminator.variables,
        mirrored.generator.variables + mirrored.discriminator.variables)]))) for f in (np.mean, np.max)],
    "lr": plain.g_optimizer.learning_rate.numpy().item(),
    "losses": [[h["g_loss"], h["d_loss"]] for h in plain.train_history],
    "mirrored_losses": [[h["g_loss"], h["d_loss"]] for h in mirrored.train_history],
    "moving_mean_same_on_replicas": all(np.array_equal(moving[0].numpy(), m.numpy()) for m in moving),
    "steps": int(mirrored.step_counter.numpy())}))
"""


@pytest.mark.slow
def test_two_replicas_train_as_one_process(tmp_path):
    """MirroredStrategy over two logical CPUs (~30 s: a child process, TensorFlow's start, two tiny runs): each
    replica gets its half of every batch, and the weights end where one process's do, up to rounding."""
    result = subprocess.run([sys.executable, "-c", MIRRORED, str(ROOT / "tests")], capture_output=True, text=True,
                            env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    got = json.loads(result.stdout.strip().splitlines()[-1])
    assert got["replicas"] == 2 and got["first_batch"] == got["expected"] and got["steps"] == 2 * 7
    # Sums in another order, nothing more: Adam turns a near-zero gradient's rounding into up to one step (lr), so
    # a few weights move apart by a fraction of a step while the mean stays at rounding (measured 1e-6; a replica
    # training on its half alone moves most weights by a whole step).
    mean_apart, most_apart = got["weights"]
    assert mean_apart < 1e-5 and most_apart < got["lr"]
    np.testing.assert_allclose(got["mirrored_losses"], got["losses"], atol=1e-4)
    assert got["moving_mean_same_on_replicas"]  # batch norm over the whole batch, not per replica


def free_ports(n: int) -> list[int]:
    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def two_workers(args_of, tmp_path: Path, dump: Path) -> list[subprocess.CompletedProcess]:
    """Two local processes of tests/gan_worker.py joined by TF_CONFIG on 127.0.0.1 (MultiWorkerMirroredStrategy)."""
    cluster = {"worker": [f"127.0.0.1:{port}" for port in free_ports(2)]}
    procs = []
    for index in range(2):
        env = {**os.environ, "PYTHONPATH": str(ROOT), "DRAWAI_TEST_DUMP": str(dump),
               "TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}})}
        log = open(tmp_path / f"worker{index}-{dump.name}.log", "w")
        procs.append((subprocess.Popen([sys.executable, str(ROOT / "tests" / "gan_worker.py"), *args_of(index)],
                                       env=env, stdout=log, stderr=subprocess.STDOUT), log))
    results = []
    for proc, log in procs:
        try:
            proc.wait(timeout=600)
        finally:
            proc.kill()
            log.close()
        results.append(proc.returncode)
    for index, code in enumerate(results):
        assert code == 0, (tmp_path / f"worker{index}-{dump.name}.log").read_text()[-4000:]
    return results


def worker_weights(dump: Path, index: int) -> list[np.ndarray]:
    with np.load(dump / f"worker{index}.npz") as f:
        return [f[f"arr_{i}"] for i in range(len(f.files))]


@pytest.mark.slow
def test_two_workers_train_the_gan_as_one_process_and_share_its_checkpoints(tmp_path, drawn_alike):
    """MultiWorkerMirroredStrategy, two local processes, TF_CONFIG on 127.0.0.1 (~2 min on 2 busy cores: two
    processes start TensorFlow twice). Both workers end with the same weights, those of one process trained on
    the same batches; only the chief writes; a second run of the same command resumes from the chief's checkpoint."""
    from drawai import gan
    from drawai.gan.training import checkpoints

    common = ["--source", "sample", "--categories", *CATS, "--per-class", "20", "--batch-size", "8", "--width", "8",
              "--seed", "3", "--verbose", "0"]
    run = tmp_path / "run"
    # worker 1 gets another --out: it must write nothing there (and, reading no checkpoint, start from 0 too)
    two_workers(lambda i: [*common, "--epochs", "2", "--out", str(run if i == 0 else tmp_path / "elsewhere")],
                tmp_path, tmp_path / "first")
    assert not (tmp_path / "elsewhere").exists()
    assert [p.name for _, p in checkpoints(run)] == ["epoch-0001.keras", "epoch-0002.keras"]
    chief, other = worker_weights(tmp_path / "first", 0), worker_weights(tmp_path / "first", 1)
    for a, b in zip(chief, other, strict=True):
        np.testing.assert_array_equal(a, b)

    # the same command again with more epochs: both workers read the chief's checkpoint and go on from it
    two_workers(lambda i: [*common, "--epochs", "3", "--out", str(run)], tmp_path, tmp_path / "second")
    history = json.loads((run / "history.json").read_text())
    assert [h["epoch"] for h in history] == [1, 2, 3] and all(np.isfinite(h["g_loss"]) for h in history)
    chief = worker_weights(tmp_path / "second", 0)
    for a, b in zip(chief, worker_weights(tmp_path / "second", 1), strict=True):
        np.testing.assert_array_equal(a, b)

    # one process, the same data and config: the same weights (up to the order of sums), and its checkpoints
    # are the workers' checkpoints: the chief's loads here and draws what the workers' generator draws
    drawings = data.train_test(small_sample())[0]
    config = gan.GANConfig.from_preset("full", "conditional", categories=CATS, epochs=3, batch_size=8, width=8,
                                       seed=3)
    alone = gan.train(drawings, config, verbose=0)
    mine = [v.numpy() for v in alone.generator.variables + alone.discriminator.variables + [alone.step_counter]]
    assert int(chief[-1]) == int(mine[-1]) == 3 * (len(drawings) // 8)
    largest = max(np.abs(a - b).max() for a, b in zip(mine, chief, strict=True))
    print(f"two workers vs one process, largest weight difference: {largest}")
    for a, b in zip(mine, chief, strict=True):
        np.testing.assert_allclose(a, b, atol=1e-5)
    published = gan.load(run / "model")
    drawn_alike(alone, published, CATS, 2, seed=0)  # the model folder keeps float16 weights
    assert published.manifest["command"].endswith("# MultiWorkerMirroredStrategy, 2 replicas")


# --- the simplified ndjson files, streamed and rendered ------------------------------------------------------------

def shape_drawing(word: str, i: int, recognized: bool = True) -> dict:
    """A drawing record like Google's: a polygon with 3 + i % 5 corners, strokes as [[xs], [ys]] in 0-255."""
    corners = 3 + i % 5
    angles = np.linspace(0, 2 * np.pi, corners + 1) + i
    xs, ys = (127 + 120 * np.cos(angles)).round().tolist(), (127 + 120 * np.sin(angles)).round().tolist()
    return {"word": word, "countrycode": "GB", "timestamp": "2017-03-01 12:00:00.0", "recognized": recognized,
            "key_id": str(10**15 + i), "drawing": [[xs, ys], [[100, 150], [127, 127]]]}


def write_simplified(cache: Path, counts: dict[str, int]) -> dict[str, list[dict]]:
    folder = cache / "simplified"
    folder.mkdir(parents=True, exist_ok=True)
    written = {}
    for name, n in counts.items():
        written[name] = [shape_drawing(name, i, recognized=i % 4 != 3) for i in range(n)]
        (folder / f"{name}.ndjson").write_text("".join(json.dumps(d) + "\n" for d in written[name]))
    return written


def test_the_simplified_stream_renders_every_drawing_with_the_strokes_brush(tmp_path):
    from drawai import strokes

    written = write_simplified(tmp_path, {"apple": 7, "cloud": 3, "door": 5})
    stream = distributed.SimplifiedStream(CATS, cache_dir=tmp_path, render_batch=4)
    items = list(stream)
    # the categories take turns until each file ends: a, c, d, a, c, d, a, c, d, a, d, a, d, a, a
    order = [0, 1, 2] * 3 + [0, 2] * 2 + [0, 0]
    assert [int(y) for _, y in items] == order
    seen = {c: 0 for c in range(3)}
    for (image, _), c in zip(items, order, strict=True):
        expected = strokes.render_strokes(written[CATS[c]][seen[c]]["drawing"])
        np.testing.assert_array_equal(image.numpy(), expected[None])
        seen[c] += 1
    capped = list(distributed.SimplifiedStream(CATS, max_per_class=2, recognized_only=True, cache_dir=tmp_path))
    assert [int(y) for _, y in capped] == [0, 1, 2, 0, 1, 2]


def test_workers_and_processes_share_the_stream_and_a_buffer_shuffles_it(tmp_path):
    import torch
    from torch.utils.data import DataLoader

    write_simplified(tmp_path, {"apple": 9, "cloud": 6, "door": 8})
    stream = distributed.SimplifiedStream(CATS, cache_dir=tmp_path)
    key = lambda image, label: (int(label), image.numpy().tobytes())  # noqa: E731
    everything = sorted(key(x, y) for x, y in stream)
    assert len(everything) == 23
    parallel = [key(x, y) for xb, yb in DataLoader(stream, batch_size=5, num_workers=2) for x, y in zip(xb, yb)]
    assert sorted(parallel) == everything  # each drawing once, across the two workers

    shuffled = distributed.SimplifiedStream(CATS, cache_dir=tmp_path, shuffle_buffer=8, seed=1)
    first = [key(x, y) for x, y in shuffled]
    assert sorted(first) == everything and first != [key(x, y) for x, y in stream]
    assert [key(x, y) for x, y in shuffled] == first  # seeded
    shuffled.set_epoch(1)
    assert [key(x, y) for x, y in shuffled] != first
    assert all(x.dtype == torch.float32 and x.shape == (1, 28, 28) for x, _ in stream)


def test_the_stream_reads_as_it_goes_and_names_what_is_wrong(tmp_path):
    import itertools

    from drawai.data import CorruptDataError

    write_simplified(tmp_path, {"apple": 3})
    path = tmp_path / "simplified" / "apple.ndjson"
    path.write_text(path.read_text() + '{"word": "apple", "drawing": [[[1, 2], [3\n')
    stream = distributed.SimplifiedStream(["apple"], cache_dir=tmp_path, render_batch=1)
    assert len(list(itertools.islice(iter(stream), 3))) == 3  # the drawings before the damage arrive first
    with pytest.raises(CorruptDataError, match=r"apple\.ndjson, line 4: not valid JSON"):
        list(stream)
    write_simplified(tmp_path, {"apple": 2})
    path.write_text(path.read_text() + json.dumps(shape_drawing("cloud", 0)) + "\n")
    with pytest.raises(CorruptDataError, match="holds a drawing of 'cloud', not 'apple'"):
        list(distributed.SimplifiedStream(["apple"], cache_dir=tmp_path))
    empty = shape_drawing("apple", 5)
    empty["drawing"] = []
    path.write_text(json.dumps(shape_drawing("apple", 1)) + "\n" + json.dumps(empty) + "\n")
    with pytest.warns(UserWarning, match="skipping drawing 1000000000000005"):
        assert len(list(distributed.SimplifiedStream(["apple"], cache_dir=tmp_path))) == 1
    with pytest.raises(FileNotFoundError, match="python -m drawai.download --kind simplified cloud"):
        distributed.SimplifiedStream(["apple", "cloud"], cache_dir=tmp_path)
    with pytest.raises(ValueError, match="shuffle_buffer"):
        distributed.SimplifiedStream(["apple"], cache_dir=tmp_path, shuffle_buffer=-1)


# --- the train-classifier job, launching torchrun -------------------------------------------------------------------

@pytest.mark.slow
def test_the_classifier_job_trains_in_two_processes_with_torchrun(tmp_path, monkeypatch):
    """`python -m drawai.jobs train-classifier -p nproc 2` on classic10 (~1-2 min on 2 busy cores: the notebook's
    kernel, then two torchrun processes): the report is the usual one, the model was trained by 2 processes."""
    import nbformat

    from drawai import classifier, jobs

    monkeypatch.setattr(jobs, "RUNS", tmp_path / "runs")
    out = jobs.run("train-classifier", {"categories": "classic10", "epochs": 3, "batch_size": 64, "threads": 1,
                                        "nproc": 2}, progress=False)
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["categories"] == 10 and metrics["test_top1"] > 0.4  # chance is 0.1
    ddp = json.loads((out / "ddp" / "model" / "manifest.json").read_text())
    assert ddp["processes"] == 2 and ddp["command"].startswith("torchrun (2 processes) scripts/train_ddp.py")
    assert ddp["data"]["train_drawings"] == 800  # the shared split of the sample: 80 of each category
    assert [h["epoch"] for h in ddp["history"]] == [1, 2, 3] and ddp["history"][-1]["loss"] < ddp["history"][0]["loss"]
    clf = classifier.Classifier.load(out / "model", categories="classic10")
    assert clf.manifest["metrics"]["test_top1"] == metrics["test_top1"]
    report = nbformat.read(out / "02_classifier.ipynb", as_version=4)
    assert any("image/png" in o.get("data", {}) for c in report.cells for o in c.get("outputs", []))

"""Faults: jobs killed with SIGKILL and run again, kills during checkpoint writes, a failing notebook, and a
download cache that is read-only, full or deleted. docs/faults.md lists every fault and the test here that
checks it (download faults of the network itself are in tests/test_download.py)."""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from drawai import classifier, data, jobs
from drawai.paths import ROOT

# --- a job killed with SIGKILL, then the same command again ---------------------------------------------------

def job_command(job: str, params: dict) -> list[str]:
    args = [a for name, value in params.items() for a in ("-p", name, str(value))]
    return [sys.executable, "-m", "drawai.jobs", job, *args]


def job_env(runs: Path) -> dict:
    return {**os.environ, "PYTHONPATH": str(ROOT), "DRAWAI_RUNS": str(runs)}


def children(pid: int) -> list[int]:
    try:
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0] != "Z"
    except (OSError, IndexError):
        return False


def wait_for(condition, timeout: float, proc: subprocess.Popen | None = None) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        if proc is not None and proc.poll() is not None:
            return condition()
        time.sleep(0.05)
    return False


def kill_job_mid_training(job: str, params: dict, runs: Path, checkpoint_glob: str, after) -> tuple[Path, str]:
    """Start the job, wait until `checkpoint_glob` (under its run folder) exists and `after(run_folder)`
    seconds more, then `kill -9` the job's process (not its kernel: that must notice and stop by itself).
    Returns the run folder and the job's output."""
    log = runs.parent / f"{job}-killed.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(job_command(job, params), env=job_env(runs), stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
    kernels: list[int] = []
    try:
        found = wait_for(lambda: list((runs / job).glob(f"*/{checkpoint_glob}")), 600, proc)
        assert found, f"no checkpoint appeared; the job said:\n{log.read_text()[-3000:]}"
        run_dir = next((runs / job).glob(f"*/{checkpoint_glob}")).parents[len(Path(checkpoint_glob).parts) - 1]
        time.sleep(after(run_dir))
        kernels = children(proc.pid)
        assert proc.poll() is None, "the job finished before it could be killed"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        # papermill's kernel runs in its own session: it must see that its job died and stop (ipykernel's
        # parent poller), not go on training and writing checkpoints next to the run that resumes.
        assert kernels and wait_for(lambda: not any(alive(k) for k in kernels), 15), "the kernel outlived its job"
    finally:
        for pid in [proc.pid, *kernels]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        proc.wait()
    return run_dir, log.read_text()


def run_job(job: str, params: dict, runs: Path) -> str:
    result = subprocess.run(job_command(job, params), env=job_env(runs), capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]
    return result.stderr


@contextlib.contextmanager
def torch_threads():
    threads = torch.get_num_threads()
    try:
        yield
    finally:
        torch.set_num_threads(threads)


CLASSIFIER_JOB = {"categories": "classic10", "epochs": 5, "batch_size": 64, "threads": 1}


@pytest.mark.slow
def test_killed_classifier_job_resumes_and_ends_as_an_uninterrupted_run(tmp_path):
    """~70 s: two runs of the papermill job (killed, then resumed) and one in-process run to compare with."""
    runs = tmp_path / "runs"

    def half_an_epoch(run_dir):
        state = classifier.load_checkpoint(run_dir / "checkpoint" / "checkpoint.pt")
        return state["history"][-1]["seconds"] / 2

    run_dir, _ = kill_job_mid_training("train-classifier", CLASSIFIER_JOB, runs, "checkpoint/checkpoint.pt",
                                       half_an_epoch)
    killed_at = classifier.load_checkpoint(run_dir / "checkpoint" / "checkpoint.pt")["epoch"]
    assert 1 <= killed_at < CLASSIFIER_JOB["epochs"] and not (run_dir / "metrics.json").exists()
    assert not (run_dir / "model").exists()

    said = run_job("train-classifier", CLASSIFIER_JOB, runs)  # the same command again
    assert f"resuming the unfinished run {run_dir}" in said
    assert [p.name for p in (runs / "train-classifier").iterdir()] == [run_dir.name]
    report = nbformat.read(run_dir / "02_classifier.ipynb", as_version=4)
    training = next(c for c in report.cells if "classifier.train(" in c.source)
    # The progress bar (a widget; its text form is its first state) started at the checkpoint's epoch.
    progress = "".join(o.get("text", "") + o.get("data", {}).get("text/plain", "") for o in training.outputs)
    assert f"| {killed_at}/{CLASSIFIER_JOB['epochs']} [" in progress

    # The same training without the kill, in this process: identical weights, history and test metrics.
    train_set, test_set = data.train_test(data.load_sample("classic10"))
    config = classifier.TrainConfig(epochs=5, batch_size=64, threads=1)
    with torch_threads():
        straight, history = classifier.train(train_set, config, test_set=test_set, progress=False)
    resumed = load_file(str(run_dir / "model" / "model.safetensors"))
    for key, value in straight.model.state_dict().items():
        assert torch.equal(resumed[key], value), key
    manifest = json.loads((run_dir / "model" / "manifest.json").read_text())
    drop_seconds = lambda rows: [{k: v for k, v in r.items() if k != "seconds"} for r in rows]  # noqa: E731
    assert drop_seconds(manifest["history"]) == drop_seconds(history)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["test_top1"] == classifier.evaluate(straight, test_set)["top1"] > 0.5


GAN_JOB = {"epochs": 12}  # the demo preset: classic10, the conditional recipe
# An epoch of it takes 0.2-1 s: the kill, 0.5 s after the first checkpoint, must land before the last one.


@pytest.mark.slow
def test_killed_gan_job_resumes_from_its_last_checkpoint_and_ends_as_an_uninterrupted_run(tmp_path, drawn_alike):
    """~2-3 min on 2 busy cores: two runs of the papermill job (killed, then resumed) and one in-process run."""
    from drawai import gan
    from drawai.gan.io import load_keras
    from drawai.gan.training import checkpoints

    runs = tmp_path / "runs"
    run_dir, _ = kill_job_mid_training("train-gan", GAN_JOB, runs, "train/checkpoints/epoch-0001.keras",
                                       lambda run_dir: 0.5)
    done = checkpoints(run_dir / "train")
    epochs = GAN_JOB["epochs"]
    assert done and done[-1][0] < epochs and not (run_dir / "metrics.json").exists()
    for _, path in done:
        load_keras(path)  # every checkpoint under its final name is whole


    said = run_job("train-gan", GAN_JOB, runs)
    assert f"resuming the unfinished run {run_dir}" in said
    assert [p.name for p in (runs / "train-gan").iterdir()] == [run_dir.name]
    history = json.loads((run_dir / "train" / "history.json").read_text())
    assert [h["epoch"] for h in history] == list(range(1, epochs + 1))
    assert sorted(p.name for p in (run_dir / "train" / "checkpoints").iterdir()) == \
        [f"epoch-{epochs - 1:04d}.keras", f"epoch-{epochs:04d}.keras"]  # the last two; no half-written leftovers

    config = gan.GANConfig.from_preset("demo", "conditional", seed=0, epochs=epochs)
    train_set, _ = data.train_test(data.load_sample(config.categories))
    straight = gan.train(train_set, config, verbose=0)
    resumed = gan.load(run_dir / "model")
    assert int(resumed.step_counter.numpy()) == int(straight.step_counter.numpy())
    drawn_alike(straight, resumed, list(range(10)), 4, seed=5)  # the job's model folder keeps float16 weights
    for mine, theirs in zip(history, straight.train_history, strict=True):
        assert mine["g_loss"] == pytest.approx(theirs["g_loss"], abs=1e-3)
        assert mine["d_loss"] == pytest.approx(theirs["d_loss"], abs=1e-3)


# --- SIGKILL while a checkpoint is being written ----------------------------------------------------------------

SAVE_LOOP = r"""
import sys
from pathlib import Path
import torch
from drawai import classifier

path = Path(sys.argv[1])
epoch = classifier.load_checkpoint(path)["epoch"] if path.exists() else 0
while True:  # nothing but checkpoint writes, through the function classifier.train uses
    epoch += 1
    weights = torch.full((2_000_000,), float(epoch))  # 8 MB: a write takes a while
    classifier.save_checkpoint(path, {"model": {"w": weights}, "optimizer": {}, "scheduler": {},
                                      "generator": torch.ByteTensor(8), "history": [{"epoch": epoch}] * epoch,
                                      "epoch": epoch, "config": {}})
"""


@pytest.mark.slow
def test_a_kill_during_a_checkpoint_write_never_leaves_half_a_checkpoint(tmp_path):
    """SIGKILL at random moments of a process that only writes checkpoints: after every kill the checkpoint
    loads whole and is one consistent state (each kill is a new process importing torch: a few seconds each)."""
    path = tmp_path / "checkpoint" / "checkpoint.pt"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    rng = random.Random(0)
    mid_write, last, left, kills = 0, 0, set(), 0
    while kills < 4 or (mid_write < 2 and kills < 12):  # a loaded machine moves where kills land: kill on until two did
        kills += 1
        proc = subprocess.Popen([sys.executable, "-c", SAVE_LOOP, str(path)], env=env, stderr=subprocess.PIPE)
        try:
            newer = lambda last=last: path.exists() and classifier.load_checkpoint(path)["epoch"] > last  # noqa: E731
            assert wait_for(newer, 120, proc), \
                proc.stderr.read().decode()[-2000:] if proc.poll() is not None else "no checkpoint was written"
            time.sleep(rng.uniform(0, 0.3))
        finally:
            proc.kill()
            proc.wait()
        temporary = set(path.parent.glob(f".{path.stem}.tmp-*{path.suffix}"))  # io.atomic_write's, one per process
        mid_write += bool(temporary - left)  # this kill came between opening and renaming
        left |= temporary
        state = classifier.load_checkpoint(path)  # raises if the file is not a whole checkpoint
        epoch = state["epoch"]
        assert epoch > last and torch.equal(state["model"]["w"], torch.full((2_000_000,), float(epoch)))
        assert len(state["history"]) == epoch
        last = epoch
    assert mid_write >= 2, f"only {mid_write} of {kills} kills landed inside a write: the test did not test that"


def test_resume_ignores_a_half_written_temporary_file(tmp_path):
    """What a kill inside `torch.save` leaves: a truncated checkpoint.tmp next to the last whole checkpoint."""
    train = data.train_test(data.load_sample("classic10"))[0].subset(np.arange(0, 800, 10))
    config = classifier.TrainConfig(epochs=2, batch_size=40, seed=1, threads=1)
    ckpt = tmp_path / "checkpoint.pt"

    class Killed(Exception):
        pass

    def stop_after_1(row):
        raise Killed

    with torch_threads():
        straight, _ = classifier.train(train, config, progress=False)
        with pytest.raises(Killed):
            classifier.train(train, config, checkpoint_dir=tmp_path, on_epoch=stop_after_1, progress=False)
        ckpt.with_suffix(".tmp").write_bytes(ckpt.read_bytes()[: ckpt.stat().st_size // 3])
        resumed, history = classifier.train(train, config, checkpoint_dir=tmp_path, resume=True, progress=False)
    assert [h["epoch"] for h in history] == [1, 2]
    for a, b in zip(straight.model.state_dict().values(), resumed.model.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    # a truncated checkpoint under the final name (a copy cut short, not draw-ai's writer) is a clear error
    ckpt.write_bytes(ckpt.read_bytes()[: ckpt.stat().st_size // 3])
    with pytest.raises(ValueError, match="is not a draw-ai checkpoint"):
        classifier.train(train, config, checkpoint_dir=tmp_path, resume=True, progress=False)


GAN_SAVE_LOOP = r"""
import sys
from pathlib import Path
from drawai import gan
from drawai.gan.training import checkpoints
from drawai.io import atomic_write

folder = Path(sys.argv[1])
model = gan.build(gan.GANConfig(categories=["apple", "cloud"], width=32, noise_dim=16, batch_size=8))
epoch = max((e for e, _ in checkpoints(folder.parent)), default=0)
while True:  # the write EpochLog does after every epoch, and nothing else
    epoch += 1
    atomic_write(folder / f"epoch-{epoch:04d}.keras", model.save)
"""


@pytest.mark.slow
def test_a_kill_during_a_gan_checkpoint_write_never_leaves_half_a_checkpoint(tmp_path):
    """~30 s (each kill is a new process importing TensorFlow): every epoch-XXXX.keras loads after every kill;
    what a kill cuts short is a hidden temporary file, and resuming removes it."""
    from drawai.gan.io import load_keras
    from drawai.gan.training import checkpoints, resume_point

    run_dir = tmp_path / "run"
    folder = run_dir / "checkpoints"
    folder.mkdir(parents=True)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    rng, mid_write, seen = random.Random(1), 0, 0
    for _ in range(3):
        proc = subprocess.Popen([sys.executable, "-c", GAN_SAVE_LOOP, str(folder)], env=env, stderr=subprocess.PIPE)
        try:
            assert wait_for(lambda seen=seen: len(checkpoints(run_dir)) > seen + 1, 300, proc), \
                proc.stderr.read().decode()[-2000:] if proc.poll() is not None else "no checkpoint was written"
            time.sleep(rng.uniform(0, 0.2))
        finally:
            proc.kill()
            proc.wait()
        mid_write += any(p.name.startswith(".") for p in folder.iterdir())
        written = checkpoints(run_dir)
        for _, path in written[seen:]:
            load_keras(path)  # raises ModelFileError if it is not whole
        seen = len(written)
    assert mid_write >= 1, "no kill landed inside a write: the test did not test that"
    epoch, model, _ = resume_point(run_dir, {})
    assert epoch == seen and model is not None
    assert not [p for p in folder.iterdir() if p.name.startswith(".")]  # the leftovers are gone


@pytest.mark.slow
def test_a_gan_run_whose_last_checkpoint_is_unreadable_resumes_from_the_one_before(tmp_path):
    """A last checkpoint damaged after it was written (a disk error, a copy cut short): skipped with a warning,
    the run goes on from the one before and ends as an uninterrupted run does (~25 s of CPU: three tiny runs)."""
    from drawai import gan
    from drawai.gan.io import load_keras

    sample = data.load_sample(["apple", "cloud", "door"])
    drawings = sample.subset(np.concatenate([np.flatnonzero(sample.labels == c)[:8] for c in range(3)]))
    config = gan.GANConfig(categories=["apple", "cloud", "door"], epochs=2, batch_size=8, noise_dim=8, width=8)
    straight = gan.train(drawings, config, verbose=0)
    run_dir = tmp_path / "run"
    gan.train(drawings, config, run_dir=run_dir, verbose=0)
    last = run_dir / "checkpoints" / "epoch-0002.keras"
    last.write_bytes(last.read_bytes()[:1000])
    with pytest.warns(UserWarning, match="skipping unreadable checkpoint: .*epoch-0002.keras"):
        resumed = gan.train(drawings, config, run_dir=run_dir, resume=True, verbose=0)
    assert [h["epoch"] for h in resumed.train_history] == [1, 2]
    for a, b in zip(straight.generator.variables, resumed.generator.variables, strict=True):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-4, atol=1e-5)
    load_keras(last)  # written again, whole


# --- a write interrupted half-way (what a kill or a full disk does to one file) ----------------------------------

def cut_short(target) -> None:
    """Keep the first half of what was written to `target` (a path or an open file), then fail like a full disk."""
    if hasattr(target, "write"):
        target.flush()
        target.truncate(target.tell() // 2)
    else:
        Path(target).write_bytes(Path(target).read_bytes()[: Path(target).stat().st_size // 2])
    raise OSError(28, "No space left on device")


def test_interrupted_saves_leave_the_previous_model_and_drawings_whole(tmp_path, monkeypatch):
    from drawai import strokes

    model = classifier.build_model("cnn", 3)
    clf = classifier.Classifier(model, ["apple", "cloud", "door"], {"config": {"arch": "cnn"}})
    clf.save(tmp_path / "m")
    before = {k: v.clone() for k, v in clf.model.state_dict().items()}
    with torch.no_grad():
        for p in clf.model.parameters():
            p.add_(1.0)
    real_save_file = classifier.model.save_file
    monkeypatch.setattr(classifier.model, "save_file",
                        lambda tensors, path: (real_save_file(tensors, path), cut_short(path)))
    with pytest.raises(OSError):
        clf.save(tmp_path / "m")
    monkeypatch.undo()
    loaded = classifier.Classifier.load(tmp_path / "m")
    for key, value in loaded.model.state_dict().items():
        assert torch.equal(value, before[key]), key

    # The drawings saved from the drawing pad: a failed append keeps every drawing saved before it.
    path = tmp_path / "mine.npz"
    strokes.append_drawing(path, [[(0, 0), (10, 10)]], "line")
    real_savez = np.savez_compressed
    monkeypatch.setattr(np, "savez_compressed", lambda file, **arrays: (real_savez(file, **arrays), cut_short(file)))
    with pytest.raises(OSError):
        strokes.append_drawing(path, [[(0, 10), (10, 0)]], "zigzag")
    monkeypatch.undo()
    assert strokes.load_drawings(path).labels == ["line"]


# --- a notebook that fails: the command's exit status ------------------------------------------------------------

def test_a_failing_job_exits_non_zero_naming_the_cell_and_the_kept_report(tmp_path, monkeypatch, capsys):
    """tests/test_jobs.py checks the kept partial report and the message of `jobs.run`; this checks the command."""
    nb = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_code_cell("steps = 3", metadata={"tags": ["parameters"]}),
        nbformat.v4.new_code_cell("done = list(range(steps))\nprint('before the failure', done)"),
        nbformat.v4.new_code_cell("open('/nonexistent/data.npy')"),
    ])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    (tmp_path / "nb").mkdir()
    nbformat.write(nb, tmp_path / "nb" / "fails.ipynb")
    monkeypatch.setattr(jobs, "NOTEBOOKS", tmp_path / "nb")
    monkeypatch.setattr(jobs, "RUNS", tmp_path / "runs")
    monkeypatch.setitem(jobs.JOBS, "fails", jobs.Job("fails.ipynb", {"steps": 3}))
    assert jobs.main(["fails", "-p", "steps", "2"]) == 1  # what `python -m drawai.jobs` exits with
    err = capsys.readouterr().err
    report = next((tmp_path / "runs" / "fails").glob("*/fails.ipynb"))
    assert "fails failed in cell 4 (\"open('/nonexistent/data.npy')\"): FileNotFoundError" in err
    assert f"the partial report is kept: {report}" in err
    executed = nbformat.read(report, as_version=4)
    assert any("before the failure [0, 1]" in o.get("text", "") for c in executed.cells for o in c.get("outputs", []))


# --- the download cache: read-only, full, deleted ------------------------------------------------------------------

def npy_bytes(rows: int, seed: int) -> bytes:
    import io

    buf = io.BytesIO()
    np.save(buf, np.random.default_rng(seed).integers(0, 256, (rows, 784), dtype=np.uint8))
    return buf.getvalue()


@pytest.fixture
def server(tmp_path):
    from http_server import FileServer

    root = tmp_path / "bucket" / "numpy_bitmap"
    root.mkdir(parents=True)
    (root / "cat.npy").write_bytes(npy_bytes(300, 0))  # 235 kB
    (root / "hot dog.npy").write_bytes(npy_bytes(200, 1))
    with FileServer(tmp_path / "bucket") as server:
        yield server


def fetch(names, server, cache, **kwargs):
    from drawai import download

    return download.download(names, cache_dir=cache, base_url=server.url, progress=False, backoff=0, **kwargs)


def can_write(folder: Path) -> bool:
    probe = folder / ".write-probe"
    try:
        probe.write_bytes(b"")
    except OSError:
        return False
    probe.unlink()
    return True


@contextlib.contextmanager
def read_only(folder: Path):
    """Make `folder` and everything in it read-only. Root ignores permission bits (tests may run as root),
    so then the folder is made immutable (chattr +i, which stops root too); where neither works the test is
    skipped, saying why, rather than passing without testing anything."""
    paths = [folder, *folder.rglob("*")]
    modes = {p: p.stat().st_mode for p in paths}
    immutable = False
    try:
        for p in paths:
            p.chmod(modes[p] & ~0o222)
        if can_write(folder):
            immutable = subprocess.run(["chattr", "-R", "+i", str(folder)], capture_output=True).returncode == 0
            if not immutable or can_write(folder):
                pytest.skip("running as root, where chmod does not stop writes, and chattr +i is not available")
        yield
    finally:
        if immutable:
            subprocess.run(["chattr", "-R", "-i", str(folder)], check=True)
        for p, mode in modes.items():
            p.chmod(mode)


def test_a_read_only_cache_is_read_and_never_written(server, tmp_path):
    from drawai import download
    from drawai.data import CorruptDataError

    cache = tmp_path / "cache"
    (cat,) = fetch("cat", server, cache)
    download.sidecar_path(cat).unlink()  # as if put there by hand: using it means hashing it
    with read_only(cache):
        assert fetch("cat", server, cache) == [cat]  # cached: used, no request, no write needed
        assert len(server.requests) == 1
        drawings = download.load_numpy_bitmap("cat", cache_dir=cache, max_per_class=5)
        assert len(drawings) == 5 and not download.sidecar_path(cat).exists()
        # a file that is not cached yet: a clear error naming the file, at once (no retries), nothing written
        with pytest.raises(download.DownloadError, match=r"cannot write .*hot dog\.npy\.part: .*read-only cache"):
            fetch("hot dog", server, cache)
        assert len(server.requests) == 2
        assert sorted(p.name for p in (cache / "numpy_bitmap").iterdir()) == ["cat.npy"]
    with read_only(tmp_path):  # a cache folder that cannot even be made
        with pytest.raises(download.DownloadError, match=r"cannot write .*new-cache.*numpy_bitmap"):
            fetch("cat", server, tmp_path / "new-cache")
    # a damaged file in a read-only cache: it cannot be replaced, and it is not used
    cat.write_bytes(cat.read_bytes()[:-1000])
    with read_only(cache):
        with pytest.warns(UserWarning, match="damaged"), \
                pytest.raises(download.DownloadError, match="damaged .* cannot be removed"):
            fetch("cat", server, cache)
        with pytest.raises(CorruptDataError, match="truncated"):
            download.load_numpy_bitmap("cat", cache_dir=cache)


FULL_DISK = r"""
import resource, signal, sys
from drawai import download
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit then fails with EFBIG instead of killing
limit = int(sys.argv[3])
resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))  # root is bound by it too
try:
    download.download("cat", cache_dir=sys.argv[1], base_url=sys.argv[2], progress=False, backoff=0)
except download.DownloadError as e:
    print(e)
    sys.exit(3)
"""


def test_a_full_disk_stops_the_download_with_a_clear_error_and_it_resumes_when_there_is_room(server, tmp_path):
    """The disk fills up 100 kB into a 235 kB file (RLIMIT_FSIZE in a child process stands in for a full disk)."""
    cache = tmp_path / "cache"
    result = subprocess.run([sys.executable, "-c", FULL_DISK, str(cache), server.url, "100000"], capture_output=True,
                            text=True, env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=120)
    assert result.returncode == 3, result.stderr[-2000:]
    assert "cannot write" in result.stdout and "cat.npy.part: File too large" in result.stdout
    assert "the 100000 bytes so far are kept in it to resume from" in result.stdout
    assert len(server.requests) == 1  # a disk error is not retried
    assert sorted(p.name for p in (cache / "numpy_bitmap").iterdir()) == ["cat.npy.part"]
    (cat,) = fetch("cat", server, cache)  # room again: the same call resumes
    assert [r.range for r in server.requests] == [None, "bytes=100000-"]
    assert cat.read_bytes() == npy_bytes(300, 0)


def test_a_cache_deleted_between_runs_or_during_a_retry_is_downloaded_again(server, tmp_path, monkeypatch):
    import shutil

    from http_server import Fault

    from drawai import download

    cache = tmp_path / "cache"
    fetch(["cat", "hot dog"], server, cache)
    shutil.rmtree(cache)
    with pytest.raises(FileNotFoundError, match=r"not in .*cache.*download=True"):
        download.load_numpy_bitmap("cat", cache_dir=cache)
    (cat,) = fetch("cat", server, cache)
    assert cat.read_bytes() == npy_bytes(300, 0) and len(server.requests) == 3

    # deleted while a dropped download waits to retry: the retry starts again from byte 0
    shutil.rmtree(cache)
    server.add_fault(Fault("drop", after=50_000))
    monkeypatch.setattr(download.time, "sleep", lambda seconds: shutil.rmtree(cache))
    (cat,) = fetch("cat", server, cache)
    assert [r.range for r in server.requests[3:]] == [None, None]
    assert cat.read_bytes() == npy_bytes(300, 0)


def test_a_dataset_whose_cache_is_deleted(tmp_path):
    import shutil

    from drawai import bitmaps, distributed

    cache = tmp_path / "cache"
    rows = bitmaps.numpy_bitmap_style(data.load_sample(["cat"]).images[:20], seed=0).reshape(20, 784)
    (cache / "numpy_bitmap").mkdir(parents=True)
    np.save(cache / "numpy_bitmap" / "cat.npy", rows)
    reading = distributed.NumpyBitmapDataset(["cat"], "all", cache_dir=cache, canonical=False)
    first = reading.raw([0])[0]  # its file is mapped now
    unread = distributed.NumpyBitmapDataset(["cat"], "all", cache_dir=cache, canonical=False)
    shutil.rmtree(cache)
    # A mapped file stays readable after it is deleted (POSIX): the running epoch finishes with the right data.
    assert np.array_equal(reading.raw(np.arange(20))[0].reshape(20, 784), rows)
    assert np.array_equal(first[0], rows[0].reshape(28, 28))
    with pytest.raises(FileNotFoundError, match=r"cat\.npy was removed after this dataset was made.*download cat"):
        unread.raw([0])
    with pytest.raises(FileNotFoundError, match="download them first"):
        distributed.NumpyBitmapDataset(["cat"], "all", cache_dir=cache)

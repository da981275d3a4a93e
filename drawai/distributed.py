"""Past one machine: the full Quick, Draw! dataset through memory maps, and the classifier trained across processes.

Three pieces, on PyTorch's own engines (torchrun, DistributedDataParallel, DataLoader workers):

- `NumpyBitmapDataset`: the cached numpy_bitmap files (`drawai.download`) as a torch Dataset. Files are
  memory-mapped (`np.load(mmap_mode="r")`), so memory does not grow with the data: a batch reads its
  rows and nothing else. Items are canonicalised (`bitmaps.to_canonical`) a batch at a time, inside
  DataLoader worker processes when `num_workers` > 0: that is the expensive part (docs/scaling.md).
- `SimplifiedStream`: the cached `simplified` ndjson files (vector strokes) as a torch IterableDataset, read
  line by line and rendered into the same canonical form on the fly (`drawai.strokes`).
- `train_torchrun`: `classifier.train` in several processes on this machine, started by torchrun
  (`scripts/train_ddp.py`); what the train-classifier job runs for `-p nproc 2`. The process-group side of
  training (each process's shard of every epoch, DDP, rank 0 alone writing the checkpoint) is
  `drawai.process_group`.

    torchrun --standalone --nproc_per_node=2 scripts/train_ddp.py --categories classic10 --out runs/ddp

`throughput()` measures images/second for 1 and 2 processes and for the preprocessing per worker count
(`python -m drawai.distributed`). docs/scaling.md has the commands for GPUs and several machines.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, IterableDataset, get_worker_info

from drawai import bitmaps, classifier, data, download, model_folder, process_group, seeds
from drawai import categories as cats
from drawai.checks import is_whole
from drawai.data import CorruptDataError
from drawai.paths import ROOT, SCRIPTS

PARTS = ("train", "test", "all")


# --- the full dataset, memory-mapped -------------------------------------------------------------------------


def cached_files(categories, kind: str, cache_dir) -> list[Path]:
    """The cached `kind` file of each category; a FileNotFoundError saying how to download the missing ones."""
    paths = [download.cached_path(n, kind, cache_dir) for n in categories]
    missing = [n for n, p in zip(categories, paths, strict=True) if not p.exists()]
    if missing:
        option = "" if kind == "numpy_bitmap" else f"--kind {kind} "
        raise FileNotFoundError(
            f"{len(missing)} {kind} file(s) are not in {paths[0].parent}: {missing[:5]}"
            f"{'...' if len(missing) > 5 else ''}; download them first: python -m drawai.download {option}"
            f"{' '.join(repr(n) if ' ' in n else n for n in missing[:3])}{' ...' if len(missing) > 3 else ''}")
    return paths

class NumpyBitmapDataset(Dataset):
    """Drawings of cached numpy_bitmap files, read lazily through memory maps.

    Item i is (image, label): a (1, 28, 28) float32 tensor in the canonical form (with `canonical=False`,
    the (28, 28) uint8 bitmap as the file ships it) and an int64 index into `categories`.
    Each category uses the first `max_per_class` rows of its file. Of those, every `test_every`-th row
    (rows 0, 5, 10, ... for 5) is the "test" part and the others the "train" part: a rule on the row
    number, so a drawing's part never depends on the cap, on the other categories, or on an array of
    indices that would grow with the data. The class keeps a few numbers per category, never rows.
    """

    def __init__(self, categories, part: str = "train", max_per_class: int | None = None, test_every: int = 5,
                 cache_dir: str | os.PathLike | None = None, canonical: bool = True):
        if part not in PARTS:
            raise ValueError(f"part must be one of {PARTS}, got {part!r}")
        for name, value, low in (("max_per_class", max_per_class, 1), ("test_every", test_every, 2)):
            if value is not None and not is_whole(value, low):
                raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
        self.categories = tuple(cats.resolve(categories))
        self.part, self.test_every, self.canonical = part, test_every, canonical
        self.paths = cached_files(self.categories, "numpy_bitmap", cache_dir)
        record, self.rows = [], []
        for name, path in zip(self.categories, self.paths, strict=True):
            try:
                rows = download._check_bitmap_file(path)  # header and length only: O(1) reads
            except ValueError as e:
                raise CorruptDataError(f"{path}: {e}; delete it and download it again") from None
            self.rows.append(min(rows, max_per_class or rows))
            record.append(f"{name}\t{download.recorded_sha256(path)}\t{self.rows[-1]}")
        record.append(f"{part}\t{test_every}")
        self.checksum = hashlib.sha256("\n".join(record).encode()).hexdigest()  # exactly the rows used
        self.source = "numpy_bitmap"
        n = np.array(self.rows, dtype=np.int64)
        n_test = -(-n // test_every)  # rows 0, k, 2k, ... below n
        self.counts = {"train": n - n_test, "test": n_test, "all": n}[part]
        self.offsets = np.concatenate([[0], np.cumsum(self.counts)])
        self._maps: list[np.ndarray] | None = None  # opened on first use in each process

    def __len__(self) -> int:
        return int(self.offsets[-1])

    def item_labels(self) -> np.ndarray:
        """The label of every item, in item order (int64, 8 bytes an item; nothing is read from the files)."""
        return np.repeat(np.arange(len(self.categories), dtype=np.int64), self.counts)

    def __getstate__(self):  # a DataLoader worker started by spawn gets the paths, not a copy of the data
        return {**self.__dict__, "_maps": None}

    def _open(self) -> list[np.ndarray]:
        if self._maps is None:
            try:  # once open, a map keeps its file readable even if the cache is deleted (POSIX)
                self._maps = [np.load(p, mmap_mode="r", allow_pickle=False) for p in self.paths]
            except FileNotFoundError as e:
                name = Path(e.filename).stem
                raise FileNotFoundError(f"{e.filename} was removed after this dataset was made (the cache deleted?); "
                                        f"download it again: python -m drawai.download "
                                        f"{repr(name) if ' ' in name else name}") from None
        return self._maps

    def locate(self, indices) -> tuple[np.ndarray, np.ndarray]:
        """(label, row in the label's file) of each item index."""
        i = np.asarray(indices, dtype=np.int64)
        if i.size and (i.min() < 0 or i.max() >= len(self)):
            raise IndexError(f"item index out of range for a dataset of {len(self)} drawings")
        label = np.searchsorted(self.offsets, i, side="right") - 1
        j, k = i - self.offsets[label], self.test_every
        row = {"test": j * k, "train": j // (k - 1) * k + 1 + j % (k - 1), "all": j}[self.part]
        return label, row

    def raw(self, indices) -> tuple[np.ndarray, np.ndarray]:
        """The uint8 (N, 28, 28) bitmaps and labels of `indices`, as the files ship them."""
        labels, rows = self.locate(indices)
        out = np.empty((len(labels), 28, 28), dtype=np.uint8)
        maps = self._open()
        for c in np.unique(labels):  # one fancy-indexed read per file, rows in file order
            at = np.flatnonzero(labels == c)
            at = at[np.argsort(rows[at], kind="stable")]
            out[at] = maps[c][rows[at]].reshape(-1, 28, 28)
        return out, labels

    def __getitems__(self, indices: list[int]) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """A batch at once (DataLoader calls this): one read per file, one `to_canonical` for the batch."""
        raw, labels = self.raw(indices)
        if not self.canonical:
            return list(zip(torch.from_numpy(raw), torch.from_numpy(labels), strict=True))
        try:
            images = bitmaps.to_canonical(raw)
        except bitmaps.BadBitmapError:  # a blank drawing in the files: drop it, not the batch (or the run)
            keep, images = [], []
            for i, image in enumerate(raw):
                try:
                    images.append(bitmaps.to_canonical(image))
                    keep.append(i)
                except bitmaps.BadBitmapError as e:
                    label, row = self.locate([indices[i]])
                    warnings.warn(f"skipping drawing {row[0]} of {self.paths[label[0]].name}: {e}", stacklevel=2)
            if not keep:
                raise bitmaps.EmptyDrawingError(f"no readable drawing in a batch of {len(raw)}") from None
            images, labels = np.stack(images), labels[keep]
        return list(zip(torch.from_numpy(images)[:, None], torch.from_numpy(labels), strict=True))

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        (image, label), = self.__getitems__([index])
        return image, label


# --- the simplified ndjson files, streamed and rendered on the fly ------------------------------------------------

class SimplifiedStream(IterableDataset):
    """Drawings of cached `simplified` .ndjson files (vector strokes), read line by line and rendered into the
    canonical form as they are needed (`strokes.render_many`, the brush `bitmaps.to_canonical` uses).

    Items are ((1, 28, 28) float32 canonical image, int64 label), like `NumpyBitmapDataset`'s. Each file is
    streamed by `download.read_simplified` (constant memory, whatever its size), at most `max_per_class`
    drawings of each (`recognized_only`: those the game's model recognised). The categories take turns, one
    drawing each, so every stretch of the stream mixes them; `shuffle_buffer` > 0 shuffles further within a
    buffer of that many drawings, seeded by (seed, epoch) (`set_epoch`). Under torchrun and in DataLoader
    workers the stream is dealt out: each process and worker renders every n-th drawing, so together they
    yield each drawing once (each still reads every line: parsing is cheap next to rendering).
    A drawing that cannot be rendered (empty) is skipped with a warning; a damaged line is a CorruptDataError.
    """

    def __init__(self, categories, max_per_class: int | None = None, recognized_only: bool = False,
                 cache_dir: str | os.PathLike | None = None, shuffle_buffer: int = 0, seed: int = 0,
                 render_batch: int = 256):
        for name, value, low in (("max_per_class", max_per_class, 1), ("shuffle_buffer", shuffle_buffer, 0),
                                 ("render_batch", render_batch, 1)):
            if value is not None and not is_whole(value, low):
                raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
        self.categories = tuple(cats.resolve(categories))
        self.paths = cached_files(self.categories, "simplified", cache_dir)
        self.max_per_class, self.recognized_only = max_per_class, recognized_only
        self.shuffle_buffer, self.seed, self.render_batch, self.epoch = shuffle_buffer, seed, render_batch, 0
        self.source = "simplified (rendered by drawai.strokes)"

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def drawings(self):
        """(label, drawing record) in stream order, every process and worker alike: one of each category in turn."""
        readers = [(label, download.read_simplified(path, self.max_per_class, self.recognized_only))
                   for label, path in enumerate(self.paths)]
        while readers:
            still = []
            for label, reader in readers:
                drawing = next(reader, None)
                if drawing is None:
                    continue
                if drawing.get("word") != self.categories[label]:
                    raise CorruptDataError(f"{self.paths[label]} holds a drawing of {drawing.get('word')!r}, not "
                                           f"{self.categories[label]!r}: delete it and download it again")
                still.append((label, reader))
                yield label, drawing
            readers = still

    def __iter__(self):
        from drawai import strokes

        rank, world = process_group.rank_and_world()
        worker = get_worker_info()
        workers, worker_id = (worker.num_workers, worker.id) if worker else (1, 0)
        share, shares = rank * workers + worker_id, world * workers
        rng = seeds.rng(self.seed, seeds.STREAM_ORDER, self.epoch, share)
        buffer: list = []

        def rendered(chunk):
            try:
                images = strokes.render_many([d for _, d in chunk])
            except ValueError:  # an empty drawing in the chunk: render one by one, skip it, keep the rest
                images, kept = [], []
                for label, drawing in chunk:
                    try:
                        images.append(strokes.render_strokes(drawing))
                        kept.append((label, drawing))
                    except ValueError as e:
                        warnings.warn(f"skipping drawing {drawing.get('key_id')} of {drawing.get('word')!r}: {e}",
                                      stacklevel=2)
                chunk, images = kept, np.stack(images) if images else np.zeros((0, 28, 28), np.float32)
            for (label, _), image in zip(chunk, images, strict=True):
                yield torch.from_numpy(image)[None], torch.tensor(label, dtype=torch.int64)

        def mine():
            chunk = []
            for i, item in enumerate(self.drawings()):
                if i % shares == share:
                    chunk.append(item)
                    if len(chunk) == self.render_batch:
                        yield from rendered(chunk)
                        chunk = []
            yield from rendered(chunk)

        for item in mine():
            if not self.shuffle_buffer:
                yield item
                continue
            buffer.append(item)
            if len(buffer) == self.shuffle_buffer:  # give out a random one, keep the rest
                yield buffer.pop(int(rng.integers(len(buffer))))
        while buffer:
            yield buffer.pop(int(rng.integers(len(buffer))))


# --- the classifier under torchrun on this machine -----------------------------------------------------------

def run_train_ddp(nproc: int, args: list[str]) -> subprocess.CompletedProcess:
    """`scripts/train_ddp.py args` in `nproc` processes started by torchrun on this machine, meeting on 127.0.0.1
    (gloo on the loopback interface unless GLOO_SOCKET_IFNAME says otherwise). Raises if it fails."""
    cmd = [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={nproc}", "--rdzv-backend=c10d",
           "--rdzv-endpoint=127.0.0.1:0", str(SCRIPTS / "train_ddp.py"), *args]
    env = {"GLOO_SOCKET_IFNAME": "lo0" if sys.platform == "darwin" else "lo", **os.environ,  # loopback only
           "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    run = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if run.returncode:
        raise RuntimeError(f"{' '.join(cmd)} failed (exit status {run.returncode}):\n{run.stderr[-3000:]}")
    return run


def train_torchrun(nproc: int, categories, config, out: str | os.PathLike, resume: bool = True) -> tuple:
    """`classifier.train` on the embedded sample's shared split, in `nproc` processes (torchrun, DDP) on this
    machine: what the train-classifier job runs for `-p nproc 2`. Waits for them; returns (classifier, history)
    like `classifier.train`, from the model rank 0 wrote to `out/model` (its checkpoint: `out/checkpoint`).

    The processes read DataLoaders, so they train without the in-memory path's second, heavier-stroke rendering.
    """
    names = cats.resolve(categories)
    defaults = classifier.TrainConfig(arch=config.arch)
    if (config.weight_decay, config.label_smoothing, config.arch_kwargs) != (
            defaults.weight_decay, defaults.label_smoothing, defaults.arch_kwargs):
        raise ValueError("scripts/train_ddp.py trains with the default weight_decay, label_smoothing and arch_kwargs")
    args = ["--source", "sample", "--categories", *names, "--arch", config.arch, "--epochs", str(config.epochs),
            "--batch-size", str(config.batch_size), "--lr", str(config.lr), "--seed", str(config.seed),
            "--threads", str(config.threads), "--out", str(out), "--no-progress"]
    run = run_train_ddp(nproc, args + ([] if config.augment else ["--no-augment"]) + ([] if resume else ["--fresh"]))
    print(run.stdout.strip().splitlines()[-1] if run.stdout.strip() else "", flush=True)
    clf = classifier.Classifier.load(Path(out) / "model", categories=names)
    return clf, clf.manifest["history"]


# --- how fast: images/second ---------------------------------------------------------------------------------

def _training_rate(tmp: str, procs: int, threads: int, args: list[str]) -> float:
    """Images/s of `scripts/train_ddp.py` under torchrun on 127.0.0.1: training drawings / median epoch time,
    leaving out the first epoch (warm-up)."""
    out = Path(tmp) / f"run-{len(os.listdir(tmp))}"
    run_train_ddp(procs, [*args, "--threads", str(threads), "--out", str(out), "--no-progress"])
    manifest = model_folder.read(out / "model", "classifier")
    return manifest["data"]["train_drawings"] / float(np.median([h["seconds"] for h in manifest["history"][1:]]))


def throughput(layouts=((1, 1), (1, 2), (2, 1)), categories="classic10", per_class: int = 100, epochs: int = 3,
               batch_size: int = 128, workers=(0, 1, 2), verbose: bool = True) -> dict:
    """Measure and print images/second, three ways (`make bench`; `python -m drawai.distributed`):

    - model: training on the embedded sample, canonicalised once up front (so the model and the gradient
      all-reduce), for each (processes, threads per process) in `layouts`;
    - preprocessing: `to_canonical` over numpy_bitmap files (written from the sample with
      `bitmaps.numpy_bitmap_style`) through a DataLoader with 0, 1, 2... `workers`;
    - end to end: training from those files, 1 and 2 processes with one DataLoader worker each.
    Every process and worker competes for the same cores: compare layouts that use as many cores, and read
    the numbers against the machine's load average, printed with them.
    """
    names = cats.resolve(categories)
    result = {"cpus": os.cpu_count(), "load_average": os.getloadavg()[0], "model": {}, "preprocessing": {},
              "end_to_end": {}}
    say = print if verbose else (lambda *a, **k: None)
    plural = lambda n, word: f"{n} {word}{'' if n == 1 else 'es' if word.endswith('s') else 's'}"  # noqa: E731
    say(f"draw-ai throughput: {os.cpu_count()} CPUs, load average {result['load_average']:.1f} at the start; "
        f"{len(names)} categories, {per_class} drawings each, batch {batch_size}, images/s")
    common = ["--categories", *names, "--per-class", str(per_class), "--epochs", str(epochs),
              "--batch-size", str(batch_size)]
    with tempfile.TemporaryDirectory(prefix="drawai-bench-") as tmp:
        runs, cache = Path(tmp) / "runs", Path(tmp) / "cache"
        runs.mkdir()
        for procs, threads in layouts:
            rate = result["model"][f"{procs}x{threads}"] = _training_rate(runs, procs, threads,
                                                                          ["--source", "sample", *common])
            say(f"  model, {plural(procs, 'process')} x {plural(threads, 'thread')}: {rate:8.0f}")
        one, two = result["model"].get("1x1"), result["model"].get("2x1")
        if one and two:
            result["scaling_efficiency"] = two / (2 * one)
            say(f"  model, 2 processes vs 1 (1 thread each): speed-up {two / one:.2f}x, "
                f"scaling efficiency {result['scaling_efficiency']:.0%}")

        sample = data.load_sample(names)
        for c, name in enumerate(names):
            rows = bitmaps.numpy_bitmap_style(sample.images[sample.labels == c][:per_class], seed=c)
            path = download.cached_path(name, "numpy_bitmap", cache)
            path.parent.mkdir(parents=True, exist_ok=True)
            np.save(path, rows.reshape(len(rows), -1))
        dataset = NumpyBitmapDataset(names, "all", cache_dir=cache)
        threads = torch.get_num_threads()
        torch.set_num_threads(1)  # as in a torchrun process (and in DataLoader workers, which torch sets so)
        try:
            for n in workers:
                loader = DataLoader(dataset, batch_size=64, num_workers=n, persistent_workers=n > 0)
                sum(len(y) for _, y in loader)  # warm-up: workers started, files mapped
                t0 = time.perf_counter()
                count = sum(len(y) for _ in range(2) for _, y in loader)
                rate = result["preprocessing"][n] = count / (time.perf_counter() - t0)
                del loader  # stops its workers
                say(f"  preprocessing (to_canonical), {plural(n, 'DataLoader worker')}: {rate:8.0f}")
        finally:
            torch.set_num_threads(threads)

        for procs in (1, 2):
            args = ["--source", "numpy_bitmap", "--cache-dir", str(cache), "--workers", "1", "--eval-per-class", "0"]
            rate = result["end_to_end"][procs] = _training_rate(runs, procs, 1, [*args, *common])
            say(f"  end to end from numpy_bitmap files, {plural(procs, 'process')} x 1 thread, 1 worker each: "
                f"{rate:8.0f}")
    return result


if __name__ == "__main__":
    throughput()

"""Training: `train` runs `model.fit` with the callbacks it needs every epoch (losses and timings, an atomically
written checkpoint, a sample grid, a printed line), resumes a run from its folder's last complete checkpoint, at
the end fits the model's noise and ink curve to the training drawings, and last trains its stroke refiner
(`train_refiner`), checkpointed and resumed the same way."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import time
import warnings
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from drawai import categories as cats
from drawai import data, seeds
from drawai.gan.config import GANConfig, GANInputError, ModelFileError
from drawai.gan.data import check_same, file_loader, is_chief, memory_dataset, streamed_dataset, training_arrays
from drawai.gan.io import load_keras, take_part_in_save
from drawai.gan.model import ConditionalGAN, PerLabelGAN, build
from drawai.gan.refiner import BATCH, LEARNING_RATE, StrokeRefiner
from drawai.io import atomic_write, write_json

HISTORY = {"epoch": "history.json", "refiner": "refiner-history.json"}  # each checkpoint name's per-epoch log


def grid_image(images: np.ndarray, rows: int) -> np.ndarray:
    """(rows * cols, 28, 28) in [0, 1] -> one uint8 picture, a 2 px grey line between drawings."""
    cols = len(images) // rows
    out = np.full((rows * 30 + 2, cols * 30 + 2), 64, np.uint8)
    for i, img in enumerate(images[: rows * cols]):
        r, c = divmod(i, cols)
        out[2 + r * 30: 30 + r * 30, 2 + c * 30: 30 + c * 30] = np.round(img * 255)
    return out


class SampleGrid(keras.callbacks.Callback):
    """After every epoch, draw `n` of each of (up to) 10 labels from fixed noise: arrays in `.grids`
    (epoch -> (labels * n, 28, 28)) and, with `folder`, a PNG `epoch-XXXX.png` (rows are labels)."""

    def __init__(self, labels=None, n: int = 8, seed: int = 1234, folder: str | Path | None = None):
        super().__init__()
        self.labels, self.n, self.seed = labels, n, seed
        self.folder = Path(folder) if folder else None
        self.grids: dict[int, np.ndarray] = {}

    def on_epoch_end(self, epoch, logs=None):
        labels = self.labels if self.labels is not None else list(range(min(10, len(self.model.categories))))
        # the fitted noise exists only once training ends; until then, the N(0, 1) the generator trains on
        noise = "model" if self.model.noise in self.model.noises else "normal"
        images = self.model.generate(labels, self.n, self.seed, noise=noise)
        self.grids[epoch + 1] = images
        if self.folder:
            from PIL import Image

            self.folder.mkdir(parents=True, exist_ok=True)
            picture = Image.fromarray(grid_image(images, len(images) // self.n)).resize(
                (2 * (self.n * 30 + 2), 2 * (len(images) // self.n * 30 + 2)), Image.Resampling.NEAREST)
            atomic_write(self.folder / f"epoch-{epoch + 1:04d}.png", lambda p: picture.save(p, format="PNG"))


class EpochLog(keras.callbacks.Callback):
    """Appends every epoch's losses, time and images/s to `history`; with `run_dir`, then writes
    `checkpoints/<name>-XXXX.keras` and its history file (`HISTORY[name]`) atomically (checkpoint first: history
    never names an epoch that has no checkpoint), keeping the last `keep` checkpoints. `name`: "epoch" for the
    GAN's, "refiner" for its refiner's."""

    def __init__(self, history: list[dict], images_per_epoch: int, run_dir: Path | None = None, keep: int = 2,
                 chief: bool = True, name: str = "epoch"):
        super().__init__()
        self.history, self.images_per_epoch, self.run_dir, self.keep = history, images_per_epoch, run_dir, keep
        self.chief = chief  # with several workers, the others save too (in step with it) but keep nothing
        self.name = name

    def on_epoch_begin(self, epoch, logs=None):
        self.start, self.cpu_start = time.perf_counter(), time.process_time()

    def on_epoch_end(self, epoch, logs=None):
        # Wall time says how long it took; CPU time (all threads) says how much work it was, even
        # on a machine shared with other jobs.
        seconds, cpu = time.perf_counter() - self.start, time.process_time() - self.cpu_start
        self.history.append({"epoch": epoch + 1, **{k: round(float(v), 5) for k, v in (logs or {}).items()},
                             "seconds": round(seconds, 3), "cpu_seconds": round(cpu, 3),
                             "images_per_s": round(self.images_per_epoch / seconds, 1)})
        if self.run_dir is None:
            return
        if not self.chief:
            take_part_in_save(self.model)
            return
        folder = self.run_dir / "checkpoints"
        folder.mkdir(parents=True, exist_ok=True)
        atomic_write(folder / f"{self.name}-{epoch + 1:04d}.keras", self.model.save)
        write_json(self.run_dir / HISTORY[self.name], self.history)
        for old in checkpoints(self.run_dir, self.name)[: -self.keep]:
            old[1].unlink()


class EpochPrinter(keras.callbacks.Callback):
    """One printed line per epoch: epoch/total, the losses (g_loss and d_loss; the refiner's flow_loss), elapsed time
    and ETA (`drawai.progress`). A job streams it to the terminal: `train(..., verbose=0, callbacks=[EpochPrinter()])`.
    """

    def on_train_begin(self, logs=None):
        from drawai.progress import StepPrinter

        self.printer = StepPrinter(self.params["epochs"],
                                   "refiner epoch" if isinstance(self.model, StrokeRefiner) else "epoch")

    def on_epoch_end(self, epoch, logs=None):
        losses = {k: float(np.ravel(v)[0]) for k, v in (logs or {}).items() if k.endswith("loss")}
        self.printer(epoch + 1, "  ".join(f"{k} {v:.3f}" for k, v in sorted(losses.items(), reverse=True)))


def checkpoints(run_dir: Path, name: str = "epoch") -> list[tuple[int, Path]]:
    """(epoch, path) of every checkpoint in `run_dir/checkpoints` named `name` (the GAN's "epoch", the refiner's
    "refiner"), oldest first."""
    found = [(int(m.group(1)), p) for p in (Path(run_dir) / "checkpoints").glob(f"{name}-*.keras")
             if (m := re.fullmatch(rf"{name}-(\d+)\.keras", p.name))]
    return sorted(found)


def resume_point(run_dir: Path, run_record: dict) -> tuple[int, ConditionalGAN | PerLabelGAN | None, list[dict]]:
    """(epochs done, model, history) from the last loadable checkpoint of a run, or (0, None, [])."""
    for stale in (Path(run_dir) / "checkpoints").glob(".*.tmp-*"):  # a write cut short by a kill: never read
        stale.unlink()
    record_path = run_dir / "run.json"
    if record_path.exists():
        differ = record_differences(json.loads(record_path.read_text()), run_record)
        if differ:
            raise ModelFileError(f"{run_dir} holds a different run (differs in: {differ}); "
                                 "use a new run_dir, or the same config and data")
    for epoch, path in reversed(checkpoints(run_dir)):
        try:
            model = load_keras(path)
        except ModelFileError as e:
            warnings.warn(f"skipping unreadable checkpoint: {e}", stacklevel=3)
            continue
        history_path = run_dir / "history.json"
        history = json.loads(history_path.read_text()) if history_path.exists() else []
        return epoch, model, [h for h in history if h["epoch"] <= epoch]
    return 0, None, []


def record_differences(a: dict, b: dict) -> list[str]:
    """The keys in which two run records differ, except `epochs`, which may grow on resume (an epoch's
    batches do not depend on the total; an auxiliary weight's ramp stretches), `preset`, a label, and `truncation`,
    which only changes generate(). A config field missing from a record (written before it existed) had its default."""
    defaults = {f.name: f.default for f in dataclasses.fields(GANConfig)}

    def flat(record):
        config = {f"config.{k}": v for k, v in {**defaults, **record.get("config", {})}.items()
                  if k not in ("epochs", "preset", "truncation")}
        return {**{k: v for k, v in record.items() if k != "config"}, **config}

    a, b = flat(json.loads(json.dumps(a))), flat(json.loads(json.dumps(b)))  # as JSON has them: tuples are lists
    return sorted(k for k in a.keys() | b.keys() if a.get(k) != b.get(k))


def configure_threads() -> None:
    """One intra-op pool over the CPUs this process may use, and no inter-op pool on top of it
    (the GAN step is one chain of ops: two pools only oversubscribe a small machine)."""
    try:
        tf.config.threading.set_intra_op_parallelism_threads(len(os.sched_getaffinity(0)))
        tf.config.threading.set_inter_op_parallelism_threads(1)
    except RuntimeError:
        pass  # TF already started: threads are fixed for this process


def train(train_set, config: GANConfig, run_dir: str | Path | None = None,
          resume: bool = False, callbacks: list | None = None, verbose="auto") -> ConditionalGAN | PerLabelGAN:
    """Train a GAN on `train_set` (None: the embedded sample's training split of `config.categories`).

    `train_set` is `data.Drawings` (held in memory) or a `distributed.NumpyBitmapDataset` (the cached full
    dataset, read batch by batch). Called inside a tf.distribute strategy's scope, training is spread over its
    replicas (see the `drawai.gan` docstring).
    With `run_dir`, every epoch writes a checkpoint, `history.json` and a sample grid PNG there, and
    `resume=True` continues from the last complete checkpoint (a finished run returns at once).
    The per-epoch log (losses, seconds, CPU seconds, images/s) is `model.train_history`. With
    `config.refiner_epochs`, the stroke refiner trains last (`train_refiner`); `callbacks` go to both fits.
    """
    if resume and run_dir is None:
        raise GANInputError("resume=True needs the run_dir of the run to continue")
    configure_threads()
    if train_set is None:
        train_set = data.train_test(data.load_sample(config.categories))[0]
    if list(train_set.categories) != cats.resolve(config.categories):
        raise GANInputError(f"the drawings' categories ({len(train_set.categories)}) are not config.categories "
                            f"({config.categories!r}); set config.categories to match")
    strategy = tf.distribute.get_strategy()  # the default one (one process, no copies) outside any scope
    replicas = strategy.num_replicas_in_sync
    if replicas > 1 and config.recipe == "per_label":
        raise GANInputError("the per_label recipe trains one label's network per batch and is not distributed; "
                            "use recipe='conditional' with several replicas")
    if config.batch_size % replicas:
        raise GANInputError(f"batch_size {config.batch_size} must be divisible by the {replicas} replicas")
    if isinstance(train_set, data.Drawings):
        images, labels = training_arrays(train_set)
    else:  # the full dataset: labels now, images batch by batch
        images, labels = None, train_set.item_labels().astype(np.int32)
    record = {"kind": "drawai.gan.run", "config": config.to_dict(), "data_checksum": train_set.checksum,
              "data_source": train_set.source, "n_train": len(labels)}
    chief = is_chief(strategy)  # with several workers, the chief writes the run folder; every worker reads it
    start, model, history = 0, None, []
    if run_dir is not None:
        run_dir = Path(run_dir)
        if checkpoints(run_dir) and not resume:
            raise ModelFileError(f"{run_dir} already has checkpoints; pass resume=True to continue that run, "
                                 "or use a new run_dir (nothing was overwritten)")
        if resume:
            start, model, history = resume_point(run_dir, record)
        if chief:
            run_dir.mkdir(parents=True, exist_ok=True)
            write_json(run_dir / "run.json", record)
    if model is None:
        model = build(config, list(train_set.categories))
    model.truncation = config.truncation  # a checkpoint may have been written under another (generate-only) setting
    model.train_record = record
    check_same(strategy, start, f"the epoch to start from ({run_dir} must be storage every worker sees)")
    if start < config.epochs:
        epochs = range(start, config.epochs)
        dataset, steps, images_per_epoch = _batches(train_set, images, labels, epochs,
                                                    config.batch_size, config.seed, config.recipe == "per_label",
                                                    seeds.GAN_EPOCH_ORDER)
        model.ramp_steps = config.epochs * steps  # the whole run's, wherever it starts
        model.compile(optimizer=None, jit_compile=False)
        all_callbacks = [EpochLog(history, images_per_epoch, run_dir, chief=chief)]
        if run_dir is not None and chief:
            all_callbacks.append(SampleGrid(folder=run_dir / "samples"))
        all_callbacks += list(callbacks or [])
        model.fit(dataset, epochs=config.epochs, initial_epoch=start, steps_per_epoch=steps,
                  callbacks=all_callbacks, shuffle=False, verbose=verbose)
    model.train_history = history
    model.finalize()
    _fit_after_training(model, train_set, images, labels)
    if config.refiner_epochs:
        train_refiner(model, train_set, config, run_dir, resume, callbacks, verbose)
    return model


def _batches(train_set, images, labels, epochs: range, batch_size: int, seed: int, one_label: bool, stream: int):
    """(dataset, steps, images) of `epochs` of batches: gathered from `images` in memory when they are there and
    nothing is distributed, else read batch by batch (from `train_set`'s files when `images` is None)."""
    if images is not None and not tf.distribute.has_strategy():
        return memory_dataset(images, labels, epochs, batch_size, seed, one_label, stream)
    load = (lambda index: (images[index], labels[index])) if images is not None else file_loader(train_set)
    return streamed_dataset(load, labels, epochs, batch_size, seed, one_label, stream)


def train_refiner(model: ConditionalGAN, train_set, config: GANConfig, run_dir: str | Path | None = None,
                  resume: bool = False, callbacks: list | None = None, verbose="auto") -> StrokeRefiner:
    """Train a `StrokeRefiner` for `config.refiner_epochs` epochs on `train_set`'s drawings (flow matching, from
    `config.refine_start`) and attach it to `model`, whose `generate` then redraws with it, then fit the model's ink
    curves (`fit_ink`: the refiner's, on its redrawings); `train` calls it last. Returns the attached refiner.
    With `run_dir`, every epoch writes `checkpoints/refiner-XXXX.keras` and `refiner-history.json`, and
    `resume=True` continues from the last complete one. The per-epoch log is `model.refiner_history`."""
    if not config.refiner_epochs:
        raise GANInputError("train_refiner needs config.refiner_epochs > 0")
    configure_threads()
    if isinstance(train_set, data.Drawings):
        images, labels = training_arrays(train_set)
    else:
        images, labels = None, train_set.item_labels().astype(np.int32)
    chief = is_chief(tf.distribute.get_strategy())
    start, refiner, history = 0, None, []
    if run_dir is not None:
        run_dir = Path(run_dir)
        found = checkpoints(run_dir, "refiner")
        if found and not resume:
            raise ModelFileError(f"{run_dir} already has refiner checkpoints; pass resume=True to continue that run, "
                                 "or use a new run_dir (nothing was overwritten)")
        for epoch, path in reversed(found if resume else []):
            try:
                refiner = load_keras(path, "refiner")
            except ModelFileError as e:
                warnings.warn(f"skipping unreadable refiner checkpoint: {e}", stacklevel=2)
                continue
            log = run_dir / HISTORY["refiner"]
            start, history = epoch, [h for h in (json.loads(log.read_text()) if log.exists() else [])
                                     if h["epoch"] <= epoch]
            break
    if refiner is None:
        keras.utils.set_random_seed(seeds.integers(config.seed, seeds.REFINER_INIT)[0])
        w = config.refiner_width
        refiner = StrokeRefiner(len(model.categories), (w, 2 * w, 4 * w), config.refine_start, seed=config.seed,
                                name="refiner")
        refiner.compile(optimizer=keras.optimizers.Adam(LEARNING_RATE))
        refiner.optimizer.build(refiner.trainable_variables)  # BuiltBeforeFit: all there before fit
    check_same(tf.distribute.get_strategy(), start, f"the refiner epoch to start from ({run_dir} must be storage "
               "every worker sees)")
    if start < config.refiner_epochs:
        dataset, steps, images_per_epoch = _batches(train_set, images, labels, range(start, config.refiner_epochs),
                                                    BATCH, config.seed, False, seeds.REFINER_EPOCH_ORDER)
        refiner.fit(dataset, epochs=config.refiner_epochs, initial_epoch=start, steps_per_epoch=steps,
                    callbacks=[EpochLog(history, images_per_epoch, run_dir, chief=chief, name="refiner"),
                               *(callbacks or [])], shuffle=False, verbose=verbose)
    model.attach_refiner(refiner)
    model.fit_ink(_fitting_drawings(model, train_set, images, labels)[0])  # the refiner's curve, on its redrawings
    model.refiner_history = history
    return model.refiner


def _fit_after_training(model, train_set, images, labels) -> None:
    """Fit the model's FittedNoise (with an encoder), then its ink curves, to the training drawings."""
    images, labels = _fitting_drawings(model, train_set, images, labels)
    if model.encoder is not None:
        model.fit_noise(images, labels)
    model.fit_ink(images)


def _fitting_drawings(model, train_set, images, labels, per_label: int = 500):
    """(images, labels) of at most `per_label` training drawings of each label (a seeded choice, the same on every
    worker), read from the files when the drawings are not in memory: what the fitted noise and ink are fitted to."""
    rng = seeds.rng(model.seed, seeds.FIT_PICK)
    pick = np.sort(np.concatenate([rng.permutation(np.flatnonzero(labels == c))[:per_label]
                                   for c in range(len(model.categories))]))
    if images is None:
        return file_loader(train_set)(pick)
    return images[pick], labels[pick]

"""Training a classifier: `train`, a short loop over epochs (`_train_epoch`) with its data, optimiser, resume and
checkpoint each in a function of its own; the augmentation that makes it robust to rendering (small rotations,
scale, shear, shifts, mirror images, a heavier-stroke second rendering), applied in the canonical form, so drawings
from a canvas, a GAN or Google's numpy_bitmap files are read like the sample it trained on."""

from __future__ import annotations

import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from drawai import bitmaps, process_group, seeds
from drawai import categories as cats
from drawai.checks import is_whole
from drawai.classifier import networks
from drawai.classifier.model import Classifier, canonical_images, input_form, top_k, top_k_sharded
from drawai.classifier.networks import ARCHITECTURES, build_model, resolved_arch_kwargs
from drawai.data import Drawings
from drawai.io import atomic_write


@dataclass
class TrainConfig:
    arch: str = "cnn"
    epochs: int = 30
    batch_size: int = 256
    lr: float = 4e-3  # peak of the one-cycle schedule
    weight_decay: float = 5e-4
    label_smoothing: float = 0.1
    augment: bool = True
    seed: int = 0
    threads: int = 0  # torch threads; 0 = all cores
    bf16: bool = True  # bfloat16 autocast on CPUs that do it natively (AVX512-BF16 / AMX): faster steps
    arch_kwargs: dict = field(default_factory=dict)

    def __post_init__(self):
        if self.arch not in ARCHITECTURES:
            raise ValueError(f"unknown arch {self.arch!r}; choose one of {sorted(ARCHITECTURES)}")
        for name in ("epochs", "batch_size"):
            value = getattr(self, name)
            if not is_whole(value, 1):
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
            setattr(self, name, int(value))  # a numpy integer would not go into the manifest's JSON
        for name in ("lr", "weight_decay", "label_smoothing"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
                raise ValueError(f"{name} must be a non-negative number, got {value!r}")
        if self.lr == 0:
            raise ValueError("lr must be positive")
        if not 0 <= self.label_smoothing < 1:
            raise ValueError(f"label_smoothing must be in [0, 1), got {self.label_smoothing}")


# `augment`'s ranges at strength 1: rotation (radians, +-8 deg), scale (down, up), shear, shift (pixels of 28).
ROTATION, SCALE, SHEAR, SHIFT_PX = 0.14, (0.08, 0.06), 0.08, 1.5


def augment(x: torch.Tensor, generator: torch.Generator, strength: float = 1.0) -> torch.Tensor:
    """Mild random affine on the canonical form: rotation +-8 deg, scale 0.92-1.06, shear, shift +-1.5 px, and a
    mirror image half of the time.

    `strength` scales every range. Mild on purpose: the canonical form already removed position and size, and
    with minutes of training stronger geometry costs more accuracy than it buys (docs/experiments/classifier.md,
    "Recipes trained on the CPU" and "The sweep").
    """
    n, s = x.shape[0], strength
    u = lambda lo, hi: torch.empty(n).uniform_(lo, hi, generator=generator)  # noqa: E731
    angle, scale = u(-ROTATION * s, ROTATION * s), u(1 - SCALE[0] * s, 1 + SCALE[1] * s)
    shear = u(-SHEAR * s, SHEAR * s)
    flip = torch.where(torch.rand(n, generator=generator) < 0.5, -1.0, 1.0)
    cos, sin = torch.cos(angle), torch.sin(angle)
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0], theta[:, 0, 1] = cos / scale * flip, (-sin + shear) / scale
    theta[:, 1, 0], theta[:, 1, 1] = sin / scale * flip, cos / scale
    shift = SHIFT_PX * s / (bitmaps.SIZE / 2)  # affine_grid's units: half the image is 1
    theta[:, :, 2] = torch.empty(n, 2).uniform_(-shift, shift, generator=generator)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


# The share of each augmented batch drawn from the heavier-stroke rendering: more of it buys robustness to thick
# strokes with plain accuracy (docs/experiments/classifier.md, "The ink threshold").
HEAVY_FRACTION = 0.45


# Ink, of the source's 0-255, when telling a scribbled fill from a drawing: the 30 % ink threshold it was tuned with,
# kept rather than bitmaps.INK_THRESHOLD (45 %), at which other drawings count as fills and the recipe changes.
FILL_INK_LEVEL = int(0.3 * 255)  # 76
FILL_SHARE = 0.6  # a drawing with more than this share of its pixels inked is a scribbled fill


def heavier_strokes(images: np.ndarray) -> np.ndarray:
    """The source bitmaps with every stroke one pixel wider (a 2x2 dilation), as a second rendering.

    Thick strokes merge lines that run close together, and no canonicalisation can split them again;
    training on both renderings teaches the model that merged and separate lines mean the same thing.
    """
    x = np.asarray(images)
    out = x.copy()
    out[:, 1:, :] = np.maximum(out[:, 1:, :], x[:, :-1, :])
    out[:, :, 1:] = np.maximum(out[:, :, 1:], x[:, :, :-1])
    out[:, 1:, 1:] = np.maximum(out[:, 1:, 1:], x[:, :-1, :-1])
    # A drawing that is mostly ink already (a scribbled fill) stays as it is.
    dense = (out > FILL_INK_LEVEL).reshape(len(x), -1).mean(1) > FILL_SHARE
    out[dense] = x[dense]
    return out


class ScalarLog:
    """TensorBoard scalars: an `events.out.tfevents.*` file under `log_dir` that `tensorboard --logdir` reads.

    torch's SummaryWriter writes the same records but imports TensorFlow whenever it is installed (tensorboard
    resolves `tensorboard.compat.tf` to it for file access), seconds of start-up and hundreds of MiB that a
    PyTorch job never uses; tensorboard's protos and record writer alone need no TensorFlow.
    """

    def __init__(self, log_dir: str | os.PathLike):
        import socket

        from tensorboard.compat.proto.event_pb2 import Event
        from tensorboard.summary.writer.record_writer import RecordWriter

        folder = Path(log_dir)
        folder.mkdir(parents=True, exist_ok=True)
        self.path = folder / f"events.out.tfevents.{int(time.time())}.{socket.gethostname()}.{os.getpid()}"
        self._file = open(self.path, "ab")
        self._records = RecordWriter(self._file)
        self._event = Event
        self._write(Event(wall_time=time.time(), file_version="brain.Event:2"))

    def _write(self, event) -> None:
        self._records.write(event.SerializeToString())
        self._records.flush()

    def add_scalar(self, tag: str, value: float, step: int) -> None:
        from tensorboard.compat.proto.summary_pb2 import Summary

        summary = Summary(value=[Summary.Value(tag=tag, simple_value=float(value))])
        self._write(self._event(wall_time=time.time(), step=int(step), summary=summary))

    def close(self) -> None:
        self._file.close()


def train(train_set: Drawings | torch.utils.data.Dataset, config: TrainConfig,
          test_set: Drawings | torch.utils.data.Dataset | None = None,
          checkpoint_dir: str | os.PathLike | None = None, resume: bool = False,
          on_epoch=None, progress: bool = True, num_workers: int = 0,
          device: str | torch.device | None = None,
          extra_canonical: Drawings | None = None, canonical: bool = False) -> tuple[Classifier, list[dict]]:
    """Train a classifier; returns it and the per-epoch history.

    `canonical=True`: `train_set`'s images are in the canonical form already (float32 [0, 1], e.g. a GAN's
    drawings, for the Classification Accuracy Score) and are trained on as they are, without a second
    rendering; the test set is read like any source.

    `extra_canonical`: more training drawings whose images are in the canonical form already (float32
    [0, 1], e.g. a GAN's `generate` output; same categories as `train_set`). They join the training set
    as they are: a second `to_canonical` would re-centre and re-thin them (on GAN drawings it changes
    them far more than on real ones), and they have no heavier-stroke second rendering (the batch takes
    the drawing itself there); the random affine augmentation applies to them like to every drawing.

    With `checkpoint_dir`, the full training state is written atomically after every epoch, and
    `resume=True` continues from the last complete epoch (the result equals an uninterrupted run).

    Past one machine (drawai/distributed.py): `train_set` and `test_set` may also be torch Datasets of
    (canonical (1, 28, 28) image, label) with `categories`, `source` and `checksum` (the full dataset:
    `distributed.NumpyBitmapDataset`), read by DataLoaders with `num_workers` worker processes each.
    Under torchrun every process trains on its shard of each epoch, `config.batch_size` is the global
    batch, DDP averages the gradients, and rank 0 alone writes the checkpoint, which holds nothing that
    depends on the number of processes: any number can resume it. `device`: default the process's GPU if any.
    """
    rank, world = process_group.rank_and_world()
    device = torch.device(device) if device is not None else process_group.default_device()
    if config.threads:
        torch.set_num_threads(config.threads)
    torch.manual_seed(config.seed)  # the model's initial weights
    data = _training_data(train_set, test_set, config, extra_canonical, canonical, device, world, num_workers)
    model = build_model(config.arch, len(train_set.categories), config.arch_kwargs).to(
        device, memory_format=torch.channels_last)
    net = process_group.wrap(model, device)  # DDP when there are several processes
    opt, sched = _optimiser(model, config, steps=config.epochs * math.ceil(data.size / config.batch_size))
    gen = torch.Generator().manual_seed(*seeds.integers(config.seed, seeds.CLASSIFIER_ORDER))
    ckpt = Path(checkpoint_dir) / "checkpoint.pt" if checkpoint_dir else None
    history, start_epoch = _resume(ckpt, config, model, opt, sched, gen) if ckpt and resume and ckpt.exists() \
        else ([], 0)
    process_group.check_same(start_epoch, f"the epoch to start from ({ckpt} must be on storage every machine sees)")
    loss_fn = nn.CrossEntropyLoss(label_smoothing=config.label_smoothing)
    amp = config.bf16 and device.type == "cpu" and networks.native_bf16()  # weights and optimiser stay float32
    bar = tqdm(range(start_epoch, config.epochs), desc="train", unit="epoch", disable=not progress or rank > 0,
               initial=start_epoch, total=config.epochs)
    for epoch in bar:
        row = {"epoch": epoch + 1, **_train_epoch(net, opt, sched, loss_fn, data.batches(epoch, gen, rank),
                                                   config.augment, device, amp)}
        process_group.sync_buffers(model)
        row.update(data.scores(model, device, num_workers))
        history.append(row)
        bar.set_postfix({k: round(v, 3) for k, v in row.items() if k in ("loss", "top1", "top5")})
        if ckpt and rank == 0:
            save_checkpoint(ckpt, {"model": model.state_dict(), "optimizer": opt.state_dict(),
                                   "scheduler": sched.state_dict(), "generator": gen.get_state(),
                                   "torch_rng": torch.get_rng_state(), "history": history, "epoch": epoch + 1,
                                   "config": asdict(config)})
        process_group.barrier()  # no process starts the next epoch (or returns) before the checkpoint is whole
        if on_epoch:
            on_epoch(row)
    manifest = _manifest(config, train_set, extra_canonical, history)
    return Classifier(model.cpu(), list(train_set.categories), manifest), history


def _manifest(config: TrainConfig, train_set, extra_canonical: Drawings | None, history: list[dict]) -> dict:
    """What a trained classifier records of how it was made: its whole recipe, input form, data and history."""
    extra = {"extra_canonical_drawings": len(extra_canonical), "extra_source": extra_canonical.source} \
        if extra_canonical is not None and len(extra_canonical) else {}
    return {"config": {**asdict(config), "arch_kwargs": resolved_arch_kwargs(config.arch, config.arch_kwargs)},
            "input_form": input_form(),
            "data": {"source": train_set.source, "checksum": train_set.checksum, "train_drawings": len(train_set),
                     **extra},
            "history": history}


@dataclass
class TrainingData:
    """What one training run reads: its batches, epoch by epoch, and its test scores.

    In memory on one CPU process (the sample): the canonical images as tensors, a heavier-stroke second rendering
    that HEAVY_FRACTION of each augmented batch is drawn from, and a batch order drawn from the run's generator
    (so it is in the checkpoint). Otherwise (torchrun, a GPU, the full dataset as a torch Dataset): DataLoaders
    over this process's shard, whose randomness is seeded by (seed, epoch, rank), so there is nothing to checkpoint.
    """

    size: int  # training drawings, extra ones included
    extra: int  # of them, extra canonical drawings
    batch_size: int
    seed: int
    augment: bool
    x: torch.Tensor | None = None  # in memory: (N, 1, 28, 28) canonical images, labels, the second rendering
    y: torch.Tensor | None = None
    x_alt: torch.Tensor | None = None
    test: tuple | None = None  # in memory: (canonical test images, labels, categories)
    loader: DataLoader | None = None  # streamed: the training DataLoader and the test Dataset
    test_data: torch.utils.data.Dataset | None = None

    def batches(self, epoch: int, gen: torch.Generator, rank: int):
        """(images, labels) batches of `epoch` and the generator its augmentation draws from."""
        if self.loader is not None:
            self.loader.sampler.set_epoch(epoch)
            return self.loader, process_group.epoch_generator(self.seed, epoch, rank)
        order = torch.randperm(len(self.x), generator=gen)
        return (_pick(self.x, self.x_alt, self.y, idx, self.augment, gen)
                for idx in order.split(self.batch_size)), gen

    def scores(self, model: nn.Module, device: torch.device, num_workers: int) -> dict:
        """Top-1 and top-5 on the test drawings ({} without them)."""
        if self.test_data is not None:
            return top_k_sharded(model, self.test_data, device, num_workers=num_workers)
        if self.test is None:
            return {}
        images, labels, categories = self.test
        return top_k(Classifier(model, categories).probabilities(images, canonical=True), labels)


def _training_data(train_set, test_set, config: TrainConfig, extra_canonical, canonical: bool, device: torch.device,
                   world: int, num_workers: int) -> TrainingData:
    """Check the training inputs and read them in the form this process trains on (`TrainingData`)."""
    extra_x, extra_y = _extra_canonical(train_set, extra_canonical)
    if canonical and not (isinstance(train_set, Drawings) and np.issubdtype(train_set.images.dtype, np.floating)
                          and train_set.images.shape[1:] == (bitmaps.SIZE, bitmaps.SIZE)):
        raise ValueError("canonical=True needs Drawings of canonical float images (N, 28, 28) in [0, 1], "
                         f"got {type(train_set).__name__} of {getattr(train_set, 'images', np.empty(0)).dtype}")
    train_images = bitmaps.as_float_images(train_set.images)[0] if canonical else canonical_images(train_set) \
        if isinstance(train_set, Drawings) else None
    data = TrainingData(size=len(train_set) + len(extra_y), extra=len(extra_y), batch_size=config.batch_size,
                        seed=config.seed, augment=config.augment)
    if world > 1 or device.type != "cpu" or not isinstance(train_set, Drawings) \
            or not isinstance(test_set, Drawings | None):  # DataLoaders; numpy_bitmap files have heavy strokes
        train_data = train_set
        if isinstance(train_set, Drawings):
            train_data = process_group.tensor_dataset(train_set, train_images)
            if len(extra_y):
                train_data = torch.utils.data.ConcatDataset(
                    [train_data, torch.utils.data.TensorDataset(torch.from_numpy(extra_x)[:, None],
                                                                torch.from_numpy(extra_y))])
        data.loader = process_group.train_loader(train_data, config.batch_size, config.seed, num_workers)
        data.test_data = process_group.tensor_dataset(test_set, canonical_images(test_set)) \
            if isinstance(test_set, Drawings) else test_set
        return data
    x, extra = torch.from_numpy(train_images)[:, None], torch.from_numpy(extra_x)[:, None]
    x_alt = torch.from_numpy(bitmaps.to_canonical(heavier_strokes(train_set.images)))[:, None] \
        if config.augment and not canonical else x
    data.x, data.y = torch.cat([x, extra]), torch.cat([torch.from_numpy(train_set.labels), torch.from_numpy(extra_y)])
    data.x_alt = torch.cat([x_alt, extra]) if config.augment else data.x  # extra drawings: as they are in both
    if test_set is not None:
        data.test = (canonical_images(test_set), test_set.labels, list(train_set.categories))
    return data


def _optimiser(model: nn.Module, config: TrainConfig, steps: int):
    """AdamW and its one-cycle schedule: a quarter warming up, the rest annealing (constant for a smoke test's few
    steps, too few for a cycle)."""
    opt = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    if steps >= 4:
        return opt, torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=config.lr, total_steps=steps,
                                                        pct_start=max(0.25, 2 / steps))
    return opt, torch.optim.lr_scheduler.LambdaLR(opt, lambda step: 1.0)


def _resume(ckpt: Path, config: TrainConfig, model, opt, sched, gen) -> tuple[list[dict], int]:
    """Load a run's checkpoint into its model, optimiser, schedule and generators: (history, epochs done)."""
    state = load_checkpoint(ckpt)
    if state["config"] != asdict(config):
        raise ValueError(f"{ckpt} was made with another configuration; use a new folder or resume=False")
    model.load_state_dict(state["model"])
    opt.load_state_dict(state["optimizer"])
    sched.load_state_dict(state["scheduler"])
    gen.set_state(state["generator"])
    if "torch_rng" in state:  # dropout draws from torch's global generator
        torch.set_rng_state(state["torch_rng"])
    return state["history"], state["epoch"]


def _train_epoch(net, opt, sched, loss_fn, batches, augment_batches: bool, device: torch.device, amp: bool) -> dict:
    """One pass over `batches` ((batches, augmentation generator)): the loss, training top-1, the learning rate of
    the epoch's last step and the seconds it took, summed over every process."""
    net.train()
    batches, aug_gen = batches
    t0, total, correct, seen = time.perf_counter(), 0.0, 0, 0
    for xb, yb in batches:
        if augment_batches:
            xb = augment(xb, aug_gen)  # on the CPU, before the copy to the device
        xb, yb = xb.to(device, non_blocking=True), yb.to(device, non_blocking=True)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=amp):
            logits = net(xb.contiguous(memory_format=torch.channels_last))  # faster convolutions on CPU
        loss = loss_fn(logits.float(), yb)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        step_lr = opt.param_groups[0]["lr"]  # the history records what the epoch's last step used
        opt.step()
        sched.step()
        total += loss.item() * len(yb)
        correct += (logits.argmax(1) == yb).sum().item()
        seen += len(yb)
    total, correct, seen = process_group.sum_over_ranks(total, correct, seen)
    return {"loss": total / seen, "train_top1": correct / seen, "lr": step_lr, "seconds": time.perf_counter() - t0}


def train_on_own_drawings(own, categories="classic10", repeat: int = 10,
                          config: TrainConfig | None = None) -> tuple[Classifier, list[dict]]:
    """A classifier for `categories` plus every category among `own`'s labels, trained on the embedded
    sample's training split of those categories and on `own` (drawings from the pad, a
    `strokes.SavedDrawings`), each of yours `repeat` times so that a handful counts. Yours go in as the pad
    rendered them (already canonical). The history's `top1` is on the sample's held-out drawings."""
    from drawai import data

    if len(own) == 0:
        raise ValueError("there are no drawings of your own to train on: draw and save some first")
    if not is_whole(repeat, 1):
        raise ValueError(f"repeat must be a positive integer, got {repeat!r}")
    names = list(cats.resolve(categories))
    names += [n for n in dict.fromkeys(own.labels) if n not in names]  # a category new to the set joins it
    sample_train, sample_test = data.train_test(data.load_sample(names))
    labels = np.array([names.index(n) for n in own.labels] * repeat, dtype=np.int64)
    mine = Drawings(np.concatenate([own.bitmaps] * repeat), labels, tuple(names),
                    f"{len(own)} drawings from the pad x{repeat}")
    return train(sample_train, config or TrainConfig(epochs=10), test_set=sample_test, extra_canonical=mine)


def _extra_canonical(train_set, extra: Drawings | None) -> tuple[np.ndarray, np.ndarray]:
    """Check `train(extra_canonical=...)`: canonical float images and labels (empty arrays for None)."""
    if extra is None or (isinstance(extra, Drawings) and len(extra) == 0):
        return np.zeros((0, bitmaps.SIZE, bitmaps.SIZE), np.float32), np.zeros(0, np.int64)
    if not isinstance(train_set, Drawings) or not isinstance(extra, Drawings):
        raise ValueError("extra_canonical must be Drawings, and it needs a Drawings train_set (not a Dataset)")
    if tuple(extra.categories) != tuple(train_set.categories):
        raise ValueError(f"extra_canonical has {len(extra.categories)} other categories than the training set "
                         f"({len(train_set.categories)}); they must be the same, in the same order")
    if not np.issubdtype(np.asarray(extra.images).dtype, np.floating):
        raise ValueError(f"extra_canonical images must be canonical floats in [0, 1] (got dtype "
                         f"{np.asarray(extra.images).dtype}); put source bitmaps into train_set instead")
    x, _ = bitmaps.as_float_images(extra.images)
    if x.shape[1:] != (bitmaps.SIZE, bitmaps.SIZE) or len(x) != len(extra.labels):
        raise ValueError(f"extra_canonical must hold (N, 28, 28) images and N labels, got {x.shape} and "
                         f"{len(extra.labels)} labels")
    y = np.asarray(extra.labels, dtype=np.int64)
    if len(y) and (y.min() < 0 or y.max() >= len(train_set.categories)):
        raise ValueError("extra_canonical labels must index its categories")
    return np.ascontiguousarray(x), y


def save_checkpoint(path: Path, state: dict) -> None:
    """Write a training state atomically: into a temporary file, flushed to disk, then renamed over `path`.
    A kill at any moment leaves the previous checkpoint or the new one under `path`, never half of one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda tmp: torch.save(state, tmp))


def load_checkpoint(path: Path) -> dict:
    """A checkpoint written by `save_checkpoint`: tensors and plain containers only, so no code runs."""
    try:
        state = torch.load(path, weights_only=True, map_location="cpu")
    except Exception as e:  # torch's unpickler names what the file tried to load; say that, not its advice
        lines = [line.strip() for line in str(e).splitlines() if line.strip()] or [type(e).__name__]
        why = next((line.split("error: ", 1)[1].split(". Please")[0] for line in lines
                    if "WeightsUnpickler error: " in line), lines[0])
        raise ValueError(f"{path} is not a draw-ai checkpoint (refused to load it: {why})") from None
    missing = {"model", "optimizer", "scheduler", "generator", "history", "epoch", "config"} - set(
        state if isinstance(state, dict) else ())
    if missing:
        raise ValueError(f"{path} is not a draw-ai checkpoint (it lacks {sorted(missing)})")
    return state


def _pick(x, x_alt, y, idx, augment, gen):
    """One in-memory batch; with augmentation, HEAVY_FRACTION of it from the heavier-stroke rendering."""
    if not augment:
        return x[idx], y[idx]
    heavy = torch.rand(len(idx), 1, 1, 1, generator=gen) < HEAVY_FRACTION
    return torch.where(heavy, x_alt[idx], x[idx]), y[idx]

"""The PyTorch doodle classifier: models, the training loop, evaluation, prediction, safe save/load.

Models see only the canonical form (`drawai.bitmaps`); `Classifier.predict` takes any bitmap and gets
it there first. Training is robust to rendering by augmenting in that form (small rotations, scale,
shear, shifts, mirror images, stroke weight), so drawings from a canvas, a GAN or Google's
numpy_bitmap files are read like the sample the model was trained on.
"""

from __future__ import annotations

import copy
import functools
import inspect
import json
import math
import os
import shlex
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch.utils.data import DataLoader, Subset
from tqdm.auto import tqdm

from drawai import bitmaps, model_folder, process_group, seeds
from drawai import categories as cats
from drawai.checks import is_whole
from drawai.data import Drawings
from drawai.io import atomic_write

WEIGHTS_FILE = "model.safetensors"


# --- models ------------------------------------------------------------------------------------------

def conv_bn(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True))


class DoodleCNN(nn.Module):
    """draw-ai's default: VGG-style stages of 3x3 convolutions at 28, 14, 7 and 3 px, global average
    pooling, one linear layer.

    Small on purpose: it trains in minutes on two CPU cores. The cheap fourth stage (3x3 px, 256
    channels) is where extra capacity costs least time: all 345 categories, 30 epochs, mean of 3 seeds
    (bf16, a GPU replica of `train`'s loop): three stages (32-64-128, two convolutions each) 50.7 % top-1,
    this 53.3 %, at 161 vs 173 ms a training step on 2 CPU cores. Wider three-stage nets (48-96-192)
    learn as much but cost twice the time; dropout, mixup, CutMix, random erasing and weight averaging
    did not help at this budget (docs/experiments/classifier.md).
    """

    def __init__(self, n_classes: int, widths: tuple = (32, 64, 128, 256), depth: tuple = (2, 2, 2, 1),
                 dropout: float = 0.2):
        super().__init__()
        layers, c_in = [], 1
        for stage, (w, d) in enumerate(zip(widths, depth)):
            if stage:
                layers.append(nn.MaxPool2d(2))
            for _ in range(d):
                layers.append(conv_bn(c_in, w))
                c_in = w
        self.features = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(dropout))
        self.head = nn.Linear(c_in, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


class OriginalMLP(nn.Module):
    """The original draw-ai recipe: 784-128-100-64 with BatchNorm (trained with Adam 3e-3)."""

    def __init__(self, n_classes: int):
        super().__init__()
        layers, sizes = [nn.Flatten()], [784, 128, 100, 64]
        for a, b in zip(sizes, sizes[1:]):
            layers += [nn.Linear(a, b), nn.BatchNorm1d(b), nn.ReLU()]
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(64, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


class DoodleNet(nn.Module):
    """The doodleNet recipe: conv 16-16-pool-32-32-pool-64-64-pool, dense 512 tanh (Adam, batch 256)."""

    def __init__(self, n_classes: int):
        super().__init__()
        def block(a, b):
            return [nn.Conv2d(a, b, 3, padding=1), nn.ReLU(), nn.Conv2d(b, b, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2)]
        self.features = nn.Sequential(*block(1, 16), *block(16, 32), *block(32, 64), nn.Flatten(),
                                      nn.Linear(64 * 3 * 3, 512), nn.Tanh())
        self.head = nn.Linear(512, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


ARCHITECTURES = {"cnn": DoodleCNN, "mlp": OriginalMLP, "doodlenet": DoodleNet}


# --- configuration -------------------------------------------------------------------------------------

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
    bf16: bool = True  # bfloat16 autocast on CPUs that do it natively (AVX512-BF16 / AMX): ~1.8x faster steps
    arch_kwargs: dict = field(default_factory=dict)

    def __post_init__(self):
        if self.arch not in ARCHITECTURES:
            raise ValueError(f"unknown arch {self.arch!r}; choose one of {sorted(ARCHITECTURES)}")
        for name in ("epochs", "batch_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        for name in ("lr", "weight_decay", "label_smoothing"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
                raise ValueError(f"{name} must be a non-negative number, got {value!r}")
        if self.lr == 0:
            raise ValueError("lr must be positive")
        if not 0 <= self.label_smoothing < 1:
            raise ValueError(f"label_smoothing must be in [0, 1), got {self.label_smoothing}")


# --- augmentation: rendering robustness, applied on the canonical form ------------------------------------

def augment(x: torch.Tensor, generator: torch.Generator, strength: float = 1.0) -> torch.Tensor:
    """Mild random affine on the canonical form: rotation +-8 deg, scale 0.92-1.06, shear, shift +-1.5 px, mirror.

    Mild on purpose: the canonical form already removed position and size, and with minutes of training
    stronger geometry costs more accuracy than it buys (measured on 50 classes: 49 % vs 65 % top-1; on all
    345, `strength` 0.5 / 1.5 scaling every range: 50.5 / 50.2 % against 50.7 %).
    """
    n, s = x.shape[0], strength
    u = lambda lo, hi: torch.empty(n).uniform_(lo, hi, generator=generator)  # noqa: E731
    angle, scale, shear = u(-0.14 * s, 0.14 * s), u(1 - 0.08 * s, 1 + 0.06 * s), u(-0.08 * s, 0.08 * s)
    flip = torch.where(torch.rand(n, generator=generator) < 0.5, -1.0, 1.0)
    cos, sin = torch.cos(angle), torch.sin(angle)
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0], theta[:, 0, 1] = cos / scale * flip, (-sin + shear) / scale
    theta[:, 1, 0], theta[:, 1, 1] = sin / scale * flip, cos / scale
    theta[:, :, 2] = torch.empty(n, 2).uniform_(-1.5 * s / 14, 1.5 * s / 14, generator=generator)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


# The share of each augmented batch drawn from the heavier-stroke rendering: more of it buys robustness to thick
# strokes with plain accuracy (docs/experiments/classifier.md, "The ink threshold").
HEAVY_FRACTION = 0.45
# Ink, of the source's 0-255, when telling a scribbled fill from a drawing: the 30 % ink threshold it was tuned with,
# kept rather than bitmaps.INK_THRESHOLD (45 %), at which other drawings count as fills and the recipe changes.
FILL_INK_LEVEL = int(0.3 * 255)  # 76


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
    dense = (out > FILL_INK_LEVEL).reshape(len(x), -1).mean(1) > 0.6
    out[dense] = x[dense]
    return out


# --- the classifier ----------------------------------------------------------------------------------------

class Classifier:
    """A trained model with its categories and manifest. Takes any bitmap; sees the canonical form."""

    def __init__(self, model: nn.Module, categories: list[str], manifest: dict | None = None):
        self.model = model.eval()
        self.categories = list(categories)
        self.manifest = manifest or {}

    def _inference_model(self) -> InferenceNet:
        """`for_inference(self.model)`, made again whenever the model's weights have changed in place
        (training on, `load_state_dict`): each tensor counts its in-place changes. A layer swapped into the
        model after its first prediction is not seen: make a new Classifier."""
        if getattr(self, "_tensors_of", None) is not self.model:  # listing them walks the modules: once
            self._tensors, self._tensors_of = [*self.model.parameters(), *self.model.buffers()], self.model
        key = (self.model, sum(t._version for t in self._tensors))  # (the model itself: an id could be reused)
        if getattr(self, "_fused_key", None) != key:
            self._fused, self._fused_key = for_inference(self.model), key
        return self._fused

    @torch.no_grad()
    def _forward(self, images, canonical: bool, features: bool = False, batch: int = 1024) -> tuple[np.ndarray, bool]:
        x, single = bitmaps.as_float_images(images)
        if not canonical:
            x = bitmaps.to_canonical(x)
        if x.shape[1:] != (bitmaps.SIZE, bitmaps.SIZE):
            raise bitmaps.BadBitmapError(f"canonical input must be 28x28, got {x.shape[1:]}")
        model = self._inference_model()
        out = []
        # bfloat16 where the CPU computes it natively, as training's forward passes do: faster, and it changes
        # only near-ties (the measurement: CHANGELOG.md, Classifier)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=native_bf16()):
            for i in range(0, len(x), batch):
                t = torch.from_numpy(np.ascontiguousarray(x[i:i + batch]))[:, None]
                out.append(model.features(t).float() if features else mirror_probabilities(model, t))
        return torch.cat(out).numpy(), single

    def probabilities(self, images, canonical: bool = False) -> np.ndarray:
        """(N, C) class probabilities (or (C,) for one image).

        Each is the mean over the drawing and its mirror image. The models learn with mirrored drawings
        (`augment`), so both are fair readings, and their mean reads drawings better than either
        (docs/experiments/classifier.md) for a second forward pass in the same batch. A drawing and its
        mirror image get the same answer. `features` stay those of the drawing alone."""
        p, single = self._forward(images, canonical)
        return p[0] if single else p

    def features(self, images, canonical: bool = False) -> np.ndarray:
        """Penultimate-layer features (N, D): the space FID and nearest neighbours are measured in."""
        f, single = self._forward(images, canonical, features=True)
        return f[0] if single else f

    def predict(self, images, k: int = 5, canonical: bool = False) -> list:
        """Top-k (label, probability) pairs for one image, or a list of them for a batch."""
        if not isinstance(k, int) or k < 1:
            raise ValueError(f"k must be a positive integer, got {k!r}")
        p, single = self._forward(images, canonical)
        top = np.argsort(-p, axis=1)[:, :k]
        result = [[(self.categories[j], float(row[j])) for j in idx] for row, idx in zip(p, top)]
        return result[0] if single else result

    # Saving: a model folder (drawai.model_folder) with safetensors weights; nothing that can run code.
    def save(self, path: str | os.PathLike) -> Path:
        """Write `path/model.safetensors`, then `path/manifest.json`; a folder that holds anything but a draw-ai
        classifier is refused untouched."""
        path = model_folder.check_writable(path, "classifier")
        path.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().contiguous() for k, v in self.model.state_dict().items()}
        weights = atomic_write(path / WEIGHTS_FILE, lambda tmp: save_file(state, str(tmp)))
        made = self.manifest
        manifest = model_folder.make_manifest(
            "classifier", self.categories, weights, made.get("data", {}), made.get("config", {}),
            made.get("metrics", {}), made.get("command") or shlex.join(sys.argv),
            **{k: v for k, v in made.items() if k not in (*model_folder.REQUIRED, "created", "versions")},
            versions={"torch": torch.__version__})
        self.manifest = manifest
        model_folder.write(path, manifest)
        return path

    def restricted_to(self, categories: str | list[str]) -> Classifier:
        """The same network judging only `categories` (some of its own, in the order given): the head keeps
        their rows, so probabilities are a softmax over them alone and the features do not change.
        E.g. the 345-class model as the judge of a classic10 GAN."""
        names = cats.resolve(categories)
        missing = [n for n in names if n not in self.categories]
        if missing:
            raise ValueError(f"this classifier was trained on {len(self.categories)} other categories "
                             f"({self.categories[:3]}...): it cannot judge {missing[:5]}"
                             f"{f' and {len(missing) - 5} more' if len(missing) > 5 else ''}")
        if names == self.categories:
            return self
        rows = torch.tensor([self.categories.index(n) for n in names])
        model = copy.deepcopy(self.model)
        head = nn.Linear(model.head.in_features, len(names), bias=model.head.bias is not None)
        with torch.no_grad():
            head.weight.copy_(model.head.weight[rows])
            if head.bias is not None:
                head.bias.copy_(model.head.bias[rows])
        model.head = head
        return Classifier(model, names, {**self.manifest, "restricted_from": len(self.categories)})

    @classmethod
    def load(cls, path: str | os.PathLike, categories: str | list[str] | None = None) -> Classifier:
        """Load a saved classifier; with `categories`, restricted to those (`restricted_to`): every one of
        them must be among the categories it was trained on."""
        path = Path(path)
        manifest = model_folder.read(path, "classifier")
        names = manifest["categories"]
        wanted = cats.resolve(categories) if categories is not None else names
        if not set(wanted) <= set(names):
            raise ValueError(f"{path} was trained on {len(names)} other categories ({names[:3]}...), "
                             f"not on all of {categories!r}")
        arch = manifest.get("config", {}).get("arch")
        if arch not in ARCHITECTURES:
            raise ValueError(f"{path}: unknown architecture {arch!r} in manifest.json")
        arch_kwargs = manifest["config"].get("arch_kwargs") or {}
        try:
            model = build_model(arch, len(names), arch_kwargs)
        except (TypeError, ValueError) as e:
            raise ValueError(f"{path}: weights do not fit a {arch} for {len(names)} categories: manifest.json's "
                             f"arch_kwargs {sorted(arch_kwargs)} are not a {arch}'s ({e})") from None
        try:
            state = load_file(str(model_folder.weights_path(path, manifest)))
        except model_folder.ModelFolderError:
            raise
        except Exception as e:  # safetensors raises its own error types for bad headers / truncation
            raise ValueError(f"{path}/model.safetensors is not a readable safetensors file: {e}") from None
        try:
            model.load_state_dict(state)
        except RuntimeError as e:
            raise ValueError(f"{path}: weights do not fit a {arch} for {len(names)} categories: "
                             f"{str(e).splitlines()[0]}") from None
        return cls(model, names, manifest).restricted_to(wanted)


def mirror_probabilities(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Class probabilities of a batch (N, 1, 28, 28), each the mean over the drawing and its mirror image
    (one forward pass of 2N): how every draw-ai prediction reads a drawing (`Classifier.probabilities`)."""
    p = F.softmax(model(torch.cat([x, x.flip(3)])).float(), dim=1)
    return (p[:len(x)] + p[len(x):]) / 2


class InferenceNet(nn.Module):
    """A model's layers as one flat list, each called by its `forward`: for one drawing the pass is short
    enough that nn.Module's call machinery (hooks, nested Sequentials) is ~10 % of it."""

    def __init__(self, layers: list[nn.Module], head: nn.Module):
        super().__init__()
        self.layers, self.head = nn.ModuleList(layers), head

    def features(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = layer.forward(x)
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head.forward(self.features(x))


def for_inference(model: nn.Module) -> InferenceNet:
    """A copy of `model` (features + head, as every draw-ai architecture) for prediction: every BatchNorm
    folded into the convolution or linear layer before it (in eval mode the same function, to float
    rounding, in fewer passes over memory), dropout left out, channels-last, one flat list of layers.
    For one drawing and its mirror image on one thread: 2.4 -> 1.7 ms (p50) for the default CNN."""
    model = copy.deepcopy(model).eval()
    for seq in [m for m in model.modules() if isinstance(m, nn.Sequential)]:
        for i in range(len(seq) - 1):
            layer, norm = seq[i], seq[i + 1]
            if isinstance(layer, nn.Conv2d) and isinstance(norm, nn.BatchNorm2d):
                seq[i], seq[i + 1] = torch.nn.utils.fusion.fuse_conv_bn_eval(layer, norm), nn.Identity()
            elif isinstance(layer, nn.Linear) and isinstance(norm, nn.BatchNorm1d):
                seq[i], seq[i + 1] = torch.nn.utils.fusion.fuse_linear_bn_eval(layer, norm), nn.Identity()
    layers = [m for m in model.features.modules()
              if not any(m.children()) and not isinstance(m, nn.Identity | nn.Dropout)]
    return InferenceNet(layers, model.head).to(memory_format=torch.channels_last)


def build_model(arch: str, n_classes: int, arch_kwargs: dict | None = None) -> nn.Module:
    return ARCHITECTURES[arch](n_classes, **(arch_kwargs or {}))


def resolved_arch_kwargs(arch: str, arch_kwargs: dict | None = None) -> dict:
    """`arch_kwargs` with every default of the architecture filled in (JSON-ready), for the manifest: a saved
    model then describes its network fully and still loads after the defaults change."""
    params = inspect.signature(ARCHITECTURES[arch].__init__).parameters
    out = {name: p.default for name, p in params.items() if name not in ("self", "n_classes")
           and p.default is not inspect.Parameter.empty}
    out.update(arch_kwargs or {})
    return json.loads(json.dumps(out))  # tuples -> lists, as the file will hold them


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


# --- training ------------------------------------------------------------------------------------------------

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
    amp = config.bf16 and device.type == "cpu" and native_bf16()  # weights and optimiser stay float32
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
    manifest = {"config": {**asdict(config), "arch_kwargs": resolved_arch_kwargs(config.arch, config.arch_kwargs)},
                "input_form": input_form(), "data": {
        "source": train_set.source, "checksum": train_set.checksum, "train_drawings": len(train_set),
        **({"extra_canonical_drawings": data.extra, "extra_source": extra_canonical.source} if data.extra else {})},
        "history": history}
    return Classifier(model.cpu(), list(train_set.categories), manifest), history


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


@functools.cache
def native_bf16() -> bool:
    """Whether this CPU computes bfloat16 in hardware; elsewhere autocast would emulate it, slower than float32."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def input_form() -> dict:
    return {"size": bitmaps.SIZE, "range": [0, 1], "ink": "bright on black",
            "centreline_long_side": bitmaps.CENTRELINE_LONG_SIDE, "stroke_width": bitmaps.STROKE_WIDTH,
            "canonicalised_by": "drawai.bitmaps.to_canonical"}


def canonical_images(drawings: Drawings) -> np.ndarray:
    return bitmaps.to_canonical(drawings.images)


# --- evaluation ------------------------------------------------------------------------------------------------

def top_k(probs: np.ndarray, labels: np.ndarray, ks=(1, 5)) -> dict:
    order = np.argsort(-probs, axis=1)
    return {f"top{k}": float((order[:, :k] == labels[:, None]).any(1).mean()) for k in ks}


def evaluate(clf: Classifier, drawings: Drawings, canonical: bool = False) -> dict:
    """Top-1/top-5, per-class top-1 and the confusion matrix (rows: true class, columns: predicted)."""
    if list(drawings.categories) != clf.categories:
        raise ValueError("the drawings' categories are not the classifier's")
    probs = clf.probabilities(drawings.images, canonical=canonical)
    pred = probs.argmax(1)
    n = len(clf.categories)
    confusion = np.zeros((n, n), dtype=np.int64)
    np.add.at(confusion, (drawings.labels, pred), 1)
    per_class = confusion.diagonal() / np.maximum(confusion.sum(1), 1)
    return {**top_k(probs, drawings.labels), "per_class": per_class, "confusion": confusion, "probs": probs}


@torch.no_grad()
def top_k_sharded(model: nn.Module, dataset: torch.utils.data.Dataset, device: torch.device, batch_size: int = 512,
                  num_workers: int = 0) -> dict:
    """Top-1/top-5 on `dataset`, each process scoring every world-th item, the counts summed over processes."""
    rank, world = process_group.rank_and_world()
    loader = DataLoader(Subset(dataset, range(rank, len(dataset), world)), batch_size=batch_size,
                        num_workers=num_workers)
    was_training = model.training
    model.eval()
    hits1 = hits5 = seen = 0
    for xb, yb in loader:
        p = mirror_probabilities(model, xb.to(device))  # as every prediction reads a drawing
        top = p.topk(min(5, p.shape[1]), dim=1).indices.cpu()
        hits1 += (top[:, 0] == yb).sum().item()
        hits5 += (top == yb[:, None]).any(1).sum().item()
        seen += len(yb)
    model.train(was_training)
    hits1, hits5, seen = process_group.sum_over_ranks(hits1, hits5, seen)
    return {"top1": hits1 / seen, "top5": hits5 / seen}

"""`Classifier`: a trained network with its categories and manifest, which takes any bitmap and reads it in the
canonical form (`drawai.bitmaps`); saved as a model folder (`drawai.model_folder`) with safetensors weights,
nothing that can run code. And how a classifier is scored: top-k, per class, the confusion matrix."""

from __future__ import annotations

import copy
import os
import shlex
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
from safetensors.torch import load_file, save_file
from torch.utils.data import DataLoader, Subset

from drawai import bitmaps, model_folder, process_group
from drawai import categories as cats
from drawai.checks import is_whole
from drawai.classifier import networks
from drawai.classifier.networks import ARCHITECTURES, InferenceNet, build_model, for_inference, mirror_probabilities
from drawai.data import Drawings
from drawai.io import atomic_write

WEIGHTS_FILE = "model.safetensors"


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
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=networks.native_bf16()):
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
        if not is_whole(k, 1):
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


def input_form() -> dict:
    return {"size": bitmaps.SIZE, "range": [0, 1], "ink": "bright on black",
            "centreline_long_side": bitmaps.CENTRELINE_LONG_SIDE, "stroke_width": bitmaps.STROKE_WIDTH,
            "canonicalised_by": "drawai.bitmaps.to_canonical"}


def canonical_images(drawings: Drawings) -> np.ndarray:
    return bitmaps.to_canonical(drawings.images)


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

"""A GAN on disk. A model folder is `model.keras` and `manifest.json` in the schema of every draw-ai model folder
(`drawai.model_folder`): `save` writes one, `load` reads one. `load_keras` is the one way a GAN's `.keras` file is
opened, a model folder's or a run's checkpoint (its refiner's too): safe_mode=True (never executes pickled code),
and anything but what was asked for is a ModelFileError."""

from __future__ import annotations

import io
import shlex
import sys
import tempfile
import warnings
import zipfile
from pathlib import Path

import h5py
import keras
import numpy as np
import tensorflow as tf

from drawai import model_folder
from drawai.gan.config import INPUT_FORM, MODEL_FILE, GANConfig, ModelFileError
from drawai.gan.data import is_chief
from drawai.gan.model import GAN_CLASSES, ConditionalGAN, PerLabelGAN
from drawai.gan.refiner import StrokeRefiner
from drawai.io import atomic_write


def take_part_in_save(model) -> None:
    """What a worker other than the chief does where the chief saves: the same save, into a folder that is then
    deleted. Under MultiWorkerMirroredStrategy reading some variables is a collective op every worker must join."""
    with tempfile.TemporaryDirectory(prefix="drawai-save-") as tmp:
        model.save(Path(tmp) / MODEL_FILE)


def _save_compact(model: ConditionalGAN | PerLabelGAN, path: Path) -> None:
    """Save `model` for shipping: the optimisers' state zeroed, every weight in float16, deflated.

    Adam's moments only matter for continuing training, which resumes from the run's checkpoints, not from a shipped
    model: zeroed, they deflate to almost nothing. Two bytes a weight halve the rest, and move a loaded model's
    drawings by far less than another seed does (docs/experiments/gan.md). The model in memory is left as it was.
    """
    slots = [v for opt in (model.g_optimizer, model.d_optimizer) for v in opt.variables]
    kept = [v.numpy() for v in slots]
    try:
        for v in slots:
            v.assign(np.zeros(v.shape, v.dtype))
        model.save(path)
    finally:
        for v, value in zip(slots, kept, strict=True):
            v.assign(value)
    with zipfile.ZipFile(path) as src:
        items = [(item.filename, src.read(item)) for item in src.infolist()]
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as dst:  # Keras stores; deflate, in place
        for name, data_ in items:
            dst.writestr(name, _float16_weights(data_) if name == WEIGHTS_ENTRY else data_)


WEIGHTS_ENTRY = "model.weights.h5"  # where a .keras archive holds its weights


def _float16_weights(h5: bytes) -> bytes:
    """A Keras weights file with its float32 arrays stored as float16, rounded (Keras casts them back to their
    variables' float32 on loading); an array past float16's range keeps float32."""
    out = io.BytesIO()
    with h5py.File(io.BytesIO(h5), "r") as old, h5py.File(out, "w") as new:
        new.attrs.update(old.attrs)

        def copy(name, item):
            if isinstance(item, h5py.Group):
                new.require_group(name).attrs.update(item.attrs)
                return
            value = item[()]
            if value.dtype == np.float32 and np.all(np.isfinite(value.astype(np.float16))):
                value = value.astype(np.float16)
            new.create_dataset(name, data=value).attrs.update(item.attrs)

        old.visititems(copy)
    return out.getvalue()


def save(model: ConditionalGAN | PerLabelGAN, path: str | Path, config: GANConfig | None = None,
         data_checksum: str | None = None, metrics: dict | None = None, command: str | None = None) -> Path:
    """Write `path/model.keras` and then `path/manifest.json` (`drawai.model_folder`). Config and data default to
    what `train` recorded. A folder that holds anything but a draw-ai generator is refused untouched.
    With several workers (MultiWorkerMirroredStrategy), every worker calls this and only the chief writes."""
    path = Path(path)
    if not is_chief(model.distribute_strategy):
        take_part_in_save(model)
        return path
    try:
        model_folder.check_writable(path, "generator")
    except model_folder.ModelFolderError as e:
        raise ModelFileError(str(e)) from None
    record = getattr(model, "train_record", None) or {}
    made = getattr(model, "manifest", None) or {}  # a loaded model saved again keeps what its manifest says
    history = getattr(model, "train_history", None) or []
    path.mkdir(parents=True, exist_ok=True)
    weights = atomic_write(path / MODEL_FILE, lambda p: _save_compact(model, p))
    data = {"source": record.get("data_source", made.get("data", {}).get("source", "")),
            "checksum": data_checksum if data_checksum is not None else
            record.get("data_checksum", made.get("data", {}).get("checksum", "")),
            "train_drawings": record.get("n_train", made.get("data", {}).get("train_drawings"))}
    trained = ({"epochs": history[-1]["epoch"], "last_epoch": history[-1],
                "train_seconds": round(sum(h["seconds"] for h in history), 1),
                "train_cpu_seconds": round(sum(h.get("cpu_seconds", 0) for h in history), 1)} if history else {})
    refiner_log = getattr(model, "refiner_history", None) or []
    if refiner_log:  # the refiner's epochs, timed apart from the GAN's
        trained |= {"refiner_epochs": refiner_log[-1]["epoch"],
                    "refiner_seconds": round(sum(h["seconds"] for h in refiner_log), 1),
                    "refiner_cpu_seconds": round(sum(h["cpu_seconds"] for h in refiner_log), 1)}
    manifest = model_folder.make_manifest(
        "generator", model.categories, weights, data,
        config.to_dict() if config else record.get("config") or made.get("config") or model.get_config(),
        {**(made.get("metrics", {}) if not history else {}), **trained, **(metrics or {})},
        command if command is not None else shlex.join(sys.argv),
        recipe=model.recipe, input_form=INPUT_FORM, versions={"keras": keras.__version__, "tensorflow": tf.__version__})
    model_folder.write(path, manifest)
    return path


# What a `.keras` file may hold, by the name errors give it: a GAN, or a run's refiner checkpoint, which loads
# compiled because it carries its optimiser's state for resuming.
KERAS_KINDS = {"GAN": tuple(GAN_CLASSES.values()), "refiner": (StrokeRefiner,)}


def load_keras(path: Path, kind: str = "GAN"):
    """Load a `.keras` file that must hold a draw-ai `kind` (a key of KERAS_KINDS); anything else is a
    ModelFileError."""
    classes = KERAS_KINDS[kind]
    if not zipfile.is_zipfile(path):
        raise ModelFileError(f"{path} is not a .keras archive (corrupt or a different kind of file)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # a failed load also warns; the error below says it all
            model = keras.saving.load_model(path, safe_mode=True, compile=kind == "refiner")
    except Exception as e:
        raise ModelFileError(f"{path} could not be loaded as a draw-ai {kind} (safe_mode=True): "
                             f"{type(e).__name__}: {str(e)[:400]}") from e
    if not isinstance(model, classes):
        raise ModelFileError(f"{path} holds a {type(model).__name__}, not a draw-ai {kind} "
                             f"({', '.join(c.__name__ for c in classes)})")
    return model


def load(path: str | Path) -> ConditionalGAN | PerLabelGAN:
    """Load a model folder written by `save`, checking the manifest against the weights (safe_mode=True)."""
    path = Path(path)
    try:
        manifest = model_folder.read(path, "generator")
        weights = model_folder.weights_path(path, manifest)
    except model_folder.ModelFolderError as e:
        raise ModelFileError(str(e)) from None
    model = load_keras(weights)
    if model.recipe != manifest.get("recipe") or list(model.categories) != manifest["categories"]:
        raise ModelFileError(f"{weights} ({model.recipe}, {len(model.categories)} categories) does not match its "
                             f"manifest ({manifest.get('recipe')}, {len(manifest['categories'])})")
    model.manifest = manifest
    return model

"""The model folder: weights beside one `manifest.json`, in one schema for every kind of model
(`drawai.load_model(path)` opens any of them).

The manifest says what the model is (`format`, `kind`), what it names (`categories`), what it learnt from
(`data`: source, checksum, number of training drawings), which weights it holds (`weights`: file, SHA-256),
how it was configured and how well it did (`config`, `metrics`), and the `command` that remakes it. A kind
may add fields of its own (a classifier its per-epoch `history`, a generator its `recipe`). Folders written
in the two schemas before this one are read as this one (`upgrade`); `python -m drawai.model_folder upgrade
PATH` rewrites their manifest, weights untouched.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

from drawai import categories as cats
from drawai.io import file_sha256, write_json

FORMAT = "drawai-model/1"
MANIFEST = "manifest.json"
KINDS = ("classifier", "generator")
REQUIRED = ("format", "kind", "categories", "data", "weights", "config", "metrics", "command")


class ModelFolderError(ValueError):
    """A folder that is not a draw-ai model folder of the kind wanted, or whose weights do not match it."""


def make_manifest(kind: str, categories, weights: Path, data: dict, config: dict, metrics: dict, command: str,
                  **extra) -> dict:
    """The manifest of a model whose weights are already written to `weights` (their SHA-256 is taken here)."""
    if kind not in KINDS:
        raise ModelFolderError(f"kind must be one of {KINDS}, got {kind!r}")
    return {"format": FORMAT, "kind": kind, "categories": list(categories),
            "data": {"source": data.get("source", ""), "checksum": data.get("checksum", ""),
                     "train_drawings": data.get("train_drawings"),
                     **{k: v for k, v in data.items() if k not in ("source", "checksum", "train_drawings")}},
            "weights": {"file": Path(weights).name, "sha256": file_sha256(weights)},
            "config": config, "metrics": metrics, "command": command, **extra,
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")}


def check_writable(folder: str | os.PathLike, kind: str) -> Path:
    """`folder` as a Path if a model of `kind` may be written there: new, empty, or a model folder of that kind.
    Anything else is refused before a byte is written."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise ModelFolderError(f"{folder} exists and is not a folder; nothing was overwritten")
    if folder.is_dir() and any(folder.iterdir()):
        try:
            found = read(folder)["kind"]
        except ModelFolderError:
            found = None
        if found != kind:
            raise ModelFolderError(f"{folder} is not empty and is not a draw-ai {kind} folder"
                                   f"{f' (it holds a {found})' if found else ''}; nothing was overwritten "
                                   "(choose another path)")
    return folder


def write(folder: str | os.PathLike, manifest: dict) -> Path:
    """Write the manifest, atomically; call it last, after the weights, so a folder with a manifest is whole."""
    return write_json(Path(folder) / MANIFEST, manifest)


def read(folder: str | os.PathLike, kind: str | None = None) -> dict:
    """The manifest of the model folder `folder` (in the current schema, whatever schema it was written in);
    with `kind`, it must be a model of that kind. Nothing is loaded or executed."""
    folder = Path(folder)
    file = folder / MANIFEST
    try:
        manifest = json.loads(file.read_text())
    except FileNotFoundError:
        raise ModelFolderError(f"{folder} is not a draw-ai model folder: it has no {MANIFEST}") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ModelFolderError(f"{file} cannot be read as JSON ({e})") from None
    manifest = upgrade(manifest) if isinstance(manifest, dict) else None
    if manifest is None:
        raise ModelFolderError(f"{file} is not a draw-ai model manifest (no format {FORMAT!r}, nor an older one)")
    missing = [k for k in REQUIRED if k not in manifest]
    if missing or manifest["kind"] not in KINDS or not isinstance(manifest["categories"], list) \
            or not manifest["categories"]:
        raise ModelFolderError(f"{file} is not a complete draw-ai manifest (missing or bad: "
                               f"{missing or ['kind' if manifest['kind'] not in KINDS else 'categories']})")
    for name in manifest["categories"]:
        cats.check_name(name)
    if kind is not None and manifest["kind"] != kind:
        raise ModelFolderError(f"{folder} holds a draw-ai {manifest['kind']}, not a {kind}")
    return manifest


def weights_path(folder: str | os.PathLike, manifest: dict) -> Path:
    """The weights file the manifest names, checked against its SHA-256 (a folder upgraded from the classifier's
    old schema has none recorded: `python -m drawai.model_folder upgrade` records it)."""
    name = manifest["weights"].get("file")
    if not isinstance(name, str) or Path(name).name != name:
        raise ModelFolderError(f"{Path(folder) / MANIFEST} names no weights file of its own folder ({name!r})")
    path = Path(folder) / name
    if not path.is_file():
        raise ModelFolderError(f"{path} is missing: the model folder is incomplete")
    expected = manifest["weights"].get("sha256")
    if expected is not None and file_sha256(path) != expected:
        raise ModelFolderError(f"{path} does not match its manifest (SHA-256 differs): corrupt, or replaced by "
                               "another model's file")
    return path


def upgrade(manifest: dict) -> dict | None:
    """A manifest in the current schema from one in it or in an older one; None if it is none of them."""
    if manifest.get("format") == FORMAT:
        return manifest
    if manifest.get("format") == "drawai-classifier/1":  # the classifier's schema before: no kind, no weights hash
        return {"format": FORMAT, "kind": "classifier", "config": {}, "metrics": {}, "command": "", "data": {},
                **{k: v for k, v in manifest.items() if k != "format"},
                "weights": {"file": "model.safetensors", "sha256": None}}
    if manifest.get("kind") == "drawai.gan" and manifest.get("format") == 1:  # the generator's: flat data fields
        rest = {k: v for k, v in manifest.items() if k not in ("kind", "format", "data_checksum", "data_source",
                                                                "n_train")}
        return {"format": FORMAT, "kind": "generator", "config": {}, "metrics": {}, "command": "", **rest,
                "data": {"source": manifest.get("data_source", ""), "checksum": manifest.get("data_checksum", ""),
                         "train_drawings": manifest.get("n_train")}}
    return None


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m drawai.model_folder", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="command", required=True)
    up = sub.add_parser("upgrade", help="rewrite model folders' manifests in the current schema (weights untouched)")
    up.add_argument("folders", nargs="+", type=Path)
    args = ap.parse_args(argv)
    for folder in args.folders:
        try:
            manifest = read(folder)
            if manifest["weights"].get("sha256") is None:
                manifest["weights"]["sha256"] = file_sha256(weights_path(folder, manifest))
            weights_path(folder, manifest)
        except ModelFolderError as e:
            raise SystemExit(f"error: {e}") from None
        write(folder, manifest)
        print(f"{folder}: {manifest['kind']} manifest in {FORMAT}")


if __name__ == "__main__":
    main()

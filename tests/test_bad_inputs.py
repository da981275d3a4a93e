"""Bad inputs, one catalogue: each case goes in through the function a user calls and must fail with an error
that names the problem (or, where draw-ai can do the right thing, be handled, and the test says how).
docs/faults.md has the same table; `test_the_docs_table_lists_every_case` keeps the two in step.

Files that would run code when unpickled (a model, a checkpoint, a bitmap file, a drawings file) carry a payload
that creates a marker file: every loader must refuse them and the marker must never appear, and
`test_the_payloads_are_live` shows each payload does create it when loaded the unsafe way.
"""

from __future__ import annotations

import json
import pickle
import re
import shutil
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch

from drawai import bitmaps, classifier, data, download, gan, jobs, strokes, widgets
from drawai.categories import UnknownCategoryError
from drawai.data import CorruptDataError
from drawai.io import file_sha256
from drawai.paths import CLASSIFIER_DIR, GENERATOR_DIR, ROOT

MARKER = "payload-ran"


class Payload:
    """Unpickling this calls open(marker, "w"): a file appears if, and only if, the pickle was executed."""

    def __init__(self, folder: Path):
        self.marker = str(folder / MARKER)

    def __reduce__(self):
        return (open, (self.marker, "w"))


@dataclass
class Case:
    id: str
    error: type
    match: str
    call: object  # call(tmp_path)


CASES: list[Case] = []


def bad(case_id: str, error: type, match: str):
    def register(call):
        CASES.append(Case(case_id, error, match, call))
        return call
    return register


def shipped_copy(tmp: Path, old_schema: bool = False) -> Path:
    """The shipped classifier's folder, copied; `old_schema`: its manifest as the schema before (no weights hash),
    so that the weights reach the safetensors reader unchecked."""
    folder = tmp / "model"
    shutil.copytree(CLASSIFIER_DIR, folder)
    if old_schema:
        manifest = json.loads((folder / "manifest.json").read_text())
        for key in ("kind", "weights", "created", "versions"):
            manifest.pop(key, None)
        (folder / "manifest.json").write_text(json.dumps({**manifest, "format": "drawai-classifier/1"}))
    return folder


def drawing() -> np.ndarray:
    return data.load_sample(["cat"]).images[0]


# --- categories --------------------------------------------------------------------------------------------------

bad("category-unknown", UnknownCategoryError, r"unknown category 'unicorn'")(
    lambda tmp: data.load_sample(["cat", "unicorn"]))
bad("category-misspelled", UnknownCategoryError, r"unknown category 'hotdog'; did you mean 'hot dog'")(
    lambda tmp: data.load_sample(["hotdog"]))
bad("category-wrong-case", UnknownCategoryError, r"did you mean 'cat'")(lambda tmp: data.load_sample(["Cat"]))
bad("category-preset-misspelled", UnknownCategoryError,
    r"unknown category 'clasic10'.*presets are \['all', 'classic10'\]")(lambda tmp: data.load_sample("clasic10"))
bad("category-duplicated", UnknownCategoryError, r"listed more than once: \['cat'\]")(
    lambda tmp: classifier.Classifier.load(CLASSIFIER_DIR, categories=["cat", "dog", "cat"]))
bad("category-empty-list", UnknownCategoryError, r"the category list is empty")(
    lambda tmp: gan.GANConfig(categories=[]))
bad("category-not-a-string", UnknownCategoryError, r"category names are strings, got int")(
    lambda tmp: data.load_sample(["cat", 3]))
bad("category-not-in-model", ValueError, r"the classifier does not know \['cat'\]; it was trained on 3 categories")(
    lambda tmp: widgets.DrawingPad(classifier.Classifier(classifier.build_model("cnn", 3), ["apple", "cloud", "door"]),
                                   categories=["door", "cat"]))


# --- bitmaps (through Classifier.predict, what a user calls) -------------------------------------------------------

def predict(images):
    return classifier.Classifier.load(CLASSIFIER_DIR).predict(images)


bad("bitmap-wrong-shape", bitmaps.BadBitmapError, r"expected a drawing of shape \(28, 28\).*got shape \(3, 4\)")(
    lambda tmp: predict(np.zeros((3, 4))))
bad("bitmap-batch-of-batches", bitmaps.BadBitmapError, r"got shape \(2, 3, 28, 28\)")(
    lambda tmp: predict(np.zeros((2, 3, 28, 28))))
bad("bitmap-empty-batch", bitmaps.BadBitmapError, r"got shape \(0, 28, 28\)")(
    lambda tmp: predict(np.zeros((0, 28, 28), np.uint8)))
bad("bitmap-wrong-dtype", bitmaps.BadBitmapError, r"a bitmap must be a numeric array, got dtype <U1")(
    lambda tmp: predict(np.full((28, 28), "x")))
bad("bitmap-nan", bitmaps.BadBitmapError, r"NaN or infinite")(
    lambda tmp: predict(np.where(drawing() > 0, np.nan, 0.0)))
bad("bitmap-floats-0-255", bitmaps.BadBitmapError, r"must be in \[0, 1\].*divide 0-255 values by 255")(
    lambda tmp: predict(drawing().astype(np.float32)))
bad("bitmap-negative-integers", bitmaps.BadBitmapError, r"integer bitmaps must be in 0-255, got values in \[-5")(
    lambda tmp: predict(drawing().astype(np.int32) - 5))
bad("bitmap-empty", bitmaps.EmptyDrawingError, r"the drawing is empty: no ink")(
    lambda tmp: predict(np.zeros((28, 28), np.uint8)))
bad("bitmap-all-ink", bitmaps.BadBitmapError, r"100% of the bitmap is ink.*255 - image")(
    lambda tmp: predict(np.full((28, 28), 255, np.uint8)))
bad("bitmap-inverted", bitmaps.BadBitmapError, r"of the bitmap is ink.*dark on light, pass 1 - image")(
    lambda tmp: predict(255 - drawing()))
bad("bitmap-one-bad-in-a-batch", bitmaps.EmptyDrawingError, r"drawing 2 of the batch")(
    lambda tmp: predict(np.stack([drawing(), drawing(), np.zeros((28, 28), np.uint8)])))


# --- strokes --------------------------------------------------------------------------------------------------------

bad("strokes-empty", bitmaps.EmptyDrawingError, r"the drawing is empty: no strokes with points")(
    lambda tmp: strokes.render_strokes([[], []]))
bad("strokes-nan", strokes.BadStrokesError, r"stroke 1 has NaN or infinite coordinates")(
    lambda tmp: strokes.render_strokes([[(0, 0), (5, 5)], [(1, 1), (np.nan, 2)]]))
bad("strokes-overflow-to-infinity", strokes.BadStrokesError, r"stroke 0 has NaN or infinite coordinates")(
    lambda tmp: strokes.render_strokes([[(0, 0), (1e308 * 10, 1)]]))
bad("strokes-one-stroke-unwrapped", strokes.BadStrokesError, r"a single stroke still needs wrapping in a list")(
    lambda tmp: strokes.render_strokes(np.zeros((5, 2))))
bad("strokes-not-numbers", strokes.BadStrokesError, r"stroke 0 is not an array of numbers")(
    lambda tmp: strokes.render_strokes([[("a", "b"), (1, 2)]]))
bad("strokes-a-string", strokes.BadStrokesError, r"strokes must be a list of strokes, got str")(
    lambda tmp: strokes.render_strokes("M 0 0 L 10 10"))
bad("strokes-bad-drawing-in-a-batch", strokes.BadStrokesError, r"drawing 1: stroke 0 has NaN")(
    lambda tmp: strokes.render_many([[[(0, 0), (1, 1)]], [[(0, np.inf), (1, 1)]]]))


# --- model files ----------------------------------------------------------------------------------------------------

@bad("model-not-a-model-folder", ValueError, r"is not a draw-ai model folder: it has no manifest.json")
def _(tmp):
    (tmp / "holiday").mkdir()
    (tmp / "holiday" / "photo.jpg").write_bytes(b"\xff\xd8 not a model")
    classifier.Classifier.load(tmp / "holiday")


@bad("model-manifest-not-json", ValueError, r"manifest.json cannot be read as JSON")
def _(tmp):
    folder = shipped_copy(tmp)
    (folder / "manifest.json").write_text("{'format': 'drawai-classifier/1',")
    classifier.Classifier.load(folder)


@bad("model-manifest-without-categories", ValueError, r"not a complete draw-ai manifest \(missing or bad: \['categ")
def _(tmp):
    folder = shipped_copy(tmp)
    manifest = json.loads((folder / "manifest.json").read_text())
    del manifest["categories"]
    (folder / "manifest.json").write_text(json.dumps(manifest))
    classifier.Classifier.load(folder)


@bad("model-weights-truncated", ValueError, r"model.safetensors does not match its manifest \(SHA-256 differs\)")
def _(tmp):
    folder = shipped_copy(tmp)
    weights = folder / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    classifier.Classifier.load(folder)


@bad("model-weights-truncated-old-manifest", ValueError, r"model.safetensors is not a readable safetensors file")
def _(tmp):
    folder = shipped_copy(tmp, old_schema=True)
    weights = folder / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    classifier.Classifier.load(folder)


@bad("model-other-categories", ValueError, r"was trained on 2 other categories.*not on all of \['apple', 'cat'\]")
def _(tmp):
    # A subset of a model's categories restricts it (the 345-class model judging classic10); others cannot.
    small, _ = classifier.train(data.train_test(data.load_sample(["apple", "cloud"]))[0],
                                classifier.TrainConfig(epochs=1), progress=False)
    classifier.Classifier.load(small.save(tmp / "two"), categories=["apple", "cat"])


@bad("model-other-architecture", ValueError, r"weights do not fit a doodlenet for 345 categories")
def _(tmp):
    folder = shipped_copy(tmp)
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["config"]["arch"] = "doodlenet"
    (folder / "manifest.json").write_text(json.dumps(manifest))
    classifier.Classifier.load(folder)


@bad("model-unknown-architecture", ValueError, r"unknown architecture 'resnet' in manifest.json")
def _(tmp):
    folder = shipped_copy(tmp)
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["config"]["arch"] = "resnet"
    (folder / "manifest.json").write_text(json.dumps(manifest))
    classifier.Classifier.load(folder)


@bad("model-gan-given-as-classifier", ValueError, r"holds a draw-ai generator, not a classifier")
def _(tmp):
    classifier.Classifier.load(GENERATOR_DIR)


@bad("model-classifier-given-as-gan", ValueError, r"holds a draw-ai classifier, not a generator")
def _(tmp):
    gan.load(CLASSIFIER_DIR)


@bad("model-pickle-as-weights", ValueError, r"model.safetensors is not a readable safetensors file")
def _(tmp):
    folder = shipped_copy(tmp, old_schema=True)  # past the hash check: the reader itself must refuse it
    (folder / "model.safetensors").write_bytes(pickle.dumps(Payload(tmp)))
    classifier.Classifier.load(folder)


@bad("model-pickle-as-checkpoint", ValueError,
     r"not a draw-ai checkpoint \(refused to load it: Unsupported global: GLOBAL io.open")
def _(tmp):
    torch.save({"model": Payload(tmp)}, tmp / "checkpoint.pt")
    classifier.train(data.load_sample("classic10"), classifier.TrainConfig(epochs=1), checkpoint_dir=tmp,
                     resume=True, progress=False)


@bad("model-pickle-as-gan", ValueError, r"model.keras is not a .keras archive")
def _(tmp):
    fake_gan_folder(tmp, lambda path: path.write_bytes(pickle.dumps(Payload(tmp))))
    gan.load(tmp / "gan")


@bad("model-gan-with-code", ValueError, r"could not be loaded as a draw-ai GAN \(safe_mode=True\).*Lambda")
def _(tmp):
    fake_gan_folder(tmp, lambda path: lambda_model(tmp).save(path))
    (tmp / MARKER).unlink()  # building the model ran it once, here; loading must not
    gan.load(tmp / "gan")


def fake_gan_folder(tmp: Path, write) -> Path:
    """A folder whose manifest claims a draw-ai GAN and hashes whatever `write` put in model.keras."""
    folder = tmp / "gan"
    folder.mkdir()
    write(folder / "model.keras")
    (folder / "manifest.json").write_text(json.dumps({
        "kind": "drawai.gan", "format": 1, "recipe": "conditional", "categories": ["cat"],  # the schema before
        "weights": {"file": "model.keras", "sha256": file_sha256(folder / "model.keras")}}))
    return folder


def lambda_model(tmp: Path):
    import keras

    marker = str(tmp / MARKER)
    return keras.Sequential([keras.Input((2,)), keras.layers.Lambda(eval(f"lambda x: (open({marker!r}, 'w'), x)[1]"))])


@bad("data-pickle-as-bitmaps", CorruptDataError, r"it holds Python objects \(pickles\), which are never loaded")
def _(tmp):
    folder = tmp / "cache" / "numpy_bitmap"
    folder.mkdir(parents=True)
    np.save(folder / "cat.npy", np.array([Payload(tmp)] * 2, dtype=object), allow_pickle=True)
    download.load_numpy_bitmap("cat", cache_dir=tmp / "cache")


@bad("data-pickle-as-drawings", ValueError, r"cannot read drawings from .*allow_pickle=False")
def _(tmp):
    np.savez(tmp / "mine.npz", format=np.array("drawai strokes 1"), labels=np.array([Payload(tmp)], dtype=object))
    strokes.load_drawings(tmp / "mine.npz")


@bad("data-sample-edited", CorruptDataError, r"is corrupt or was changed: SHA-256")
def _(tmp):
    edited = tmp / "quickdraw_sample.npz"
    blob = bytearray(data.SAMPLE_PATH.read_bytes())
    blob[-100] ^= 1
    edited.write_bytes(bytes(blob))
    data.read_sample(edited, data.sample_info()["sha256"])


# --- job parameters (they fail before anything runs: no run folder appears) ------------------------------------------

def run_job(tmp: Path, job: str, params: dict, **kwargs):
    jobs.RUNS = tmp / "runs"  # restored by the test
    try:
        jobs.run(job, params, progress=False, **kwargs)
    finally:
        assert not (tmp / "runs").exists() or not any((tmp / "runs").rglob("params.json"))


bad("job-negative-epochs", jobs.JobError, r"epochs must be a positive integer, got -3")(
    lambda tmp: run_job(tmp, "train-classifier", {"epochs": -3}))
bad("job-zero-batch", jobs.JobError, r"batch_size must be a positive integer, got 0")(
    lambda tmp: run_job(tmp, "train-classifier", {"batch_size": 0}))
bad("job-fractional-epochs", jobs.JobError, r"parameter epochs must be an integer, got 2.5")(
    lambda tmp: run_job(tmp, "train-classifier", {"epochs": 2.5}))
bad("job-misspelled-parameter", jobs.JobError, r"has no parameter\(s\) \['epoch'\] \(did you mean 'epochs'")(
    lambda tmp: run_job(tmp, "train-classifier", {"epoch": 3}))
bad("job-unknown-preset", jobs.JobError, r"unknown preset 'huge'; presets are \['demo', 'full'\]")(
    lambda tmp: run_job(tmp, "train-gan", {"preset": "huge"}))
bad("job-unknown-recipe", jobs.JobError, r"recipe must be one of \('conditional', 'per_label'\), got 'vae'")(
    lambda tmp: run_job(tmp, "train-gan", {"recipe": "vae"}))
bad("job-negative-gan-epochs", jobs.JobError, r"GANConfig.epochs must be an integer >= 1, got -2")(
    lambda tmp: run_job(tmp, "train-gan", {"epochs": -2}))
bad("job-bad-model-path", jobs.JobError, r"models/no-such-model is not a draw-ai model folder: it has no manifest")(
    lambda tmp: run_job(tmp, "train-gan", {"classifier_path": "../models/no-such-model"}))
bad("job-zero-processes", jobs.JobError, r"nproc \(training processes\) must be at least 1, got 0")(
    lambda tmp: run_job(tmp, "train-classifier", {"nproc": 0}))
bad("job-batch-not-divisible-by-processes", jobs.JobError, r"batch_size 100 must be divisible by nproc 3")(
    lambda tmp: run_job(tmp, "train-classifier", {"batch_size": 100, "nproc": 3}))
bad("job-unknown-job", jobs.JobError, r"unknown job 'train-classifer' \(did you mean 'train-classifier'\?\); jobs are")(
    lambda tmp: run_job(tmp, "train-classifer", {}))


@bad("job-publish-onto-a-file", jobs.JobError, r"--publish: .*notes.txt exists and is not a folder; nothing was")
def _(tmp):
    (tmp / "notes.txt").write_text("mine")
    run_job(tmp, "train-classifier", {}, publish=str(tmp / "notes.txt"))


@bad("job-publish-onto-other-files", jobs.JobError, r"thesis is not empty and is not a draw-ai classifier folder")
def _(tmp):
    (tmp / "thesis").mkdir()
    (tmp / "thesis" / "chapter1.tex").write_text("years of work")
    run_job(tmp, "train-classifier", {}, publish=str(tmp / "thesis"))


@bad("job-runs-folder-unwritable", jobs.JobError, r"cannot create the run folder .*set DRAWAI_RUNS")
def _(tmp):
    (tmp / "runs").write_text("a file where the runs folder should be")
    jobs.RUNS = tmp / "runs" / "inside"
    jobs.run("train-classifier", {}, progress=False)


@bad("job-without-the-sample", jobs.JobError, r"^the embedded sample \S+ is missing; rebuild it with")
def _(tmp):
    shipped, data.SAMPLE_PATH = data.SAMPLE_PATH, tmp / "quickdraw_sample.npz"
    try:
        run_job(tmp, "train-classifier", {})
    finally:
        data.SAMPLE_PATH = shipped


@bad("demo-runs-folder-unwritable", jobs.JobError, r"^cannot write the demo's runs to .*set DRAWAI_RUNS to a writable")
def _(tmp):
    (tmp / "runs").write_text("a file where the runs folder should be")
    jobs.RUNS = tmp / "runs" / "inside"
    jobs.run_demo()


@bad("demo-without-the-sample", jobs.JobError, r"^the embedded sample \S+ is missing; rebuild it with")
def _(tmp):
    jobs.RUNS = tmp / "runs"
    shipped, data.SAMPLE_PATH = data.SAMPLE_PATH, tmp / "quickdraw_sample.npz"
    try:
        jobs.run_demo()
    finally:
        data.SAMPLE_PATH = shipped
        assert not (tmp / "runs").exists()  # it stops before any folder is made


# --- the other entry points ------------------------------------------------------------------------------------------

bad("download-unknown-kind", ValueError, r"unknown kind 'raw'; the kinds are \['numpy_bitmap', 'simplified'\]")(
    lambda tmp: download.download("cat", "raw", cache_dir=tmp, progress=False))
bad("download-bad-checksum", ValueError, r"checksums\['cat'\] is not a SHA-256 \(64 hex digits\)")(
    lambda tmp: download.download("cat", cache_dir=tmp, checksums={"cat": "md5:abc"}, progress=False))
bad("predict-bad-k", ValueError, r"k must be a positive integer, got 0")(
    lambda tmp: classifier.Classifier.load(CLASSIFIER_DIR).predict(drawing(), k=0))
bad("pad-bad-size", ValueError, r"size must be a whole number of pixels between 56 and 2000, got 10")(
    lambda tmp: widgets.DrawingPad(size=10))
bad("train-data-not-matching-model", ValueError, r"the drawings' categories are not the classifier's")(
    lambda tmp: classifier.evaluate(classifier.Classifier.load(CLASSIFIER_DIR), data.load_sample("classic10")))


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_is_a_clear_error(case, tmp_path, monkeypatch):
    monkeypatch.setattr(jobs, "RUNS", jobs.RUNS)  # cases that point it at tmp_path get it back
    with pytest.raises(case.error, match=case.match):
        case.call(tmp_path)
    assert not (tmp_path / MARKER).exists(), "a pickled payload ran"


def test_the_catalogue_is_big_enough_and_uses_the_modules_own_errors():
    assert len(CASES) >= 30 and len({c.id for c in CASES}) == len(CASES)
    # bad values are ValueErrors (the module's own subclass); jobs and damaged data have their own types
    assert all(issubclass(c.error, ValueError | jobs.JobError | CorruptDataError) for c in CASES)


def test_the_docs_table_lists_every_case():
    table = (ROOT / "docs" / "faults.md").read_text()
    listed = set(re.findall(r"`([a-z0-9-]+)`", table))
    assert [c.id for c in CASES if c.id not in listed] == []


def test_the_payloads_are_live(tmp_path):
    """The unsafe way of loading each malicious file does run its payload: the tests above would see it."""
    import keras

    marker = tmp_path / MARKER
    pickle.loads(pickle.dumps(Payload(tmp_path)))
    assert marker.exists()
    marker.unlink()
    torch.save({"model": Payload(tmp_path)}, tmp_path / "checkpoint.pt")
    torch.load(tmp_path / "checkpoint.pt", weights_only=False)
    assert marker.exists()
    marker.unlink()
    np.save(tmp_path / "cat.npy", np.array([Payload(tmp_path)], dtype=object), allow_pickle=True)
    np.load(tmp_path / "cat.npy", allow_pickle=True)
    assert marker.exists()
    marker.unlink()
    lambda_model(tmp_path).save(tmp_path / "lambda.keras")
    marker.unlink()
    keras.saving.load_model(tmp_path / "lambda.keras", safe_mode=False)
    assert marker.exists()


# --- inputs that look bad but are handled: the tests say how --------------------------------------------------------

def test_a_single_point_is_a_dot():
    image = strokes.render_strokes([[(120, 80)]])
    assert image.max() > 0.5 and (image > 0.3).sum() <= 4


def test_huge_coordinates_draw_the_same_drawing():
    small = [[(0, 0), (100, 50), (30, 90)]]
    huge = [[(x * 1e298, y * 1e298) for x, y in small[0]]]
    np.testing.assert_array_equal(strokes.render_strokes(huge), strokes.render_strokes(small))


def test_two_hundred_thousand_points_render_quickly():
    walk = [np.random.default_rng(0).normal(size=(200_000, 2)).cumsum(0)]
    start = time.process_time()
    image = strokes.render_strokes(walk)
    assert time.process_time() - start < 5 and image.max() > 0.7  # ~0.4 s of CPU measured


def test_the_drawing_pad_reports_bad_strokes_in_the_widget(shipped):
    pad = widgets.DrawingPad(shipped, categories="classic10")
    pad.set_strokes([[(0, 0), (float("nan"), 3)]])
    assert "stroke 0 has NaN" in pad.message and pad.bitmap is None and pad.predictions == []


def test_a_corrupt_simplified_file_names_the_line(tmp_path):
    path = tmp_path / "cat.ndjson"
    path.write_text('{"word": "cat", "drawing": [[[0, 10], [0, 10]]]}\n{"word": "cat", "drawing": [[[0, 1')
    with pytest.raises(CorruptDataError, match=r"cat\.ndjson, line 2: not valid JSON"):
        list(download.read_simplified(path))


def test_a_gan_model_file_cut_short_is_refused_by_its_hash(tmp_path):
    folder = fake_gan_folder(tmp_path, lambda path: zipfile.ZipFile(path, "w").close())
    (folder / "model.keras").write_bytes((folder / "model.keras").read_bytes()[:10])
    with pytest.raises(gan.ModelFileError, match="does not match its manifest \\(SHA-256 differs\\)"):
        gan.load(folder)

"""drawai.model_folder: one manifest schema for both kinds of model, load_model, the schemas before, refusals."""

import json
import shutil

import pytest

import drawai
from drawai import data, gan, model_folder
from drawai.classifier import Classifier
from drawai.io import file_sha256
from drawai.paths import CLASSIFIER_DIR, GENERATOR_DIR


@pytest.mark.parametrize("folder, kind", [(CLASSIFIER_DIR, "classifier"), (GENERATOR_DIR, "generator")])
def test_the_shipped_models_are_in_the_one_schema(folder, kind):
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["format"] == model_folder.FORMAT and manifest["kind"] == kind
    assert set(model_folder.REQUIRED) <= set(manifest) and len(manifest["categories"]) == 345
    assert manifest["weights"]["sha256"] == file_sha256(folder / manifest["weights"]["file"])
    assert manifest["data"]["checksum"] == data.sample_info()["sha256"] and manifest["data"]["train_drawings"] == 27600
    assert manifest["command"].startswith("python -m drawai.jobs ")


def test_load_model_opens_each_kind_by_its_manifest():
    clf = drawai.load_model(CLASSIFIER_DIR)
    assert isinstance(clf, Classifier) and len(clf.categories) == 345
    generator = drawai.load_model(GENERATOR_DIR)
    assert isinstance(generator, gan.ConditionalGAN) and generator.generate("cat", 2, seed=0).shape == (2, 28, 28)
    restricted = drawai.load_model(CLASSIFIER_DIR, categories="classic10")
    assert restricted.categories == clf.restricted_to("classic10").categories


def old_schema(manifest: dict) -> dict:
    """A manifest in the schema each kind was saved in before the one schema."""
    rest = {k: v for k, v in manifest.items() if k not in ("format", "kind", "weights", "data", "created")}
    if manifest["kind"] == "classifier":
        return {**rest, "format": "drawai-classifier/1", "data": manifest["data"]}
    return {**rest, "kind": "drawai.gan", "format": 1, "weights": manifest["weights"],
            "data_checksum": manifest["data"]["checksum"], "data_source": manifest["data"]["source"],
            "n_train": manifest["data"]["train_drawings"]}


@pytest.mark.parametrize("shipped", [CLASSIFIER_DIR, GENERATOR_DIR], ids=["classifier", "generator"])
def test_a_folder_in_the_old_schema_loads_and_upgrades_with_its_weights_untouched(shipped, tmp_path, capsys):
    folder = tmp_path / shipped.name
    shutil.copytree(shipped, folder)
    current = json.loads((folder / "manifest.json").read_text())
    (folder / "manifest.json").write_text(json.dumps(old_schema(current)))
    weights = (folder / current["weights"]["file"]).read_bytes()

    read = model_folder.read(folder)
    assert read["kind"] == current["kind"] and read["data"] == current["data"]
    assert read["categories"] == current["categories"] and read["metrics"] == current["metrics"]
    assert drawai.load_model(folder).categories == drawai.load_model(shipped).categories

    model_folder.main(["upgrade", str(folder)])
    upgraded = json.loads((folder / "manifest.json").read_text())
    assert upgraded["format"] == model_folder.FORMAT and upgraded["weights"] == current["weights"]
    assert (folder / current["weights"]["file"]).read_bytes() == weights
    assert "manifest in drawai-model/1" in capsys.readouterr().out


def test_both_kinds_refuse_to_write_into_a_folder_that_is_not_theirs(tmp_path):
    clf = Classifier.load(CLASSIFIER_DIR, categories="classic10")
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "todo.txt").write_text("mine")
    with pytest.raises(model_folder.ModelFolderError, match="not a draw-ai classifier folder; nothing was overwritten"):
        clf.save(tmp_path / "notes")
    assert [p.name for p in (tmp_path / "notes").iterdir()] == ["todo.txt"]
    shutil.copytree(GENERATOR_DIR, tmp_path / "generator")
    with pytest.raises(model_folder.ModelFolderError, match="it holds a generator"):
        clf.save(tmp_path / "generator")
    with pytest.raises(model_folder.ModelFolderError, match="it holds a classifier"):
        model_folder.check_writable(CLASSIFIER_DIR, "generator")
    assert model_folder.read(tmp_path / "generator") == model_folder.read(GENERATOR_DIR)  # untouched
    # Its own kind's folder is replaced: the saved classifier loads, with its weights' hash recorded.
    saved = clf.save(tmp_path / "classic10")
    clf.save(saved)
    assert Classifier.load(saved).categories == clf.categories
    assert model_folder.read(saved)["weights"]["sha256"] == file_sha256(saved / "model.safetensors")


def test_a_manifest_whose_weights_are_elsewhere_or_missing_is_refused(tmp_path):
    folder = tmp_path / "m"
    shutil.copytree(CLASSIFIER_DIR, folder)
    manifest = json.loads((folder / "manifest.json").read_text())
    (folder / "manifest.json").write_text(json.dumps({**manifest, "weights": {"file": "../elsewhere.safetensors"}}))
    with pytest.raises(model_folder.ModelFolderError, match="names no weights file of its own folder"):
        Classifier.load(folder)
    (folder / "manifest.json").write_text(json.dumps(manifest))
    (folder / "model.safetensors").unlink()
    with pytest.raises(model_folder.ModelFolderError, match="model.safetensors is missing"):
        drawai.load_model(folder)
    (folder / "manifest.json").write_text(json.dumps({**manifest, "kind": "painting"}))
    with pytest.raises(model_folder.ModelFolderError, match="not a complete draw-ai manifest"):
        model_folder.read(folder)

import json
import pickle
import re

import numpy as np
import pytest
import torch

from drawai import bitmaps, classifier, data
from drawai.paths import CLASSIFIER_DIR, NOTEBOOKS


@pytest.fixture(scope="module")
def shipped10():
    """The shipped classifier judging classic10 alone: a trained model for the tests of prediction, saving and
    loading, which hold for any weights."""
    return classifier.Classifier.load(CLASSIFIER_DIR, categories="classic10")


@pytest.mark.slow
def test_learns_classic10(classic10):
    train, test = classic10
    config = classifier.TrainConfig(epochs=6, batch_size=64, lr=4e-3, seed=0)
    clf, history = classifier.train(train, config, test_set=test, progress=False)
    assert history[-1]["loss"] < history[0]["loss"]
    result = classifier.evaluate(clf, classic10[1])
    assert result["top1"] > 0.6  # chance is 0.1
    assert result["confusion"].sum() == len(classic10[1]) and result["confusion"].shape == (10, 10)
    assert np.isclose(result["per_class"].mean(), result["top1"])


def test_predict_api(shipped10, classic10):
    clf = shipped10
    test = classic10[1]
    top = clf.predict(test.images[0], k=3)
    assert len(top) == 3 and all(name in clf.categories for name, _ in top)
    assert top[0][1] >= top[1][1] >= top[2][1] and 0 < sum(p for _, p in top) <= 1.0001
    batch = clf.predict(test.images[:4])
    assert len(batch) == 4 and len(batch[0]) == 5
    single = clf.predict(test.images[0])
    assert [name for name, _ in batch[0]] == [name for name, _ in single]
    np.testing.assert_allclose([p for _, p in batch[0]], [p for _, p in single], rtol=1e-5)
    # the same drawing from another renderer and the canonical form give the same answer
    canon = bitmaps.to_canonical(test.images[:4])
    assert clf.predict(canon, canonical=True)[0][0][0] == batch[0][0][0]
    assert clf.probabilities(test.images[:4]).shape == (4, 10)
    assert clf.features(test.images[:4]).shape[0] == 4
    with pytest.raises(ValueError, match="k must"):
        clf.predict(test.images[0], k=0)
    with pytest.raises(bitmaps.EmptyDrawingError):
        clf.predict(np.zeros((28, 28)))


def test_probabilities_average_the_drawing_and_its_mirror_image(shipped10, classic10, monkeypatch):
    clf = shipped10
    monkeypatch.setattr(classifier.networks, "native_bf16", lambda: False)  # float32, to compare with the plain network
    canon = bitmaps.to_canonical(classic10[1].images[:16])
    mirrored = canon[:, :, ::-1].copy()
    p, q = clf.probabilities(canon, canonical=True), clf.probabilities(mirrored, canonical=True)
    np.testing.assert_allclose(p, q, atol=1e-6)  # a drawing and its mirror image: the same answer
    with torch.no_grad():  # ... which is the mean of the network's two readings
        one = torch.softmax(clf.model(torch.from_numpy(canon)[:, None]), 1).numpy()
        two = torch.softmax(clf.model(torch.from_numpy(mirrored)[:, None]), 1).numpy()
    np.testing.assert_allclose(p, (one + two) / 2, atol=1e-5)
    assert np.abs(one - two).max() > 1e-3  # the network alone reads them differently: the test can fail
    assert clf.features(canon, canonical=True).shape == (16, clf.model.head.in_features)  # the drawing alone


def test_prediction_runs_in_bfloat16_where_the_cpu_has_it(shipped10, classic10, monkeypatch):
    """Like training's forward passes: bfloat16 on a CPU that computes it natively, float32 elsewhere; the
    answers move by bfloat16's rounding, not more."""
    clf = shipped10
    x = bitmaps.to_canonical(classic10[1].images[:64])
    probs = {}
    for native in (True, False):
        monkeypatch.setattr(classifier.networks, "native_bf16", lambda native=native: native)
        probs[native] = clf.probabilities(x, canonical=True)
    with torch.no_grad():
        t = torch.from_numpy(x)[:, None]
        float32 = classifier.mirror_probabilities(clf.model, t).numpy()
    np.testing.assert_allclose(probs[False], float32, atol=1e-5)
    assert probs[True].dtype == np.float32
    assert 1e-4 < np.abs(probs[True] - probs[False]).max() < 0.03  # bfloat16 was used, and rounds only
    assert (probs[True].argmax(1) == probs[False].argmax(1)).mean() >= 0.95


@pytest.mark.parametrize("arch", ["cnn", "mlp", "doodlenet"])
def test_prediction_folds_batchnorm_and_follows_the_weights(arch, classic10):
    model = classifier.build_model(arch, 10)
    with torch.no_grad():  # BatchNorm statistics away from their initial 0 / 1, or folding them is trivial
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d | torch.nn.BatchNorm1d):
                m.running_mean.uniform_(-0.5, 0.5), m.running_var.uniform_(0.5, 2), m.weight.uniform_(0.5, 1.5)
    clf = classifier.Classifier(model, list(classic10[1].categories))
    x = bitmaps.to_canonical(classic10[1].images[:8])
    fused = classifier.for_inference(model)
    assert not any(isinstance(m, torch.nn.BatchNorm2d | torch.nn.BatchNorm1d) for m in fused.modules())
    with torch.no_grad():
        t = torch.from_numpy(x)[:, None]
        np.testing.assert_allclose(fused(t).numpy(), model.eval()(t).numpy(), rtol=1e-4, atol=1e-4)
    before = clf.probabilities(x, canonical=True)
    with torch.no_grad():
        model.head.bias[3] += 5.0  # changed in place: the next prediction must see it
    after = clf.probabilities(x, canonical=True)
    assert (after[:, 3] > before[:, 3]).all()


def test_save_load_round_trip(shipped10, classic10, tmp_path):
    clf = shipped10
    clf.save(tmp_path / "m")
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == ["manifest.json", "model.safetensors"]
    again = classifier.Classifier.load(tmp_path / "m", categories="classic10")
    x = classic10[1].images[:20]
    np.testing.assert_allclose(again.probabilities(x), clf.probabilities(x), atol=1e-6)
    manifest = json.loads((tmp_path / "m" / "manifest.json").read_text())
    assert manifest["input_form"]["size"] == 28 and manifest["data"]["checksum"] == data.sample_info()["sha256"]
    with pytest.raises(ValueError, match="other categories"):
        classifier.Classifier.load(tmp_path / "m", categories="all")


def test_restricted_to_a_subset_renormalises_over_it(monkeypatch):
    """The shipped 345-class model judging three categories: its softmax over those three logits alone."""
    monkeypatch.setattr(classifier.networks, "native_bf16", lambda: False)  # float32, to compare with the plain network
    full = classifier.Classifier.load(CLASSIFIER_DIR)
    names = ["sun", "cat", "apple"]  # not in the model's order: the restricted one follows this order
    small = classifier.Classifier.load(CLASSIFIER_DIR, categories=names)
    assert small.categories == names and small.manifest["restricted_from"] == 345
    images = data.load_sample(names).images[::25]
    canon = bitmaps.to_canonical(images)
    with torch.no_grad():  # the full network's logits of those three, for the drawing and its mirror image
        rows = [full.categories.index(n) for n in names]
        views = [full.model(torch.from_numpy(c.copy())[:, None])[:, rows] for c in (canon, canon[:, :, ::-1])]
    expected = sum(torch.softmax(v, 1).numpy() for v in views) / 2
    np.testing.assert_allclose(small.probabilities(images), expected, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(small.features(images), full.features(images), atol=1e-6)
    assert full.restricted_to(full.categories) is full
    assert full.probabilities(images).shape[1] == 345  # the original is untouched
    with pytest.raises(ValueError, match="cannot judge"):
        small.restricted_to(["sun", "dog"])


def test_foreign_model_files_are_refused(shipped10, tmp_path):
    clf = shipped10
    clf.save(tmp_path / "m")
    with pytest.raises(ValueError, match="no manifest.json"):
        classifier.Classifier.load(tmp_path)
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "manifest.json").write_text('{"format": "something-else"}')
    with pytest.raises(ValueError, match="not a draw-ai model manifest"):
        classifier.Classifier.load(tmp_path / "x")
    # truncated weights
    w = tmp_path / "m" / "model.safetensors"
    w.write_bytes(w.read_bytes()[:1000])
    with pytest.raises(ValueError, match="safetensors"):
        classifier.Classifier.load(tmp_path / "m")
    # weights of another architecture
    clf.save(tmp_path / "m")
    manifest = json.loads((tmp_path / "m" / "manifest.json").read_text())
    manifest["config"]["arch"] = "mlp"
    (tmp_path / "m" / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ValueError, match="do not fit"):
        classifier.Classifier.load(tmp_path / "m")


class Boom:
    def __reduce__(self):
        import os
        return (os.system, ("touch /tmp/drawai-pwned",))


def test_a_pickle_in_place_of_weights_never_runs(shipped10, tmp_path):
    clf = shipped10
    clf.save(tmp_path / "m")
    (tmp_path / "m" / "model.safetensors").write_bytes(pickle.dumps(Boom()))
    with pytest.raises(ValueError):
        classifier.Classifier.load(tmp_path / "m")
    # and a checkpoint that is a pickle is refused by torch.load(weights_only=True)
    ckpt = tmp_path / "ck"
    ckpt.mkdir()
    torch.save({"evil": Boom()}, ckpt / "checkpoint.pt")
    with pytest.raises(ValueError, match="not a draw-ai checkpoint"):
        classifier.train(data.load_sample("classic10"), classifier.TrainConfig(epochs=1), checkpoint_dir=ckpt,
                         resume=True, progress=False)
    import os
    assert not os.path.exists("/tmp/drawai-pwned")


@pytest.mark.slow  # three training runs on a quarter of classic10
def test_resume_equals_uninterrupted(classic10, tmp_path):
    train, _ = classic10
    small = train.subset(np.arange(0, len(train), 4))
    config = classifier.TrainConfig(epochs=3, batch_size=50, seed=3)
    full, h_full = classifier.train(small, config, checkpoint_dir=tmp_path / "a", progress=False)

    class Killed(Exception):
        pass

    def kill_after_2(row):
        if row["epoch"] == 2:
            raise Killed

    with pytest.raises(Killed):
        classifier.train(small, config, checkpoint_dir=tmp_path / "b", on_epoch=kill_after_2, progress=False)
    resumed, h_res = classifier.train(small, config, checkpoint_dir=tmp_path / "b", resume=True, progress=False)
    assert [h["epoch"] for h in h_res] == [1, 2, 3]
    for a, b in zip(full.model.state_dict().values(), resumed.model.state_dict().values()):
        torch.testing.assert_close(a, b)
    with pytest.raises(ValueError, match="another configuration"):
        classifier.train(small, classifier.TrainConfig(epochs=4, batch_size=50, seed=3),
                         checkpoint_dir=tmp_path / "b", resume=True, progress=False)


@pytest.mark.parametrize("kwargs, match", [
    ({"epochs": 0}, "epochs"), ({"epochs": -3}, "epochs"), ({"batch_size": 0}, "batch_size"),
    ({"epochs": 2.5}, "epochs"), ({"lr": -1}, "lr"), ({"lr": float("nan")}, "lr"),
    ({"arch": "resnet900"}, "unknown arch"), ({"label_smoothing": 1.0}, "label_smoothing"),
])
def test_bad_config(kwargs, match):
    with pytest.raises(ValueError, match=match):
        classifier.TrainConfig(**kwargs)


@pytest.mark.slow  # four epochs on classic10 for each
@pytest.mark.parametrize("arch", ["mlp", "doodlenet"])
def test_baseline_architectures_train(arch, classic10):
    train, test = classic10
    config = classifier.TrainConfig(arch=arch, epochs=4, batch_size=64, lr=1e-3)
    clf, history = classifier.train(train, config, test_set=test, progress=False)
    assert history[-1]["top1"] > 0.2


@pytest.mark.parametrize("n, batch_size, epochs", [
    (40, 256, 1), (40, 20, 1), (40, 10, 1),
    pytest.param(200, 64, 2, marks=pytest.mark.slow),  # (40, 10, 1) anneals over its steps too, in a tenth the time
])
def test_tiny_runs_have_a_schedule(n, batch_size, epochs, classic10):
    """Runs of 4 steps or more warm up and anneal over exactly their steps (one-cycle); shorter ones keep the peak."""
    small = classic10[0].subset(np.arange(n))
    config = classifier.TrainConfig(epochs=epochs, batch_size=batch_size)
    _, history = classifier.train(small, config, progress=False)
    assert len(history) == epochs and np.isfinite(history[-1]["loss"])
    lrs = [h["lr"] for h in history]
    if epochs * -(-n // batch_size) >= 4:
        assert max(lrs) <= config.lr and lrs[-1] < config.lr * 1e-3  # annealed to ~0 at the run's last step
    else:
        assert lrs == [config.lr] * epochs


def test_heavier_strokes_keeps_every_sample_drawing_a_drawing():
    images = data.load_sample().images
    heavy = classifier.heavier_strokes(images)
    assert (heavy >= images).all() and (heavy > 0).sum() > 1.3 * (images > 0).sum()
    ink = (heavy > classifier.FILL_INK_LEVEL).reshape(len(images), -1).mean(1)
    densest = np.argsort(ink)[-20:]  # the scribbled fills: still accepted by to_canonical
    assert bitmaps.to_canonical(heavy[densest]).shape == (20, 28, 28)


def test_extra_canonical_drawings_join_training_as_they_are(classic10, monkeypatch):
    """train(extra_canonical=...): every extra drawing is in every epoch's batches, pixel for pixel as given
    (not canonicalised again), next to the real drawings in their canonical form."""
    train, test = classic10
    real = train.subset(np.arange(40))
    extra_images = np.random.default_rng(0).uniform(0, 1, (30, 28, 28)).astype(np.float32) ** 8  # no drawing at all
    extra = data.Drawings(extra_images, np.arange(30) % 10, train.categories, "generated")
    batches = []
    build = classifier.build_model

    def recording_build(*args, **kwargs):
        model = build(*args, **kwargs)
        model.register_forward_pre_hook(lambda m, inputs: batches.append(inputs[0].detach().clone()) if m.training
                                        else None)
        return model

    monkeypatch.setattr(classifier.training, "build_model", recording_build)
    config = classifier.TrainConfig(epochs=2, batch_size=16, augment=False, threads=1)  # tiny batches: one thread
    threads = torch.get_num_threads()
    try:
        clf, history = classifier.train(real, config, progress=False, extra_canonical=extra)
    finally:
        torch.set_num_threads(threads)
    seen = torch.cat(batches)[:, 0].numpy()
    assert len(seen) == 2 * 70 and len(batches) == 2 * 5  # 70 drawings an epoch, 5 batches of <= 16
    first_epoch = seen[:70]
    expected = np.concatenate([bitmaps.to_canonical(real.images), extra_images])
    order = [np.flatnonzero((first_epoch == image).all((1, 2))) for image in expected]
    assert all(len(o) == 1 for o in order)  # each one exactly once, unchanged
    assert clf.manifest["data"]["extra_canonical_drawings"] == 30 and clf.manifest["data"]["train_drawings"] == 40


def test_extra_canonical_bad_input(classic10):
    train = classic10[0].subset(np.arange(20))
    config = classifier.TrainConfig(epochs=1)
    with pytest.raises(ValueError, match="canonical floats"):
        classifier.train(train, config, extra_canonical=train, progress=False)  # uint8 source bitmaps
    other = data.Drawings(np.zeros((2, 28, 28), np.float32), np.array([0, 1]), ("cat", "dog"), "generated")
    with pytest.raises(ValueError, match="other categories"):
        classifier.train(train, config, extra_canonical=other, progress=False)


def _pad_drawings(labels):
    from drawai.strokes import SavedDrawings, render_many

    t = np.linspace(0, 2 * np.pi, 30)
    drawings = [[np.c_[100 + 60 * np.cos(t), 100 + 60 * np.sin(t)]] for _ in labels]
    return SavedDrawings(drawings, render_many(drawings), list(labels))


def test_train_on_own_drawings_adds_a_new_category_and_uses_them_as_drawn():
    own = _pad_drawings(["cat", "cat", "apple"])
    clf, history = classifier.train_on_own_drawings(own, ["apple", "cloud"], repeat=3,
                                                    config=classifier.TrainConfig(epochs=1))
    assert clf.categories == ["apple", "cloud", "cat"]
    held_out = data.train_test(data.load_sample(clf.categories))[1]  # the history's top-1 is on these
    assert history[-1]["top1"] == pytest.approx(classifier.evaluate(clf, held_out)["top1"])
    data_record = clf.manifest["data"]
    assert data_record["extra_canonical_drawings"] == 9 and data_record["train_drawings"] == 240
    with pytest.raises(ValueError, match="no drawings of your own"):
        classifier.train_on_own_drawings(_pad_drawings([]), "classic10")
    with pytest.raises(ValueError, match="repeat must be"):
        classifier.train_on_own_drawings(own, "classic10", repeat=0)


@pytest.mark.slow
def test_the_draw_notebook_trains_on_saved_drawings(tmp_path):
    """05_draw.ipynb with fine_tune = True, headless: the optional last section runs."""
    import papermill as pm

    from drawai import strokes

    own = _pad_drawings(["cat", "apple"])
    strokes.save_drawings(tmp_path / "mine.npz", own.strokes, own.labels)
    pm.execute_notebook(NOTEBOOKS / "05_draw.ipynb", tmp_path / "report.ipynb", cwd=str(NOTEBOOKS),
                        parameters={"dataset_path": str(tmp_path / "mine.npz"), "categories": ["apple", "cloud"],
                                    "fine_tune": True, "fine_tune_epochs": 1},
                        progress_bar=False, kernel_name="python3")
    cells = json.loads((tmp_path / "report.ipynb").read_text())["cells"]
    tuning = [c for c in cells if c["cell_type"] == "code" and "train_on_own_drawings" in "".join(c["source"])]
    printed = "".join(text for out in tuning[0]["outputs"] for text in out.get("text", []))  # outputs, not source
    assert re.fullmatch(r"Held-out sample top-1: \d+\.\d%; your drawings \(trained on\): \d+%\n", printed), printed


@pytest.mark.slow
def test_bf16_autocast_is_used_where_the_cpu_has_it(classic10, monkeypatch):
    """bf16=True computes the convolutions in bfloat16 (weights stay float32) on a CPU that does it natively,
    and falls back to float32 elsewhere; bf16=False is float32 everywhere."""
    train = classic10[0].subset(np.arange(0, 800, 8))
    seen = []
    build = classifier.build_model

    def recording_build(*args, **kwargs):
        model = build(*args, **kwargs)
        model.head.register_forward_hook(lambda m, inputs, out: seen.append(out.dtype) if m.training else None)
        return model

    monkeypatch.setattr(classifier.training, "build_model", recording_build)
    for bf16, native, expected in ((True, True, torch.bfloat16), (True, False, torch.float32),
                                   (False, True, torch.float32)):
        seen.clear()
        monkeypatch.setattr(classifier.networks, "native_bf16", lambda native=native: native)
        clf, history = classifier.train(train, classifier.TrainConfig(epochs=1, batch_size=50, bf16=bf16),
                                        progress=False)
        assert set(seen) == {expected} and np.isfinite(history[0]["loss"])
        assert all(p.dtype == torch.float32 for p in clf.model.parameters())


def test_manifest_records_the_whole_architecture(classic10, tmp_path, monkeypatch):
    """Defaults are written out, so a saved model loads as what it is after draw-ai's defaults change."""
    clf, _ = classifier.train(classic10[0].subset(np.arange(0, 800, 8)), classifier.TrainConfig(epochs=1),
                              progress=False)
    widths, depth, dropout = classifier.DoodleCNN.__init__.__defaults__
    assert clf.manifest["config"]["arch_kwargs"] == {"widths": list(widths), "depth": list(depth), "dropout": dropout}
    clf.save(tmp_path / "m")
    monkeypatch.setattr(classifier.DoodleCNN.__init__, "__defaults__", ((16, 32, 64), (1, 1, 1), 0.5))
    loaded = classifier.Classifier.load(tmp_path / "m")
    images = classic10[1].images[:20]
    np.testing.assert_allclose(loaded.probabilities(images), clf.probabilities(images), atol=1e-6)

import ast
import importlib.util
import io
import json
import os
import re
import signal
import subprocess
import sys

import nbformat
import numpy as np
import pytest

from drawai import categories as cats
from drawai import jobs, model_folder, stderr_filter
from drawai.classifier import Classifier


def test_parse_value():
    assert jobs.parse_value("3") == 3 and jobs.parse_value("1e-3") == 0.001
    assert jobs.parse_value("classic10") == "classic10" and jobs.parse_value("true") is True
    assert jobs.parse_value("['cat', 'dog']") == ["cat", "dog"]


@pytest.mark.parametrize("params, match", [
    ({"epoch": 3}, "no parameter"),
    ({"epochs": -1}, "epochs"),
    ({"epochs": "ten"}, "integer"),
    ({"batch_size": 0}, "batch_size"),
    ({"lr": "fast"}, "number"),
    ({"augment": "yes"}, "true/false"),
    ({"categories": "catt"}, "did you mean 'cat'"),
    ({"arch": "vgg"}, "unknown arch"),
])
def test_bad_parameters_fail_before_anything_runs(params, match, tmp_path, monkeypatch):
    monkeypatch.setattr(jobs, "RUNS", tmp_path)
    with pytest.raises(jobs.JobError, match=match):
        jobs.run("train-classifier", params)
    assert not any(tmp_path.iterdir())


def test_cli_reports_bad_parameters(capsys):
    assert jobs.main(["train-classifier", "-p", "epochs", "0"]) == 1
    assert "epochs must be a positive integer" in capsys.readouterr().err


def test_unknown_job():
    with pytest.raises(jobs.JobError, match="unknown job"):
        jobs.run("train-everything")


@pytest.mark.slow  # runs a notebook three times, a kernel each
def test_a_failing_notebook_keeps_its_partial_report_and_names_the_cell(tmp_path, monkeypatch):
    nb = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_code_cell("x = 1", metadata={"tags": ["parameters"]}),
        nbformat.v4.new_code_cell("print('before')"),
        nbformat.v4.new_code_cell("raise RuntimeError('the data went away')"),
    ])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    (tmp_path / "nb").mkdir()
    nbformat.write(nb, tmp_path / "nb" / "broken.ipynb")
    monkeypatch.setattr(jobs, "NOTEBOOKS", tmp_path / "nb")
    monkeypatch.setattr(jobs, "RUNS", tmp_path / "runs")
    monkeypatch.setitem(jobs.JOBS, "broken", jobs.Job("broken.ipynb", {"x": 1}))
    # papermill numbers cells after injecting its parameters cell; the message also quotes the cell's code
    with pytest.raises(jobs.JobError, match=r"cell 4 \(\"raise RuntimeError\('the data went away'\)\"\): "
                                            "RuntimeError: the data went away") as e:
        jobs.run("broken", progress=False)
    report = next((tmp_path / "runs" / "broken").glob("*/broken.ipynb"))
    assert str(report) in str(e.value)
    executed = nbformat.read(report, as_version=4)
    before = next(c for c in executed.cells if c.source == "print('before')")
    assert before.outputs[0]["text"] == "before\n"
    assert not (report.parent / "metrics.json").exists()
    # the same command again resumes in the unfinished run's folder instead of starting another
    with pytest.raises(jobs.JobError):
        jobs.run("broken", progress=False)
    assert len(list((tmp_path / "runs" / "broken").iterdir())) == 1
    with pytest.raises(jobs.JobError):
        jobs.run("broken", progress=False, fresh=True)
    assert len(list((tmp_path / "runs" / "broken").iterdir())) == 2


@pytest.mark.slow
def test_train_classifier_job_end_to_end(tmp_path, monkeypatch):
    """The papermill job: executed report, metrics.json, a loadable model, TensorBoard logs, publish."""
    monkeypatch.setattr(jobs, "RUNS", tmp_path / "runs")
    out = jobs.run("train-classifier", {"categories": "classic10", "epochs": 3, "batch_size": 64},
                   publish=str(tmp_path / "published"), progress=False)
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["categories"] == 10 and metrics["test_top1"] > 0.3
    assert abs(metrics["test_top1"] - metrics["shifted_top1"]) < 0.25
    report = nbformat.read(out / "02_classifier.ipynb", as_version=4)
    images = [o for c in report.cells for o in c.get("outputs", []) if "image/png" in o.get("data", {})]
    assert len(images) >= 5  # the plots are in the report
    assert list((out / "tensorboard").glob("events.out.tfevents.*"))
    clf = Classifier.load(tmp_path / "published", categories="classic10")
    assert clf.manifest["command"].startswith("python -m drawai.jobs train-classifier -p categories 'classic10'")
    assert clf.manifest["metrics"]["test_top1"] == metrics["test_top1"]


@pytest.mark.slow
def test_data_notebook_runs(tmp_path, monkeypatch):
    monkeypatch.setattr(jobs, "RUNS", tmp_path / "runs")
    out = jobs.run("data", {"categories": "classic10"}, progress=False)
    report = nbformat.read(out / "01_data.ipynb", as_version=4)
    assert sum("image/png" in o.get("data", {}) for c in report.cells for o in c.get("outputs", [])) >= 4


@pytest.mark.parametrize("params, match", [
    ({"preset": "huge"}, "unknown preset"),
    ({"recipe": "vae"}, "recipe"),
    ({"categories": "catt"}, "did you mean 'cat'"),
    ({"categories": ["cat"]}, "at least 2 categories"),
    ({"epochs": -1}, "epochs"),
    ({"seed": "zero"}, "integer"),
    ({"resume": "yes"}, "true/false"),
    ({"classifier_path": "/nonexistent/classifier"}, "not a draw-ai model folder"),
    ({"classifier_path": None}, "must be a folder path"),
])
def test_bad_train_gan_parameters_fail_before_anything_runs(params, match, tmp_path, monkeypatch):
    monkeypatch.setattr(jobs, "RUNS", tmp_path)
    with pytest.raises(jobs.JobError, match=match):
        jobs.run("train-gan", params)
    assert not any(tmp_path.iterdir())


def test_train_gan_needs_a_classifier_that_knows_its_categories(tmp_path, monkeypatch):
    judge = tmp_path / "judge"
    judge.mkdir()
    (judge / "manifest.json").write_text(json.dumps({"format": "drawai-classifier/1", "categories": ["cat", "dog"]}))
    monkeypatch.setattr(jobs, "RUNS", tmp_path / "runs")
    with pytest.raises(jobs.JobError, match=r"does not know \['apple'"):
        jobs.run("train-gan", {"classifier_path": str(judge), "categories": ["apple", "cat"]})
    assert not (tmp_path / "runs").exists()


def test_demo_runs_its_jobs_and_refuses_parameters_no_demo_job_has(capsys):
    assert [name for name, _ in jobs.DEMO] == ["train-classifier", "train-gan", "fight"]
    assert jobs.main(["demo", "-p", "epoch", "3"]) == 1
    assert "no demo job has parameter(s) ['epoch']" in capsys.readouterr().err


@pytest.mark.slow
def test_train_gan_job_end_to_end(tmp_path, monkeypatch):
    """One epoch of the demo GAN on classic10, judged by the shipped classifier: report with its plots,
    metrics.json, a loadable published model whose manifest carries the metrics. ~1-2 min on 2 cores."""
    from drawai import gan

    monkeypatch.setattr(jobs, "RUNS", tmp_path / "runs")
    out = jobs.run("train-gan", {"categories": "classic10", "epochs": 1, "cas_epochs": 10},
                   publish=str(tmp_path / "published"), progress=False)
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["categories"] == 10 and metrics["epochs"] == 1 and metrics["eval_per_class"] == 80
    assert metrics["gan_test_top1"] <= metrics["gan_test_top5"]
    assert metrics["real_test_top1"] > 0.9  # the shipped classifier on classic10's held-out drawings
    # after one epoch the drawings are far from real ones; real drawings are close to each other
    assert metrics["fid"] > 5 * metrics["fid_real_floor"] > 0
    assert metrics["fid_class_real_mean"] < 0.5 * metrics["fid_class_shuffled_mean"]
    assert metrics["memorisation_ratio"] > 0.5
    # real drawings against other real drawings of their class: the variety reference, measured in the run
    assert metrics["recall_real"] > 0.8 and metrics["coverage_real"] > 0.9 and metrics["variety_k"] == 5
    assert metrics["cas_epochs"] == 10 and metrics["cas_real_top1"] > 0.3  # chance is 0.1
    assert len(metrics["per_class"]) == 10 and set(metrics["targets"].values()) <= {True, False}
    # judged as generate() draws by default (N(0, 1) truncated at 0.5), and with the other noises beside it (no
    # fitted noise: the demo preset has no encoder)
    assert (metrics["noise"], metrics["truncation"]) == ("normal", 0.5)
    assert set(metrics["other_noises"]) == {"normal ±1", "normal untruncated"}
    assert all(set(other) >= {"gan_test_top1", "recall", "coverage"} for other in metrics["other_noises"].values())
    # other drawings than the default's (a continuous figure: equal only if the drawings were the same)
    assert all(other["fid_class_mean"] != metrics["fid_class_mean"] for other in metrics["other_noises"].values())
    report = nbformat.read(out / "03_gan.ipynb", as_version=4)
    texts = "".join(o.get("text", "") for c in report.cells for o in c.get("outputs", []))
    assert "GAN-test top-1 >= 0.9 of the classifier's top-1" in texts and ("PASS" in texts or "FAIL" in texts)
    assert "CAS top-1 >= 0.6 of the same recipe" in texts and "CAS top-1 " in texts
    assert "own: normal 0.5" in texts and "noise truncated at +-0.5" in texts
    assert re.search(r"^epoch 1/1  g_loss \d+\.\d{3}  d_loss \d+\.\d{3}  elapsed \d+:\d\d  ETA 0:00$", texts, re.M)
    # the long judging after training says what it does: a line per judged noise, one per CAS epoch
    assert [line for line in texts.splitlines() if line.startswith("judging it drawing from")] == [
        "judging it drawing from normal ±1 ...", "judging it drawing from normal untruncated ..."]
    cas_lines = re.findall(r"^CAS epoch +(\d+)/20  trained on (generated|real): test top-1 ", texts, re.M)
    assert cas_lines == [(str(e), "generated" if e <= 10 else "real") for e in range(1, 21)]
    images = [o for c in report.cells for o in c.get("outputs", []) if "image/png" in o.get("data", {})]
    assert len(images) >= 6  # losses, real beside generated, GAN-test, FID, nearest pairs, variety
    model = gan.load(tmp_path / "published")
    assert model.categories == tuple(metrics["per_class"]) and model.manifest["metrics"]["fid"] == metrics["fid"]
    assert model.manifest["command"].startswith("python -m drawai.jobs train-gan -p categories 'classic10'")


def test_demo_feeds_the_models_it_trains_to_the_later_jobs(tmp_path, monkeypatch):
    calls = []

    def fake_run(name, params, fresh=False, resume_dir=None):
        calls.append((name, params))
        return tmp_path / name

    monkeypatch.setattr(jobs, "run", fake_run)
    monkeypatch.setattr(jobs, "RUNS", tmp_path / "runs")
    folders = jobs.run_demo({"seed": 1})
    names = [name for name, _ in calls]
    assert names.index("train-gan") < names.index("fight") and names.index("train-classifier") < names.index("fight")
    fight_params = dict(calls)["fight"]
    assert fight_params["generator_path"] == str((tmp_path / "train-gan" / "model").resolve())
    assert fight_params["classifier_path"] == str((tmp_path / "train-classifier" / "model").resolve())
    assert dict(calls)["train-gan"]["classifier_path"] == fight_params["classifier_path"]  # its judge too
    assert all(p["seed"] == 1 for _, p in calls) and folders["fight"] == tmp_path / "fight"
    for name, params in jobs.DEMO:  # the demo's own parameters are ones its jobs accept
        assert set(params) <= set(jobs.JOBS[name].defaults)


@pytest.mark.parametrize("params, match", [
    ({"generator_path": "/nonexistent/gan"}, "/nonexistent/gan is not a draw-ai model folder: it has no manif"),
    ({"rounds": 0}, "rounds must be"),
    ({"seeds": [0]}, "at least two seeds"),
    ({"ks": [0, -1]}, "every k"),
    ({"epochs": 0}, "epochs"),
    ({"categories": ["cat", "dog"]}, "does not know"),
])
def test_fight_job_bad_parameters_fail_before_anything_runs(params, match, tmp_path, monkeypatch):
    monkeypatch.setattr(jobs, "RUNS", tmp_path / "runs")
    generator = tmp_path / "gan"  # the check reads the manifest's categories only
    generator.mkdir()
    manifest = {"format": model_folder.FORMAT, "kind": "generator", "categories": cats.resolve("classic10"),
                **dict.fromkeys(("data", "weights", "config", "metrics"), {}), "command": ""}
    (generator / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(jobs.JobError, match=match):
        jobs.run("fight", {"generator_path": str(generator), **params})
    assert not (tmp_path / "runs").exists()


@pytest.fixture(scope="module")
def tiny_gan(tmp_path_factory):
    """A one-epoch classic10 GAN on 8 drawings per category, saved as a model folder."""
    from drawai import data, gan

    sample = data.load_sample("classic10")
    train = sample.subset(np.concatenate([np.flatnonzero(sample.labels == c)[:8] for c in range(10)]))
    config = gan.GANConfig(categories="classic10", epochs=1, batch_size=16, noise_dim=8, width=8)
    return gan.save(gan.train(train, config, verbose=0), tmp_path_factory.mktemp("gan") / "model", config=config)


@pytest.mark.slow
def test_fight_job_end_to_end(tmp_path, monkeypatch, tiny_gan):
    """The papermill job with tiny parameters: the report's figures, the conclusion, metrics.json."""
    monkeypatch.setattr(jobs, "RUNS", tmp_path / "runs")
    out = jobs.run("fight", {"generator_path": str(tiny_gan), "rounds": 100, "ks": [0, 5], "seeds": [0, 1],
                             "epochs": 1}, progress=False)
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["fight"]["rounds"] == 100 and metrics["fight"]["labels"] == 10
    assert [row["k"] for row in metrics["augmentation"]["summary"]] == [0, 5]
    assert "k=5" in metrics["augmentation"]["conclusion"]
    assert len(json.loads((out / "augmentation.json").read_text())["runs"]) == 4
    report = nbformat.read(out / "04_fight.ipynb", as_version=4)
    outputs = [o for c in report.cells for o in c.get("outputs", [])]
    assert sum("image/png" in o.get("data", {}) for o in outputs) >= 3  # bars, rounds, augmentation curve
    printed = "".join(o.get("text", "") for o in outputs)
    assert "overall" in printed and metrics["augmentation"]["conclusion"].splitlines()[0] in printed


# --- notebook defaults, the classifier job without TensorFlow, progress lines ----------------------------------------

def parameter_cell(notebook: str) -> dict:
    """The values the notebook's parameters cell assigns, read with ast (every statement must be `name = literal`)."""
    nb = nbformat.read(jobs.NOTEBOOKS / notebook, as_version=4)
    cell = next(c for c in nb.cells if "parameters" in c.metadata.get("tags", []))
    values = {}
    for node in ast.parse(cell.source).body:
        assert isinstance(node, ast.Assign) and len(node.targets) == 1, f"{notebook}: {ast.unparse(node)}"
        values[node.targets[0].id] = ast.literal_eval(node.value)
    return values


@pytest.mark.parametrize("name", sorted(jobs.JOBS))
def test_every_jobs_defaults_equal_its_notebooks_parameter_cell(name):
    job = jobs.JOBS[name]
    values = parameter_cell(job.notebook)
    assert values.pop("out_dir", None) is None  # the job sets it (a notebook that writes nothing may not say so)
    typed = lambda d: {k: (type(v).__name__, v) for k, v in d.items()}  # noqa: E731  (True is not 1 here)
    assert typed(values) == typed(job.defaults)


def test_the_classifier_jobs_recipe_defaults_are_trainconfigs():
    """TrainConfig states the recipe once: the job (and with the test above, notebook 02) and the bench read it."""
    from drawai.classifier import TrainConfig

    recipe = {k: v for k, v in jobs.JOBS["train-classifier"].defaults.items() if hasattr(TrainConfig, k)}
    assert set(recipe) == {"arch", "epochs", "batch_size", "lr", "seed", "augment", "threads"}
    assert recipe == {k: getattr(TrainConfig(), k) for k in recipe}


@pytest.mark.parametrize("notebook, builder, rebuilt", [
    ("02_classifier.ipynb", "classifier_config", "TrainConfig("), ("03_gan.ipynb", "gan_config", "GANConfig"),
    ("04_fight.ipynb", "fight_config", "TrainConfig(")])
def test_each_training_notebook_takes_its_config_from_the_jobs_builder(notebook, builder, rebuilt):
    """The job's check and the notebook build the config in one place, so they cannot disagree."""
    source = "\n".join(cell.source for cell in nbformat.read(jobs.NOTEBOOKS / notebook, as_version=4).cells
                       if cell.cell_type == "code")
    assert f"jobs.{builder}(" in source
    assert rebuilt not in source and ".preset(" not in source


def test_the_classifier_notebooks_imports_and_tensorboard_log_load_no_tensorflow(tmp_path):
    """Every import statement of notebook 02, then its TensorBoard log, in a fresh process: TensorFlow stays out.
    (torch's SummaryWriter imported it: tensorboard resolves its file access to TensorFlow when installed.)"""
    if importlib.util.find_spec("tensorflow") is None:
        pytest.skip("TensorFlow is not installed here, so nothing could import it")
    nb = nbformat.read(jobs.NOTEBOOKS / "02_classifier.ipynb", as_version=4)
    imports = [ast.unparse(node) for cell in nb.cells if cell.cell_type == "code"
               for node in ast.walk(ast.parse(cell.source)) if isinstance(node, ast.Import | ast.ImportFrom)]
    assert any("drawai" in line for line in imports) and any("StepPrinter" in line for line in imports)
    code = "\n".join([*imports, "import sys", f"log = classifier.ScalarLog({str(tmp_path)!r})",
                      "log.add_scalar('loss', 1.5, 3)", "log.close()", "print('tensorflow' in sys.modules)"])
    done = subprocess.run([sys.executable, "-c", code], cwd=jobs.NOTEBOOKS, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(jobs.ROOT)}, timeout=600)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["False"]
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(tmp_path))
    events.Reload()
    assert [(e.step, e.value) for e in events.Scalars("loss")] == [(3, 1.5)]  # TensorBoard reads the log


def test_step_printer_says_step_total_elapsed_and_eta(monkeypatch):
    from drawai import progress

    clock = iter([100.0, 110.0, 130.0])  # made; step 4 done (a resumed loop); step 5 done
    monkeypatch.setattr(progress.time, "perf_counter", lambda: next(clock))
    show = progress.StepPrinter(10, "epoch", file=io.StringIO())
    assert show(4, "loss 1.000") == "epoch  4/10  loss 1.000  elapsed 0:10  ETA 1:00"  # 10 s a step, 6 to go
    assert show(5) == "epoch  5/10  elapsed 0:30  ETA 1:15"  # 15 s a step, 5 to go
    assert progress.clock(3725) == "1:02:05"


def test_the_gan_prints_a_line_per_epoch(capsys):
    from drawai import gan

    printer = gan.EpochPrinter()
    printer.set_params({"epochs": 150, "steps": 25, "verbose": 0})
    printer.on_train_begin()
    printer.on_epoch_end(0, {"d_loss": np.array([2.25], np.float32), "g_loss": 1.5, "aux_weight": 1.0})
    line = capsys.readouterr().out
    assert re.fullmatch(r"epoch   1/150  g_loss 1\.500  d_loss 2\.250  elapsed 0:\d\d  ETA \d+:\d\d\n", line), line


# --- what a job shows in the terminal ---------------------------------------------------------------------------------

NOISE_LINES = [
    "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR",
    "I0000 00:00:1796171174.341662   12397 port.cc:153] oneDNN custom operations are on. You may see slightly "
    "different numerical results due to floating-point round-off errors from different computation orders.",
    "E0000 00:00:1796171199.207958   12402 meta_optimizer.cc:967] remapper failed: INVALID_ARGUMENT: Mutation::Apply "
    "error: fanout 'StatefulPartitionedCall/gradient_tape/LeakyRelu_1/LeakyReluGrad' exist for missing node",
    "[IPKernelApp] WARNING | Kernel is running over TCP without encryption. All communication (including code and "
    "outputs) is sent in plain text and is susceptible to eavesdropping.",
    "To enable the following instructions: AVX512F AVX512_VNNI AMX_TILE, in other operations, rebuild TensorFlow "
    "with the appropriate compiler flags.",
]
REAL_LINES = ["E0000 00:00:1796171199.207958   12402 real_op.cc:12] a real C++ error",
              "Traceback (most recent call last):",
              "W0000 00:00:1796171199.207958   12402 meta_optimizer.cc:967] a grappler warning, not a failure"]


def test_the_noise_filter_drops_whole_noise_lines_only():
    out = io.StringIO()
    lines = stderr_filter.NoiseFilter(out)
    text = "\n".join([NOISE_LINES[0], "epoch 1/3", *NOISE_LINES[1:], *REAL_LINES, "half a li"])
    for i in range(0, len(text), 7):  # in pieces, as a pipe delivers it
        lines.write(text[i:i + 7])
    assert out.getvalue() == "\n".join(["epoch 1/3", *REAL_LINES]) + "\n"
    lines.write("ne\rprogress 50%\r")
    lines.close()
    assert out.getvalue().endswith("half a line\rprogress 50%\r")


def fake_notebook(path, *sources: str) -> None:
    cells = [nbformat.v4.new_code_cell("out_dir = None", metadata={"tags": ["parameters"]})]
    nb = nbformat.v4.new_notebook(cells=cells + [nbformat.v4.new_code_cell(s) for s in sources])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, path)


# Runs jobs.main in a fresh process, as `python -m drawai.jobs` would, on the notebooks and runs folders the test
# chose; with `jobs`, on fake jobs (notebooks made by the test) and a demo of them. Then it records whether this
# process imported TensorFlow.
DRIVER = """
import json, sys
from pathlib import Path
from drawai import jobs, model_folder
cfg = json.loads(sys.argv[1])
jobs.NOTEBOOKS, jobs.RUNS = Path(cfg["notebooks"]), Path(cfg["runs"])
if cfg["jobs"]:
    jobs.JOBS = {name: jobs.Job(notebook, {}) for name, notebook in cfg["jobs"].items()}
    jobs.DEMO, jobs.MODEL_PARAMETERS = [(name, {}) for name in cfg["jobs"]], {}
code = jobs.main(cfg["argv"])
Path(cfg["modules"]).write_text(json.dumps("tensorflow" in sys.modules))
sys.exit(code)
"""


def driver(tmp_path, jobs_: dict | None, argv: list[str], env: dict | None = None, notebooks=None,
           **popen) -> subprocess.Popen:
    cfg = {"notebooks": str(notebooks or tmp_path), "runs": str(tmp_path / "runs"), "jobs": jobs_, "argv": argv,
           "modules": str(tmp_path / "driver-imported-tensorflow.json")}
    return subprocess.Popen([sys.executable, "-c", DRIVER, json.dumps(cfg)], cwd=jobs.ROOT, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env={**os.environ, "PYTHONPATH": str(jobs.ROOT), **(env or {})}, **popen)


@pytest.mark.slow
def test_a_job_streams_its_lines_hides_framework_noise_and_shows_real_errors(tmp_path):
    """The kernel writes noise and real lines at the C level (file descriptor 2, as TensorFlow does) and Python's
    stderr, then fails: the terminal gets the printed line, the real ones, and the failing cell named in one line."""
    noise = "".join(line + "\n" for line in NOISE_LINES[:3]).encode()
    fake_notebook(tmp_path / "fake.ipynb",
                  "import os, sys\nprint('epoch 1/2  loss 0.500', flush=True)\n"
                  f"os.write(2, {noise!r})\nos.write(2, {(REAL_LINES[0] + chr(10)).encode()!r})\n"
                  "print('a warning of its own', file=sys.stderr)",
                  "raise RuntimeError('the data went away')")
    proc = driver(tmp_path, {"fake": "fake.ipynb"}, ["fake"])
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 1, err
    assert "epoch 1/2  loss 0.500\n" in out
    assert REAL_LINES[0] in err and "a warning of its own" in err
    assert re.search(r"^error: fake failed in cell 4 \(\"raise RuntimeError\('the data went away'\)\"\): RuntimeError: "
                     "the data went away$", err, flags=re.MULTILINE), err
    for noisy in ("absl::InitializeLog", "oneDNN", "remapper failed", "without encryption", "Traceback"):
        assert noisy not in out + err, noisy


@pytest.mark.slow  # a kernel, then a notebook that stays silent for seconds
def test_a_job_silent_for_a_while_says_it_is_still_working(tmp_path, monkeypatch, capsys):
    fake_notebook(tmp_path / "quiet.ipynb", "import time\nprint('evaluating', flush=True)\ntime.sleep(2.6)\n"
                                            "print('done')")
    monkeypatch.setattr(jobs, "NOTEBOOKS", tmp_path)
    monkeypatch.setattr(jobs, "RUNS", tmp_path / "runs")
    monkeypatch.setitem(jobs.JOBS, "quiet", jobs.Job("quiet.ipynb", {}))
    monkeypatch.setattr(jobs, "HEARTBEAT_S", 1)
    jobs.run("quiet")
    out = capsys.readouterr().out
    said = out[out.index("evaluating\n"):out.index("done\n")].splitlines()[1:]
    assert len(said) >= 2 and all(re.fullmatch(r"  \.\.\. still working: 0:0\d since the last line, \d:\d\d in all", s)
                                  for s in said), out


@pytest.mark.slow
def test_the_classifier_job_shows_its_epochs_as_it_runs_and_never_imports_tensorflow(tmp_path):
    """`python -m drawai.jobs train-classifier`, classic10, 2 epochs, on a copy of notebook 02 with one cell added
    at the end that fails if the kernel has imported TensorFlow: a line per epoch reaches the terminal while the
    job runs, no framework noise does, and neither the job's process nor its kernel imports TensorFlow. ~1 min."""
    nb = nbformat.read(jobs.NOTEBOOKS / "02_classifier.ipynb", as_version=4)
    nb.cells.append(nbformat.v4.new_code_cell("import sys\n\nassert 'tensorflow' not in sys.modules, "
                                              "sorted(m for m in sys.modules if m.startswith('tensorflow'))[:5]"))
    (tmp_path / "nb").mkdir()
    nbformat.write(nb, tmp_path / "nb" / "02_classifier.ipynb")
    argv = ["train-classifier", "-p", "categories", "classic10", "-p", "epochs", "2", "-p", "batch_size", "64"]
    proc = driver(tmp_path, None, argv, notebooks=tmp_path / "nb")
    epoch_lines = []
    for line in proc.stdout:
        if line.startswith("epoch "):
            epoch_lines.append((line, proc.poll()))
    err = proc.stderr.read()
    assert proc.wait(timeout=600) == 0, err
    assert [re.fullmatch(r"epoch [12]/2  loss \d+\.\d{3}  test top-1 \d+\.\d%  elapsed \d+:\d\d  ETA \d+:\d\d\n", line)
            is not None for line, _ in epoch_lines] == [True, True], epoch_lines
    assert epoch_lines[0][1] is None  # the first epoch's line came while the job was still running
    assert json.loads((tmp_path / "driver-imported-tensorflow.json").read_text()) is False
    for noisy in ("without encryption", "Traceback", "absl", "oneDNN"):
        assert noisy not in err, err


@pytest.mark.slow
def test_a_demo_stopped_with_ctrl_c_resumes_and_says_so(tmp_path):
    """SIGINT to the demo's process group (what Ctrl-C in a terminal sends) while its second job runs; then the demo
    again: the finished job is reused, the stopped one resumes in its own folder, and the demo ends with its summary.
    ~30 s: four kernels."""
    fake_notebook(tmp_path / "a.ipynb", "print('a done')")
    fake_notebook(tmp_path / "b.ipynb", "import os, time\nprint('b started', flush=True)\n"
                                        "if os.environ.get('FAKE_B_SLEEP'):\n    time.sleep(300)")
    fake = {"a": "a.ipynb", "b": "b.ipynb"}
    # Ctrl-C reaches a foreground job in a terminal; a test run started in the background (`make test &`) has
    # SIGINT ignored, which its children inherit, so the demo gets the terminal's disposition back.
    proc = driver(tmp_path, fake, ["demo"], env={"FAKE_B_SLEEP": "1"}, start_new_session=True,
                  preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    said = []
    for line in proc.stdout:  # until the second job's notebook runs
        said.append(line)
        if line.startswith("b started"):
            break
    assert said and said[-1].startswith("b started"), said
    os.killpg(proc.pid, signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    # one sentence: not the traceback the kernel, shut down in the middle of its cell, logs
    assert re.fullmatch(r"b was interrupted; its unfinished run \S+ is kept; `make demo` \(or the same command\) "
                        "resumes it, reusing the jobs it finished", err.strip()), err
    (a_run,), (b_run,) = (list((tmp_path / "runs" / job).iterdir()) for job in ("a", "b"))
    assert (a_run / "metrics.json").exists() and not (b_run / "metrics.json").exists()
    assert (b_run / "b.ipynb").exists()  # the partial report

    proc = driver(tmp_path, fake, ["demo"])
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    assert "resuming the demo stopped in" in out and f"a: finished before the demo stopped; reusing {a_run}" in out
    assert f"resuming the unfinished run {b_run}" in err and "draw-ai demo: done" in out
    assert [p.name for p in (tmp_path / "runs" / "b").iterdir()] == [b_run.name]
    assert (b_run / "metrics.json").exists() and len(list((tmp_path / "runs" / "demo").iterdir())) == 1


@pytest.mark.slow
def test_a_tiny_demo_shows_each_jobs_progress_and_ends_with_its_summary(tmp_path):
    """`python -m drawai.jobs demo` with every recipe cut to one epoch on classic10 (20 fight rounds): the terminal
    gets each job's heading and per-epoch lines, then the summary table, and no framework noise. ~3 min."""
    tiny = ["-p", "categories", "classic10", "-p", "epochs", "1", "-p", "cas_epochs", "1", "-p", "rounds", "20"]
    done = subprocess.run([sys.executable, "-m", "drawai.jobs", "demo", *tiny], cwd=jobs.ROOT, capture_output=True,
                          text=True, env={**os.environ, "DRAWAI_RUNS": str(tmp_path / "runs")}, timeout=1200)
    assert done.returncode == 0, done.stderr
    out = done.stdout
    for pattern in (r"^\[1/3\] train-classifier: the PyTorch classifier, 10 categories, 1 epochs",
                    r"^epoch 1/1  loss \d+\.\d{3}  test top-1 \d+\.\d%  elapsed \d+:\d\d  ETA 0:00$",
                    r"^\[2/3\] train-gan: ", r"^epoch 1/1  g_loss \d+\.\d{3}  d_loss \d+\.\d{3}  elapsed",
                    r"^\[3/3\] fight: ", r"^training run 4/4  k=40 seed 1  test top-1 \d+\.\d%  elapsed",
                    r"^draw-ai demo: done", r"^  classifier +1 epochs, 10 categories +30 epochs, 345 categories$",
                    r"^  fight: rounds the classifier won +\d+\.\d% of 20 \(chance 10\.0%\)",
                    r"^  all +\d+:\d\d +\d+:\d\d +\(target: 10:00 of wall time on 2 idle cores\)$"):
        assert re.search(pattern, out, flags=re.MULTILINE), (pattern, out)
    (record,) = (tmp_path / "runs" / "demo").glob("*/demo.json")
    state = json.loads(record.read_text())
    assert state["finished"] and list(state["jobs"]) == ["train-classifier", "train-gan", "fight"]
    assert (record.parent / "summary.txt").read_text().rstrip() in out
    for noisy in ("absl", "oneDNN", "remapper failed", "without encryption", "rebuild TensorFlow", "Traceback"):
        assert noisy not in out + done.stderr, noisy


# --- the demo: bad input, the summary ---------------------------------------------------------------------------------

def test_a_demo_without_the_sample_stops_at_once_in_one_sentence(tmp_path, monkeypatch, capsys):
    from drawai import data

    monkeypatch.setattr(jobs, "RUNS", tmp_path / "runs")
    monkeypatch.setattr(data, "SAMPLE_PATH", tmp_path / "quickdraw_sample.npz")
    assert jobs.main(["demo"]) == 1
    err = capsys.readouterr().err
    assert re.fullmatch(r"error: the embedded sample \S+quickdraw_sample\.npz is missing; rebuild it with "
                        r"`python scripts/build_sample.py` \(needs npm\)\n", err), err
    assert not (tmp_path / "runs").exists()


def test_a_demo_that_cannot_write_its_runs_stops_at_once_in_one_sentence(tmp_path, monkeypatch, capsys):
    (tmp_path / "runs").write_text("a file where the runs folder should be")  # chmod does not stop root; this does
    monkeypatch.setattr(jobs, "RUNS", tmp_path / "runs" / "inside")
    assert jobs.main(["demo"]) == 1
    err = capsys.readouterr().err
    assert re.fullmatch(r"error: cannot write the demo's runs to \S+/runs/inside \(Not a directory\): make it "
                        "writable or set DRAWAI_RUNS to a writable folder\n", err), err


def test_the_demo_summary_sets_its_figures_beside_the_published_ones(tmp_path, monkeypatch):
    def folder(name, metrics):
        (tmp_path / name).mkdir()
        (tmp_path / name / "metrics.json").write_text(json.dumps(metrics))
        return str(tmp_path / name)

    published = {"classifier": {"epochs": 30, "categories": 345, "test_top1": 0.557, "test_top5": 0.802,
                                "shifted_top1": 0.503},
                 "generator": {"epochs": 60, "categories": 345, "gan_test_top1": 0.5676, "real_test_top1": 0.5567}}
    for kind, metrics in published.items():
        (tmp_path / kind).mkdir()
        (tmp_path / kind / "manifest.json").write_text(json.dumps({
            "format": model_folder.FORMAT, "kind": kind, "categories": ["cat"], "metrics": metrics,
            **dict.fromkeys(("data", "weights", "config"), {}), "command": ""}))
    monkeypatch.setattr(jobs, "PUBLISHED", {kind: tmp_path / kind for kind in published})
    gan_metrics = {"epochs": 150, "categories": 10, "gan_test_top1": 0.9, "real_test_top1": 0.955,
                   "precision_ratio": 1.02, "recall_ratio": 0.41, "density_ratio": 0.876, "coverage_ratio": 0.8,
                   "recall": 0.37}
    state = {"wall_seconds": 540.0, "cpu_seconds": 901.0, "jobs": {
        "train-classifier": {"folder": folder("c", {"epochs": 6, "categories": 345, "test_top1": 0.431,
                                                    "test_top5": 0.71, "shifted_top1": 0.39}),
                             "wall_seconds": 200.0, "cpu_seconds": 380.0},
        "train-gan": {"folder": folder("g", gan_metrics), "wall_seconds": 250.0, "cpu_seconds": 400.0},
        "fight": {"folder": folder("f", {"fight": {"score": 0.812, "rounds": 1000, "chance": 0.1}}),
                  "wall_seconds": 80.5, "cpu_seconds": 110.0}}}
    text = jobs.demo_summary(state)
    for row in (r"classifier +6 epochs, 345 categories +30 epochs, 345 categories",
                r"classifier: test top-1 / top-5 +43\.1% / 71\.0% +55\.7% / 80\.2%",
                r"classifier: shifted top-1 \(numpy_bitmap style\) +39\.0% +50\.3%",
                r"GAN +150 epochs, 10 categories +60 epochs, 345 categories",
                r"GAN: GAN-test top-1 \(the judge on real drawings\) +90\.0% \(real 95\.5%\) +56\.8% \(real 55\.7%\)",
                r"GAN: precision / recall / density / coverage, x real +1\.02 / 0\.41 / 0\.88 / 0\.80 +"
                r"n/a / n/a / n/a / n/a",
                r"fight: rounds the classifier won +81\.2% of 1000 \(chance 10\.0%\) +n/a",
                r"train-classifier +3:20 +6:20 +\S+/c/02_classifier\.ipynb",
                r"train-gan +4:10 +6:40 +\S+/g/03_gan\.ipynb",
                r"fight +1:20 +1:50 +\S+/f/04_fight\.ipynb",
                r"all +9:00 +15:01 +\(target: 10:00 of wall time on 2 idle cores\)"):
        assert re.search(f"^  {row}$", text, flags=re.MULTILINE), (row, text)
    assert "shorter recipes than the published models" in text and "`make lab`" in text and "runs/" in text

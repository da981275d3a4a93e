"""Training jobs: notebooks executed headlessly by papermill; the executed notebook is the job's report.

    python -m drawai.jobs train-classifier -p categories classic10 -p epochs 150
    python -m drawai.jobs train-classifier -p nproc 2                          # 2 processes (torchrun, DDP)
    python -m drawai.jobs train-classifier --publish models/classifier-345     # the shipped model
    python -m drawai.jobs train-gan -p preset full --publish models/generator-345  # the shipped generator
    python -m drawai.jobs fight -p rounds 5000                                  # GAN vs classifier, scored
    python -m drawai.jobs demo                                                  # what `make demo` runs

Each run writes `runs/<job>/<timestamp>/`: the executed notebook, `params.json`, `metrics.json` (written
last, so its presence means the run finished), the model, and TensorBoard logs. Running the same
command again after a crash or a kill resumes the unfinished run from its last checkpoint; `--fresh`
starts a new one.
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import difflib
import json
import os
import resource
import shutil
import sys
import textwrap
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from drawai import categories as cats
from drawai import model_folder
from drawai.checks import is_whole
from drawai.io import new_run_folder, write_json, write_text
from drawai.paths import CLASSIFIER_DIR, GENERATOR_DIR, NOTEBOOKS, ROOT
from drawai.progress import Heartbeat, clock
from drawai.stderr_filter import NoiseFilter, quiet_stderr

if TYPE_CHECKING:
    from drawai.classifier import TrainConfig
    from drawai.gan import GANConfig

RUNS = Path(os.environ.get("DRAWAI_RUNS", ROOT / "runs"))
CLASSIFIER_RECIPE = ("arch", "epochs", "batch_size", "lr", "seed", "augment", "threads")  # TrainConfig's, as parameters


def _classifier_recipe() -> dict:
    """The notebook's training parameters default to TrainConfig's: one recipe, stated once."""
    from drawai.classifier import TrainConfig

    c = TrainConfig()
    return {name: getattr(c, name) for name in CLASSIFIER_RECIPE}


def classifier_config(params: Mapping) -> TrainConfig:
    """The TrainConfig that train-classifier's parameters ask for (other names in `params` are ignored): the job's
    check and notebook 02 both build it here."""
    from drawai.classifier import TrainConfig

    return TrainConfig(**{name: params[name] for name in CLASSIFIER_RECIPE})


def gan_config(params: Mapping) -> GANConfig:
    """The GANConfig that train-gan's parameters ask for: the preset's, with `seed`, and with `categories` and
    `epochs` unless they are None and 0 (other names in `params` are ignored). The job's check and notebook 03 both
    build it here."""
    from drawai import gan

    overrides = {"seed": params["seed"]}
    if params["categories"] is not None:
        overrides["categories"] = params["categories"]
    if params["epochs"] != 0:
        overrides["epochs"] = params["epochs"]
    return gan.GANConfig.from_preset(params["preset"], params["recipe"], **overrides)


def check_classifier_params(p: dict) -> None:
    classifier_config(p)
    if p["nproc"] < 1:
        raise ValueError(f"nproc (training processes) must be at least 1, got {p['nproc']}")
    if p["batch_size"] % p["nproc"]:
        raise ValueError(f"batch_size {p['batch_size']} must be divisible by nproc {p['nproc']} (it is the global "
                         "batch, split evenly across the processes)")


def check_gan_params(p: dict) -> None:
    config = gan_config(p)
    if not is_whole(p["cas_epochs"], 0):
        raise ValueError(f"cas_epochs must be a whole number >= 0 (0 skips CAS), got {p['cas_epochs']!r}")
    # The notebook ends by judging the GAN with this classifier: a wrong path must fail now, not after training.
    names = cats.resolve(config.categories)
    if len(names) < 2:
        raise ValueError(f"train-gan needs at least 2 categories (its metrics compare them), got {names}")
    if not isinstance(p["classifier_path"], str):
        raise ValueError(f"classifier_path must be a folder path, got {p['classifier_path']!r}")
    known = model_folder.read(NOTEBOOKS / p["classifier_path"], "classifier")["categories"]  # absolute stays itself
    missing = [n for n in names if n not in known]
    if missing:
        raise ValueError(f"the classifier at {p['classifier_path']!r} does not know {missing[:5]}, "
                         "so it cannot judge this GAN")


def fight_config(params: Mapping) -> TrainConfig:
    """The TrainConfig of the fight's augmentation runs (the default recipe, for `epochs`): the job's check and
    notebook 04 both build it here."""
    from drawai.classifier import TrainConfig

    return TrainConfig(epochs=params["epochs"])


def check_fight_params(p: dict) -> None:
    """Counts, and the two model folders' categories (read from their manifests): nothing is loaded."""
    from types import SimpleNamespace

    from drawai import fight

    fight.check_count("rounds", p["rounds"])
    fight.check_count("seed", p["seed"], 0)
    fight.check_ks_and_seeds(p["ks"], p["seeds"])
    fight_config(p)
    models = {}
    for role, param, job in (("generator", "generator_path", "train-gan -p preset full --publish models/generator-345"),
                             ("classifier", "classifier_path", "train-classifier --publish models/classifier-345")):
        folder = NOTEBOOKS / p[param]  # the notebook runs in notebooks/; an absolute path stays as it is
        try:
            names = model_folder.read(folder, role)["categories"]
        except model_folder.ModelFolderError as e:
            raise ValueError(f"{param}: {e}; make one: python -m drawai.jobs {job}") from None
        models[role] = SimpleNamespace(categories=names, generate=None, probabilities=None)
    fight.playable_labels(models["generator"], models["classifier"], p["categories"])
    fight.check_generator_draws(models["generator"], cats.resolve(p["experiment_categories"]))


@dataclass(frozen=True)
class Job:
    notebook: str
    defaults: dict  # every parameter the notebook accepts, with its default
    model_dir: str | None = None  # where in the run folder the notebook saves its model
    model_kind: str | None = None  # the kind of model folder it is (drawai.model_folder.KINDS)
    check: Callable[[dict], None] | None = None  # raises ValueError on parameters that cannot work


JOBS = {
    "data": Job("01_data.ipynb", {"categories": "classic10", "seed": 0}),
    "train-classifier": Job("02_classifier.ipynb", {
        "categories": "all", **_classifier_recipe(), "nproc": 1, "resume": True}, model_dir="model",
        model_kind="classifier", check=check_classifier_params),
    "train-gan": Job("03_gan.ipynb", {
        "preset": "demo", "recipe": "conditional", "categories": None, "epochs": 0, "seed": 0,
        "classifier_path": "../models/classifier-345", "cas_epochs": 30, "resume": True}, model_dir="model",
        model_kind="generator",
        check=check_gan_params),
    "fight": Job("04_fight.ipynb", {
        "generator_path": "../models/generator-345", "classifier_path": "../models/classifier-345", "categories": None,
        "rounds": 3450, "seed": 0, "experiment_categories": "classic10", "ks": [0, 40, 80, 160], "seeds": [0, 1, 2],
        "epochs": 15}, check=check_fight_params),
}

# `make demo`: the main jobs on the embedded sample, sized to finish within DEMO_TARGET_S on two idle cores. A later
# job that takes a model parameter (MODEL_PARAMETERS) gets the model an earlier demo job just trained.
DEMO = [
    # All 345 categories, 6 of the published 30 epochs, to leave room for the GAN job and the fight within the
    # target (docs/demo.md, "Timing it"); `make bench ARGS="--only demo"` times it.
    ("train-classifier", {"categories": "all", "epochs": 6}),
    # The demo preset as it is; CAS trains 2 classic10 classifiers: 15 epochs each halves that part of the job.
    ("train-gan", {"preset": "demo", "cas_epochs": 15}),
    ("fight", {"rounds": 1000, "ks": [0, 40], "seeds": [0, 1], "epochs": 10}),  # ~40 steps: it learns classic10
]
MODEL_PARAMETERS = {"train-classifier": "classifier_path", "train-gan": "generator_path"}
DEMO_TARGET_S = 600  # `make demo` on 2 idle cores, with the environment built (`make bench ARGS="--only demo"`)
PUBLISHED = {"classifier": CLASSIFIER_DIR, "generator": GENERATOR_DIR}


class JobError(RuntimeError):
    """A job that could not run, or whose notebook failed (the partial report is kept in `run_dir`)."""

    def __init__(self, message: str, run_dir: Path | None = None):
        super().__init__(message)
        self.run_dir = run_dir


class JobInterrupted(JobError):
    """Ctrl-C during a job: its run folder is kept unfinished, so the same command resumes it."""


# The kernel's low-level output (C++ libraries) goes once to its inherited, filtered stderr; captured, it would also
# go into the report and reach the terminal a second time.
KERNEL_ARGUMENTS = ["--IPKernelApp.capture_fd_output=False"]
HEARTBEAT_S = 30  # a job that prints nothing for this long says it is still working


def check_params(job: Job, params: dict) -> dict:
    """Unknown names and values of the wrong type fail here, before anything runs."""
    unknown = sorted(set(params) - set(job.defaults))
    if unknown:
        close = {n: difflib.get_close_matches(n, list(job.defaults), n=1) for n in unknown}
        hint = ", ".join(f"{c[0]!r} for {n!r}" for n, c in close.items() if c)
        raise JobError(f"{job.notebook} has no parameter(s) {unknown}{f' (did you mean {hint}?)' if hint else ''}; "
                       f"it accepts {sorted(job.defaults)}")
    out = dict(job.defaults)
    for name, value in params.items():
        default = job.defaults[name]
        if isinstance(default, bool) and not isinstance(value, bool):
            raise JobError(f"parameter {name} must be true/false, got {value!r}")
        if isinstance(default, int) and not isinstance(default, bool):
            if not is_whole(value, None):
                raise JobError(f"parameter {name} must be an integer, got {value!r}")
            value = int(value)  # a numpy integer would not go into params.json
        if isinstance(default, float) and not isinstance(value, (int, float)):
            raise JobError(f"parameter {name} must be a number, got {value!r}")
        out[name] = value
    try:
        if out.get("categories") is not None:
            cats.resolve(out["categories"])
        if job.check:
            job.check(out)
    except ValueError as e:
        raise JobError(f"bad parameters for {job.notebook}: {e}") from None
    return out


def parse_value(text: str):
    """`-p epochs 3` -> 3, `-p lr 1e-3` -> 0.001, `-p categories classic10` -> 'classic10', lists as Python."""
    lowered = {"true": True, "false": False, "none": None}
    if text.lower() in lowered:
        return lowered[text.lower()]
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def find_unfinished(job_name: str, params: dict) -> Path | None:
    """The newest run of this job with the same parameters that has no metrics.json yet."""
    runs = sorted((RUNS / job_name).glob("*/params.json"), reverse=True)
    for p in runs:
        if (p.parent / "metrics.json").exists():
            return None  # the newest same-job run finished: start anew
        if is_unfinished(p.parent, params):
            return p.parent
    return None


def run(job_name: str, params: dict | None = None, fresh: bool = False, publish: str | None = None,
        progress: bool = True, resume_dir: Path | None = None) -> Path:
    """Run a job; returns its run folder. Raises JobError naming the failing cell if the notebook fails, and
    JobInterrupted on Ctrl-C: the run folder stays unfinished, so the same command resumes it.

    `progress`: what the notebook prints (a line per epoch) streams to the terminal as it runs. `resume_dir`: the
    unfinished run to continue if it has these parameters (otherwise the newest unfinished run that has them)."""
    import papermill as pm

    from drawai import data

    with quiet_stderr():
        if job_name not in JOBS:
            close = difflib.get_close_matches(job_name, list(JOBS), n=1)
            raise JobError(f"unknown job {job_name!r}{f' (did you mean {close[0]!r}?)' if close else ''}; "
                           f"jobs are {sorted(JOBS)}")
        job = JOBS[job_name]
        params = check_params(job, params or {})
        if publish:
            check_publish_target(job_name, Path(publish))
        try:
            data.check_sample()  # every job reads it: say so now, not from inside a notebook
        except data.CorruptDataError as e:
            raise JobError(str(e)) from None
        out_dir = None if fresh else (resume_dir if is_unfinished(resume_dir, params)
                                      else find_unfinished(job_name, params))
        if out_dir is None:
            out_dir = _begin_run(RUNS / job_name, "params.json", params, "cannot create the run folder {folder}: "
                                 "{reason}; set DRAWAI_RUNS to a writable folder")
            if progress:
                print(f"{job_name}: running {job.notebook} into {shown(out_dir)}", flush=True)
        else:
            sys.stdout.flush()
            print(f"resuming the unfinished run {out_dir}", file=sys.stderr, flush=True)
        report = out_dir / job.notebook
        # The notebook's printed lines go to the terminal as they come, with a line when it is silent for long;
        # stderr through the same noise filter.
        beat = Heartbeat(sys.stdout, HEARTBEAT_S) if progress else contextlib.nullcontext()
        streams = {"stdout_file": beat, "stderr_file": NoiseFilter(sys.stderr)} if progress else {}
        # The kernel imports the drawai next to these notebooks, whatever another checkout installed.
        path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
        try:
            with environ(PYTHONPATH=path), beat:
                pm.execute_notebook(NOTEBOOKS / job.notebook, report, parameters={**params, "out_dir": str(out_dir)},
                                    cwd=str(NOTEBOOKS), progress_bar=False, kernel_name="python3",
                                    extra_arguments=KERNEL_ARGUMENTS, **streams)
        except pm.PapermillExecutionError as e:
            first_line = next((line for line in e.source.splitlines() if line.strip()), "")
            raise JobError(f"{job_name} failed in cell {e.exec_count} ({first_line.strip()[:80]!r}): "
                           f"{e.ename}: {e.evalue}\nthe partial report is kept: {report}", run_dir=out_dir) from None
        except KeyboardInterrupt:
            raise JobInterrupted(f"{job_name} was interrupted; its unfinished run {shown(out_dir)} is kept",
                                 run_dir=out_dir) from None
        if not (out_dir / "metrics.json").exists():  # a notebook with no metrics of its own: mark it finished
            write_json(out_dir / "metrics.json", {"job": job_name, "finished": True})
        if publish:
            publish_model(out_dir / job.model_dir, Path(publish), job_name, params)
        print(f"report: {report}", flush=True)
    return out_dir


@contextlib.contextmanager
def environ(**values: str):
    """These environment variables set while the block runs (for the processes it starts), then restored."""
    before = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in before.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _begin_run(parent: Path, record_name: str, record: dict, unwritable: str) -> Path:
    """A new run folder under `parent` (io.new_run_folder) holding `record_name`, `record` as JSON, which marks the
    run begun. When either cannot be written: JobError(`unwritable`), formatted with the folder, RUNS and the reason.
    """
    folder = new_run_folder(parent)
    try:
        folder.mkdir(parents=True)
        write_json(folder / record_name, record)
    except OSError as e:
        raise JobError(unwritable.format(folder=folder, runs=RUNS, reason=e.strerror)) from None
    return folder


def is_unfinished(folder: Path | None, params: dict) -> bool:
    """Whether `folder` is a run with these parameters and no metrics.json yet."""
    if folder is None or (folder / "metrics.json").exists():
        return False
    try:
        return json.loads((folder / "params.json").read_text()) == params
    except (OSError, ValueError):
        return False


def shown(path: Path) -> str:
    """A path as a user in this folder would type it: relative when below the current folder."""
    path = Path(path).absolute()
    return str(path.relative_to(Path.cwd())) if path.is_relative_to(Path.cwd()) else str(path)


def check_publish_target(job_name: str, dest: Path) -> None:
    """Before anything runs: `dest` must be free, empty, or a model folder (it will be replaced), never
    someone's other files."""
    if not JOBS[job_name].model_dir:
        raise JobError(f"{job_name} makes no model to publish")
    try:
        model_folder.check_writable(dest, JOBS[job_name].model_kind)
    except model_folder.ModelFolderError as e:
        raise JobError(f"--publish: {e}") from None


def publish_model(src: Path, dest: Path, job_name: str, params: dict) -> None:
    """Copy a run's model to `dest` (e.g. models/classifier-345), recording the command that remakes it."""
    tmp = dest.with_name(dest.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(src, tmp)
    manifest = model_folder.read(tmp, JOBS[job_name].model_kind)
    args = " ".join(f"-p {k} {v!r}" if isinstance(v, str) else f"-p {k} {v}"
                    for k, v in params.items() if v != JOBS[job_name].defaults[k])
    manifest["command"] = f"python -m drawai.jobs {job_name} {args} --publish {dest}".replace("  ", " ")
    model_folder.write(tmp, manifest)
    # Swap by renames, so an interruption leaves a whole model under `dest`, `dest.old` or `dest.tmp`.
    old = dest.with_name(dest.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if dest.exists():
        os.replace(dest, old)
    os.replace(tmp, dest)
    shutil.rmtree(old, ignore_errors=True)
    print(f"published {dest}")


def cpu_seconds() -> float:
    """CPU seconds of this process and of its finished children (a job's kernels, once shut down), all threads."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def demo_jobs(params: dict) -> list[tuple[str, dict]]:
    """DEMO's jobs with their parameters: the demo's own, then those given, each to the jobs that have it."""
    unknown = sorted(set(params) - {k for name, _ in DEMO for k in JOBS[name].defaults})
    if unknown:
        raise JobError(f"no demo job has parameter(s) {unknown}")
    return [(name, {**demo_params, **{k: v for k, v in params.items() if k in JOBS[name].defaults}})
            for name, demo_params in DEMO]


def describe(name: str, params: dict) -> str:
    """What a demo job does, in a line, with how it differs from the published model's recipe."""
    if name == "train-classifier":
        published = _published_metrics("classifier").get("epochs", "?")
        n = len(cats.resolve(params.get("categories", "all")))
        epochs = params.get("epochs", JOBS[name].defaults["epochs"])
        return f"the PyTorch classifier, {n} categories, {epochs} epochs (the published classifier-345: {published})"
    if name == "train-gan":
        return (f"the Keras conditional GAN, preset {params.get('preset')!r}, judged by the classifier just trained "
                f"(CAS: {params.get('cas_epochs', JOBS[name].defaults['cas_epochs'])} epochs)")
    if name == "fight":
        p = {**JOBS[name].defaults, **params}
        return (f"the GAN draws, the classifier guesses, {p['rounds']} rounds; then {len(p['ks']) * len(p['seeds'])} "
                f"classifier trainings of {p['epochs']} epochs with and without generated drawings")
    return JOBS[name].notebook


def _demo_state(params: dict, fresh: bool) -> tuple[Path, dict]:
    """The demo's folder under RUNS/demo and its record: the newest unfinished demo with these parameters (unless
    `fresh`), or a new one. The record names each job's run folder and the time spent in it."""
    record = {"params": params, "demo": json.loads(json.dumps(DEMO))}
    if not fresh:
        for path in sorted((RUNS / "demo").glob("*/demo.json"), reverse=True):
            try:
                state = json.loads(path.read_text())
            except (OSError, ValueError):
                continue
            if state.get("finished"):
                break  # the newest demo finished: start anew
            if {k: state.get(k) for k in record} == record:
                print(f"resuming the demo stopped in {shown(path.parent)}", flush=True)
                return path.parent, state
    state = {**record, "jobs": {}, "wall_seconds": 0.0, "cpu_seconds": 0.0, "finished": False}
    folder = _begin_run(RUNS / "demo", "demo.json", state, "cannot write the demo's runs to {runs} ({reason}): make "
                        "it writable or set DRAWAI_RUNS to a writable folder")
    return folder, state


def run_demo(params: dict | None = None, fresh: bool = False) -> dict[str, Path]:
    """Run DEMO in order; each job's model feeds the later jobs that take it. Returns the run folders.

    The demo's record is RUNS/demo/<time>/demo.json: run again after Ctrl-C (or a failure), the demo reuses the
    jobs it finished and resumes the one it was in. It ends with `demo_summary`, also saved as summary.txt there.
    """
    from drawai import data

    with quiet_stderr():
        jobs_params = demo_jobs(params or {})
        try:
            data.check_sample()
        except data.CorruptDataError as e:
            raise JobError(str(e)) from None
        folder, state = _demo_state(params or {}, fresh)
        print(f"draw-ai demo: {len(DEMO)} jobs on the embedded sample, sized for {DEMO_TARGET_S // 60} minutes on 2 "
              "idle cores; each prints a line per epoch with the time elapsed and left. Its recipes are shorter "
              "than the published models' in models/; its summary sets the figures side by side.", flush=True)
        made: dict[str, Path] = {}  # model parameter -> the model an earlier demo job trained
        folders: dict[str, Path] = {}
        for i, (name, job_params) in enumerate(jobs_params, 1):
            for param, model in made.items():
                if param in JOBS[name].defaults:
                    job_params.setdefault(param, str(model))
            entry = state["jobs"].setdefault(name, {"folder": None, "wall_seconds": 0.0, "cpu_seconds": 0.0})
            run_dir = Path(entry["folder"]) if entry["folder"] else None
            if run_dir is not None and (run_dir / "metrics.json").exists():
                print(f"\n[{i}/{len(DEMO)}] {name}: finished before the demo stopped; reusing {shown(run_dir)}",
                      flush=True)
            else:
                print(f"\n[{i}/{len(DEMO)}] {name}: {describe(name, job_params)}", flush=True)
                wall, cpu = time.perf_counter(), cpu_seconds()
                try:
                    run_dir = run(name, job_params, fresh=fresh, resume_dir=run_dir)
                except JobError as e:
                    run_dir = e.run_dir or run_dir
                    raise
                finally:
                    spent = {"wall_seconds": time.perf_counter() - wall, "cpu_seconds": cpu_seconds() - cpu}
                    for key, value in spent.items():
                        entry[key] = round(entry[key] + value, 1)
                        state[key] = round(state[key] + value, 1)
                    entry["folder"] = str(run_dir) if run_dir else None
                    write_json(folder / "demo.json", state)
            folders[name] = run_dir
            if name in MODEL_PARAMETERS:
                made[MODEL_PARAMETERS[name]] = (run_dir / JOBS[name].model_dir).resolve()
        summary = demo_summary(state)
        write_text(folder / "summary.txt", summary + "\n")
        state["finished"] = True
        write_json(folder / "demo.json", state)
        print("\n" + summary, flush=True)
    return folders


def _published_metrics(kind: str) -> dict:
    try:
        return model_folder.read(PUBLISHED[kind], kind)["metrics"]
    except model_folder.ModelFolderError:
        return {}


def _metrics(folder: str | None) -> dict:
    try:
        return json.loads((Path(folder) / "metrics.json").read_text())
    except (OSError, TypeError, ValueError):
        return {}


def _figure(metrics: dict, *keys: str, percent: bool = True) -> str:
    """'43.1% / 71.0%' from metrics[keys] ('n/a' for any missing key); nested keys as 'fight.score'."""
    shown_values = []
    for key in keys:
        value = metrics
        for part in key.split("."):
            value = value.get(part) if isinstance(value, dict) else None
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        shown_values.append("n/a" if not ok else f"{value:.1%}" if percent else f"{value:.2f}")
    return " / ".join(shown_values)


def demo_summary(state: dict) -> str:
    """The demo's figures beside the published models' (their manifest.json), each job's time and its report."""
    jobs = state["jobs"]
    clf, g, fight = (_metrics(jobs.get(n, {}).get("folder")) for n in ("train-classifier", "train-gan", "fight"))
    pub_clf, pub_g = _published_metrics("classifier"), _published_metrics("generator")
    size = lambda m: f"{m.get('epochs', 'n/a')} epochs, {m.get('categories', 'n/a')} categories"  # noqa: E731
    judged = lambda m: f"{_figure(m, 'gan_test_top1')} (real {_figure(m, 'real_test_top1')})"  # noqa: E731
    variety = [f"{name}_ratio" for name in ("precision", "recall", "density", "coverage")]
    score = fight.get("fight", {})
    rows = [
        ("", "this demo", "published"),
        ("classifier", size(clf), size(pub_clf)),
        ("classifier: test top-1 / top-5", _figure(clf, "test_top1", "test_top5"),
         _figure(pub_clf, "test_top1", "test_top5")),
        ("classifier: shifted top-1 (numpy_bitmap style)", _figure(clf, "shifted_top1"),
         _figure(pub_clf, "shifted_top1")),
        ("GAN", size(g), size(pub_g)),
        ("GAN: GAN-test top-1 (the judge on real drawings)", judged(g), judged(pub_g)),
        ("GAN: precision / recall / density / coverage, x real", _figure(g, *variety, percent=False),
         _figure(pub_g, *variety, percent=False)),
        ("fight: rounds the classifier won", f"{_figure(fight, 'fight.score')} of {score.get('rounds', 'n/a')} "
         f"(chance {_figure(fight, 'fight.chance')})", "n/a"),
    ]
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    lines = textwrap.wrap(
        "draw-ai demo: done. It trains shorter recipes than the published models (models/classifier-345, "
        "models/generator-345), so its classifier scores lower; its GAN draws its own categories, the published one "
        "all 345. Variety (x real) is a ratio to real drawings against real drawings: 1 is as varied as people; n/a: "
        "not in that model's record.", 110)
    lines += [f"  {a:<{widths[0]}}  {b:<{widths[1]}}  {c}" for a, b, c in rows]
    lines.append("")
    times = [("job", "wall", "CPU", "report")]
    for name, entry in jobs.items():
        folder = Path(entry["folder"]) if entry.get("folder") else None
        report = shown(folder / JOBS[name].notebook) if folder else "n/a"
        times.append((name, clock(entry["wall_seconds"]), clock(entry["cpu_seconds"]), report))
    times.append(("all", clock(state["wall_seconds"]), clock(state["cpu_seconds"]),
                  f"(target: {clock(DEMO_TARGET_S)} of wall time on 2 idle cores)"))
    widths = [max(len(r[i]) for r in times) for i in range(3)]
    lines += [f"  {a:<{widths[0]}}  {b:>{widths[1]}}  {c:>{widths[2]}}  {d}" for a, b, c, d in times]
    lines += ["", *textwrap.wrap("Each report is the executed notebook, with every figure and plot: `make lab` "
                                 "opens JupyterLab (127.0.0.1 only) on this repository; open them from its runs/ "
                                 "folder.", 110)]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m drawai.jobs", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("job", choices=[*JOBS, "demo"])
    ap.add_argument("-p", "--parameter", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"),
                    help="a notebook parameter (repeatable)")
    ap.add_argument("--fresh", action="store_true", help="start a new run instead of resuming an unfinished one")
    ap.add_argument("--publish", metavar="DIR", help="copy the trained model here (e.g. models/classifier-345)")
    args = ap.parse_args(argv)
    params = {name: parse_value(value) for name, value in args.parameter}
    again = ("`make demo` (or the same command) resumes it, reusing the jobs it finished" if args.job == "demo"
             else "the same command resumes it")
    try:
        with quiet_stderr():
            if args.job == "demo":
                run_demo(params, fresh=args.fresh)
            else:
                run(args.job, params, fresh=args.fresh, publish=args.publish)
    except JobInterrupted as e:
        print(f"\n{e}; {again}", file=sys.stderr)
        return 130
    except KeyboardInterrupt:
        print(f"\ninterrupted; {again}", file=sys.stderr)
        return 130
    except JobError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

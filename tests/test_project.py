"""The repo's own promises: environment files agree, notebooks are stripped, the sample is attributed, the
package's modules import one another without a cycle."""

import ast
import re
import subprocess
import sys
import tomllib

import nbformat
import yaml

from drawai.paths import ROOT


def normalise(req: str) -> str:
    return re.sub(r"\s+", "", req).lower()


def test_environment_yml_agrees_with_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = {normalise(r) for r in project["dependencies"] + project["optional-dependencies"]["dev"]}
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    listed = {normalise(r) for r in pip if not r.startswith("-e")}
    assert listed == wanted, f"only in environment.yml: {listed - wanted}; only in pyproject: {wanted - listed}"
    python = next(d for d in env["dependencies"] if isinstance(d, str) and d.startswith("python"))
    assert python.split("=")[-1] >= project["requires-python"].lstrip(">=")


def test_the_package_metadata_builds_without_setuptools_warnings(tmp_path):
    """What `make env`'s editable install asks setuptools for: a deprecation (the licence as a table was one)
    prints a page of warnings into the install."""
    code = "import setuptools.build_meta as b, sys; b.prepare_metadata_for_build_editable(sys.argv[1])"
    done = subprocess.run([sys.executable, "-W", "always", "-c", code, str(tmp_path)], cwd=ROOT, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "Warning" not in done.stdout + done.stderr, done.stderr
    assert "License-Expression: MIT AND CC-BY-4.0" in next(tmp_path.glob("*.dist-info/METADATA")).read_text()


def test_notebooks_are_committed_without_outputs():
    tracked = subprocess.run(["git", "ls-files", "notebooks/*.ipynb"], cwd=ROOT, capture_output=True, text=True)
    names = tracked.stdout.split() or [str(p.relative_to(ROOT)) for p in (ROOT / "notebooks").glob("*.ipynb")]
    assert names
    for name in names:
        nb = nbformat.read(ROOT / name, as_version=4)
        for cell in nb.cells:
            if cell.cell_type == "code":
                assert not cell.outputs and not cell.execution_count, f"{name} has outputs: run `make strip`"


def test_every_notebook_has_a_parameters_cell_and_imports_drawai():
    for path in (ROOT / "notebooks").glob("*.ipynb"):
        nb = nbformat.read(path, as_version=4)
        tags = [t for c in nb.cells for t in c.metadata.get("tags", [])]
        assert tags.count("parameters") == 1, f"{path.name} needs exactly one cell tagged 'parameters'"
        assert any("drawai" in c.source for c in nb.cells if c.cell_type == "code"), path.name


def test_readme_names_the_two_commands_and_ci_runs_the_test_one():
    readme = (ROOT / "README.md").read_text()
    assert "make demo" in readme and "make test" in readme
    assert "make test" in (ROOT / ".ci" / "run").read_text()
    assert "CC BY 4.0" in readme


def test_ruff_is_clean():
    result = subprocess.run([sys.executable, "-m", "ruff", "check", str(ROOT)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout


def drawai_imports() -> dict[str, set[str]]:
    """Each module of drawai/ (a package's as "widgets.pad", its __init__ as "widgets") and the drawai modules it
    imports, at the top or inside a function."""
    package = ROOT / "drawai"
    paths = {".".join(p.relative_to(package).with_suffix("").parts).removesuffix(".__init__"): p
             for p in package.rglob("*.py")}
    graph = {}
    for name, path in sorted(paths.items()):
        found = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):  # import drawai.x (as y)
                found |= {a.name.removeprefix("drawai.") for a in node.names if a.name.startswith("drawai.")}
            elif isinstance(node, ast.ImportFrom):
                module = ("drawai." * bool(node.level) + (node.module or "")).rstrip(".")
                if module.split(".")[0] != "drawai":
                    continue
                module = module.removeprefix("drawai").removeprefix(".")
                for a in node.names:  # from drawai.x import y: y may be a module of the package x
                    inner = f"{module}.{a.name}".lstrip(".")
                    found.add(inner if inner in paths else module)
        graph[name] = (found & set(paths)) - {name}
    return graph


def import_cycle(graph: dict[str, set[str]]) -> list[str]:
    """A cycle in `graph` as the modules along it, first one repeated at the end; [] when there is none."""
    done, path = set(), []

    def visit(name: str) -> list[str]:
        if name in path:
            return path[path.index(name):] + [name]
        if name in done:
            return []
        path.append(name)
        for other in sorted(graph[name]):
            if cycle := visit(other):
                return cycle
        path.pop()
        done.add(name)
        return []

    for name in sorted(graph):
        if cycle := visit(name):
            return cycle
    return []


def test_drawai_has_no_import_cycles():
    graph = drawai_imports()
    assert graph["classifier.model"] >= {"bitmaps", "process_group"}, "the import graph misses imports it should see"
    assert "classifier" in graph["metrics"], "the import graph misses imports inside functions"
    cycle = import_cycle(graph)
    assert not cycle, f"drawai's modules import one another in a cycle: {' -> '.join(cycle)}"


def test_every_random_stream_is_made_in_drawai_seeds():
    """numpy generators and SeedSequences are made in drawai.seeds alone, so every stream is in its table."""
    made_elsewhere = [f"{path.relative_to(ROOT)}:{n}" for path in sorted((ROOT / "drawai").rglob("*.py"))
                      if path.name != "seeds.py"
                      for n, line in enumerate(path.read_text().splitlines(), 1)
                      if re.search(r"default_rng|SeedSequence|np\.random\.seed", line)]
    assert not made_elsewhere, f"random streams made outside drawai.seeds: {made_elsewhere}"


def test_seed_streams_are_distinct_nonzero_and_keep_the_published_ones():
    from drawai import seeds

    streams = {name: v for name, v in vars(seeds).items() if name.isupper()}
    assert len(streams) >= 10, "the stream table was not read"
    assert len(set(streams.values())) == len(streams), f"two purposes share a stream: {streams}"
    assert 0 not in streams.values(), "SeedSequence ignores a trailing 0: stream 0 would be the bare seed's"
    # The shipped generator's drawings and published figures were drawn from these streams.
    assert (seeds.VARIETY_HALVES, seeds.NOISE_CENTRES, seeds.FIT_PICK) == (1, 7, 4)


def test_a_bare_seed_is_numpys_own_and_streams_differ():
    import numpy as np

    from drawai import seeds

    assert seeds.rng(5).random() == np.random.default_rng(5).random()  # the split and generate(seed) as before
    draws = {name: seeds.rng(0, getattr(seeds, name), 1).random() for name in ("GAN_EPOCH_ORDER", "STREAM_ORDER")}
    assert draws["GAN_EPOCH_ORDER"] != draws["STREAM_ORDER"] != seeds.rng(0, 1).random()
    assert seeds.integers(3, seeds.GAN_NOISE, n=2) != seeds.integers(3, seeds.GAN_AUGMENT_REAL, n=2)
    assert all(0 <= v < 2**32 for v in seeds.integers(3, seeds.GAN_NOISE, n=4))

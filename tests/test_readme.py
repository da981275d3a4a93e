"""The README is a user's guide: its Python runs as written, it stays short, and it says what a thing is.

Every ```python block of README.md runs here, in order, in one namespace (as the cells of one notebook), from the
repository root, with the shipped models. The shorter checks keep the README a guide: at most 260 lines, no first
person, and nothing about how the work was organised (issues, sessions, machines lent for it).
"""

import re

import matplotlib
import pytest

from drawai.paths import ROOT

README = ROOT / "README.md"
MAX_LINES = 260
FIRST_PERSON = re.compile(r"\bI\b|\b(?i:me|my|we|our|ours|us)\b")  # "I have", "I tried", "we found", ...
# The dashboard's environment variable is a name, not prose about sessions of work.
ALLOWED_NAMES = ("DRAWAI_MAX_SESSIONS",)
FORBIDDEN = re.compile(r"session|\bissues?\b|\blent\b", re.IGNORECASE)


def python_blocks(text: str) -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", text, flags=re.DOTALL | re.MULTILINE)


def prose(text: str) -> str:
    for name in ALLOWED_NAMES:
        text = text.replace(name, "")
    return text


@pytest.mark.slow
def test_every_python_block_in_the_readme_runs(monkeypatch):
    blocks = python_blocks(README.read_text())
    assert len(blocks) >= 5, "the README's quickstart has lost its Python blocks"
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    monkeypatch.chdir(ROOT)
    namespace: dict = {"__name__": "__readme__"}
    try:
        for i, block in enumerate(blocks):
            try:
                exec(compile(block, f"README.md python block {i + 1}", "exec"), namespace)
            except Exception as e:
                raise AssertionError(f"README.md's python block {i + 1} fails:\n{block}\n{type(e).__name__}: {e}"
                                     ) from e
    finally:
        plt.close("all")
    # What the blocks promise, checked on what they made.
    assert namespace["clf"].predict(namespace["image"])[0][0] == "cat"
    assert namespace["bitmap"].shape == (28, 28)
    pad = namespace["pad"]
    pad.set_strokes(namespace["square"])  # as if drawn with the mouse
    assert pad.predictions and pad.bitmap.shape == (28, 28), "the drawing pad made no prediction"
    assert namespace["cats"].shape == (8, 28, 28)
    assert namespace["result"].rounds == 100


def test_the_readme_is_short():
    lines = README.read_text().count("\n")
    assert lines <= MAX_LINES, f"README.md has {lines} lines (at most {MAX_LINES}): move detail to docs/"


def test_the_readme_has_no_first_person_and_no_talk_of_how_the_work_was_organised():
    text = prose(README.read_text())
    for pattern, what in ((FIRST_PERSON, "first person"), (FORBIDDEN, "work-organisation wording")):
        found = [f"line {text[:m.start()].count(chr(10)) + 1}: {m.group(0)!r}" for m in pattern.finditer(text)]
        assert not found, f"README.md has {what}: {found}"


def test_the_docs_have_no_first_person_and_no_talk_of_issues_or_lent_machines():
    paths = [ROOT / "CHANGELOG.md", *sorted((ROOT / "docs").glob("**/*.md"))]
    assert len(paths) > 1
    for path in paths:
        text = path.read_text()
        for pattern in (FIRST_PERSON, re.compile(r"\bissues?\b|\blent\b|\bloan\b", re.IGNORECASE)):
            found = [m.group(0) for m in pattern.finditer(text)]
            assert not found, f"{path.relative_to(ROOT)} has {found}"


def test_the_readme_links_point_at_files_that_exist():
    for target in re.findall(r"\]\(((?!https?://)[^)#]+)\)", README.read_text()):
        assert (ROOT / target).exists(), f"README.md links to {target}, which does not exist"


def test_the_layout_names_every_file_in_the_package_and_scripts():
    text = README.read_text()
    layout = text[text.index("## Layout"):text.index("## Development")]
    names = [p.name for p in (ROOT / "drawai").rglob("*.py")] + [p.name for p in (ROOT / "scripts").glob("*.py")]
    names += [p.stem for p in (ROOT / "notebooks").glob("*.ipynb")]
    names += [p.name for p in (ROOT / "docs").glob("*") if p.is_file()]
    names += [p.stem for p in (ROOT / "tests").glob("*.py") if p.name != "__init__.py"]
    missing = sorted(n for n in names if n not in layout)
    assert not missing, f"README.md's Layout does not name {missing}"


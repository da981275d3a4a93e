"""`make bench` (`python -m drawai.bench`; its --help says what is measured and how): accuracy, latency, memory,
generator, dashboard, scale, explanations and the demo, each against a baseline measured in the same run.

cli.py: the options and the loop that measures the plan cell by cell, saving after each (a killed run resumes).
cells.py: the recipes, the cells a run plans with the spec that decides each one's figures, results.json.
measurements.py: one cell measured, in a fresh process. browser.py: the dashboard in Voila and chromium.
tables.py: results.md, the report in Markdown, with every target's PASS or FAIL.
"""

from drawai.bench.browser import BROWSER_ARGS, CHROMIUM
from drawai.bench.cells import (
    CLASSIC10_EPOCH_FACTOR,
    EXPLAIN_DRAWINGS,
    FORMAT,
    SECTIONS,
    BenchError,
    Cell,
    demo_cell,
    plan,
    recipes,
)
from drawai.bench.cli import main, run
from drawai.bench.measurements import demo_measure, explain_process, shifted_test
from drawai.bench.tables import report

__all__ = ["BROWSER_ARGS", "CHROMIUM", "CLASSIC10_EPOCH_FACTOR", "EXPLAIN_DRAWINGS", "FORMAT", "SECTIONS",
           "BenchError", "Cell", "demo_cell", "plan", "recipes", "main", "run", "demo_measure",
           "explain_process", "shifted_test", "report"]

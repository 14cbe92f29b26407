"""The VADER movie-review snippets (Hutto & Gilbert, ICWSM 2014), read offline from the PyPI sdist.

The `vadersentiment==3.3.2` source distribution ships the paper's human-rated ground truth in
`additional_resources/hutto_ICWSM_2014.tar.gz`. Its `movieReviewSnippets_GroundTruth.txt` holds
10,605 tab-separated rows: id, mean sentiment rating (-4 .. +4, at least 20 raters), text.
ASSETS.md calls the text latin-1, but the file is valid UTF-8 (read as latin-1 it turns "é" into
"Ã©"), so rows are decoded as UTF-8, falling back to latin-1 only for a row that is not UTF-8. Runs of
whitespace inside a text (where the source dropped a dash) become one space; nothing else changes.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

VERSION = "3.3.2"
SDIST = f"vaderSentiment-{VERSION}.tar.gz"
SDIST_SHA256 = "5d7c06e027fc8b99238edb0d53d970cf97066ef97654009890b83703849632f9"
INNER = f"vaderSentiment-{VERSION}/additional_resources/hutto_ICWSM_2014.tar.gz"
MOVIES = "hutto_ICWSM_2014/movieReviewSnippets_GroundTruth.txt"


def download_sdist(dest: Path) -> Path:
    """The sdist in `dest` (downloaded with pip once), its SHA-256 checked."""
    dest.mkdir(parents=True, exist_ok=True)
    path = dest / SDIST
    if not path.is_file():
        with tempfile.TemporaryDirectory(dir=dest) as tmp:
            cmd = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--no-binary", ":all:", f"vadersentiment=={VERSION}", "-d", tmp]
            subprocess.run(cmd, check=True)
            (Path(tmp) / SDIST).replace(path)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if digest != SDIST_SHA256:
        raise RuntimeError(f"{path}: SHA-256 {digest} is not the pinned {SDIST_SHA256}; delete it and rerun")
    return path


def _decode(line: bytes) -> str:
    try:
        return line.decode("utf-8")
    except UnicodeDecodeError:
        return line.decode("latin-1")


def read_movie_snippets(sdist: Path) -> list[tuple[int, float, str]]:
    """All 10,605 rows of the movie-review ground truth as (id, mean score, text), in file order."""
    with tarfile.open(sdist) as outer:
        inner_bytes = outer.extractfile(INNER).read()
    with tarfile.open(fileobj=io.BytesIO(inner_bytes)) as inner:
        raw = inner.extractfile(MOVIES).read()
    rows = []
    for line in raw.splitlines():
        if not line.strip():
            continue
        id_, score, text = _decode(line).split("\t")
        rows.append((int(id_), float(score), " ".join(text.split())))  # runs of spaces (dropped dashes) → one
    return rows


def write_csv_gz(path: Path, header: list[str], rows: list[tuple]) -> None:
    """A gzip-compressed UTF-8 CSV that is byte-identical on every run (no time stamp or name inside)."""
    import csv

    text = io.StringIO()
    w = csv.writer(text, lineterminator="\n")
    w.writerow(header)
    w.writerows(rows)
    with open(path, "wb") as f, gzip.GzipFile(filename="", mode="wb", fileobj=f, mtime=0, compresslevel=9) as gz:
        gz.write(text.getvalue().encode("utf-8"))

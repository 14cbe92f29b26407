"""Build the movie-review subset bundled with graftkit for `graft demo text`.

    python scripts/make_text_demo_data.py   # needs PyPI (pip download), nothing else

Writes `src/graftkit/data/demo/movie-snippets-600.csv.gz`: 300 positive and 300 negative
seeded-random snippets from the VADER movie-review ground truth (scripts/vader.py), as a UTF-8 CSV
with columns `text,label,score` — `label` is the sign of the mean human rating, `score` the rating
itself (-4 .. +4, for regression demos). Snippets rated exactly 0 and repeated texts are left out.
Rows are in a seeded-random order; the file is byte-identical on every run.
"""

from __future__ import annotations

import random
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from vader import download_sdist, read_movie_snippets, write_csv_gz

PER_CLASS = 300
SEED = 0
OUT = Path(__file__).resolve().parents[1] / "src/graftkit/data/demo/movie-snippets-600.csv.gz"


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        rows = read_movie_snippets(download_sdist(Path(tmp)))
    seen: set[str] = set()
    by_label: dict[str, list[tuple[str, str, float]]] = {"negative": [], "positive": []}
    for _, score, text in rows:
        if score == 0 or text in seen:
            continue
        seen.add(text)
        by_label["positive" if score > 0 else "negative"].append((text, "positive" if score > 0 else "negative", round(score, 3)))
    rng = random.Random(SEED)
    picked = [r for label in sorted(by_label) for r in rng.sample(by_label[label], PER_CLASS)]
    rng.shuffle(picked)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    write_csv_gz(OUT, ["text", "label", "score"], picked)
    print(f"wrote {OUT} ({OUT.stat().st_size / 1024:.0f} KiB, {len(picked)} rows: {PER_CLASS} positive, {PER_CLASS} negative)")


if __name__ == "__main__":
    main()

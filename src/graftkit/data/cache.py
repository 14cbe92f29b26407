"""On-disk cache of frozen-backbone features.

A cache is a folder named by a hash of everything that determines a feature vector except the
image: the backbone's weights hash, the preprocessing, and the precision. Inside, features are
keyed by each file's content hash (SHA-256), so renamed or moved files still hit, and an edited
file misses. Changing the head, the epochs or the learning rate never recomputes a feature.

Layout: `<root>/<key>/key.json` (what the key means), `index.sqlite` (`file_hash -> (shard, row)`,
SQLite from the stdlib: a store adds its rows in one transaction instead of rewriting a JSON dict
of every entry, and a lookup reads only the rows asked for), `shard-*.safetensors` (`features:
[N, D]` float32). A cache written before the SQLite index (`index.json`) is imported on first use.

Data larger than memory: `ShardWriter` streams features batch by batch into a new shard (the
safetensors header first, then the rows, fsync, rename), and `rows` / `assemble` read shards
memory-mapped, so a feature pass over 100,000 images holds one batch in RAM, not `[N, D]`.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sqlite3
import tempfile
import uuid
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

import numpy as np
import torch


def default_cache_root() -> Path:
    """`$GRAFTKIT_CACHE/features`, else `~/.cache/graftkit/features`."""
    base = os.environ.get("GRAFTKIT_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "graftkit")
    return Path(base) / "features"


def file_digest(path: str | Path) -> str:
    """SHA-256 of a file's bytes, hex (an image in a tar shard, `ShardMember`: taken when the shards
    were read, so it equals the digest of the same image as a file)."""
    known = getattr(path, "sha256", None)
    if known:
        return known
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def file_digests(paths: Sequence[str | Path]) -> list[str]:
    """Content hashes of many files (hashlib releases the GIL, so threads help).

    Submitted a chunk at a time: `pool.map` over 100,000 paths creates 100,000 futures at once
    (about 1.9 KB each), which measured +186 MB of peak RSS at 100k images (benchmarks/RESULTS.md)."""
    out: list[str] = []
    with ThreadPoolExecutor(max_workers=min(8, (os.cpu_count() or 1) * 2)) as pool:
        for start in range(0, len(paths), _DIGEST_CHUNK):
            out.extend(pool.map(file_digest, paths[start : start + _DIGEST_CHUNK]))
    return out


_DIGEST_CHUNK = 512
"""Files hashed per round of the thread pool (bounds the futures alive at once)."""


class FeatureCache:
    """Features of one (backbone weights, preprocessing, precision) combination.

    Args:
        key: JSON-serialisable description of everything but the image that determines a feature.
        root: cache root; defaults to `default_cache_root()`.
    """

    def __init__(self, key: dict[str, Any], root: str | Path | None = None) -> None:
        self.key = key
        digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:20]
        self.dir = Path(root or default_cache_root()) / digest

    def _places(self, digests: Sequence[str]) -> Iterator[tuple[int, str, int]]:
        """`(position, shard, row)` of each of `digests` the index holds (a shard file may be gone)."""
        if not (self.dir / INDEX).is_file() and not (self.dir / LEGACY_INDEX).is_file():
            return
        with _connect(self.dir) as db:
            for start in range(0, len(digests), _QUERY_CHUNK):
                part = digests[start : start + _QUERY_CHUNK]
                first = {}
                for i, d in enumerate(part):
                    first.setdefault(d, start + i)
                marks = ",".join("?" * len(first))
                rows = {d: (shard, row) for d, shard, row in db.execute(
                    f"SELECT e.digest, s.name, e.row FROM entries e JOIN shards s ON s.id = e.shard WHERE e.digest IN ({marks})", list(first))}  # fmt: skip
                for i, d in enumerate(part):
                    hit = rows.get(d)
                    if hit is not None:
                        yield start + i, hit[0], hit[1]

    def lookup(self, digests: Sequence[str]) -> tuple[dict[int, torch.Tensor], list[int]]:
        """Cached rows by position, and the positions that are missing."""
        hits, missing = self.locate(digests)
        found: dict[int, torch.Tensor] = {}
        by_shard: dict[str, list[tuple[int, int]]] = defaultdict(list)
        for i, (shard, row) in hits.items():
            by_shard[shard].append((i, row))
        for shard, pairs in by_shard.items():
            rows = torch.from_numpy(np.ascontiguousarray(self.rows(shard)[[r for _, r in pairs]]))
            for (i, _), row in zip(pairs, rows):
                found[i] = row
        return found, missing

    def store(self, digests: Sequence[str], features: torch.Tensor) -> None:
        """Add features `[N, D]` for `digests`; a write never corrupts what is already cached."""
        if len(digests) == 0:
            return
        block = features.detach().float().cpu().contiguous()
        with self.writer(len(block), block.shape[1]) as shard:
            shard.append(block)
            shard.commit(digests)

    def locate(self, digests: Sequence[str]) -> tuple[dict[int, tuple[str, int]], list[int]]:
        """Where each cached item's row is (`{position: (shard, row)}`) and the positions missing."""
        hits: dict[int, tuple[str, int]] = {}
        present: dict[str, bool] = {}
        for i, shard, row in self._places(digests):
            if present.setdefault(shard, (self.dir / shard).is_file()):
                hits[i] = (shard, row)
        missing = [i for i in range(len(digests)) if i not in hits]
        return hits, missing

    def writer(self, rows: int, dim: int) -> "ShardWriter":
        """A new shard of `rows` features of `dim` floats, written as they come (`ShardWriter`)."""
        self.dir.mkdir(parents=True, exist_ok=True)
        key_path = self.dir / "key.json"
        if not key_path.is_file():
            tmp = key_path.with_name(f"key.{uuid.uuid4().hex[:8]}.tmp")
            tmp.write_text(json.dumps(self.key, indent=2, sort_keys=True))
            os.replace(tmp, key_path)
        return ShardWriter(self, rows, dim)

    def add_to_index(self, shard: str, digests: Iterable[str]) -> None:
        """Record that row `i` of `shard` holds the features of the `i`-th of `digests`, in one
        SQLite transaction (atomic; concurrent writers wait for each other's)."""
        self.dir.mkdir(parents=True, exist_ok=True)
        with _connect(self.dir) as db:
            shard_id = db.execute("INSERT INTO shards (name) VALUES (?)", (shard,)).lastrowid
            db.executemany("INSERT OR REPLACE INTO entries (digest, shard, row) VALUES (?, ?, ?)",
                           ((d, shard_id, row) for row, d in enumerate(digests)))  # fmt: skip

    def __len__(self) -> int:
        """Entries in the index."""
        if not (self.dir / INDEX).is_file() and not (self.dir / LEGACY_INDEX).is_file():
            return 0
        with _connect(self.dir) as db:
            return db.execute("SELECT COUNT(*) FROM entries").fetchone()[0]

    def rows(self, shard: str) -> np.ndarray:
        """A shard's `[N, D]` features, memory-mapped (read on access; copy-on-write)."""
        return shard_rows(self.dir / shard)

    def assemble(self, places: Sequence[tuple[str, int]], dim: int) -> torch.Tensor:
        """Features `[len(places), dim]` from `(shard, row)` places, without reading them all into RAM:
        one shard's rows in order are that shard itself (memory-mapped); otherwise they are copied
        chunk by chunk into an unlinked memory-mapped file in the cache folder."""
        if not places:
            return torch.zeros((0, dim))
        shards = {shard for shard, _ in places}
        if len(shards) == 1:
            mm = self.rows(next(iter(shards)))
            if len(mm) == len(places) and all(row == i for i, (_, row) in enumerate(places)):
                return torch.from_numpy(mm)
        fd, tmp = tempfile.mkstemp(dir=self.dir, prefix="assembled-", suffix=".f32")
        os.close(fd)
        out = np.memmap(tmp, dtype=np.float32, mode="w+", shape=(len(places), dim))
        os.unlink(tmp)  # the mapping keeps the pages; nothing is left behind
        by_shard: dict[str, list[tuple[int, int]]] = defaultdict(list)
        for i, (shard, row) in enumerate(places):
            by_shard[shard].append((i, row))
        for shard, pairs in by_shard.items():
            mm = self.rows(shard)
            for start in range(0, len(pairs), _CHUNK):
                part = pairs[start : start + _CHUNK]
                out[[i for i, _ in part]] = mm[[r for _, r in part]]
        return torch.from_numpy(out)


INDEX = "index.sqlite"
"""The cache folder's index: SQLite (stdlib), `entries(digest -> shard, row)` and `shards(id, name)`."""
LEGACY_INDEX = "index.json"
"""The index of caches written before the SQLite one (`{digest: [shard, row]}`): imported on first use."""
_QUERY_CHUNK = 900
"""Digests looked up per SQL query (SQLite allows 999 bound parameters in older builds)."""


@contextlib.contextmanager
def _connect(folder: Path) -> Iterator[sqlite3.Connection]:
    """A connection to `folder`'s index, created (and a legacy `index.json` imported) on first use;
    the block is one transaction, committed at its end, rolled back on an error."""
    db = sqlite3.connect(folder / INDEX, timeout=60)
    try:
        with db:
            db.execute("CREATE TABLE IF NOT EXISTS shards (id INTEGER PRIMARY KEY, name TEXT UNIQUE NOT NULL)")
            db.execute("CREATE TABLE IF NOT EXISTS entries (digest TEXT PRIMARY KEY, shard INTEGER NOT NULL, row INTEGER NOT NULL) WITHOUT ROWID")
        legacy = folder / LEGACY_INDEX
        if legacy.is_file():
            _import_legacy_index(db, legacy)
        with db:
            yield db
    finally:
        db.close()


def _import_legacy_index(db: sqlite3.Connection, legacy: Path) -> None:
    """Move an `index.json` (`{digest: [shard, row]}`) into the SQLite index, then remove it.
    One transaction: an import interrupted halfway leaves the JSON file for the next try."""
    try:
        entries = json.loads(legacy.read_text())
    except FileNotFoundError:  # another process imported it meanwhile
        return
    except ValueError:  # a damaged legacy index: its features are recomputed, nothing else is lost
        entries = {}
    with db:
        names = {shard for shard, _ in entries.values()}
        db.executemany("INSERT OR IGNORE INTO shards (name) VALUES (?)", ((n,) for n in sorted(names)))
        ids = dict(db.execute("SELECT name, id FROM shards"))
        db.executemany("INSERT OR IGNORE INTO entries (digest, shard, row) VALUES (?, ?, ?)",
                       ((d, ids[shard], int(row)) for d, (shard, row) in entries.items()))  # fmt: skip
    legacy.unlink(missing_ok=True)


_CHUNK = 8192
"""Rows copied at a time when features are assembled from several shards."""


class ShardWriter:
    """Streams `rows` x `dim` float32 features into a new safetensors shard: `append` each batch,
    then `commit(digests)` (fsync, rename, index); a shard that is not committed is removed."""

    def __init__(self, cache: FeatureCache, rows: int, dim: int) -> None:
        self.cache, self.rows, self.dim, self.written = cache, rows, dim, 0
        self.name = f"shard-{uuid.uuid4().hex[:12]}.safetensors"
        self.tmp = cache.dir / (self.name + ".tmp")
        header = json.dumps({"features": {"dtype": "F32", "shape": [rows, dim], "data_offsets": [0, rows * dim * 4]}}).encode()
        header += b" " * (-len(header) % 8)  # safetensors aligns the data to 8 bytes
        self.file = open(self.tmp, "wb")
        self.file.write(len(header).to_bytes(8, "little") + header)

    def append(self, features: torch.Tensor) -> None:
        block = features.detach().float().cpu().contiguous().numpy()
        if block.ndim != 2 or block.shape[1] != self.dim or self.written + len(block) > self.rows:
            raise ValueError(f"feature batch of shape {tuple(block.shape)} does not fit shard [{self.rows}, {self.dim}] at row {self.written}")
        self.file.write(block.tobytes())
        self.written += len(block)

    def commit(self, digests: Sequence[str]) -> str:
        """Finish the shard and index its rows under `digests`; returns the shard's name."""
        if self.written != self.rows or len(digests) != self.rows:
            raise ValueError(f"shard has {self.written} of {self.rows} rows for {len(digests)} digests")
        self.file.flush()
        os.fsync(self.file.fileno())
        self.file.close()
        os.replace(self.tmp, self.cache.dir / self.name)
        self.cache.add_to_index(self.name, digests)
        return self.name

    def __enter__(self) -> "ShardWriter":
        return self

    def __exit__(self, *exc: Any) -> None:
        if not self.file.closed:
            self.file.close()
            self.tmp.unlink(missing_ok=True)


def shard_rows(path: Path) -> np.ndarray:
    """The `features` tensor of a float32 safetensors shard, memory-mapped `[N, D]` (copy-on-write)."""
    with open(path, "rb") as f:
        size = int.from_bytes(f.read(8), "little")
        header = json.loads(f.read(size))
    entry = header["features"]
    if entry["dtype"] != "F32":
        raise ValueError(f"{path}: features are {entry['dtype']}, expected F32")
    rows, dim = entry["shape"]
    if rows == 0:
        return np.zeros((0, dim), np.float32)
    return np.memmap(path, dtype=np.float32, mode="c", offset=8 + size + entry["data_offsets"][0], shape=(rows, dim))

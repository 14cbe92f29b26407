"""On-disk cache of frozen-backbone features.

A cache is a folder named by a hash of everything that determines a feature vector except the
image: the backbone's weights hash, the preprocessing, and the precision. Inside, features are
keyed by each file's content hash (SHA-256), so renamed or moved files still hit, and an edited
file misses. Changing the head, the epochs or the learning rate never recomputes a feature.

Layout: `<root>/<key>/key.json` (what the key means), `index.json` (`{file_hash: [shard, row]}`),
`shard-*.safetensors` (`features: [N, D]` float32).

Data larger than memory: `ShardWriter` streams features batch by batch into a new shard (the
safetensors header first, then the rows, fsync, rename), and `rows` / `assemble` read shards
memory-mapped, so a feature pass over 100,000 images holds one batch in RAM, not `[N, D]`.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import uuid
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch


def default_cache_root() -> Path:
    """`$GRAFTKIT_CACHE/features`, else `~/.cache/graftkit/features`."""
    base = os.environ.get("GRAFTKIT_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "graftkit")
    return Path(base) / "features"


def file_digest(path: str | Path) -> str:
    """SHA-256 of a file's bytes, hex."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def file_digests(paths: Sequence[str | Path]) -> list[str]:
    """Content hashes of many files (hashlib releases the GIL, so threads help)."""
    with ThreadPoolExecutor(max_workers=min(8, (os.cpu_count() or 1) * 2)) as pool:
        return list(pool.map(file_digest, paths))


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
        self._index: dict[str, list] | None = None

    @property
    def index(self) -> dict[str, list]:
        if self._index is None:
            path = self.dir / "index.json"
            self._index = json.loads(path.read_text()) if path.is_file() else {}
        return self._index

    def lookup(self, digests: Sequence[str]) -> tuple[dict[int, torch.Tensor], list[int]]:
        """Cached rows by position, and the positions that are missing."""
        from safetensors import safe_open

        found: dict[int, torch.Tensor] = {}
        by_shard: dict[str, list[tuple[int, int]]] = defaultdict(list)
        missing = []
        for i, d in enumerate(digests):
            hit = self.index.get(d)
            if hit is None or not (self.dir / hit[0]).is_file():
                missing.append(i)
            else:
                by_shard[hit[0]].append((i, hit[1]))
        for shard, pairs in by_shard.items():
            with safe_open(str(self.dir / shard), framework="pt") as f:
                feats = f.get_tensor("features")  # (N_shard, D)
            rows = feats[torch.tensor([r for _, r in pairs])]
            for (i, _), row in zip(pairs, rows):
                found[i] = row
        return found, missing

    def store(self, digests: Sequence[str], features: torch.Tensor) -> None:
        """Add features `[N, D]` for `digests`; a write never corrupts what is already cached."""
        from safetensors.torch import save_file

        if len(digests) == 0:
            return
        self.dir.mkdir(parents=True, exist_ok=True)
        key_path = self.dir / "key.json"
        if not key_path.is_file():
            key_path.write_text(json.dumps(self.key, indent=2, sort_keys=True))
        shard = f"shard-{uuid.uuid4().hex[:12]}.safetensors"
        tmp = self.dir / (shard + ".tmp")
        save_file({"features": features.detach().float().cpu().contiguous()}, str(tmp))
        os.replace(tmp, self.dir / shard)
        # Re-read the index so that a concurrent writer's entries are kept.
        path = self.dir / "index.json"
        index = json.loads(path.read_text()) if path.is_file() else {}
        index.update({d: [shard, row] for row, d in enumerate(digests)})
        tmp_index = path.with_name(f"index.{uuid.uuid4().hex[:8]}.tmp")
        tmp_index.write_text(json.dumps(index))
        os.replace(tmp_index, path)
        self._index = index

    def locate(self, digests: Sequence[str]) -> tuple[dict[int, tuple[str, int]], list[int]]:
        """Where each cached item's row is (`{position: (shard, row)}`) and the positions missing."""
        hits: dict[int, tuple[str, int]] = {}
        missing = []
        present: dict[str, bool] = {}
        for i, d in enumerate(digests):
            hit = self.index.get(d)
            if hit is not None and present.setdefault(hit[0], (self.dir / hit[0]).is_file()):
                hits[i] = (hit[0], hit[1])
            else:
                missing.append(i)
        return hits, missing

    def writer(self, rows: int, dim: int) -> "ShardWriter":
        """A new shard of `rows` features of `dim` floats, written as they come (`ShardWriter`)."""
        self.dir.mkdir(parents=True, exist_ok=True)
        key_path = self.dir / "key.json"
        if not key_path.is_file():
            key_path.write_text(json.dumps(self.key, indent=2, sort_keys=True))
        return ShardWriter(self, rows, dim)

    def add_to_index(self, entries: dict[str, list]) -> None:
        """Record `{digest: [shard, row]}`; re-reads the index so a concurrent writer's entries are kept."""
        path = self.dir / "index.json"
        index = json.loads(path.read_text()) if path.is_file() else {}
        index.update(entries)
        tmp_index = path.with_name(f"index.{uuid.uuid4().hex[:8]}.tmp")
        tmp_index.write_text(json.dumps(index))
        os.replace(tmp_index, path)
        self._index = index

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
        self.cache.add_to_index({d: [self.name, row] for row, d in enumerate(digests)})
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

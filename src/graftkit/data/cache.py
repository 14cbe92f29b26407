"""On-disk cache of frozen-backbone features.

A cache is a folder named by a hash of everything that determines a feature vector except the
image: the backbone's weights hash, the preprocessing, and the precision. Inside, features are
keyed by each file's content hash (SHA-256), so renamed or moved files still hit, and an edited
file misses. Changing the head, the epochs or the learning rate never recomputes a feature.

Layout: `<root>/<key>/key.json` (what the key means), `index.json` (`{file_hash: [shard, row]}`),
`shard-*.safetensors` (`features: [N, D]`).
"""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Sequence

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

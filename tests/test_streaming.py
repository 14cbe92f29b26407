"""Data larger than memory: the feature cache streams features to disk and reads them memory-mapped."""

from __future__ import annotations

import pytest
import torch

from graftkit.data.cache import FeatureCache, file_digests
from graftkit.engine import LocalEngine
from graftkit.sources import load_backbone
from graftkit.training.config import TrainConfig
from graftkit.training._build import eval_loader_factory
from graftkit.training.features import compute_features, extract_features, feature_cache_key
from tests.conftest import TINY_MODEL, make_image_folder


def test_shards_stream_batches_and_assemble_rows_from_several_shards(tmp_path):
    cache = FeatureCache({"k": 1}, root=tmp_path)
    a, b = torch.randn(5, 3), torch.randn(4, 3)
    for name, block in (("a", a), ("b", b)):
        with cache.writer(len(block), 3) as shard:
            shard.append(block[:2])  # batch by batch, as computed
            shard.append(block[2:])
            shard.commit([f"{name}{i}" for i in range(len(block))])
    places, missing = cache.locate(["b1", "x", "a4", "a0"])
    assert missing == [1] and places == {0: (places[0][0], 1), 2: (places[2][0], 4), 3: (places[3][0], 0)}
    mixed = cache.assemble([places[0], places[2], places[3]], 3)
    assert torch.equal(mixed, torch.stack([b[1], a[4], a[0]]))
    found, _ = cache.lookup(["a3"])  # the shards are ordinary safetensors files for the old reader too
    assert torch.equal(found[0], a[3])
    one = cache.assemble(list(cache.locate([f"a{i}" for i in range(5)])[0].values()), 3)
    assert _mapped_file(one).name.startswith("shard-")  # the shard file itself, mapped: not read into RAM
    assert torch.equal(one, a)


def _mapped_file(t: torch.Tensor):
    """The file whose memory mapping holds the tensor's data (Linux /proc/self/maps), else None."""
    from pathlib import Path

    address = t.data_ptr()
    for line in Path("/proc/self/maps").read_text().splitlines():
        fields = line.split(maxsplit=5)
        start, end = (int(x, 16) for x in fields[0].split("-"))
        if start <= address < end and len(fields) == 6 and fields[5].startswith("/"):
            return Path(fields[5].strip())
    return None


def test_a_shard_that_is_not_committed_leaves_nothing(tmp_path):
    cache = FeatureCache({"k": 1}, root=tmp_path)
    with pytest.raises(RuntimeError):
        with cache.writer(4, 3) as shard:
            shard.append(torch.randn(2, 3))
            raise RuntimeError("interrupted mid-pass")
    assert sorted(p.name for p in cache.dir.iterdir()) == ["key.json"]
    with cache.writer(2, 3) as shard, pytest.raises(ValueError, match=r"does not fit shard \[2, 3\]"):
        shard.append(torch.randn(3, 3))


def test_feature_pass_streams_to_the_cache_and_matches_features_in_memory(tmp_path):
    make_image_folder(tmp_path / "imgs", per_class=4)
    paths = sorted((tmp_path / "imgs").rglob("*.png"))
    backbone = load_backbone(TINY_MODEL)
    engine = LocalEngine()
    make = eval_loader_factory(backbone, TrainConfig(model=TINY_MODEL, batch_size=5, num_workers=0))
    expected = compute_features(backbone, make(paths), engine)
    cache = FeatureCache(feature_cache_key(backbone, "fp32", False), root=tmp_path / "cache")

    kept = []
    assert compute_features(backbone, make(paths), engine, sink=kept.append) is None  # nothing accumulated
    assert [len(k) for k in kept] == [5, 5, 2]

    first, stats = extract_features(backbone, paths[:8], make, engine, cache)
    assert (stats.computed, stats.cached) == (8, 0) and torch.allclose(first, expected[:8], atol=1e-6)
    both, stats = extract_features(backbone, paths, make, engine, cache)  # 8 from the cache, 4 new
    assert (stats.computed, stats.cached) == (4, 8) and torch.allclose(both, expected, atol=1e-6)
    assert len(set(file_digests(paths))) == 12 and len(list(cache.dir.glob("shard-*.safetensors"))) == 2
    assert not list(cache.dir.glob("*.tmp")) and not list(cache.dir.glob("assembled-*"))


def test_index_is_sqlite_and_a_store_adds_rows_without_rewriting_the_others(tmp_path):
    import sqlite3

    cache = FeatureCache({"k": 1}, root=tmp_path)
    cache.store(["a0", "a1"], torch.randn(2, 3))
    cache.store(["b0"], torch.randn(1, 3))
    assert not (cache.dir / "index.json").exists() and len(cache) == 3
    with sqlite3.connect(cache.dir / "index.sqlite") as db:  # one row per feature: nothing is rewritten whole
        assert db.execute("SELECT COUNT(*) FROM entries").fetchone()[0] == 3
        assert db.execute("SELECT COUNT(*) FROM shards").fetchone()[0] == 2


def test_a_cache_written_with_the_json_index_is_read_and_migrated(tmp_path):
    import json

    from safetensors.torch import save_file

    cache = FeatureCache({"k": 1}, root=tmp_path)
    cache.dir.mkdir(parents=True)
    old = torch.randn(3, 4)
    save_file({"features": old}, str(cache.dir / "shard-old.safetensors"))  # the layout of the old code
    (cache.dir / "index.json").write_text(json.dumps({f"d{i}": ["shard-old.safetensors", i] for i in range(3)}))
    found, missing = cache.lookup(["d2", "new", "d0"])
    assert missing == [1] and torch.equal(found[0], old[2]) and torch.equal(found[2], old[0])
    assert not (cache.dir / "index.json").exists() and (cache.dir / "index.sqlite").is_file()  # imported once
    cache.store(["new"], torch.ones(1, 4))
    assert FeatureCache({"k": 1}, root=tmp_path).locate(["d1", "new"])[1] == []


def test_entries_whose_shard_is_gone_are_missing(tmp_path):
    cache = FeatureCache({"k": 1}, root=tmp_path)
    cache.store(["a0"], torch.randn(1, 3))
    cache.store(["b0"], torch.randn(1, 3))
    b_shard = cache.locate(["b0"])[0][0][0]
    (cache.dir / b_shard).unlink()
    assert cache.locate(["a0", "b0"])[1] == [1]


def test_file_digests_keep_the_order_of_the_paths_across_chunks(tmp_path, monkeypatch):
    import graftkit.data.cache as cache_module

    monkeypatch.setattr(cache_module, "_DIGEST_CHUNK", 3)  # several rounds of the pool
    paths = []
    for i in range(8):
        paths.append(tmp_path / f"{i}.bin")
        paths[-1].write_bytes(bytes([i]) * (i + 1))
    assert file_digests(paths) == [cache_module.file_digest(p) for p in paths]

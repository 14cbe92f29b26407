"""WebDataset tar shards as training data: `graft train shards/` or `data-{000..002}.tar`."""

from __future__ import annotations

import io
import json
import re
import tarfile
from pathlib import Path

import pytest
import torch
from PIL import Image

from graftkit.cli import main
from graftkit.data.cache import file_digest
from graftkit.data.images import load_image
from graftkit.data.labels import LabelKind
from graftkit.data.webdataset import expand_braces, is_shard_source, read_webdataset
from graftkit.errors import DataError
from tests.conftest import TINY_MODEL, _pattern

CLASSES = ("cat", "dog", "fox")


def _png(label: int, i: int) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(_pattern(label, i)).save(buf, format="PNG")
    return buf.getvalue()


def write_shard(path: Path, samples: list[tuple[str, dict[str, bytes]]]) -> Path:
    """A WebDataset shard: each sample's members (`key.ext`) written together, in order."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w") as tar:
        for key, members in samples:
            for ext, data in members.items():
                info = tarfile.TarInfo(f"{key}.{ext}")
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    return path


def _samples(start: int, n: int, label_ext: str = "cls") -> list[tuple[str, dict[str, bytes]]]:
    out = []
    for i in range(start, start + n):
        c = i % 3
        label = {"cls": str(c), "txt": CLASSES[c], "json": json.dumps({"label": CLASSES[c]})}[label_ext]
        out.append((f"{i:06d}", {"png": _png(c, i), label_ext: label.encode()}))
    return out


def test_brace_patterns_expand_like_webdataset():
    assert expand_braces("d-{000..002}.tar") == ["d-000.tar", "d-001.tar", "d-002.tar"]
    assert expand_braces("{a,b}-{0..1}.tar") == ["a-0.tar", "a-1.tar", "b-0.tar", "b-1.tar"]
    assert is_shard_source("x/data-{000..009}.tar") and not is_shard_source("x/images")


def test_shards_read_by_offset_match_the_images_and_split_by_name(tmp_path):
    folder = tmp_path / "shards"
    write_shard(folder / "train-000.tar", _samples(0, 12, "txt"))
    write_shard(folder / "train-001.tar", _samples(12, 12, "json"))
    write_shard(folder / "val-000.tar", _samples(24, 6, "txt"))
    data = read_webdataset(folder)
    assert (len(data.train), len(data.val), data.classes, data.split, data.layout) == (24, 6, list(CLASSES), "given", "webdataset")
    s = data.train[5]
    i = int(s.path.key)
    assert s.label == CLASSES[i % 3] and str(s.path).endswith(f"train-000.tar:{i:06d}.png")
    expected = torch.from_numpy(_pattern(i % 3, i)).permute(2, 0, 1)
    assert torch.equal(load_image(s.path), expected)  # the bytes at the member's offset are the image
    loose = tmp_path / "loose.png"
    loose.write_bytes(_png(i % 3, i))
    assert file_digest(s.path) == file_digest(loose)  # the same feature-cache key as the image as a file


def test_a_corrupt_image_and_a_sample_without_label_are_named_by_shard_and_key(tmp_path):
    good = _samples(0, 9)
    bad = [("000100", {"png": _png(0, 100)[:60], "cls": b"0"}),  # cut inside the PNG
           ("000101", {"png": _png(1, 101)})]  # no label  # fmt: skip
    write_shard(tmp_path / "data-000.tar", good)
    write_shard(tmp_path / "data-001.tar", bad + _samples(20, 3))
    with pytest.raises(DataError) as e:
        read_webdataset(str(tmp_path / "data-{000..001}.tar"))
    msg = str(e.value)
    assert "data-001.tar: sample '000100'" in msg and "cannot be decoded" in msg
    assert "data-001.tar: sample '000101'" in msg and "no label (.cls, .txt or .json)" in msg
    assert "data-000.tar" not in msg.replace(str(tmp_path / "data-{000..001}.tar"), "")  # only the bad shard is named


def test_missing_shards_and_a_truncated_tar_are_clear_errors(tmp_path):
    with pytest.raises(DataError, match=r"data-001.tar: shard not found .*\{000..NNN\} range"):
        write_shard(tmp_path / "data-000.tar", _samples(0, 6))
        read_webdataset(str(tmp_path / "data-{000..001}.tar"))
    full = write_shard(tmp_path / "cut.tar", _samples(0, 9)).read_bytes()
    (tmp_path / "cut.tar").write_bytes(full[: len(full) // 2])
    with pytest.raises(DataError, match=r"cut.tar: sample '0000\d\d'.*(cut off|damaged)"):
        read_webdataset(tmp_path / "cut.tar")


def test_numeric_labels_for_regression(tmp_path):
    samples = [(f"{i:03d}", {"png": _png(i % 3, i), "txt": f"{i / 2}".encode()}) for i in range(10)]
    data = read_webdataset(write_shard(tmp_path / "r.tar", samples), label_kind=LabelKind.VALUE, val_fraction=0.3)
    assert sorted(s.label for s in data.train + data.val) == [i / 2 for i in range(10)] and data.classes == []


def test_graft_train_on_a_shard_pattern_and_on_a_folder_of_shards(tmp_path, capsys):
    for k in range(3):
        write_shard(tmp_path / "shards" / f"data-{k:03d}.tar", _samples(k * 10, 10))
    out = tmp_path / "run"
    rc = main(["train", str(tmp_path / "shards" / "data-{000..002}.tar"), "--model", TINY_MODEL, "--strategy", "finetune",
               "--epochs", "1", "--batch-size", "8", "--num-workers", "0", "--out", str(out)])  # fmt: skip
    assert rc == 0
    metrics = json.loads((out / "metrics.json").read_text())
    spec = json.loads((out / "graft.json").read_text())
    assert metrics["val"]["accuracy"] >= 0 and spec["task"]["classes"] == ["0", "1", "2"]  # .cls labels: the class ids as names
    split = json.loads((out / "split.json").read_text())
    assert split["layout"] == "webdataset" and len(split["files"]["train"]) + len(split["files"]["val"]) == 30
    assert split["files"]["train"][0][0].startswith("data-00") and ":0000" in split["files"]["train"][0][0]
    assert main(["evaluate", str(out), str(tmp_path / "shards" / "data-002.tar")]) == 0  # graft evaluate reads shards too
    unknown = write_shard(tmp_path / "other.tar", [("x1", {"png": _png(0, 1), "cls": b"7"})])
    assert main(["evaluate", str(out), str(unknown)]) != 0
    assert re.search(r"error: .*7.*one of the run's classes \(0, 1, 2\)", capsys.readouterr().err, re.S)
    probe = tmp_path / "probe"
    assert main(["train", str(tmp_path / "shards"), "--model", TINY_MODEL, "--epochs", "2", "--batch-size", "8",
                 "--num-workers", "0", "--out", str(probe)]) == 0  # fmt: skip
    assert json.loads((probe / "metrics.json").read_text())["features"]["computed"] == 30  # train + val features, read from the shards

"""The one reader core: the same split, label parsing, checks and summaries for images and texts,
and image manifests with multi-label and numeric labels."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from PIL import Image

from graftkit.data import (
    ImageFileDataset,
    LabelKind,
    decode_image_bytes,
    load_image,
    read_dataset,
    read_image_data,
    read_labelled,
    read_text_data,
)
from graftkit.data import core
from graftkit.errors import ConfigError, DataError


def _jpeg(path: Path, shade: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (12, 10), (shade % 255, 90, 40)).save(path, quality=95)
    return path


def _manifest(root: Path, rows: list[tuple[str, str]], name: str = "data.csv") -> Path:
    for i, (rel, _) in enumerate(rows):
        _jpeg(root / rel, shade=7 * i)
    path = root / name
    path.write_text("path,label\n" + "".join(f"{rel},{label}\n" for rel, label in rows))
    return path


def _texts(path: Path, rows: list[tuple[str, str]], header: str = "text,label") -> Path:
    path.write_text(header + "\n" + "".join(f"{t},{label}\n" for t, label in rows))
    return path


# --- one split rule -------------------------------------------------------------------------


def test_same_rounding_for_images_and_text(tmp_path):
    assert core.val_count(5, 0.5) == 3  # 2.5 rounds half up, for every modality
    assert [core.val_count(n, 0.2) for n in (1, 2, 3, 10)] == [0, 1, 1, 2]
    for c, label in enumerate(("cat", "dog")):
        for i in range(5):  # no file is a copy of another
            _jpeg(tmp_path / "img" / label / f"{i}.jpg", shade=i + 20 * c)
    images = read_image_data(tmp_path / "img", val_fraction=0.5)
    texts = read_text_data(_texts(tmp_path / "t.csv", [(f"{w} {i}", w) for w in ("cat", "dog") for i in range(5)]), val_fraction=0.5)
    assert images.counts()["val"] == texts.counts()["val"] == {"cat": 3, "dog": 3}
    values = read_dataset(_texts(tmp_path / "v.csv", [(f"t{i}", str(i)) for i in range(5)], "text,score"), modality="text",
                          label_kind=LabelKind.VALUE, val_fraction=0.5)  # fmt: skip
    assert len(values.val) == 3 and values.split == "seeded 50% (seed 0)"


def test_multilabel_split_keeps_every_val_label_in_train(tmp_path):
    rows = [(f"img/{i}.jpg", "common" if i % 3 else f"common|rare{i}") for i in range(12)]
    for seed in range(5):
        data = read_image_data(_manifest(tmp_path, rows), label_kind=LabelKind.CLASSES, val_fraction=0.5, seed=seed)
        assert len(data.val) >= 1 and not core.unknown_labels(data.val, data.classes)
        assert data.classes == sorted({"common", "rare0", "rare3", "rare6", "rare9"})  # each rare label stayed in train


# --- image manifests beyond single-label classes --------------------------------------------


def test_image_manifest_with_multilabels(tmp_path):
    rows = [("a.jpg", "cat|dog"), ("b.jpg", "dog"), ("c.jpg", ""), ("d.jpg", "dog| cat"), ("e.jpg", "owl|cat"), ("f.jpg", "owl")]
    data = read_image_data(_manifest(tmp_path, rows), label_kind=LabelKind.CLASSES, val_fraction=0.2)
    assert data.label_kind is LabelKind.CLASSES and data.classes == ["cat", "dog", "owl"]
    assert {s.path.name: s.label for s in data.train + data.val}["d.jpg"] == ["cat", "dog"]
    assert {s.path.name: s.label for s in data.train + data.val}["c.jpg"] == []
    total = {c: data.counts()["train"][c] + data.counts()["val"][c] for c in data.classes}
    assert total == {"cat": 3, "dog": 3, "owl": 2}
    d = data.to_dict(include_files=True)
    assert d["label_kind"] == "classes" and json.dumps(d)
    lines = [json.dumps({"path": "a.jpg", "label": ["x", "y"], "split": "train"}),
             json.dumps({"path": "b.jpg", "label": "y", "split": "train"}),
             json.dumps({"path": "c.jpg", "label": ["y"], "split": "val"})]  # fmt: skip
    (tmp_path / "m.jsonl").write_text("\n".join(lines))
    given = read_image_data(tmp_path / "m.jsonl", label_kind=LabelKind.CLASSES)
    assert given.classes == ["x", "y"] and given.split == "given" and given.val[0].label == ["y"]
    targets = torch.tensor([[1.0, 1.0], [0.0, 1.0]])
    ds = ImageFileDataset(given.train, targets)
    assert torch.equal(ds[0][1], targets[0]) and ds[0][0].dtype == torch.uint8


def test_image_manifest_with_numeric_targets(tmp_path):
    rows = [(f"{i}.jpg", value) for i, value in enumerate(["1.5", " -2 ", "3e1", "0", "4"])]
    data = read_image_data(_manifest(tmp_path, rows), label_kind=LabelKind.VALUE)
    assert data.classes == [] and data.counts() == {}
    assert sorted(s.label for s in data.train + data.val) == [-2.0, 0.0, 1.5, 4.0, 30.0]
    assert data.split == "seeded 20% (seed 0)" and len(data.val) == 1
    assert set(data.to_dict()["target_stats"]) == {"mean", "std", "min", "max"}
    assert "numeric targets; train 4, val 1, test 0" in data.summary()


def test_non_numeric_value_names_its_row(tmp_path):
    path = _manifest(tmp_path, [("a.jpg", "1"), ("b.jpg", "lots"), ("c.jpg", "2"), ("d.jpg", "")])
    with pytest.raises(DataError) as info:
        read_image_data(path, label_kind=LabelKind.VALUE)
    message = str(info.value)
    assert f"{path}: values that are not numbers (e.g. 'lots') in line 3: use plain numbers" in message
    assert "missing value in line 5" in message


def test_folders_hold_single_label_classes_only(tmp_path):
    for label in ("cat", "dog"):
        _jpeg(tmp_path / "img" / label / "0.jpg")
        _jpeg(tmp_path / "img" / label / "1.jpg")
    for kind in (LabelKind.CLASSES, LabelKind.VALUE):
        with pytest.raises(DataError, match="CSV or JSONL manifest with 'path' and 'label' columns"):
            read_image_data(tmp_path / "img", label_kind=kind)
    with pytest.raises(ConfigError, match="--task classification, multilabel or regression"):
        read_image_data(tmp_path / "img", label_kind=LabelKind.SEQUENCE)


# --- one validation -------------------------------------------------------------------------


def test_unknown_val_labels_reported_by_one_core_function(tmp_path, monkeypatch):
    calls = []
    real = core.report_unknown_labels

    def spy(problems, samples, known, **kwargs):
        calls.append(kwargs["split"])
        real(problems, samples, known, **kwargs)

    monkeypatch.setattr(core, "report_unknown_labels", spy)
    for label in ("cat", "dog"):
        _jpeg(tmp_path / "img" / "train" / label / "0.jpg")
        _jpeg(tmp_path / "img" / "train" / label / "1.jpg")
    _jpeg(tmp_path / "img" / "val" / "fox" / "0.jpg")
    with pytest.raises(DataError) as images:
        read_image_data(tmp_path / "img")
    folder = tmp_path / "txt"
    folder.mkdir()
    _texts(folder / "train.csv", [("a", "cat"), ("b", "cat"), ("c", "dog"), ("d", "dog")])
    _texts(folder / "val.csv", [("e", "cat"), ("f", "fox")])
    with pytest.raises(DataError) as texts:
        read_text_data(folder)
    assert calls == ["val", "test", "val", "test"]
    assert "val label 'fox' is not a training class (1 file(s):" in str(images.value)
    assert "val label 'fox' is not a training class (1 row(s), line 3)" in str(texts.value)


def test_all_problems_at_once_in_a_value_manifest(tmp_path):
    _jpeg(tmp_path / "a.jpg")
    (tmp_path / "empty.jpg").write_bytes(b"")
    (tmp_path / "m.csv").write_text("path,label\na.jpg,1\nmissing.jpg,2\nnotes.txt,3\na.jpg,4\nempty.jpg,5\nb.jpg,many\n")
    with pytest.raises(DataError) as info:
        read_image_data(tmp_path / "m.csv", label_kind=LabelKind.VALUE)
    problems = info.value.problems
    expected = [
        "line 3: file 'missing.jpg' does not exist",
        "line 4: 'notes.txt' has unsupported file type '.txt'",
        "line 5: 'a.jpg' is already listed at line 2",
        "values that are not numbers (e.g. 'many') in line 7",
        "empty.jpg: file is empty (0 bytes)",
    ]
    for fragment in expected:
        assert any(fragment in p for p in problems), f"{fragment!r} not in {problems}"
    assert len(problems) == len(expected)


# --- one entry point ------------------------------------------------------------------------


def test_read_dataset_and_read_labelled_dispatch_on_modality(tmp_path):
    rows = [(f"{i}.jpg", "a|b" if i % 2 else "b") for i in range(6)]
    manifest = _manifest(tmp_path / "img", rows)
    images = read_dataset(manifest, modality="image", label_kind=LabelKind.CLASSES, seed=1)
    assert images.classes == ["a", "b"] and images.label_kind is LabelKind.CLASSES
    evaluated = read_labelled(manifest, modality="image", label_kind=LabelKind.CLASSES, classes=["a", "b"])
    assert len(evaluated) == 6
    with pytest.raises(DataError, match="label 'b' is not one of the run's classes \\(a\\)"):
        read_labelled(manifest, modality="image", label_kind=LabelKind.CLASSES, classes=["a"])
    texts = _texts(tmp_path / "t.csv", [("x", "1"), ("y", "2"), ("z", "3")], "text,score")
    assert read_dataset(texts, modality="text", label_kind=LabelKind.VALUE).classes == []
    assert [s.label for s in read_labelled(texts, modality="text", label_kind=LabelKind.VALUE, classes=[])] == [1.0, 2.0, 3.0]
    with pytest.raises(ConfigError, match="modality 'video'"):  # audio has a reader since the audio issue
        read_dataset(texts, modality="video", label_kind=LabelKind.VALUE)
    with pytest.raises(ConfigError, match="--text-col apply to text data only"):
        read_dataset(manifest, modality="image", label_kind=LabelKind.CLASSES, text_col="caption")


def test_decode_image_bytes_matches_load_image(tmp_path):
    path = _jpeg(tmp_path / "a.jpg", shade=120)
    png = tmp_path / "b.png"
    Image.new("RGBA", (5, 4), (10, 20, 30, 0)).save(png)
    for file in (path, png):
        assert torch.equal(decode_image_bytes(file.read_bytes(), file.name), load_image(file))
    with pytest.raises(DataError, match="upload.jpg"):
        decode_image_bytes(b"\xff\xd8\xff not a jpeg", "upload.jpg")

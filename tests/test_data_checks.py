"""Data problems a user can't see (duplicates, missing-value labels, impossible settings) and
training that diverges: reported or refused with the fix (issue 15, items 5 and 6)."""

from __future__ import annotations

import json
import shutil

import pytest

import graftkit
from graftkit.data import read_dataset
from graftkit.data.labels import LabelKind
from graftkit.errors import ConfigError, DataError, TrainingDivergedError
from tests.conftest import TINY_MODEL, make_image_folder


def _read_text(path, kind=LabelKind.CLASS, fraction=0.3):
    return read_dataset(path, modality="text", label_kind=kind, val=None, val_fraction=fraction, seed=0,
                        text_col=None, label_col=None, encoding=None)  # fmt: skip


def _reviews(tmp_path, extra_rows=()):
    rows = [(f"review number {i} was {'great' if i % 2 else 'awful'}", "pos" if i % 2 else "neg") for i in range(20)]
    rows += list(extra_rows)
    path = tmp_path / "reviews.csv"
    path.write_text("text,label\n" + "".join(f"{t},{label}\n" for t, label in rows))
    return path


@pytest.mark.parametrize("label", ["NaN", "null", " n/a "])
def test_missing_value_labels_are_errors_not_classes(tmp_path, label):
    path = _reviews(tmp_path, [("a review with a blank label", label)])
    with pytest.raises(DataError, match=r"labels written as a missing value \(NaN, null, N/A\).*line 22: fill them in"):
        _read_text(path)


def test_nan_in_multilabel_and_regression_labels(tmp_path):
    path = tmp_path / "tags.csv"
    path.write_text("text,label\n" + "".join(f"text {i},a|b\n" for i in range(6)) + "text x,a|nan\n")
    with pytest.raises(DataError, match="missing value"):
        _read_text(path, LabelKind.CLASSES)
    path.write_text("text,label\n" + "".join(f"text {i},{i}.5\n" for i in range(6)) + "text x,NaN\n")
    with pytest.raises(DataError, match="values that are not numbers"):
        _read_text(path, LabelKind.VALUE)


def test_duplicate_and_conflicting_texts_reported_and_kept_on_one_side(tmp_path, capsys):
    copies = [("review number 3 was great", "pos")] * 3 + [("review  number 4 was awful", "pos")]  # 4 is 'neg' above
    data = _read_text(_reviews(tmp_path, copies), fraction=0.5)
    err = " ".join(capsys.readouterr().err.split())
    assert "1 text(s) appear under more than one label, e.g. line 6 = line 25 (neg / pos)" in err
    assert "3 text(s) repeat another one with the same label" in err and "line 5 = line 22 = line 23 ..." in err
    train_texts = {" ".join(s.text.split()) for s in data.train}
    assert not any(" ".join(s.text.split()) in train_texts for s in data.val)  # nothing scored on a copy of itself
    assert data.to_dict()["duplicates"]["repeated"] == 3 and data.to_dict()["duplicates"]["conflicting"] == 1


def test_duplicate_images_under_two_labels_reported_and_never_split(tmp_path, capsys):
    root = make_image_folder(tmp_path / "images", per_class=6)
    for i in range(6):  # the same bytes under another class, and a second copy in its own class
        shutil.copy(root / "cat" / f"cat_{i}.png", root / "dog" / f"copy_{i}.png")
    shutil.copy(root / "fox" / "fox_0.png", root / "fox" / "again.png")
    data = read_dataset(root, modality="image", label_kind=LabelKind.CLASS, val=None, val_fraction=0.3, seed=0,
                        text_col=None, label_col=None, encoding=None)  # fmt: skip
    err = " ".join(capsys.readouterr().err.split())
    assert "6 image(s) appear under more than one label" in err and "(cat / dog)" in err
    assert "1 image(s) repeat another one with the same label" in err and "fox/again.png" in err
    train_bytes = {s.path.read_bytes() for s in data.train}
    assert not any(s.path.read_bytes() in train_bytes for s in data.val)


def test_partial_beyond_the_layer_groups_is_refused(tiny_images, tmp_path):
    with pytest.raises(ConfigError, match=r"--strategy partial:99: timm:test_efficientnet has 6 layer groups, so N can be 1 to 6"):
        graftkit.fit(tiny_images, model=TINY_MODEL, strategy="partial:99", out=tmp_path / "run", epochs=1)
    assert not (tmp_path / "run").exists()


def test_text_model_given_images_says_choose_an_image_model(tiny_images, tiny_bert_dir, tmp_path):
    for data in (tiny_images, next(tiny_images.rglob("*.png"))):
        with pytest.raises(DataError, match=r"this is image data, and the --model given is a text model: choose an image model"):
            graftkit.fit(data, model=f"hf:{tiny_bert_dir}", out=tmp_path / "run", epochs=1)


# --- 6. diverging training stops itself -----------------------------------------------------------


def test_diverging_probe_stops_and_keeps_the_best_epoch(tiny_images, tmp_path, capsys):
    run = graftkit.fit(tiny_images, model=TINY_MODEL, out=tmp_path / "run", lr=1e6, epochs=50, batch_size=32,
                       probe_solver="sgd")  # the SGD probe (the solved one has no lr); one step per epoch: epoch 1 is fine
    err = " ".join(capsys.readouterr().err.split())
    assert "stopped: diverged at epoch" in err and "lower --lr" in err and "keeping the best epoch" in err
    assert run.metrics["epochs"] < 50 and run.metrics["stopped_early"].startswith("diverged")
    meta = json.loads((run.dir / "graft.json").read_text())
    assert meta["status"] == "done"
    assert graftkit.load(run.dir).predict([next(tiny_images.rglob("*.png"))])[0].label in ("cat", "dog", "fox")


def test_diverging_from_the_first_epoch_is_an_error_naming_lr(tiny_images, tmp_path):
    with pytest.raises(TrainingDivergedError, match=r"diverged at epoch 1.* before any epoch gave usable weights.*lower --lr"):
        graftkit.fit(tiny_images, model=TINY_MODEL, strategy="finetune", out=tmp_path / "run", lr=1e6, epochs=3, batch_size=8)


def test_probes_stop_early_by_default(tiny_images, tmp_path):
    run = graftkit.fit(tiny_images, model=TINY_MODEL, out=tmp_path / "run", epochs=300, batch_size=8, probe_solver="sgd")
    assert run.config.patience == 10
    assert run.metrics["epochs"] < 300 and "early stopping" in run.metrics["stopped_early"]


def test_every_text_twice_still_never_scores_a_copy_of_itself(tmp_path):
    rows = [(f"review number {i} was {'great' if i % 2 else 'awful'}", "pos" if i % 2 else "neg") for i in range(30)]
    path = tmp_path / "twice.csv"
    path.write_text("text,label\n" + "".join(f"{t},{label}\n" for t, label in rows + rows))
    data = _read_text(path, fraction=0.5)
    train_texts = {s.text for s in data.train}
    assert data.val and not any(s.text in train_texts for s in data.val)
    assert data.to_dict()["duplicates"]["repeated"] == 30

"""Bad input gets a clear error naming the file or value and the fix; nothing saved is lost."""

from __future__ import annotations

import json

import pytest

import graftkit
from graftkit.cli import main
from graftkit.errors import ConfigError, DataError, RunDirError, UnknownModelError
from tests.conftest import TINY_MODEL, make_image_folder


def _fit(data, out, **kw):
    return graftkit.fit(data, out=out, model=kw.pop("model", TINY_MODEL), epochs=1, batch_size=8, num_workers=0, **kw)


def test_corrupt_and_empty_files_and_classes_reported_together(tiny_images, tmp_path):
    (tiny_images / "cat" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    (tiny_images / "dog" / "empty.png").write_bytes(b"")
    (tiny_images / "owl").mkdir()
    with pytest.raises(DataError) as e:
        _fit(tiny_images, tmp_path / "run")
    msg = str(e.value)
    assert "broken.jpg" in msg and "empty.png" in msg and "owl" in msg
    assert len(e.value.problems) >= 3
    assert not (tmp_path / "run" / "graft.json").exists()  # validated before anything is written


def test_class_with_one_image(tiny_images, tmp_path):
    make_image_folder(tiny_images, classes=("bee",), per_class=1)
    with pytest.raises(DataError, match="bee.*1 image"):
        _fit(tiny_images, tmp_path / "run")


def test_unknown_model_suggests_closest(tiny_images, tmp_path, capsys):
    with pytest.raises(UnknownModelError, match="efficientnet_lite0"):
        _fit(tiny_images, tmp_path / "run", model="efficientnet_lite1")
    rc = main(["train", str(tiny_images), "--model", "timm:resnet19", "--out", str(tmp_path / "r2")])
    err = capsys.readouterr().err
    assert rc == 2 and "timm:resnet18" in err and "graft models" in err and "Traceback" not in err


def test_bad_settings_reported_together_with_flag_names(tiny_images, tmp_path):
    with pytest.raises(ConfigError) as e:
        graftkit.fit(tiny_images, out=tmp_path / "run", epochs=0, lr=-1, strategy="finetunee", augment="wild")
    msg = str(e.value)
    assert "--epochs" in msg and "--lr" in msg and "did you mean 'finetune'" in msg and "--augment" in msg


def test_unknown_setting_suggests_name(tiny_images, tmp_path):
    with pytest.raises(ConfigError, match="did you mean 'epochs'"):
        graftkit.fit(tiny_images, out=tmp_path / "run", epoch=3)


def test_evaluate_with_labels_unknown_to_the_run(tiny_images, tmp_path, capsys):
    _fit(tiny_images, tmp_path / "run")
    other = make_image_folder(tmp_path / "other", classes=("cat", "zebra"), per_class=2)
    rc = main(["evaluate", str(tmp_path / "run"), str(other)])
    err = capsys.readouterr().err
    assert rc == 2 and "zebra" in err and "Traceback" not in err


def test_val_labels_unknown_to_train(tmp_path):
    train = make_image_folder(tmp_path / "train", classes=("cat", "dog"), per_class=4)
    val = make_image_folder(tmp_path / "val", classes=("cat", "emu"), per_class=2)
    with pytest.raises(DataError, match="emu"):
        graftkit.fit(train, val=val, out=tmp_path / "run", model=TINY_MODEL)


def test_unwritable_output_folder(tiny_images, tmp_path):
    blocker = tmp_path / "file.txt"
    blocker.write_text("x")
    with pytest.raises(RunDirError, match="cannot write to output folder .*--out"):
        _fit(tiny_images, blocker / "run")


def test_existing_run_is_not_overwritten(tiny_images, tmp_path):
    run = _fit(tiny_images, tmp_path / "run")
    before = (run.dir / "model.safetensors").read_bytes()
    with pytest.raises(RunDirError, match="already holds a run.*--overwrite"):
        _fit(tiny_images, tmp_path / "run")
    assert (run.dir / "model.safetensors").read_bytes() == before
    _fit(tiny_images, tmp_path / "run", overwrite=True)


def test_predict_on_missing_run_and_missing_file(tmp_path, capsys, tiny_images):
    assert main(["predict", str(tmp_path / "nope"), "x.png"]) == 2
    assert "does not exist" in capsys.readouterr().err
    _fit(tiny_images, tmp_path / "run")
    assert main(["predict", str(tmp_path / "run"), str(tmp_path / "missing.png")]) == 2
    assert "missing.png" in capsys.readouterr().err


def test_resume_without_checkpoint(tiny_images, tmp_path):
    with pytest.raises(RunDirError, match="without --resume"):
        graftkit.fit(tiny_images, out=tmp_path / "fresh", resume=True)


def test_interrupted_run_is_not_loadable_but_says_resume(tiny_images, tmp_path):
    class Boom:
        def on_epoch_end(self, state):
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        _fit(tiny_images, tmp_path / "run", callbacks=[Boom()], probe_solver="sgd")  # epochs to interrupt
    with pytest.raises(RunDirError, match="--resume"):
        graftkit.load(tmp_path / "run")
    assert json.loads((tmp_path / "run" / "graft.json").read_text())["status"] == "training"


def test_image_size_that_the_architecture_cannot_take(tiny_images, tmp_path):
    with pytest.raises(ConfigError, match="--image-size 64 does not fit timm:vit_tiny_patch16_224"):
        _fit(tiny_images, tmp_path / "run", model="scratch:timm:vit_tiny_patch16_224", image_size=64)


def test_overwrite_keeps_the_old_run_when_the_new_input_is_bad(tiny_images, tmp_path):
    """`--overwrite` replaces a run only once the new data, model and settings passed the plan stage."""
    run = _fit(tiny_images, tmp_path / "run")
    before = {p.name: p.read_bytes() for p in run.dir.iterdir() if p.is_file()}
    bad = tmp_path / "bad"
    make_image_folder(bad, classes=("only",), per_class=3)
    with pytest.raises(DataError, match="at least 2"):
        _fit(bad, run.dir, overwrite=True)
    with pytest.raises(UnknownModelError):
        _fit(tiny_images, run.dir, overwrite=True, model="timm:no_such_model_anywhere")
    with pytest.raises(ConfigError, match="--monitor 'bleu' is not a classification metric"):
        _fit(tiny_images, run.dir, overwrite=True, monitor="bleu")
    after = {p.name: p.read_bytes() for p in run.dir.iterdir() if p.is_file()}
    assert after == before  # graft.json, model.safetensors, metrics ... untouched
    assert graftkit.load(run.dir).predict([next(tiny_images.rglob("*.png"))])[0].label in ("cat", "dog", "fox")


def test_mixup_on_labels_that_are_not_single_classes_is_refused(tiny_images, tmp_path):
    manifest = tmp_path / "values.csv"
    rows = [f"{p.relative_to(tmp_path)},{i % 3}.5" for i, p in enumerate(sorted(tiny_images.rglob('*.png')))]
    manifest.write_text("path,label\n" + "\n".join(rows) + "\n")
    with pytest.raises(ConfigError, match="--mix mixup mixes single class labels; --task regression"):
        _fit(manifest, tmp_path / "run", task="regression", strategy="finetune", mix="mixup")
    assert not (tmp_path / "run" / "graft.json").exists()

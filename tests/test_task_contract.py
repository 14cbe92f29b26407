"""The Task contract, checked over every registered task (STYLE.md habit 2).

For each task and each modality it supports: train one short run on a tiny model, reload it from
its run directory alone, predict, and export where the task is one graph. A toy task defined in
this file registers itself and runs through the unchanged package: adding a task needs no edit
outside its own module.
"""

from __future__ import annotations

import csv
import json
import random
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pytest
import torch
from torch.nn import functional as F

import graftkit
from tests.conftest import TINY_MODEL, make_image_folder
from graftkit.data.labels import LabelKind
from graftkit.deploy.export import export
from graftkit.errors import ConfigError
from graftkit.tasks import Metric, Task, TaskSettings, get_task, register_task, task_from_dict, task_names, unregister_task
from graftkit.tasks.base import TASK_MEMBERS, Prediction, label_text_loader, linear_head, predict_with_head
from graftkit.tasks.model import GraftModel

POSITIVE = "good great lovely wonderful fine".split()
NEGATIVE = "bad awful terrible boring dull".split()


# --- data for each label kind, per modality ------------------------------------------------------


def _image_manifest(root: Path, label_of) -> Path:
    """A CSV manifest over the tiny 3-class images, with the label `label_of(class_index, i)`."""
    make_image_folder(root / "img", per_class=8)
    path = root / "manifest.csv"
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "label"])
        for c, name in enumerate(("cat", "dog", "fox")):
            for i in range(8):
                w.writerow([f"img/{name}/{name}_{i}.png", label_of(c, i)])
    return path


def _texts(path: Path, rows: list[dict[str, Any]]) -> Path:
    with open(path, "w") as f:
        for r in rows:
            f.write(json.dumps(r) + "\n")
    return path


def _sentences(n: int = 32) -> list[tuple[str, bool]]:
    rng = random.Random(0)
    return [(f"the film was {rng.choice(POSITIVE if i % 2 == 0 else NEGATIVE)}", i % 2 == 0) for i in range(n)]


def image_data(kind: LabelKind, root: Path) -> Path:
    if kind is LabelKind.CLASS:
        return make_image_folder(root / "folder", per_class=8)
    if kind is LabelKind.CLASSES:
        return _image_manifest(root, lambda c, i: "|".join(n for n, on in (("warm", c == 0), ("striped", c % 2 == 1)) if on) or "none")
    if kind is LabelKind.VALUE:
        return _image_manifest(root, lambda c, i: f"{c * 1.5 - 1.5:.2f}")
    if kind is LabelKind.RECORD:  # multitask: a class, several labels and a number per image, some cells empty
        make_image_folder(root / "img", per_class=8)
        path = root / "multi.csv"
        with open(path, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["path", "animal", "tags", "size"])
            for c, name in enumerate(("cat", "dog", "fox")):
                for i in range(8):
                    tags = "|".join(n for n, on in (("warm", c == 0), ("striped", c % 2 == 1)) if on) or "plain"
                    w.writerow([f"img/{name}/{name}_{i}.png", name, "" if i == 3 else tags, "" if i == 5 else f"{c * 1.5 - 1.5:.2f}"])
        return path
    if kind is LabelKind.BOXES:
        from tests._detection_data import make_scenes, write_coco

        return write_coco(root / "boxes", make_scenes(root / "boxes", n=10))
    raise NotImplementedError(kind)


def text_data(kind: LabelKind, root: Path) -> Path:
    rows = _sentences()
    if kind is LabelKind.CLASS:
        return _texts(root / "t.jsonl", [{"text": t, "label": "pos" if p else "neg"} for t, p in rows])
    if kind is LabelKind.CLASSES:
        return _texts(root / "t.jsonl", [{"text": t, "labels": ["pos", "film"] if p else ["film"]} for t, p in rows])
    if kind is LabelKind.VALUE:
        return _texts(root / "t.jsonl", [{"text": t, "score": 2.0 if p else -2.0} for t, p in rows])
    if kind is LabelKind.SEQUENCE:
        numbers = "one two three four five".split()
        return _texts(root / "t.jsonl", [{"source": f"translate english french {numbers[i % 5]}", "target": f"{numbers[i % 5]}"} for i in range(24)])
    if kind is LabelKind.CONTINUATION:
        return _texts(root / "t.jsonl", [{"prompt": "the film was", "response": "very good"} for _ in range(16)])
    if kind is LabelKind.RECORD:
        return _texts(root / "t.jsonl", [{"text": t, "sentiment": "pos" if p else "neg", "tags": (["pos", "film"] if p else ["film"]) if i % 4 else None,
                                          "score": (2.0 if p else -2.0) if i % 5 else ""} for i, (t, p) in enumerate(rows)])  # fmt: skip
    raise NotImplementedError(kind)


def audio_data(kind: LabelKind, root: Path) -> Path:
    from tests.audio_data import PITCHES, make_audio_folder, write_manifest

    if kind is LabelKind.SEQUENCE:  # transcripts (ctc, asr)
        from tests.audio_data import make_ctc_manifest

        return make_ctc_manifest(root / "speech")
    folder = make_audio_folder(root / "clips", per_class=8)
    if kind is LabelKind.CLASS:
        return folder
    names = list(PITCHES)
    label = {
        LabelKind.CLASSES: lambda c: "|".join(n for n, on in (("low", c == 0), ("not_high", c < 2)) if on) or "none",
        LabelKind.VALUE: lambda c: f"{c * 1.5 - 1.5:.2f}",
    }[kind]
    rows = [{"path": str(f.relative_to(folder)), "label": label(names.index(f.parent.name))} for f in sorted(folder.rglob("*.wav"))]
    return write_manifest(folder / "manifest.csv", rows)


def _text_model(task_cls, dirs: dict[str, Path]) -> str:
    head = task_cls.backbone_head
    return f"hf:{dirs['t5'] if head == 'seq2seq' else dirs['gpt2'] if head == 'causal-lm' else dirs['bert']}"


TASK_ARGUMENT = {  # tasks whose --task value names more than the task: multitask names its parts (the recipes' columns)
    ("multitask", "image"): "animal:classification,tags:multilabel,size:regression",
    ("multitask", "text"): "sentiment:classification,tags:multilabel,score:regression",
}


CASES = [(name, modality) for name in task_names() for modality in get_task(name).modalities]


def test_every_task_has_every_member():
    for name in task_names():
        cls = get_task(name)
        missing = [m for m in TASK_MEMBERS if not hasattr(cls, m)]
        assert not missing, f"{name} lacks {missing}"
        assert cls.default_monitor in cls.metrics and cls.train_metric
        assert all(isinstance(m, Metric) for m in cls.metrics.values())
        assert isinstance(cls.label_kind, LabelKind) and cls.modalities


@pytest.mark.parametrize("name,modality", CASES, ids=[f"{n}-{m}" for n, m in CASES])
def test_task_trains_saves_reloads_predicts_and_exports(name, modality, tmp_path, tiny_bert_dir, tiny_gpt2_dir, tiny_t5_dir, tiny_wav2vec2_dir):
    task_cls = get_task(name)
    if modality == "image":
        data, model = image_data(task_cls.label_kind, tmp_path), TINY_MODEL
        sample = str(next((tmp_path).rglob("*.png")))
    elif modality == "audio":
        data, model = audio_data(task_cls.label_kind, tmp_path), f"hf:{tiny_wav2vec2_dir}"
        if task_cls.backbone_head == "seq2seq":  # asr: an encoder-decoder (a tiny random Whisper)
            from tests.audio_data import make_tiny_whisper

            model = f"hf:{make_tiny_whisper(tmp_path / 'whisper')}"
        sample = str(sorted(tmp_path.rglob("*.wav"))[0])
    else:
        data, model = text_data(task_cls.label_kind, tmp_path), _text_model(task_cls, {"bert": tiny_bert_dir, "gpt2": tiny_gpt2_dir, "t5": tiny_t5_dir})
        sample = "the film was good"
    extra = {"num_beams": 1, "max_new_tokens": 8 if modality == "audio" else 3} if task_cls.backbone_head != "features" else {}  # asr refuses transcripts longer
    task = TASK_ARGUMENT.get((name, modality), name)
    run = graftkit.fit(data, model=model, task=task, out="runs/contract", epochs=1, batch_size=8, offline=True, **extra)

    # The run directory names the task, and the task rebuilds from it.
    meta = json.loads((run.dir / "graft.json").read_text())
    assert meta["task"]["name"] == name and meta["status"] == "done"
    rebuilt = task_from_dict(meta["task"])
    assert type(rebuilt) is task_cls and rebuilt.to_dict() == meta["task"]
    assert any(k in run.metrics["val"] for k in task_cls.headline) or "loss" in run.metrics["val"]

    # Reloaded from the folder alone, twice: the same prediction (deterministic, offline).
    first = graftkit.load(run.dir).predict([sample], top_k=2)[0]
    again = graftkit.load(run.dir).predict([sample], top_k=2)[0]
    assert isinstance(first, Prediction) and first == again
    if rebuilt.classes and task_cls.label_kind is LabelKind.CLASS:
        assert first.label in rebuilt.classes

    # Export where the task is one graph; otherwise a clear ConfigError.
    try:
        rebuilt.export_spec()
    except ConfigError:
        with pytest.raises(ConfigError, match="not a single graph"):
            export(run.dir)
        return
    result = export(run.dir, "onnx")
    assert result.parity["onnx"]["passed"] and (run.dir / "export" / "model.onnx").is_file()
    onnx_pred = graftkit.load(run.dir, backend="onnx").predict([sample], top_k=2)[0]
    fp32 = graftkit.load(run.dir, precision="fp32").predict([sample], top_k=2)[0]  # the exported graph's precision (auto may pick bf16)
    if task_cls.label_kind is LabelKind.VALUE:  # a value: equal up to float32 noise (a label near 0 prints its noise digits)
        assert float(onnx_pred.label) == pytest.approx(float(fp32.label), abs=1e-4)
    else:
        assert onnx_pred.label == fp32.label


# --- a toy task from outside the package -------------------------------------------------------


class HingeTask:
    """Single-label classification trained with the multi-class hinge loss: a task the package
    has never seen, built only from the public helpers of `graftkit.tasks.base`."""

    name = "toy-hinge"
    label_kind = LabelKind.CLASS
    modalities = ("image",)
    backbone_head = "features"
    default_strategy = "linear-probe"
    train_metric = "accuracy"
    metrics = {"accuracy": Metric("accuracy", True), "loss": Metric("loss", False)}
    default_monitor = "accuracy"
    headline = ("accuracy",)

    def __init__(self, classes: list[str]) -> None:
        self.classes = list(classes)
        self.num_classes = len(self.classes)

    @classmethod
    def from_data(cls, classes: list[str], train_labels: list[Any], settings: TaskSettings) -> "HingeTask":
        return cls(classes)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "HingeTask":
        return cls(d["classes"])

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "classes": self.classes}

    def check_strategy(self, kind: str) -> None:
        return None

    def build_model(self, backbone, dropout: float = 0.0):
        return GraftModel(backbone, linear_head(backbone.num_features, self.num_classes, dropout))

    def head_spec(self, num_features: int, dropout: float) -> dict[str, Any]:
        return {"type": "linear", "in_features": num_features, "out_features": self.num_classes, "dropout": dropout}

    def build_head(self, num_features: int, dropout: float = 0.0):
        return linear_head(num_features, self.num_classes, dropout)

    def encode(self, labels: list[str]) -> torch.Tensor:
        return torch.tensor([self.classes.index(label) for label in labels])

    def text_loader(self, samples, tokenizer, *, max_length, batch_size, shuffle, seed=0):
        return label_text_loader(self, samples, tokenizer, max_length=max_length, batch_size=batch_size, shuffle=shuffle, seed=seed)

    def loss(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return F.multi_margin_loss(logits.float(), targets)

    def batch_score(self, logits, targets):
        return (logits.argmax(1) == targets).sum(), len(targets)

    def collect(self, logits, targets):
        return self.activate(logits), targets

    def activate(self, logits: torch.Tensor) -> torch.Tensor:
        return torch.softmax(logits.float(), dim=1)

    def epoch_metrics(self, rows: np.ndarray, targets: np.ndarray) -> dict[str, float]:
        return {"accuracy": float((rows.argmax(1) == targets).mean()) if len(targets) else 0.0}

    def full_metrics(self, rows, targets, loss=None):
        return {**self.epoch_metrics(rows, targets), "loss": loss, "n": int(len(targets))}

    def finish(self, outputs, backbone, samples, batch_size):
        return {split: self.full_metrics(*out) for split, out in outputs.items()}

    def calibrate(self, outputs, final, out_dir):
        return None

    def decode(self, rows: torch.Tensor, top_k: int = 1):
        scores, idx = rows.topk(min(top_k, self.num_classes), dim=1)
        out = []
        for s, i in zip(scores.tolist(), idx.tolist()):
            top = [(self.classes[j], v) for v, j in zip(s, i)]
            out.append((top[0][0], top[0][1], top))
        return out

    def predict(self, source, inputs: Sequence[Any], names: list[str], top_k: int, batch_size: int):
        return predict_with_head(self, source, inputs, names, top_k, batch_size)

    def card(self) -> dict[str, Any]:
        return {"does": "assigns one class (trained with a hinge loss)", "caveats": []}

    def export_spec(self) -> dict[str, Any]:
        return {"activation": "softmax"}

    def export_agreement(self, reference, exported, precision):
        return float((reference.argmax(1) == exported.argmax(1)).float().mean()) if len(reference) else 1.0, "top-1 class"


@pytest.fixture
def toy_task():
    register_task(HingeTask)
    yield HingeTask
    unregister_task(HingeTask.name)


def test_a_task_registered_outside_the_package_trains_predicts_and_reloads(toy_task, tiny_images):
    assert isinstance(HingeTask(["a"]), Task)  # structurally a Task: nothing inherited
    run = graftkit.fit(tiny_images, model=TINY_MODEL, task="toy-hinge", out="runs/toy", epochs=15, lr=0.05, batch_size=8)
    assert json.loads((run.dir / "graft.json").read_text())["task"]["name"] == "toy-hinge"
    assert run.metrics["val"]["accuracy"] >= 0.8  # chance is 1/3; the tiny images are separable
    files = sorted(str(p) for p in tiny_images.rglob("*.png"))
    preds = graftkit.load(run.dir).predict(files)
    truth = [Path(f).parent.name for f in files]
    assert np.mean([p.label == t for p, t in zip(preds, truth)]) >= 0.8


def test_unknown_task_names_the_closest_ones():
    with pytest.raises(ConfigError, match="did you mean 'classification'"):
        graftkit.fit(".", model=TINY_MODEL, task="clasification")
    with pytest.raises(ConfigError, match="lacks"):
        register_task(type("Broken", (), {"name": "broken"}))


def test_task_metric_direction_picks_the_best_epoch():
    reg = get_task("regression")
    assert reg.metrics["mae"].better(0.5, 1.0) and not reg.metrics["r2"].better(0.5, 1.0)
    assert get_task("classification").metrics["accuracy"].better(0.9, 0.8)

"""Multitask learning: one backbone, one head per task, masked missing labels, loss weighting."""

from __future__ import annotations

import csv
import json
import random
from pathlib import Path

import numpy as np
import pytest
import torch

import graftkit
from graftkit.errors import ConfigError, DataError
from graftkit.tasks import TaskSettings, get_task
from graftkit.tasks.multitask import MultiTask, parse_task_spec
from tests.conftest import TINY_MODEL, make_image_folder

SPEC = "animal:classification,warm:classification,size:regression"


def _image_manifest(root: Path, *, missing_every: int = 0) -> Path:
    """The tiny 3-class images with three label columns: the class, a derived binary class and a
    number; with `missing_every`, every n-th row leaves `warm` and `size` empty."""
    make_image_folder(root / "img", per_class=10)
    path = root / "multi.csv"
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "animal", "warm", "size"])
        for c, name in enumerate(("cat", "dog", "fox")):
            for i in range(10):
                gap = missing_every and (c * 10 + i) % missing_every == 0
                w.writerow([f"img/{name}/{name}_{i}.png", name, "" if gap else ("yes" if c == 0 else "no"), "" if gap else f"{c * 2.0 + 0.1 * i:.2f}"])
    return path


def _settings(spec: str = SPEC) -> TaskSettings:
    return TaskSettings(task=spec)


def _labels(n: int = 12) -> list[dict]:
    return [{"animal": ["cat", "dog", "fox"][i % 3], "warm": "" if i % 4 == 0 else ("yes" if i % 3 == 0 else "no"), "size": str(float(i))} for i in range(n)]


def test_masked_samples_take_no_part_in_a_task_loss_or_metrics_and_are_not_dropped():
    labels = _labels()
    task = MultiTask.from_data([], labels, _settings())
    targets = task.encode(labels)
    warm = task.parts[1]
    masked = torch.tensor([lab["warm"] == "" for lab in labels])
    assert torch.isnan(targets[masked][:, warm.target]).all() and not torch.isnan(targets[:, task.parts[0].target]).any()
    logits = torch.randn(len(labels), task.parts[-1].out.stop)
    losses = task.task_losses(logits, targets)
    kept = ~masked
    expected = warm.task.loss(logits[kept][:, warm.out], targets[kept][:, warm.target][:, 0].long())
    assert torch.allclose(losses[1], expected)  # the mean over the labelled samples only
    moved = logits.clone()
    moved[masked, warm.out.start] += 50.0  # a masked sample's outputs for `warm` do not change its loss
    assert torch.allclose(task.task_losses(moved, targets)[1], losses[1])
    moved[masked, task.parts[0].out.start] += 50.0  # ... while the same samples count for `animal`
    assert not torch.allclose(task.task_losses(moved, targets)[0], losses[0])
    rows, t = task.collect(logits, targets)
    metrics = task.full_metrics(rows.numpy(), t.numpy(), loss=1.0)
    assert metrics["tasks"]["warm"]["n"] == int(kept.sum()) == 9 and metrics["tasks"]["animal"]["n"] == 12
    assert metrics["n"] == 12


def test_a_multitask_image_run_trains_every_head_keeps_masked_rows_and_predicts_each_task(tmp_path):
    data = _image_manifest(tmp_path, missing_every=3)
    run = graftkit.fit(data, model=TINY_MODEL, task=SPEC, out=tmp_path / "mt", strategy="finetune", epochs=3, batch_size=8,
                       num_workers=0, lr=3e-3)  # fmt: skip
    meta = json.loads((run.dir / "graft.json").read_text())
    assert meta["task"]["name"] == "multitask" and [p["name"] for p in meta["task"]["tasks"]] == ["animal", "warm", "size"]
    totals = meta["data"]["totals"]
    assert totals["train"] + totals["val"] == 30  # rows missing some labels are kept
    val = run.metrics["val"]
    assert val["tasks"]["animal"]["n"] == totals["val"] and val["tasks"]["warm"]["n"] < totals["val"]
    assert {"score", "animal/accuracy", "warm/accuracy", "size/mae"} <= set(val)
    html = (run.dir / "report.html").read_text()
    assert "animal/accuracy" in html and "Per task (val)" in html
    preds = graftkit.load(run.dir).predict([str(next((tmp_path / "img").rglob("*.png")))])
    assert set(preds[0].tasks) == {"animal", "warm", "size"} and preds[0].tasks["animal"]["label"] in ("cat", "dog", "fox")
    float(preds[0].tasks["size"]["label"])
    assert preds[0].to_dict()["tasks"]["warm"]["label"] in ("yes", "no")

    # Export: one ONNX output per task, and the ONNX predictor decodes them as PyTorch does.
    import io

    import onnx

    from graftkit.deploy.batch import write_predictions
    from graftkit.deploy.export import export

    assert export(run.dir, "onnx").parity["onnx"]["passed"]
    assert [o.name for o in onnx.load(str(run.dir / "export" / "model.onnx")).graph.output] == ["animal", "warm", "size"]
    image = str(next((tmp_path / "img").rglob("*.png")))
    onnx_pred = graftkit.load(run.dir, backend="onnx").predict([image])[0]
    assert onnx_pred.tasks["animal"]["label"] == preds[0].tasks["animal"]["label"]
    buffer = io.StringIO()
    write_predictions(iter(preds), "csv", 1, buffer)
    header, row = buffer.getvalue().splitlines()[:2]
    assert header == "input,label,score,animal,warm,size" and row.endswith(",".join(preds[0].fields().values()))

    # graft evaluate scores each task on its labelled rows.
    from graftkit.deploy.evaluate import evaluate

    scored = evaluate(run.dir, data)["test"]
    assert scored["tasks"]["animal"]["n"] == 30 and scored["tasks"]["warm"]["n"] == 20

    # Serve: each prediction carries every task's label and score.
    from fastapi.testclient import TestClient

    from graftkit.deploy.serve import create_app

    with TestClient(create_app(run.dir, max_wait_ms=5)) as client:
        body = client.post("/predict", files=[("file", ("a.png", Path(image).read_bytes(), "image/png"))]).json()
    served = body["predictions"][0]["tasks"]
    assert set(served) == {"animal", "warm", "size"} and served["animal"]["label"] == preds[0].tasks["animal"]["label"]


def test_task_spec_errors_name_the_problem():
    with pytest.raises(ConfigError, match="task names clash: 'topic' and 'Topic' name the same column"):
        parse_task_spec("topic:classification,Topic:regression")
    with pytest.raises(ConfigError, match="unknown task kind 'clasification' \\(did you mean 'classification'\\?\\)"):
        parse_task_spec("topic:clasification,score:regression")
    with pytest.raises(ConfigError, match="'topic' is not NAME:KIND"):
        parse_task_spec("topic,score:regression")
    with pytest.raises(ConfigError, match="clashes with a reserved name"):
        parse_task_spec("text:classification,score:regression")
    with pytest.raises(ConfigError, match="needs at least two tasks"):
        parse_task_spec("score:regression")
    assert get_task(SPEC) is MultiTask


def test_data_errors_name_the_column_and_the_task(tmp_path):
    with pytest.raises(DataError, match="column 'colour' named in --task does not exist; the label columns are 'animal', 'warm', 'size'"):
        MultiTask.from_data([], _labels(), _settings("animal:classification,colour:classification"))
    empty = [{**lab, "size": ""} for lab in _labels()]
    with pytest.raises(DataError, match="task 'size': no training sample has a label in column 'size'"):
        MultiTask.from_data([], empty, _settings())
    words = [{**lab, "size": "big"} for lab in _labels()]
    with pytest.raises(DataError, match="column 'size' \\(regression\\): 12 training label\\(s\\) are values that are not numbers"):
        MultiTask.from_data([], words, _settings())
    with pytest.raises(ConfigError, match="--task multitask needs its tasks"):
        MultiTask.from_data([], _labels(), _settings("multitask"))
    with pytest.raises(ConfigError, match="unknown task kind"):
        graftkit.fit(_image_manifest(tmp_path), model=TINY_MODEL, task="animal:classifier,size:regression")
    with pytest.raises(DataError, match="a folder gives each image one class .*several label columns \\(for a multitask"):
        graftkit.fit(make_image_folder(tmp_path / "folder"), model=TINY_MODEL, task=SPEC)


# --- loss weighting --------------------------------------------------------------------------


class _Backbone(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.body = torch.nn.Linear(4, 5)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.body(x))


def _tiny_model(task: MultiTask):
    from graftkit.tasks.model import GraftModel

    return GraftModel(_Backbone(), task.build_head(5))


def test_uncertainty_weighting_turns_the_equal_sum_into_kendalls_loss():
    from graftkit.training.multitask import UncertaintyWeighting
    from graftkit.training.objective import Objective

    labels = _labels()
    task = MultiTask.from_data([], labels, _settings())
    model = _tiny_model(task)
    with torch.no_grad():
        model.head.log_vars.copy_(torch.tensor([0.5, -0.3, 1.0]))
    x, y = torch.randn(len(labels), 4), task.encode(labels)
    loss, logits = Objective(task, [UncertaintyWeighting(task)])(model, x, y)
    per_task = torch.stack(task.task_losses(logits, y))
    s = model.head.log_vars
    assert torch.allclose(loss, (per_task / (2 * s.exp()) + s / 2).sum())
    loss.backward()
    assert model.head.log_vars.grad is not None and model.head.log_vars.grad.abs().sum() > 0  # the log-variances train


def test_pcgrad_surrogate_gives_the_backbone_exactly_the_projected_gradient():
    from graftkit.training.multitask import PCGrad, project_conflicting
    from graftkit.training.objective import Objective

    assert torch.allclose(project_conflicting([torch.tensor([1.0, 0.0]), torch.tensor([-1.0, 1.0])], torch.Generator()), torch.tensor([0.5, 1.5]))
    labels = _labels()
    task = MultiTask.from_data([], labels, _settings("animal:classification,size:regression"))
    model = _tiny_model(task)
    x, y = torch.randn(len(labels), 4), task.encode(labels)
    shared = list(model.backbone.parameters())
    losses = task.task_losses(model(x), y)
    grads = [torch.cat([g.reshape(-1) for g in torch.autograd.grad(l, shared, retain_graph=True)]) for l in losses]
    expected = project_conflicting(grads, torch.Generator())  # two tasks: the order of the others does not matter
    head_expected = torch.autograd.grad(sum(losses), [model.head.heads["animal"][0].weight])[0]
    loss, _ = Objective(task, [PCGrad(task)])(model, x, y)
    loss.backward()
    got = torch.cat([p.grad.reshape(-1) for p in shared])
    assert torch.allclose(got, expected, atol=1e-6)
    assert torch.allclose(model.head.heads["animal"][0].weight.grad, head_expected, atol=1e-6)  # the heads keep their own gradients


def test_pcgrad_rep_projects_the_feature_gradients_and_carries_them_into_the_backbone():
    from graftkit.training.multitask import PCGradRep, project_conflicting
    from graftkit.training.objective import Objective

    labels = _labels()
    task = MultiTask.from_data([], labels, _settings("animal:classification,size:regression"))
    for seed in range(50):  # the first draw whose two tasks' feature gradients conflict
        torch.manual_seed(seed)
        model = _tiny_model(task)
        x, y = torch.randn(len(labels), 4), task.encode(labels)
        z = model.backbone.forward_features(x)
        losses = task.task_losses(model.head(z), y)
        rep = [torch.autograd.grad(l, z, retain_graph=True)[0].reshape(-1) for l in losses]
        if torch.dot(rep[0], rep[1]) < 0:
            break
    shared = list(model.backbone.parameters())
    corrected = project_conflicting(rep, torch.Generator()).view_as(z)
    expected = torch.cat([g.reshape(-1) for g in torch.autograd.grad(z, shared, grad_outputs=corrected, retain_graph=True)])
    head_expected = torch.autograd.grad(sum(losses), [model.head.heads["animal"][0].weight], retain_graph=True)[0]
    loss, _ = Objective(task, [PCGradRep(task)])(model, x, y)
    loss.backward()
    got = torch.cat([p.grad.reshape(-1) for p in shared])
    assert torch.allclose(got, expected, atol=1e-6)  # the backbone sees J^T of the projected feature gradient
    equal = torch.cat([g.reshape(-1) for g in torch.autograd.grad(z, shared, grad_outputs=sum(r.view_as(z) for r in rep))])
    assert torch.dot(rep[0], rep[1]) < 0 and not torch.allclose(got, equal, atol=1e-4)  # these tasks conflict: not the plain sum
    assert torch.allclose(model.head.heads["animal"][0].weight.grad, head_expected, atol=1e-6)  # the heads keep their own gradients


@pytest.mark.parametrize("weighting", ["uncertainty", "pcgrad", "pcgrad-rep"])
def test_weighted_multitask_runs_train_and_save_their_weights(weighting, tmp_path):
    from safetensors.torch import load_file

    data = _image_manifest(tmp_path, missing_every=4)
    run = graftkit.fit(data, model=TINY_MODEL, task=SPEC, out=tmp_path / weighting, strategy="finetune", epochs=1, batch_size=8,
                       num_workers=0, task_weighting=weighting)  # fmt: skip
    assert json.loads((run.dir / "graft.json").read_text())["config"]["task_weighting"] == weighting
    log_vars = load_file(str(run.dir / "model.safetensors"))["head.log_vars"]
    assert (log_vars.abs().sum() > 0) == (weighting == "uncertainty")  # learned, and saved with the model
    assert np.isfinite(run.metrics["val"]["score"])


def test_weighting_errors_name_the_fix(tmp_path):
    data = _image_manifest(tmp_path)
    with pytest.raises(ConfigError, match="--task-weighting pcgrad projects the tasks' gradients on the shared backbone"):
        graftkit.fit(data, model=TINY_MODEL, task=SPEC, task_weighting="pcgrad")
    with pytest.raises(ConfigError, match="--task-weighting uncertainty weighs the tasks of a multitask run"):
        graftkit.fit(data, model=TINY_MODEL, task_weighting="uncertainty")
    with pytest.raises(ConfigError, match="--task-weighting 'gradnorm' is not one of equal, uncertainty, pcgrad"):
        graftkit.fit(data, model=TINY_MODEL, task=SPEC, task_weighting="gradnorm")


def test_uncertainty_weighting_trains_the_probe_head_too(tmp_path):
    from safetensors.torch import load_file

    run = graftkit.fit(_image_manifest(tmp_path), model=TINY_MODEL, task=SPEC, out=tmp_path / "probe", epochs=3, batch_size=8,
                       num_workers=0, task_weighting="uncertainty")  # fmt: skip
    assert load_file(str(run.dir / "model.safetensors"))["head.log_vars"].abs().sum() > 0


def test_graft_train_on_a_text_manifest_with_three_label_columns(tmp_path, tiny_bert_dir, capsys):
    from graftkit.cli import main

    rng = random.Random(0)
    rows = []
    for i in range(40):
        good = i % 2 == 0
        topic = "film" if i % 3 else "book"
        rows.append({"text": f"the {topic} was {rng.choice(['good', 'great', 'lovely'] if good else ['bad', 'awful', 'dull'])}",
                     "topic": topic, "sentiment": "" if i % 7 == 0 else ("pos" if good else "neg"), "score": 3.0 if good else -3.0})
    data = tmp_path / "reviews.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "mt"
    code = main(["train", str(data), "--task", "topic:classification,sentiment:classification,score:regression", "--model", f"hf:{tiny_bert_dir}",
                 "--out", str(out), "--epochs", "20", "--batch-size", "8", "--lr", "0.05", "--offline"])  # fmt: skip
    assert code == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["task"] == "multitask" and metrics["val"]["tasks"]["sentiment"]["n"] < metrics["val"]["n"]
    assert metrics["val"]["sentiment/accuracy"] >= 0.75  # chance 0.5: the sentiment words decide it
    capsys.readouterr()
    assert main(["predict", str(out), "the film was great", "--format", "json"]) == 0
    line = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert set(line["tasks"]) == {"topic", "sentiment", "score"} and line["tasks"]["sentiment"]["label"] == "pos"


def test_pcgrad_fine_tuning_with_the_lp_ft_head_warm_up(tmp_path, capsys):
    # The head warm-up (text fine-tuning's default, `--head-init probe`) is a linear probe of the heads
    # alone; it must not carry pcgrad (which a linear-probe config refuses) and the fine-tuning must still use it.
    data = _image_manifest(tmp_path, missing_every=4)
    run = graftkit.fit(data, model=TINY_MODEL, task=SPEC, out=tmp_path / "lpft", strategy="finetune", head_init="probe", epochs=1,
                       batch_size=8, num_workers=0, task_weighting="pcgrad")  # fmt: skip
    assert json.loads((run.dir / "graft.json").read_text())["config"]["task_weighting"] == "pcgrad"
    out = capsys.readouterr()
    assert "head warm-up" in out.out + out.err  # the warm-up ran
    assert np.isfinite(run.metrics["val"]["score"])

"""graft export: ONNX / TorchScript / int8 beside the run, parity with PyTorch, the ONNX predict backend."""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

import graftkit
from graftkit.cli import main
from graftkit.deploy.export import ExportParityError, export
from graftkit.deploy.runtime import resolve_backend
from graftkit.errors import ConfigError, RunDirError
from tests._deploy_runs import copy_run, image_run, text_run


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> Path:
    """The tiny image run, exported to ONNX fp32 + int8 once for the module."""
    run = copy_run(image_run(tmp_path_factory), tmp_path_factory.mktemp("export") / "run")
    export(run, "onnx", quantize="int8")
    return run


def _read(run: Path, name: str) -> dict:
    return json.loads((run / "export" / name).read_text())


def test_onnx_export_writes_model_preprocess_and_parity(exported):
    parity = _read(exported, "parity.json")["onnx"]
    assert parity["passed"] and parity["top1_agreement"] == 1.0 and parity["max_abs_logit_diff"] < 1e-4
    assert parity["inputs"].startswith("validation images from split.json") and parity["real_inputs"]
    spec = _read(exported, "preprocess.json")
    assert spec["classes"] == ["cat", "dog", "fox"] and spec["inputs"]["pixel_values"]["shape"][0] == "batch"
    assert spec["image"]["center_crop"] == spec["inputs"]["pixel_values"]["shape"][2] and len(spec["image"]["mean"]) == 3
    assert spec["output"]["activation"] == "softmax"
    # recorded in the run too, and the model card mentions the export
    metrics = json.loads((exported / "metrics.json").read_text())
    assert metrics["export"]["onnx"]["passed"] and "onnx-int8" in metrics["export"]
    assert "## Export" in (exported / "MODEL_CARD.md").read_text()


def test_onnx_batch_axis_is_dynamic(exported):
    from graftkit.deploy.runtime import OnnxRuntimeModel

    model = OnnxRuntimeModel(exported)
    size = _read(exported, "preprocess.json")["inputs"]["pixel_values"]["shape"][2]
    for n in (1, 5):
        assert model({"pixel_values": torch.randn(n, 3, size, size)}).shape == (n, 3)


def test_int8_parity_accuracy_and_speed_are_measured(exported):
    rec = _read(exported, "parity.json")["onnx-int8"]
    assert rec["passed"] and rec["quantization"]["method"] == "static" and rec["calibration"].startswith("training images")
    val = rec["validation"]
    assert val["metric"] == "accuracy" and set(val) >= {"torch", "onnx", "onnx-int8", "change", "n"}
    assert val["change"] == pytest.approx(val["onnx-int8"]["accuracy"] - val["onnx"]["accuracy"])
    assert all(v > 0 for v in rec["latency_ms_single"].values()) and rec["speedup_vs_fp32"] > 0
    assert (exported / "export" / "model.int8.onnx").stat().st_size < (exported / "export" / "model.onnx").stat().st_size
    search = rec["quantization"]["search"]
    assert search["tries"][0]["fp32_convolutions"] == 0 and search["on"].endswith("other training images")
    assert "adoption" in rec and isinstance(rec["adopted"], bool)


@pytest.mark.parametrize("backend", ["onnx", "onnx-int8"])
def test_onnx_backends_predict_like_torch(exported, tmp_path_factory, backend):
    files = sorted((tmp_path_factory.getbasetemp() / "deploy-runs" / "images").glob("*/*.png"))[::3]
    ref = graftkit.load(exported, precision="fp32").predict_proba(files)  # the exported graph is fp32 (auto may pick bf16 on this CPU)
    got = graftkit.load(exported, backend=backend).predict_proba(files)
    if backend == "onnx":
        torch.testing.assert_close(got, ref, atol=1e-4, rtol=1e-4)
    else:
        assert (got.argmax(1) == ref.argmax(1)).float().mean() >= 0.8


def test_cli_predict_onnx_from_stdin_and_manifests(exported, tmp_path_factory, tmp_path, monkeypatch, capsys):
    images = tmp_path_factory.getbasetemp() / "deploy-runs" / "images"
    files = sorted(images.glob("*/*.png"))[:4]
    monkeypatch.setattr("sys.stdin", io.StringIO("\n".join(map(str, files)) + "\n"))
    assert main(["predict", str(exported), "-", "--backend", "onnx", "--format", "json", "--top-k", "2"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["input"] for r in rows] == [str(f) for f in files] and len(rows[0]["top_k"]) == 2

    (tmp_path / "m.jsonl").write_text("".join(json.dumps({"image": str(f)}) + "\n" for f in files[:2]))
    shutil.copytree(images, tmp_path / "cat_dog_fox")
    (tmp_path / "m.csv").write_text("path\n" + "".join(f"cat_dog_fox/{f.relative_to(images)}\n" for f in files))
    assert main(["predict", str(exported), str(tmp_path / "m.csv"), str(tmp_path / "m.jsonl"), "--backend", "onnx", "--format", "csv"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("input,label,score") and len(lines) == 1 + 4 + 2


def test_manifest_without_the_column_names_it(exported, tmp_path, capsys):
    (tmp_path / "m.csv").write_text("filename_typo\nx.png\n")
    assert main(["predict", str(exported), str(tmp_path / "m.csv")]) == 2
    err = capsys.readouterr().err
    assert "'path'" in err and "filename_typo" in err and "--column" in err


def test_missing_or_stale_export_names_the_fix(exported, tmp_path):
    bare = copy_run(exported, tmp_path / "bare")
    shutil.rmtree(bare / "export")
    with pytest.raises(RunDirError, match="graft export .* --format onnx"):
        graftkit.load(bare, backend="onnx")
    stale = copy_run(exported, tmp_path / "stale")
    from safetensors.torch import load_file, save_file

    state = load_file(str(stale / "model.safetensors"))
    key = next(k for k in state if k.startswith("head."))
    state[key] = state[key] + 1
    save_file(state, str(stale / "model.safetensors"))
    with pytest.raises(RunDirError, match="exported from other weights"):
        graftkit.load(stale, backend="onnx")


def test_torchscript_export_on_synthetic_inputs_when_data_is_gone(exported, tmp_path):
    run = copy_run(exported, tmp_path / "moved")
    split = json.loads((run / "split.json").read_text())
    split["root"] = str(tmp_path / "no-longer-here")
    (run / "split.json").write_text(json.dumps(split))
    result = export(run, "torchscript")
    rec = result.parity["torchscript"]
    assert rec["passed"] and rec["inputs"].startswith("synthetic images") and not rec["real_inputs"]
    assert rec["max_abs_logit_diff"] < 1e-4 and (run / "export" / "model.pt").is_file()
    assert "onnx" in _read(run, "parity.json")  # earlier records are kept


def test_parity_failure_fails_loudly_and_removes_the_file(exported, tmp_path, monkeypatch):
    run = copy_run(exported, tmp_path / "broken")
    import graftkit.deploy.export as ex

    real = ex._session_runner

    def shuffled(session):
        run_ = real(session)
        return lambda batch: run_(batch).roll(1, dims=1)  # a "wrong" exporter: classes shifted

    monkeypatch.setattr(ex, "_session_runner", shuffled)
    with pytest.raises(ExportParityError, match="top-1 class agreement"):
        export(run, "onnx")
    assert not (run / "export" / "model.onnx").exists()
    assert _read(run, "parity.json")["onnx"]["passed"] is False


@pytest.mark.parametrize("wrong", [lambda x: 1.5 * x, lambda x: x + 0.5], ids=["scaled", "shifted"])
def test_fp32_parity_fails_on_logits_that_keep_every_top_class(exported, tmp_path, monkeypatch, wrong):
    """Top-1 agreement alone would pass these: every argmax is unchanged."""
    run = copy_run(exported, tmp_path / "broken")
    import graftkit.deploy.export as ex

    real = ex._session_runner
    monkeypatch.setattr(ex, "_session_runner", lambda session: (lambda batch: wrong(real(session)(batch))))
    with pytest.raises(ExportParityError, match=r"max \|Δ logits\| [0-9.e-]+ > tolerance"):
        export(run, "onnx")
    rec = _read(run, "parity.json")["onnx"]
    assert rec["agreement"] == 1.0 and rec["logits_within_tolerance"] is False and rec["passed"] is False


def test_parity_on_no_inputs_is_an_error(exported, tmp_path, monkeypatch):
    run = copy_run(exported, tmp_path / "empty")
    import graftkit.deploy.export as ex
    from graftkit.deploy.samples import Samples

    monkeypatch.setattr(ex, "validation_samples", lambda *a, **k: Samples([], None, "no inputs at all"))
    monkeypatch.setattr(ex, "model_batches", lambda *a, **k: iter([]))
    monkeypatch.setattr(ex, "_torch_logits", lambda sig, batches, engine: torch.zeros(0, 3))
    with pytest.raises(ExportParityError, match="no inputs to check the export on .no inputs at all.: parity on nothing proves nothing"):
        export(run, "onnx")


def test_the_int8_threshold_is_measured_per_model():
    """Wide margins demand near-total agreement; close classes allow flips; noise is capped."""
    from graftkit.deploy.export import int8_threshold
    from graftkit.tasks import ClassificationTask

    task = ClassificationTask(["a", "b", "c"])
    g = torch.Generator().manual_seed(1)
    wide = torch.randn(500, 3, generator=g) + torch.tensor([[8.0, 0.0, 0.0]])  # class a by far
    close = torch.randn(500, 3, generator=g) * 0.05
    assert int8_threshold(task, wide, 0.05, budget=1.0) > 0.98
    assert int8_threshold(task, close, 0.05, budget=1.0) < 0.8
    assert int8_threshold(task, close, 0.05, budget=0.001) > int8_threshold(task, close, 0.05, budget=1.0)  # capped by the budget


def test_int8_search_keeps_early_convolutions_in_fp32_until_its_noise_is_small(exported, tmp_path):
    """The prefix search: it stops at the first try within the target (none kept in fp32 for a
    loose target), tries longer prefixes when the target is not reached, and keeps the quietest."""
    from graftkit.deploy.quantize import search_static_int8

    fp32 = exported / "export" / "model.onnx"
    rng = np.random.default_rng(0)
    size = _read(exported, "preprocess.json")["inputs"]["pixel_values"]["shape"][-1]
    batches = [{"pixel_values": rng.normal(size=(4, 3, size, size)).astype(np.float32)} for _ in range(4)]
    agree = lambda ref, got: float((ref.argmax(1) == got.argmax(1)).mean())  # noqa: E731
    easy = search_static_int8(fp32, tmp_path / "easy.onnx", batches[:2], batches[2:], agree, target=10.0)
    assert [t["fp32_convolutions"] for t in easy["search"]["tries"]] == [0] and easy["search"]["reached"]
    assert easy["excluded_nodes"] == [] and 0.0 <= easy["search"]["tries"][0]["holdout_agreement"] <= 1.0
    hard = search_static_int8(fp32, tmp_path / "hard.onnx", batches[:2], batches[2:], agree, target=-1.0)
    tries = hard["search"]["tries"]
    assert len(tries) > 1 and [t["fp32_convolutions"] for t in tries][:2] == [0, 2] and not hard["search"]["reached"]
    quietest = min(tries, key=lambda t: t["logit_noise"])
    assert hard["fp32_prefix"].startswith(f"the first {quietest['fp32_convolutions']} of") and len(hard["excluded_nodes"]) == quietest["fp32_convolutions"]
    assert (tmp_path / "hard.onnx").is_file()


def ex_decide(rec, task):
    from graftkit.deploy.export import _decide_int8

    _decide_int8(rec, task)


def test_int8_with_shuffled_classes_fails_its_measured_threshold(exported, tmp_path, monkeypatch):
    run = copy_run(exported, tmp_path / "int8-broken")
    import graftkit.deploy.export as ex

    real = ex._session_runner
    calls = []

    def second_session_shuffled(session):
        calls.append(session)
        inner = real(session)
        return (lambda batch: inner(batch).roll(1, dims=1)) if len(calls) == 2 else inner  # the int8 one

    monkeypatch.setattr(ex, "_session_runner", second_session_shuffled)
    result = export(run, "onnx", quantize="int8")  # the fp32 export stands; the broken int8 model is removed and said so
    assert "default backend stays onnx (fp32): int8 failed its parity check" in result.summary()
    assert "int8 noise budget" in result.summary() and result.model.name == "model.onnx"
    rec = _read(run, "parity.json")["onnx-int8"]
    assert rec["passed"] is False and rec["adopted"] is False and rec["min_agreement"] == rec["measured_min_agreement"]
    assert not (run / "export" / "model.int8.onnx").exists()
    assert _read(run, "preprocess.json")["default_backend"] == "onnx"
    assert resolve_backend(run, "auto") == ("onnx", rec["adoption"])


def test_int8_is_the_default_backend_only_within_a_point_of_fp32(exported, tmp_path, monkeypatch):
    """The adoption rule on measured figures: a loss of at most one point makes int8 the default of
    `--backend auto`; more keeps fp32 ONNX, and the int8 file stays for `--backend onnx-int8`."""
    from graftkit.tasks.classification import ClassificationTask

    task = ClassificationTask(["a", "b"])
    rec = {"passed": True, "validation": {"metric": "accuracy", "onnx": {"accuracy": 0.850}, "onnx-int8": {"accuracy": 0.841}, "n": 1000}}
    ex_decide(rec, task)
    assert rec["adopted"] and rec["adoption"].startswith("default backend: onnx-int8")
    rec["validation"]["onnx-int8"]["accuracy"] = 0.838
    ex_decide(rec, task)
    assert not rec["adopted"] and "loses 0.012, more than the budget of 0.01" in rec["adoption"]

    run = copy_run(exported, tmp_path / "auto")
    spec = _read(run, "preprocess.json")
    spec["default_backend"], spec["default_backend_why"] = "onnx-int8", "within budget"
    (run / "export" / "preprocess.json").write_text(json.dumps(spec))
    assert resolve_backend(run, "auto") == ("onnx-int8", "within budget")
    assert resolve_backend(run, "auto", torch_settings=True)[0] == "torch"
    assert resolve_backend(run, "onnx") == ("onnx", "")
    (run / "export" / "model.int8.onnx").unlink()
    assert resolve_backend(run, "auto")[0] == "onnx"
    (run / "model.safetensors").write_bytes((run / "model.safetensors").read_bytes() + b" ")  # other weights: the export is stale
    assert resolve_backend(run, "auto")[0] == "torch"


def test_bad_options_are_reported_together(exported):
    with pytest.raises(ConfigError, match="--format 'tflite'.*--exporter 'x'"):
        export(exported, "tflite", exporter="x")
    with pytest.raises(ConfigError, match="needs --format onnx"):
        export(exported, "torchscript", quantize="int8")


def test_generative_runs_are_not_exportable():
    from graftkit.deploy.modality import signature_for
    from graftkit.tasks import CausalLMTask, Seq2SeqTask

    for task in (Seq2SeqTask(), CausalLMTask()):
        with pytest.raises(ConfigError, match=f"{task.name} run, whose generation loop is not a single graph"):
            signature_for(torch.nn.Identity(), None, task)


def test_text_export_fp32_int8_and_onnx_predict(tmp_path_factory, tiny_bert_dir, tmp_path):
    run = copy_run(text_run(tmp_path_factory, tiny_bert_dir), tmp_path / "text")
    result = export(run, "onnx", quantize="int8")
    fp32, int8 = result.parity["onnx"], result.parity["onnx-int8"]
    assert fp32["passed"] and fp32["max_abs_logit_diff"] < 1e-4 and fp32["inputs"].startswith("validation texts")
    assert int8["passed"] and int8["quantization"]["method"] == "dynamic" and "change" in int8["validation"]
    spec = _read(run, "preprocess.json")
    assert spec["inputs"]["input_ids"]["shape"] == ["batch", "sequence"] and spec["text"]["tokenizer"] == "tokenizer.json"
    assert (run / "export" / "tokenizer.json").is_file()
    texts = ["the movie was very good good", "the film was so awful awful and boring dull dull", "fine"]
    ref = graftkit.load(run, precision="fp32").predict_proba(texts)  # the exported graph is fp32
    got = graftkit.load(run, backend="onnx").predict_proba(texts)  # mixed lengths: dynamic sequence axis
    torch.testing.assert_close(got, ref, atol=1e-4, rtol=1e-4)
    session = __import__("onnxruntime").InferenceSession(str(run / "export" / "model.onnx"))
    for b, t in ((1, 3), (4, 17)):
        feeds = {"input_ids": np.ones((b, t), np.int64), "attention_mask": np.ones((b, t), np.int64)}
        assert session.run(None, feeds)[0].shape == (b, 2)


def test_text_predict_reads_stdin_txt_and_csv(tmp_path_factory, tiny_bert_dir, tmp_path, monkeypatch, capsys):
    run = text_run(tmp_path_factory, tiny_bert_dir)
    (tmp_path / "notes.txt").write_text("the film was dull\nthe song was lovely\n")
    (tmp_path / "more.csv").write_text("id,review\n1,a wonderful story\n")
    monkeypatch.setattr("sys.stdin", io.StringIO("the plot was awful\n\nthe music was great\n"))
    args = ["predict", str(run), "-", str(tmp_path / "notes.txt"), "a literal text", "--format", "json"]
    assert main(args) == 0
    inputs = [json.loads(line)["input"] for line in capsys.readouterr().out.splitlines()]
    assert inputs == ["the plot was awful", "the music was great", "the film was dull", "the song was lovely", "a literal text"]
    assert main(["predict", str(run), str(tmp_path / "more.csv"), "--column", "review", "--format", "csv"]) == 0
    assert "a wonderful story" in capsys.readouterr().out


@pytest.mark.parametrize("extra", [{"strategy": "lora"}, {"strategy": "finetune", "task": "multilabel"}, {"strategy": "finetune", "task": "regression", "label_col": "score"}])
def test_lora_multilabel_and_regression_runs_export_with_parity(tiny_bert_dir, tmp_path, extra):
    """LoRA adapters are merged into the exported graph; multi-label and regression heads export too."""
    import graftkit
    from graftkit.deploy.export import export
    from tests.test_text_train import write_sentiment_csv

    data = write_sentiment_csv(tmp_path / "r.csv", n=24)
    if extra.get("task") == "multilabel":  # labels as `a|b` lists
        rows = data.read_text().splitlines()
        data.write_text("\n".join([rows[0]] + [r.replace(",positive,", ",good|positive,") for r in rows[1:]]) + "\n")
    run = graftkit.fit(data, model=f"hf:{tiny_bert_dir}", out=tmp_path / "run", epochs=1, batch_size=8, offline=True, **extra)
    export(run.dir, "onnx")  # raises ExportParityError below the agreement threshold
    assert (run.dir / "export" / "model.onnx").is_file() and (run.dir / "export" / "parity.json").is_file()
    onnx_out = graftkit.load(run.dir, backend="onnx").predict_proba(["the film was good", "the film was bad"])
    torch_out = graftkit.load(run.dir, precision="fp32").predict_proba(["the film was good", "the film was bad"])
    assert torch.allclose(onnx_out, torch_out, atol=1e-4)


def test_text_export_checks_on_the_separate_validation_file(tiny_bert_dir, tmp_path):
    """A text run trained with `--val FILE` is checked (and int8 scored) on that file's texts, not
    on rows of the training file that carry the same row numbers."""
    import graftkit
    from tests.test_text_train import write_sentiment_csv

    train = write_sentiment_csv(tmp_path / "train.csv", n=40, seed=0)
    val = write_sentiment_csv(tmp_path / "held-out.csv", n=14, seed=1)
    run = graftkit.fit(data=train, val=val, model=f"hf:{tiny_bert_dir}", strategy="linear-probe", epochs=1, batch_size=8,
                       offline=True, out=tmp_path / "run").dir  # fmt: skip
    rec = export(run, "onnx").parity["onnx"]
    assert rec["inputs"] == "validation texts from held-out.csv (14)" and rec["n"] == 14

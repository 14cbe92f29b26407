"""`--layer-pooling weighted` (SUPERB): a learned softmax-weighted sum of an audio encoder's layers."""

from __future__ import annotations

import json

import pytest
import torch
from torch.nn import functional as F
from safetensors.torch import load_file

import graftkit
from graftkit.errors import ConfigError
from tests.audio_data import PITCHES, make_audio_folder


@pytest.fixture
def tones(tmp_path):
    return make_audio_folder(tmp_path / "tones", per_class=8)


@pytest.mark.parametrize("strategy", ["linear-probe", "finetune"])
def test_weighted_layers_train_save_and_reload_to_equal_logits(tmp_path, tones, tiny_wav2vec2_dir, strategy):
    run = graftkit.fit(tones, model=f"hf:{tiny_wav2vec2_dir}", strategy=strategy, layer_pooling="weighted", out=tmp_path / "run",
                       epochs=3, batch_size=8, offline=True, precision="fp32")  # fmt: skip
    logits = load_file(str(run.dir / "model.safetensors"))["backbone.layer_mix.logits"]
    assert logits.numel() == 3  # the embeddings + 2 transformer layers
    assert not torch.equal(logits, torch.zeros(3))  # the mix trained (it starts equal)
    meta = json.loads((run.dir / "graft.json").read_text())
    assert meta["preprocess"]["layer_pooling"] == "weighted"
    model, _, _ = graftkit.rundir.load_model(run.dir)
    assert torch.equal(model.backbone.layer_mix.logits.detach(), logits)
    wave = torch.randn(2, 16000) * 0.1
    with torch.no_grad():
        frames = model.backbone.forward_frames(wave)
        layers = torch.stack([F.layer_norm(h, h.shape[-1:]) for h in model.backbone.layer_frames(wave)], dim=1)
        w = torch.softmax(logits, dim=0)
        assert torch.allclose(frames, (layers * w.view(1, -1, 1, 1)).sum(1), atol=1e-5)
        # what the probe caches (each layer's pooled, normalised frames), mixed, is the model's pooled mix
        mixed = model.backbone.layer_mix(model.backbone.forward_layer_features(wave))
        assert torch.allclose(mixed, model.backbone.forward_features(wave), atol=1e-5)
    assert graftkit.load(run.dir).predict([str(tones / "low" / "low_0.wav")])[0].label in PITCHES


def test_probe_caches_per_layer_features_apart_from_last_layer_features(tmp_path, tones, tiny_wav2vec2_dir):
    common = dict(model=f"hf:{tiny_wav2vec2_dir}", strategy="linear-probe", epochs=1, batch_size=8, offline=True, precision="fp32")
    graftkit.fit(tones, out=tmp_path / "a", **common)
    weighted = graftkit.fit(tones, out=tmp_path / "b", layer_pooling="weighted", **common)
    assert weighted.metrics["features"]["cached"] == 0  # another key: the last-layer features do not stand in
    again = graftkit.fit(tones, out=tmp_path / "c", layer_pooling="weighted", **common)
    assert again.metrics["features"]["computed"] == 0


def test_encoders_without_layers_and_frame_tasks_are_refused(tmp_path, tones, tiny_wav2vec2_dir):
    with pytest.raises(ConfigError, match="--layer-pooling weighted needs an encoder with per-layer frames"):
        graftkit.fit(tones, model="wakehubert_tiny", layer_pooling="weighted", out=tmp_path / "r1", epochs=1, offline=True)
    with pytest.raises(ConfigError, match="--layer-pooling 'mean' is not one of last, weighted, concat"):
        graftkit.fit(tones, model=f"hf:{tiny_wav2vec2_dir}", layer_pooling="mean", out=tmp_path / "r2", epochs=1, offline=True)


@pytest.mark.parametrize("kind", ["whisper", "ast"])
def test_whisper_and_ast_layers_end_in_their_frames_and_mix_by_the_weights(tmp_path, kind):
    from graftkit.sources import load_backbone
    from tests.audio_data import make_tiny_whisper
    from tests.test_hf_ast import make_tiny_ast

    folder = make_tiny_whisper(tmp_path / "w") if kind == "whisper" else make_tiny_ast(tmp_path / "a")
    bb = load_backbone(f"hf:{folder}", offline=True).eval()
    wave = torch.randn(2, 8000) * 0.1
    with torch.no_grad():
        last = bb.forward_frames(wave)
        layers = bb.layer_frames(wave)
        assert torch.allclose(layers[-1], last, atol=1e-6) and all(h.shape == last.shape for h in layers)
        bb.use_layer_pooling("weighted")
        assert bb.layer_mix.logits.numel() == len(layers) and bb.preprocess.layer_pooling == "weighted"
        bb.layer_mix.logits.copy_(torch.arange(len(layers), dtype=torch.float32))
        w = torch.softmax(bb.layer_mix.logits, dim=0)
        normed = [F.layer_norm(h, h.shape[-1:]) for h in layers]  # s3prl's default: each layer normalised, then mixed
        assert torch.allclose(bb.forward_frames(wave), sum(wi * h for wi, h in zip(w, normed)), atol=1e-5)
    assert bb.layer_mix in bb.layer_groups()[-1]  # the mix trains with the top group


# --- images: `--layer-pooling concat` (every block's mean, max and std beside the network's pooled output) ---


def test_concat_features_are_the_pooled_output_then_every_block_mean_and_max():
    from graftkit.sources import load_backbone
    from tests.conftest import TINY_MODEL

    bb = load_backbone(TINY_MODEL, offline=True).eval()
    outputs = []  # the blocks' outputs, read by hooks: a path apart from forward_intermediates
    for block in bb.model.blocks:
        block.register_forward_hook(lambda mod, inp, out: outputs.append(out))
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        last = bb.forward_features(x)
        bb.use_layer_pooling("concat")
        outputs.clear()  # (use_layer_pooling measured the width with one pass)
        concat = bb.forward_features(x)
    assert len(outputs) == len(bb.model.blocks) >= 3
    pooled = [(o.mean(dim=(2, 3)), o.amax(dim=(2, 3)), o.flatten(2).std(dim=2, unbiased=False)) for o in outputs]
    expected = torch.cat([last] + [p for trio in pooled for p in trio], dim=1)
    assert torch.allclose(concat, expected, atol=1e-6)
    assert bb.num_features == concat.shape[1] == last.shape[1] + 3 * sum(o.shape[1] for o in outputs)
    assert bb.preprocess.layer_pooling == "concat" and bb.preprocess.to_dict()["layer_pooling"] == "concat"
    bb.use_layer_pooling("last")
    assert bb.num_features == last.shape[1] and "layer_pooling" not in bb.preprocess.to_dict()  # older runs keep their keys


def test_concat_probe_saves_reloads_exports_and_caches_apart(tiny_images, tmp_path):
    from graftkit.deploy.export import export
    from tests.conftest import TINY_MODEL

    common = dict(model=TINY_MODEL, strategy="linear-probe", epochs=2, batch_size=8, num_workers=0, precision="fp32")
    graftkit.fit(tiny_images, out=tmp_path / "last", **common)
    run = graftkit.fit(tiny_images, out=tmp_path / "concat", layer_pooling="concat", **common)
    assert run.metrics["features"]["cached"] == 0  # another cache key: the last-layer features do not stand in
    meta = json.loads((run.dir / "graft.json").read_text())
    assert meta["preprocess"]["layer_pooling"] == "concat"
    weight = load_file(str(run.dir / "model.safetensors"))["head.0.weight"]
    model, _, _ = graftkit.rundir.load_model(run.dir)
    assert weight.shape[1] == model.backbone.num_features > 256  # the head reads the wider features
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(model(x), model.head(model.backbone.forward_features(x)), atol=1e-6)
    image = next(tiny_images.glob("cat/*.png"))
    assert graftkit.load(run.dir).predict([image])[0].label in ("cat", "dog", "fox")
    result = export(run.dir)  # fails loudly unless ONNX Runtime's logits match PyTorch's
    assert result.model.is_file() and result.parity["onnx"]["max_abs_logit_diff"] < 1e-3


def test_image_layer_pooling_refusals_name_the_fix(tiny_images, tmp_path):
    from tests.conftest import TINY_MODEL

    common = dict(model=TINY_MODEL, epochs=1, batch_size=8, num_workers=0)
    with pytest.raises(ConfigError, match="an image model's blocks differ in width: use --layer-pooling concat"):
        graftkit.fit(tiny_images, layer_pooling="weighted", out=tmp_path / "a", **common)
    with pytest.raises(ConfigError, match="--layer-pooling 'sum' is not one of last, weighted, concat"):
        graftkit.fit(tiny_images, layer_pooling="sum", out=tmp_path / "b", **common)
    with pytest.raises(ConfigError, match="needs a timm image model or an audio encoder with layers"):
        graftkit.fit(tiny_images, model="scratch:tv:mobilenet_v2", layer_pooling="concat", out=tmp_path / "c", epochs=1, num_workers=0)
    assert not (tmp_path / "a").exists() and not (tmp_path / "c").exists()  # refused before anything is written


def test_audio_refuses_concat(tmp_path, tones, tiny_wav2vec2_dir):
    with pytest.raises(ConfigError, match="--layer-pooling must be one of last, weighted, got 'concat'"):
        graftkit.fit(tones, model=f"hf:{tiny_wav2vec2_dir}", layer_pooling="concat", out=tmp_path / "r", epochs=1, offline=True)


def test_text_models_refuse_layer_pooling_instead_of_ignoring_it(tmp_path, tiny_bert_dir):
    from tests.test_text_train import write_sentiment_csv

    data = write_sentiment_csv(tmp_path / "s.csv", n=24)
    for kind in ("weighted", "concat"):
        with pytest.raises(ConfigError, match=f"--layer-pooling {kind} needs a timm image model.*is a text model: drop --layer-pooling"):
            graftkit.fit(data, model=f"hf:{tiny_bert_dir}", layer_pooling=kind, out=tmp_path / kind, epochs=1, offline=True)
        assert not (tmp_path / kind).exists()

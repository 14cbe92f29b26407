"""Model id -> backbone with weights: `load_backbone`, `build_architecture`, `pull`."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import torch
from torch import nn

from graftkit.backbones.base import Backbone, WeightsInfo
from graftkit.errors import ConfigError
from graftkit.sources import builtin, files, hf_hub, timm_hub, tv_hub
from graftkit.sources._common import is_offline, seeded
from graftkit.sources.ids import ModelSpec, resolve


def _build_random(arch: str) -> nn.Module:
    # `arch` is canonical (`timm:NAME` or `tv:NAME`); uses the caller's RNG.
    source, _, name = arch.partition(":")
    if source == "timm":
        from graftkit.backbones.timm_backbone import TimmBackbone

        return TimmBackbone.create(name, pretrained=False)
    from graftkit.backbones.torchvision_backbone import TorchvisionBackbone

    return TorchvisionBackbone.create(name)


def build_architecture(arch: str, *, seed: int = 0, head_kind: str = "features") -> Backbone:
    """The network of `arch` with random weights; never touches the network.

    Used to rebuild a saved run before loading its weights, and for `scratch:` ids. A saved text
    run is rebuilt from its own config and tokenizer with `build_hf_architecture` instead; here
    `hf:NAME_OR_PATH` (a folder, or a repo in the Hugging Face cache) and `minilm` also work.

    Args:
        arch: An architecture id: `timm:NAME`, `tv:NAME` or a built-in name (`WeightsInfo.arch`);
            or a text model id.
        seed: Seeds the initialisation, in a forked RNG (the global RNG state is untouched).
        head_kind: For text models: `features`, `seq2seq` or `causal-lm`.

    Returns:
        The backbone, with `weights.source == "scratch"` and `weights.sha256 is None`.

    Raises:
        UnknownModelError: `arch` is not a known architecture.
        ConfigError: `arch` is a `file:`/`scratch:` id rather than an architecture.

    Example:
        >>> bb = build_architecture("timm:resnet18")
        >>> bb.load_state_dict(saved_state_dict)
    """
    spec = resolve(arch)
    if spec.modality == "audio":
        return _load_audio(spec, offline=True, pretrained=False, seed=seed)
    if spec.modality == "text":
        options = hf_hub.TextOptions(head_kind=head_kind)
        return hf_hub.load_text(spec, offline=True, options=options, pretrained=False, seed=seed)
    if spec.source not in ("builtin", "timm", "tv"):
        raise ConfigError(f"'{arch}' is not an architecture; use timm:NAME, tv:NAME or a built-in name.")
    with seeded(seed):
        backbone = _build_random(spec.arch)
    backbone.weights = WeightsInfo(model_id=arch, arch=spec.arch, source="scratch", extra={"seed": seed})
    return backbone


def classifier_keys(arch: str, headless: nn.Module) -> set[str]:
    """State-dict keys of the pretrained classifier that a headless image backbone dropped.

    Both networks are built on the meta device (no memory, no weights read).

    Args:
        arch: `timm:NAME` or `tv:NAME`.
        headless: The backbone's network (`backbone.model`).

    Returns:
        Keys the full classifier network has and `headless` lacks (e.g. `{"fc.weight", "fc.bias"}`).
    """
    source, _, name = arch.partition(":")
    with torch.device("meta"):
        if source == "timm":
            import timm

            full = timm.create_model(name)
        else:
            from graftkit.backbones.torchvision_backbone import build_classifier_model

            full = build_classifier_model(name)
    return set(full.state_dict()) - set(headless.state_dict())


def _load_file(spec: ModelSpec) -> Backbone:
    assert spec.path is not None  # set by resolve() for file: ids
    backbone = build_architecture(spec.arch)
    net = backbone.model  # type: ignore[attr-defined]  # both image adapters store `.model`
    backbone.weights = files.load_into(
        net, classifier_keys(spec.arch, net), spec.path, model_id=spec.model_id, arch=spec.arch
    )
    return backbone


def load_backbone(
    model_id: str,
    *,
    arch: str | None = None,
    offline: bool = False,
    seed: int = 0,
    pretrained: bool = True,
    head_kind: str = "features",
    trust_remote_code: bool = False,
    max_length: int | None = None,
    pooling: str | None = None,
) -> Backbone:
    """Build the backbone a model id names, with its weights.

    Args:
        model_id: `efficientnet_lite0`, `minilm`, `timm:NAME`, `tv:NAME`, `hf:NAME_OR_PATH`,
            `file:PATH` or `scratch:ID`.
        arch: For `file:` ids, the architecture the weights fit (`--arch`).
        offline: Never touch the network (also on with `HF_HUB_OFFLINE=1` or `GRAFTKIT_OFFLINE=1`).
        seed: Seeds random initialisation (`scratch:` ids, `pretrained=False`).
        pretrained: False builds the same architecture with random weights, like `scratch:`.
        head_kind: Text models: `features` (pooled features; the encoder of an encoder-decoder),
            `seq2seq` (`AutoModelForSeq2SeqLM`) or `causal-lm` (`AutoModelForCausalLM`).
        trust_remote_code: Text models: run model code shipped with the model (`--trust-remote-code`).
        max_length: Text models: maximum tokens per text (`--max-length`; default 128 or the
            model's limit).
        pooling: Text models: `mean`, `cls` or `last` (default `mean`; `last` for decoders).

    Returns:
        An `nn.Module` backbone whose `weights` records the id, architecture, source and the
        SHA-256 of the weights file (None for random weights; the seed is in `weights.extra`).

    Raises:
        UnknownModelError: Unknown id; the message lists close matches.
        WeightsNotAvailableError: Weights not cached and offline (or the download failed); the
            message names `graft pull ID`.
        WeightsMismatchError: The weights do not fit the architecture, or fail their checksum.
        ConfigError: `file:` without `arch`, or an unreadable path; text options for an image
            model; a model that needs `--trust-remote-code`; a head the model cannot take.

    Example:
        >>> bb = load_backbone("efficientnet_lite0")
        >>> bb.weights.sha256[:8]
        '57934424'
        >>> load_backbone("hf:t5-small", head_kind="seq2seq").kind
        'encoder-decoder'
    """
    spec = resolve(model_id, arch)
    if spec.modality == "audio":
        _check_image_options(model_id, head_kind, max_length, pooling, modality="an audio")
        return _load_audio(spec, offline=is_offline(offline), pretrained=pretrained, seed=seed)
    if spec.modality == "text":
        options = hf_hub.TextOptions(head_kind, trust_remote_code, max_length, pooling)
        return hf_hub.load_text(spec, offline=is_offline(offline), options=options, pretrained=pretrained, seed=seed)
    _check_image_options(model_id, head_kind, max_length, pooling)
    if spec.source == "scratch" or not pretrained:
        backbone = build_architecture(spec.arch, seed=seed)
        backbone.weights = replace(backbone.weights, model_id=model_id)
        return backbone
    offline = is_offline(offline)
    if spec.source == "builtin":
        return builtin.load_builtin(spec.name, model_id=model_id)
    if spec.source == "timm":
        return timm_hub.load_timm(spec.name, model_id=model_id, offline=offline)
    if spec.source == "tv":
        return tv_hub.load_tv(spec.name, model_id=model_id, offline=offline)
    return _load_file(spec)


def _check_image_options(model_id: str, head_kind: str, max_length: int | None, pooling: str | None, modality: str = "an image") -> None:
    problems = []
    if head_kind != "features":
        problems.append(f"a {head_kind} task needs a text model (hf:NAME), and {model_id} is {modality} model")
    if max_length is not None:
        problems.append("--max-length applies only to text models")
    if pooling is not None:
        problems.append("--pooling applies only to text models")
    if problems:
        raise ConfigError("; ".join(problems) + ".")


def _load_audio(spec: ModelSpec, *, offline: bool, pretrained: bool, seed: int) -> Backbone:
    """An audio backbone: a built-in (`audio_builtin`) or an `hf:` waveform encoder (`hf_audio`)."""
    from graftkit.sources import audio_builtin, hf_audio

    inner = spec.inner if spec.source == "scratch" else spec
    assert inner is not None
    pretrained = pretrained and spec.source != "scratch"
    with seeded(seed):
        if inner.source == "builtin":
            backbone = audio_builtin.load_audio_builtin(inner.name, model_id=spec.model_id, pretrained=pretrained)
        else:
            folder = hf_hub.locate(inner.name, spec.model_id, offline=offline, weights=pretrained)
            if hf_audio.config_model_type(folder) == "whisper":  # an encoder-decoder for --task asr
                from graftkit.sources.whisper_builtin import load_whisper_folder

                backbone = load_whisper_folder(folder, model_id=spec.model_id, pretrained=pretrained, arch=inner.arch)
            else:
                backbone = hf_audio.load_hf_audio(folder, model_id=spec.model_id, pretrained=pretrained, arch=inner.arch)
    if not pretrained:
        backbone.weights = replace(backbone.weights, source="scratch", sha256=None, extra={**backbone.weights.extra, "seed": seed})
    return backbone


def build_audio_architecture(arch: str, folder: Path | None, *, seed: int = 0) -> Backbone:
    """An audio run's network with random weights, to load the run's weights into: a built-in
    (`audio:NAME`, from its pinned package) or a transformers config saved in the run (`folder`).

    Raises:
        WeightsNotAvailableError: A built-in's package is missing.
        ConfigError: The architecture is unknown.
    """
    from graftkit.sources import audio_builtin, hf_audio

    kind, _, name = arch.partition(":")
    with seeded(seed):
        if folder is not None and hf_audio.config_model_type(folder) == "whisper":  # config + tokenizer saved in the run
            from graftkit.sources.whisper_builtin import load_whisper_folder

            return load_whisper_folder(folder, model_id=arch, pretrained=False, arch=arch)
        if kind == "audio" and name in audio_builtin.AUDIO_BUILTINS:
            return audio_builtin.load_audio_builtin(name, pretrained=False)
        if kind == "hf" and folder is not None and folder.is_dir():
            return hf_audio.load_hf_audio(folder, model_id=arch, pretrained=False, arch=arch)
    raise ConfigError(f"cannot rebuild the audio architecture {arch!r}: not a built-in audio model and no saved config in {folder}")


def pull(model_id: str) -> Path:
    """Put the weights of `model_id` into the local cache, downloading them if needed.

    Run it on a machine with network access; then `--offline` loads work there, or on another
    machine once the cache (`HF_HUB_CACHE`, `$TORCH_HOME/hub`) is copied over.

    Args:
        model_id: A built-in, `timm:`, `tv:` or `hf:` id (`file:` ids are returned as they are).

    Returns:
        The local weights file; for text models, the folder holding config, tokenizer and weights.

    Raises:
        WeightsNotAvailableError: The download failed; the message says why.
        ConfigError: `scratch:` ids have no weights to pull.

    Example:
        >>> pull("timm:resnet18")  # doctest: +SKIP
        PosixPath('~/.cache/huggingface/hub/models--timm--resnet18.a1_in1k/snapshots/.../model.safetensors')
    """
    if model_id.strip().startswith("file:"):
        return files.weights_file(Path(model_id.strip()[len("file:") :]).expanduser())
    spec = resolve(model_id)
    if spec.source == "scratch":
        raise ConfigError(f"'{model_id}' uses random weights; there is nothing to pull.")
    if spec.source == "builtin" and spec.modality == "audio":
        from graftkit.sources.audio_builtin import AUDIO_BUILTINS, checked_path

        return checked_path(AUDIO_BUILTINS[spec.name])[0]
    if spec.source == "builtin" and spec.name in builtin.TEXT_BUILTINS:
        folder, _ = builtin.checked_text_folder(builtin.TEXT_BUILTINS[spec.name])
        return folder
    if spec.source == "builtin":
        path, _ = builtin.checked_weights_path(builtin.BUILTINS[spec.name])
        return path
    if spec.source == "hf":
        # Python files come too (never run without --trust-remote-code), so no second pull is needed.
        return hf_hub.locate(spec.name, model_id, offline=is_offline(), trust_remote_code=True)
    if spec.source == "timm":
        return timm_hub.locate(spec.name, model_id, offline=is_offline())
    if spec.source == "tv":
        return tv_hub.locate(spec.name, model_id, offline=is_offline())
    raise ConfigError(f"Cannot pull '{model_id}'.")  # unreachable while resolve() knows no other source

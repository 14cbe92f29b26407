"""Model ids (DESIGN.md §1): parse `SOURCE:NAME` into a `ModelSpec`, or say what was meant."""

from __future__ import annotations

import difflib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from graftkit.errors import ConfigError, UnknownModelError
from graftkit.sources.audio_builtin import AUDIO_BUILTINS
from graftkit.sources.builtin import BUILTINS, TEXT_BUILTINS

_LIST_HINT = "Run `graft models` to list them."


@dataclass(frozen=True)
class ModelSpec:
    """A parsed model id: which source provides the weights and which architecture they fit."""

    model_id: str
    """The id as the user wrote it, e.g. `timm:resnet18`, `scratch:efficientnet_lite0`."""
    source: str
    """`builtin`, `timm`, `tv`, `hf`, `file` or `scratch`."""
    name: str
    """The name inside the source: built-in name, timm/torchvision model name, Hugging Face repo id
    or folder, file path, or (for `scratch:`) the id whose architecture is used."""
    arch: str
    """What `build_architecture` rebuilds: `timm:NAME` or `tv:NAME`; for text models the id
    itself (`hf:NAME_OR_PATH`, `minilm`), whose config describes the network."""
    path: Path | None = None
    """The weights file or directory, for `file:` ids; the folder for `hf:` ids naming one."""
    inner: ModelSpec | None = None
    """For `scratch:ID`, the spec of ID."""
    modality: str = "image"
    """`image`, `text` or `audio`."""


def timm_names() -> list[str]:
    """Every timm name an id may use: architectures and `arch.tag` pretrained names."""
    import timm

    return sorted(set(timm.list_models()) | set(timm.list_models(pretrained=True)))


def tv_names() -> list[str]:
    """Every torchvision classification model name."""
    import torchvision

    return list(torchvision.models.list_models(module=torchvision.models))


def _candidates(source: str | None) -> list[tuple[str, str]]:
    # (bare name, id) pairs to suggest from: the built-ins always, plus one source or all.
    pairs = [(name, name) for name in (*BUILTINS, *TEXT_BUILTINS, *AUDIO_BUILTINS)]
    if source in (None, "timm"):
        pairs += [(n, f"timm:{n}") for n in timm_names()]
    if source in (None, "tv"):
        pairs += [(n, f"tv:{n}") for n in tv_names()]
    return pairs


def _unknown(model_id: str, bare: str, source: str | None, what: str = "model id") -> UnknownModelError:
    pairs = _candidates(source)
    close = difflib.get_close_matches(bare, list(dict.fromkeys(b for b, _ in pairs)), n=5, cutoff=0.6)
    ids = [i for name in close for b, i in pairs if b == name][:8]
    guess = f" Did you mean: {', '.join(ids)}?" if ids else ""
    return UnknownModelError(f"Unknown {what} '{model_id}'.{guess} {_LIST_HINT}")


def _parse_timm(model_id: str, name: str, arch: str | None) -> ModelSpec:
    import timm
    from timm.models import split_model_name_tag

    arch_name, tag = split_model_name_tag(name)
    known = timm.is_model(arch_name) and (not tag or name in set(timm.list_models(pretrained=True)))
    if not known:
        raise _unknown(model_id, name, "timm")
    return ModelSpec(model_id, "timm", name, f"timm:{name}")


def _parse_tv(model_id: str, name: str, arch: str | None) -> ModelSpec:
    if name not in tv_names():
        raise _unknown(model_id, name, "tv")
    return ModelSpec(model_id, "tv", name, f"tv:{name}")


def _parse_file(model_id: str, name: str, arch: str | None) -> ModelSpec:
    if not arch:
        raise ConfigError(
            f"'{model_id}' needs --arch naming the architecture the weights fit, "
            "e.g. --arch timm:resnet18, --arch tv:resnet18 or --arch efficientnet_lite0."
        )
    arch_spec = resolve(arch)
    if arch_spec.source not in ("builtin", "timm", "tv") or arch_spec.modality != "image":
        raise ConfigError(
            f"--arch must be a timm:, tv: or built-in image id, got '{arch}' "
            "(a transformers folder loads as hf:PATH, no --arch needed)."
        )
    return ModelSpec(model_id, "file", name, arch_spec.arch, path=Path(name).expanduser())


def _parse_hf(model_id: str, name: str, arch: str | None) -> ModelSpec:
    if not name:
        raise UnknownModelError(
            f"'{model_id}' names no model: use hf:ORG/NAME (a Hugging Face repo) or hf:PATH (a folder "
            f"saved with save_pretrained). {_LIST_HINT}"
        )
    from graftkit.sources.hf_audio import AUDIO_MODEL_TYPES, SPECTROGRAM_MODEL_TYPES, cached_config_folder, config_model_type

    folder = Path(name).expanduser()
    kind = config_model_type(cached_config_folder(name))
    modality = "audio" if kind in AUDIO_MODEL_TYPES | SPECTROGRAM_MODEL_TYPES else "text"
    return ModelSpec(
        model_id, "hf", name, f"hf:{name}", path=folder if folder.is_dir() else None, modality=modality
    )


def _parse_scratch(model_id: str, name: str, arch: str | None) -> ModelSpec:
    inner = resolve(name, arch)
    return ModelSpec(model_id, "scratch", name, inner.arch, inner=inner, modality=inner.modality)


_PARSERS: dict[str, Callable[[str, str, str | None], ModelSpec]] = {
    "timm": _parse_timm,
    "tv": _parse_tv,
    "hf": _parse_hf,
    "file": _parse_file,
    "scratch": _parse_scratch,
}


def resolve(model_id: str, arch: str | None = None) -> ModelSpec:
    """Parse a model id.

    Ids: the built-ins (`efficientnet_lite0`, `efficientnet_lite2`, `minilm`), `timm:NAME`,
    `tv:NAME`, `hf:NAME_OR_PATH` (a transformers model: hub repo id or local folder), `file:PATH`
    (with `arch` naming the architecture) and `scratch:ID` (ID's architecture, random weights).
    Nothing is downloaded or built.

    Args:
        model_id: The id to parse.
        arch: For `file:` ids, the id of the architecture the weights fit (`--arch`).

    Returns:
        The parsed spec.

    Raises:
        UnknownModelError: The source or the name is unknown; the message lists close matches.
        ConfigError: `file:` without `arch`, or `arch` given for an id that fixes its own.

    Example:
        >>> resolve("scratch:tv:resnet18").arch
        'tv:resnet18'
    """
    model_id = model_id.strip()
    if model_id in BUILTINS:
        spec = ModelSpec(model_id, "builtin", model_id, f"timm:{BUILTINS[model_id].timm_name}")
    elif model_id in TEXT_BUILTINS:
        spec = ModelSpec(model_id, "builtin", model_id, model_id, modality="text")
    elif model_id in AUDIO_BUILTINS:
        spec = ModelSpec(model_id, "builtin", model_id, f"audio:{model_id}", modality="audio")
    else:
        prefix, sep, name = model_id.partition(":")
        if not sep:
            raise _unknown(model_id, model_id, None)
        if prefix not in _PARSERS:
            known = ", ".join(f"{p}:" for p in _PARSERS)
            close = difflib.get_close_matches(prefix, list(_PARSERS), n=1)
            guess = f" Did you mean '{close[0]}:{name}'?" if close else ""
            raise UnknownModelError(
                f"Unknown model source '{prefix}:' in '{model_id}'; known sources are {known} "
                f"and the built-ins {', '.join([*BUILTINS, *TEXT_BUILTINS, *AUDIO_BUILTINS])}.{guess} {_LIST_HINT}"
            )
        spec = _PARSERS[prefix](model_id, name.strip(), arch)
    if arch and spec.source not in ("file", "scratch") and resolve(arch).arch != spec.arch:
        raise ConfigError(f"--arch {arch} applies only to file: ids; '{model_id}' is {spec.arch}.")
    return spec

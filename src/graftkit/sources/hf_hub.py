"""Transformers text models (`hf:NAME_OR_PATH`, built-in `minilm`): find the folder, then load it.

Every text model is loaded from a local `save_pretrained` folder: a folder the user names, a
built-in package's folder, or a snapshot in the Hugging Face hub cache. Downloads (`graft pull`,
or a first online load) fetch only what loading needs (config, tokenizer files, and the
safetensors weights, else the `.bin`), after one metadata request with a 5 s timeout so a dead
network fails at once instead of after huggingface_hub's retries.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from graftkit.backbones.base import TextPreprocess
from graftkit.errors import ConfigError, UnknownModelError
from graftkit.sources import builtin
from graftkit.sources._common import download_errors, not_available, seeded
from graftkit.sources.hf_weights import weights_file
from graftkit.sources.ids import ModelSpec
from graftkit.sources.timm_hub import _short, hf_cache_dir

if TYPE_CHECKING:
    from graftkit.backbones.hf_backbone import HFBackbone

_TIMEOUT_S = 5.0
_SIDE_SUFFIXES = (".json", ".txt", ".model", ".spm", ".tiktoken")  # config and tokenizer files


@dataclass(frozen=True)
class TextOptions:
    """How a text model is loaded: the head on top and the tokenization settings."""

    head_kind: str = "features"
    """`features`, `seq2seq` or `causal-lm`."""
    trust_remote_code: bool = False
    """Run model code shipped with the model (`--trust-remote-code`)."""
    max_length: int | None = None
    """Overrides the default maximum length in tokens (`--max-length`)."""
    pooling: str | None = None
    """Overrides the default pooling (`--pooling`)."""


def _has_weights(folder: Path) -> bool:
    return weights_file(folder) is not None


def _looks_like_path(name: str) -> bool:
    return name.startswith(("/", "./", "../", "~", ".\\")) or name.count("/") > 1 or "\\" in name


def split_revision(name: str) -> tuple[str, str | None]:
    """`org/model@rev` -> (`org/model`, `rev`); no `@` -> (name, None)."""
    repo, sep, revision = name.partition("@")
    return repo, (revision or None) if sep else None


def find_cached(repo: str, revision: str | None = None, *, weights: bool = True) -> Path | None:
    """The snapshot folder of `repo` in the Hugging Face cache, if it holds what loading needs.

    Args:
        repo: A hub repo id, `org/name`.
        revision: Branch, tag or commit; default `main`.
        weights: Whether the weights must be there too (not for `scratch:`).

    Returns:
        The folder, or None. Never touches the network.
    """
    from huggingface_hub import try_to_load_from_cache

    try:
        hit = try_to_load_from_cache(repo, "config.json", cache_dir=hf_cache_dir(), revision=revision)
    except ValueError:  # an invalid repo id (HFValidationError): not cached
        return None
    if not isinstance(hit, str):
        return None
    folder = Path(hit).parent
    return folder if (not weights or _has_weights(folder)) else None


def _choose_files(files: list[str], *, weights: bool, trust_remote_code: bool) -> list[str]:
    # Top-level config/tokenizer files; the safetensors weights when there are any, else the .bin.
    top = [f for f in files if "/" not in f]
    chosen = [f for f in top if f.endswith(_SIDE_SUFFIXES) and not f.endswith(".index.json")]
    if trust_remote_code:
        chosen += [f for f in top if f.endswith(".py")]
    if weights:
        safe = [f for f in top if f.endswith(".safetensors") or f == "model.safetensors.index.json"]
        bins = [f for f in top if f.startswith("pytorch_model") and (f.endswith((".bin", ".bin.index.json")))]
        chosen += safe or bins
    return sorted(set(chosen))


def download(repo: str, revision: str | None, model_id: str, *, weights: bool = True,
             trust_remote_code: bool = False) -> Path:  # fmt: skip
    """Download what loading `repo` needs into the Hugging Face cache.

    Args:
        repo: A hub repo id.
        revision: Branch, tag or commit; default `main`.
        model_id: The id to name in errors.
        weights: Also download the weights (not for `scratch:`).
        trust_remote_code: Also download the repository's Python files.

    Returns:
        The snapshot folder.

    Raises:
        UnknownModelError: The hub has no such repository (or it is private).
        WeightsNotAvailableError: No network, gated repository, or the download failed.
        ConfigError: The repository is not a transformers model (no config.json).
    """
    from huggingface_hub import HfApi, snapshot_download
    from huggingface_hub.errors import (
        GatedRepoError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    where = f"{hf_cache_dir()} (Hugging Face repo {repo})"
    try:
        info = HfApi().model_info(repo, revision=revision, timeout=_TIMEOUT_S)
    except GatedRepoError as e:
        cause = "the repository is gated: accept its terms on huggingface.co and run `hf auth login`"
        raise not_available(model_id, where, offline=False, cause=cause) from e
    except (RepositoryNotFoundError, RevisionNotFoundError) as e:
        raise UnknownModelError(
            f"'{model_id}': the Hugging Face hub has no model {repo}"
            + (f" at revision {revision}" if revision else "")
            + " (or it is private: run `hf auth login`). For a local folder, give its path: hf:./folder."
        ) from e
    except download_errors() as e:  # no network, offline mode, timeout
        raise not_available(model_id, where, offline=False, cause=_short(e)) from e
    files = _choose_files([s.rfilename for s in info.siblings or []], weights=weights,
                          trust_remote_code=trust_remote_code)  # fmt: skip
    if "config.json" not in files:
        raise ConfigError(f"'{model_id}': {repo} has no config.json; it is not a transformers model.")
    try:
        path = snapshot_download(
            repo, revision=revision, cache_dir=hf_cache_dir(), allow_patterns=files, etag_timeout=_TIMEOUT_S
        )
    except download_errors() as e:
        raise not_available(model_id, where, offline=False, cause=_short(e)) from e
    folder = Path(path)
    if weights and not _has_weights(folder):
        raise not_available(model_id, where, offline=False, cause=f"{repo} has no PyTorch weights")
    return folder


def locate(name: str, model_id: str, *, offline: bool, weights: bool = True,
           trust_remote_code: bool = False) -> Path:  # fmt: skip
    """The local folder of `hf:NAME`: the folder itself, or its hub-cache snapshot (downloaded first
    unless `offline`).

    Args:
        name: A folder path or a hub repo id (optionally `@revision`).
        model_id: The id to name in errors.
        offline: Never touch the network.
        weights: Whether the weights are needed (not for `scratch:`).
        trust_remote_code: Also download the repository's Python files.

    Returns:
        A folder holding config.json, the tokenizer and (if `weights`) the weights.

    Raises:
        ConfigError: `name` looks like a path but is no folder.
        WeightsNotAvailableError: Not cached and offline, or the download failed.
        UnknownModelError: No such repository on the hub.
    """
    folder = Path(name).expanduser()
    if folder.is_dir():
        return folder.absolute()
    if _looks_like_path(name):
        raise ConfigError(f"'{model_id}': {folder.absolute()} is not a folder. Give a folder saved with save_pretrained.")
    repo, revision = split_revision(name)
    _check_repo_id(repo, model_id)
    cached = find_cached(repo, revision, weights=weights)
    if cached is not None:
        return cached
    if offline:
        raise not_available(model_id, f"{hf_cache_dir()} (Hugging Face repo {repo}; no folder {folder} either)",
                            offline=True)  # fmt: skip
    return download(repo, revision, model_id, weights=weights, trust_remote_code=trust_remote_code)


def _check_repo_id(repo: str, model_id: str) -> None:
    from huggingface_hub.utils import validate_repo_id

    try:
        validate_repo_id(repo)
    except ValueError as e:
        raise UnknownModelError(
            f"'{model_id}' is neither a folder nor a Hugging Face repo id (ORG/NAME): {e}"
        ) from e


def _text_folder(spec: ModelSpec, *, offline: bool, weights: bool,
                 trust_remote_code: bool) -> tuple[Path, dict]:  # fmt: skip
    # (folder, how to record it) for a built-in text model or an hf: id.
    if spec.source == "builtin":
        entry = builtin.TEXT_BUILTINS[spec.name]
        if weights:
            folder, digest = builtin.checked_text_folder(entry)
        else:
            folder, digest = entry.folder(), None
        preprocess = TextPreprocess(max_length=entry.max_length, pooling=entry.pooling)
        return folder, {"source": "builtin", "sha256": digest, "preprocess": preprocess,
                        "extra": {"package": entry.requirement}}  # fmt: skip
    folder = locate(spec.name, spec.model_id, offline=offline, weights=weights, trust_remote_code=trust_remote_code)
    return folder, {"source": "hf", "sha256": None, "preprocess": None, "extra": {}}


def load_text(spec: ModelSpec, *, offline: bool, options: TextOptions, pretrained: bool = True,
              seed: int = 0) -> HFBackbone:  # fmt: skip
    """Load a text backbone: `minilm`, `hf:NAME_OR_PATH`, or either under `scratch:`.

    Args:
        spec: The resolved id (`spec.modality == "text"`).
        offline: Never touch the network.
        options: Head kind, remote code, max length, pooling.
        pretrained: False (or a `scratch:` spec) gives random weights from the same config.
        seed: Seeds the random initialisation.

    Returns:
        An `HFBackbone`.
    """
    from graftkit.sources.hf_weights import build_hf_architecture, load_hf_pretrained

    target = spec.inner if spec.source == "scratch" and spec.inner is not None else spec
    random_init = spec.source == "scratch" or not pretrained
    folder, how = _text_folder(target, offline=offline, weights=not random_init,
                               trust_remote_code=options.trust_remote_code)  # fmt: skip
    if random_init:
        with seeded(seed):
            backbone = build_hf_architecture(
                folder,
                head_kind=options.head_kind,
                preprocess=how["preprocess"],
                max_length=options.max_length,
                pooling=options.pooling,
                trust_remote_code=options.trust_remote_code,
                model_id=spec.model_id,
            )
        backbone.weights = replace(backbone.weights, extra={"seed": seed, "path": str(folder)})
        return backbone
    return load_hf_pretrained(
        folder,
        model_id=spec.model_id,
        source=how["source"],
        head_kind=options.head_kind,
        preprocess=how["preprocess"],
        max_length=options.max_length,
        pooling=options.pooling,
        trust_remote_code=options.trust_remote_code,
        sha256=how["sha256"],
        extra=how["extra"],
    )


# ----------------------------------------------------------------------------------------------
# Listing (`graft models`): light, no transformers import.


@dataclass(frozen=True)
class CachedModel:
    """A transformers model found in the local Hugging Face cache."""

    repo: str
    """Hub repo id."""
    folder: Path
    """Its `main` snapshot folder."""
    model_type: str
    """`config.json`'s `model_type`, e.g. `bert`."""


def cached_models() -> list[CachedModel]:
    """Transformers models with config and weights in the Hugging Face cache (timm's are skipped).

    Returns:
        Sorted by repo id. Never touches the network.
    """
    root = hf_cache_dir()
    if not root.is_dir():
        return []
    out = []
    for entry in sorted(root.glob("models--*")):
        repo = entry.name[len("models--") :].replace("--", "/")
        ref = entry / "refs" / "main"
        if not ref.is_file():
            continue
        folder = entry / "snapshots" / ref.read_text(encoding="utf-8").strip()
        try:
            config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(config, dict) and isinstance(config.get("model_type"), str) and _has_weights(folder):
            out.append(CachedModel(repo, folder, config["model_type"]))
    return out


def count_parameters(folder: Path) -> int | None:
    """Parameters in a folder's `model.safetensors`, read from the file header (poolers excluded).

    Args:
        folder: A `save_pretrained` folder.

    Returns:
        The count, or None when there is no single safetensors file.
    """
    path = folder / "model.safetensors"
    try:
        with open(path, "rb") as f:
            (size,) = struct.unpack("<Q", f.read(8))
            header = json.loads(f.read(size))
    except (OSError, ValueError, struct.error):
        return None
    total = 0
    for key, meta in header.items():
        if key == "__metadata__" or ".pooler." in f".{key}":
            continue
        n = 1
        for dim in meta.get("shape", []):
            n *= int(dim)
        total += n
    return total

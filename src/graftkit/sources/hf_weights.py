"""Hugging Face transformers models from a local `save_pretrained` folder: config, tokenizer,
weights (DESIGN.md §1).

`hf_hub.py` finds the folder (a user's folder, a built-in package's folder, or a hub-cache
snapshot, downloaded first when online); this module reads it without ever touching the network
(`local_files_only=True`), checks that the weights cover the network the task needs, records the
weights file's SHA-256, and wraps the model in `graftkit.backbones.hf_backbone.HFBackbone`.
`build_hf_architecture` rebuilds a saved run's network from its config alone (random weights).
transformers is imported by the functions that need it, so importing this module costs only torch.
"""

from __future__ import annotations

import inspect
import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

from graftkit.backbones.base import TextPreprocess, WeightsInfo
from graftkit.backbones.hf_backbone import HFBackbone, check_head_kind, model_kind, quiet_transformers
from graftkit.errors import ConfigError, WeightsMismatchError
from graftkit.sources._common import sha256_file

_WEIGHT_FILES = (
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
)
_DEFAULT_MAX_LENGTH = 128


def weights_file(folder: Path) -> Path | None:
    """The weights file of a `save_pretrained` folder (the index file when sharded), or None."""
    for name in _WEIGHT_FILES:
        if (folder / name).is_file():
            return folder / name
    return None


def load_tokenizer(folder: Path, kind: str, *, trust_remote_code: bool = False) -> Any:
    """The fast tokenizer saved in `folder`, ready to pad batches.

    Decoder tokenizers without a pad token pad with their end-of-sequence token; padding is on the
    right for every kind (`last` pooling and the loaders rely on the attention mask).

    Args:
        folder: A `save_pretrained` folder with tokenizer files.
        kind: `encoder`, `decoder` or `encoder-decoder`.
        trust_remote_code: Allow a tokenizer class defined in the folder.

    Returns:
        A `PreTrainedTokenizerFast`-compatible tokenizer.

    Raises:
        ConfigError: No tokenizer in the folder, or no token to pad with.
    """
    from transformers import AutoTokenizer

    try:
        with quiet_transformers():
            tokenizer = AutoTokenizer.from_pretrained(
                str(folder), local_files_only=True, trust_remote_code=trust_remote_code
            )
    except (OSError, ValueError, TypeError) as e:
        raise ConfigError(
            f"No usable tokenizer in {folder} ({type(e).__name__}: {str(e).splitlines()[0][:200]}). "
            "Save one next to the model with tokenizer.save_pretrained(folder)."
        ) from e
    if tokenizer.pad_token is None:
        fallback = tokenizer.eos_token or (tokenizer.unk_token if kind != "decoder" else None)
        if fallback is None:
            raise ConfigError(
                f"The tokenizer in {folder} has neither a pad nor an end-of-sequence token; "
                "set tokenizer.pad_token and save it again."
            )
        tokenizer.pad_token = fallback
    tokenizer.padding_side = "right"
    return tokenizer


def _model_class(head_kind: str) -> Any:
    from transformers import AutoModel, AutoModelForCausalLM, AutoModelForSeq2SeqLM

    return {"features": AutoModel, "seq2seq": AutoModelForSeq2SeqLM, "causal-lm": AutoModelForCausalLM}[
        head_kind
    ]


def _trim(model: nn.Module, head_kind: str, kind: str) -> nn.Module:
    # Feature extraction keeps only what forward_features runs: the encoder of an encoder-decoder,
    # and no pooler (BERT-style poolers are trained for next-sentence prediction, unused here).
    if head_kind != "features":
        return model
    if kind == "encoder-decoder":
        model = model.get_encoder()
    if isinstance(getattr(model, "pooler", None), nn.Module) and (
        "add_pooling_layer" in inspect.signature(type(model).__init__).parameters
    ):
        model.pooler = None  # these classes skip the pooler when it is None
    return model


def _read_config(folder: Path, *, trust_remote_code: bool) -> Any:
    import transformers
    from transformers import AutoConfig
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING

    path = folder / "config.json"
    if not path.is_file():
        raise ConfigError(f"{folder} has no config.json: it is not a transformers save_pretrained folder.")
    raw = json.loads(path.read_text(encoding="utf-8"))
    if raw.get("model_type") not in CONFIG_MAPPING and raw.get("auto_map") and not trust_remote_code:
        raise ConfigError(
            f"{folder} needs code from the model repository ({raw.get('model_type')!r} is not built into "
            f"transformers {transformers.__version__}). Read that code, then pass --trust-remote-code."
        )
    try:
        with quiet_transformers():
            return AutoConfig.from_pretrained(str(folder), local_files_only=True, trust_remote_code=trust_remote_code)
    except ValueError as e:
        if "trust_remote_code" in str(e):
            raise ConfigError(f"{folder} needs code from the model repository: pass --trust-remote-code.") from e
        raise ConfigError(f"Cannot read {path}: {str(e).splitlines()[0][:300]}") from e


def _default_preprocess(config: Any, kind: str, preprocess: TextPreprocess | None,
                        max_length: int | None, pooling: str | None) -> TextPreprocess:  # fmt: skip
    limit = getattr(config, "max_position_embeddings", None) or getattr(config, "n_positions", None)
    base = preprocess or TextPreprocess(
        max_length=min(_DEFAULT_MAX_LENGTH, int(limit or _DEFAULT_MAX_LENGTH)),
        pooling="last" if kind == "decoder" else "mean",
    )
    chosen = TextPreprocess(
        max_length=int(max_length) if max_length is not None else base.max_length,
        pooling=pooling or base.pooling,
    )
    if limit and chosen.max_length > int(limit):
        raise ConfigError(
            f"--max-length {chosen.max_length} is longer than the model's {int(limit)} positions; "
            f"use --max-length {int(limit)} or less."
        )
    return chosen


def _assemble(model: nn.Module, folder: Path, config: Any, *, head_kind: str, preprocess: TextPreprocess | None,
              max_length: int | None, pooling: str | None, weights: WeightsInfo,
              trust_remote_code: bool) -> HFBackbone:  # fmt: skip
    kind = model_kind(config)
    tokenizer = load_tokenizer(folder, kind, trust_remote_code=trust_remote_code)
    chosen = _default_preprocess(config, kind, preprocess, max_length, pooling)
    model = _trim(model, head_kind, kind)
    model.eval()
    return HFBackbone(model, tokenizer, config=config, head_kind=head_kind, preprocess=chosen, weights=weights)


def load_hf_pretrained(
    folder: Path,
    *,
    model_id: str,
    source: str = "hf",
    head_kind: str = "features",
    preprocess: TextPreprocess | None = None,
    max_length: int | None = None,
    pooling: str | None = None,
    trust_remote_code: bool = False,
    sha256: str | None = None,
    extra: dict[str, Any] | None = None,
) -> HFBackbone:
    """Load a `save_pretrained` folder (local, or a hub-cache snapshot) with its weights; no network.

    Args:
        folder: Config, tokenizer and weights.
        model_id: The id to record and name in errors.
        source: `hf` or `builtin`, for `WeightsInfo.source`.
        head_kind: `features`, `seq2seq` or `causal-lm`.
        preprocess: Defaults: max length 128 (or the model's limit), mean pooling (`last` for decoders).
        max_length: Overrides `preprocess.max_length` (`--max-length`).
        pooling: Overrides `preprocess.pooling` (`--pooling`).
        trust_remote_code: Run model code shipped in the folder (`--trust-remote-code`).
        sha256: The weights file's checksum when the caller already verified it; else computed.
        extra: More provenance for `WeightsInfo.extra`.

    Returns:
        The backbone, in eval mode.

    Raises:
        ConfigError: No config or tokenizer, remote code needed, or the model cannot take this head.
        WeightsMismatchError: No weights file, or weights missing for part of the network.
    """
    folder = Path(folder)
    config = _read_config(folder, trust_remote_code=trust_remote_code)
    check_head_kind(head_kind, model_kind(config), model_id)
    file = weights_file(folder)
    if file is None:
        raise WeightsMismatchError(
            f"{folder} has no weights file ({', '.join(_WEIGHT_FILES)}); use scratch:{model_id} for random weights."
        )
    try:
        with quiet_transformers():
            model, info = _model_class(head_kind).from_pretrained(
                str(folder),
                config=config,
                local_files_only=True,
                trust_remote_code=trust_remote_code,
                dtype=torch.float32,
                output_loading_info=True,
            )
    except (OSError, ValueError, RuntimeError, KeyError) as e:
        raise WeightsMismatchError(
            f"Weights in {folder} do not load into {model_kind(config)} {config.model_type!r}: "
            f"{type(e).__name__}: {str(e).splitlines()[0][:300]}"
        ) from e
    missing = _really_missing(model, info.get("missing_keys", []), head_kind, model_kind(config))
    if missing:
        shown = ", ".join(sorted(missing)[:5]) + (f" (and {len(missing) - 5} more)" if len(missing) > 5 else "")
        raise WeightsMismatchError(
            f"Weights in {folder} lack {len(missing)} tensor(s) the {head_kind} model needs: {shown}. "
            "The checkpoint may be a bare model without its language-model head."
        )
    weights = WeightsInfo(
        model_id=model_id,
        arch=f"hf:{config.model_type}",
        source=source,
        sha256=sha256 or sha256_file(file),
        extra={"path": str(folder), "weights_file": file.name, **(extra or {})},
    )
    return _assemble(model, folder, config, head_kind=head_kind, preprocess=preprocess, max_length=max_length,
                     pooling=pooling, weights=weights, trust_remote_code=trust_remote_code)  # fmt: skip


def _really_missing(model: nn.Module, missing: list[str], head_kind: str, kind: str) -> list[str]:
    # Keys the loaded model lacks that it will actually use: poolers and the decoder of a
    # features-only encoder-decoder are dropped by `_trim`, so their absence does not matter.
    if not missing:
        return []
    kept = set(_trim_names(model, head_kind, kind))
    return [k for k in missing if k in kept]


def _trim_names(model: nn.Module, head_kind: str, kind: str) -> list[str]:
    if head_kind != "features":
        return [n for n, _ in model.named_parameters()]
    names = []
    encoder = model.get_encoder() if kind == "encoder-decoder" else model
    wanted = {id(p) for n, p in encoder.named_parameters() if not n.startswith("pooler.")}
    for n, p in model.named_parameters():
        if id(p) in wanted:
            names.append(n)
    return names


def build_hf_architecture(
    folder: Path,
    *,
    head_kind: str,
    preprocess: TextPreprocess | None = None,
    max_length: int | None = None,
    pooling: str | None = None,
    trust_remote_code: bool = False,
    model_id: str | None = None,
) -> HFBackbone:
    """The network of the config in `folder` with random weights; never touches the network.

    Used to rebuild a saved run (`save_architecture` wrote the folder) before loading its state
    dict, and for `scratch:hf:` ids. Uses the caller's RNG for the initialisation.

    Args:
        folder: Holds config.json and the tokenizer files.
        head_kind: `features`, `seq2seq` or `causal-lm`, as when the backbone was loaded.
        preprocess: Max length and pooling; defaults as in `load_hf_pretrained`.
        max_length: Overrides `preprocess.max_length`.
        pooling: Overrides `preprocess.pooling`.
        trust_remote_code: Run model code shipped in the folder.
        model_id: The id to record; defaults to `hf:<folder>`.

    Returns:
        The backbone, in eval mode, with `weights.source == "scratch"`; its state-dict keys are
        those of a loaded backbone with the same head kind.

    Example:
        >>> bb.save_architecture(run / "architecture")
        >>> rebuilt = build_hf_architecture(run / "architecture", head_kind="features")
        >>> rebuilt.load_state_dict(bb.state_dict())
    """
    folder = Path(folder)
    config = _read_config(folder, trust_remote_code=trust_remote_code)
    check_head_kind(head_kind, model_kind(config), model_id or f"hf:{folder}")
    with quiet_transformers():
        model = _model_class(head_kind).from_config(config, trust_remote_code=trust_remote_code, dtype=torch.float32)
    weights = WeightsInfo(model_id=model_id or f"hf:{folder}", arch=f"hf:{config.model_type}", source="scratch")
    return _assemble(model, folder, config, head_kind=head_kind, preprocess=preprocess, max_length=max_length,
                     pooling=pooling, weights=weights, trust_remote_code=trust_remote_code)  # fmt: skip

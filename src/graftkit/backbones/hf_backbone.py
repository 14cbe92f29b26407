"""Backbone adapter for Hugging Face transformers text models (DESIGN.md §2).

One class covers encoders (BERT, RoBERTa, DistilBERT, DeBERTa-v2, MiniLM), decoders (GPT-2,
Llama-style) and encoder-decoders (T5, BART, Marian). What is loaded depends on the head the task
puts on top (`head_kind`):

- `features`: the bare network (`AutoModel`); for encoder-decoders only the encoder is kept;
- `seq2seq`: `AutoModelForSeq2SeqLM` (the task trains its own language-model head);
- `causal-lm`: `AutoModelForCausalLM`.

A run directory stores the config and tokenizer (`save_architecture`) next to the weights, so
`build_hf_architecture` rebuilds the same module tree without the network. transformers is imported
by the functions that need it, so importing this module costs only torch.
"""

from __future__ import annotations

import contextlib
import inspect
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn

from graftkit.backbones._groups import collapse_groups, top_level_group_of
from graftkit.backbones.base import TextPreprocess, WeightsInfo
from graftkit.errors import ConfigError, WeightsMismatchError

HEAD_KINDS = ("features", "seq2seq", "causal-lm")
"""What a task puts on the backbone: pooled features, a seq2seq LM head or a causal LM head."""

_WEIGHT_FILES = (
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
)
_DEFAULT_MAX_LENGTH = 128
# Attention projections LoRA adapts when peft has no mapping for the model type (query and value,
# as in the LoRA paper), by the last component of the module name.
_LORA_FALLBACK = (
    "q", "v", "query", "value", "q_proj", "v_proj", "q_lin", "v_lin", "query_proj", "value_proj",
    "c_attn", "qkv_proj", "Wqkv", "query_key_value", "in_proj",
)  # fmt: skip
# Parameters outside the blocks whose names say they are embeddings join the first group even
# when they are defined after the blocks (BART's decoder position embeddings).
_EMBEDDING_NAME = re.compile(r"(^|\.)(\w*embed\w*|wte|wpe|shared)(\.|$)")


def model_kind(config: Any) -> str:
    """Whether a transformers config describes an `encoder`, a `decoder` or an `encoder-decoder`.

    Args:
        config: A `PretrainedConfig`.

    Returns:
        `encoder-decoder` when `config.is_encoder_decoder`; `decoder` for causal language models
        (GPT-2, Llama, ...: a causal-LM class and no masked-LM class); else `encoder`.
    """
    from transformers.models.auto import modeling_auto as auto

    if getattr(config, "is_encoder_decoder", False):
        return "encoder-decoder"
    model_type = getattr(config, "model_type", "")
    if model_type in auto.MODEL_FOR_CAUSAL_LM_MAPPING_NAMES:
        return "encoder" if model_type in auto.MODEL_FOR_MASKED_LM_MAPPING_NAMES else "decoder"
    archs = [a for a in (getattr(config, "architectures", None) or []) if isinstance(a, str)]
    if any(a.endswith(("ForCausalLM", "LMHeadModel")) for a in archs) and not any(
        a.endswith("ForMaskedLM") for a in archs
    ):
        return "decoder"
    return "encoder"


def _check_head_kind(head_kind: str, kind: str, where: str) -> None:
    if head_kind not in HEAD_KINDS:
        raise ConfigError(f"head_kind must be one of {', '.join(HEAD_KINDS)}, got {head_kind!r}")
    if head_kind == "seq2seq" and kind != "encoder-decoder":
        raise ConfigError(
            f"{where} is {'an' if kind == 'encoder' else 'a'} {kind}; --task seq2seq needs an "
            "encoder-decoder model (T5, BART, Marian), e.g. --model hf:t5-small."
        )
    if head_kind == "causal-lm" and kind != "decoder":
        raise ConfigError(
            f"{where} is an {kind}; --task causal-lm needs a decoder model (GPT-2, Llama, ...), "
            "e.g. --model hf:gpt2."
        )


@contextlib.contextmanager
def quiet_transformers() -> Iterator[None]:
    """Silence transformers' progress bars and info/warning logs inside the block, then restore them."""
    from transformers.utils import logging as hf_logging

    bars = hf_logging.is_progress_bar_enabled()
    verbosity = hf_logging.get_verbosity()
    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
    try:
        yield
    finally:
        hf_logging.set_verbosity(verbosity)
        if bars:
            hf_logging.enable_progress_bar()


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


class HFBackbone(nn.Module):
    """A transformers text model exposing the Backbone contract.

    The transformers model is stored as `self.model`, so state-dict keys are `model.<hf keys>`.

    Args:
        model: The network: a bare model (`features`), a seq2seq or a causal LM.
        tokenizer: Its fast tokenizer (with a pad token).
        config: The full model's config (for `features` on an encoder-decoder, `model` is only
            the encoder and its config differs).
        head_kind: `features`, `seq2seq` or `causal-lm`.
        preprocess: Maximum length and pooling.
        weights: Where the weights came from.

    Example:
        >>> bb = load_backbone("minilm")
        >>> bb.forward_features(bb.tokenize(["a cat", "a dog"])).shape
        torch.Size([2, 384])
    """

    modality = "text"

    def __init__(self, model: nn.Module, tokenizer: Any, *, config: Any, head_kind: str,
                 preprocess: TextPreprocess, weights: WeightsInfo) -> None:  # fmt: skip
        super().__init__()
        self.model = model
        self.tokenizer = tokenizer
        self.config = config
        self.kind = model_kind(config)
        _check_head_kind(head_kind, self.kind, weights.model_id)
        self.head_kind = head_kind
        self.preprocess = preprocess
        self.weights = weights
        size = getattr(config, "hidden_size", None) or getattr(config, "d_model", None)
        if size is None:
            raise ConfigError(f"Cannot tell the hidden size of {weights.model_id} from its config.")
        self.num_features = int(size)

    # -- features --------------------------------------------------------------------------------

    def _token_states(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        # Last hidden states (B, T, D) of the part of the network that reads the input.
        if self.head_kind == "seq2seq":
            net = self.model.get_encoder()
        elif self.head_kind == "causal-lm":
            net = self.model.base_model
        else:
            net = self.model
        kwargs: dict[str, Any] = {"input_ids": input_ids, "attention_mask": attention_mask}
        if self.kind == "decoder":
            kwargs["use_cache"] = False  # no key/value cache for a single forward pass
        return net(**kwargs).last_hidden_state

    def forward_features(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Pooled features, as `preprocess.pooling` says.

        Args:
            batch: `input_ids` and `attention_mask`, `[B, T]` (other keys, e.g. `labels`, are ignored).

        Returns:
            `[B, num_features]`.
        """
        ids = batch["input_ids"]
        mask = batch.get("attention_mask")
        if mask is None:
            mask = torch.ones_like(ids)
        states = self._token_states(ids, mask)  # (B, T, D)
        return pool(states, mask, self.preprocess.pooling)

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Same as `forward_features`."""
        return self.forward_features(batch)

    def tokenize(self, texts: list[str], max_length: int | None = None) -> dict[str, torch.Tensor]:
        """Tokenize a batch: padded to the longest text, cut at `max_length` tokens.

        Args:
            texts: The texts.
            max_length: Defaults to `preprocess.max_length`.

        Returns:
            `{"input_ids": [B, T], "attention_mask": [B, T]}` (int64).
        """
        enc = self.tokenizer(
            list(texts),
            padding="longest",
            truncation=True,
            max_length=max_length or self.preprocess.max_length,
            return_tensors="pt",
            return_token_type_ids=False,
        )
        return {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]}

    # -- structure -------------------------------------------------------------------------------

    def layer_groups(self) -> list[list[nn.Module]]:
        """Modules from input to output: embeddings, then one group per transformer block.

        Blocks are found generically (`block_lists`): for an encoder-decoder with a seq2seq head,
        encoder blocks come first, then decoder blocks. Final layer norms and LM heads join the
        last group; norms between the encoder and the decoder join the last encoder block.

        Returns:
            One list of modules per group; every parameter appears in exactly one group.
        """
        return layer_groups_of(self.model)

    def lora_target_modules(self) -> list[str]:
        """Names (last component) of the modules LoRA adapts in this architecture.

        peft's own mapping for the model type is used when it names modules this model has;
        otherwise the query/value projections (`Linear` or GPT-2's `Conv1D`) inside the blocks.

        Returns:
            Sorted, non-empty list of module-name suffixes, e.g. `["query", "value"]` for BERT.

        Raises:
            ConfigError: No attention projection could be found.
        """
        targets = lora_targets_of(self.model, getattr(self.config, "model_type", ""))
        if not targets:
            raise ConfigError(
                f"No attention projections found for LoRA in {self.weights.model_id}; "
                "use another --strategy (finetune, partial:N)."
            )
        return targets

    def save_architecture(self, folder: Path) -> None:
        """Write config.json and the tokenizer files (no weights) so `build_hf_architecture` can
        rebuild this module tree without the network.

        Args:
            folder: Created if missing.
        """
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        with quiet_transformers():
            self.config.save_pretrained(str(folder))
            self.tokenizer.save_pretrained(str(folder))


def layer_groups_of(model: nn.Module) -> list[list[nn.Module]]:
    """`HFBackbone.layer_groups` for any transformers model: embeddings, then one group per block.

    Args:
        model: A transformers model (bare, seq2seq or causal LM) or an encoder stack.

    Returns:
        One list of modules per group (see `HFBackbone.layer_groups`); with no block list found,
        one group per top-level child.
    """
    lists = block_lists(model)
    group_of = _block_group_of(model, lists) if lists else top_level_group_of(model)
    return _without_tied_repeats(collapse_groups(model, group_of))


def lora_targets_of(model: nn.Module, model_type: str) -> list[str]:
    """`HFBackbone.lora_target_modules` for any transformers model.

    Args:
        model: The network.
        model_type: Its `config.model_type`, to look up peft's mapping.

    Returns:
        Sorted module-name suffixes; empty when no attention projection was found.
    """
    linear = _linear_names(model)
    suffixes = {name.rsplit(".", 1)[-1] for name in linear}
    try:
        from peft.utils.constants import (
            TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING as mapping,
        )
    except ImportError:  # peft missing: the fallback below still names the layers
        mapping = {}
    known = [t for t in mapping.get(model_type, []) if t in suffixes]
    if known:
        return sorted(set(known))
    blocks = [prefix for prefix, _ in block_lists(model)]
    return sorted(
        {
            name.rsplit(".", 1)[-1]
            for name in linear
            if name.rsplit(".", 1)[-1] in _LORA_FALLBACK and any(name.startswith(p + ".") for p in blocks)
        }
    )


def pool(states: torch.Tensor, mask: torch.Tensor, pooling: str) -> torch.Tensor:
    """Pool token states `[B, T, D]` into `[B, D]`.

    Args:
        states: Token states.
        mask: Attention mask `[B, T]`, 1 for real tokens.
        pooling: `mean` (over real tokens), `cls` (first token) or `last` (last real token; right
            or left padding).

    Returns:
        `[B, D]`.
    """
    if pooling == "cls":
        return states[:, 0]
    if pooling == "last":
        positions = torch.arange(mask.shape[1], device=mask.device)
        last = (mask.long() * positions).argmax(dim=1)  # index of the last 1 in each row
        return states[torch.arange(states.shape[0], device=states.device), last]
    if pooling == "mean":
        m = mask.unsqueeze(-1).to(states.dtype)
        return (states * m).sum(dim=1) / m.sum(dim=1).clamp(min=1.0)
    raise ConfigError(f"--pooling must be one of mean, cls, last; got {pooling!r}")


def block_lists(model: nn.Module) -> list[tuple[str, nn.ModuleList]]:
    """The `nn.ModuleList`s of transformer blocks, in parameter order.

    Candidates are the outermost ModuleLists whose items are all of one class; those holding at
    least half as many parameters as the largest are kept (so T5/BART give the encoder and the
    decoder block lists, BERT its `encoder.layer`, GPT-2 its `h`).

    Args:
        model: The network.

    Returns:
        `(qualified name, ModuleList)` pairs, ordered as their parameters appear in `model`.
    """
    candidates: list[tuple[str, nn.ModuleList]] = []
    for name, module in model.named_modules():
        if not isinstance(module, nn.ModuleList) or len(module) == 0:
            continue
        if any(name.startswith(p + ".") for p, _ in candidates):
            continue  # nested inside a block list (T5's `block.0.layer`)
        if len({type(m) for m in module}) == 1:
            candidates.append((name, module))
    sizes = {name: sum(p.numel() for p in m.parameters()) for name, m in candidates}
    if not sizes or max(sizes.values()) == 0:
        return []
    biggest = max(sizes.values())
    kept = [(n, m) for n, m in candidates if sizes[n] * 2 >= biggest]
    order = {id(p): i for i, p in enumerate(model.parameters())}
    return sorted(kept, key=lambda nm: min(order[id(p)] for p in nm[1].parameters()))


def _block_group_of(model: nn.Module, lists: list[tuple[str, nn.ModuleList]]) -> Any:
    # Group ordinals: 0 = embeddings, 1..N = blocks in order, parameters between/after the
    # blocks join the nearest block before them (final norms, LM heads join the last group).
    offsets: dict[str, int] = {}
    n = 0
    for name, blocks in lists:
        offsets[name] = n
        n += len(blocks)
    names = [name for name, _ in model.named_parameters()]
    group: dict[str, int] = {}
    current = 0
    for pname in names:
        in_block = None
        for lname, _ in lists:
            if pname.startswith(lname + "."):
                index = int(pname[len(lname) + 1 :].split(".", 1)[0])
                in_block = offsets[lname] + index + 1
                break
        if in_block is not None:
            current = max(current, in_block)
            group[pname] = in_block
        elif _EMBEDDING_NAME.search(pname) or current == 0:
            group[pname] = 0
        else:
            group[pname] = current
    return group.__getitem__


def _without_tied_repeats(groups: list[list[nn.Module]]) -> list[list[nn.Module]]:
    # A tied LM head (GPT-2's `lm_head` shares `wte.weight`) holds only parameters an earlier
    # module already holds: listing it too would put one parameter in a group twice.
    seen: set[int] = set()
    out = []
    for group in groups:
        kept = []
        for module in group:
            params = {id(p) for p in module.parameters()}
            if params - seen:
                kept.append(module)
            seen |= params
        out.append(kept)
    return [g for g in out if g]


def _linear_names(model: nn.Module) -> list[str]:
    from transformers.pytorch_utils import Conv1D

    return [name for name, m in model.named_modules() if isinstance(m, (nn.Linear, Conv1D))]


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
    from graftkit.sources._common import sha256_file

    folder = Path(folder)
    config = _read_config(folder, trust_remote_code=trust_remote_code)
    _check_head_kind(head_kind, model_kind(config), model_id)
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
    _check_head_kind(head_kind, model_kind(config), model_id or f"hf:{folder}")
    with quiet_transformers():
        model = _model_class(head_kind).from_config(config, trust_remote_code=trust_remote_code, dtype=torch.float32)
    weights = WeightsInfo(model_id=model_id or f"hf:{folder}", arch=f"hf:{config.model_type}", source="scratch")
    return _assemble(model, folder, config, head_kind=head_kind, preprocess=preprocess, max_length=max_length,
                     pooling=pooling, weights=weights, trust_remote_code=trust_remote_code)  # fmt: skip

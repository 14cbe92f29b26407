"""Backbone adapter for Hugging Face transformers text models (DESIGN.md §2).

One class covers encoders (BERT, RoBERTa, DistilBERT, DeBERTa-v2, MiniLM), decoders (GPT-2,
Llama-style) and encoder-decoders (T5, BART, Marian), over an already-built transformers model.
What that model is depends on the head the task puts on top (`head_kind`):

- `features`: the bare network (`AutoModel`); for encoder-decoders only the encoder is kept;
- `seq2seq`: `AutoModelForSeq2SeqLM` (the task trains its own language-model head);
- `causal-lm`: `AutoModelForCausalLM`.

Reading a `save_pretrained` folder (config, tokenizer, weights) is `graftkit.sources.hf_weights`'s
job; `save_architecture` writes the config and tokenizer so `build_hf_architecture` there rebuilds
the same module tree without the network. transformers is imported by the functions that need it,
so importing this module costs only torch.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn

from graftkit.backbones._groups import collapse_groups, top_level_group_of
from graftkit.backbones.base import TextPreprocess, WeightsInfo
from graftkit.errors import ConfigError

HEAD_KINDS = ("features", "seq2seq", "causal-lm")
"""What a task puts on the backbone: pooled features, a seq2seq LM head or a causal LM head."""

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


def check_head_kind(head_kind: str, kind: str, where: str) -> None:
    """Fail unless a model of `kind` can carry the task's `head_kind`.

    Args:
        head_kind: `features`, `seq2seq` or `causal-lm`.
        kind: The model's `model_kind`.
        where: The model id, named in the error.

    Raises:
        ConfigError: Unknown head kind, seq2seq on a non encoder-decoder, causal-lm on a non decoder.
    """
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
        check_head_kind(head_kind, self.kind, weights.model_id)
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
        """Write config.json and the tokenizer files (no weights) so
        `graftkit.sources.hf_weights.build_hf_architecture` can rebuild this module tree without
        the network.

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

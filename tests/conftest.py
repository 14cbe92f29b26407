"""Shared fixtures: offline, seeded, tiny data sets and models built in the tests."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from tests.netguard import NetworkGuard

TINY_MODEL = "scratch:timm:test_efficientnet"  # 0.36M params, random init, no download


@pytest.fixture(autouse=True)
def network_guard():
    """Every test runs offline, provably: each attempt to reach another host is refused *and*
    recorded, and a recorded attempt fails the test at teardown even when the code under test
    swallowed the refusal. A test that tries the network on purpose calls `network_guard.expect()`."""
    guard = NetworkGuard().install()
    yield guard
    guard.uninstall()
    if guard.attempts and not guard.expected:
        pytest.fail(f"the test tried to reach the network: {', '.join(dict.fromkeys(guard.attempts))}", pytrace=False)


@pytest.fixture(autouse=True)
def _seed_and_isolate(tmp_path, monkeypatch):
    """Seed every RNG; give each test its own cache and working folder, never the user's."""
    random.seed(0)
    np.random.seed(0)
    torch.manual_seed(0)
    monkeypatch.setenv("GRAFTKIT_CACHE", str(tmp_path / "graftkit-cache"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.chdir(tmp_path)


def _pattern(label: int, i: int, size: int = 40) -> np.ndarray:
    """A learnable image: the class sets the dominant colour and stripe direction; noise varies."""
    rng = np.random.default_rng(1000 * label + i)
    img = rng.integers(0, 60, (size, size, 3)).astype(np.uint8)
    img[..., label % 3] += 150
    if label % 2:
        img[::4, :, :] = 255
    else:
        img[:, ::4, :] = 255
    return img


def make_image_folder(root: Path, classes=("cat", "dog", "fox"), per_class: int = 8, ext: str = "png") -> Path:
    for c, name in enumerate(classes):
        d = root / name
        d.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            Image.fromarray(_pattern(c, i)).save(d / f"{name}_{i}.{ext}")
    return root


@pytest.fixture
def tiny_images(tmp_path) -> Path:
    """3 classes x 8 PNGs, 40x40, easily separable."""
    return make_image_folder(tmp_path / "images")


@pytest.fixture
def tiny_split_images(tmp_path) -> Path:
    """`ROOT/{train,val,test}/<class>/` with 3 classes."""
    root = tmp_path / "split"
    make_image_folder(root / "train", per_class=8)
    make_image_folder(root / "val", per_class=3)
    make_image_folder(root / "test", per_class=3)
    return root


# --- tiny transformers models (text) ------------------------------------------------------------
# Random 2-layer models with WordLevel tokenizers built here, saved with save_pretrained: the
# `hf:PATH` loading code runs for real without any download.

TINY_TEXT_WORDS = (
    "the a an this that it is was and or not very so too i you we they he she "
    "cat dog bird fish sat ran flew swam on in under mat sofa tree sea "
    "good great lovely wonderful fine bad awful terrible boring dull "
    "movie film book song story plot actor music ending loved hated liked "
    "hello world translate english french yes no one two three four five . , ! ?"
).split()


def _tiny_tokenizer(specials: list[str], unk: str, template: tuple[str, str] | None = None, **tokens: str):
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = {s: i for i, s in enumerate(specials)}
    for w in TINY_TEXT_WORDS:
        vocab.setdefault(w, len(vocab))
    tok = Tokenizer(models.WordLevel(vocab, unk_token=unk))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    if template is not None:
        tok.post_processor = processors.TemplateProcessing(
            single=template[0], pair=template[1], special_tokens=[(s, vocab[s]) for s in specials]
        )
    return PreTrainedTokenizerFast(tokenizer_object=tok, model_max_length=64, **tokens)


def _save_tiny(folder: Path, model, tokenizer) -> Path:
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # "Writing model shards" bars in test output
    try:
        model.save_pretrained(folder)
        tokenizer.save_pretrained(folder)
    finally:
        hf_logging.enable_progress_bar()
    return folder


@pytest.fixture(scope="session")
def tiny_wav2vec2_dir(tmp_path_factory) -> Path:
    """A random wav2vec2 (hidden 32, 2 layers) + feature extractor config, in a save_pretrained folder."""
    from tests.audio_data import make_wav2vec2_dir

    return make_wav2vec2_dir(tmp_path_factory.mktemp("tiny-wav2vec2"))


@pytest.fixture(scope="session")
def tiny_bert_dir(tmp_path_factory) -> Path:
    """A random BERT (2 layers, hidden 32, 2 heads) + WordLevel tokenizer, in a save_pretrained folder."""
    from transformers import BertConfig, BertModel

    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tokenizer = _tiny_tokenizer(
        specials, "[UNK]", ("[CLS] $A [SEP]", "[CLS] $A [SEP] $B:1 [SEP]:1"),
        pad_token="[PAD]", unk_token="[UNK]", cls_token="[CLS]", sep_token="[SEP]", mask_token="[MASK]",
    )  # fmt: skip
    config = BertConfig(
        vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=37, max_position_embeddings=64, pad_token_id=0,
    )  # fmt: skip
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(1234)  # not the tests' seed: a rebuilt model must differ
        model = BertModel(config)
    return _save_tiny(tmp_path_factory.mktemp("tiny-bert"), model, tokenizer)


@pytest.fixture(scope="session")
def tiny_gpt2_dir(tmp_path_factory) -> Path:
    """A random GPT-2 LM (2 layers, n_embd 32); its tokenizer has no pad token (eos pads)."""
    from transformers import GPT2Config, GPT2LMHeadModel

    eos = "<|endoftext|>"
    tokenizer = _tiny_tokenizer([eos, "<unk>"], "<unk>", eos_token=eos, bos_token=eos, unk_token="<unk>")
    config = GPT2Config(
        vocab_size=len(tokenizer), n_embd=32, n_layer=2, n_head=2, n_positions=64,
        bos_token_id=0, eos_token_id=0,
    )  # fmt: skip
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(1234)  # not the tests' seed: a rebuilt model must differ
        model = GPT2LMHeadModel(config)
    return _save_tiny(tmp_path_factory.mktemp("tiny-gpt2"), model, tokenizer)


@pytest.fixture(scope="session")
def tiny_t5_dir(tmp_path_factory) -> Path:
    """A random T5 seq2seq model (2+2 layers, d_model 32); pad 0 starts the decoder, `</s>` ends."""
    from transformers import T5Config, T5ForConditionalGeneration

    tokenizer = _tiny_tokenizer(
        ["<pad>", "</s>", "<unk>"], "<unk>", ("$A </s>", "$A </s> $B </s>"),
        pad_token="<pad>", eos_token="</s>", unk_token="<unk>",
    )  # fmt: skip
    config = T5Config(
        vocab_size=len(tokenizer), d_model=32, d_kv=16, d_ff=37, num_layers=2, num_decoder_layers=2,
        num_heads=2, decoder_start_token_id=0, pad_token_id=0, eos_token_id=1,
    )  # fmt: skip
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(1234)  # not the tests' seed: a rebuilt model must differ
        model = T5ForConditionalGeneration(config)
    return _save_tiny(tmp_path_factory.mktemp("tiny-t5"), model, tokenizer)

"""Text data: reading CSV/TSV/JSONL/TXT, validation messages, splits, and tokenized loaders."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from graftkit.data.labels import LabelKind
from graftkit.data.text import TextSample, read_text_data, read_texts
from graftkit.data.text_loader import (
    make_causal_lm_loader,
    make_seq2seq_loader,
    make_text_loader,
    restore_order,
)
from graftkit.errors import ConfigError, DataError

POS = ["i loved this film", "a wonderful story", "great music", "lovely ending", "good actor", "fine book"]
NEG = ["awful plot", "a boring movie", "terrible ending", "dull story", "bad song", "i hated it"]


def _write(path: Path, text: str, encoding: str = "utf-8") -> Path:
    path.write_bytes(text.encode(encoding))
    return path


def _csv(path: Path, rows: list[tuple[str, str]], header: str = "text,label", sep: str = ",") -> Path:
    lines = [header] + [sep.join(r) for r in rows]
    return _write(path, "\n".join(lines) + "\n")


def _reviews() -> list[tuple[str, str]]:
    return [(t, "pos") for t in POS] + [(t, "neg") for t in NEG]


# --- formats --------------------------------------------------------------------------------


def test_csv_classification(tmp_path: Path) -> None:
    data = read_text_data(_csv(tmp_path / "r.csv", _reviews()))
    assert data.classes == ["neg", "pos"] and data.label_kind is LabelKind.CLASS and data.encoding == "utf-8"
    assert len(data.train) + len(data.val) == 12 and data.test == []
    assert data.split == "seeded stratified 20% (seed 0)"
    assert sorted(s.label for s in data.val) == ["neg", "pos"]  # round(6 * 0.2) = 1 per class
    first = next(s for s in data.train + data.val if s.row == 2)
    assert first == TextSample("i loved this film", label="pos", row=2)
    d = data.to_dict(include_files=True)
    assert d["counts"]["train"] == {"neg": 5, "pos": 5} and d["totals"] == {"train": 10, "val": 2, "test": 0}
    assert sorted(d["rows"]["train"] + d["rows"]["val"]) == list(range(2, 14))
    assert d["columns"] == {"text": "text", "label": "label"}
    json.dumps(d)


@pytest.mark.parametrize(("name", "sep"), [("r.tsv", "\t"), ("r.csv", ";"), ("r.csv", "\t")])
def test_delimiters(tmp_path: Path, name: str, sep: str) -> None:
    rows = [(t.replace(",", ""), label) for t, label in _reviews()]
    data = read_text_data(_csv(tmp_path / name, rows, header=f"Review{sep}Label", sep=sep))
    assert data.classes == ["neg", "pos"] and data.columns == {"text": "Review", "label": "Label"}


def test_quoted_csv_fields_keep_commas_and_newlines(tmp_path: Path) -> None:
    text = 'text,label\n"good, very good",pos\n"bad\nreally bad",neg\nfine,pos\nawful,neg\n'
    data = read_text_data(_write(tmp_path / "q.csv", text), val_fraction=0.5)
    samples = sorted(data.train + data.val, key=lambda s: s.row)
    assert [(s.text, s.row) for s in samples] == [
        ("good, very good", 2), ("bad\nreally bad", 3), ("fine", 5), ("awful", 6),
    ]  # fmt: skip


def test_jsonl_and_explicit_columns(tmp_path: Path) -> None:
    lines = [json.dumps({"body": t, "y": label, "id": i}) for i, (t, label) in enumerate(_reviews())]
    path = _write(tmp_path / "r.jsonl", "\n".join(lines) + "\n\n")
    data = read_text_data(path, text_col="body", label_col="y", seed=3)
    assert data.classes == ["neg", "pos"] and "seed 3" in data.split
    with pytest.raises(DataError) as info:
        read_text_data(path)
    message = str(info.value)
    assert "no text column (looked for 'text', 'sentence', 'review', 'content')" in message
    assert "the columns are 'body', 'y', 'id'" in message and "--text-col" in message
    assert "no label column" in message and "--label-col" in message


def test_txt_causal_lm_paragraphs_or_lines(tmp_path: Path) -> None:
    paragraphs = _write(tmp_path / "p.txt", "\nfirst line\nsame paragraph\n\nsecond\n\n\nthird one\n")
    data = read_text_data(paragraphs, label_kind=LabelKind.CONTINUATION, val_fraction=0.34)
    samples = sorted(data.train + data.val, key=lambda s: s.row)
    assert [(s.text, s.row) for s in samples] == [("first line\nsame paragraph", 2), ("second", 5), ("third one", 8)]
    lines = _write(tmp_path / "l.txt", "one\ntwo\nthree\nfour\nfive\n")
    data = read_text_data(lines, label_kind=LabelKind.CONTINUATION)
    assert sorted(s.text for s in data.train + data.val) == ["five", "four", "one", "three", "two"]
    assert len(data.val) == 1 and data.split == "seeded 20% (seed 0)" and data.classes == []
    with pytest.raises(DataError, match="a .txt file has no labels"):
        read_text_data(lines, label_kind=LabelKind.CLASS)


def test_causal_lm_prompt_response(tmp_path: Path) -> None:
    rows = [json.dumps({"prompt": f"say {w}", "response": w}) for w in ["one", "two", "three", "four"]]
    data = read_text_data(_write(tmp_path / "pr.jsonl", "\n".join(rows)), label_kind=LabelKind.CONTINUATION)
    s = sorted(data.train + data.val, key=lambda s: s.row)[0]
    assert (s.text, s.target, s.label) == ("say one", "one", None)
    plain = read_text_data(_csv(tmp_path / "t.csv", [("a b",), ("c d",)], header="text"), label_kind=LabelKind.CONTINUATION)
    assert {s.target for s in plain.train + plain.val} == {None}


def test_seq2seq_columns(tmp_path: Path) -> None:
    rows = [("hello world", "bonjour le monde"), ("yes", "oui"), ("no", "non"), ("one", "un"), ("two", "deux")]
    data = read_text_data(_csv(tmp_path / "s.csv", rows, header="source,target"), label_kind=LabelKind.SEQUENCE)
    pairs = {(s.text, s.target) for s in data.train + data.val}
    assert pairs == set(rows) and data.classes == [] and len(data.val) == 1
    with pytest.raises(DataError, match="missing target in line 3"):
        read_text_data(_csv(tmp_path / "m.csv", [("hello", "salut"), ("yes", "")], header="source,target"),
                       label_kind=LabelKind.SEQUENCE)  # fmt: skip


def test_multilabel_and_regression(tmp_path: Path) -> None:
    rows = [("a", "x|y"), ("b", "y"), ("c", ""), ("d", "z| x"), ("e", "x")]
    data = read_text_data(_csv(tmp_path / "m.csv", rows, header="text,labels"), label_kind=LabelKind.CLASSES, val_fraction=0.2)
    by_text = {s.text: s.label for s in data.train + data.val}
    assert by_text == {"a": ["x", "y"], "b": ["y"], "c": [], "d": ["x", "z"], "e": ["x"]}
    jsonl = _write(tmp_path / "m.jsonl", "\n".join(json.dumps({"text": t, "labels": ls}) for t, ls in
                                                    [("a", ["x", "y"]), ("b", ["y"]), ("c", "x|z")]))  # fmt: skip
    assert {s.text: s.label for s in read_text_data(jsonl, label_kind=LabelKind.CLASSES).train + read_text_data(
        jsonl, label_kind=LabelKind.CLASSES).val}["c"] == ["x", "z"]  # fmt: skip

    reg = _csv(tmp_path / "r.csv", [("a", "1.5"), ("b", " -2 "), ("c", "3e1"), ("d", "0")], header="text,score")
    data = read_text_data(reg, label_kind=LabelKind.VALUE)
    assert sorted(s.label for s in data.train + data.val) == [-2.0, 0.0, 1.5, 30.0] and data.classes == []
    assert set(data.to_dict()["target_stats"]) == {"mean", "std", "min", "max"}
    bad = _csv(tmp_path / "b.csv", [("a", "1"), ("b", "lots"), ("c", "nan"), ("d", "")], header="text,score")
    with pytest.raises(DataError) as info:
        read_text_data(bad, label_kind=LabelKind.VALUE)
    message = str(info.value)
    assert "values that are not numbers (e.g. 'lots') in lines 3, 4" in message
    assert "missing value in line 5" in message


# --- encodings ------------------------------------------------------------------------------


def test_utf8_bom(tmp_path: Path) -> None:
    path = _write(tmp_path / "bom.csv", "\ufefftext,label\n" + "\n".join(",".join(r) for r in _reviews()), "utf-8")
    data = read_text_data(path)
    assert data.encoding == "utf-8-sig" and data.columns["text"] == "text"


def test_latin1_is_read_with_a_warning(tmp_path: Path) -> None:
    rows = [("très bon café", "pos"), ("déçu", "neg"), ("génial", "pos"), ("nul à chier", "neg")]
    path = _csv(tmp_path / "l.csv", [])
    path.write_bytes(("text,label\n" + "\n".join(",".join(r) for r in rows) + "\n").encode("latin-1"))
    with pytest.warns(UserWarning) as record:
        data = read_text_data(path, val_fraction=0.5)
    message = str(record[0].message)
    assert message == (
        f"{path} is not valid UTF-8 (byte 13); it was read as latin-1. If accented letters look wrong, "
        "pass the file's encoding with --encoding (e.g. --encoding cp1252)."
    )
    assert data.encoding == "latin-1" and "très bon café" in {s.text for s in data.train + data.val}
    assert read_text_data(path, encoding="latin-1", val_fraction=0.5).encoding == "latin-1"  # no warning
    with pytest.raises(DataError, match="not valid utf-8 .*--encoding"):
        read_text_data(path, encoding="utf-8")
    with pytest.raises(ConfigError, match="--encoding 'klingon'"):
        read_text_data(path, encoding="klingon")


# --- validation -----------------------------------------------------------------------------


def test_empty_files(tmp_path: Path) -> None:
    for name, content in [("e.csv", ""), ("h.csv", "text,label\n"), ("e.jsonl", "\n\n"), ("e.txt", "  \n")]:
        with pytest.raises(DataError, match="empty|only a header|no JSON objects"):
            read_text_data(_write(tmp_path / name, content), label_kind=LabelKind.CONTINUATION if name.endswith("txt") else LabelKind.CLASS)


def test_all_problems_at_once_with_row_numbers(tmp_path: Path) -> None:
    rows = [*_reviews(), ("   ", "pos"), ("", "neg"), ("orphan text", ""), ("one of a kind", "rare")]
    with pytest.raises(DataError) as info:
        read_text_data(_csv(tmp_path / "r.csv", rows))
    problems = info.value.problems
    assert problems == [
        f"{tmp_path / 'r.csv'}: empty or whitespace-only text in lines 14, 15: fill in the text or remove these rows",
        f"{tmp_path / 'r.csv'}: missing label in line 16: fill them in or remove these rows",
    ]
    fixed = [r for r in rows if r[0].strip() and r[1]]
    with pytest.raises(DataError, match=r"class 'rare' has 1 example \(.*f.csv line 14\).*--val"):
        read_text_data(_csv(tmp_path / "f.csv", fixed))


def test_split_folder_and_unknown_labels(tmp_path: Path) -> None:
    folder = tmp_path / "split"
    folder.mkdir()
    _csv(folder / "train.csv", _reviews())
    _csv(folder / "val.csv", [("nice film", "pos"), ("meh", "neutral")])
    _write(folder / "test.jsonl", json.dumps({"text": "great", "label": "pos"}) + "\n")
    with pytest.raises(DataError, match="val label 'neutral' is not a training class .*line 3"):
        read_text_data(folder)
    _csv(folder / "val.csv", [("nice film", "pos"), ("meh", "neg")])
    data = read_text_data(folder)
    assert data.split == "given" and (len(data.train), len(data.val), len(data.test)) == (12, 2, 1)
    with pytest.raises(DataError, match="already has a validation file"):
        read_text_data(folder, val=folder / "val.csv")
    with pytest.raises(DataError, match="no train.csv"):
        read_text_data(tmp_path / "split" / ".." / "split" / "..")


def test_too_few_classes_and_bad_arguments(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="found 1 class in train"):
        read_text_data(_csv(tmp_path / "one.csv", [("a", "x"), ("b", "x"), ("c", "x")]))
    with pytest.raises(ConfigError, match="label kind 'ner'"):
        read_text_data(tmp_path / "one.csv", label_kind="ner")
    with pytest.raises(ConfigError, match="--val-fraction"):
        read_text_data(tmp_path / "one.csv", val_fraction=1.0)


def test_seeded_split_is_deterministic_and_order_free(tmp_path: Path) -> None:
    rows = [(f"{w} {i}", "pos" if i % 2 else "neg") for i, w in enumerate(["film"] * 40)]
    a = read_text_data(_csv(tmp_path / "a.csv", rows), seed=7)
    b = read_text_data(_csv(tmp_path / "b.csv", rows[::-1]), seed=7)
    assert {s.text for s in a.val} == {s.text for s in b.val}
    assert [s.row for s in a.val] == [s.row for s in read_text_data(tmp_path / "a.csv", seed=7).val]
    assert {s.text for s in a.val} != {s.text for s in read_text_data(tmp_path / "a.csv", seed=8).val}
    assert sorted(s.label for s in a.val) == ["neg"] * 4 + ["pos"] * 4  # stratified: 20% of 20 each


def test_read_texts_for_prediction(tmp_path: Path) -> None:
    lines = _write(tmp_path / "in.txt", "first text\n\nsecond text\n")
    assert [(s.text, s.row) for s in read_texts(lines)] == [("first text", 1), ("second text", 3)]
    table = _csv(tmp_path / "in.csv", [("a", "1"), (" ", "2")], header="review,id")
    with pytest.raises(DataError, match="empty or whitespace-only text in line 3"):
        read_texts(table)


# --- loaders --------------------------------------------------------------------------------


@pytest.fixture
def bert_tokenizer(tiny_bert_dir: Path):
    from graftkit.sources.hf_weights import load_tokenizer

    return load_tokenizer(tiny_bert_dir, "encoder")


def _texts(n: int = 23) -> list[str]:
    words = "the cat sat on a mat and the dog ran under the tree".split()
    return [" ".join(words[: 1 + (i * 7) % len(words)]) for i in range(n)]


def test_text_loader_pads_per_batch_and_keeps_targets(bert_tokenizer) -> None:
    texts = _texts()
    targets = torch.arange(len(texts))
    loader = make_text_loader(texts, targets, bert_tokenizer, max_length=64, batch_size=4, shuffle=False)
    assert len(loader) == 6 and loader.truncated == 0
    widths, seen = [], []
    for inputs, y in loader:
        assert set(inputs) == {"input_ids", "attention_mask"}
        ids, mask = inputs["input_ids"], inputs["attention_mask"]
        widths.append(ids.shape[1])
        assert mask.sum(1).max().item() == ids.shape[1]  # padded to the longest in the batch only
        assert (ids[mask == 0] == bert_tokenizer.pad_token_id).all()
        for row, target in zip(ids, y.tolist()):
            expected = bert_tokenizer(texts[target])["input_ids"]
            assert row[: len(expected)].tolist() == expected
        seen += y.tolist()
    assert widths == sorted(widths, reverse=True) and len(set(widths)) > 1  # bucketed: longest first
    assert seen == loader.order and sorted(seen) == list(range(len(texts)))

    unlabelled = make_text_loader(texts, None, bert_tokenizer, max_length=64, batch_size=4, shuffle=False)
    assert torch.cat([y for _, y in unlabelled]).eq(-1).all()


def test_restore_order_round_trip(bert_tokenizer) -> None:
    texts = _texts()
    loader = make_text_loader(texts, torch.arange(len(texts)), bert_tokenizer, max_length=64, batch_size=5,
                              shuffle=False)  # fmt: skip
    rows = torch.cat([y for _, y in loader])
    assert restore_order(rows, loader.order).tolist() == list(range(len(texts)))
    as_array = restore_order(rows.numpy(), loader.order)
    assert isinstance(as_array, np.ndarray) and as_array.tolist() == list(range(len(texts)))
    assert restore_order(rows.tolist(), loader.order) == list(range(len(texts)))
    lengths = torch.cat([inputs["attention_mask"].sum(1) for inputs, _ in loader])
    restored = restore_order(lengths, loader.order)
    assert restored.tolist() == [len(bert_tokenizer(t)["input_ids"]) for t in texts]


def test_training_batches_depend_only_on_the_seed(bert_tokenizer) -> None:
    texts = _texts(50)
    targets = torch.arange(50)

    def epoch(loader, seed: int) -> list[list[int]]:
        loader.generator.manual_seed(seed)
        return [y.tolist() for _, y in loader]

    a = make_text_loader(texts, targets, bert_tokenizer, max_length=64, batch_size=8, shuffle=True)
    b = make_text_loader(texts, targets, bert_tokenizer, max_length=64, batch_size=8, shuffle=True, seed=99)
    assert epoch(a, 1) == epoch(b, 1) and epoch(a, 1) != epoch(a, 2)
    batches = epoch(a, 3)
    assert sorted(i for batch in batches for i in batch) == list(range(50)) and len(batches) == len(a) == 7
    # Without a reseed, the next epoch continues the generator: a different order.
    assert [y.tolist() for _, y in a] != batches
    plain = make_text_loader(texts, targets, bert_tokenizer, max_length=64, batch_size=8, shuffle=True, bucket=False)
    assert sorted(i for _, y in plain for i in y.tolist()) == list(range(50))


def test_truncation_is_counted(bert_tokenizer) -> None:
    texts = ["the cat", " ".join(["film"] * 30), " ".join(["dog"] * 9)]
    loader = make_text_loader(texts, None, bert_tokenizer, max_length=8, batch_size=3, shuffle=False)
    inputs, _ = next(iter(loader))
    assert loader.truncated == 2 and inputs["input_ids"].shape == (3, 8)
    assert inputs["input_ids"][0, -1].item() == bert_tokenizer.sep_token_id  # [SEP] kept when cut


def test_seq2seq_loader_labels(tiny_t5_dir: Path) -> None:
    from graftkit.sources.hf_weights import load_tokenizer

    tok = load_tokenizer(tiny_t5_dir, "encoder-decoder")
    sources = ["translate english french hello world", "yes", "one two three four five"]
    targets = ["hello", "yes no yes no", "one"]
    loader = make_seq2seq_loader(sources, targets, tok, max_source_length=64, max_target_length=3, batch_size=3,
                                 shuffle=False)  # fmt: skip
    inputs, labels = next(iter(loader))
    assert set(inputs) == {"input_ids", "attention_mask", "labels"} and labels is inputs["labels"]
    row = labels[loader.order.index(0)]  # "hello" + </s>, then -100 padding
    assert row.tolist() == [tok.convert_tokens_to_ids("hello"), tok.eos_token_id, -100]
    assert loader.truncated == 1  # "yes no yes no" + </s> cut at 3 tokens
    assert (inputs["input_ids"][inputs["attention_mask"] == 0] == tok.pad_token_id).all()


def test_causal_lm_loader_masks_padding_and_prompts(tiny_gpt2_dir: Path) -> None:
    from graftkit.sources.hf_weights import load_tokenizer

    tok = load_tokenizer(tiny_gpt2_dir, "decoder")
    eos = tok.eos_token_id
    loader = make_causal_lm_loader(["the cat sat", "a dog"], tok, max_length=16, batch_size=2, shuffle=False)
    inputs, labels = next(iter(loader))
    ids, mask = inputs["input_ids"], inputs["attention_mask"]
    assert ids[0].tolist()[-1] == eos and mask[0].all()  # eos appended, then the shorter row pads with eos
    assert labels[1].tolist() == [ids[1, 0].item(), ids[1, 1].item(), eos, -100]
    assert (labels[mask == 0] == -100).all() and torch.equal(labels[mask == 1], ids[mask == 1])

    loader = make_causal_lm_loader(["translate hello", "translate one two"], tok, max_length=16, batch_size=2,
                                   shuffle=False, responses=["hello", "one two"])  # fmt: skip
    inputs, labels = next(iter(loader))
    first = loader.order.index(0)  # the batch row holding example 0
    hello, translate = tok.convert_tokens_to_ids("hello"), tok.convert_tokens_to_ids("translate")
    assert inputs["input_ids"][first].tolist() == [translate, hello, hello, eos, eos, eos]  # eos pads
    assert labels[first].tolist() == [-100, -100, hello, eos, -100, -100]  # loss on the response + eos only

    long = make_causal_lm_loader([" ".join(["film"] * 20)], tok, max_length=8, batch_size=1, shuffle=False,
                                 responses=["one two three four five six"])  # fmt: skip
    inputs, labels = next(iter(long))
    assert inputs["input_ids"].shape == (1, 8) and long.truncated == 1
    assert (labels[0] != -100).sum().item() == 4  # half the length kept for the response

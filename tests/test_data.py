"""graftkit.data: decoding every pixel mode, readers, validation, splits, transforms, loaders."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from graftkit.backbones.base import ImagePreprocess
from graftkit.data import (
    SUPPORTED_EXTENSIONS,
    ImageData,
    ImageFileDataset,
    Sample,
    build_batch_mix,
    build_transform,
    check_image,
    default_num_workers,
    list_image_files,
    load_image,
    make_loader,
    read_image_data,
    read_labelled_images,
)
from graftkit.errors import ConfigError, DataError

RED, GREEN, BLUE, WHITE = (255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 255)


def _rgb(size=(24, 16), color=(200, 30, 60)) -> Image.Image:
    return Image.new("RGB", size, color)


def _save_jpeg(path: Path, color=(200, 30, 60), size=(24, 16)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    _rgb(size, color).save(path, quality=95)
    return path


def _assert_color(img: torch.Tensor, y: int, x: int, color, tol: int = 6) -> None:
    got = img[:, y, x].tolist()
    assert all(abs(g - c) <= tol for g, c in zip(got, color)), f"pixel ({y},{x}) is {got}, expected {color}"


def _assert_rgb_uint8(img: torch.Tensor, h: int, w: int) -> None:
    assert img.dtype == torch.uint8
    assert tuple(img.shape) == (3, h, w)


# ----------------------------------------------------------------------------------------------
# Decoding


@pytest.mark.parametrize("ext", [".png", ".bmp", ".gif", ".tiff", ".webp"])
def test_load_image_grayscale_l(tmp_path, ext):
    path = tmp_path / f"grey{ext}"
    kwargs = {"lossless": True} if ext == ".webp" else {}
    Image.new("L", (20, 10), 77).save(path, **kwargs)
    img = load_image(path)
    _assert_rgb_uint8(img, 10, 20)
    _assert_color(img, 5, 5, (77, 77, 77), tol=1)


def test_load_image_mode_1_and_la(tmp_path):
    bw = Image.new("1", (8, 6), 1)
    bw.save(tmp_path / "bw.png")
    _assert_color(load_image(tmp_path / "bw.png"), 0, 0, WHITE, tol=0)

    la = Image.new("LA", (8, 6), (0, 255))  # opaque black
    la.putpixel((0, 0), (0, 0))  # fully transparent -> white
    la.save(tmp_path / "la.png")
    img = load_image(tmp_path / "la.png")
    _assert_rgb_uint8(img, 6, 8)
    _assert_color(img, 0, 0, WHITE, tol=0)
    _assert_color(img, 3, 3, (0, 0, 0), tol=0)


def test_load_image_rgba_is_composited_on_white(tmp_path):
    im = Image.new("RGBA", (10, 10), (255, 0, 0, 255))
    im.putpixel((0, 0), (0, 0, 255, 0))  # transparent
    im.putpixel((1, 0), (0, 0, 0, 128))  # half-transparent black -> mid grey
    im.save(tmp_path / "rgba.png")
    img = load_image(tmp_path / "rgba.png")
    _assert_rgb_uint8(img, 10, 10)
    _assert_color(img, 5, 5, RED, tol=0)
    _assert_color(img, 0, 0, WHITE, tol=0)
    _assert_color(img, 0, 1, (127, 127, 127), tol=2)


@pytest.mark.parametrize("ext", [".png", ".gif"])
def test_load_image_palette_with_transparency(tmp_path, ext):
    im = Image.new("P", (10, 10), 1)
    im.putpalette([0, 0, 0, 0, 255, 0] + [0, 0, 0] * 254)  # index 0 black, index 1 green
    im.putpixel((0, 0), 0)
    im.save(tmp_path / f"p{ext}", transparency=0)  # index 0 is transparent
    assert Image.open(tmp_path / f"p{ext}").mode == "P"
    img = load_image(tmp_path / f"p{ext}")
    _assert_rgb_uint8(img, 10, 10)
    _assert_color(img, 0, 0, WHITE, tol=0)
    _assert_color(img, 5, 5, GREEN, tol=0)


def test_load_image_palette_without_transparency(tmp_path):
    _rgb((10, 10), BLUE).convert("P", palette=Image.Palette.ADAPTIVE).save(tmp_path / "p.png")
    _assert_color(load_image(tmp_path / "p.png"), 4, 4, BLUE, tol=0)


def test_load_image_cmyk_jpeg_and_tiff(tmp_path):
    color = (200, 30, 60)
    cmyk = _rgb((16, 12), color).convert("CMYK")
    cmyk.save(tmp_path / "cmyk.jpg", quality=100)
    cmyk.save(tmp_path / "cmyk.tiff")
    assert Image.open(tmp_path / "cmyk.jpg").mode == "CMYK"
    for name in ("cmyk.jpg", "cmyk.tiff"):
        img = load_image(tmp_path / name)
        _assert_rgb_uint8(img, 12, 16)
        _assert_color(img, 6, 8, color, tol=6)


def test_load_image_sixteen_bit_keeps_full_depth(tmp_path):
    values = np.array([[0, 257, 32896, 65535]], dtype=np.uint16)
    Image.fromarray(values).save(tmp_path / "g16.png")
    Image.fromarray(values).save(tmp_path / "g16.tiff")
    assert Image.open(tmp_path / "g16.png").mode.startswith("I")
    for name in ("g16.png", "g16.tiff"):
        img = load_image(tmp_path / name)
        assert img.shape == (3, 1, 4) and img.dtype == torch.float32  # not uint8: no 8-bit truncation
        assert torch.allclose(img[0, 0], torch.tensor([0, 257, 32896, 65535]) / 65535.0)
        assert torch.equal(img[0], img[1]) and torch.equal(img[1], img[2])


def test_load_image_sixteen_bit_big_endian_and_int32(tmp_path):
    big = Image.frombytes("I;16B", (2, 1), np.array([0, 65535], dtype=">u2").tobytes())
    big.save(tmp_path / "big.tiff")
    assert load_image(tmp_path / "big.tiff")[0, 0].tolist() == [0.0, 1.0]
    as_int = Image.fromarray(np.array([[0, 65535, 70000]], dtype=np.int32), mode="I")
    as_int.save(tmp_path / "int.tiff")
    assert load_image(tmp_path / "int.tiff")[0, 0].tolist() == [0.0, 1.0, 1.0]


def test_load_image_float_mode_f(tmp_path):
    unit = Image.fromarray(np.array([[0.0, 0.5, 1.0]], dtype=np.float32), mode="F")
    unit.save(tmp_path / "unit.tiff")
    assert load_image(tmp_path / "unit.tiff")[0, 0].tolist() == [0.0, 0.5, 1.0]
    wide = Image.fromarray(np.array([[-3.0, 100.0, 300.0]], dtype=np.float32), mode="F")
    wide.save(tmp_path / "wide.tiff")
    assert torch.allclose(load_image(tmp_path / "wide.tiff")[0, 0], torch.tensor([0.0, 100 / 255, 1.0]))


def _oriented(size=(40, 20)) -> Image.Image:
    """Blue image with a red top-left corner (in stored pixel order)."""
    im = Image.new("RGB", size, BLUE)
    im.paste(RED, (0, 0, 8, 8))
    return im


@pytest.mark.parametrize("ext", [".jpg", ".png", ".webp", ".tiff"])
def test_load_image_applies_exif_orientation(tmp_path, ext):
    im = _oriented()
    exif = im.getexif()
    exif[0x0112] = 6  # stored image must be rotated 90 degrees clockwise to display upright
    path = tmp_path / f"rot{ext}"
    kwargs = {"quality": 95} if ext in (".jpg", ".webp") else {}
    im.save(path, exif=exif, **kwargs)
    img = load_image(path)
    _assert_rgb_uint8(img, 40, 20)  # width and height swapped
    _assert_color(img, 2, 17, RED, tol=40)  # the red corner moved to the top right
    _assert_color(img, 37, 2, BLUE, tol=40)


def test_load_image_grayscale_jpeg_and_rgb_jpeg(tmp_path):
    Image.new("L", (12, 8), 90).save(tmp_path / "g.jpg")
    _assert_color(load_image(tmp_path / "g.jpg"), 4, 4, (90, 90, 90), tol=2)
    img = load_image(_save_jpeg(tmp_path / "c.jpeg", color=(10, 200, 100)))
    _assert_rgb_uint8(img, 16, 24)
    _assert_color(img, 8, 8, (10, 200, 100))


def test_load_image_uses_content_not_extension(tmp_path):
    Image.new("RGB", (5, 4), GREEN).save(tmp_path / "really_png.jpg", format="PNG")
    _assert_color(load_image(tmp_path / "really_png.jpg"), 1, 1, GREEN, tol=0)


def test_load_image_errors_name_the_file(tmp_path):
    (tmp_path / "empty.jpg").write_bytes(b"")
    (tmp_path / "junk.png").write_bytes(b"this is not an image at all")
    good = _save_jpeg(tmp_path / "good.jpg", size=(64, 64)).read_bytes()
    (tmp_path / "trunc.jpg").write_bytes(good[: len(good) // 2])
    for name, fragment in [
        ("empty.jpg", "file is empty (0 bytes)"),
        ("junk.png", "not a recognised image format"),
        ("trunc.jpg", "cannot be decoded"),
        ("missing.jpg", "cannot be read"),
    ]:
        with pytest.raises(DataError) as e:
            load_image(tmp_path / name)
        assert name in str(e.value) and fragment in str(e.value)


def test_check_image(tmp_path):
    assert check_image(_save_jpeg(tmp_path / "ok.jpg")) is None
    Image.new("L", (4, 4)).save(tmp_path / "ok.png")
    assert check_image(tmp_path / "ok.png") is None
    (tmp_path / "empty.png").write_bytes(b"")
    assert "file is empty" in check_image(tmp_path / "empty.png")
    (tmp_path / "junk.jpg").write_bytes(b"\xff\xd8\xffgarbage" * 10)
    assert "junk.jpg" in check_image(tmp_path / "junk.jpg")
    good = _save_jpeg(tmp_path / "big.jpg", size=(64, 64)).read_bytes()
    (tmp_path / "trunc.jpg").write_bytes(good[: len(good) // 2])
    assert "trunc.jpg: cannot be decoded" in check_image(tmp_path / "trunc.jpg")
    (tmp_path / "padded.jpg").write_bytes(good + b"\x00" * 10)  # trailing padding is fine
    assert check_image(tmp_path / "padded.jpg") is None
    png = (tmp_path / "ok.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(png[:-20])
    assert check_image(tmp_path / "cut.png") is not None
    assert ".jpg" in SUPPORTED_EXTENSIONS and ".png" in SUPPORTED_EXTENSIONS


# ----------------------------------------------------------------------------------------------
# Readers


def _class_folder(root: Path, counts: dict[str, int], prefix: str = "") -> Path:
    for c, (label, n) in enumerate(counts.items()):
        for i in range(n):  # distinct pixels per class and image: no file is a copy of another
            _save_jpeg(root / label / f"{prefix}{label}_{i:03d}.jpg", color=(10 * i % 255, 100, 50 + 40 * c))
    return root


def test_read_class_folder_makes_seeded_stratified_split(tmp_path):
    root = _class_folder(tmp_path / "data", {"cat": 10, "dog": 5, "owl": 2})
    (root / ".DS_Store").write_bytes(b"junk")
    (root / "cat" / ".DS_Store").write_bytes(b"junk")
    (root / "cat" / "._cat_000.jpg").write_bytes(b"appledouble")
    data = read_image_data(root, val_fraction=0.2, seed=0)
    assert isinstance(data, ImageData)
    assert data.classes == ["cat", "dog", "owl"]
    assert data.layout == "class-folder" and data.split == "seeded stratified 20% (seed 0)"
    counts = data.counts()
    assert counts["val"] == {"cat": 2, "dog": 1, "owl": 1}
    assert counts["train"] == {"cat": 8, "dog": 4, "owl": 1}
    assert data.test == []
    assert not ({s.path for s in data.train} & {s.path for s in data.val})
    assert all(s.path.is_absolute() for s in data.train)

    again = read_image_data(root, val_fraction=0.2, seed=0)
    assert again.val == data.val and again.train == data.train
    other_seeds = [read_image_data(root, seed=s).val for s in range(1, 6)]
    assert any(v != data.val for v in other_seeds)

    d = data.to_dict(include_files=True)
    assert d["totals"] == {"train": 13, "val": 4, "test": 0}
    assert d["files"]["val"][0][0].count("/") == 1  # relative: "<class>/<file>"
    json.dumps(d)
    assert "owl" in data.summary()


def test_split_keeps_one_train_and_one_val_per_class(tmp_path):
    root = _class_folder(tmp_path / "data", {"a": 2, "b": 3, "c": 40})
    for frac in (0.05, 0.5, 0.95):
        data = read_image_data(root, val_fraction=frac, seed=3)
        counts = data.counts()
        assert all(counts["train"][c] >= 1 and counts["val"][c] >= 1 for c in data.classes)
    assert read_image_data(root, val_fraction=0.25).counts()["val"]["c"] == 10


def test_read_split_folder(tmp_path):
    root = tmp_path / "data"
    _class_folder(root / "train", {"cat": 3, "dog": 3})
    _class_folder(root / "valid", {"cat": 1, "dog": 2}, prefix="v")
    _class_folder(root / "test", {"dog": 1}, prefix="t")
    data = read_image_data(root)
    assert data.layout == "split-folder" and data.split == "given"
    assert [len(data.train), len(data.val), len(data.test)] == [6, 3, 1]
    assert data.classes == ["cat", "dog"]


def test_read_split_folder_without_val_splits_train(tmp_path):
    root = tmp_path / "data"
    _class_folder(root / "train", {"cat": 5, "dog": 5})
    _class_folder(root / "test", {"cat": 1}, prefix="t")
    data = read_image_data(root, seed=1)
    assert data.split.startswith("seeded stratified")
    assert len(data.val) == 2 and len(data.test) == 1


def test_read_separate_val_folder(tmp_path):
    train = _class_folder(tmp_path / "train_only", {"cat": 3, "dog": 3})
    val = _class_folder(tmp_path / "holdout", {"cat": 1, "dog": 1}, prefix="v")
    data = read_image_data(train, val=val)
    assert data.split == "given" and len(data.val) == 2 and data.val_root == val.absolute()


def _manifest_files(root: Path) -> list[tuple[str, str, str]]:
    rows = []
    for c, label in enumerate(("cat", "dog")):
        for i in range(4):
            rel = f"img/{label}{i}.jpg"
            _save_jpeg(root / rel, color=(200, 30 * i, 60 + 100 * c))  # distinct files
            rows.append((rel, label, "val" if i == 0 else "train"))
    return rows


def test_read_csv_manifest(tmp_path):
    rows = _manifest_files(tmp_path)
    (tmp_path / "data.csv").write_text("path,label\n" + "".join(f"{p},{l}\n" for p, l, _ in rows))
    data = read_image_data(tmp_path / "data.csv", seed=0)
    assert data.layout == "manifest" and data.root == tmp_path.absolute()
    assert data.classes == ["cat", "dog"] and len(data.train) + len(data.val) == 8
    assert data.split.startswith("seeded stratified")


def test_read_csv_manifest_split_column(tmp_path):
    rows = _manifest_files(tmp_path)
    (tmp_path / "data.csv").write_text("Path,Label,Split\n" + "".join(f"{p},{l},{s}\n" for p, l, s in rows))
    data = read_image_data(tmp_path / "data.csv")
    assert data.split == "given" and len(data.val) == 2 and len(data.train) == 6


def test_read_jsonl_manifest(tmp_path):
    rows = _manifest_files(tmp_path)
    lines = [json.dumps({"path": p, "label": l, "split": s}) for p, l, s in rows]
    (tmp_path / "data.jsonl").write_text("\n".join(lines) + "\n\n")
    data = read_image_data(tmp_path / "data.jsonl")
    assert data.split == "given" and len(data.val) == 2 and data.classes == ["cat", "dog"]


def test_all_problems_reported_at_once(tmp_path):
    root = tmp_path / "data"
    _class_folder(root / "train", {"cat": 3, "dog": 3, "owl": 1})
    (root / "train" / "cat" / "broken.jpg").write_bytes(b"\xff\xd8\xff not really a jpeg")
    (root / "train" / "dog" / "zero.png").write_bytes(b"")
    (root / "train" / "dog" / "notes.txt").write_text("hello")
    (root / "train" / "empty").mkdir()
    _class_folder(root / "val", {"cat": 1, "fox": 2}, prefix="v")
    with pytest.raises(DataError) as e:
        read_image_data(root)
    text = str(e.value)
    fragments = [
        "broken.jpg: not a recognised image format",
        "zero.png: file is empty (0 bytes)",
        "class folder train/empty/",
        "has no images: add images or remove the folder",
        "class 'owl' has 1 image in train (need at least 2): add images or remove the folder",
        "val label 'fox' is not a training class (2 file(s)",
        "notes.txt: unsupported file type '.txt'",
    ]
    for fragment in fragments:
        assert fragment in text, f"{fragment!r} not in:\n{text}"
    assert len(e.value.problems) == 6  # the empty-class message holds two of the fragments
    assert ".DS_Store" not in text


def test_one_image_class_in_class_folder(tmp_path):
    root = _class_folder(tmp_path / "data", {"cat": 1, "dog": 3})
    with pytest.raises(DataError, match=r"class 'cat' has 1 image \(need at least 2\): add images or remove the folder"):
        read_image_data(root)


def test_fewer_than_two_classes(tmp_path):
    root = _class_folder(tmp_path / "data", {"cat": 3})
    with pytest.raises(DataError, match="found 1 class .* needs at least 2"):
        read_image_data(root)


def test_manifest_missing_column_and_files(tmp_path):
    _save_jpeg(tmp_path / "a.jpg")
    (tmp_path / "nolabel.csv").write_text("path,class\na.jpg,cat\n")
    with pytest.raises(DataError) as e:
        read_image_data(tmp_path / "nolabel.csv")
    assert "missing column 'label' (found: class, path): add a 'label' column" in str(e.value)

    (tmp_path / "m.csv").write_text("path,label\na.jpg,cat\nb.jpg,cat\nc.jpg,dog\na.jpg,dog\n,dog\nd.pdf,dog\n")
    with pytest.raises(DataError) as e:
        read_image_data(tmp_path / "m.csv")
    text = str(e.value)
    assert "line 3: file 'b.jpg' does not exist" in text
    assert "line 4: file 'c.jpg' does not exist" in text
    assert "line 5: 'a.jpg' is already listed at line 2" in text
    assert "line 6: empty 'path'" in text
    assert "line 7: 'd.pdf' has unsupported file type '.pdf'" in text

    (tmp_path / "bad.jsonl").write_text('{"path": "a.jpg"}\nnot json\n')
    with pytest.raises(DataError) as e:
        read_image_data(tmp_path / "bad.jsonl")
    assert "missing column 'label'" in str(e.value) and "line 2: not valid JSON" in str(e.value)


def test_problem_lists_are_capped_per_kind(tmp_path):
    root = _class_folder(tmp_path / "data", {"cat": 2, "dog": 2})
    for i in range(25):
        (root / "cat" / f"bad{i:02d}.jpg").write_bytes(b"")
    with pytest.raises(DataError) as e:
        read_image_data(root)
    assert len(e.value.problems) == 21
    assert "... and 5 more unreadable files" in e.value.problems[-1]


def test_missing_path_and_bad_fraction(tmp_path):
    with pytest.raises(DataError, match="no such file or folder"):
        read_image_data(tmp_path / "nope")
    with pytest.raises(ConfigError, match="--val-fraction"):
        read_image_data(tmp_path, val_fraction=1.5)


def test_read_labelled_images(tmp_path):
    root = _class_folder(tmp_path / "eval", {"cat": 1, "dog": 2})
    samples, classes = read_labelled_images(root, classes=["dog", "cat", "owl"])
    assert classes == ["dog", "cat", "owl"] and len(samples) == 3
    assert all(isinstance(s, Sample) for s in samples)
    samples, classes = read_labelled_images(root)
    assert classes == ["cat", "dog"]

    _class_folder(root, {"fox": 2})
    with pytest.raises(DataError) as e:
        read_labelled_images(root, classes=["cat", "dog"])
    assert "label 'fox' is not one of the run's classes (cat, dog) (2 file(s):" in str(e.value) and "fox_000.jpg" in str(e.value)


def test_read_labelled_images_split_folder_needs_a_split(tmp_path):
    root = tmp_path / "data"
    _class_folder(root / "train", {"cat": 2, "dog": 2})
    _class_folder(root / "test", {"cat": 1, "dog": 1}, prefix="t")
    with pytest.raises(DataError, match="choose one with split='test'"):
        read_labelled_images(root)
    samples, _ = read_labelled_images(root, ["cat", "dog"], split="test")
    assert len(samples) == 2
    with pytest.raises(DataError, match="has no 'val' split"):
        read_labelled_images(root, split="val")


def test_list_image_files(tmp_path):
    a = _save_jpeg(tmp_path / "a.jpg")
    _save_jpeg(tmp_path / "folder" / "sub" / "b.jpg")
    _save_jpeg(tmp_path / "folder" / "c.png")
    (tmp_path / "folder" / "readme.txt").write_text("x")
    (tmp_path / "folder" / ".hidden.jpg").write_bytes(b"")
    got = list_image_files([a, tmp_path / "folder", str(tmp_path / "**" / "*.png"), a])
    assert got == [a, tmp_path / "folder" / "c.png", tmp_path / "folder" / "sub" / "b.jpg"]
    with pytest.raises(DataError) as e:
        list_image_files([tmp_path / "missing.jpg", str(tmp_path / "*.gif"), tmp_path / "folder" / "readme.txt"])
    assert len(e.value.problems) == 3 and "missing.jpg: no such file or folder" in str(e.value)


# ----------------------------------------------------------------------------------------------
# Transforms, datasets, loaders


@pytest.mark.parametrize("augment", ["none", "light", "strong", "randaugment"])
@pytest.mark.parametrize("train", [False, True])
def test_transform_presets_shape_and_dtype(augment, train):
    pre = ImagePreprocess(input_size=32, interpolation="bicubic")
    tf = build_transform(pre, augment, train=train)
    image = torch.randint(0, 256, (3, 45, 60), dtype=torch.uint8)
    out = tf(image)
    assert out.shape == (3, 32, 32) and out.dtype == torch.float32 and out.is_contiguous()


def test_eval_transform_matches_reference_pipeline():
    from torchvision.transforms import v2

    pre = ImagePreprocess(input_size=28, crop_pct=0.875)
    image = torch.randint(0, 256, (40, 50, 3), dtype=torch.uint8).permute(2, 0, 1)  # channels-last strides
    reference = v2.Compose(
        [
            v2.Resize(32, antialias=True),  # round(28 / 0.875)
            v2.CenterCrop(28),
            v2.ToDtype(torch.float32, scale=True),
            v2.Normalize(list(pre.mean), list(pre.std)),
        ]
    )
    out = build_transform(pre)(image)
    torch.testing.assert_close(out, reference(image), atol=1e-5, rtol=0)
    assert torch.equal(build_transform(pre, "strong", train=False)(image), out)


def test_unknown_augment_preset():
    with pytest.raises(ConfigError) as e:
        build_transform(ImagePreprocess(), "heavy", train=True)
    assert "--augment 'heavy'" in str(e.value) and "none, light, strong, randaugment" in str(e.value)


@pytest.mark.parametrize("mix", ["mixup", "cutmix", "mixup-cutmix"])
def test_batch_mix_gives_soft_targets(mix):
    mixer = build_batch_mix(mix, num_classes=5)
    images = torch.randn(8, 3, 16, 16)
    labels = torch.arange(8) % 5
    out, targets = mixer(images, labels)
    assert out.shape == images.shape and targets.shape == (8, 5)
    torch.testing.assert_close(targets.sum(dim=1), torch.ones(8))
    assert build_batch_mix(None, 5) is None
    with pytest.raises(ConfigError, match="--mix 'mixop'"):
        build_batch_mix("mixop", 5)


def test_dataset_and_reproducible_loader(tmp_path):
    root = _class_folder(tmp_path / "data", {"cat": 4, "dog": 4})
    data = read_image_data(root, val_fraction=0.25)
    targets = torch.tensor([data.class_to_idx[s.label] for s in data.train])
    ds = ImageFileDataset(data.train, targets, build_transform(ImagePreprocess(input_size=16), "light", train=True))
    image, label = ds[0]
    assert image.shape == (3, 16, 16) and label == data.class_to_idx[data.train[0].label]
    assert ds.targets is targets
    with pytest.raises(ValueError, match="target rows"):
        ImageFileDataset(data.train, targets[:-1])

    def epoch(workers: int):
        torch.manual_seed(123)  # main-process augmentation uses the global generator
        loader = make_loader(ds, batch_size=4, shuffle=True, num_workers=workers, seed=7)
        return [(x.clone(), y.clone()) for x, y in loader]

    first, second = epoch(0), epoch(0)
    assert all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in zip(first, second))
    w1, w2 = epoch(1), epoch(1)
    assert all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in zip(w1, w2))

    raw = ImageFileDataset(data.val, None)
    img, label = raw[0]
    assert img.dtype == torch.uint8 and label == -1
    assert 0 <= default_num_workers() <= 4

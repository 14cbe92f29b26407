"""WebDataset tar shards as image training data: `graft train shards/`, `graft train data-000.tar`,
or a brace pattern `graft train 'data-{000..009}.tar'`.

A shard is a plain (uncompressed) tar file; a sample is the members that share a key, the member
name up to the first dot of its base name (WebDataset's convention): `000123.jpg` (or `.png`, any
image extension graftkit reads) plus its label, `000123.cls` (the class as text, e.g. `3`),
`000123.txt` (a class name, `a|b` for multi-label, a number for regression) or `000123.json` (a
JSON value, or an object with a `label` key).

Nothing of the data set is loaded into memory: reading the shards stores, per sample, where its
image lies in its shard (`ShardMember`: shard, offset, size) and its label; images are read from
their offset when a batch needs them, so shuffling, the seeded validation split and the feature
cache work as for files. Validation streams through the shards once with a progress bar, checking
every image and label, and reports every problem at once with the shard and the key.

Read with the stdlib `tarfile` (no dependency): the `webdataset` package streams shards
sequentially, which suits object stores but gives up random access; here shards are local files.
Compressed shards (`.tar.gz`) are refused: a member of a compressed tar cannot be read by offset.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import tarfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Iterator

from graftkit.data import core
from graftkit.data._problems import Problems
from graftkit.data.images import SUPPORTED_EXTENSIONS
from graftkit.data.labels import LabelKind
from graftkit.errors import DataError

LABEL_EXTENSIONS = ("cls", "json", "txt")
"""Label members of a sample, in the order one is chosen when a sample has several."""
SPLIT_PREFIXES = {"train": "train", "val": "val", "valid": "val", "validation": "val", "test": "test"}
"""Shard name prefixes that put a folder's shards into splits (`train-000.tar`, `val-000.tar`)."""


@dataclass(frozen=True, slots=True, order=True)
class ShardMember:
    """An image inside a tar shard, read by offset: stands in for a file path in a `Sample`."""

    shard: Path
    name: str
    """The member's name in the tar (`000123.jpg`)."""
    offset: int
    """Where its bytes start in the shard."""
    size: int
    sha256: str = field(default="", compare=False)
    """SHA-256 of its bytes, taken while the shards were validated: the feature cache's key (the
    same as `file_digest` of the image as a file) and the duplicate check's."""

    @property
    def key(self) -> str:
        return sample_key(self.name)[0]

    @property
    def suffix(self) -> str:
        return PurePosixPath(self.name).suffix

    def read_bytes(self) -> bytes:
        """The member's bytes (one seek and one read of the shard).

        Raises:
            DataError: The shard is gone or shorter than its index says.
        """
        try:
            with open(self.shard, "rb") as f:
                f.seek(self.offset)
                data = f.read(self.size)
        except OSError as e:
            raise DataError([f"{self.shard}: cannot be read ({e.strerror or e}): check the path"], str(self.shard)) from e
        if len(data) != self.size:
            raise DataError([f"{self}: the shard ends inside this member (truncated tar): rewrite the shard"], str(self.shard))
        return data

    def relative_to(self, root: Path) -> PurePosixPath:
        """`SHARD:MEMBER` with the shard relative to `root` (how split.json lists the sample)."""
        try:
            shard = self.shard.relative_to(root).as_posix()
        except ValueError:
            shard = self.shard.as_posix()
        return PurePosixPath(f"{shard}:{self.name}")

    def __str__(self) -> str:
        return f"{self.shard}:{self.name}"


def sample_key(name: str) -> tuple[str, str]:
    """`(key, extension)` of a member name: `dir/000123.seg.png` -> (`dir/000123`, `seg.png`)."""
    folder, _, base = name.rpartition("/")
    stem, _, ext = base.partition(".")
    return (f"{folder}/{stem}" if folder else stem), ext.lower()


def expand_braces(pattern: str) -> list[str]:
    """Expand `{000..009}` (zero-padded ranges) and `{a,b}` lists, as WebDataset's shard specs do.

    Example:
        >>> expand_braces("data-{00..02}.tar")
        ['data-00.tar', 'data-01.tar', 'data-02.tar']
    """
    match = re.search(r"\{([^{}]*)\}", pattern)
    if match is None:
        return [pattern]
    body, head, tail = match.group(1), pattern[: match.start()], pattern[match.end() :]
    ranged = re.fullmatch(r"(\d+)\.\.(\d+)", body)
    if ranged:
        lo, hi = ranged.group(1), ranged.group(2)
        width = len(lo) if lo.startswith("0") else 0
        step = 1 if int(hi) >= int(lo) else -1
        choices = [str(i).zfill(width) for i in range(int(lo), int(hi) + step, step)]
    else:
        choices = body.split(",")
    return [out for choice in choices for out in expand_braces(head + choice + tail)]


def is_shard_source(path: str | os.PathLike[str]) -> bool:
    """Whether `path` names tar shards: a `.tar` file, a brace pattern, or a folder whose only
    entries are `.tar` files (hidden files aside)."""
    text = str(path)
    if text.endswith((".tar", ".tar.gz", ".tgz")) or ("{" in text and ".tar" in text):
        return True
    folder = Path(path)
    if not folder.is_dir():
        return False
    entries = [p for p in folder.iterdir() if not p.name.startswith(".")]
    return bool(entries) and all(p.is_file() and p.name.endswith(".tar") for p in entries)


def shard_paths(source: str | os.PathLike[str]) -> list[Path]:
    """The shard files `source` names (a folder: its `*.tar`, sorted; a pattern: expanded).

    Raises:
        DataError: No shard, a shard that does not exist, or a compressed one.
    """
    text = str(source)
    if Path(text).is_dir():
        paths = sorted(Path(text).glob("*.tar"))
    else:
        paths = [Path(p) for p in expand_braces(text)]
    problems = []
    if not paths:
        problems.append(f"{text}: no .tar shards found: write shards as NAME-000.tar, NAME-001.tar, ...")
    for p in paths:
        if p.name.endswith((".tar.gz", ".tgz")):
            problems.append(f"{p}: compressed shards cannot be read by offset: decompress them (gunzip) to plain .tar files")
        elif not p.is_file():
            problems.append(f"{p}: shard not found (from {text}): check the path or the {{000..NNN}} range")
    if problems:
        raise DataError(problems, text)
    return [p.expanduser().absolute() for p in paths]


def read_shards(paths: list[Path], kind: LabelKind, problems: Problems, bar: Any = None) -> list[Any]:
    """Every sample of `paths` as a `Sample(ShardMember, label)`, streaming through each shard once:
    each image is checked as it passes (`check_image_bytes`) and its label parsed as `kind` says.
    Problems (unreadable shards, corrupt images, samples without a label or image, bad labels,
    repeated keys) go to `problems`, each naming the shard and the key."""
    from graftkit.data.readers import Sample

    samples = []
    for path in paths:
        for key, image, label_raw, issue in _shard_samples(path, bar):
            where = f"{path.name}: sample {key!r}"
            if issue is not None:
                problems.add("bad samples", f"{where}: {issue}")
                continue
            label = core.parse_label(label_raw, kind)
            if isinstance(label, core.BadLabel):
                problems.add("bad labels", f"{where}: {label.what} ({str(label_raw)[:30]!r}): {label.fix}")
                continue
            samples.append(Sample(image, label))
    return samples


def _shard_samples(path: Path, bar: Any) -> Iterator[tuple[str, ShardMember | None, Any, str | None]]:
    """`(key, image, raw label, problem)` per sample of one shard, in tar order. Members of a sample
    are adjacent (how WebDataset writes them); a key seen again later is a problem. `bar` advances
    by the shard's bytes as they are read."""
    size = path.stat().st_size
    seen: set[str] = set()
    group: dict[str, tuple[tarfile.TarInfo, bytes | None]] = {}
    current, cut, done = None, False, 0
    try:
        tar = tarfile.open(path, "r:")  # uncompressed: members have offsets
    except (tarfile.TarError, OSError) as e:
        yield "-", None, None, f"not a readable tar file ({e}): rewrite the shard"
        return
    with tar:
        while True:
            try:
                info = tar.next()
            except (tarfile.TarError, OSError) as e:
                yield current or "-", None, None, f"the tar is damaged after this member ({e}): rewrite the shard"
                info = None
            tar.members.clear()  # tarfile keeps every header it read; one sample's are enough here
            if info is not None and not info.isfile():
                continue
            key, ext = sample_key(info.name) if info is not None else (None, "")
            if key != current and current is not None:
                if not cut:
                    yield _sample(path, current, group)
                group, cut = {}, False
            if info is None:
                if bar is not None:
                    bar.advance(size - done)
                return
            if key != current and key in seen:
                yield key, None, None, "this key appears again, apart from its other members: write each sample's members together"
            seen.add(key)
            current = key
            if info.offset_data + info.size > size:
                yield key, None, None, f"member {info.name} is cut off (the shard is truncated): rewrite the shard"
                cut = True
                continue
            data = tar.extractfile(info).read() if ext in LABEL_EXTENSIONS else None
            group[ext] = (info, data)
            if bar is not None:
                bar.advance(info.offset_data + info.size - done)
                done = info.offset_data + info.size


def _sample(path: Path, key: str, group: dict[str, tuple[tarfile.TarInfo, bytes | None]]) -> tuple[str, ShardMember | None, Any, str | None]:
    images = [ext for ext in group if f".{ext}" in SUPPORTED_EXTENSIONS]
    labels = [ext for ext in LABEL_EXTENSIONS if ext in group]
    if not images:
        return key, None, None, f"has no image (found .{', .'.join(group) or 'nothing'}): add a .jpg or .png member or remove the sample"
    if len(images) > 1:
        return key, None, None, f"has several images (.{', .'.join(images)}): keep one per sample"
    info = group[images[0]][0]
    if not labels:
        return key, None, None, f"has an image ({info.name}) but no label (.cls, .txt or .json): add one, or remove the sample"
    data = ShardMember(path, info.name, info.offset_data, info.size).read_bytes()
    problem = check_image_bytes(data, info.name)
    if problem is not None:
        return key, None, None, problem
    image = ShardMember(path, info.name, info.offset_data, info.size, hashlib.sha256(data).hexdigest())
    raw = group[labels[0]][1] or b""
    try:
        text = raw.decode("utf-8").strip()
        value = json.loads(text) if labels[0] == "json" else text
    except (UnicodeDecodeError, ValueError) as e:
        return key, None, None, f"its .{labels[0]} label cannot be read ({e}): write UTF-8 text (JSON for .json)"
    if isinstance(value, dict):
        value = value.get("label", value.get("cls"))
    return key, image, value, None


def check_image_bytes(data: bytes, name: str) -> str | None:
    """Cheap check that `data` is a readable image (as `graftkit.data.images.check_image` does for
    files); None when fine, else the problem and the fix."""
    from PIL import Image, UnidentifiedImageError

    from graftkit.data.images import PIL_FORMATS

    if not data:
        return f"image {name} is empty (0 bytes): replace it or remove the sample"
    try:
        with Image.open(io.BytesIO(data), formats=PIL_FORMATS) as im:
            if im.format == "PNG":
                im.verify()
            elif im.format in ("JPEG", "MPO") and data.rstrip(b"\0").endswith(b"\xff\xd9"):
                return None
            else:
                im.load()
    except UnidentifiedImageError:
        return f"image {name} is not an image PIL can identify: replace it or remove the sample"
    except (OSError, SyntaxError, ValueError, EOFError) as e:
        return f"image {name} cannot be decoded ({e}): replace it or remove the sample"
    return None


def read_webdataset(
    path: str | os.PathLike[str],
    *,
    val: str | os.PathLike[str] | None = None,
    val_fraction: float = 0.2,
    seed: int = 0,
    label_kind: LabelKind = LabelKind.CLASS,
) -> Any:
    """Read, validate and split image data in WebDataset tar shards (`read_image_data` for shards).

    Args:
        path: A folder of `.tar` shards, one shard, or a brace pattern (`data-{000..009}.tar`). In a
            folder, shards named `train*`, `val*` and `test*` are those splits; otherwise every
            shard is training data and a seeded validation split is made.
        val: Validation shards (a folder, a shard or a pattern).
        val_fraction: Share moved to validation when no validation shards are given.
        seed: Seed of that split.
        label_kind: How labels are written (`CLASS`, `CLASSES`, `VALUE`).

    Returns:
        An `ImageData` (layout `webdataset`) whose samples' paths are `ShardMember`s.

    Raises:
        DataError: Every problem at once, each naming the shard and the sample's key.
        ConfigError: `val_fraction` is not between 0 and 1; a label kind images cannot have.

    Example:
        >>> data = read_webdataset("shards/data-{000..009}.tar", seed=0)
        >>> data.layout, str(data.train[0].path)
        ('webdataset', '/data/shards/data-000.tar:000000.jpg')
    """
    from graftkit.data.readers import ImageData, _check_image_kind, _check_labels, _sorted
    from graftkit.engine.progress import EpochProgress
    from graftkit.errors import ConfigError

    if not 0.0 < val_fraction < 1.0:
        raise ConfigError(f"--val-fraction must be between 0 and 1 (exclusive), got {val_fraction}")
    label_kind = _check_image_kind(label_kind)
    shards = _split_shards(path)
    if val is not None:
        if "val" in shards:
            raise ConfigError(f"{path} already has validation shards (val*.tar) and --val {val} was given: pass only one")
        shards["val"] = shard_paths(val)
    problems = Problems()
    total = sum(p.stat().st_size for ps in shards.values() for p in ps)
    with EpochProgress("checking shards", total=total, unit="B", enabled=total >= 64 << 20) as bar:
        splits = {name: read_shards(ps, label_kind, problems, bar) for name, ps in shards.items()}
    train, given_val, test = splits.get("train", splits.get("all", [])), splits.get("val"), splits.get("test", [])
    layout = "webdataset"
    if not problems.has_kind("bad samples"):
        _check_labels(train, given_val or [], test, label_kind, layout, given_val is not None, problems)
    problems.raise_if_any(path)
    key = lambda s: s.path.sha256  # noqa: E731  (same bytes, same key)
    everything = [*train, *(given_val or []), *test]
    duplicates = core.find_duplicates(everything, key, lambda s: str(s.path.relative_to(_root(path))))
    core.report_duplicates(duplicates, path, "image")
    split = "given"
    if given_val is None:
        n = len(train)
        train, given_val = core.seeded_split(train, val_fraction, seed, kind=label_kind, content=lambda s: f"{s.path.shard.name}:{s.path.name}")
        train, given_val = core.keep_together(train, given_val, key)
        core.check_seeded_val(given_val, n, problems, source=path, noun="image")
        problems.raise_if_any(path)
        split = core.split_description(label_kind, val_fraction, seed)
    return ImageData(
        train=_sorted(train), val=_sorted(given_val), test=_sorted(test), classes=core.training_classes(train, label_kind),
        root=_root(path), split=split, layout=layout, val_root=Path(val).expanduser().absolute() if val is not None else None,
        label_kind=label_kind, duplicates=duplicates or None,
    )  # fmt: skip


def _root(source: str | os.PathLike[str]) -> Path:
    """The folder shard names are relative to: the folder itself, or a shard's (pattern's) folder."""
    path = Path(source).expanduser().absolute()
    return path if path.is_dir() else path.parent


def _split_shards(source: str | os.PathLike[str]) -> dict[str, list[Path]]:
    """`{"train": [...], "val": [...], "test": [...]}` by shard name prefix for a folder whose shards
    are so named, else `{"all": shards}`."""
    paths = shard_paths(source)
    if not Path(source).is_dir():
        return {"all": paths}
    by_split: dict[str, list[Path]] = {}
    for p in paths:
        prefix = re.match(r"[a-zA-Z]+", p.name)
        by_split.setdefault(SPLIT_PREFIXES.get(prefix.group(0).lower(), "") if prefix else "", []).append(p)
    if "" in by_split or "train" not in by_split:
        return {"all": paths}
    return by_split


def read_labelled_webdataset(
    path: str | os.PathLike[str], classes: list[str], *, split: str | None = None, label_kind: LabelKind = LabelKind.CLASS
) -> list[Any]:
    """Every sample of some shards, checked against the run's classes, without splitting (`graft evaluate`).

    Args:
        path: A folder of shards, one shard or a brace pattern.
        classes: The run's classes; labels outside them are errors ([] for regression).
        split: In a folder whose shards are named `train*`/`val*`/`test*`: which of them.

    Raises:
        DataError: Every problem, naming shard and key; labels the run does not know.
        ConfigError: `split` names no shards of `path`.
    """
    from graftkit.data.readers import _check_image_kind, _files, _sorted
    from graftkit.engine.progress import EpochProgress
    from graftkit.errors import ConfigError

    label_kind = _check_image_kind(label_kind)
    shards = _split_shards(path)
    if split is not None:
        wanted = SPLIT_PREFIXES.get(split, split)
        if wanted not in shards:
            raise ConfigError(f"{path} has no {split!r} shards (shards named {wanted}*.tar); it has: {', '.join(sorted(shards))}")
        paths = shards[wanted]
    else:
        paths = [p for ps in shards.values() for p in ps]
    problems = Problems()
    total = sum(p.stat().st_size for p in paths)
    with EpochProgress("checking shards", total=total, unit="B", enabled=total >= 64 << 20) as bar:
        samples = read_shards(paths, label_kind, problems, bar)
    if label_kind.has_classes:
        core.report_unknown_labels(
            problems, samples, classes, split="", members=_files, known_as=f"one of the run's classes ({', '.join(classes)})",
            fix="the model cannot predict it: remove these samples or relabel them",
        )  # fmt: skip
    problems.raise_if_any(path)
    return _sorted(samples)

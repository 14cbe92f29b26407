"""Rebuilding a trained model from its run directory alone."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from graftkit.errors import RunDirError
from graftkit.rundir._files import sha256_file
from graftkit.rundir.directory import read_finished
from graftkit.rundir.spec import RunSpec

_RETRAIN = "Restore the run's own file, or train the run again (`graft train ... --out RUN --overwrite`)."


def check_files(run_dir: Path, spec: RunSpec) -> None:
    """Check the run's weight files against the SHA-256 graft.json recorded when the run finished.

    Raises:
        RunDirError: a file is missing, truncated, or another run's (the message names it). Runs
            written before hashes were recorded (`spec.files` None) pass unchecked.
    """
    for name, digest in (spec.files or {}).items():
        path = Path(run_dir) / name
        if not path.is_file():
            raise RunDirError(f"{path} is missing. {_RETRAIN}")
        if sha256_file(path) != digest:
            raise RunDirError(
                f"{path} is not the file this run wrote (its SHA-256 differs from graft.json's): it was replaced by "
                f"another run's weights or damaged. {_RETRAIN}"
            )


def load_model(run_dir: str | Path) -> tuple[Any, RunSpec, Any]:
    """Rebuild the trained model from a run directory alone: architecture from graft.json (and,
    for text models, the config + tokenizer in `RUN/hf/`), weights from model.safetensors
    (strict). No network, no training data, no pickle.

    Returns:
        (`GraftModel` — or `GenerativeModel` for seq2seq / causal-lm — in eval mode, the run's
        `RunSpec`, its task).

    Raises:
        RunDirError: not a finished run, an invalid graft.json, weights that are not the run's own
            (SHA-256 recorded in graft.json), damaged, or do not fit the architecture.

    Example:
        >>> model, spec, task = load_model("runs/flowers")
        >>> spec.model.arch, task.classes
        ('timm:efficientnet_lite0', ['daisy', 'rose'])
    """
    from safetensors.torch import load_file

    from graftkit.tasks import task_from_dict

    path, spec = read_finished(run_dir)
    task = task_from_dict(spec.task)
    if spec.modality == "text":
        from graftkit.backbones.base import TextPreprocess
        from graftkit.sources.hf_weights import build_hf_architecture

        backbone = build_hf_architecture(
            path / spec.text.architecture_dir,
            head_kind=spec.text.head_kind,
            preprocess=TextPreprocess.from_dict(spec.preprocess),
        )
    elif spec.modality == "audio":
        from graftkit.backbones.audio import AudioPreprocess
        from graftkit.sources.loading import build_audio_architecture

        backbone = build_audio_architecture(spec.model.arch, path / "hf")
        backbone.preprocess = AudioPreprocess.from_dict(spec.preprocess)
        if backbone.preprocess.layer_pooling != "last":  # the learned layer mix is in model.safetensors
            backbone.use_layer_pooling(backbone.preprocess.layer_pooling)
    else:
        from graftkit.backbones.base import ImagePreprocess
        from graftkit.sources import build_architecture

        backbone = build_architecture(spec.model.arch)
        backbone.preprocess = ImagePreprocess.from_dict(spec.preprocess)
        if backbone.preprocess.in_chans != 3:  # a one-channel run: the first convolution was adapted
            from graftkit.backbones.channels import adapt_input_channels

            adapt_input_channels(backbone, backbone.preprocess.in_chans)
        if backbone.preprocess.layer_pooling != "last":  # --layer-pooling concat: the head reads every block
            backbone.use_layer_pooling(backbone.preprocess.layer_pooling)
    if spec.lora is not None:
        from graftkit.strategies import apply_lora

        lora = spec.lora
        apply_lora(backbone, r=lora["r"], alpha=lora["alpha"], dropout=lora["dropout"], targets=lora["target_modules"])
    model = task.build_model(backbone, (spec.head or {}).get("dropout", 0.0))  # no new head (generation): the task's own model
    check_files(path, spec)
    try:
        state = load_file(str(path / "model.safetensors"))
    except Exception as e:  # a damaged file: safetensors' own message names no file
        raise RunDirError(f"{path}/model.safetensors is damaged ({str(e).splitlines()[0][:120]}). {_RETRAIN}") from None
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as e:
        raise RunDirError(f"{path}/model.safetensors does not fit the architecture in graft.json: {str(e)[:300]}") from None
    model.eval()
    return model, spec, task

"""The first stage of `fit()`: everything that can fail on user input fails here, before training.

`plan_fit` reads and validates the data, resolves the model id and loads the backbone, builds the
task, checks that task, strategy and modality fit together, runs `--strategy auto`'s measurement,
decides precision and memory format, and only then prepares the run directory. The result is a
`FitPlan`: the objects and decisions the training stage takes, and nothing else.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn

from graftkit import rundir
from graftkit.rundir import Precision
from graftkit.data.labels import LabelKind
from graftkit.errors import ConfigError, RunDirError
from graftkit.tasks import Task, TaskSettings, get_task
from graftkit.training.config import DEFAULT_MODEL, TrainConfig


@dataclass(frozen=True)
class FitPlan:
    """What `plan_fit` decided; the training and finishing stages read it and decide nothing new."""

    cfg: TrainConfig
    """The resolved settings (every default filled in), as graft.json records them."""
    data_path: Path
    dataset: Any
    """`ImageData` or `TextData`, validated and split."""
    backbone: nn.Module
    task: Task
    modality: str
    precision: Precision
    run_dir: Path
    """Where this run is written: `--out`, or with `--overwrite` over an existing run, a folder
    beside it (`rundir.build_dir`) that replaces it once the run has finished."""
    resume: bool
    started: float
    """`time.perf_counter()` when planning began (the time budget counts from it)."""
    auto: dict[str, Any] | None = None
    """`--strategy auto` / `--time-budget`: the measured plan, for graft.json and the report."""
    auto_key: str = "auto"
    """graft.json key of `auto`: `auto` for `--strategy auto`, `time_budget` for a fixed strategy."""
    out: Path | None = None
    """`--out`: where the finished run ends up (None: `run_dir`)."""

    @property
    def destination(self) -> Path:
        """The finished run's folder."""
        return self.run_dir if self.out is None else self.out


def plan_fit(
    data: str | Path,
    *,
    model: str | None,
    strategy: str | None,
    out: str | Path | None,
    val: str | Path | None,
    resume: bool,
    overwrite: bool,
    settings: dict[str, Any],
) -> FitPlan:
    """Validate everything `fit()` was given and decide how to train (see `fit` for the arguments).

    Raises:
        ConfigError, DataError, UnknownModelError, WeightsNotAvailableError, RunDirError: all
            before anything is trained or an existing run is touched.
    """
    from graftkit.engine import tune_malloc
    from graftkit.engine.precision import inference_settings, training_settings
    from graftkit.engine.progress import info
    from graftkit.sources import resolve

    started = time.perf_counter()
    task_cls = get_task(settings.get("task", "classification"))
    cfg = TrainConfig.from_settings(model=model or DEFAULT_MODEL, strategy=strategy or task_cls.default_strategy, **settings)
    tune_malloc()
    out = Path(out) if out is not None else Path("runs") / f"{Path(data).stem}-{cfg.parsed_strategy.kind}"
    saved: rundir.RunSpec | None = None
    if resume:
        saved = resumable_spec(out, data, {**settings, **({"model": model} if model else {}), **({"strategy": strategy} if strategy else {})})
        cfg = TrainConfig.from_settings(**saved.config)
        info(f"resuming {out} with its saved settings")
        task_cls = get_task(cfg.task)
    elif (out / "graft.json").exists() and not overwrite:
        rundir.prepare_run_dir(out)  # raises: a finished run is never replaced without --overwrite

    modality = resolve(cfg.model, cfg.arch).modality
    if modality not in task_cls.modalities:
        raise ConfigError(
            f"--task {task_cls.name} needs a {' or '.join(task_cls.modalities)} model; {cfg.model} is {'an' if modality[0] in 'aeiou' else 'a'} "
            f"{modality} model. Choose another --model or --task."
        )
    dataset = read_data_for(cfg, data, modality, task_cls.label_kind, val=val)
    if saved is not None and saved.task.get("classes") and list(dataset.classes) != list(saved.task["classes"]):
        raise RunDirError(
            f"cannot resume {out}: the data's classes differ from the run's ({_differences(saved.task['classes'], dataset.classes)}). "
            "Resume with the data the run started on, or start a new run (another --out, or --overwrite)."
        )
    backbone = load_backbone_for(cfg, modality, task_cls.backbone_head)
    problems: list[str] = []  # the clip-length check and the task's own check report together
    if modality == "audio":
        problems += _problems_of(fit_clip_length, backbone, dataset, cfg.max_seconds)
    if modality == "image":
        from graftkit.training.image_input import apply_image_settings

        apply_image_settings(backbone, cfg, dataset)  # channels, window, intensity: into backbone.preprocess
    task = task_cls.from_data(dataset.classes, [s.label for s in dataset.train], task_settings(cfg))
    if hasattr(task, "check_data"):  # a task's own pre-flight check of data + backbone (CTC: frames per transcript; asr: tokens)
        problems += _problems_of(task.check_data, dataset, backbone)
    if problems:
        from graftkit.errors import DataError

        raise DataError(problems, str(getattr(dataset, "root", data)))

    auto, auto_key = None, "auto" if cfg.strategy == "auto" else "time_budget"
    _check_distributed(cfg)
    if not resume and (cfg.strategy == "auto" or cfg.time_budget is not None):
        from graftkit.training.auto import plan_run  # measure, decide, fit the epochs

        choice = plan_run(dataset, backbone, task, cfg, elapsed_s=time.perf_counter() - started)
        cfg = dataclasses.replace(cfg, strategy=choice.strategy, epochs=choice.epochs)
        auto = choice.to_dict()
    cfg = cfg.resolved(modality, task.default_monitor)
    if cfg.monitor not in task.metrics:
        raise ConfigError(f"--monitor {cfg.monitor!r} is not a {task.name} metric; choose one of {', '.join(task.metrics)}")
    task.check_strategy(cfg.parsed_strategy.kind)
    if cfg.parsed_strategy.kind == "contrastive":
        from graftkit.training.contrastive import check_contrastive

        check_contrastive(task, modality, len(getattr(dataset, "classes", None) or []))
    _check_partial_depth(cfg, backbone)
    if cfg.target_unlabeled is not None:
        from graftkit.training.adapt import check_adaptation

        check_adaptation(cfg, modality, task, resume=resume)  # target readable, strategy and task fit
    if cfg.mix is not None and task.label_kind is not LabelKind.CLASS:
        raise ConfigError(f"--mix {cfg.mix} mixes single class labels; --task {task.name} has {task.label_kind.value} labels: drop --mix")

    arch = backbone.weights.arch
    layout = {"device": cfg.device, "precision": cfg.precision, "channels_last": cfg.channels_last, "modality": modality}
    infer = inference_settings(arch, **layout)  # the one rule for forward passes (features, validation)
    detector = task.name == "detection"  # a detector's head and neck train end to end, even over a frozen backbone
    train = training_settings(arch, **layout, detector=detector) if cfg.parsed_strategy.kind != "linear-probe" or detector else infer
    precision = Precision(train.precision, train.reason, infer.precision, infer.reason, infer.channels_last, infer.device)

    run_dir = _prepare_run_dir(out, resume=resume, overwrite=overwrite)  # last: input was valid; an old run is kept
    return FitPlan(
        cfg, Path(data), dataset, backbone, task, modality, precision, run_dir, resume, started, auto, auto_key, out=Path(out)
    )  # fmt: skip


def _problems_of(check: Any, *args: Any) -> list[str]:
    """The problems a check raises as a `DataError` (none: []), so several checks report at once."""
    from graftkit.errors import DataError

    try:
        check(*args)
    except DataError as e:
        return e.problems
    return []


def resumable_spec(out: Path, data: str | Path, given: dict[str, Any]) -> rundir.RunSpec:
    """The graft.json of the interrupted run in `out`, once `--resume` is known to continue it as it
    started: same data, and no setting given now that differs from the saved one.

    Args:
        out: The run directory.
        data: The data path given now.
        given: The settings given explicitly now (flag name with `_` → value).

    Raises:
        RunDirError: no checkpoint, a finished run, other data, or settings that differ (all named).
    """
    finished = (Path(out) / "graft.json").is_file() and rundir.RunSpec.read(out).status == "done"
    spec = None if finished else rundir.RunSpec.read(rundir.prepare_run_dir(out, resume=True))
    if spec is None:  # before the checkpoint check: a solved probe finishes without checkpoints
        raise RunDirError(
            f"cannot resume {out}: it holds a finished run (--resume continues an interrupted one). "
            "To train it again with other settings, use --overwrite or another --out."
        )
    saved_root = spec.data.get("root")
    if saved_root and Path(saved_root).resolve() != Path(data).resolve():
        raise RunDirError(
            f"cannot resume {out}: it was started on {saved_root}, not {data}. Resume with the same data, "
            "or start a new run (another --out, or --overwrite)."
        )
    config = spec.config
    differ = [f"--{k.replace('_', '-')} {v} (saved: {config[k]})" for k, v in given.items() if k in config and v != config[k]]
    if differ:
        raise RunDirError(
            f"cannot resume {out} with other settings: {', '.join(differ)}. --resume continues with the run's saved "
            "settings: drop these flags, or start a new run with them (another --out, or --overwrite)."
        )
    return spec


def _differences(saved: list[str], now: list[str]) -> str:
    gone, new = [c for c in saved if c not in now], [c for c in now if c not in saved]
    parts = ([f"missing now: {', '.join(gone[:5])}"] if gone else []) + ([f"new: {', '.join(new[:5])}"] if new else [])
    return "; ".join(parts) or "same classes in another order"


def task_settings(cfg: TrainConfig) -> TaskSettings:
    """The settings a task is built from."""
    return TaskSettings(label_smoothing=cfg.label_smoothing, class_weights=cfg.class_weights, num_beams=cfg.num_beams, max_new_tokens=cfg.max_new_tokens,
                        target_sensitivity=cfg.target_sensitivity, focal_gamma=cfg.focal_gamma,
                        detector=cfg.detector, freeze_bn=cfg.freeze_bn, task=cfg.task)  # fmt: skip


def read_data_for(cfg: TrainConfig, data: str | Path, modality: str, label_kind: LabelKind = LabelKind.CLASS, *, val: str | Path | None = None) -> Any:
    """The data set a run with these settings trains on: read, validated and split (seeded).

    Args:
        cfg: The run's settings (`val_fraction`, `seed`, and for text `text_col`, `label_col`, `encoding`).
        data: The data folder, manifest or file.
        modality: The model's modality.
        label_kind: How labels are parsed (`Task.label_kind`).
        val: A separate validation folder or file.
    """
    from graftkit.data import read_dataset

    return read_dataset(
        data, modality=modality, label_kind=label_kind, val=val, val_fraction=cfg.val_fraction, seed=cfg.seed,
        text_col=cfg.text_col, label_col=cfg.label_col, encoding=cfg.encoding,
        **({"max_seconds": cfg.max_seconds} if modality == "audio" else {}),
    )  # fmt: skip


def fit_clip_length(backbone: nn.Module, dataset: Any, max_seconds: float | None) -> None:
    """Set an audio backbone's clip length: `--max-seconds`, else the longest clip in the data
    (rounded up to 0.1 s), which may not exceed the model's own limit.

    Raises:
        DataError: Without `--max-seconds`, clips longer than the model's limit, by name.
    """
    import dataclasses as dc

    from graftkit.errors import DataError
    from graftkit.sources.audio_builtin import default_seconds

    if max_seconds is None:
        limit = backbone.preprocess.max_seconds
        long = [f"{path}: {seconds:.2f} s is longer than {backbone.weights.model_id}'s {limit:g} s limit: trim it or pass --max-seconds"
                for path, seconds in sorted(dataset.seconds.items()) if seconds > limit + 1e-6]  # fmt: skip
        if long:
            raise DataError(long[:20] + ([f"... and {len(long) - 20} more too long clips"] if len(long) > 20 else []), str(dataset.root))
        max_seconds = min(limit, default_seconds(dataset.longest_seconds)) or limit
    backbone.preprocess = dc.replace(backbone.preprocess, max_seconds=float(max_seconds))


def load_backbone_for(cfg: TrainConfig, modality: str, backbone_head: str = "features") -> nn.Module:
    """The backbone a run with these settings trains: image size or text settings applied.

    Args:
        cfg: The run's settings (`model`, `arch`, `offline`, `seed`, `image_size`, `max_length`, ...).
        modality: The model's modality (`resolve(cfg.model).modality`).
        backbone_head: What the task needs the backbone to keep (`Task.backbone_head`).
    """
    import dataclasses as dc

    from graftkit.sources import load_backbone

    if modality == "text" and cfg.layer_pooling != "last":
        raise ConfigError(f"--layer-pooling {cfg.layer_pooling} needs a timm image model or an audio encoder with layers; "
                          f"{cfg.model} is a text model: drop --layer-pooling (--pooling mean, cls or last chooses how its tokens pool)")  # fmt: skip
    if modality == "text":
        return load_backbone(
            cfg.model, arch=cfg.arch, offline=cfg.offline, seed=cfg.seed, head_kind=backbone_head,
            trust_remote_code=cfg.trust_remote_code, max_length=cfg.max_length, pooling=cfg.pooling,
        )  # fmt: skip
    if cfg.layer_pooling != "last" and backbone_head != "features":
        raise ConfigError(f"--layer-pooling {cfg.layer_pooling} pools a backbone's layers for a head on pooled features "
                          f"(classification, multi-label, regression); --task reads {backbone_head}: drop --layer-pooling")  # fmt: skip
    backbone = load_backbone(cfg.model, arch=cfg.arch, offline=cfg.offline, seed=cfg.seed)
    if modality == "image" and cfg.image_size is not None:
        _check_image_size(backbone, cfg.image_size)
        backbone.preprocess = dc.replace(backbone.preprocess, input_size=cfg.image_size)
    if cfg.layer_pooling != "last":
        if not hasattr(backbone, "use_layer_pooling"):
            raise ConfigError(f"--layer-pooling {cfg.layer_pooling} needs a timm image model or an audio encoder with layers; "
                              f"{cfg.model} is neither: drop --layer-pooling")  # fmt: skip
        backbone.use_layer_pooling(cfg.layer_pooling)  # after --image-size: the pooled width is measured at it
    return backbone


def _check_partial_depth(cfg: TrainConfig, backbone: nn.Module) -> None:
    """`partial:N` needs N layer groups to train."""
    strat = cfg.parsed_strategy
    groups = len(backbone.layer_groups()) if hasattr(backbone, "layer_groups") else None
    if strat.kind == "partial" and groups is not None and strat.n > groups:
        raise ConfigError(
            f"--strategy {strat}: {backbone.weights.arch} has {groups} layer groups, so N can be 1 to {groups}; "
            "use --strategy finetune to train every layer"
        )


def _check_image_size(backbone: nn.Module, size: int) -> None:
    """Fail early, with the flag's name, if the architecture cannot take `size` pixels."""
    import torch

    try:
        with torch.no_grad():
            backbone.eval().forward_features(torch.zeros(1, 3, size, size))
    except Exception as e:  # the architecture's own message, e.g. a ViT's fixed patch grid
        raise ConfigError(
            f"--image-size {size} does not fit {backbone.weights.arch} ({str(e).splitlines()[0][:120]}); "
            f"leave it unset to use the model's own size {backbone.preprocess.input_size}"
        ) from None


def _prepare_run_dir(out: Path, *, resume: bool, overwrite: bool) -> Path:
    """`rundir.prepare_run_dir` in the main process; the other processes of a multi-process run
    (`--devices N`) write nothing and only learn where rank 0 writes."""
    from graftkit.engine.distributed import is_main_process

    if is_main_process():
        return rundir.prepare_run_dir(out, resume=resume, overwrite=overwrite)
    if not resume and overwrite and (Path(out) / rundir.SPEC_FILE).exists():
        return rundir.build_dir(out)
    return Path(out)


def _check_distributed(cfg: TrainConfig) -> None:
    """Settings refused with `--devices`: those that decide from the wall clock (each process would decide
    differently) and loss terms that run outside the distributed forward."""
    from graftkit.engine.distributed import is_distributed, world_size

    if not is_distributed():
        return
    if cfg.strategy == "auto" or cfg.time_budget is not None:
        flag = "--strategy auto" if cfg.strategy == "auto" else "--time-budget"
        raise ConfigError(f"{flag} times this machine to decide, which {world_size()} processes would each do differently: "
                          "choose a strategy and --epochs with --devices, or train in one process")  # fmt: skip
    extra = [flag for flag, on in (("--regularize", cfg.regularize is not None), ("--target-unlabeled", cfg.target_unlabeled is not None),
                                   ("--task-weighting", cfg.task_weighting not in (None, "equal"))) if on]  # fmt: skip
    if extra:  # their loss terms read the backbone's features outside DDP's forward, which syncs gradients
        raise ConfigError(f"{' and '.join(extra)} cannot be combined with --devices yet (its loss terms run outside the "
                          "distributed model's forward, so gradients would not be synchronised): train in one process")  # fmt: skip

"""Training configuration: one frozen dataclass, validated eagerly, every problem reported at once."""

from __future__ import annotations

import difflib
from dataclasses import asdict, dataclass, fields
from typing import Any

from graftkit.errors import ConfigError
from graftkit.strategies.spec import Strategy, parse_strategy

DEFAULT_MODEL = "efficientnet_lite0"
"""The model `graft train` uses when `--model` is not given."""
PROBE_PATIENCE = 10
"""Early stopping is on by default for probes: epochs are cheap, so a large --epochs just runs until
validation stops improving for this many epochs."""
SCHEDULES = ("cosine", "onecycle", "constant")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
AUGMENTS = ("none", "light", "strong", "randaugment")
MIXES = ("mixup", "cutmix", "mixup-cutmix")
CLASS_WEIGHTS = ("none", "balanced")
INTENSITIES = ("backbone", "dataset")


def parse_window(text: str) -> tuple[float, float]:
    """`--window CENTRE,WIDTH` → `(centre, width)`.

    Raises:
        ConfigError: not two numbers, or a width below 1.

    Example:
        >>> parse_window("40,400")
        (40.0, 400.0)
    """
    parts = str(text).split(",")
    try:
        centre, width = (float(p) for p in parts)
    except ValueError:
        raise ConfigError(f"--window {text!r} must be CENTRE,WIDTH (two numbers, e.g. 40,400)") from None
    if not width >= 1:
        raise ConfigError(f"--window {text!r}: the width must be at least 1, got {width:g}")
    return centre, width


PROBE_SOLVERS = ("auto", "lbfgs", "sgd")


@dataclass(frozen=True)
class TrainConfig:
    """Every setting of a training run. Field names match the `graft train` flags (`_` → `-`)."""

    model: str = DEFAULT_MODEL
    """Model id (`graft models` lists them): built-in, `timm:NAME`, `tv:NAME`, `hf:NAME_OR_PATH`, `file:PATH`, `scratch:ID`."""
    task: str = "classification"
    """A registered task (`graftkit.tasks.task_names()`): `classification`, `multilabel`, `regression`;
    for text also `seq2seq` and `causal-lm`; for audio also `ctc` and `asr` (Whisper: whisper_tiny_en or hf:)."""
    arch: str | None = None
    """Architecture id that a `file:` model's weights fit, e.g. `timm:resnet18`."""
    strategy: str = "linear-probe"
    """`linear-probe`, `finetune`, `partial:N`, `gradual`, `lora` (PEFT adapters + the new head),
    `contrastive` (text classification with few labels: the body trained on pairs of labelled texts
    with a cosine-similarity loss, SetFit-style, then the probe) or `auto` (chosen from the data
    size, a quick probe, the model size and `--time-budget`)."""
    epochs: int = 10
    """Passes over the training data."""
    batch_size: int = 32
    """Samples per forward pass; an optimizer step sees `batch_size × accumulate` of them."""
    accumulate: int = 1
    """Gradient accumulation: add up the gradients of this many batches before each optimizer step
    (`--batch-size 8 --accumulate 4` trains like batch 32 in the memory of batch 8)."""
    grad_checkpointing: bool = False
    """Fine-tuning: recompute activations in the backward pass (transformers' and timm's gradient
    checkpointing) to fit larger models or batches on a GPU, for about a third more compute."""
    lr: float | None = None
    """Peak learning rate of the head; None picks the default for the strategy and modality
    (probe 3e-3, others 1e-3)."""
    lr_decay: float | None = None
    """Layer-wise learning-rate decay: each group further from the output gets `lr_decay` × the next
    (None: 0.8 for images, 0.9 for text)."""
    backbone_lr_scale: float | None = None
    """Learning rate of the top backbone group relative to the head when fine-tuning (None: 1.0 for
    images, 0.05 for text, i.e. 5e-5 under a 1e-3 head)."""
    weight_decay: float = 0.01
    """AdamW weight decay (not applied to biases and norm weights)."""
    schedule: str = "cosine"
    """`cosine` (linear warm-up then cosine), `onecycle` or `constant`."""
    warmup_fraction: float = 0.1
    """Fraction of all steps spent warming up the learning rate."""
    grad_clip: float | None = 1.0
    """Clip the gradient norm to this value; None disables clipping."""
    label_smoothing: float = 0.0
    """Cross-entropy label smoothing in [0, 1)."""
    class_weights: str = "none"
    """`balanced` weights the loss by inverse class frequency."""
    focal_gamma: float | None = None
    """Focal loss (Lin et al. 2017) with this focusing parameter, e.g. 2, for imbalanced findings;
    None: cross-entropy (BCE for multi-label)."""
    target_sensitivity: float | None = None
    """Binary and multi-label findings: choose the operating point on validation as the highest
    threshold reaching this sensitivity (e.g. 0.95); None: Youden's J."""
    head_init: str | None = None
    """`probe` first trains the new head as a linear probe on cached features, then fine-tunes
    (LP-FT, like fastai's fine_tune); `random` fine-tunes from a freshly initialised head. None:
    `random` for images (no gain measured), `probe` for text (+6.7 points measured on the demo
    sentiment data; benchmarks/RESULTS.md)."""
    probe_solver: str = "auto"
    """How `linear-probe` fits the head on cached features: `lbfgs` (scaled features, L2,
    full-batch L-BFGS, the feature scaling and strength chosen on validation or k-fold, see training/solver.py), `sgd`
    (the loop, `--epochs` / `--lr`), or `auto` (lbfgs when the task's loss allows and the head is
    linear, else sgd)."""
    refit: bool = True
    """After the L-BFGS probe chose its strength, fit the final head on train + validation
    (`--no-refit`: on train only, validation stays held out). Reported validation figures are
    held-out predictions either way."""
    head_dropout: float = 0.0
    """Dropout before the new output layer."""
    image_size: int | None = None
    """Input size in pixels; None keeps the pretrained model's own (e.g. 224). CNNs accept any size."""
    in_chans: int | None = None
    """Image channels the network takes: 1 adapts the pretrained first convolution to grey input
    (its RGB filters summed, as timm does), 3 copies grey images to three channels; None: 1 when
    every training image is grey (DICOM, 16-bit, L), else 3."""
    window: str | None = None
    """Grey window `CENTRE,WIDTH` for 16-bit and DICOM images (DICOM: in modality units after the
    rescale, e.g. `40,400` for a CT soft-tissue window); None: the file's own window, else the full range."""
    intensity: str = "backbone"
    """Intensity normalisation: `backbone` (the pretrained weights' mean/std) or `dataset` (the
    mean/std of the training images, measured once and recorded in the run)."""
    augment: str = "light"
    """Augmentation preset for fine-tuning: `none`, `light`, `strong`, `randaugment` (not used by probes).
    Audio (`none`/`light`/`strong`): light = gain ±6 dB, shift ±0.1 s, white noise at SNR 20-40 dB
    (p 0.5), one time mask (up to 0.05 of the frames) and one frequency mask (up to 0.1 of the
    bands); strong = gain ±10 dB, shift ±0.2 s, noise at SNR 5-20 dB, two time masks (each up to
    0.1 of the frames) and two frequency masks (each up to 0.15 of the bands); masks go on the
    encoder's spectrogram, else time masks on the waveform (data/audio_augment.py)."""
    mix: str | None = None
    """Batch mixing for fine-tuning: `mixup`, `cutmix` or `mixup-cutmix`."""
    patience: int | None = None
    """Stop when the validation metric has not improved for this many epochs (default: 10 for
    linear-probe, off for the other strategies)."""
    monitor: str | None = None
    """Validation metric that picks the best epoch and drives early stopping (None: the task's own:
    accuracy, macro_f1 for multi-label, mae for regression, loss for generation)."""
    device: str = "auto"
    """`auto` (the first CUDA GPU when there is one, else the CPU), `cpu`, `cuda` or `cuda:N`."""
    precision: str = "auto"
    """`auto` (chosen per model and device from measurements), `fp32`, `bf16` or `fp16` (CUDA GPUs only:
    autocast with loss scaling; auto picks it on GPUs without bf16)."""
    channels_last: bool | None = None
    """Use channels_last memory format for CNNs; None decides per model."""
    num_workers: int | None = None
    """Data-loading worker processes; None picks from the CPU count."""
    val_fraction: float = 0.2
    """Fraction of each class held out for validation when the data has no val split."""
    seed: int = 0
    """Seed for the split, initialisation, shuffling and augmentation."""
    offline: bool = False
    """Never touch the network; fail at once if weights are missing."""
    feature_cache: bool = True
    """Cache frozen-backbone features on disk and reuse them across runs."""
    time_budget: float | None = None
    """Wall-clock budget for the run in seconds (`--time-budget 10m`): epochs are fitted to it from
    a measured epoch time, and training stops before an epoch would overrun it."""
    text_col: str | None = None
    """Text data: the column holding the text (None: `text`, `sentence`, `review`, ... or `source`)."""
    label_col: str | None = None
    """Text data: the column holding the label (None: `label`, `labels`, `score`, ... or `target`)."""
    encoding: str | None = None
    """Text data: file encoding (None: UTF-8, UTF-8 with BOM, else latin-1 with a warning)."""
    max_length: int | None = None
    """Text: tokens per input; longer texts are truncated and counted (None: the model's default, 128)."""
    pooling: str | None = None
    """Text: `mean`, `cls` or `last` token pooling of the features (None: mean for encoders, last for decoders)."""
    max_seconds: float | None = None
    """Audio: clips are cut or zero-padded to this many seconds; longer training clips are errors
    (None: the longest clip in the data, up to the model's limit)."""
    layer_pooling: str = "last"
    """`last` reads the network's output. Audio: `weighted` learns a softmax-weighted sum of every
    layer's frames (SUPERB), with the head: the probe caches each layer's pooled features. Images
    (timm): `concat` adds every block's spatial mean, max and standard deviation to the features."""
    trust_remote_code: bool = False
    """Allow a `hf:` model to run code from its repository (off unless you trust it)."""
    lora_r: int = 8
    """LoRA rank."""
    lora_alpha: int = 16
    """LoRA scaling numerator (the update is scaled by alpha / r)."""
    lora_dropout: float = 0.05
    """Dropout on the LoRA branch."""
    num_beams: int = 4
    """seq2seq / causal-lm: beam width when generating (1 = greedy)."""
    max_new_tokens: int = 64
    """seq2seq / causal-lm: most tokens generated per input."""
    # Contrastive pair training (training/contrastive.py).
    contrastive_iterations: int = 20
    """`contrastive`: pairs per training text and kind: each text gets this many same-class and this
    many other-class partners (SetFit's `num_iterations`; 2 × iterations × texts pairs in all)."""
    contrastive_epochs: int = 1
    """`contrastive`: passes over the pairs (batches of `--batch-size` pairs)."""
    contrastive_lr: float = 1e-4
    """`contrastive`: peak learning rate of the body on the pairs (AdamW, `--schedule`, `--warmup-fraction`).
    1e-4, not SetFit's 2e-5: chosen on the VADER dev split (+3.8 points at 64 per class, +1.0 at 8;
    2e-4 fell apart at 20 pairs per text; benchmarks/RESULTS.md)."""
    # Detection (tasks/detection.py).
    detector: str | None = None
    """detection: `fcos`, `retinanet`, `faster_rcnn` or `ssdlite` (None: fcos)."""
    freeze_bn: bool = True
    """detection: freeze the backbone's BatchNorm (statistics and affine), as detection with small batches needs."""
    # Domain adaptation (training/adapt.py).
    target_unlabeled: str | None = None
    """Domain adaptation: unlabelled target-domain data (a folder of images, class subfolders or
    not; a TXT/CSV/TSV/JSONL file of texts); labels in it are ignored."""
    adapt: str = "none"
    """Domain adaptation method: `none` (source-only, target still scored), `adabn`, `coral`,
    `dann`, `cdan` (CDAN+E), `selftrain` (FixMatch-style pseudo-labels) or `auto` (all of them,
    method and epoch picked by label-free target scores). Needs --target-unlabeled."""
    target_labelled: str | None = None
    """Domain adaptation: labelled target data used only to check the label-free scores (target
    accuracy per epoch and its agreement with each score in the report); never trained on."""
    seeds: int = 1
    """Train this many seeds (seed, seed+1, ...): mean ± std of every metric; the run keeps the
    best by the label-free target rank. Needs --target-unlabeled."""
    adapt_weight: float = 1.0
    """Domain adaptation: weight of the adaptation loss term (CORAL, domain head, pseudo-labels)."""
    pseudo_threshold: float = 0.9
    """Self-training: confidence a weak-view prediction needs to become a pseudo-label."""
    # Regularised fine-tuning (strategies/regularize.py).
    regularize: str | None = None
    """Fine-tuning: keep the model close to its pretrained self: `l2sp` (pull the backbone weights
    towards the pretrained ones), `bss` (shrink the smallest singular value of the batch features) or
    `delta` (distance of the features to a frozen pretrained copy's)."""
    regularize_strength: float | None = None
    """Strength of `--regularize` (None: the paper's, l2sp alpha 0.1, bss eta 0.001, delta alpha 0.01)."""
    # Multitask (tasks/multitask.py, training/multitask.py).
    task_weighting: str = "equal"
    """Multitask (`--task NAME:KIND,...`): how the tasks' losses add up: `equal` (their sum),
    `uncertainty` (learned per-task log-variances, Kendall et al. 2018) or `pcgrad` (conflicting
    gradients projected on the shared backbone, Yu et al. 2020; needs fine-tuning) or `pcgrad-rep`
    (the same on the gradients of the shared features: one backward pass, about equal's cost)."""

    def __post_init__(self) -> None:
        problems = []
        for name in ("epochs", "batch_size", "accumulate"):
            if getattr(self, name) < 1:
                problems.append(f"--{_flag(name)} must be at least 1, got {getattr(self, name)}")
        try:
            parse_strategy(self.strategy)
        except ConfigError as e:
            problems.append(str(e))
        if self.image_size is not None and self.image_size < 16:
            problems.append(f"--image-size must be at least 16 pixels, got {self.image_size}")
        if self.lr is not None and not self.lr > 0:
            problems.append(f"--lr must be positive, got {self.lr}")
        if self.lr_decay is not None and not 0 < self.lr_decay <= 1:
            problems.append(f"--lr-decay must be in (0, 1], got {self.lr_decay}")
        if self.backbone_lr_scale is not None and not 0 < self.backbone_lr_scale <= 1:
            problems.append(f"--backbone-lr-scale must be in (0, 1], got {self.backbone_lr_scale}")
        if self.weight_decay < 0:
            problems.append(f"--weight-decay must be >= 0, got {self.weight_decay}")
        if not 0 <= self.warmup_fraction < 1:
            problems.append(f"--warmup-fraction must be in [0, 1), got {self.warmup_fraction}")
        if self.grad_clip is not None and self.grad_clip <= 0:
            problems.append(f"--grad-clip must be positive, got {self.grad_clip}")
        if not 0 <= self.label_smoothing < 1:
            problems.append(f"--label-smoothing must be in [0, 1), got {self.label_smoothing}")
        if not 0 <= self.head_dropout < 1:
            problems.append(f"--head-dropout must be in [0, 1), got {self.head_dropout}")
        if not 0 < self.val_fraction < 1:
            problems.append(f"--val-fraction must be in (0, 1), got {self.val_fraction}")
        if self.time_budget is not None and not self.time_budget > 0:
            problems.append(f"--time-budget must be positive, got {self.time_budget}")
        if self.patience is not None and self.patience < 1:
            problems.append(f"--patience must be at least 1, got {self.patience}")
        for name in ("lora_r", "lora_alpha", "num_beams", "max_new_tokens"):
            if getattr(self, name) < 1:
                problems.append(f"--{_flag(name)} must be at least 1, got {getattr(self, name)}")
        if self.max_seconds is not None and not self.max_seconds > 0:
            problems.append(f"--max-seconds must be a positive number of seconds, got {self.max_seconds}")
        if self.max_length is not None and self.max_length < 2:
            problems.append(f"--max-length must be at least 2 tokens, got {self.max_length}")
        if not 0 <= self.lora_dropout < 1:
            problems.append(f"--lora-dropout must be in [0, 1), got {self.lora_dropout}")
        if self.num_workers is not None and self.num_workers < 0:
            problems.append(f"--num-workers must be >= 0, got {self.num_workers}")
        for name, allowed in (
            ("schedule", SCHEDULES),
            ("precision", PRECISIONS),
            ("augment", AUGMENTS),
            ("class_weights", CLASS_WEIGHTS),
            ("intensity", INTENSITIES),
            ("head_init", ("probe", "random", None)),
            ("probe_solver", PROBE_SOLVERS),
        ):
            value = getattr(self, name)
            if value not in allowed:
                problems.append(_choice_problem(name, value, allowed))
        if not (self.device in ("auto", "cpu", "cuda") or (self.device.startswith("cuda:") and self.device[5:].isdigit())):
            problems.append(f"--device {self.device!r} is not one of auto, cpu, cuda, cuda:N")
        from graftkit.tasks import get_task, task_names

        if ":" in self.task:  # a multitask spec NAME:KIND,...: its per-task metrics are checked once the task is built
            from graftkit.tasks.multitask import parse_task_spec

            try:
                parse_task_spec(self.task)
            except ConfigError as e:
                problems.append(str(e))
        elif self.task not in task_names():
            problems.append(_choice_problem("task", self.task, task_names()))
        elif self.monitor is not None and self.monitor not in get_task(self.task).metrics:
            metrics = tuple(get_task(self.task).metrics)
            problems.append(f"--monitor {self.monitor!r} is not a {self.task} metric; choose one of {', '.join(metrics)}")
        if self.pooling is not None and self.pooling not in ("mean", "cls", "last"):
            problems.append(_choice_problem("pooling", self.pooling, ("mean", "cls", "last")))
        if self.layer_pooling not in ("last", "weighted", "concat"):  # which suits the model: its backbone says
            problems.append(_choice_problem("layer_pooling", self.layer_pooling, ("last", "weighted", "concat")))
        if self.target_sensitivity is not None and not 0 < self.target_sensitivity <= 1:
            problems.append(f"--target-sensitivity must be in (0, 1], got {self.target_sensitivity}")
        if self.focal_gamma is not None and self.focal_gamma < 0:
            problems.append(f"--focal-gamma must be >= 0, got {self.focal_gamma}")
        if self.in_chans is not None and self.in_chans not in (1, 3):
            problems.append(f"--in-chans must be 1 or 3, got {self.in_chans}")
        if self.window is not None:
            try:
                parse_window(self.window)
            except ConfigError as e:
                problems.append(str(e))
        if self.mix is not None and self.mix not in MIXES:
            problems.append(_choice_problem("mix", self.mix, MIXES))
        if self.detector is not None:
            from graftkit.tasks.detection import DETECTORS

            if self.task != "detection":
                problems.append(f"--detector applies to --task detection only (got --task {self.task})")
            elif self.detector not in DETECTORS:
                problems.append(_choice_problem("detector", self.detector, DETECTORS))
        problems += _adaptation_problems(self)
        problems += _contrastive_problems(self)
        problems += _regularize_problems(self)
        problems += _weighting_problems(self)
        if problems:
            raise ConfigError("invalid training settings:\n" + "\n".join(f"  - {p}" for p in problems))

    @property
    def parsed_strategy(self) -> Strategy:
        return parse_strategy(self.strategy)

    @property
    def peak_lr(self) -> float:
        if self.lr is not None:
            return self.lr
        return 3e-3 if self.parsed_strategy.kind in PROBE_HEADS else 1e-3

    def resolved(self, modality: str, default_monitor: str) -> "TrainConfig":
        """The config with every `None`-means-default setting filled in for this modality and task
        (what graft.json records, so a resumed or reproduced run uses the same numbers)."""
        from dataclasses import replace

        text = modality == "text"
        kind = self.parsed_strategy.kind
        lr = self.lr
        if lr is None:
            lr = 3e-3 if kind in PROBE_HEADS else 1e-3
        return replace(
            self,
            lr=lr,
            lr_decay=self.lr_decay if self.lr_decay is not None else (0.9 if text else 0.8),
            backbone_lr_scale=self.backbone_lr_scale if self.backbone_lr_scale is not None else (0.05 if text else 1.0),
            head_init=self.head_init or ("probe" if text and kind != "lora" else "random"),
            monitor=self.monitor or default_monitor,
            patience=self.patience if self.patience is not None else (PROBE_PATIENCE if kind in PROBE_HEADS else None),
            regularize_strength=_regularize_strength(self),
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_settings(cls, **settings: Any) -> "TrainConfig":
        """Build a config from keyword settings, naming any unknown setting and its closest match."""
        known = {f.name for f in fields(cls)}
        unknown = [k for k in settings if k not in known]
        if unknown:
            hints = []
            for k in unknown:
                close = difflib.get_close_matches(k, sorted(known), n=1)
                hints.append(f"{k!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
            raise ConfigError(f"unknown training setting(s): {', '.join(hints)}; valid settings: {', '.join(sorted(known))}")
        return cls(**settings)


PROBE_HEADS = ("linear-probe", "contrastive")
"""Strategies whose head is the probe on cached features (contrastive: after its pair stage)."""


def _contrastive_problems(cfg: TrainConfig) -> list[str]:
    """What is wrong with the `contrastive` settings, and what it cannot be combined with."""
    problems = []
    for name in ("contrastive_iterations", "contrastive_epochs"):
        if getattr(cfg, name) < 1:
            problems.append(f"--{_flag(name)} must be at least 1, got {getattr(cfg, name)}")
    if not cfg.contrastive_lr > 0:
        problems.append(f"--contrastive-lr must be positive, got {cfg.contrastive_lr}")
    try:
        kind = parse_strategy(cfg.strategy).kind
    except ConfigError:
        return problems
    if kind == "contrastive":
        for name, value in (("target_unlabeled", cfg.target_unlabeled), ("regularize", cfg.regularize), ("mix", cfg.mix)):
            if value is not None:
                problems.append(f"--{_flag(name)} does not apply to --strategy contrastive (its body trains on pairs, not through the "
                                "fine-tuning objective): drop it, or use --strategy finetune")  # fmt: skip
    return problems


ADAPT_METHODS = ("none", "adabn", "coral", "dann", "cdan", "selftrain", "auto")


def _adaptation_problems(cfg: TrainConfig) -> list[str]:
    """What is wrong with the domain-adaptation settings (training/adapt.py)."""
    problems = []
    if cfg.adapt not in ADAPT_METHODS:
        problems.append(_choice_problem("adapt", cfg.adapt, ADAPT_METHODS))
    elif cfg.adapt != "none" and cfg.target_unlabeled is None:
        problems.append(f"--adapt {cfg.adapt} needs the unlabelled target data: add --target-unlabeled DIR_OR_FILE")
    if cfg.seeds < 1:
        problems.append(f"--seeds must be at least 1, got {cfg.seeds}")
    elif cfg.seeds > 1 and cfg.target_unlabeled is None:
        problems.append("--seeds N repeats a domain-adaptation run: add --target-unlabeled DIR_OR_FILE")
    if cfg.target_labelled is not None and cfg.target_unlabeled is None:
        problems.append("--target-labelled checks an adapted run's label-free scores: add --target-unlabeled DIR_OR_FILE (it may be the same data)")
    if not cfg.adapt_weight >= 0:
        problems.append(f"--adapt-weight must be >= 0, got {cfg.adapt_weight}")
    if not 0 < cfg.pseudo_threshold < 1:
        problems.append(f"--pseudo-threshold must be in (0, 1), got {cfg.pseudo_threshold}")
    return problems


def _regularize_problems(cfg: TrainConfig) -> list[str]:
    """What is wrong with `--regularize` / `--regularize-strength` for this strategy."""
    from graftkit.strategies.regularize import REGULARIZERS

    if cfg.regularize is None:
        return ["--regularize-strength needs --regularize l2sp, bss or delta"] if cfg.regularize_strength is not None else []
    if cfg.regularize not in REGULARIZERS:
        return [_choice_problem("regularize", cfg.regularize, REGULARIZERS)]
    problems = []
    if cfg.regularize_strength is not None and not cfg.regularize_strength > 0:
        problems.append(f"--regularize-strength must be positive, got {cfg.regularize_strength}")
    try:
        kind = parse_strategy(cfg.strategy).kind
    except ConfigError:
        return problems
    if kind == "linear-probe":
        problems.append(f"--regularize {cfg.regularize} keeps fine-tuned weights near the pretrained ones, but --strategy linear-probe "
                        "trains no backbone weight (nothing to regularise): use --strategy finetune, partial:N or gradual")  # fmt: skip
    elif kind == "lora" and cfg.regularize == "l2sp":
        problems.append("--regularize l2sp with --strategy lora: LoRA keeps the pretrained weights frozen, so there is no distance to "
                        "pull in; use --regularize bss or delta with lora, or --strategy finetune for l2sp")  # fmt: skip
    return problems


def _weighting_problems(cfg: TrainConfig) -> list[str]:
    """What is wrong with `--task-weighting` for this task and strategy."""
    from graftkit.tasks.multitask import WEIGHTINGS

    if cfg.task_weighting not in WEIGHTINGS:
        return [_choice_problem("task_weighting", cfg.task_weighting, WEIGHTINGS)]
    if cfg.task_weighting == "equal":
        return []
    if ":" not in cfg.task:
        return [f"--task-weighting {cfg.task_weighting} weighs the tasks of a multitask run; --task {cfg.task} is one task: "
                "name several (--task 'a:classification,b:regression') or drop --task-weighting"]  # fmt: skip
    try:
        kind = parse_strategy(cfg.strategy).kind
    except ConfigError:
        return []
    if cfg.task_weighting in ("pcgrad", "pcgrad-rep") and kind == "linear-probe":
        return [f"--task-weighting {cfg.task_weighting} projects the tasks' gradients on the shared backbone, and --strategy linear-probe trains "
                "no shared weight (each task's head is its own): use --strategy finetune, or --task-weighting uncertainty"]  # fmt: skip
    return []


def _regularize_strength(cfg: TrainConfig) -> float | None:
    """`--regularize-strength`, or the method's default strength (None without `--regularize`)."""
    if cfg.regularize is None or cfg.regularize_strength is not None:
        return cfg.regularize_strength
    from graftkit.strategies.regularize import DEFAULT_STRENGTH

    return DEFAULT_STRENGTH[cfg.regularize]


def _flag(name: str) -> str:
    return name.replace("_", "-")


def _choice_problem(name: str, value: Any, allowed: tuple[str, ...]) -> str:
    close = difflib.get_close_matches(str(value), allowed, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return f"--{_flag(name)} {value!r} is not one of {', '.join(allowed)}{hint}"

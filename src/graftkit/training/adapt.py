"""Domain adaptation: train on a labelled source while an unlabelled target domain shapes the model.

`graft train SRC --target-unlabeled TGT --adapt METHOD` trains through the one loop; a method is
extra loss terms on the batch objective (`TERM_BUILDERS` in finetune.py) and/or a step after
training:

- `none`: source-only fine-tuning, still scored on the target every epoch (the baseline);
- `adabn`: source-only, then every BatchNorm's statistics re-estimated on the target (AdaBN);
- `coral`: Deep CORAL between source and target feature covariances;
- `dann`: a domain head behind a gradient-reversal layer, coefficient `2/(1+exp(-10p))-1`;
- `cdan`: CDAN+E, the domain head conditioned on `features ⊗ predictions`, entropy-weighted;
- `selftrain`: FixMatch-style pseudo-labels: predictions on a weakly augmented target batch above
  `--pseudo-threshold` train the strongly augmented view (images: light vs RandAugment; text: the
  text as is vs 15% of its tokens replaced by the mask/unknown token);
- `auto`: every method above, each epoch and method scored without target labels. Each method's
  epoch is the best mean rank of source validation accuracy, information maximisation and DEV
  among its epochs. The method: when some adapted models aligned the domains (proxy A-distance
  `ALIGNED_PAD_DROP` below source-only's while source accuracy stays within `SOURCE_TOLERANCE`),
  the one with the lowest estimated target risk `(1 - source val accuracy) + PAD / 2` (the
  domain-adaptation bound of Ben-David et al.); otherwise the best mean rank of the same scores.

Each epoch the `TargetScorer` callback adds the label-free target scores (and, with
`--target-labelled`, the true target accuracy, for checking only) to the epoch's history row.
`--seeds N` repeats the whole run for N seeds and keeps the best by the same label-free rank.
Adaptation needs a strategy that trains the backbone (`finetune`, `partial:N`, `gradual`, `lora`):
a linear probe on cached features cannot move the features towards the target, so it is refused.
"""

from __future__ import annotations

import copy
import weakref
import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from graftkit.engine import LocalEngine, eval_mode
from graftkit.engine.progress import info
from graftkit.errors import ConfigError, DataError
from graftkit.evaluation.adaptation import (
    LABEL_FREE_SCORES,
    dev_risk,
    information_maximisation,
    mean_entropy,
    mean_rank,
    plot_domain_embedding,
    proxy_a_distance,
    spearman,
)
from graftkit.strategies.domain import (
    DomainHead,
    MultilinearMap,
    coral_loss,
    dann_coefficient,
    domain_loss,
    entropy_weights,
    recompute_batchnorm,
    reverse_gradient,
)
from graftkit.training.finetune import TERM_BUILDERS
from graftkit.training.objective import LossTerm, TermInput

from graftkit.training.config import ADAPT_METHODS  # noqa: E402  (the choices, validated in TrainConfig)
AUTO_CANDIDATES = ("none", "adabn", "coral", "dann", "cdan", "selftrain")
"""What `--adapt auto` tries, in this order (adabn reuses source-only's training)."""
ALIGNED_PAD_DROP = 0.2
"""`--adapt auto`: an adapted model counts as having aligned the domains when its proxy A-distance
is at least this much below source-only's (same seed). On `MAX_SCORED` samples a side the PAD's
standard error is about 0.04, so 0.2 is about five of them."""
SOURCE_TOLERANCE = 0.05
"""...and when its source validation accuracy is at most this much below source-only's (a model
that collapsed its features also looks aligned, but loses the source task)."""
MAX_SCORED = 512
"""Target (and source) samples scored per epoch and used for the diagnostics."""
TEXT_NOISE = 0.15
"""Self-training's strong view of a text: this share of its tokens replaced by the mask token."""


# ----------------------------------------------------------------------------------------------
# Checks and the target data


def adapting(cfg: Any) -> bool:
    """The run has a target domain (`--target-unlabeled`)."""
    return getattr(cfg, "target_unlabeled", None) is not None


def read_target_items(cfg: Any, modality: str) -> list:
    """The unlabelled target inputs: image files (any folder of images, class subfolders or not;
    labels are ignored) or texts (a TXT file, one per line, or the text column of a CSV/TSV/JSONL).

    Raises:
        DataError: No such folder or file, no images, empty or unreadable file, fewer than 2 inputs.
        ConfigError: Target data for a modality without adaptation.
    """
    path = Path(cfg.target_unlabeled).expanduser()
    where = f"--target-unlabeled {cfg.target_unlabeled}"
    if modality == "image":
        from graftkit.data.readers import list_image_files

        if path.is_file() and path.suffix.lower() in (".csv", ".jsonl", ".tsv"):
            raise DataError([f"{path}: give a folder of target images (labels, if any, are ignored), not a manifest"], where)
        try:
            items = list_image_files([path])
        except DataError as e:
            raise DataError(e.problems, where) from None
    elif modality == "text":
        from graftkit.data.text import read_texts

        if path.is_dir():
            raise DataError([f"{path} is a folder: give one TXT file (one text per line) or a CSV/TSV/JSONL file with a text column"], where)
        try:
            items = [s.text for s in read_texts(path, text_col=cfg.text_col, encoding=cfg.encoding)]
        except DataError as e:
            raise DataError(e.problems, where) from None
    else:
        raise ConfigError(f"--target-unlabeled: domain adaptation is for image and text models; this is {'an' if modality[0] in 'aeiou' else 'a'} {modality} model")
    if len(items) < 2:
        raise DataError([f"{path}: {len(items)} target input(s); domain adaptation needs at least 2"], where)
    return items


def read_target_labelled(cfg: Any, modality: str, task: Any) -> list:
    """`--target-labelled`: labelled target samples, used to check the label-free scores only.

    Raises:
        DataError: The set lacks labels, has classes the source lacks, or is empty.
    """
    from graftkit.data.read import read_labelled

    try:
        return read_labelled(cfg.target_labelled, modality=modality, label_kind=task.label_kind, classes=list(task.classes),
                             text_col=cfg.text_col, label_col=cfg.label_col, encoding=cfg.encoding)  # fmt: skip
    except DataError as e:
        raise DataError(e.problems + ["--target-labelled needs labels (class folders, or a label column) with the source's classes; "
                                      "unlabelled target data goes to --target-unlabeled"], f"--target-labelled {cfg.target_labelled}") from None  # fmt: skip


def check_adaptation(cfg: Any, modality: str, task: Any, *, resume: bool) -> None:
    """Everything about `--adapt` that can fail on user input, before training.

    Raises:
        ConfigError, DataError: with what to change.
    """
    from graftkit.data.labels import LabelKind

    if task.label_kind is not LabelKind.CLASS:
        raise ConfigError(f"--target-unlabeled / --adapt adapt single-label classifiers; --task {task.name} has {task.label_kind.value} labels")
    kind = cfg.parsed_strategy.kind
    if kind == "linear-probe":
        raise ConfigError(
            "--target-unlabeled / --adapt train the backbone towards the target domain; --strategy linear-probe keeps it frozen "
            "(cached features cannot move). Use --strategy finetune (or partial:N, gradual, lora)."
        )
    if resume and (cfg.adapt == "auto" or cfg.seeds > 1):
        raise ConfigError("--resume continues one training; --adapt auto and --seeds N train several: start again with --overwrite")
    read_target_items(cfg, modality)
    if cfg.target_labelled is not None:
        read_target_labelled(cfg, modality, task)


# ----------------------------------------------------------------------------------------------
# Target batches


class TargetBatches:
    """An endless stream of target training batches (inputs only, on the engine's device): the
    loader is restarted when it runs out, so the target may be smaller or larger than the source."""

    def __init__(self, loader: Any, engine: Any) -> None:
        self.loader, self.engine = loader, engine
        self._it = iter(loader)

    def next(self) -> Any:
        try:
            inputs, _ = next(self._it)
        except StopIteration:
            self._it = iter(self.loader)
            inputs, _ = next(self._it)
        return self.engine.to_device(inputs)


class _ViewPairs(torch.utils.data.Dataset):
    """Each target image as `((weak view, strong view), -1)`, for self-training."""

    def __init__(self, weak: Any, strong: Any) -> None:
        self.weak, self.strong = weak, strong

    def __len__(self) -> int:
        return len(self.weak)

    def __getitem__(self, i: int) -> tuple[tuple[torch.Tensor, torch.Tensor], int]:
        return (self.weak[i][0], self.strong[i][0]), -1


def target_train_loader(inputs: Any, items: list, cfg: Any, *, views: bool = False) -> Any:
    """A shuffled loader of target training batches: images augmented as the source is
    (`views`: weak `light` and strong `randaugment` views of each image); texts tokenized."""
    if inputs.modality == "text":
        from graftkit.data.text_loader import make_text_loader

        return make_text_loader(items, None, inputs.backbone.tokenizer, max_length=inputs.max_length, batch_size=cfg.batch_size, shuffle=True, seed=cfg.seed)
    from graftkit.data import ImageFileDataset, Sample, build_transform, make_loader
    from graftkit.training._build import num_workers

    pre = inputs.backbone.preprocess
    samples = [Sample(p, None) for p in items]

    def dataset(augment: str) -> Any:
        return ImageFileDataset(samples, None, build_transform(pre, augment, train=augment != "none"), channels=pre.in_chans, window=pre.window)

    ds = _ViewPairs(dataset("light"), dataset("randaugment")) if views else dataset(cfg.augment)
    drop_last = len(items) % cfg.batch_size == 1 and len(items) > cfg.batch_size  # a batch of 1 breaks BatchNorm in train mode
    return make_loader(ds, batch_size=cfg.batch_size, shuffle=True, num_workers=num_workers(cfg), seed=cfg.seed, drop_last=drop_last)


def _features(model: nn.Module, inputs: Any) -> torch.Tensor:
    return model.backbone.forward_features(inputs)


def _steps(n: int, cfg: Any) -> int:
    """Training batches over the run (for DANN's schedule)."""
    return max(1, cfg.epochs * max(1, math.ceil(n / cfg.batch_size)))


# ----------------------------------------------------------------------------------------------
# Loss terms


class _EpochLog:
    """A term's running mean over the epoch (`train_<name>` in the history) and its extra values."""

    def _log(self, value: torch.Tensor, **extra: float) -> torch.Tensor:
        sums = self.__dict__.setdefault("_sums", {})
        for key, v in {self.name: float(value.detach()), **extra}.items():
            total, n = sums.get(key, (0.0, 0))
            sums[key] = (total + v, n + 1)
        return value

    def epoch_values(self) -> dict[str, float]:
        """`train_<key>` means since the last call (then reset)."""
        sums = self.__dict__.pop("_sums", {})
        return {f"train_{k}": total / n for k, (total, n) in sums.items() if n}


_TERMS_OF: "weakref.WeakKeyDictionary[nn.Module, list]" = weakref.WeakKeyDictionary()
"""The adaptation terms each model trains with, for the epoch log (`TargetScorer`)."""


class CoralTerm(_EpochLog):
    """Deep CORAL: `weight × ||C_s - C_t||² / 4d²` between a source and a target batch's features."""

    name = "coral"

    def __init__(self, target: TargetBatches, weight: float) -> None:
        self.target, self.weight = target, weight

    def __call__(self, batch: TermInput) -> torch.Tensor:
        ft = _features(batch.model, self.target.next())
        return self._log(self.weight * coral_loss(batch.features, ft))


class DannTerm(nn.Module, _EpochLog):
    """DANN: a domain head on features behind gradient reversal; its coefficient follows
    `2/(1+exp(-10p))-1` over the run's training progress `p` (`coefficient` is the last one used)."""

    name = "dann"

    def __init__(self, features: int, target: TargetBatches, total_steps: int, weight: float) -> None:
        super().__init__()
        self.head = DomainHead(features)
        self.target, self.total_steps, self.weight = target, total_steps, weight
        self.coefficient = 0.0

    def __call__(self, batch: TermInput) -> torch.Tensor:
        self.coefficient = dann_coefficient(batch.step / self.total_steps)
        ft = _features(batch.model, self.target.next())
        ls = self.head(reverse_gradient(batch.features, self.coefficient))
        lt = self.head(reverse_gradient(ft, self.coefficient))
        return self._log(self.weight * domain_loss(ls, lt), dann_coefficient=self.coefficient)


class CdanTerm(nn.Module, _EpochLog):
    """CDAN+E: the domain head sees `features ⊗ softmax` (randomised above 4096 entries) behind
    gradient reversal, each sample weighted by `1 + exp(-entropy)`."""

    name = "cdan"

    def __init__(self, features: int, classes: int, target: TargetBatches, total_steps: int, weight: float, seed: int) -> None:
        super().__init__()
        self.map = MultilinearMap(features, classes, seed=seed)
        self.head = DomainHead(self.map.out_features)
        self.target, self.total_steps, self.weight = target, total_steps, weight
        self.coefficient = 0.0

    def _side(self, model: nn.Module, features: torch.Tensor, logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        probs = F.softmax(logits.float(), dim=1).detach()
        h = self.map(features.float(), probs)
        return self.head(reverse_gradient(h, self.coefficient)), entropy_weights(probs)

    def __call__(self, batch: TermInput) -> torch.Tensor:
        self.coefficient = dann_coefficient(batch.step / self.total_steps)
        ft = _features(batch.model, self.target.next())
        ls, ws = self._side(batch.model, batch.features, batch.logits)
        lt, wt = self._side(batch.model, ft, batch.model.head(ft))
        return self._log(self.weight * domain_loss(ls, lt, (ws, wt)), cdan_coefficient=self.coefficient)


class SelfTrainTerm(_EpochLog):
    """FixMatch-style self-training: pseudo-labels from the weak view where the model's confidence
    reaches `threshold`, cross-entropy on the strong view (`pseudo_fraction`: the share kept on
    the last batch)."""

    name = "selftrain"

    def __init__(self, target: TargetBatches, threshold: float, weight: float, text_noise: Callable | None = None) -> None:
        self.target, self.threshold, self.weight, self.text_noise = target, threshold, weight, text_noise
        self.pseudo_fraction = 0.0

    def __call__(self, batch: TermInput) -> torch.Tensor:
        model = batch.model
        views = self.target.next()
        weak, strong = (views, self.text_noise(views)) if self.text_noise is not None else views
        with torch.no_grad():
            probs = F.softmax(model.head(_features(model, weak)).float(), dim=1)
        confidence, pseudo = probs.max(dim=1)
        keep = (confidence >= self.threshold).float()
        self.pseudo_fraction = float(keep.mean())
        logits = model.head(_features(model, strong)).float()
        loss = self.weight * (F.cross_entropy(logits, pseudo, reduction="none") * keep).mean()
        return self._log(loss, pseudo_fraction=self.pseudo_fraction)


def token_noise(tokenizer: Any, share: float = TEXT_NOISE) -> Callable[[dict], dict]:
    """A text's strong view: `share` of its non-special tokens replaced by the mask token (the
    unknown token for tokenizers without one)."""
    replace_id = tokenizer.mask_token_id if tokenizer.mask_token_id is not None else tokenizer.unk_token_id
    special = torch.tensor(sorted(set(tokenizer.all_special_ids)))

    def noisy(batch: dict) -> dict:
        ids = batch["input_ids"]
        hit = (torch.rand(ids.shape, device=ids.device) < share) & batch["attention_mask"].bool() & ~torch.isin(ids, special.to(ids.device))
        return {**batch, "input_ids": torch.where(hit, torch.full_like(ids, replace_id), ids)}

    return noisy


def adaptation_terms(cfg: Any, model: nn.Module, inputs: Any, task: Any, engine: Any) -> list[LossTerm]:
    """The loss terms of `--adapt` (none for `none` / `adabn`, which change nothing in training)."""
    method = getattr(cfg, "adapt", "none")
    if not adapting(cfg) or method in ("none", "adabn", "auto"):
        return []
    terms = _build_terms(method, cfg, model, inputs, task, engine)
    _TERMS_OF[model] = terms
    return terms


def _build_terms(method: str, cfg: Any, model: nn.Module, inputs: Any, task: Any, engine: Any) -> list[LossTerm]:
    items = read_target_items(cfg, inputs.modality)
    n_features = getattr(model, "module", model).backbone.num_features
    total = _steps(len(inputs.samples("train")), cfg)
    if method == "selftrain":
        text = inputs.modality == "text"
        loader = target_train_loader(inputs, items, cfg, views=not text)
        noise = token_noise(inputs.backbone.tokenizer) if text else None
        return [SelfTrainTerm(TargetBatches(loader, engine), cfg.pseudo_threshold, cfg.adapt_weight, noise)]
    target = TargetBatches(target_train_loader(inputs, items, cfg), engine)
    if method == "coral":
        return [CoralTerm(target, cfg.adapt_weight)]
    if method == "dann":
        return [DannTerm(n_features, target, total, cfg.adapt_weight).to(engine.device)]
    if method == "cdan":
        return [CdanTerm(n_features, task.num_classes, target, total, cfg.adapt_weight, cfg.seed).to(engine.device)]
    raise ConfigError(f"--adapt {method!r} is not one of {', '.join(ADAPT_METHODS)}")


TERM_BUILDERS.append(adaptation_terms)


# ----------------------------------------------------------------------------------------------
# Label-free scores, per epoch


@dataclass
class Scored:
    """One model's pass over source validation and the target: scores and the features."""

    scores: dict[str, float]
    source_features: np.ndarray
    target_features: np.ndarray


@torch.inference_mode()
def _pass(model: nn.Module, loader: Any, engine: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Features, softmax probabilities and targets over `loader`."""
    feats, probs, ys = [], [], []
    inner = getattr(model, "module", model)
    with eval_mode(inner):
        for x, y in loader:
            x = engine.to_device(x)
            with engine.autocast():
                f = inner.backbone.forward_features(x)
                logits = inner.head(f)
            feats.append(f.float().cpu())
            probs.append(F.softmax(logits.float(), dim=1).cpu())
            ys.append(torch.as_tensor(y).cpu())
    return torch.cat(feats).numpy(), torch.cat(probs).numpy(), torch.cat(ys).numpy()


class TargetScorer:
    """Epoch callback: adds the label-free target scores to each epoch's history row
    (`source_val_accuracy`, `target_entropy`, `target_im`, `target_dev`; `target_accuracy` with
    `--target-labelled`, for checking only), and with `keep_states` keeps every epoch's weights
    (for `--adapt auto`'s epoch choice)."""

    def __init__(self, inputs: Any, task: Any, engine: Any, items: list, labelled: list | None, *, seed: int, keep_states: bool = False) -> None:
        self.engine, self.seed, self.keep_states = engine, seed, keep_states
        self.val_loader = inputs.labelled_loader("val", task, train=False)
        self.target_loader = inputs.unlabelled_loader(_subset(items, seed))
        self.labelled_loader = _labelled_loader(inputs, _subset(labelled, seed), task) if labelled else None
        self.states: dict[int, dict[str, torch.Tensor]] = {}

    def score(self, model: nn.Module) -> Scored:
        fs, ps, ys = _pass(model, self.val_loader, self.engine)
        ft, pt, _ = _pass(model, self.target_loader, self.engine)
        losses = -np.log(np.clip(ps[np.arange(len(ys)), ys.astype(np.int64)], 1e-12, 1.0))
        scores = {
            "source_val_accuracy": float((ps.argmax(1) == ys).mean()),
            "target_entropy": mean_entropy(pt),
            "target_im": information_maximisation(pt),
            "target_dev": dev_risk(fs, losses, ft, self.seed),
        }
        if self.labelled_loader is not None:
            _, pl, yl = _pass(model, self.labelled_loader, self.engine)
            scores["target_accuracy"] = float((pl.argmax(1) == yl).mean())
        return Scored(scores, fs, ft)

    def on_epoch_end(self, state: Any) -> None:
        row = state.history[-1]
        for term in _TERMS_OF.get(state.model, []):
            row.update(term.epoch_values())
        row.update(self.score(state.model).scores)
        if self.keep_states:
            self.states[state.epoch] = {k: v.detach().to("cpu", copy=True) for k, v in state.model.state_dict().items()}


def _subset(items: list | None, seed: int, n: int = MAX_SCORED) -> list:
    items = list(items or [])
    if len(items) <= n:
        return items
    keep = np.random.default_rng(seed).choice(len(items), n, replace=False)
    return [items[i] for i in sorted(keep)]


def _labelled_loader(inputs: Any, samples: list, task: Any) -> Any:
    """An evaluation loader over labelled samples that are not one of the data's splits."""
    targets = task.encode([s.label for s in samples])
    if inputs.modality == "text":
        return task.text_loader(samples, inputs.backbone.tokenizer, max_length=inputs.max_length, batch_size=max(inputs.cfg.batch_size, 64), shuffle=False, seed=0)
    from graftkit.data import ImageFileDataset, build_transform, make_loader
    from graftkit.training._build import num_workers

    pre = inputs.backbone.preprocess
    ds = ImageFileDataset(samples, targets, build_transform(pre, "none", train=False), channels=pre.in_chans, window=pre.window)
    return make_loader(ds, batch_size=inputs.cfg.batch_size, shuffle=False, num_workers=num_workers(inputs.cfg), seed=0)


# ----------------------------------------------------------------------------------------------
# The adapted run: methods × seeds, selection, diagnostics


@dataclass
class Candidate:
    """One trained (method, seed): its kept weights' scores and its per-epoch rows."""

    method: str
    seed: int
    trained: Any
    scores: dict[str, float]
    epoch: int | None  # 1-based epoch kept (None: solved)
    history: list[dict[str, Any]]
    note: str = ""
    extras: dict[str, Any] = field(default_factory=dict)
    features: tuple[np.ndarray, np.ndarray] | None = None  # source validation and target features of the kept weights

    def row(self) -> dict[str, Any]:
        return {"method": self.method, "seed": self.seed, "epoch": self.epoch, **self.scores, **self.extras, **({"note": self.note} if self.note else {})}


def apply_adabn(model: nn.Module, inputs: Any, items: list, engine: Any) -> int:
    """AdaBN on `model`: its BatchNorm statistics re-estimated on the target images or texts."""
    loader = inputs.unlabelled_loader(items)
    inner = getattr(model, "module", model)
    batches = (engine.to_device(x) for x, _ in loader)
    with engine.autocast():
        return recompute_batchnorm(inner, batches, inner.backbone.forward_features)


def _rescore_outputs(trained: Any, inputs: Any, task: Any, engine: Any) -> None:
    """Predictions of the (changed) kept weights on val and test, as finish_run wants them."""
    from graftkit.training.loop import predict_probs

    model = engine.setup(trained.model)
    for split in list(trained.outputs):
        trained.outputs[split] = predict_probs(model, inputs.labelled_loader(split, task, train=False), engine, task)


def train_adapted(plan: Any, callbacks: list, train_run: Callable[..., Any]) -> Any:
    """Train the run's method(s) and seed(s), keep the best by the label-free rank, and attach
    the adaptation record (`Trained.adaptation`: scores per epoch, choice and why, diagnostics,
    seeds' mean ± std, agreement with target labels when given).

    Args:
        plan: The `FitPlan` (its cfg has `target_unlabeled`).
        callbacks: The caller's loop callbacks.
        train_run: `fit.train_run` (the one training stage, called once per method and seed).
    """
    from graftkit.training.inputs import make_inputs

    cfg, task = plan.cfg, plan.task
    items = read_target_items(cfg, plan.modality)
    labelled = read_target_labelled(cfg, plan.modality, task) if cfg.target_labelled else None
    engine = LocalEngine(plan.precision.device, precision=plan.precision.inference, channels_last=plan.precision.channels_last)
    methods = AUTO_CANDIDATES if cfg.adapt == "auto" else (cfg.adapt,)
    seeds = [cfg.seed + i for i in range(cfg.seeds)]
    several = len(methods) * len(seeds) > 1
    pristine = copy.deepcopy(plan.backbone) if several else None
    before = _domain_features(plan.backbone, make_inputs(plan.dataset, plan.backbone, cfg), items, engine, cfg.seed)
    info(f"domain adaptation: {cfg.adapt} on {len(items)} unlabelled target {make_inputs(plan.dataset, plan.backbone, cfg).noun}"
         + (f", {len(seeds)} seeds" if len(seeds) > 1 else "") + (f"; {len(labelled)} labelled target samples for checking only" if labelled else ""))  # fmt: skip

    candidates: list[Candidate] = []
    for seed in seeds:
        for method in methods:
            source_only = next((c for c in candidates if c.seed == seed and c.method == "none"), None)
            sub_cfg = dataclasses.replace(cfg, adapt=method, seed=seed)
            backbone = copy.deepcopy(pristine) if pristine is not None else plan.backbone
            sub = dataclasses.replace(plan, cfg=sub_cfg, backbone=backbone)
            inputs = make_inputs(sub.dataset, backbone, sub_cfg)
            scorer = TargetScorer(inputs, task, engine, items, labelled, seed=seed, keep_states=cfg.adapt == "auto")
            if method == "adabn" and source_only is not None:  # AdaBN changes nothing in training: reuse source-only's
                trained = copy.deepcopy(source_only.trained)
                history = [dict(r) for r in source_only.history]
                epoch = source_only.epoch
            else:
                info(f"adaptation: {method}, seed {seed}")
                trained = train_run(sub, [scorer, *callbacks])
                history = trained.result.history
                epoch = None if trained.result.best_epoch is None else trained.result.best_epoch + 1
                if cfg.adapt == "auto" and scorer.states:
                    epoch = _choose_epoch(history)
                    trained.model.load_state_dict(scorer.states[epoch - 1])
                    trained.result.best_epoch = epoch - 1
                    _rescore_outputs(trained, inputs, task, engine)
                scorer.states.clear()
            note = ""
            if method == "adabn":
                layers = apply_adabn(trained.model, inputs, items, engine)
                note = (f"AdaBN re-estimated {layers} BatchNorm layers on the target" if layers else
                        f"AdaBN: {backbone.weights.arch} has no BatchNorm layers (nothing to re-estimate): the model is source-only")  # fmt: skip
                info(note)
                _rescore_outputs(trained, inputs, task, engine)
            scored = scorer.score(trained.model)
            extras = {"pad_after": proxy_a_distance(scored.source_features, scored.target_features, seed)}
            candidates.append(Candidate(method, seed, trained, scored.scores, epoch, history, note, extras, (scored.source_features, scored.target_features)))
            c = candidates[-1]
            info(f"  {method} seed {seed}: " + ", ".join(f"{k} {v:.3f}" for k, v in c.scores.items() if v is not None and np.isfinite(v)))

    chosen_per_seed = [choose_method([c for c in candidates if c.seed == s]) for s in seeds]
    kept = _choose(chosen_per_seed, key="seed_rank")
    record = _record(cfg, candidates, chosen_per_seed, kept, before, labelled is not None)
    after = kept.features
    record["pad_before"] = proxy_a_distance(before[0], before[1], cfg.seed)
    record["pad_after"] = proxy_a_distance(after[0], after[1], kept.seed)
    record["figures"] = _embedding_figures(plan.run_dir, before, after, cfg.seed)
    _rewrite_history(plan.run_dir, kept.history)
    info(record["why"])
    trained = kept.trained
    trained.result.history = kept.history
    trained.adaptation = record
    return trained


def _choose_epoch(history: list[dict[str, Any]]) -> int:
    """1-based epoch with the best mean label-free rank among the run's epochs."""
    ranks = mean_rank(history)
    return int(np.argmin(ranks)) + 1


def _choose(candidates: list[Candidate], key: str = "mean_rank") -> Candidate:
    """The best mean rank of the label-free scores among `candidates`, each one's rank stored as
    `extras[key]` (`seed_rank` for the choice among the seeds' picks, so that their own per-seed
    `mean_rank` stays as it was)."""
    ranks = mean_rank([c.scores for c in candidates])
    for c, r in zip(candidates, ranks):
        c.extras[key] = r
    return candidates[int(np.argmin(ranks))]


def target_risk_bound(source_val_accuracy: float, pad: float) -> float:
    """`(1 - source accuracy) + PAD / 2`: the source error plus half the (proxy) divergence, the
    label-free part of Ben-David et al.'s bound on the target error (lower is better)."""
    return (1.0 - source_val_accuracy) + 0.5 * pad


def choose_method(candidates: list[Candidate]) -> Candidate:
    """One seed's method (see the module docstring): among the adapted models that aligned the
    domains, the lowest `target_risk_bound`; when none did, the best mean rank. Each candidate's
    `extras` get `mean_rank`, `target_bound` and `aligned`; the kept one's `picked_by` says which
    rule chose it."""
    ranked = _choose(candidates)
    none = next((c for c in candidates if c.method == "none"), None)
    for c in candidates:
        pad, src = c.extras.get("pad_after"), c.scores.get("source_val_accuracy")
        usable = pad is not None and src is not None and np.isfinite(pad) and np.isfinite(src)
        c.extras["target_bound"] = target_risk_bound(src, pad) if usable else float("nan")
        c.extras["aligned"] = bool(usable and none is not None and c.method not in ("none", "adabn")
                                   and pad <= none.extras["pad_after"] - ALIGNED_PAD_DROP
                                   and src >= none.scores["source_val_accuracy"] - SOURCE_TOLERANCE)  # fmt: skip
    aligned = [c for c in candidates if c.extras["aligned"]]
    kept = min(aligned, key=lambda c: c.extras["target_bound"]) if aligned else ranked
    kept.extras["picked_by"] = "target_bound" if aligned else "mean_rank"
    return kept


def _domain_features(backbone: nn.Module, inputs: Any, items: list, engine: Any, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Source (validation inputs, as the scorer sees them) and target features of `backbone`, up
    to `MAX_SCORED` each."""
    from graftkit.training.features import compute_features

    bb = backbone.to(engine.device)  # outside inference mode: the weights stay trainable
    source = compute_features(bb, inputs.unlabelled_loader(_subset(inputs.items("val"), seed)), engine, description="source features")
    target = compute_features(bb, inputs.unlabelled_loader(_subset(items, seed)), engine, description="target features")
    return source.numpy(), target.numpy()


def _embedding_figures(run_dir: Path, before: tuple, after: tuple, seed: int) -> list[dict[str, str]]:
    figures = []
    for name, (s, t), when in (("domain_embedding_before.png", before, "pretrained"), ("domain_embedding_after.png", after, "after adaptation")):
        plot_domain_embedding(s, t, Path(run_dir) / name, title=f"t-SNE of source vs target features ({when})", seed=seed)
        figures.append({"title": f"Source vs target features, {when} (t-SNE)", "file": name})
    return figures


def _rewrite_history(run_dir: Path, history: list[dict[str, Any]]) -> None:
    """history.jsonl of the kept training, with the target scores the scorer added to each row."""
    import json

    (Path(run_dir) / "history.jsonl").write_text("".join(json.dumps(r) + "\n" for r in history))


def _stats(values: list[float]) -> dict[str, float] | None:
    v = [x for x in values if x is not None and np.isfinite(x)]
    if not v:
        return None
    return {"mean": float(np.mean(v)), "std": float(np.std(v, ddof=1)) if len(v) > 1 else 0.0, "n": len(v)}


def _record(cfg: Any, candidates: list[Candidate], chosen: list[Candidate], kept: Candidate, before: tuple, labelled: bool) -> dict[str, Any]:
    """metrics.json's `adaptation`: what ran, what each scored, what was kept and why."""
    keys = sorted({k for c in candidates for k, v in {**c.scores, **c.extras}.items() if isinstance(v, float) and k not in ("mean_rank", "seed_rank")})
    by_method: dict[str, dict[str, Any]] = {}
    for method in dict.fromkeys(c.method for c in candidates):
        rows = [c for c in candidates if c.method == method]
        by_method[method] = {k: _stats([{**c.scores, **c.extras}.get(k) for c in rows]) for k in keys}
    seeds_summary = None
    if cfg.seeds > 1:
        seeds_summary = {k: _stats([{**c.scores, **c.extras}.get(k) for c in chosen]) for k in keys}
    ranked = " , ".join(f"{name} ({better} is better)" for name, better in LABEL_FREE_SCORES.items())
    if cfg.adapt == "auto":
        why = _why_auto(kept, [c for c in candidates if c.seed == kept.seed], ranked)
    else:
        why = (f"--adapt {cfg.adapt}: kept epoch {kept.epoch} (best source validation {cfg.monitor})"
               + (f"; of {cfg.seeds} seeds, seed {kept.seed} by the best mean rank over {ranked}" if cfg.seeds > 1 else ""))  # fmt: skip
    record: dict[str, Any] = {
        "method": kept.method if cfg.adapt != "auto" else "auto",
        "chosen": {"method": kept.method, "seed": kept.seed, "epoch": kept.epoch},
        "why": why,
        "scores": {k: v for k, v in kept.scores.items()},
        "ranked_by": dict(LABEL_FREE_SCORES),
        "candidates": [c.row() for c in candidates],
        "by_method": by_method,
        "histories": [{"method": c.method, "seed": c.seed, "rows": [_score_row(r) for r in c.history]} for c in candidates],
        "target": {"path": str(cfg.target_unlabeled), "labelled": cfg.target_labelled},
    }
    record["picks"] = [{"seed": c.seed, "method": c.method, "epoch": c.epoch, "picked_by": c.extras.get("picked_by", "mean_rank")} for c in chosen]
    if seeds_summary is not None:
        record["seeds"] = {"n": cfg.seeds, "seeds": [c.seed for c in chosen], "mean_std": seeds_summary}
    if labelled:
        record["agreement"] = _agreement(candidates)
    return record


def _why_auto(kept: Candidate, alternatives: list[Candidate], ranked: str) -> str:
    """The sentence that says why `--adapt auto` kept `kept` among its seed's `alternatives`."""
    head = f"--adapt auto chose {kept.method} (epoch {kept.epoch}, seed {kept.seed})"
    epochs = "; each method's epoch was chosen by the mean rank of the same scores among its epochs"
    if kept.extras.get("picked_by") == "target_bound":
        none = next(c for c in alternatives if c.method == "none")
        aligned = sorted((c for c in alternatives if c.extras.get("aligned")), key=lambda c: c.extras["target_bound"])
        runner = next((c for c in aligned if c is not kept), None)
        return (f"{head}: it aligned the domains (proxy A-distance {kept.extras['pad_after']:.2f} against source-only's "
                f"{none.extras['pad_after']:.2f}, source val accuracy {kept.scores['source_val_accuracy']:.3f} against "
                f"{none.scores['source_val_accuracy']:.3f}) with the lowest estimated target risk (1 - source accuracy) + PAD/2 = "
                f"{kept.extras['target_bound']:.3f} among {len(aligned)} aligned methods"
                + (f"; next {runner.method} ({runner.extras['target_bound']:.3f})" if runner else "") + epochs)  # fmt: skip
    by_rank = sorted(alternatives, key=lambda c: c.extras.get("mean_rank", 0))
    runner = next((c for c in by_rank if c is not kept), None)
    return (f"{head}: no adapted model aligned the domains (proxy A-distance {ALIGNED_PAD_DROP} below source-only's with source "
            f"accuracy within {SOURCE_TOLERANCE:.0%}), so the best mean rank {kept.extras['mean_rank']:.2f} over {ranked} among "
            f"{len(alternatives)} methods" + (f"; next {runner.method} ({runner.extras['mean_rank']:.2f})" if runner else "") + epochs)  # fmt: skip


def _score_row(row: dict[str, Any]) -> dict[str, Any]:
    keep = ("epoch", "val_accuracy", "source_val_accuracy", "target_entropy", "target_im", "target_dev", "target_accuracy", "train_loss",
            *(f"train_{k}" for k in ("coral", "dann", "cdan", "selftrain", "dann_coefficient", "cdan_coefficient", "pseudo_fraction")))
    return {k: row[k] for k in keep if k in row}


def _agreement(candidates: list[Candidate]) -> dict[str, Any]:
    """Spearman correlation of each label-free score with the true target accuracy, over every
    scored epoch of every method and seed, signed so that +1 means the score ranks exactly as the
    target accuracy does (lower-is-better scores are negated)."""
    rows = [r for c in candidates for r in c.history if r.get("target_accuracy") is not None]
    finals = [c.scores for c in candidates]
    out = {}
    for key, better in {**LABEL_FREE_SCORES, "target_entropy": "lower"}.items():
        sign = 1.0 if better == "higher" else -1.0
        per_epoch = spearman([r.get(key) for r in rows], [r["target_accuracy"] for r in rows])
        per_model = spearman([f.get(key) for f in finals], [f.get("target_accuracy") for f in finals])
        out[key] = {"epochs": None if per_epoch is None else sign * per_epoch, "models": None if per_model is None else sign * per_model,
                    "n_epochs": len(rows), "n_models": len(finals)}  # fmt: skip
    return out

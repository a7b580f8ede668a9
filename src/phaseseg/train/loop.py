"""The training loop: ``fit(data_dir, out, config) -> model file``, in small named steps.

:func:`fit` resolves the configuration (:class:`InitModel`, :func:`resolve_config`), loads the
data (:func:`load_data`), builds the network (:func:`build_network`), runs the loop and tunes the
thresholds; it returns a :class:`FitResult` and writes the model file with the resolved
configuration beside it (``<out>.config.json``).

* crops of the in-memory training images (:mod:`phaseseg.train.samples`), AdamW, warm-up + cosine
  learning rate, channels-last, and bf16 autocast where the device computes it natively
  (``precision``: CPUs with AVX-512 BF16 or AMX, recent GPUs; float32 elsewhere);
* every ``eval_every`` steps the competition score on the validation fold; the best weights are
  written to ``out``; at the end the post-processing thresholds are tuned per cell type on the
  validation fold and stored in the model file (``tune=False`` leaves that to
  :func:`phaseseg.segment.tuning.retune`);
* ``num_workers`` processes cut the batches (default: none on a CPU, 8 on a GPU);
* every ``checkpoint_every`` steps (and on Ctrl-C) a training state ``<out>.state.pt`` is
  written atomically; ``resume=True`` continues from it (also after ``kill -9``) — batches are
  drawn from ``default_rng([seed, step])``, so a resumed run sees the same data;
* ``init`` starts from a model file's weights (fine-tuning, e.g. the bundled model on your own
  annotations); the file records what those weights were trained on. A ``net`` config wider
  than the file's (same depth) grows the network first (:func:`phaseseg.nn.model.widen`);
  otherwise the file's architecture is used;
* ``ema_decay > 0`` keeps an exponential moving average of the weights (and BatchNorm
  statistics) beside the trained ones; both are scored at every evaluation and the better one
  is kept as the best checkpoint.
"""

from __future__ import annotations

import copy
import json
import logging
import time
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from phaseseg import io
from phaseseg.nn.checkpoint import load_model_file, save_model
from phaseseg.nn.device import autocast, resolve_precision
from phaseseg.nn.model import (
    NetConfig,
    UNet,
    add_cell_types,
    add_centre_head,
    build_model,
    can_widen,
    widen,
)
from phaseseg.progress import tqdm
from phaseseg.segment.postprocess import PostprocessParams
from phaseseg.segment.segmenter import BUNDLED_MODEL, pick_device
from phaseseg.segment.tuning import (
    _as_dicts,
    _fmt,
    predict_val,
    score_val,
    thresholds_by,
    tune_postprocess,
)
from phaseseg.train.config import TrainConfig, lr_factor
from phaseseg.train.samples import Sample, batch_indices, load_samples, random_crop, read_folds

log = logging.getLogger(__name__)


def update_ema(ema: torch.nn.Module, net: torch.nn.Module, decay: float, step: int) -> None:
    """``ema <- d * ema + (1 - d) * net`` over all floating-point parameters and buffers, with
    ``d = min(decay, (1 + step) / (10 + step))`` so that early weights are forgotten quickly;
    integer buffers (BatchNorm's batch counter) are copied."""
    d = min(decay, (1 + step) / (10 + step))
    with torch.no_grad():
        for e, p in zip(ema.state_dict().values(), net.state_dict().values(), strict=True):
            if e.dtype.is_floating_point:
                e.lerp_(p, 1.0 - d)
            else:
                e.copy_(p)


def make_batch(
    samples: list[Sample], cfg: TrainConfig, step: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One step's batch: images (B,1,S,S), targets (B,5,S,S) [fg, dist, touching, boundary,
    centre], cell types (B,)."""
    rng = np.random.default_rng([cfg.seed, step])
    idx = batch_indices(samples, cfg.batch_size, rng, cfg.type_weights)
    crops = [random_crop(samples[i], cfg.crop_size, rng, cfg.foreground_bias) for i in idx]
    images = torch.from_numpy(np.stack([c[0] for c in crops]))[:, None]
    targets = torch.from_numpy(np.stack([np.stack(c[1:]) for c in crops]))
    types = torch.tensor([samples[i].cell_type for i in idx])
    return images, targets, types


class _Batches(torch.utils.data.Dataset):
    """Step ``k`` -> :func:`make_batch` ``(samples, cfg, k)``, for DataLoader worker processes."""

    def __init__(self, samples: list[Sample], cfg: TrainConfig):
        self.samples, self.cfg = samples, cfg

    def __len__(self) -> int:
        return self.cfg.steps

    def __getitem__(self, step: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return make_batch(self.samples, self.cfg, step)


def iter_batches(
    samples: list[Sample], cfg: TrainConfig, start: int, workers: int, pin: bool = False
) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """The batches of steps ``start .. cfg.steps - 1`` in order, cut by ``workers`` processes
    (0: in this one). The same steps give the same batches whatever ``workers`` is."""
    if workers == 0:
        return (make_batch(samples, cfg, step) for step in range(start, cfg.steps))
    loader = torch.utils.data.DataLoader(
        _Batches(samples, cfg),
        batch_size=None,
        sampler=range(start, cfg.steps),
        num_workers=workers,
        pin_memory=pin,
        prefetch_factor=4,
    )
    return iter(loader)


def loss_fn(
    out: dict[str, torch.Tensor], targets: torch.Tensor, types: torch.Tensor, cfg: TrainConfig
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """BCE on the foreground, up-weighted by ``touching_weight`` where two cells touch and by
    ``boundary_weight`` along cell outlines; BCE on the normalised distance; CE on the cell type;
    with a centre output (a third pixel channel), BCE on the centre map."""
    pixel = out["pixel"].float()
    fg, dist, touching, boundary = targets[:, 0], targets[:, 1], targets[:, 2], targets[:, 3]
    weight = 1.0 + cfg.touching_weight * touching + cfg.boundary_weight * boundary
    bce = F.binary_cross_entropy_with_logits
    fg_loss = (bce(pixel[:, 0], fg, reduction="none") * weight).mean()
    dist_loss = bce(pixel[:, 1], dist)
    type_loss = F.cross_entropy(out["cell_type"].float(), types)
    total = fg_loss + dist_loss + cfg.type_loss_weight * type_loss
    parts = {"fg": fg_loss.detach(), "dist": dist_loss.detach(), "type": type_loss.detach()}
    if pixel.shape[1] > 2:
        centre_loss = bce(pixel[:, 2], targets[:, 4])
        total = total + cfg.centre_loss_weight * centre_loss
        parts["centre"] = centre_loss.detach()
    return total, parts


def train_step(
    net: torch.nn.Module,
    opt: torch.optim.Optimizer,
    ema: torch.nn.Module | None,
    batch: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
    cfg: TrainConfig,
    step: int,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """One optimisation step on ``batch`` (images, targets, cell types; moved to the network's
    device here), then the moving-average update; returns :func:`loss_fn`'s loss and parts."""
    device = next(net.parameters()).device
    images, targets, types = (t.to(device, non_blocking=True) for t in batch)
    images = images.contiguous(memory_format=torch.channels_last)
    with autocast(device, resolve_precision(cfg.precision, device)):
        output = net(images)
    loss, parts = loss_fn(output, targets, types, cfg)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    if ema is not None:
        update_ema(ema, net, cfg.ema_decay, step)
    return loss, parts


def state_path(out: Path) -> Path:
    """Where a training run writing the model ``out`` keeps its resumable state.

    >>> state_path(Path("runs/model.pt")).as_posix()
    'runs/model.pt.state.pt'
    """
    return out.with_name(out.name + ".state.pt")


@dataclass(eq=False)
class FitResult(Mapping[str, Any]):
    """What :func:`fit` did: the files it wrote, the configuration it used, the scores.

    ``scores`` is ``{}`` without a validation fold, else ``{"best_step", "untuned", "tuned"}``
    (``"tuned"`` unless ``tune=False``), as recorded in the model file. For code written
    against earlier versions, whose ``fit`` returned that dict, the result also reads as a
    mapping of ``scores`` (``result["tuned"]``, ``"tuned" in result``, ``result == scores``).
    """

    model_path: Path
    config_path: Path  # the resolved configuration, beside the model: <out>.config.json
    config: TrainConfig  # resolved: the architecture (of the init model) and its input scale
    cell_types: list[str]  # the classes of the model's cell-type head
    thresholds_by: str  # "predicted" or "declared" cell type chooses the validation thresholds
    data_cell_types: list[str] = field(default_factory=list)  # the cell types the data declares
    scores: dict[str, Any] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)
    train_seconds: float = 0.0
    steps: int = 0  # training steps run (with a time budget: as many as it allowed)

    @property
    def headline(self) -> dict[str, float] | None:
        """The validation scores the model file stands for: with the tuned thresholds, else
        those of the weights kept (trained or moving average); None without validation."""
        if "tuned" in self.scores:
            return self.scores["tuned"]
        best = self.scores.get("untuned")
        if best is None:
            return None
        return best["ema"] if best.get("weights") == "ema" else best

    @property
    def score(self) -> float | None:
        """``headline["overall"]``: the validation fold's competition score."""
        return None if self.headline is None else self.headline["overall"]

    def __getitem__(self, key: str) -> Any:
        return self.scores[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.scores)

    def __len__(self) -> int:
        return len(self.scores)


@dataclass
class InitModel:
    """The model file that fine-tuning starts from (``TrainConfig.init``)."""

    path: Path
    payload: dict[str, Any]  # as read by load_model_file
    net: NetConfig

    @classmethod
    def load(cls, init: str | None) -> InitModel | None:
        """``init`` a model file, ``"bundled"`` (the default model) or None (no init)."""
        if not init:
            return None
        path = BUNDLED_MODEL if init == "bundled" else Path(init)
        payload = load_model_file(path)
        return cls(path, payload, NetConfig.from_dict(payload["net"]))

    @property
    def cell_types(self) -> list[str]:
        return list(self.payload.get("cell_types", io.CELL_TYPES))


@dataclass
class TrainingData:
    """A data folder's images, split into training and validation samples."""

    train_ids: list[str]
    val_ids: list[str]
    train: list[Sample]
    val: list[Sample]
    cell_types: list[str]  # the cell types the data set declares (train.csv), sorted


def resolve_config(cfg: TrainConfig, init: InitModel | None) -> tuple[TrainConfig, bool]:
    """The configuration a run uses, as a new :class:`TrainConfig` (``cfg`` is not changed),
    and whether the init model's network is widened into its ``net``.

    The network's working scale is ``cfg.input_scale``, else the init model's, else 1; it has a
    centre output if ``cfg.centre_head``, else if the init model has one, else as ``cfg.net``
    says. With an init model the network is that model's architecture at this scale, unless
    ``cfg.net`` is a wider one of the same depth (:func:`~phaseseg.nn.model.can_widen`): then it
    is grown; a centre output it lacks is added (:func:`~phaseseg.nn.model.add_centre_head`).
    """
    scale = cfg.input_scale or (init.net.input_scale if init is not None else 1.0)
    own = NetConfig.from_dict(cfg.net)
    centre = cfg.centre_head
    if centre is None:
        centre = init.net.centre if init is not None else own.centre
    net = replace(own, input_scale=scale).to_dict()
    grow = False
    if init is not None:
        if init.net.centre and not centre:
            raise io.PhasesegInputError(
                f"{init.path}: the model has a centre output, which training cannot remove"
            )
        init_net = replace(init.net, input_scale=scale)
        net = replace(own, input_scale=scale, centre=init.net.centre).to_dict()
        if init_net.to_dict() != net:
            grow = can_widen(init_net, NetConfig.from_dict(net))
            if grow:
                old_ch, new_ch = init.payload["net"]["channels"], net["channels"]
                log.info("widening %s from %s to %s channels", init.path, old_ch, new_ch)
            else:
                log.info("using the architecture of %s: %s", init.path, init.payload["net"])
                net = init_net.to_dict()
        if scale != init.net.input_scale:
            log.info(
                "input scale %s (the initial weights were trained at %s)",
                scale,
                init.net.input_scale,
            )
        if centre and not init.net.centre:
            log.info("adding a centre output to %s", init.path)
    net["centre"] = centre
    return replace(copy.deepcopy(cfg), net=net), grow


def head_cell_types(cfg: TrainConfig, init: InitModel | None) -> list[str]:
    """The classes of the network's cell-type head: the init model's, else
    :data:`phaseseg.io.CELL_TYPES`; their number must be ``net["n_cell_types"]``."""
    names = init.cell_types if init is not None else list(io.CELL_TYPES)
    n = cfg.net["n_cell_types"]
    if len(names) != n:
        raise io.PhasesegInputError(
            f"net n_cell_types is {n}, but the cell types are {', '.join(names)}"
        )
    return names


def declared_cell_types(data_dir: Path) -> list[str]:
    """The cell types a data folder's ``train.csv`` declares, sorted."""
    df = io.read_train_csv(Path(data_dir) / "train.csv")
    return sorted(set(df["cell_type"].astype(str)))


def closest_cell_type(
    net: UNet, samples: list[Sample], names: list[str], device: torch.device, precision: str
) -> str:
    """The known cell type (of ``names``, the head's classes) that ``net`` finds most like
    ``samples``: the largest mean predicted probability over (at most 8 of) them."""
    maps = predict_val(net, samples[:8], device, precision)
    mean = np.mean([m[2] for m in maps], axis=0)
    return names[int(np.argmax(mean))]


def grow_cell_types(
    net: UNet,
    new_types: list[str],
    known: list[str],
    samples: list[Sample],
    device: torch.device,
    precision: str,
) -> tuple[UNet, dict[str, dict[str, Any]]]:
    """Add ``new_types`` (cell types of the data that the head of ``net`` does not know, its
    classes being ``known``) as new classes of the type head, each initialised from the
    closest known type on its images (:func:`closest_cell_type`,
    :func:`~phaseseg.nn.model.add_cell_types`). Returns the grown network and, per new type,
    what the model file records (``added_cell_types``)."""
    sources, added = [], {}
    for name in new_types:
        own = [s for s in samples if s.type_name == name]
        source = closest_cell_type(net, own, known, device, precision) if own else known[0]
        sources.append(known.index(source))
        added[name] = {"initialised_from": source, "images": len(own)}
        log.info(
            "new cell type %s: the type head grows a class, initialised from %s (the closest "
            "known type on its %d images); its thresholds start as %s's and are tuned",
            name,
            source,
            len(own),
            source,
        )
    grown = add_cell_types(net, sources)
    return grown.to(device).to(memory_format=torch.channels_last), added  # type: ignore[call-overload]


def load_data(
    data_dir: Path, cfg: TrainConfig, cell_types: list[str], cache_dir: Path | None = None
) -> TrainingData:
    """Read ``data_dir`` (``train.csv``, ``train/``, ``folds.csv``) and load the samples of the
    training folds and of ``cfg.val_fold`` (at most ``cfg.max_val_images`` of it)."""
    df = io.read_train_csv(data_dir / "train.csv")
    folds = read_folds(data_dir, df)
    if cfg.val_fold is not None and not (folds == cfg.val_fold).any():
        raise io.PhasesegInputError(f"{data_dir / 'folds.csv'}: no image in fold {cfg.val_fold}")
    val_ids = [i for i, f in folds.items() if cfg.val_fold is not None and f == cfg.val_fold]
    if cfg.max_val_images is not None:
        val_ids = val_ids[: cfg.max_val_images]
    train_ids = [i for i, f in folds.items() if cfg.val_fold is None or f != cfg.val_fold]
    log.info("%d training and %d validation images", len(train_ids), len(val_ids))
    train = load_samples(data_dir, train_ids, cache_dir=cache_dir, cell_types=cell_types)
    val = (
        load_samples(data_dir, val_ids, cache_dir=cache_dir, cell_types=cell_types)
        if val_ids
        else []
    )
    for s in train:
        if min(s.image.shape) < cfg.crop_size:
            raise io.PhasesegInputError(
                f"{data_dir / 'train' / s.image_id}.png: {s.image.shape[1]}x{s.image.shape[0]} is "
                f"smaller than the {cfg.crop_size}-px training crop; use --crop-size "
                f"{min(s.image.shape) // 32 * 32} or larger images"
            )
    declared = sorted(set(df["cell_type"].astype(str)))
    return TrainingData(train_ids, val_ids, train, val, declared)


def build_network(
    cfg: TrainConfig, init: InitModel | None, grow: bool, device: torch.device
) -> UNet:
    """The network of the resolved ``cfg``: new, or the init model's weights (grown to
    ``cfg.net`` when ``grow``, with the centre output added when ``cfg.net`` has one and the
    init model not), on ``device``, channels-last."""
    if init is None:
        net = build_model(cfg.net)
    else:
        net = build_model(replace(init.net, input_scale=cfg.net["input_scale"]))
        net.load_state_dict(init.payload["state_dict"])
        if grow:
            net = widen(net, replace(NetConfig.from_dict(cfg.net), centre=init.net.centre))
        if cfg.net.get("centre") and not init.net.centre:
            net = add_centre_head(net)
    return net.to(device).to(memory_format=torch.channels_last)  # type: ignore[call-overload]


def config_path(out: str | Path) -> Path:
    """Where :func:`fit` writes the resolved configuration (``model.pt``: ``model.config.json``)."""
    out = Path(out)
    return out.with_name(out.stem + ".config.json")


def _write_model(out: Path, weights: dict, metadata: dict[str, Any]) -> None:
    """The model file and, beside it, its resolved configuration (``metadata["train"]``), so
    that the two always agree; neither is written before there is a model."""
    save_model(out, weights, metadata)
    with io.atomic_path(config_path(out)) as tmp:
        tmp.write_text(json.dumps(metadata["train"], indent=2) + "\n")


class _Run:
    """A run's moving parts: the network, its moving average, the optimiser and schedule, and
    the counters saved in the training state (``<out>.state.pt``)."""

    def __init__(self, net: UNet, cfg: TrainConfig, out: Path):
        self.net, self.cfg, self.out = net, cfg, out
        self.ema = copy.deepcopy(net).eval() if cfg.ema_decay > 0 else None
        frozen = net.down if cfg.freeze == "encoder" else None
        if frozen is not None:
            frozen.requires_grad_(False)
        trainable = [p for p in net.parameters() if p.requires_grad]
        self.opt = torch.optim.AdamW(trainable, lr=cfg.lr, weight_decay=cfg.weight_decay)
        self.sched = torch.optim.lr_scheduler.LambdaLR(self.opt, lambda s: lr_factor(s, cfg))
        self.state: dict[str, Any] = {
            "step": 0,
            "best_score": -1.0,
            "history": [],
            "elapsed_s": 0.0,
        }

    @property
    def state_path(self) -> Path:
        return state_path(self.out)

    def train_mode(self) -> None:
        """The network in training mode, except a frozen encoder (``freeze="encoder"``) and,
        with ``bn_stats="keep"``, every BatchNorm layer: they keep normalising with the
        statistics they were trained with (a few images' crops would replace them)."""
        self.net.train()
        if self.cfg.freeze == "encoder":
            self.net.down.eval()
        if self.cfg.bn_stats == "keep":
            for module in self.net.modules():
                if isinstance(module, torch.nn.BatchNorm2d):
                    module.eval()

    def set_lr(self, step: int) -> None:
        """With a time budget, the learning rate of ``step`` from the seconds spent so far
        (:func:`~phaseseg.train.config.lr_factor`); without one the step-based scheduler
        sets it."""
        if self.cfg.minutes is not None:
            factor = lr_factor(step, self.cfg, self.state["elapsed_s"])
            for group in self.opt.param_groups:
                group["lr"] = self.cfg.lr * factor

    def restore(self, device: torch.device) -> None:
        """Continue from the training state, if there is one."""
        if not self.state_path.is_file():
            log.warning("no training state at %s: starting from scratch", self.state_path)
            return
        saved = torch.load(self.state_path, map_location=device, weights_only=True)
        self.net.load_state_dict(saved["model"])
        self.opt.load_state_dict(saved["optimizer"])
        self.sched.load_state_dict(saved["scheduler"])
        if self.ema is not None:
            self.ema.load_state_dict(saved["ema"] if "ema" in saved else saved["model"])
        self.state = saved["state"]
        log.info("resumed from %s at step %d", self.state_path, self.state["step"])
        changed = _changed_settings(saved.get("config", {}), asdict(self.cfg))
        if changed:
            log.warning("resuming with changed settings: %s", changed)

    def save_state(self) -> None:
        with io.atomic_path(self.state_path) as tmp:
            torch.save(
                {
                    "model": self.net.state_dict(),
                    "optimizer": self.opt.state_dict(),
                    "scheduler": self.sched.state_dict(),
                    "state": self.state,
                    "config": asdict(self.cfg),
                    **({"ema": self.ema.state_dict()} if self.ema is not None else {}),
                },
                tmp,
            )


class _Validation:
    """Scores weights on the validation samples with given thresholds, chosen per image by the
    predicted or the declared cell type (:func:`~phaseseg.segment.tuning.thresholds_by`)."""

    def __init__(
        self,
        samples: list[Sample],
        device: torch.device,
        cfg: TrainConfig,
        cell_types: list[str],
        by: str,
        base: dict[str, PostprocessParams],
    ):
        self.samples, self.device, self.cfg = samples, device, cfg
        self.cell_types, self.by, self.base = cell_types, by, base

    def maps(self, net: torch.nn.Module) -> list[tuple[np.ndarray, ...]]:
        return predict_val(net, self.samples, self.device, self.cfg.precision)

    def score(self, net: torch.nn.Module, params: dict[str, PostprocessParams]) -> dict[str, float]:
        return score_val(self.samples, self.maps(net), params, self.cell_types, self.by)

    def tune(self, net: torch.nn.Module) -> tuple[dict[str, PostprocessParams], dict[str, float]]:
        maps = self.maps(net)
        return tune_postprocess(self.samples, maps, self.cell_types, self.by, self.base)


def _evaluate(
    run: _Run, val: _Validation, params: dict[str, PostprocessParams], metadata: dict[str, Any]
) -> None:
    """Score the trained weights (and their moving average); write the better ones to the model
    file when they beat the best so far."""
    state = run.state
    scores = val.score(run.net, params)
    record = {"step": state["step"], "elapsed_s": round(state["elapsed_s"], 1), **scores}
    log.info("step %d: %s", state["step"], _fmt(scores))
    candidates = [(scores["overall"], run.net, "trained")]
    if run.ema is not None:
        ema_scores = val.score(run.ema, params)
        run.ema.eval()
        record["ema"] = ema_scores
        log.info("step %d, moving average: %s", state["step"], _fmt(ema_scores))
        candidates.append((ema_scores["overall"], run.ema, "ema"))
    state["history"].append(record)
    score, weights, kind = max(candidates, key=lambda c: c[0])
    if score > state["best_score"]:
        state["best_score"] = score
        meta = {**metadata, "postprocess": _as_dicts(params), "scores": {**record, "weights": kind}}
        _write_model(run.out, weights.state_dict(), meta)


def _train_loop(
    run: _Run,
    samples: list[Sample],
    val: _Validation | None,
    params: dict[str, PostprocessParams],
    metadata: dict[str, Any],
    device: torch.device,
) -> None:
    """Steps from the saved one to ``cfg.steps`` (with ``cfg.minutes``: until the loop has run
    that long, or ``cfg.steps``): validation every ``eval_every`` steps and at the end, the
    training state every ``checkpoint_every`` steps and on Ctrl-C. A progress bar on a terminal
    (of steps, or of the budget's seconds); elsewhere (a log file) a plain line every twentieth
    of the run."""
    cfg, state = run.cfg, run.state
    run.train_mode()
    workers = cfg.num_workers if cfg.num_workers is not None else 8 * (device.type == "cuda")
    batches = iter_batches(samples, cfg, state["step"], workers, pin=device.type == "cuda")
    t_start = time.monotonic() - state["elapsed_s"]
    first_step, t_first = state["step"], time.monotonic()
    budget = 60 * cfg.minutes if cfg.minutes is not None else None
    every = max(1, cfg.steps // 20)
    if budget is None:
        bar = tqdm(total=cfg.steps, initial=state["step"], desc="train", unit="step")
    else:
        total_s = int(round(budget))
        bar = tqdm(
            total=total_s, initial=min(int(state["elapsed_s"]), total_s), desc="train", unit="s"
        )
    next_line = state["elapsed_s"] + (budget or 0) / 20
    try:
        for step, batch in zip(range(state["step"], cfg.steps), batches, strict=False):
            run.set_lr(step)
            loss, parts = train_step(run.net, run.opt, run.ema, batch, cfg, step)
            run.sched.step()
            state["step"] = step + 1
            state["elapsed_s"] = time.monotonic() - t_start
            bar.update(1 if budget is None else min(int(state["elapsed_s"]), bar.total) - bar.n)
            if step % 10 == 0:  # reading a loss waits for the GPU: not at every step
                parts = {"loss": loss, **parts}
                shown = {k: f"{v.item():.3f}" for k, v in parts.items()}
                bar.set_postfix({"step": state["step"], **shown} if budget else shown)
            if budget is None:
                done = state["step"] == cfg.steps
                line_due = state["step"] % every == 0 or done
            else:
                done = state["elapsed_s"] >= budget or state["step"] == cfg.steps
                line_due = state["elapsed_s"] >= next_line or done
            if bar.disable and line_due:
                per_step = (time.monotonic() - t_first) / (state["step"] - first_step)
                if budget is None:
                    of, left = f"{cfg.steps}", per_step * (cfg.steps - state["step"])
                else:
                    while next_line <= state["elapsed_s"]:  # slow steps: one line, not several
                        next_line += budget / 20
                    of, left = (
                        f"~{state['step'] + int((budget - state['elapsed_s']) / per_step)}",
                        max(0.0, budget - state["elapsed_s"]),
                    )
                log.info(
                    "train: step %d/%s, loss %.3f, %s elapsed, %s left",
                    state["step"],
                    of,
                    loss.item(),
                    _duration(state["elapsed_s"]),
                    _duration(left),
                )
            if val is not None and (state["step"] % cfg.eval_every == 0 or done):
                _evaluate(run, val, params, metadata)
            elif val is None and done:
                weights = (run.ema if run.ema is not None else run.net).state_dict()
                _write_model(
                    run.out, weights, {**metadata, "postprocess": _as_dicts(params), "scores": {}}
                )
            if state["step"] % cfg.checkpoint_every == 0 or done:
                run.save_state()
            if done:
                break
    except KeyboardInterrupt:  # Ctrl-C, or SIGTERM through the CLI
        run.save_state()
        log.warning("interrupted at step %d; continue with --resume", state["step"])
        raise
    finally:
        bar.close()


def _finish(run: _Run, val: _Validation, metadata: dict[str, Any]) -> dict[str, Any]:
    """Re-read the best weights, tune their thresholds (unless ``tune=False``) and write the
    final model file with the run's history; return its scores."""
    cfg, out = run.cfg, run.out
    best = load_model_file(out)
    final = {
        **metadata,
        "postprocess": best["postprocess"],
        "scores": {"best_step": best["scores"]["step"], "untuned": best["scores"]},
        "history": run.state["history"],
        "train_seconds": round(run.state["elapsed_s"], 1),
    }
    if cfg.tune:  # tune thresholds with the best weights
        run.net.load_state_dict(best["state_dict"])
        params, scores = val.tune(run.net)
        log.info("tuned thresholds on fold %s: %s", cfg.val_fold, _fmt(scores))
        final["postprocess"], final["scores"]["tuned"] = _as_dicts(params), scores
    else:
        log.info("thresholds not tuned (tune=False); phaseseg.train.retune(%s, ...) does it", out)
    _write_model(out, best["state_dict"], final)
    return final["scores"]


def _metadata(
    cfg: TrainConfig,
    net: UNet,
    cell_types: list[str],
    data: TrainingData,
    data_dir: Path,
    init: InitModel | None,
    by: str,
    added: dict[str, dict[str, Any]],
) -> dict[str, Any]:
    """What the model file records besides weights, thresholds and scores; the cell types
    that fine-tuning added (``added_cell_types``: this run's and the init model's)."""
    metadata: dict[str, Any] = {
        "net": net.config.to_dict(),
        "train": asdict(cfg),
        "cell_types": list(cell_types),
        "seed": cfg.seed,
        "data": {
            "data_dir": str(data_dir),
            "train_images": len(data.train_ids),
            "val_fold": cfg.val_fold,
            "val_images": len(data.val_ids),
            "cell_types": data.cell_types,
            "thresholds_by": by,
        },
    }
    added = {**(init.payload.get("added_cell_types", {}) if init else {}), **added}
    if added:
        metadata["added_cell_types"] = added
    if init is not None:  # provenance: what the starting weights were trained on, and how long
        metadata["init"] = {
            "path": str(init.path),
            **{
                k: init.payload[k]
                for k in ("train", "data", "train_seconds", "init")
                if k in init.payload
            },
        }
    return metadata


def fit(
    data_dir: str | Path,
    out: str | Path,
    cfg: TrainConfig | None = None,
    resume: bool = False,
    device: str | None = None,
) -> FitResult:
    """Train a model on ``data_dir`` and write it to ``out``.

    Steps: :meth:`InitModel.load` and :func:`resolve_config` (the configuration used, a copy:
    ``cfg`` is not changed), :func:`load_data`, :func:`build_network`, the loop (validation,
    best weights to ``out``, training state to ``<out>.state.pt``), then the thresholds tuned on
    the validation fold. ``out`` and the resolved configuration beside it
    (:func:`config_path`, ``<out>.config.json``) are written together, and only once there
    are weights: a run that fails before leaves neither.

    On a data set of one declared cell type (e.g. a ``make-dataset`` folder) validation and
    tuning choose each image's thresholds by that type, not by the type head's guess
    (``thresholds_by``); predict such images with ``--cell-type``.

    Cell types of the data that the model does not know (e.g. ``make-dataset --cell-type
    mycells``) are added to it (:func:`grow_cell_types`): the type head gets a class per new
    type, initialised from the closest known type, whose thresholds it starts from; the model
    file lists them in ``cell_types`` and ``added_cell_types``. Known types keep the init
    model's thresholds unless the validation fold holds images of them.
    """
    out, data_dir = Path(out), Path(data_dir)
    given = cfg if cfg is not None else TrainConfig()
    dev = pick_device(device)
    torch.manual_seed(given.seed)
    torch.backends.cudnn.benchmark = True  # fixed crop size: let cuDNN pick its fastest kernels
    init = InitModel.load(given.init)
    cfg, grow = resolve_config(given, init)
    known = head_cell_types(cfg, init)
    new_types = [t for t in declared_cell_types(data_dir) if t not in known]
    cell_types = known + new_types
    log.info("device %s", dev)
    data = load_data(data_dir, cfg, cell_types, cache_dir=out.parent / ".phaseseg-cache")
    by = thresholds_by(data.cell_types)
    if by == "declared" and data.val:
        log.info("one declared cell type (%s): validated with its thresholds", data.cell_types[0])
    net = build_network(cfg, init, grow, dev)
    params = {  # the thresholds to start from: the init model's, else the defaults
        t: PostprocessParams(**init.payload["postprocess"][t]) if init else PostprocessParams()
        for t in known
    }
    added: dict[str, dict[str, Any]] = {}
    if new_types:
        samples = data.train + data.val
        net, added = grow_cell_types(net, new_types, known, samples, dev, cfg.precision)
        params.update({t: params[a["initialised_from"]] for t, a in added.items()})
        cfg = replace(cfg, net=net.config.to_dict())
    run = _Run(net, cfg, out)
    if resume:
        run.restore(dev)
    metadata = _metadata(cfg, net, cell_types, data, data_dir, init, by, added)
    val = _Validation(data.val, dev, cfg, cell_types, by, params) if data.val else None
    _train_loop(run, data.train, val, params, metadata, dev)
    scores = _finish(run, val, metadata) if val is not None else {}
    return FitResult(
        model_path=out,
        config_path=config_path(out),
        config=cfg,
        cell_types=cell_types,
        thresholds_by=by,
        data_cell_types=data.cell_types,
        scores=scores,
        history=run.state["history"],
        train_seconds=round(run.state["elapsed_s"], 1),
        steps=run.state["step"],
    )


def _duration(seconds: float) -> str:
    """``"1h02m"``, ``"3m05s"``, ``"12s"``."""
    s = int(round(seconds))
    if s >= 3600:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 60}m{s % 60:02d}s" if s >= 60 else f"{s}s"


def _changed_settings(old: dict[str, Any], new: dict[str, Any]) -> str:
    """``"steps 4200 -> 3600, lr 0.002 -> 0.001"`` for the keys whose values differ."""
    keys = [k for k in new if k in old and old[k] != new[k]]
    return ", ".join(f"{k} {old[k]} -> {new[k]}" for k in keys)

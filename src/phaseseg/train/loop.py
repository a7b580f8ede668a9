"""The training loop: ``fit(config, out) -> model file``, in small named steps.

* crops of the in-memory training images (:mod:`phaseseg.train.samples`), AdamW, warm-up + cosine
  learning rate, bf16 autocast and channels-last (fast on CPUs with AVX-512 BF16 and on GPUs);
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
import logging
import time
from collections.abc import Iterator
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from phaseseg import io
from phaseseg.nn.checkpoint import load_model_file, save_model
from phaseseg.nn.model import NetConfig, build_model, can_widen, widen
from phaseseg.progress import tqdm
from phaseseg.segment.postprocess import PostprocessParams
from phaseseg.segment.segmenter import BUNDLED_MODEL, pick_device
from phaseseg.segment.tuning import _as_dicts, _fmt, predict_val, score_val, tune_postprocess
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
    """One step's batch: images (B,1,S,S), targets (B,4,S,S) [fg, dist, touching, boundary],
    cell types (B,)."""
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
    ``boundary_weight`` along cell outlines; BCE on the normalised distance; CE on the cell type."""
    pixel = out["pixel"].float()
    fg, dist, touching, boundary = targets[:, 0], targets[:, 1], targets[:, 2], targets[:, 3]
    weight = 1.0 + cfg.touching_weight * touching + cfg.boundary_weight * boundary
    bce = F.binary_cross_entropy_with_logits
    fg_loss = (bce(pixel[:, 0], fg, reduction="none") * weight).mean()
    dist_loss = bce(pixel[:, 1], dist)
    type_loss = F.cross_entropy(out["cell_type"].float(), types)
    total = fg_loss + dist_loss + cfg.type_loss_weight * type_loss
    return total, {"fg": fg_loss.detach(), "dist": dist_loss.detach(), "type": type_loss.detach()}


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
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=cfg.bf16):
        output = net(images)
    loss, parts = loss_fn(output, targets, types, cfg)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    if ema is not None:
        update_ema(ema, net, cfg.ema_decay, step)
    return loss, parts


def _state_path(out: Path) -> Path:
    return out.with_name(out.name + ".state.pt")


def fit(
    data_dir: str | Path,
    out: str | Path,
    cfg: TrainConfig | None = None,
    resume: bool = False,
    device: str | None = None,
) -> dict[str, Any]:
    """Train a model on ``data_dir`` and write it to ``out``; return the final scores."""
    cfg = cfg or TrainConfig()
    out, data_dir = Path(out), Path(data_dir)
    dev = pick_device(device)
    torch.manual_seed(cfg.seed)
    torch.backends.cudnn.benchmark = True  # fixed crop size: let cuDNN pick its fastest kernels
    init_path = BUNDLED_MODEL if cfg.init == "bundled" else cfg.init
    init = load_model_file(init_path) if init_path else None
    grow = False
    init_net = NetConfig.from_dict(init["net"]) if init is not None else None
    scale = cfg.input_scale or (init_net.input_scale if init_net else 1.0)
    cfg.net = replace(NetConfig.from_dict(cfg.net), input_scale=scale).to_dict()
    if init_net is not None and replace(init_net, input_scale=scale).to_dict() != cfg.net:
        grow = can_widen(replace(init_net, input_scale=scale), NetConfig.from_dict(cfg.net))
        if grow:
            old_ch, new_ch = init["net"]["channels"], cfg.net["channels"]
            log.info("widening %s from %s to %s channels", init_path, old_ch, new_ch)
    if init_net is not None and not grow:
        if replace(init_net, input_scale=scale).to_dict() != cfg.net:
            log.info("using the architecture of %s: %s", init_path, init["net"])
        cfg.net = replace(init_net, input_scale=scale).to_dict()
    if init_net is not None and scale != init_net.input_scale:
        log.info(
            "input scale %s (the initial weights were trained at %s)", scale, init_net.input_scale
        )
    df = io.read_train_csv(data_dir / "train.csv")
    folds = read_folds(data_dir, df)
    if cfg.val_fold is not None and not (folds == cfg.val_fold).any():
        raise io.PhasesegInputError(f"{data_dir / 'folds.csv'}: no image in fold {cfg.val_fold}")
    val_ids = [i for i, f in folds.items() if cfg.val_fold is not None and f == cfg.val_fold]
    if cfg.max_val_images is not None:
        val_ids = val_ids[: cfg.max_val_images]
    train_ids = [i for i, f in folds.items() if cfg.val_fold is None or f != cfg.val_fold]
    cache = out.parent / ".phaseseg-cache"
    log.info("device %s, %d training and %d validation images", dev, len(train_ids), len(val_ids))
    train_samples = load_samples(data_dir, train_ids, cache_dir=cache)
    val_samples = load_samples(data_dir, val_ids, cache_dir=cache) if val_ids else []
    for s in train_samples:
        if min(s.image.shape) < cfg.crop_size:
            raise io.PhasesegInputError(
                f"{data_dir / 'train' / s.image_id}.png: {s.image.shape[1]}x{s.image.shape[0]} is "
                f"smaller than the {cfg.crop_size}-px training crop; use --crop-size "
                f"{min(s.image.shape) // 32 * 32} or larger images"
            )

    if init is None:
        net = build_model(cfg.net)
    else:
        net = build_model(replace(init_net, input_scale=scale))
        net.load_state_dict(init["state_dict"])
        if grow:
            net = widen(net, NetConfig.from_dict(cfg.net))
    net = net.to(dev).to(memory_format=torch.channels_last)
    ema = copy.deepcopy(net).eval() if cfg.ema_decay > 0 else None
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_factor(s, cfg))
    state = {"step": 0, "best_score": -1.0, "history": [], "elapsed_s": 0.0}
    if resume and _state_path(out).is_file():
        saved = torch.load(_state_path(out), map_location=dev, weights_only=True)
        net.load_state_dict(saved["model"])
        opt.load_state_dict(saved["optimizer"])
        sched.load_state_dict(saved["scheduler"])
        if ema is not None:
            ema.load_state_dict(saved["ema"] if "ema" in saved else saved["model"])
        state = saved["state"]
        log.info("resumed from %s at step %d", _state_path(out), state["step"])
        changed = _changed_settings(saved.get("config", {}), asdict(cfg))
        if changed:
            log.warning("resuming with changed settings: %s", changed)
    elif resume:
        log.warning("no training state at %s: starting from scratch", _state_path(out))

    metadata = {
        "net": net.config.to_dict(),
        "train": asdict(cfg),
        "cell_types": list(io.CELL_TYPES),
        "seed": cfg.seed,
        "data": {
            "data_dir": str(data_dir),
            "train_images": len(train_ids),
            "val_fold": cfg.val_fold,
            "val_images": len(val_ids),
        },
    }
    if init is not None:  # provenance: what the starting weights were trained on, and how long
        metadata["init"] = {
            "path": str(init_path),
            **{k: init[k] for k in ("train", "data", "train_seconds", "init") if k in init},
        }

    def save_state() -> None:
        with io.atomic_path(_state_path(out)) as tmp:
            torch.save(
                {
                    "model": net.state_dict(),
                    "optimizer": opt.state_dict(),
                    "scheduler": sched.state_dict(),
                    "state": state,
                    "config": asdict(cfg),
                    **({"ema": ema.state_dict()} if ema is not None else {}),
                },
                tmp,
            )

    default_params = {t: PostprocessParams() for t in io.CELL_TYPES}
    net.train()
    workers = cfg.num_workers if cfg.num_workers is not None else 8 * (dev.type == "cuda")
    batches = iter_batches(train_samples, cfg, state["step"], workers, pin=dev.type == "cuda")
    t_start = time.monotonic() - state["elapsed_s"]
    bar = tqdm(total=cfg.steps, initial=state["step"], desc="train", unit="step")
    try:
        for step, batch in zip(range(state["step"], cfg.steps), batches, strict=True):
            loss, parts = train_step(net, opt, ema, batch, cfg, step)
            sched.step()
            state["step"] = step + 1
            state["elapsed_s"] = time.monotonic() - t_start
            bar.update(1)
            if step % 10 == 0:  # reading a loss waits for the GPU: not at every step
                parts = {"loss": loss, **parts}
                bar.set_postfix({k: f"{v.item():.3f}" for k, v in parts.items()})
            done = state["step"] == cfg.steps
            if val_samples and (state["step"] % cfg.eval_every == 0 or done):
                scores = score_val(val_samples, predict_val(net, val_samples, dev), default_params)
                record = {
                    "step": state["step"],
                    "elapsed_s": round(state["elapsed_s"], 1),
                    **scores,
                }
                log.info("step %d: %s", state["step"], _fmt(scores))
                candidates = [(scores["overall"], net, "trained")]
                if ema is not None:
                    ema_scores = score_val(
                        val_samples, predict_val(ema, val_samples, dev), default_params
                    )
                    ema.eval()
                    record["ema"] = ema_scores
                    log.info("step %d, moving average: %s", state["step"], _fmt(ema_scores))
                    candidates.append((ema_scores["overall"], ema, "ema"))
                state["history"].append(record)
                score, weights, kind = max(candidates, key=lambda c: c[0])
                if score > state["best_score"]:
                    state["best_score"] = score
                    save_model(
                        out,
                        weights.state_dict(),
                        {
                            **metadata,
                            "postprocess": _as_dicts(default_params),
                            "scores": {**record, "weights": kind},
                        },
                    )
            elif not val_samples and done:
                save_model(
                    out,
                    (ema if ema is not None else net).state_dict(),
                    {**metadata, "postprocess": _as_dicts(default_params), "scores": {}},
                )
            if state["step"] % cfg.checkpoint_every == 0 or done:
                save_state()
    except KeyboardInterrupt:
        save_state()
        log.warning("interrupted at step %d; continue with --resume", state["step"])
        raise
    finally:
        bar.close()

    if not val_samples:
        return {}
    best = load_model_file(out)
    final = {
        **metadata,
        "postprocess": best["postprocess"],
        "scores": {"best_step": best["scores"]["step"], "untuned": best["scores"]},
        "history": state["history"],
        "train_seconds": round(state["elapsed_s"], 1),
    }
    if cfg.tune:  # tune thresholds with the best weights
        net.load_state_dict(best["state_dict"])
        params, scores = tune_postprocess(val_samples, predict_val(net, val_samples, dev))
        log.info("tuned thresholds on fold %s: %s", cfg.val_fold, _fmt(scores))
        final["postprocess"], final["scores"]["tuned"] = _as_dicts(params), scores
    else:
        log.info("thresholds not tuned (tune=False); phaseseg.train.retune(%s, ...) does it", out)
    save_model(out, best["state_dict"], final)
    return final["scores"]


def _changed_settings(old: dict[str, Any], new: dict[str, Any]) -> str:
    """``"steps 4200 -> 3600, lr 0.002 -> 0.001"`` for the keys whose values differ."""
    keys = [k for k in new if k in old and old[k] != new[k]]
    return ", ".join(f"{k} {old[k]} -> {new[k]}" for k in keys)

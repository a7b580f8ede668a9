"""What defines a training run: :class:`TrainConfig` (saved in the model file) and the learning
rate schedule."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from phaseseg import io
from phaseseg.nn.model import NetConfig

#: What ``TrainConfig.freeze`` may hold: train every layer, or keep the encoder fixed.
FREEZE = ("none", "encoder")


@dataclass
class TrainConfig:
    """Everything that defines a training run (saved in the model file).

    The defaults are the CPU recipe of BENCHMARKS.md (fold 0: 0.280 in 78.5 minutes on 2 cores;
    over three seeds 0.276-0.281, mean 0.279).
    """

    val_fold: int | None = 0
    seed: int = 0
    steps: int = 5000
    batch_size: int = 8
    crop_size: int = 256
    lr: float = 2e-3
    weight_decay: float = 1e-4
    warmup_steps: int = 100
    foreground_bias: float = 0.8
    type_weights: dict[str, float] = field(
        default_factory=lambda: {"astro": 1.0, "cort": 1.0, "shsy5y": 1.0}
    )
    touching_weight: float = 2.0
    boundary_weight: float = 0.0
    type_loss_weight: float = 0.1
    ema_decay: float = 0.998  # 0: no moving average of the weights
    eval_every: int = 2500
    checkpoint_every: int = 50
    max_val_images: int | None = None
    precision: str = "auto"  # "auto" (bf16 where native, else fp32), "bf16" or "fp32"
    num_workers: int | None = None  # processes cutting batches; None: 0 on a CPU, 8 on a GPU
    tune: bool = True  # tune the thresholds at the end (else: later, with retune())
    net: dict[str, Any] = field(
        default_factory=lambda: NetConfig(channels=(32, 48, 96, 128, 192)).to_dict()
    )
    init: str | None = None  # start from this model file's weights ("bundled": the default)
    input_scale: float | None = None  # network's working scale; None: init's, else 1.0
    centre_head: bool | None = None  # learn the cell-centre map; None: as init, else net's
    centre_loss_weight: float = 1.0
    freeze: str = "none"  # "encoder": the down path (and its BatchNorm statistics) stays fixed
    bn_stats: str = "update"  # "keep": every BatchNorm layer keeps normalising as it was trained
    minutes: float | None = None  # wall-clock budget of the loop; then `steps` is only a cap

    def __post_init__(self) -> None:
        if self.precision not in ("auto", "bf16", "fp32"):
            raise io.PhasesegInputError(
                f"precision must be auto, bf16 or fp32; got {self.precision!r}"
            )
        if self.freeze not in FREEZE:
            raise io.PhasesegInputError(
                f"freeze must be one of {', '.join(FREEZE)}; got {self.freeze!r}"
            )
        if self.bn_stats not in ("update", "keep"):
            raise io.PhasesegInputError(f"bn_stats must be update or keep; got {self.bn_stats!r}")
        if self.minutes is not None and not self.minutes > 0:
            raise io.PhasesegInputError(f"minutes must be positive; got {self.minutes!r}")

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        """A config from its dict form; the ``bf16`` flag of older configs and model files is
        read as ``precision`` ``"bf16"`` (true) or ``"fp32"`` (false)."""
        d = dict(d)
        if "bf16" in d:
            bf16 = d.pop("bf16")
            d.setdefault("precision", "bf16" if bf16 else "fp32")
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise io.PhasesegInputError(f"unknown training option(s): {', '.join(sorted(unknown))}")
        return cls(**d)

    @classmethod
    def from_file(cls, path: str | Path) -> TrainConfig:
        path = Path(path)
        try:
            return cls.from_dict(json.loads(path.read_text()))
        except (OSError, json.JSONDecodeError) as e:
            raise io.PhasesegInputError(f"{path}: not a readable JSON config ({e})") from None


def lr_factor(step: int, cfg: TrainConfig, elapsed_s: float | None = None) -> float:
    """Linear warm-up then cosine decay to 0 at ``cfg.steps``; with a time budget
    (``cfg.minutes``) the cosine runs over the budget's seconds instead (``elapsed_s``).

    >>> cfg = TrainConfig(steps=10, warmup_steps=2)
    >>> [round(lr_factor(s, cfg), 3) for s in (0, 1, 2, 6, 10)]
    [0.5, 1.0, 1.0, 0.5, 0.0]
    >>> round(lr_factor(50, TrainConfig(minutes=1, warmup_steps=2), elapsed_s=30), 3)
    0.5
    """
    if step < cfg.warmup_steps:
        return (step + 1) / cfg.warmup_steps
    if cfg.minutes is not None and elapsed_s is not None:
        progress = elapsed_s / (60 * cfg.minutes)
    else:
        progress = (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps)
    return 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))

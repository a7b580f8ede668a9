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

    def __post_init__(self) -> None:
        if self.precision not in ("auto", "bf16", "fp32"):
            raise io.PhasesegInputError(
                f"precision must be auto, bf16 or fp32; got {self.precision!r}"
            )

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


def lr_factor(step: int, cfg: TrainConfig) -> float:
    """Linear warm-up then cosine decay to 0 at ``cfg.steps``."""
    if step < cfg.warmup_steps:
        return (step + 1) / cfg.warmup_steps
    progress = (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps)
    return 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))

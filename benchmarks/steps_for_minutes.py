"""How many training steps fit in a time budget on this machine's device.

    python benchmarks/steps_for_minutes.py --config docs/configs/gpu.json --minutes 7

Times the training step of ``fit`` (forward, backward, optimiser, moving average) with the
config's network on a random batch of its batch and crop size, after warm-up (data loading is
not included: on a GPU the batches are cut by worker processes in parallel) and prints
``int(minutes * 60 / seconds per step)``. Used to size GPU runs that must end within a time limit.
"""

from __future__ import annotations

import argparse
import copy
import sys
import time

import torch

from phaseseg.nn.model import build_model
from phaseseg.segment.segmenter import pick_device
from phaseseg.train import TrainConfig, train_step


def seconds_per_step(cfg: TrainConfig, device: torch.device, n: int = 30) -> float:
    """Mean wall time of :func:`phaseseg.train.train_step` on a random batch, after warm-up."""
    torch.backends.cudnn.benchmark = True
    net = build_model(cfg.net).to(device).to(memory_format=torch.channels_last).train()
    ema = copy.deepcopy(net)
    opt = torch.optim.AdamW(net.parameters(), lr=1e-4)
    b, s = cfg.batch_size, cfg.crop_size
    batch = (torch.randn(b, 1, s, s), torch.rand(b, 4, s, s).round(), torch.randint(0, 3, (b,)))
    for k in range(10):
        train_step(net, opt, ema, batch, cfg, k)
    if device.type == "cuda":
        torch.cuda.synchronize()
    t = time.perf_counter()
    for k in range(n):
        train_step(net, opt, ema, batch, cfg, k)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - t) / n


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", help="training config JSON (default: the CPU recipe)")
    ap.add_argument("--minutes", type=float, required=True)
    args = ap.parse_args()
    cfg = TrainConfig.from_file(args.config) if args.config else TrainConfig()
    dt = seconds_per_step(cfg, pick_device())
    print(f"{dt * 1000:.1f} ms per step", file=sys.stderr)
    print(int(args.minutes * 60 / dt))
    return 0


if __name__ == "__main__":
    sys.exit(main())

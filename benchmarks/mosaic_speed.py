"""Seconds per megapixel against image size: mosaics of the real 704x520 images.

    .venv/bin/python benchmarks/mosaic_speed.py [--model M] [--sides 1 2 3 4 5 6] [--repeats 2]
        [--precision auto] [--json OUT]

A k x k mosaic of fold-0 shsy5y/cort images (k = 1: one 704x520 image, 0.37 Mpx; k = 6:
4224x3120, 13.2 Mpx) is segmented with ``Segmenter.segment_full`` (the API; the CLI runs the
same), end to end: normalise -> network (tiles) -> post-process. The post-processing alone is
timed again on the returned maps with the thresholds of the cell type used; the network's
share is the difference. Best of ``--repeats`` runs per size (the machine may be shared: see
BENCHMARKS.md for the load during the published run).

With ``--input-sides``, the network alone is also timed on one random input of each side
(square, bf16/fp32 as the model resolves; best of 5, interleaved): its time per pixel against
the input's size, which sets the tile size (``phaseseg.segment.maps.TILE``).

Runs against older versions of phaseseg too (only ``load_model``, ``segment_full`` and
``maps_to_labels`` are used), e.g. ``PYTHONPATH=/path/to/old/src``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from phaseseg import io
from phaseseg.segment.postprocess import maps_to_labels
from phaseseg.segment.segmenter import load_model

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "sartorius"


def mosaic(images: list[np.ndarray], k: int) -> np.ndarray:
    """A k x k mosaic (uint8) of the first k*k images."""
    return np.block([[images[k * r + c] for c in range(k)] for r in range(k)])


def time_inputs(model, sides: list[int], rounds: int = 5) -> dict[int, float]:
    """Best network seconds per Mpx on a random square input of each side (interleaved)."""
    from phaseseg.nn.device import autocast

    precision = getattr(model, "precision", "bf16")
    xs = {s: torch.randn(1, 1, s, s).contiguous(memory_format=torch.channels_last) for s in sides}
    best = {s: float("inf") for s in sides}
    with torch.inference_mode(), autocast(model.device, precision):
        for r in range(rounds + 1):
            for s, x in xs.items():
                t0 = time.perf_counter()
                model.net(x)
                if r:  # the first round warms up
                    best[s] = min(best[s], time.perf_counter() - t0)
    return {s: round(best[s] / (s * s / 1e6), 3) for s in sides}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=None)
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--sides", type=int, nargs="+", default=[1, 2, 3, 4, 5, 6])
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--precision", default=None, help="auto, bf16 or fp32 (newer versions)")
    ap.add_argument("--cell-type", default="cort", help="thresholds used (fixed, for timing)")
    ap.add_argument("--input-sides", type=int, nargs="*", default=[], help="e.g. 512 704 1024")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()

    folds = pd.read_csv(args.data / "folds.csv", dtype={"id": str})
    ids = folds.loc[(folds.fold == 0) & (folds.cell_type == args.cell_type), "id"].tolist()
    need = max(args.sides) ** 2
    ids = (ids * (need // len(ids) + 1))[:need]
    images = [io.read_image(args.data / "train" / f"{i}.png") for i in ids]
    extra = {"precision": args.precision} if args.precision else {}
    model = load_model(args.model, **extra)
    params = model.postprocess[args.cell_type].to_dict()
    model.segment_full(images[0], cell_type=args.cell_type)  # warm-up
    rows = []
    for k in args.sides:
        image = mosaic(images, k)
        mpx = image.size / 1e6
        best_total = best_post = float("inf")
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            result = model.segment_full(image, cell_type=args.cell_type)
            t1 = time.perf_counter()
            maps_to_labels(result.foreground, result.distance, **params)
            t2 = time.perf_counter()
            best_total, best_post = min(best_total, t1 - t0), min(best_post, t2 - t1)
        row = {
            "mosaic": f"{k}x{k}",
            "shape": list(image.shape),
            "mpx": round(mpx, 3),
            "cells": int(result.labels.max()),
            "s": round(best_total, 3),
            "s_per_mpx": round(best_total / mpx, 3),
            "network_s_per_mpx": round((best_total - best_post) / mpx, 3),
            "postprocess_s_per_mpx": round(best_post / mpx, 3),
        }
        rows.append(row)
        print(json.dumps(row), flush=True)
    inputs = time_inputs(model, args.input_sides) if args.input_sides else {}
    for side, s_per_mpx in inputs.items():
        print(json.dumps({"input": f"{side}x{side}", "network_s_per_mpx": s_per_mpx}))
    result = {
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
        "torch_threads": torch.get_num_threads(),
        "precision": getattr(model, "precision", "bf16 (always)"),
        "onednn_max_cpu_isa": os.environ.get("ONEDNN_MAX_CPU_ISA"),
        "cell_type": args.cell_type,
        "rows": rows,
        "network_s_per_mpx_by_input_side": inputs,
    }
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()

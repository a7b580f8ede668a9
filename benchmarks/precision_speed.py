"""Seconds per 704x520 image for precision auto / fp32 / bf16, with and without AVX2 emulation.

    .venv/bin/python benchmarks/precision_speed.py [--n 20] [--repeats 3] [--json OUT]

Each ONEDNN_MAX_CPU_ISA setting runs in a fresh process, since oneDNN reads the variable
once at start-up; within it the three precisions are timed interleaved, image by image, so
that a shared machine slows them alike. ``ONEDNN_MAX_CPU_ISA=AVX2`` makes this CPU behave like
one without native bf16 (most laptops). Per (setting, precision): the precision ``auto``
resolved to, and the median over ``--n`` fold-0 images (after a warm-up; best of
``--repeats`` passes per image) of

* ``network_s``: normalise + network (``Segmenter.predict_maps``);
* ``end_to_end_s``: ``Segmenter.segment`` (network + post-processing).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "sartorius"
ISAS = (None, "AVX2")
PRECISIONS = ("auto", "fp32", "bf16")


def measure(precisions: tuple[str, ...], n: int, repeats: int, data: Path) -> list[dict]:
    """Time the precisions in this process, interleaved image by image (see the docstring).

    Interleaving gives each precision the same share of whatever else the machine is doing.
    """
    from phaseseg import io
    from phaseseg.segment.segmenter import load_model

    folds = pd.read_csv(data / "folds.csv", dtype={"id": str})
    ids = folds.loc[folds.fold == 0, "id"].tolist()[:n]
    images = [io.read_image(data / "train" / f"{i}.png") for i in ids]
    models, load_s = {}, {}
    for precision in precisions:
        t0 = time.perf_counter()
        models[precision] = load_model(precision=precision)
        load_s[precision] = time.perf_counter() - t0
        models[precision].segment(images[0])  # warm-up
    network: dict[str, list[float]] = {p: [] for p in precisions}
    end_to_end: dict[str, list[float]] = {p: [] for p in precisions}
    for image in images:
        for precision, model in models.items():
            best_net = best_all = float("inf")
            for _ in range(repeats):
                t0 = time.perf_counter()
                model.predict_maps(image)
                t1 = time.perf_counter()
                model.segment(image)
                t2 = time.perf_counter()
                best_net, best_all = min(best_net, t1 - t0), min(best_all, t2 - t1)
            network[precision].append(best_net)
            end_to_end[precision].append(best_all)
    return [
        {
            "onednn_max_cpu_isa": os.environ.get("ONEDNN_MAX_CPU_ISA"),
            "precision": precision,
            "resolved": model.precision,
            "images": len(images),
            "network_s": round(float(np.median(network[precision])), 4),
            "end_to_end_s": round(float(np.median(end_to_end[precision])), 4),
            "load_model_s": round(load_s[precision], 3),
            "torch_threads": torch.get_num_threads(),
        }
        for precision, model in models.items()
    ]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--n", type=int, default=20, help="fold-0 images timed")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--json", type=Path)
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(measure(PRECISIONS, args.n, args.repeats, args.data)))
        return
    rows = []
    for isa in ISAS:
        env = {k: v for k, v in os.environ.items() if k not in ("ONEDNN_MAX_CPU_ISA",)}
        if isa:
            env["ONEDNN_MAX_CPU_ISA"] = isa
        cmd = [sys.executable, __file__, "--child", "--n", str(args.n)]
        cmd += ["--repeats", str(args.repeats), "--data", str(args.data)]
        out = subprocess.run(cmd, env=env, check=True, capture_output=True, text=True)
        for row in json.loads(out.stdout.strip().splitlines()[-1]):
            rows.append(row)
            print(json.dumps(row), flush=True)
    result = {
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
        "rows": rows,
    }
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()

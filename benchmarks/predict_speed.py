"""Speed and memory of `phaseseg predict` end to end on this machine.

    .venv/bin/python benchmarks/predict_speed.py [--model M] [--n 500]

1. Per-image time, the CLI's path: read -> network -> post-process -> RLE -> submission row;
   median over the shared test images and the first train images (--n-timed, default 100).
2. Peak memory: `phaseseg predict` as a subprocess over --n images (shared train + unlabeled +
   test), writing a submission; its peak resident memory (ru_maxrss of the child).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from phaseseg import io
from phaseseg.segment.segmenter import load_model

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "sartorius"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=None)
    ap.add_argument("--n", type=int, default=500, help="images for the memory run")
    ap.add_argument("--n-timed", type=int, default=100, help="train images for per-image timing")
    args = ap.parse_args()

    timed = (
        sorted((DATA / "test").glob("*.png"))
        + sorted((DATA / "train").glob("*.png"))[: args.n_timed]
    )
    model = load_model(args.model)
    model.segment(io.read_image(timed[0]))  # warm-up
    times = []
    for path in timed:
        t0 = time.perf_counter()
        labels = model.segment(io.read_image(path))
        rows = [f"{path.stem},{rle}" for rle in io.labels_to_rles(labels)]
        assert rows or labels.max() == 0
        times.append(time.perf_counter() - t0)

    pool = (
        sorted((DATA / "train").glob("*.png"))
        + sorted((DATA / "unlabeled").glob("*.png"))
        + sorted((DATA / "test").glob("*.png"))
    )[: args.n]
    with tempfile.TemporaryDirectory() as tmp:
        listing = Path(tmp) / "images"
        listing.mkdir()
        for p in pool:
            os.symlink(p, listing / p.name)
        cmd = [
            sys.executable,
            "-m",
            "phaseseg",
            "predict",
            str(listing),
            "--submission",
            str(Path(tmp) / "submission.csv"),
        ]
        if args.model:
            cmd += ["--model", args.model]
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wall = time.perf_counter() - t0
    peak_mib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    result = {
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
        "torch_threads": torch.get_num_threads(),
        "timed_images": len(timed),
        "median_s_per_image": float(np.median(times)),
        "p90_s_per_image": float(np.percentile(times, 90)),
        "cli_images": len(pool),
        "cli_wall_s": wall,
        "cli_s_per_image": wall / len(pool),
        "cli_peak_rss_mib": peak_mib,
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()

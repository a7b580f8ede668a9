"""Speed and memory of `phaseseg predict` end to end on this machine.

    .venv/bin/python benchmarks/predict_speed.py [--model M] [--n 500] [--batch-sizes 1 2 4]
        [--tta | --no-tta]

Test-time augmentation as ``phaseseg predict`` does it: the machine's default (on with native
bf16 or a GPU, off in float32 on a CPU) unless ``--tta``/``--no-tta`` says otherwise.

1. Per-image time, the CLI's path: read -> network -> post-process -> RLE -> submission row;
   median over the shared test images and the first train images (--n-timed, default 100).
2. Peak memory: `phaseseg predict` as a subprocess over --n images (shared train + unlabeled +
   test), writing a submission; its peak resident memory (ru_maxrss of the child).
3. Batches: s/image of `Segmenter.iter_segment_full` (and of the network alone,
   `Segmenter.predict_maps`) over the timed images, in memory, with --batch-sizes images per
   forward pass (best of 2 passes): is a batch of images faster than one at a time here?
"""

from __future__ import annotations

import argparse
import json
import os
import platform
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
    ap.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 2, 4])
    ap.add_argument("--skip-cli", action="store_true", help="skip the memory run (2.)")
    ap.add_argument("--tta", action=argparse.BooleanOptionalAction, default=None)
    args = ap.parse_args()

    timed = (
        sorted((DATA / "test").glob("*.png"))
        + sorted((DATA / "train").glob("*.png"))[: args.n_timed]
    )
    model = load_model(args.model, tta=args.tta)
    model.segment(io.read_image(timed[0]))  # warm-up
    times = []
    for path in timed:
        t0 = time.perf_counter()
        labels = model.segment(io.read_image(path))
        rows = [f"{path.stem},{rle}" for rle in io.labels_to_rles(labels)]
        assert rows or labels.max() == 0
        times.append(time.perf_counter() - t0)

    loaded = [io.read_image(p) for p in timed]
    best = {b: [float("inf"), float("inf")] for b in args.batch_sizes}
    for _ in range(3):  # rounds over the batch sizes, so that a noisy spell hits all alike
        for batch_size in args.batch_sizes:
            t0 = time.perf_counter()
            model.predict_maps(loaded, batch_size=batch_size)
            t1 = time.perf_counter()
            for _ in model.iter_segment_full(loaded, batch_size=batch_size):
                pass
            t2 = time.perf_counter()
            b = best[batch_size]
            b[0], b[1] = min(b[0], t1 - t0), min(b[1], t2 - t1)
    batches = {
        str(b): {
            "network_s_per_image": round(net / len(loaded), 4),
            "end_to_end_s_per_image": round(total / len(loaded), 4),
        }
        for b, (net, total) in best.items()
    }
    result = {
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
        "torch_threads": torch.get_num_threads(),
        "precision": model.precision,
        "tta": model.tta,
        "timed_images": len(timed),
        "median_s_per_image": float(np.median(times)),
        "p90_s_per_image": float(np.percentile(times, 90)),
        "batch_size": batches,
    }
    if args.skip_cli:
        print(json.dumps(result, indent=2))
        return

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
        if args.tta is not None:
            cmd += ["--tta" if args.tta else "--no-tta"]
        # a small go-between process starts the CLI and reports its peak memory: a child
        # forked from this (large) process would count this process's memory as its own
        measure = (
            "import resource, subprocess, sys; "
            "subprocess.run(sys.argv[1:], check=True, stdout=subprocess.DEVNULL, "
            "stderr=subprocess.DEVNULL); "
            "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)"
        )
        t0 = time.perf_counter()
        out = subprocess.run(
            [sys.executable, "-c", measure, *cmd], check=True, capture_output=True, text=True
        )
        wall = time.perf_counter() - t0
    peak_mib = int(out.stdout.split()[-1]) / 1024
    result |= {
        "cli_images": len(pool),
        "cli_wall_s": wall,
        "cli_s_per_image": wall / len(pool),
        "cli_peak_rss_mib": peak_mib,
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()

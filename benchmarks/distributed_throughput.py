"""Throughput of `phaseseg predict` on Dask workers: images/s, memory per worker, and how the
cost grows with the number of images.

    .venv/bin/python benchmarks/distributed_throughput.py \
        [--runs 0:20 1:20 2:20] [--source DIR] [--crop PX] [--json FILE]

Each run ``W:N`` segments N images (the source folder's images repeated, as symbolic links
with distinct names, so that every one is a separate image and task) with the bundled model
and writes a submission and label TIFFs, the CLI's path (:func:`predict_images`). ``W`` = 0
runs in this process (the baseline); ``W`` >= 1 starts a LocalCluster of W worker processes
on 127.0.0.1, one thread each, torch using ``cores / W`` threads in each (``--workers W``).
Reported per run: wall time of the images (the cluster's start-up timed apart), images/s,
seconds per image, the peak resident memory of each worker and of the client (VmHWM), and
the client's own time per image (label TIFF + RLE of 20 of the run's label images, timed after
the run): the rate one client can write at, whatever the number of workers. The machine's
load average is recorded before and after each run.

``--crop PX`` segments the top-left PX x PX corner of each source image instead (saved as PNG
first): the network then costs little, so that a series over N shows how the per-image cost
of the rest (task scheduling, reading, post-processing, writing, the client's ordering)
grows with the number of images.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import resource
import subprocess
import tempfile
import time
from pathlib import Path

from phaseseg import io
from phaseseg.distributed import ModelSpec, open_client
from phaseseg.distributed.cluster import local_threads
from phaseseg.nn.device import use_all_cores
from phaseseg.segment.predict import predict_images
from phaseseg.segment.segmenter import load_model

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "sartorius"


def peak_rss_mib() -> float:
    """Peak resident memory of this process: Linux's VmHWM (ru_maxrss would include the peak
    of the process that spawned a worker: Linux keeps it across exec)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def linked_images(source: list[Path], n: int, folder: Path) -> Path:
    """``folder`` with ``n`` links ``img_00000.png``... to the source images, repeated."""
    folder.mkdir(parents=True)
    for k in range(n):
        src = source[k % len(source)]
        (folder / f"img_{k:05d}{src.suffix}").symlink_to(src.resolve())
    return folder


def crops(source: list[Path], px: int, folder: Path) -> list[Path]:
    """The top-left ``px`` x ``px`` corner of each source image, as PNG files in ``folder``."""
    from PIL import Image

    folder.mkdir(parents=True)
    out = []
    for k, path in enumerate(source):
        out.append(folder / f"crop_{k:03d}.png")
        Image.fromarray(io.read_image(path)[:px, :px]).save(out[-1])
    return out


def client_write_ms(labels_dir: Path, folder: Path, k: int = 20) -> float:
    """Milliseconds per image of what the client does for each result of a ``predict`` run
    writing a submission and label TIFFs: the label TIFF (zlib) and the submission's RLEs;
    timed on ``k`` of the run's label images."""
    from phaseseg.io.formats import read_labels, write_labels

    labels = [read_labels(p) for p in sorted(labels_dir.glob("*.tif"))[:k]]
    folder.mkdir()
    t0 = time.perf_counter()
    for j, lab in enumerate(labels):
        write_labels(folder / f"{j}.tif", lab)
        io.labels_to_rles(lab)
    return (time.perf_counter() - t0) / len(labels) * 1000


def one_run(workers: int, n: int, source: list[Path], tmp: Path) -> dict:
    tmp = Path(tempfile.mkdtemp(dir=tmp))  # a run may be repeated (interleaved A B A B)
    images = linked_images(source, n, tmp / "in")
    out = tmp / "out"
    model = load_model()
    load_before = os.getloadavg()[0]
    started = time.perf_counter()
    with open_client(workers=workers if workers else None) as client:
        ready = time.perf_counter()
        spec = ModelSpec(threads=local_threads(workers)) if workers else None
        t0 = time.perf_counter()
        summary = predict_images(
            [images],
            model,
            submission=out / "submission.csv",
            labels_dir=out / "labels",
            client=client,
            model_spec=spec,
        )
        seconds = time.perf_counter() - t0
        worker_mib = sorted(client.run(peak_rss_mib).values()) if client is not None else []
    assert summary.n_images == n and not summary.failed, summary.failed
    write_ms = client_write_ms(out / "labels", tmp / "rewrite")
    return {
        "workers": workers,
        "images": n,
        "cluster_start_s": round(ready - started, 1),
        "seconds": round(seconds, 1),
        "images_per_s": round(n / seconds, 3),
        "s_per_image": round(seconds / n, 3),
        "worker_peak_rss_mib": [round(m) for m in worker_mib],
        "client_peak_rss_mib": round(peak_rss_mib()),
        "client_write_ms_per_image": round(write_ms, 1),
        "load_avg_1min_before": round(load_before, 2),
        "load_avg_1min_after": round(os.getloadavg()[0], 2),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", nargs="+", default=["0:20", "1:20", "2:20"], metavar="W:N")
    ap.add_argument(
        "--source", type=Path, default=DATA / "train", help="folder of images to repeat"
    )
    ap.add_argument("--n-source", type=int, default=50, help="distinct source images")
    ap.add_argument("--crop", type=int, metavar="PX", help="segment PX x PX corners instead")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    use_all_cores()
    source = io.find_images([args.source])[: args.n_source]
    cpu = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    model_name = next(
        (ln.split(":", 1)[1].strip() for ln in cpu.splitlines() if "Model name" in ln), ""
    )
    results = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="minutes"),
        "machine": f"{model_name}, {os.cpu_count()} cores, {platform.platform()}",
        "source": f"{len(source)} images of {args.source}, repeated",
        "runs": [],
    }
    if args.crop:
        results["source"] += f", top-left {args.crop}x{args.crop} corners"
    with tempfile.TemporaryDirectory() as tmp:
        if args.crop:
            source = crops(source, args.crop, Path(tmp) / "crops")
        for spec in args.runs:
            workers, n = (int(x) for x in spec.split(":"))
            run = one_run(workers, n, source, Path(tmp))
            print(json.dumps(run), flush=True)
            results["runs"].append(run)
            if args.json:  # after each run, so that a long series keeps what it measured
                args.json.write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()

"""Time and peak memory of the large-image (block) path against the in-memory path.

    .venv/bin/python benchmarks/large_image.py [--n 8] [--blocks 2048 1024] [--json OUT]
    .venv/bin/python benchmarks/large_image.py --n 8 --write-mosaic mosaic.ome.zarr  # only that

Builds a mosaic of ``n x n`` real 704x520 train images (8 x 8: 5632 x 4160 px) as an OME-Zarr
in a temporary folder, then runs, each in a subprocess of its own (its peak resident memory
is its ``ru_maxrss``):

* ``baseline``: imports and the bundled model loaded, nothing segmented;
* ``in-memory``: the mosaic read whole, ``Segmenter.segment_full`` on it (tiled network,
  post-processing over the whole image);
* ``block B``: ``phaseseg.segment.large.segment_large`` on the lazy OME-Zarr, block side ``B``
  (margin 256), labels written as OME-Zarr.

Then compares the labels (:func:`phaseseg.segment.stitch.agreement`): cells matched at
IoU > 0.5, and the cells that cross a block border.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "sartorius"

CHILD = r"""
import json, resource, sys, time
import numpy as np
from phaseseg.nn.device import use_all_cores
from phaseseg.segment.segmenter import load_model
from phaseseg.io.large import open_large_image
use_all_cores()
mode, zarr_path, out, block = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
model = load_model()
t = time.perf_counter()
extra = {}
if mode == "in-memory":
    image, _ = open_large_image(zarr_path)
    result = model.segment_full(image.compute())
    labels = result.labels
    extra["cell_type"] = result.cell_type
elif mode == "block":
    import zarr
    from phaseseg.segment.large import segment_large
    image, _ = open_large_image(zarr_path)
    result = segment_large(image, model, out, block=block)
    extra.update(cell_type=result.cell_type, n_blocks=result.n_blocks, truncated=result.truncated,
                 passes_s={k: round(v, 1) for k, v in result.timings.items()})
    labels = None
seconds = time.perf_counter() - t
if mode == "in-memory":
    np.save(out, labels)
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB -> MiB (Linux)
print(json.dumps(dict(seconds=seconds, peak_mib=peak, **extra)))
"""


def _cpu_model() -> str:
    """The CPU's model name and core count (Linux ``/proc/cpuinfo``), else the platform's."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
        name = next(x.split(":", 1)[1].strip() for x in lines if x.startswith("model name"))
        return f"{name}, {sum(x.startswith('processor') for x in lines)} cores"
    except (OSError, StopIteration):
        return platform.processor() or platform.machine()


def _mosaic(n: int) -> np.ndarray:
    from phaseseg import io

    files = sorted((DATA / "train").glob("*.png"))[: n * n]
    if len(files) < n * n:
        sys.exit(f"need {n * n} images in {DATA / 'train'}")
    images = [io.read_image(f) for f in files]
    return np.block([[images[i * n + j] for j in range(n)] for i in range(n)])


def _run(mode: str, zarr_path: Path, out: Path, block: int = 0) -> dict:
    cmd = [sys.executable, "-c", CHILD, mode, str(zarr_path), str(out), str(block)]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        sys.exit(f"{mode} failed:\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=8, help="mosaic of n x n train images")
    ap.add_argument("--blocks", type=int, nargs="*", default=[2048, 1024])
    ap.add_argument("--json", help="write the results here")
    ap.add_argument("--write-mosaic", metavar="PATH", help="only write the mosaic OME-Zarr here")
    ap.add_argument(
        "--no-in-memory", action="store_true", help="skip the in-memory run (and the comparison)"
    )
    args = ap.parse_args()

    import zarr

    from phaseseg.io.large import write_ome_zarr_image
    from phaseseg.segment.stitch import agreement, block_grid

    mosaic = _mosaic(args.n)
    if args.write_mosaic:
        write_ome_zarr_image(Path(args.write_mosaic), mosaic)
        print(f"{args.write_mosaic}: {mosaic.shape[1]}x{mosaic.shape[0]} px")
        return
    results: dict = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": _cpu_model(),
        "mosaic": f"{args.n}x{args.n} train images, {mosaic.shape[1]}x{mosaic.shape[0]} px",
        "runs": {},
    }
    with tempfile.TemporaryDirectory() as tmp_:
        tmp = Path(tmp_)
        zarr_path = tmp / "mosaic.ome.zarr"
        write_ome_zarr_image(zarr_path, mosaic)
        runs = results["runs"]
        runs["baseline"] = _run("baseline", zarr_path, tmp / "none")
        print("baseline", runs["baseline"], flush=True)
        reference = None
        if not args.no_in_memory:
            runs["in-memory"] = _run("in-memory", zarr_path, tmp / "ref.npy")
            print("in-memory", runs["in-memory"], flush=True)
            reference = np.load(tmp / "ref.npy")
        for block in args.blocks:
            out = tmp / f"block{block}.ome.zarr"
            run = _run("block", zarr_path, out, block)
            if reference is not None:
                labels = zarr.open_array(str(out / "0"), mode="r")[:]
                grid = block_grid(mosaic.shape, block, 256)
                run["agreement"] = agreement(reference, labels, grid)
            runs[f"block {block}"] = run
            print(f"block {block}", run, flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()

"""Side-by-side benchmark of phaseseg and its peers on fold 0 of the shared Sartorius data.

    .venv/bin/python benchmarks/peers/run.py [--quick] [--out DIR]
        [--recipe-model M] [--cellpose-model M] [--instanseg-model M]

Every runnable row runs in its own subprocess, so that its peak memory (``ru_maxrss``) is its
own:

- the phaseseg bundled model, not retrained here (it predicts fold 0 with the cell type it
  predicts itself; the table names the file by its SHA-256 and says what it was trained on);
- phaseseg's CPU recipe: ``phaseseg train`` with its defaults on folds 1-4, scored on fold 0
  with thresholds tuned on the other half of fold 0 (``benchmarks/threshold_optimism.py``);
- the classical floor of ``classical.py``;
- Cellpose 3 and InstanSeg, each trained from scratch in its own venv for as long as the
  recipe's training took on this machine (its ``train_seconds``; :data:`RECIPE_MINUTES` where
  the recipe model has none).

Peers that cannot run in this environment get a row saying why. ``--*-model`` reuses a model
trained by an earlier run (its record beside it) and only predicts and scores: the three
trainings take about an hour each on a 2-core machine. Writes
``results.md`` (one table: overall and per-cell-type competition score, median seconds per
image, training wall-clock, peak memory, notes), ``results.png`` (bar plot) and
``results.json`` into ``--out``.

``--quick`` scores 2 images per cell type with tiny training runs, in a few minutes; its
outputs are marked "QUICK MODE — not a benchmark" and must go to a scratch ``--out``.
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import logging
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import classical
import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
CELL_TYPES = classical.CELL_TYPES
QUICK_BANNER = "QUICK MODE — not a benchmark"
log = logging.getLogger(__name__)

CP_PYTHON = HERE / ".cp3venv" / "bin" / "python"  # made by `make cellpose-venv`
CELLPOSE_NOT_RUN = {
    "method": "Cellpose 3",
    "notes": f"not run: its venv {CP_PYTHON} is missing (`make cellpose-venv`)",
}
IS_PYTHON = HERE / ".isvenv" / "bin" / "python"  # made by `make instanseg-venv`
INSTANSEG_NOT_RUN = {
    "method": "InstanSeg",
    "notes": f"not run: its venv {IS_PYTHON} is missing (`make instanseg-venv`)",
}
# the peers' training budget is the CPU recipe's training time on the machine of the run (the
# recipe row's ``training_seconds``); this is the fallback where that row has none. The recipe
# took 78.5-80.5 min on the 2-core machine of 2026-12-04 (BENCHMARKS.md), 54 min on the 2-core
# Xeon of 2026-12-05.
RECIPE_MINUTES = 80.0
BUNDLED = "phaseseg (bundled model)"
RECIPE = "phaseseg (CPU recipe)"
OPTIMISM = HERE.parent / "threshold_optimism.py"
NOT_RUN: list[dict] = [
    {
        "method": "Cellpose 4 (Cellpose-SAM)",
        "notes": "not run: needs downloaded SAM weights; cannot run here (no network)",
    },
    {
        "method": "torchvision Mask R-CNN",
        "notes": "not run: needs a GPU session to train on folds 1-4",
    },
]


def model_identity(path: Path) -> str:
    """``<file name> sha256 <first 12 hex digits>``: which model file a row used."""
    digest = hashlib.sha256(Path(path).read_bytes()).hexdigest()[:12]
    return f"{Path(path).name} sha256 {digest}"


def _trained_on(metadata: dict) -> str:
    """What a model file says it was trained on, as a phrase for the notes."""
    data = metadata.get("data", {})
    if data.get("val_fold") is None:
        return (
            f"in-sample: trained on all {data.get('train_images', '?')} annotated images, "
            "fold 0 included"
        )
    return (
        f"trained on the {data.get('train_images', '?')} images of the other folds; "
        f"checkpoint and stored thresholds chosen on fold {data['val_fold']}"
    )


def phaseseg_row(
    data: Path, quick: bool, fold: int = 0, model_path: Path | None = None, method: str = BUNDLED
) -> dict:
    """Score a phaseseg model (default: the bundled one) on ``fold`` with its stored thresholds
    (2 images per type when ``quick``)."""
    from phaseseg import io
    from phaseseg.metrics import image_score
    from phaseseg.segment.segmenter import BUNDLED_MODEL, load_model

    folds, truth = classical.load_split(data, fold)
    model = load_model(model_path)
    scores: dict[str, list[float]] = {t: [] for t in CELL_TYPES}
    seconds: list[float] = []
    type_hits = 0
    for image_id, cell_type in classical.sample_ids(folds, {fold}, 2 if quick else None):
        image = io.read_image(data / "train" / f"{image_id}.png")
        t0 = time.perf_counter()
        seg = model.segment_full(image)
        seconds.append(time.perf_counter() - t0)
        type_hits += seg.cell_type == cell_type
        scores[cell_type].append(image_score(io.annotations_to_labels(truth[image_id]), seg.labels))
    n = sum(len(v) for v in scores.values())
    train_s = model.metadata.get("train_seconds")  # as recorded in the model file
    identity = model_identity(model_path or BUNDLED_MODEL)
    return {
        "method": method,
        "quick": quick,
        "model": identity,
        **classical.summarize(scores),
        "median_seconds_per_image": statistics.median(seconds),
        "training_seconds": float(train_s) if train_s else None,
        "peak_memory_mib": classical.peak_memory_mib(),
        "notes": f"{identity}; "
        + ("" if train_s else "training time not in the model file (README model card); ")
        + f"{_trained_on(model.metadata)}; device {model.device}; "
        f"predicted cell type {type_hits}/{n} right",
    }


def _subset(data: Path, dst: Path, per_type: int) -> Path:
    """A Sartorius-style folder in ``dst`` with ``per_type`` images per type of every fold
    (quick mode's training set): train.csv and folds.csv cut down, images linked."""
    folds = pd.read_csv(data / "folds.csv", dtype={"id": str})  # train.csv is read once, below
    ids = {i for f in folds["fold"].unique() for i, _ in classical.sample_ids(folds, {f}, per_type)}
    (dst / "train").mkdir(parents=True, exist_ok=True)
    for image_id in ids:
        _link(data / "train" / f"{image_id}.png", dst / "train" / f"{image_id}.png")
    folds[folds["id"].isin(ids)].to_csv(dst / "folds.csv", index=False)
    train = pd.read_csv(data / "train.csv", dtype={"id": str})
    train[train["id"].isin(ids)].to_csv(dst / "train.csv", index=False)
    return dst


def recipe_row(data: Path, work: Path, quick: bool, model: Path | None = None) -> dict:
    """Train phaseseg's CPU recipe (``phaseseg train`` defaults) on folds 1-4, score fold 0.

    ``model``: an already trained recipe model to skip the training run. A run cut short
    (its ``<model>.state.pt`` beside it) is continued with ``--resume``. The scores in the row
    are with thresholds tuned on the other half of fold 0 (as for every recipe decision in
    BENCHMARKS.md); the model's stored thresholds, tuned on all of fold 0 by the recipe
    itself, and the untuned defaults are in the notes.
    """
    from phaseseg.train.loop import state_path

    work.mkdir(parents=True, exist_ok=True)
    if model is None:
        model = work / "model.pt"
        source = _subset(data, work / "data", 2) if quick else data
        cmd = [sys.executable, "-m", "phaseseg.cli", "train", str(source), "--out", str(model)]
        if quick:
            cmd += ["--steps", "2", "--batch-size", "2", "--eval-every", "2", "--no-tune"]
        if state_path(model).exists():
            cmd.append("--resume")
        log.info("running %s", " ".join(cmd))
        subprocess.run(cmd, check=True)
    common = ["--data", str(data), *(["--quick"] if quick else [])]
    row = run_row(
        [str(HERE / "run.py"), "--row", "phaseseg", "--model", str(model), "--method", RECIPE],
        work / "stored.json",
        common,
    )
    if quick:  # the half-fold protocol needs the whole fold
        row["notes"] += "; scores with the model's stored thresholds (quick mode)"
        return row
    protocol = work / "protocol.json"
    cmd = [sys.executable, str(OPTIMISM), "--model", str(model), "--data", str(data)]
    log.info("running %s", " ".join(cmd))
    subprocess.run([*cmd, "--json", str(protocol)], check=True, stdout=subprocess.DEVNULL)
    result = json.loads(protocol.read_text())
    other = result["tuned_on_other_half"]
    stored, untuned = result["stored_thresholds"]["overall"], result["untuned"]["overall"]
    row["overall"] = other["overall"]
    row["per_cell_type"] = {t: other[t] for t in CELL_TYPES}
    row["notes"] = (
        "`phaseseg train` defaults, from scratch, on folds 1-4; scores with thresholds tuned "
        f"on the other half of fold 0 (untuned {untuned:.3f}; its stored thresholds, tuned on "
        f"all of fold 0 by the recipe, {stored:.3f}); " + row["notes"]
    )
    return row


def prepare_cellpose_data(
    data: Path, prep: Path, quick: bool, folds: pd.DataFrame, truth: dict, fold: int = 0
) -> list[str]:
    """Write Cellpose's inputs into ``prep``; return the ids of ``fold`` (the scored images).

    ``folds`` and ``truth`` are :func:`classical.load_split`'s.

    ``prep/train`` gets the images of the other folds with ``<id>_masks.tif`` label images
    painted from train.csv (overlapping pixels go to one cell, as for phaseseg's training);
    ``prep/val`` gets the images of ``fold``. Quick mode takes 2 images per type of each.
    """
    from phaseseg import io
    from phaseseg.io.formats import write_labels

    others = set(folds["fold"].unique()) - {fold}
    for sub in ("train", "val"):
        (prep / sub).mkdir(parents=True, exist_ok=True)
    for image_id, _ in classical.sample_ids(folds, others, 2 if quick else None):
        _link(data / "train" / f"{image_id}.png", prep / "train" / f"{image_id}.png")
        masks = prep / "train" / f"{image_id}_masks.tif"
        if not masks.exists():
            write_labels(masks, io.annotations_to_labels(truth[image_id]))
    val = classical.sample_ids(folds, {fold}, 2 if quick else None)
    for image_id, _ in val:
        _link(data / "train" / f"{image_id}.png", prep / "val" / f"{image_id}.png")
    return [i for i, _ in val]


def _link(src: Path, dst: Path) -> None:
    if not dst.exists():
        dst.symlink_to(src.resolve())


def _budget_words(trained_s: float, budget_s: float) -> str:
    """How a peer's training budget compares with the recipe's ``budget_s`` on this machine.

    >>> _budget_words(4800, 3254)
    "a 4800 s budget (1.48x the 3254 s phaseseg's recipe trained here)"
    """
    if abs(trained_s - budget_s) <= 0.02 * budget_s:
        return f"the {trained_s:.0f} s budget of phaseseg's recipe"
    ratio = trained_s / budget_s
    here = f"the {budget_s:.0f} s phaseseg's recipe trained here"
    return f"a {trained_s:.0f} s budget ({ratio:.2f}x {here})"


def _score_labels(
    labels_dir: Path,
    val_ids: list[str],
    folds: pd.DataFrame,
    truth: dict,
    read: Callable[[Path], np.ndarray],
) -> dict[str, list[float]]:
    """Competition score of each fold-0 label TIFF in ``labels_dir`` (read with ``read``), by
    cell type."""
    from phaseseg import io
    from phaseseg.metrics import image_score

    types = folds.set_index("id")["cell_type"]
    scores: dict[str, list[float]] = {t: [] for t in CELL_TYPES}
    for path in sorted(labels_dir.glob("*.tif")):
        if path.stem in val_ids:
            true = io.annotations_to_labels(truth[path.stem])
            scores[types[path.stem]].append(image_score(true, read(path)))
    return scores


def cellpose_row(data: Path, work: Path, quick: bool, model: Path | None, budget_s: float) -> dict:
    """Train Cellpose 3 on folds 1-4 in its own venv for ``budget_s`` seconds, score fold 0.

    ``model``: an already trained Cellpose model (its ``train.json`` record beside it) to
    skip the training run.
    """
    from phaseseg.io.formats import read_labels

    if not CP_PYTHON.exists():
        return CELLPOSE_NOT_RUN
    prep = work / "prep"
    folds, truth = classical.load_split(data)
    val_ids = prepare_cellpose_data(data, prep, quick, folds, truth)
    script = str(HERE / "cellpose3.py")
    train_limit = ["--max-images", "6"] if quick else []
    predict_limit = ["--max-images", "2"] if quick else []
    train_json = model.parent.parent / "train.json" if model else work / "train.json"
    if model is None:
        budget = 1.0 if quick else budget_s
        cmd = [str(CP_PYTHON), script, "train", str(prep), "--budget-s", f"{budget:.0f}"]
        cmd += ["--out", str(work), "--json", str(train_json), *train_limit]
        log.info("running %s", " ".join(cmd))
        subprocess.run(cmd, check=True)
    trained = json.loads(train_json.read_text())
    labels_dir = work / "labels"
    cmd = [
        str(CP_PYTHON),
        script,
        "predict",
        trained["model"],
        str(prep),
        "--out",
        str(labels_dir),
        "--json",
        str(work / "predict.json"),
        *predict_limit,
    ]
    log.info("running %s", " ".join(cmd))
    subprocess.run(cmd, check=True)
    predicted = json.loads((work / "predict.json").read_text())
    scores = _score_labels(labels_dir, val_ids, folds, truth, read_labels)
    return {
        "method": "Cellpose 3",
        "quick": quick,
        **classical.summarize(scores),
        "median_seconds_per_image": predicted["median_seconds_per_image"],
        "training_seconds": trained["training_seconds"],
        "peak_memory_mib": max(trained["peak_memory_mib"], predicted["peak_memory_mib"]),
        "notes": f"cellpose {trained['cellpose_version']} in its own venv, from scratch; "
        f"train_seg defaults, {trained['n_epochs']} epochs of "
        f"{trained['images_per_epoch']} images to fill "
        f"{_budget_words(trained['budget_seconds'], budget_s)} "
        f"(+{trained['flow_seconds']:.0f} s computing flows); eval defaults, diameter = "
        f"training mean {predicted['diam_labels']:.1f} px",
    }


def instanseg_row(data: Path, work: Path, quick: bool, model: Path | None, budget_s: float) -> dict:
    """Train InstanSeg on folds 1-4 in its own venv for ``budget_s`` seconds, score fold 0.

    ``model``: an already trained InstanSeg model folder (``instanseg_peer.py train``'s
    ``OUT/instanseg``, its ``train.json`` record in ``OUT``) to skip the training run.
    """
    import tifffile

    if not IS_PYTHON.exists():
        return INSTANSEG_NOT_RUN
    prep = work / "prep"
    folds, truth = classical.load_split(data)
    val_ids = prepare_cellpose_data(data, prep, quick, folds, truth)
    script = str(HERE / "instanseg_peer.py")
    train_json = model.parent / "train.json" if model else work / "train.json"
    if model is None:
        minutes = 0.05 if quick else budget_s / 60
        cmd = [str(IS_PYTHON), script, "train", str(prep), "--minutes", str(minutes)]
        cmd += ["--out", str(work), "--json", str(train_json)]
        cmd += ["--max-images", "6", "--probe-samples", "0"] if quick else []
        log.info("running %s", " ".join(cmd))
        subprocess.run(cmd, check=True)
    trained = json.loads(train_json.read_text())
    labels_dir = work / "labels"
    cmd = [str(IS_PYTHON), script, "predict", trained["model"], str(prep)]
    cmd += ["--out", str(labels_dir), "--json", str(work / "predict.json")]
    cmd += ["--max-images", "2"] if quick else []
    log.info("running %s", " ".join(cmd))
    subprocess.run(cmd, check=True)
    predicted = json.loads((work / "predict.json").read_text())
    # read as instanseg_peer.py wrote them
    scores = _score_labels(
        labels_dir, val_ids, folds, truth, lambda p: tifffile.imread(p).astype(np.int32)
    )
    versions = trained["versions"]
    changed = ", ".join(f"{k}={v}" for k, v in trained["settings"].items())
    post = "tuned on the validation split" if trained["params"] else "InstanSeg defaults"
    return {
        "method": "InstanSeg",
        "quick": quick,
        **classical.summarize(scores),
        "median_seconds_per_image": predicted["median_seconds_per_image"],
        "training_seconds": trained["training_seconds"],
        "peak_memory_mib": max(trained["peak_memory_mib"], predicted["peak_memory_mib"]),
        "notes": f"instanseg-torch {versions['instanseg-torch']} (torch {versions['torch']}) "
        "in its own venv, from scratch through its instanseg_training (train.py); its defaults "
        f"but {changed}; {trained['epochs']} epochs (the first "
        f"{min(trained['epochs'], trained['hotstart_epochs'])} hot-start) of "
        f"{trained['samples_per_epoch']} 256-px tiles to fill "
        f"{_budget_words(trained['budget_seconds'], budget_s)} "
        f"(+{trained['probe_seconds']:.0f} s timing probe), weights of epoch "
        f"{trained['kept_epoch']} kept (best validation F1 {trained['kept_validation_f1']:.3f}; "
        f"{trained['train_images']} train / {trained['validation_images']} validation images "
        "of folds 1-4, 80/20 as its LIVECell loader); torchvision "
        f"{versions['torchvision']} imported without its C++ ops (CUDA build); "
        f"post-processing: {post}; inference: InstanSeg class, eval_small_image; peak memory "
        "of the training process, each of its 3 data loader workers up to "
        f"{trained['loader_worker_peak_memory_mib']:.0f} MiB more (partly shared)",
    }


def run_row(args: list[str], json_path: Path, common: list[str] = ()) -> dict:
    """Run one row in a subprocess (``args`` and ``common`` after the interpreter) and read its
    JSON record."""
    cmd = [sys.executable, *args, *common, "--json", str(json_path)]
    log.info("running %s", " ".join(cmd))
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    return json.loads(json_path.read_text())


def _fmt(value: float | None, spec: str) -> str:
    return "–" if value is None else format(value, spec)


def _fmt_duration(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    return f"{seconds:.0f} s" if seconds < 60 else f"{seconds / 60:.1f} min"


def cpu_name() -> str:
    """The CPU's model name (``/proc/cpuinfo``), else the machine type."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def write_table(rows: list[dict], path: Path, quick: bool, machine: str) -> None:
    """Write the Markdown results table of ``rows`` to ``path``."""
    head = "| method | overall | astro | cort | shsy5y | median s/image | training wall-clock "
    head += "| peak memory (MiB) | notes |"
    lines = []
    if quick:
        lines += [f"# {QUICK_BANNER}", "", f"**{QUICK_BANNER}**: 2 images per cell type.", ""]
    else:
        lines += ["# Peers benchmark: fold 0 of the Sartorius training set", ""]
    lines += [
        "Competition metric (mean over images of mean precision at IoU 0.50-0.95), train on "
        "folds 1-4, score fold 0. Regenerate with `make bench-peers`.",
        "",
        f"Machine: {machine}",
        "",
        head,
        "|" + "---|" * 9,
    ]
    for r in rows:
        per = r.get("per_cell_type", {})
        train = r.get("training_seconds")
        cells = [
            r["method"],
            _fmt(r.get("overall"), ".3f"),
            *(_fmt(per.get(t), ".3f") for t in CELL_TYPES),
            _fmt(r.get("median_seconds_per_image"), ".3f"),
            _fmt_duration(train),
            _fmt(r.get("peak_memory_mib"), ".0f"),
            r.get("notes", ""),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    path.write_text("\n".join(lines) + "\n")


def write_plot(rows: list[dict], path: Path, quick: bool) -> None:
    """Bar plot of overall and per-cell-type scores of the rows that ran."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ran = [r for r in rows if r.get("overall") is not None]
    groups = ["overall", *CELL_TYPES]
    fig, ax = plt.subplots(figsize=(10, 4))
    width = 0.8 / max(len(ran), 1)
    for k, r in enumerate(ran):
        vals = [r["overall"], *(r["per_cell_type"].get(t, np.nan) for t in CELL_TYPES)]
        label = r["method"] + (" — in-sample" if "in-sample" in r.get("notes", "") else "")
        bars = ax.bar(np.arange(len(groups)) + k * width, vals, width, label=label)
        ax.bar_label(bars, fmt="%.2f", fontsize=7)  # a zero score stays visible
    ax.set_xticks(np.arange(len(groups)) + width * (len(ran) - 1) / 2, groups)
    ax.set_ylabel("competition score (fold 0)")
    ax.set_title(QUICK_BANNER if quick else "phaseseg vs peers, fold 0")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1), fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main() -> None:
    """Command-line entry point."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=classical.DATA)
    ap.add_argument("--quick", action="store_true", help="2 images per type; scratch output")
    ap.add_argument("--out", type=Path, help="output folder (default: benchmarks/peers/)")
    ap.add_argument(
        "--recipe-model", type=Path, help="an already trained CPU-recipe model (skip training)"
    )
    ap.add_argument(
        "--cellpose-model", type=Path, help="an already trained Cellpose model (skip training)"
    )
    ap.add_argument(
        "--instanseg-model", type=Path, help="an already trained InstanSeg model (skip training)"
    )
    ap.add_argument("--row", choices=["phaseseg"], help=argparse.SUPPRESS)
    ap.add_argument("--model", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--method", default=BUNDLED, help=argparse.SUPPRESS)
    ap.add_argument("--json", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    if args.row == "phaseseg":  # child process: one row, own peak memory
        row = phaseseg_row(args.data, args.quick, model_path=args.model, method=args.method)
        args.json.write_text(json.dumps(row, indent=2) + "\n")
        return
    if args.out is None:
        if args.quick:
            ap.error("--quick needs --out (quick results are not a benchmark)")
        args.out = HERE
    args.out.mkdir(parents=True, exist_ok=True)
    common = ["--data", str(args.data), *(["--quick"] if args.quick else [])]
    bundled = run_row([str(HERE / "run.py"), "--row", "phaseseg"], args.out / "_ps.json", common)
    recipe = recipe_row(args.data, args.out / "recipe", args.quick, args.recipe_model)
    budget_s = recipe.get("training_seconds") or RECIPE_MINUTES * 60
    log.info("the peers' training budget: %.0f s (the CPU recipe's)", budget_s)
    rows = [
        bundled,
        recipe,
        run_row([str(HERE / "classical.py")], args.out / "_classical.json", common),
        cellpose_row(args.data, args.out / "cellpose3", args.quick, args.cellpose_model, budget_s),
        instanseg_row(
            args.data, args.out / "instanseg_peer", args.quick, args.instanseg_model, budget_s
        ),
        *NOT_RUN,
    ]
    for tmp in ("_ps.json", "_classical.json"):
        (args.out / tmp).unlink()
    machine = f"{cpu_name()}, {os.cpu_count()} CPUs, {platform.system()} {platform.release()}, "
    machine += f"Python {platform.python_version()}; run {datetime.date.today().isoformat()}"
    write_table(rows, args.out / "results.md", args.quick, machine)
    write_plot(rows, args.out / "results.png", args.quick)
    (args.out / "results.json").write_text(json.dumps(rows, indent=2) + "\n")
    print((args.out / "results.md").read_text())


if __name__ == "__main__":
    main()

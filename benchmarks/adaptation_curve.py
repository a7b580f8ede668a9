"""Adaptation curve: how well a model learns a culture from k annotated images in m minutes.

    .venv/bin/python benchmarks/adaptation_curve.py --types astro shsy5y --k 1 3 5 10 \\
        --minutes 5 10 15 [--base MODEL] [--json OUT] [--plot OUT.png]

For each cell type T, k and budget m: k images of T drawn (seeded) from folds 1-4 of the
Sartorius data are written as images + label TIFFs, exactly as a user would have them, and
``phaseseg.train.finetune`` (the code of ``phaseseg finetune``, its defaults) fine-tunes the base
model on them **as a new cell type** ``T-new`` for m minutes of wall clock all told, thresholds
tuned on the k images. Every image of T in fold 0 (never trained or tuned on) is then scored with
the fine-tuned model and ``--cell-type T-new``. Rows for k = 0 (the base model with the
thresholds of the known type it finds closest, as a user would use it) and for the base model
with T's own tuned thresholds (where it knows T) frame the curve.

Leaving a type out: the curve means most from a base model that never saw T. Train one with
``phaseseg train`` on a folder without T (``--make-base-data DIR`` writes that folder: folds 1-4
and 0 of the other types, the same images and folds) and pass it as ``--base``. The bundled model
saw every type (folds 1-4), so with the default ``--base bundled`` the curve measures adapting a
model to a culture as a *new type* from few images, not learning an unseen culture; BENCHMARKS.md
says which base each figure used.

Options ``--lr``, ``--freeze``, ``--ema-decay`` override the fine-tuning defaults (to compare
settings); ``--score-images N`` scores only the first N fold-0 images of T (quicker);
``--plot-from A.json B.json --plot OUT.png`` draws the runs of several files in one figure.

With ``--json OUT`` every finished row is written to ``OUT.partial.json`` at once; a run that
was cut is started again with the same command and skips the rows already there.
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import shutil
import sys
import tempfile
import time
from dataclasses import asdict, replace
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd

from phaseseg import io
from phaseseg.io.formats import write_labels
from phaseseg.metrics import image_score
from phaseseg.segment.segmenter import load_model
from phaseseg.train.finetune import finetune, finetune_config

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "sartorius"
log = logging.getLogger("adaptation_curve")


def pick_images(folds: pd.DataFrame, cell_type: str, k: int, seed: int) -> list[str]:
    """``k`` image ids of ``cell_type`` from folds 1-4, drawn with ``seed`` (the first k of one
    seeded permutation, so that the k=3 set holds the k=1 image)."""
    pool = sorted(folds.loc[(folds["cell_type"] == cell_type) & (folds["fold"] != 0), "id"])
    order = np.random.default_rng([seed, len(cell_type)]).permutation(len(pool))
    return [pool[i] for i in order[:k]]


def write_user_folder(data: Path, truth: pd.DataFrame, ids: list[str], root: Path) -> None:
    """``root/images/<id>.png`` and ``root/labels/<id>.tif``: what a user brings."""
    (root / "images").mkdir(parents=True)
    (root / "labels").mkdir()
    for image_id in ids:
        shutil.copyfile(data / "train" / f"{image_id}.png", root / "images" / f"{image_id}.png")
        write_labels(root / "labels" / f"{image_id}.tif", io.train_labels(truth, image_id))


def score_model(
    model_path: str | None,
    data: Path,
    truth: pd.DataFrame,
    ids: list[str],
    cell_type: str | None,
) -> dict[str, float]:
    """Mean competition score over ``ids`` with ``cell_type``'s thresholds (None: the type
    the model predicts per image), and the share of images the type head calls each type."""
    model = load_model(model_path)
    images = [io.read_image(data / "train" / f"{i}.png") for i in ids]
    results = model.segment_full(images, cell_type=cell_type)
    assert isinstance(results, list)
    scores = [
        image_score(io.train_labels(truth, i), r.labels) for i, r in zip(ids, results, strict=True)
    ]
    predicted = pd.Series([max(r.cell_type_probs, key=r.cell_type_probs.get) for r in results])
    return {
        "score": float(np.mean(scores)),
        "predicted_types": {str(k): int(v) for k, v in predicted.value_counts().items()},
    }


def thresholds_only(
    base: str | None,
    cell_type: str,
    data: Path,
    truth: pd.DataFrame,
    ids: list[str],
    scored: list[str],
) -> dict:
    """The base model with ``cell_type``'s thresholds re-tuned on the ``ids`` images alone
    (no training), scored on ``scored``."""
    from phaseseg.segment.segmenter import BUNDLED_MODEL
    from phaseseg.train import retune
    from phaseseg.train.make_dataset import build_dataset

    with tempfile.TemporaryDirectory() as tmp:
        user = Path(tmp) / "user"
        write_user_folder(data, truth, ids, user)
        pairs = [(user / "images" / f"{i}.png", user / "labels" / f"{i}.tif") for i in ids]
        build_dataset(pairs, Path(tmp) / "data", cell_type)
        model = Path(tmp) / "model.pt"
        shutil.copyfile(base or BUNDLED_MODEL, model)
        retune(model, Path(tmp) / "data", on="all")
        after = score_model(str(model), data, truth, scored, cell_type)
    return {"minutes": 0, "score": after["score"], "thresholds": f"{cell_type}, tuned on k"}


def closest_known_type(model_path: str | None, data: Path, ids: list[str]) -> str:
    """The type the model predicts most often on ``ids`` (what a user would pick)."""
    model = load_model(model_path)
    results = model.segment_full([io.read_image(data / "train" / f"{i}.png") for i in ids])
    assert isinstance(results, list)
    return pd.Series([r.cell_type for r in results]).mode()[0]


def make_base_data(data: Path, left_out: str, out: Path) -> None:
    """A Sartorius-style folder without ``left_out`` (same images, rows and folds)."""
    folds = pd.read_csv(data / "folds.csv", dtype={"id": str})
    keep = folds[folds["cell_type"] != left_out]
    truth = pd.read_csv(data / "train.csv", dtype={"id": str})
    (out / "train").mkdir(parents=True)
    truth[truth["id"].isin(set(keep["id"]))].to_csv(out / "train.csv", index=False)
    keep.to_csv(out / "folds.csv", index=False)
    for image_id in keep["id"]:
        (out / "train" / f"{image_id}.png").symlink_to(data / "train" / f"{image_id}.png")


def plot(rows: list[dict], reference: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    types = sorted({r["cell_type"] for r in rows})
    fig, axes = plt.subplots(1, len(types), figsize=(5 * len(types), 4), squeeze=False)
    for ax, t in zip(axes[0], types, strict=True):
        mine = [r for r in rows if r["cell_type"] == t]
        series: dict[str, list[tuple[int, float]]] = {}
        for r in sorted(mine, key=lambda r: (r["minutes"], r["k"])):
            if r["k"] == 0:
                continue
            name = r.get("series") or (
                f"{r['minutes']:g} min"
                if r["minutes"]
                else "0 min (thresholds tuned on the k images)"
            )
            series.setdefault(name, []).append((r["k"], r["score"]))
        start = [(0, r["score"]) for r in mine if r["k"] == 0]
        for name, pts in series.items():
            ax.plot(*zip(*(start + pts), strict=True), marker="o", label=name)
        if t in reference:
            ax.axhline(reference[t], ls="--", c="gray", label="model that saw every type")
        for k, score in start:
            ax.annotate("base model", (k, score), xytext=(6, 2), textcoords="offset points")
        ax.set_xticks(sorted({r["k"] for r in mine}))
        ax.set(title=t, xlabel="annotated images k", ylabel=f"score, fold-0 {t} images")
        ax.legend(title="fine-tuning budget")
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--types", nargs="+", default=["astro", "shsy5y"])
    ap.add_argument("--k", type=int, nargs="+", default=[1, 3, 5, 10])
    ap.add_argument("--minutes", type=float, nargs="+", default=[5, 10, 15])
    ap.add_argument("--base", default="bundled", help="model to fine-tune (default: bundled)")
    ap.add_argument("--reference", default="bundled", help="the model that saw every type")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--score-images", type=int, help="score only the first N fold-0 images")
    ap.add_argument("--lr", type=float)
    ap.add_argument("--freeze", choices=["none", "encoder"])
    ap.add_argument("--ema-decay", type=float)
    ap.add_argument("--bn-stats", choices=["update", "keep"])
    ap.add_argument("--batch-size", type=int)
    ap.add_argument("--keep-models", type=Path, metavar="DIR", help="keep the models here")
    ap.add_argument("--skip-baselines", action="store_true", help="no k=0 / reference rows")
    ap.add_argument("--json", type=Path)
    ap.add_argument("--plot", type=Path)
    ap.add_argument(
        "--make-base-data",
        type=Path,
        metavar="DIR",
        help="write a folder without --types[0] for training a base model, and exit",
    )
    ap.add_argument(
        "--plot-from",
        type=Path,
        nargs="+",
        metavar="JSON",
        help="draw --plot from the --json files of earlier runs (one panel per type), and exit",
    )
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s: %(message)s")
    if args.plot_from:
        if not args.plot:
            ap.error("--plot-from needs --plot")
        reports = [json.loads(p.read_text()) for p in args.plot_from]
        plot(
            [r for rep in reports for r in rep["rows"]],
            {t: s for rep in reports for t, s in rep["reference_scores"].items()},
            args.plot,
        )
        print(f"wrote {args.plot}")
        return 0
    if args.make_base_data:
        make_base_data(args.data, args.types[0], args.make_base_data)
        print(f"wrote {args.make_base_data}: train a base model on it with phaseseg train")
        return 0
    names = ("lr", "freeze", "ema_decay", "bn_stats", "batch_size")
    overrides = {k: getattr(args, k) for k in names if getattr(args, k) is not None}
    cfg = replace(finetune_config(), **overrides)
    folds = pd.read_csv(args.data / "folds.csv", dtype={"id": str})
    truth = io.read_train_csv(args.data / "train.csv")
    base = None if args.base == "bundled" else args.base
    reference = None if args.reference == "bundled" else args.reference
    partial = args.json.with_suffix(".partial.json") if args.json else None
    done: dict = json.loads(partial.read_text()) if partial and partial.exists() else {}
    rows: list[dict] = done.get("rows", [])
    ref_scores: dict[str, float] = done.get("reference_scores", {})

    def have(t: str, k: int, m: float) -> bool:
        return any((r["cell_type"], r["k"], r["minutes"]) == (t, k, m) for r in rows)

    def save() -> None:
        if partial:
            tmp = partial.with_suffix(".tmp")
            tmp.write_text(json.dumps({"rows": rows, "reference_scores": ref_scores}, indent=2))
            tmp.replace(partial)

    if rows:
        log.info("resuming from %s: %d rows done", partial, len(rows))
    for t in args.types:
        scored = sorted(folds.loc[(folds["cell_type"] == t) & (folds["fold"] == 0), "id"])
        scored = scored[: args.score_images] if args.score_images else scored
        closest = closest_known_type(base, args.data, scored)
        if not args.skip_baselines and not have(t, 0, 0):
            ref = score_model(reference, args.data, truth, scored, t)
            ref_scores[t] = ref["score"]
            zero = score_model(base, args.data, truth, scored, closest)
            rows.append(
                {
                    "cell_type": t,
                    "k": 0,
                    "minutes": 0,
                    "score": zero["score"],
                    "thresholds": closest,
                }
            )
            log.info(
                "%s: reference %.4f, base with %s thresholds %.4f",
                t,
                ref["score"],
                closest,
                zero["score"],
            )
            save()
        for k in args.k:
            ids = pick_images(folds, t, k, args.seed)
            for m in args.minutes:
                if have(t, k, m):
                    continue
                if m == 0:  # no training: the base model, thresholds tuned on the k images
                    rows.append(thresholds_only(base, closest, args.data, truth, ids, scored))
                    rows[-1].update(cell_type=t, k=k)
                    log.info("%s k=%d thresholds only: %.4f", t, k, rows[-1]["score"])
                    save()
                    continue
                with tempfile.TemporaryDirectory() as tmp:
                    user = Path(tmp) / "user"
                    write_user_folder(args.data, truth, ids, user)
                    t0 = time.monotonic()
                    result = finetune(
                        [user / "images"],
                        user / "labels",
                        f"{t}-new",
                        Path(tmp) / "model.pt",
                        minutes=m,
                        init=args.base,
                        config=cfg,
                    )
                    wall = time.monotonic() - t0
                    if args.keep_models:
                        args.keep_models.mkdir(parents=True, exist_ok=True)
                        kept = args.keep_models / f"{t}_k{k}_{m:g}min.pt"
                        shutil.copyfile(result.model_path, kept)
                    after = score_model(
                        str(result.model_path), args.data, truth, scored, f"{t}-new"
                    )
                    auto = score_model(str(result.model_path), args.data, truth, scored, None)
                row = {
                    "cell_type": t,
                    "k": k,
                    "minutes": m,
                    "score": after["score"],
                    "score_type_predicted": auto["score"],
                    "predicted_types": auto["predicted_types"],
                    "train_images": ids,
                    "steps": result.steps,
                    "wall_s": round(wall, 1),
                    "in_sample_score": result.score,
                }
                rows.append(row)
                save()
                log.info(
                    "%s k=%d %g min: %.4f (%d steps, %.0f s)",
                    t,
                    k,
                    m,
                    row["score"],
                    result.steps,
                    wall,
                )
    report = {
        "date": datetime.now(timezone.utc).isoformat(timespec="minutes"),
        "machine": platform.processor() or platform.machine(),
        "base": args.base,
        "reference": args.reference,
        "reference_scores": ref_scores,
        "settings": asdict(cfg),
        "scored_images": {
            t: int(((folds["cell_type"] == t) & (folds["fold"] == 0)).sum())
            if not args.score_images
            else args.score_images
            for t in args.types
        },
        "rows": rows,
    }
    print(json.dumps(report, indent=2))
    print("| type | k | minutes | score fold 0 | with predicted type | steps |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['cell_type']} | {r['k']} | {r['minutes']:g} | {r['score']:.4f} | "
            f"{r.get('score_type_predicted', float('nan')):.4f} | {r.get('steps', '')} |"
        )
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
        partial.unlink(missing_ok=True)
    if args.plot:
        plot(rows, ref_scores, args.plot)
    return 0


if __name__ == "__main__":
    sys.exit(main())

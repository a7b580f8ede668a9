"""Give a model trained on all the labelled data the thresholds of its fold-0 twin.

    .venv/bin/python benchmarks/adopt_thresholds.py --source f0/model.pt --target all/model.pt

A model trained with ``--val-fold none`` has no unseen images left to tune its post-processing
thresholds on. The shipped model takes them from a run of the same recipe that held fold 0 out
(tuned there by ``phaseseg train`` or ``phaseseg.train.retune``). The target file keeps its
weights and training record; its ``postprocess`` is replaced, and ``postprocess_from`` records
the source file, its scores and its training data, so that the model card can say where the
thresholds came from.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from phaseseg.nn.checkpoint import load_model_file, save_model


def adopt(source: Path, target: Path) -> dict:
    """Copy ``source``'s thresholds into ``target`` (atomically); return the new metadata."""
    src, dst = load_model_file(source), load_model_file(target)
    if src["net"] != dst["net"]:
        raise SystemExit(f"{target}: architecture {dst['net']} differs from {source}'s")
    meta = {k: v for k, v in dst.items() if k != "state_dict"}
    meta["postprocess"] = src["postprocess"]
    meta["postprocess_from"] = {
        "path": str(source),
        "data": src.get("data"),
        "scores": src.get("scores"),
    }
    save_model(target, dst["state_dict"], meta)
    return meta


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--source", type=Path, required=True, help="model tuned on a held-out fold")
    ap.add_argument("--target", type=Path, required=True, help="model trained on everything")
    args = ap.parse_args()
    meta = adopt(args.source, args.target)
    print(f"{args.target}: thresholds from {args.source}: {meta['postprocess']}")


if __name__ == "__main__":
    main()

#!/usr/bin/env bash
# One GPU training run sized to a time budget: how the bundled model's last run was trained on
# a lent GPU machine (see BENCHMARKS.md, "Training on a GPU"):
#
#   bash benchmarks/gpu_train.sh DATA_DIR OUT_DIR MINUTES [CONFIG] [more phaseseg train flags]
#   bash benchmarks/gpu_train.sh /tmp/sartorius runs/gpu 6.3 docs/configs/gpu.json --init M.pt
#
# Times the config's training step on random batches (benchmarks/steps_for_minutes.py), sets
# --steps to what fits in MINUTES, validates at the half and the end (best weights kept) and
# leaves threshold tuning to the CPU afterwards (phaseseg.train.retune). Writes OUT_DIR/model.pt,
# OUT_DIR/model.config.json and OUT_DIR/train.log.
set -euo pipefail
data=$1 out=$2 minutes=$3 config=${4:-docs/configs/gpu.json}
shift $(($# < 4 ? $# : 4))
export PYTHONPATH=src PYTHONUNBUFFERED=1 TQDM_MININTERVAL=20
test -f "$data/train.csv" || { echo "gpu_train.sh: no $data/train.csv" >&2; exit 2; }
mkdir -p "$out"
steps=$(python3 benchmarks/steps_for_minutes.py --config "$config" --minutes "$minutes")
echo "gpu_train.sh: $steps steps in about $minutes min"
python3 -m phaseseg train "$data" --out "$out/model.pt" --config "$config" \
    --steps "$steps" --eval-every $(((steps + 1) / 2)) --no-tune "$@" 2>&1 | tee "$out/train.log"

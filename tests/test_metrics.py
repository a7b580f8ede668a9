"""Tests of the competition metric (phaseseg.metrics) and the ``evaluate`` command.

Hand-built cases have their expected scores worked out in the comments. The image score is the
mean over the 10 thresholds 0.50, ..., 0.95 of TP / (TP + FP + FN), a match needing IoU > t.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from phaseseg.cli import main
from phaseseg.io import PhasesegInputError, read_train_csv
from phaseseg.metrics import THRESHOLDS, image_score, iou_matrix, matching, score_tables

REPO = Path(__file__).resolve().parents[1]


def block(shape, *boxes):
    """Label image with label ``lab`` on each ``(lab, r0, r1, c0, c1)`` box."""
    out = np.zeros(shape, dtype=np.int32)
    for lab, r0, r1, c0, c1 in boxes:
        out[r0:r1, c0:c1] = lab
    return out


# --------------------------------------------------------------------------- iou_matrix


def test_iou_matrix_non_contiguous_ids_sorted():
    # truth ids 3 (2x2 at top-left) and 7 (1x3 at bottom-right); pred ids 2 and 10.
    truth = block((4, 6), (3, 0, 2, 0, 2), (7, 3, 4, 3, 6))
    # pred 10 = the 2x3 box over truth 3 (inter 4, union 6 -> 2/3); pred 2 = 1x2 inside truth 7
    # (inter 2, union 3 -> 2/3)
    pred = block((4, 6), (10, 0, 2, 0, 3), (2, 3, 4, 4, 6))
    m = iou_matrix(truth, pred)
    # rows: truth ids [3, 7]; cols: pred ids [2, 10]
    np.testing.assert_allclose(m, [[0, 2 / 3], [2 / 3, 0]])
    assert m.dtype == np.float64


def test_iou_matrix_huge_label_ids():
    # ids far beyond the pixel count take the sorting path; same result as small ids
    truth = block((4, 6), (3, 0, 2, 0, 2), (7, 3, 4, 3, 6))
    pred = block((4, 6), (10, 0, 2, 0, 3), (2, 3, 4, 4, 6))
    big_t = np.where(truth > 0, truth.astype(np.int64) * 10**9, 0)
    big_p = np.where(pred > 0, pred.astype(np.int64) * 10**9 + 1, 0)
    np.testing.assert_array_equal(iou_matrix(big_t, big_p), iou_matrix(truth, pred))


def test_iou_matrix_empty_and_errors():
    assert iou_matrix(np.zeros((3, 3), int), np.zeros((3, 3), int)).shape == (0, 0)
    assert iou_matrix(block((3, 3), (1, 0, 1, 0, 1)), np.zeros((3, 3), int)).shape == (1, 0)
    with pytest.raises(ValueError, match="shape"):
        iou_matrix(np.zeros((3, 3), int), np.zeros((3, 4), int))
    with pytest.raises(ValueError, match="integer"):
        iou_matrix(np.zeros((3, 3), float), np.zeros((3, 3), int))
    with pytest.raises(ValueError, match="negative"):
        iou_matrix(-np.ones((3, 3), int), np.zeros((3, 3), int))


# --------------------------------------------------------------------------- image scores


def test_perfect_match_with_relabelled_ids():
    truth = block((8, 8), (3, 0, 3, 0, 3), (9, 4, 8, 4, 8))
    pred = np.where(truth == 3, 100, np.where(truth == 9, 1, 0))
    # every cell matched with IoU 1 at every threshold: precision 1 everywhere -> score 1
    assert image_score(truth, pred) == 1.0


def test_iou_exactly_half_never_counts():
    # truth: 2x2 = 4 px; pred: 2 of those px -> IoU 2/4 = 0.5, not > 0.5: TP 0, FP 1, FN 1 at
    # every threshold -> precision 0 -> score 0
    truth = block((4, 4), (1, 0, 2, 0, 2))
    pred = block((4, 4), (1, 0, 1, 0, 2))
    m = matching(truth, pred)
    assert m.tp.tolist() == [0] * 10
    assert m.fp.tolist() == [1] * 10 and m.fn.tolist() == [1] * 10
    assert image_score(truth, pred) == 0.0


def test_iou_exactly_055_counts_only_at_050():
    # truth: 4x5 = 20 px; pred: 11 of them (2 full rows + 1 px) -> IoU 11/20 = 0.55.
    # t = 0.50: 0.55 > 0.50, TP 1 -> precision 1; t = 0.55: 0.55 is not > 0.55 -> 0; higher: 0.
    # score = 1 / 10 = 0.1
    truth = block((6, 6), (1, 0, 4, 0, 5))
    pred = block((6, 6), (4, 0, 2, 0, 5), (4, 2, 3, 0, 1))
    assert iou_matrix(truth, pred)[0, 0] == 0.55
    m = matching(truth, pred)
    assert m.tp.tolist() == [1] + [0] * 9
    assert image_score(truth, pred) == pytest.approx(0.1, abs=1e-12)


def test_iou_exactly_09_counts_below_09():
    # truth: 2x5 = 10 px; pred: 9 of them -> IoU 0.9: matched at t = 0.50 ... 0.85 (8
    # thresholds, precision 1), not at 0.90 or 0.95 (precision 0) -> score 8 / 10 = 0.8
    truth = block((3, 5), (1, 0, 2, 0, 5))
    pred = truth.copy()
    pred[1, 4] = 0
    assert image_score(truth, pred) == pytest.approx(0.8, abs=1e-12)


def test_extra_and_missing_cells():
    # truth cells 1, 2, 3; pred: 1 and 2 exact, 3 missed, 2 spurious cells.
    # TP 2, FP 2, FN 1 at every threshold -> precision 2 / 5 -> score 0.4
    truth = block((10, 10), (1, 0, 2, 0, 2), (2, 3, 5, 3, 5), (3, 7, 9, 7, 9))
    pred = block((10, 10), (5, 0, 2, 0, 2), (6, 3, 5, 3, 5), (7, 0, 1, 8, 10), (8, 9, 10, 0, 1))
    m = matching(truth, pred)
    assert (m.tp.tolist(), m.fp.tolist(), m.fn.tolist()) == ([2] * 10, [2] * 10, [1] * 10)
    assert m.n_true == 3 and m.n_pred == 4
    assert image_score(truth, pred) == pytest.approx(0.4, abs=1e-12)


def test_merged_prediction_matches_nothing():
    # two adjacent 2x2 truth cells, one pred covering both: IoU 4/8 = 0.5 with each, not > 0.5
    # -> TP 0, FP 1, FN 2 -> score 0
    truth = block((2, 4), (1, 0, 2, 0, 2), (2, 0, 2, 2, 4))
    pred = np.ones((2, 4), dtype=np.int32)
    assert image_score(truth, pred) == 0.0


def test_graded_ious_mixed():
    # cell A: IoU 1 (counts at all 10 thresholds); cell B: 10 px, pred 7 of them -> IoU 0.7
    # (counts at 0.50 ... 0.65: 4 thresholds). Precision: 4 thresholds with TP 2 -> 2/2 = 1;
    # 6 thresholds with TP 1, FP 1, FN 1 -> 1/3. Score = (4 * 1 + 6 / 3) / 10 = 0.6
    truth = block((6, 10), (1, 0, 2, 0, 2), (2, 4, 5, 0, 10))
    pred = block((6, 10), (1, 0, 2, 0, 2), (2, 4, 5, 0, 7))
    assert image_score(truth, pred) == pytest.approx(0.6, abs=1e-12)


def test_empty_images():
    empty = np.zeros((5, 5), dtype=np.int32)
    cell = block((5, 5), (1, 1, 3, 1, 3))
    assert image_score(empty, empty) == 1.0  # nothing to find, nothing found: defined as 1
    assert image_score(empty, cell) == 0.0  # only false positives
    assert image_score(cell, empty) == 0.0  # only false negatives
    m = matching(empty, empty)
    assert m.precision.tolist() == [1.0] * 10 and m.n_true == m.n_pred == 0


def test_custom_thresholds():
    # IoU 0.75 (3 of 4 px): matched at 0.5, not at 0.75 (strict), not at 0.9
    truth = block((2, 2), (1, 0, 2, 0, 2))
    pred = truth.copy()
    pred[1, 1] = 0
    m = matching(truth, pred, thresholds=[0.5, 0.75, 0.9])
    assert m.tp.tolist() == [1, 0, 0]
    assert m.precision.tolist() == [1.0, 0.0, 0.0]
    assert m.thresholds.tolist() == [0.5, 0.75, 0.9]


# --------------------------------------------------------------------------- tables


def tables(truth_rows, sub_rows, shape=(1, 12)):
    """Build truth and submission DataFrames from ``(id, rle[, cell_type])`` tuples."""
    truth = pd.DataFrame(
        [(i, r, shape[1], shape[0], ct) for i, r, ct in truth_rows],
        columns=["id", "annotation", "width", "height", "cell_type"],
    )
    sub = pd.DataFrame(sub_rows, columns=["id", "predicted"])
    return truth, sub


def test_overlapping_truth_and_predictions_need_assignment():
    # One row of 12 px. Truth A = px 0-9, B = px 2-11 (they overlap on 2-9).
    # Overlapping preds: P1 = px 0-10, P2 = px 0-7.
    #   IoU(P1, A) = 10/11 = 0.909, IoU(P1, B) = 9/12 = 0.75, IoU(P2, A) = 8/10 = 0.8,
    #   IoU(P2, B) = 6/12 = 0.5.
    # t = 0.50 ... 0.70: the one-to-one assignment P1-B, P2-A gives TP 2 -> precision 1.
    #   (Greedy highest-IoU-first would take P1-A and get only TP 1.)
    # t = 0.75 ... 0.90: P1-B (0.75) no longer counts; P1-A or P2-A: TP 1, FP 1, FN 1 -> 1/3.
    # t = 0.95: nothing -> 0.  Score = (5 * 1 + 4 / 3) / 10 = 0.633333
    truth, sub = tables(
        [("x", "1 10", "cort"), ("x", "3 10", "cort")], [("x", "1 11"), ("x", "1 8")]
    )
    s = score_tables(truth, sub)
    assert s.score == pytest.approx((5 + 4 / 3) / 10, abs=1e-12)
    assert s.per_image["n_true"].tolist() == [2] and s.per_image["n_pred"].tolist() == [2]


def test_duplicated_truth_and_self_score():
    # Truth holds the same cell twice (as a few train images do): a pred equal to it matches
    # one copy only -> TP 1, FN 1 -> 1/2 at every threshold -> 0.5. Scoring the truth against
    # itself (overlapping "predictions") matches every copy -> 1.
    truth, sub = tables([("x", "1 5", "cort"), ("x", "1 5", "cort")], [("x", "1 5")])
    assert score_tables(truth, sub).score == 0.5
    own = truth[["id", "annotation"]].rename(columns={"annotation": "predicted"})
    assert score_tables(truth, own).score == 1.0


def test_score_tables_breakdowns_and_missing_images():
    # a (astro): exact -> 1. b (astro): pred IoU 0.55 (11 of 20 px) -> 0.1.
    # c (cort): missing from the submission -> 0. d (cort): empty prediction row -> 0.
    # overall = (1 + 0.1 + 0 + 0) / 4 = 0.275 (mean of images, not pooled counts)
    # astro = (1 + 0.1) / 2 = 0.55; cort = 0.
    # per threshold: t = 0.5 -> (1 + 1 + 0 + 0) / 4 = 0.5; t > 0.5 -> (1 + 0 + 0 + 0) / 4 = 0.25
    truth, sub = tables(
        [
            ("a", "1 5", "astro"),
            ("b", "1 20", "astro"),
            ("c", "1 3", "cort"),
            ("d", "4 3", "cort"),
        ],
        [("a", "1 5"), ("b", "1 11"), ("d", "")],
        shape=(2, 12),
    )
    s = score_tables(truth, sub)
    assert s.score == pytest.approx(0.275, abs=1e-12)
    assert s.per_cell_type.to_dict() == pytest.approx({"astro": 0.55, "cort": 0.0})
    assert s.per_threshold.iloc[0] == pytest.approx(0.5)
    np.testing.assert_allclose(s.per_threshold.iloc[1:], 0.25)
    assert s.per_threshold.index.tolist() == list(THRESHOLDS)
    assert s.n_images == 4 and s.n_missing == 1
    assert s.per_image["id"].tolist() == ["a", "b", "c", "d"]
    assert s.per_image["missing"].tolist() == [False, False, True, False]
    # an image whose only annotation is empty: 1 with an empty prediction, 0 when missing
    truth, sub = tables([("e", "", "cort"), ("f", "", "cort")], [("e", "")])
    assert score_tables(truth, sub).per_image["score"].tolist() == [1.0, 0.0]
    d = s.to_dict()
    assert d["n_missing"] == 1 and d["per_image"]["b"] == pytest.approx(0.1)
    json.dumps(d)  # JSON-ready


def test_score_tables_bad_submissions():
    truth, sub = tables([("a", "1 5", "cort")], [("a", "1 5"), ("zz", "1 2"), ("yy", "")])
    with pytest.raises(PhasesegInputError, match=r"2 id\(s\) not in truth: zz, yy"):
        score_tables(truth, sub)
    truth, sub = tables([("a", "1 5", "cort")], [("a", "1 5"), ("a", "11 5")])
    # second submission row (file line 3) runs past the 12-px image
    with pytest.raises(PhasesegInputError, match="submission, line 3: .*beyond"):
        score_tables(truth, sub)


# --------------------------------------------------------------------------- CLI


def write_csvs(tmp_path):
    truth, sub = tables(
        [("a", "1 5", "astro"), ("b", "1 20", "astro"), ("c", "1 3", "cort")],
        [("a", "1 5"), ("b", "1 11")],
        shape=(2, 12),
    )
    t, s = tmp_path / "truth.csv", tmp_path / "sub.csv"
    truth.to_csv(t, index=False)
    sub.to_csv(s, index=False)
    return t, s


def test_cli_evaluate_prints_and_writes_json(tmp_path, capsys):
    t, s = write_csvs(tmp_path)
    out_json = tmp_path / "out" / "scores.json"
    assert main(["evaluate", str(t), str(s), "--json", str(out_json)]) == 0
    out = capsys.readouterr().out
    # (1 + 0.1 + 0) / 3 = 0.3667
    assert "score 0.3667" in out and "3 images" in out and "1 missing" in out
    assert "astro" in out and "cort" in out and "0.95" in out
    data = json.loads(out_json.read_text())
    assert data["score"] == pytest.approx(1.1 / 3) and data["n_images"] == 3
    assert sorted(p.name for p in out_json.parent.iterdir()) == ["scores.json"]  # no temp left


@pytest.mark.parametrize(
    "case, message",
    [
        ("unknown_id", "id(s) not in"),
        ("missing_file", "no such file"),
        ("missing_column", "missing column"),
        ("bad_rle", "line 2"),
    ],
)
def test_cli_evaluate_bad_inputs_one_line(tmp_path, capsys, case, message):
    t, s = write_csvs(tmp_path)
    if case == "unknown_id":
        s.write_text("id,predicted\na,1 5\nnope,1 2\n")
    elif case == "missing_file":
        s = tmp_path / "absent.csv"
    elif case == "missing_column":
        s.write_text("id,mask\na,1 5\n")
    elif case == "bad_rle":
        s.write_text("id,predicted\na,1 five\n")
    assert main(["evaluate", str(t), str(s)]) == 2
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err
    assert lines[0].startswith("phaseseg evaluate: error:") and message in lines[0]


# --------------------------------------------------------------------------- real data


def _load_crosscheck():
    path = REPO / "benchmarks" / "metric_crosscheck.py"
    spec = importlib.util.spec_from_file_location("metric_crosscheck", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_real_truth_against_itself_is_one(shared_data):
    truth = read_train_csv(shared_data / "train.csv")
    own = truth[["id", "annotation"]].rename(columns={"annotation": "predicted"})
    s = score_tables(truth, own)  # its speed: BENCHMARKS.md, not a timed test
    assert s.n_images == 461 and s.n_missing == 0
    assert s.score == 1.0 and (s.per_image["score"] == 1.0).all()
    assert set(s.per_cell_type.index) == {"astro", "cort", "shsy5y"}


def _crosscheck(shared_data, n_images, seed):
    cc = _load_crosscheck()
    truth = read_train_csv(shared_data / "train.csv")
    ids = cc.sample_ids(truth, n_images, seed)
    truth = truth[truth["id"].isin(ids)].reset_index(drop=True)
    res = cc.crosscheck(truth, cc.make_submission(truth, seed))
    assert res["n_images"] == n_images
    assert 0.05 < res["metrics_score"] < 0.95  # perturbations leave a non-trivial score
    assert res["max_abs_diff"] <= 1e-6


def test_real_agrees_with_reference_small(shared_data):
    _crosscheck(shared_data, 6, seed=0)


@pytest.mark.slow
def test_real_agrees_with_reference_50_images(shared_data):
    _crosscheck(shared_data, 50, seed=1)

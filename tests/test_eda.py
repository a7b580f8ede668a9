"""Tests of the EDA report (phaseseg.analysis.eda and .report) and the ``eda`` command."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from phaseseg.analysis.eda import FIGURES, collect_stats, summarize, write_eda_report
from phaseseg.analysis.overlays import overlay_annotations
from phaseseg.cli import main
from phaseseg.io import rle_encode

SHAPE = (40, 56)  # (height, width) of the synthetic images


def box(r0, r1, c0, c1, shape=SHAPE):
    m = np.zeros(shape, dtype=bool)
    m[r0:r1, c0:c1] = True
    return m


def make_dataset(root: Path) -> Path:
    """Three small images (one per cell type) with known cells.

    * ``a1`` (astro): cells 10x10 at (0, 0) and 10x10 at (5, 5) -> overlap 5x5 = 25 px.
    * ``c1`` (cort): cells 4x5 and 3x3, apart; plus an exact duplicate of the 3x3 one -> the
      duplicate pair shares 9 px.
    * ``s1`` (shsy5y): one 6x6 cell.
    Images: background 100, cells 60 (darker), except ``s1`` which is all 128.
    """
    cells = {
        "a1": ("astro", [box(0, 10, 0, 10), box(5, 15, 5, 15)]),
        "c1": ("cort", [box(20, 24, 20, 25), box(30, 33, 40, 43), box(30, 33, 40, 43)]),
        "s1": ("shsy5y", [box(10, 16, 10, 16)]),
    }
    (root / "train").mkdir(parents=True)
    rows = []
    for image_id, (cell_type, masks) in cells.items():
        img = np.full(SHAPE, 100, dtype=np.uint8)
        for m in masks:
            img[m] = 60
        if image_id == "s1":
            img[:] = 128
        Image.fromarray(img).save(root / "train" / f"{image_id}.png")
        rows += [(image_id, rle_encode(m), SHAPE[1], SHAPE[0], cell_type) for m in masks]
    pd.DataFrame(rows, columns=["id", "annotation", "width", "height", "cell_type"]).to_csv(
        root / "train.csv", index=False
    )
    return root


@pytest.fixture
def dataset(tmp_path) -> Path:
    return make_dataset(tmp_path / "data")


def test_collect_stats_numbers(dataset):
    stats = collect_stats(dataset)
    assert stats.cell_types == ["astro", "cort", "shsy5y"]
    cells = stats.cells
    assert cells["area"].tolist() == [100, 100, 20, 9, 9, 36]
    assert cells["overlap_px"].tolist() == [25, 25, 0, 9, 9, 0]
    np.testing.assert_allclose(cells["mean_intensity"], [60, 60, 60, 60, 60, 128])
    im = stats.images.set_index("id")
    assert im["n_cells"].to_dict() == {"a1": 2, "c1": 3, "s1": 1}
    assert im["n_duplicates"].to_dict() == {"a1": 0, "c1": 1, "s1": 0}
    assert im.at["a1", "covered_px"] == 175 and im.at["a1", "overlap_px"] == 25
    assert im.at["c1", "covered_px"] == 29 and im.at["c1", "overlap_px"] == 9
    assert im.at["a1", "cell_mean"] == 60 and im.at["a1", "background_mean"] == 100
    assert im.at["s1", "std"] == 0 and im.at["s1", "mean"] == 128
    for t, h in stats.histograms.items():
        assert h.shape == (256,) and h.sum() == SHAPE[0] * SHAPE[1], t
    assert set(stats.examples) == {"astro", "cort", "shsy5y"}
    assert stats.examples["cort"].n_cells == 3


def test_summarize(dataset):
    s = summarize(collect_stats(dataset))
    assert s.index.tolist() == ["astro", "cort", "shsy5y", "all"]
    assert s.at["all", "images"] == 3 and s.at["all", "cells"] == 6
    assert s.at["astro", "frac_cells_overlapping"] == 1.0
    assert s.at["cort", "frac_cells_overlapping"] == pytest.approx(2 / 3)
    assert s.at["all", "frac_cells_overlapping"] == pytest.approx(4 / 6)
    assert s.at["all", "duplicate_annotations"] == 1
    # astro: 25 of 175 annotated px are covered twice
    assert s.at["astro", "frac_annotated_px_overlapping"] == pytest.approx(25 / 175)
    assert s.at["astro", "cell_minus_background"] == -40


def test_overlay_draws_contours_only_on_edges(dataset):
    ex = collect_stats(dataset).examples["shsy5y"]  # one 6x6 cell at rows/cols 10-15
    rgb = overlay_annotations(ex)
    assert rgb.shape == (*SHAPE, 3) and rgb.min() >= 0 and rgb.max() <= 1
    colored = np.ptp(rgb, axis=2) > 1e-9
    expected = box(10, 16, 10, 16) & ~box(11, 15, 11, 15)  # the 1-px inner boundary
    np.testing.assert_array_equal(colored, expected)


def test_write_eda_report(dataset, tmp_path):
    out = tmp_path / "out"
    report = write_eda_report(dataset, out)
    assert report == out / "report.html"
    html = report.read_text()
    assert html.count("data:image/png;base64,") == len(FIGURES)
    assert "http://" not in html and "https://" not in html  # opens offline
    for name in FIGURES:
        with Image.open(out / f"{name}.png") as im:
            assert im.width > 200 and im.height > 100
    summary = pd.read_csv(out / "summary.csv", index_col=0)
    assert summary.index.tolist() == ["astro", "cort", "shsy5y", "all"]
    data = json.loads((out / "summary.json").read_text())
    assert data["all"]["cells"] == 6 and data["cort"]["duplicate_annotations"] == 1
    assert len(pd.read_csv(out / "images.csv")) == 3
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temp files left


def test_write_eda_report_without_overlays(dataset, tmp_path):
    report = write_eda_report(dataset, tmp_path / "out", overlays=False)
    assert report.read_text().count("data:image/png;base64,") == len(FIGURES) - 1
    assert not (tmp_path / "out" / "overlays.png").exists()


def test_cli_eda(dataset, tmp_path, capsys):
    out = tmp_path / "cli_out"
    assert main(["eda", str(dataset), "--out", str(out)]) == 0
    assert capsys.readouterr().out.strip() == str(out / "report.html")


@pytest.mark.parametrize(
    "case, message",
    [
        ("no_csv", "no train.csv"),
        ("no_image", "c1.png: no such file"),
        ("wrong_size", "s1.png: image is 20x20, train.csv says 40x56"),
        ("bad_rle", "image a1: RLE"),
    ],
)
def test_cli_eda_bad_inputs_one_line(dataset, tmp_path, capsys, case, message):
    if case == "no_csv":
        (dataset / "train.csv").unlink()
    elif case == "no_image":
        (dataset / "train" / "c1.png").unlink()
    elif case == "wrong_size":
        Image.fromarray(np.zeros((20, 20), np.uint8)).save(dataset / "train" / "s1.png")
    elif case == "bad_rle":
        df = pd.read_csv(dataset / "train.csv")
        df.loc[0, "annotation"] = "5 3 1 2"  # unsorted runs
        df.to_csv(dataset / "train.csv", index=False)
    assert main(["eda", str(dataset), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err
    assert lines[0].startswith("phaseseg eda: error:") and message in lines[0]


def test_real_images(shared_data, tmp_path):
    # two images of each type, linked into a small data folder
    df = pd.read_csv(shared_data / "train.csv")
    ids = df.drop_duplicates("id").groupby("cell_type")["id"].head(2).tolist()
    sub = df[df["id"].isin(ids)]
    root = tmp_path / "real"
    (root / "train").mkdir(parents=True)
    sub.to_csv(root / "train.csv", index=False)
    for i in ids:
        (root / "train" / f"{i}.png").symlink_to(shared_data / "train" / f"{i}.png")
    report = write_eda_report(root, tmp_path / "out")
    summary = pd.read_csv(tmp_path / "out" / "summary.csv", index_col=0)
    assert summary.at["all", "images"] == 6 and summary.at["all", "cells"] == len(sub)
    assert (summary.loc[["astro", "cort", "shsy5y"], "images"] == 2).all()
    assert 0 < summary.at["all", "frac_image_annotated"] < 1
    assert report.stat().st_size > 100_000

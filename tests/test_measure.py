"""Cell measurements, image summaries, time parsing, time courses and `phaseseg measure`."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from phaseseg.analysis.measure import (
    COLUMNS,
    compile_time_pattern,
    describe_columns,
    measure_cells,
    parse_time,
    summarize_image,
    timecourse,
)
from phaseseg.cli import main
from phaseseg.io import PhasesegInputError
from phaseseg.io.formats import read_labels, write_labels

REPO = Path(__file__).resolve().parents[1]


def _disc(shape, cy, cx, r):
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    return (yy - cy) ** 2 + (xx - cx) ** 2 <= r**2


def _ellipse(shape, cy, cx, ry, rx):
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    return ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1


# --------------------------------------------------------------------------- per cell


def test_disc_measurements():
    labels = np.zeros((100, 120), np.int32)
    labels[_disc(labels.shape, 40, 60, 30)] = 7
    cells = measure_cells(labels, np.full(labels.shape, 90, np.uint8), "img")
    assert list(cells.columns) == [c.name for c in COLUMNS["cells.csv"] if not c.when]
    c = cells.iloc[0]
    assert c.image_id == "img" and c.cell_id == 7
    assert (c.centroid_y_px, c.centroid_x_px) == (40, 60)
    assert abs(c.area_px - math.pi * 30**2) / (math.pi * 30**2) < 0.01  # 2821 px
    assert abs(c.equivalent_diameter_px - 60) < 0.5
    assert abs(c.perimeter_px - 2 * math.pi * 30) / (2 * math.pi * 30) < 0.05
    assert abs(c.major_axis_length_px - 60) < 1 and abs(c.minor_axis_length_px - 60) < 1
    assert c.eccentricity < 0.05
    assert c.solidity > 0.97  # a digitised disc is not quite convex (0.981)
    assert 0.9 < c.circularity < 1.1
    assert c.mean_intensity == 90
    assert c.neurite_index < 0.1  # the skeleton of a disc is a dot


def test_ellipse_and_pixel_size():
    labels = _ellipse((80, 100), 40, 50, 15, 30).astype(np.int32)
    cells = measure_cells(labels, np.zeros(labels.shape, np.uint8), "e", pixel_size=0.5)
    c = cells.iloc[0]
    assert abs(c.eccentricity - math.sqrt(1 - 0.25)) < 0.01  # 0.866
    assert abs(c.major_axis_length_px - 60) < 1 and abs(c.minor_axis_length_px - 30) < 1
    assert 0.7 < c.neurite_index < 1.3  # skeleton ~ 33 px, equivalent diameter ~ 42 px
    assert c.area_um2 == c.area_px * 0.25
    for name in ("perimeter", "equivalent_diameter", "major_axis_length", "skeleton_length"):
        assert c[f"{name}_um"] == pytest.approx(c[f"{name}_px"] * 0.5)
    assert list(cells.columns) == [c.name for c in COLUMNS["cells.csv"]]


def test_neurites_raise_the_neurite_index():
    body = _disc((60, 200), 30, 100, 8)
    neuron = body.copy()
    neuron[29:32, 10:190] = True  # two thin processes, 82 px each
    round_cell = measure_cells(body.astype(np.int32), np.zeros(body.shape, np.uint8), "r")
    branched = measure_cells(neuron.astype(np.int32), np.zeros(body.shape, np.uint8), "n")
    assert branched.neurite_index[0] > 5 > 0.2 > round_cell.neurite_index[0]
    assert branched.solidity[0] < 0.5 < round_cell.solidity[0]


def test_several_cells_intensity_and_ids():
    labels = np.zeros((40, 40), np.int32)
    labels[2:10, 2:10] = 5
    labels[20:30, 20:35] = 2
    image = np.where(labels == 5, 50, np.where(labels == 2, 200, 0)).astype(np.uint8)
    cells = measure_cells(labels, image, "x")
    assert cells.cell_id.tolist() == [2, 5]  # sorted, ids kept
    assert cells.area_px.tolist() == [150, 64]
    assert cells.mean_intensity.tolist() == [200, 50]


def test_no_cells_gives_empty_table_with_columns():
    cells = measure_cells(np.zeros((10, 10), np.int32), np.zeros((10, 10), np.uint8), "e", 1.0)
    assert cells.empty and list(cells.columns) == [c.name for c in COLUMNS["cells.csv"]]
    row = summarize_image(np.zeros((10, 10), np.int32), "e", cells)
    assert row["n_cells"] == 0 and row["confluence_pct"] == 0 and math.isnan(row["median_area_px"])


def test_bad_arguments():
    with pytest.raises(ValueError, match="same 2-D shape"):
        measure_cells(np.zeros((4, 4), np.int32), np.zeros((4, 5), np.uint8), "x")
    with pytest.raises(ValueError, match="positive"):
        measure_cells(np.zeros((4, 4), np.int32), np.zeros((4, 4), np.uint8), "x", 0)


# --------------------------------------------------------------------------- per image


def test_summary_of_a_known_mask():
    labels = np.zeros((100, 100), np.int32)
    labels[:10, :10] = 1  # 100 px
    labels[50:70, 50:70] = 2  # 400 px
    row = summarize_image(labels, "k")
    assert row["n_cells"] == 2
    assert row["confluence_pct"] == 5.0
    assert row["median_area_px"] == 250
    assert row["density_per_mpx"] == 200  # 2 cells in 0.01 Mpx
    row = summarize_image(labels, "k", pixel_size=2.0)  # 200 x 200 µm = 0.04 mm²
    assert row["density_per_mm2"] == 50 and row["median_area_um2"] == 1000
    assert "density_per_mpx" not in row


# --------------------------------------------------------------------------- time


@pytest.mark.parametrize(
    "name,well,hours",
    [
        ("SHSY5Y_Phase_A10_1_00d04h00m_1.tif", "A10", 4.0),
        ("SHSY5Y_Phase_B10_1_03d08h00m_1.tif", "B10", 80.0),
        ("BV2_Phase_C4_2_01d12h30m_3.png", "C4", 36.5),
        ("/some/folder/A172_Phase_D7_1_00d00h00m_4.tif", "D7", 0.0),
    ],
)
def test_livecell_names(name, well, hours):
    t = parse_time(name)
    assert t is not None and t.well == well and t.elapsed_h == hours


@pytest.mark.parametrize(
    "name", ["img_001.png", "SHSY5Y_Phase_A10_1_00d04h_1.tif", "SHSY5Y_A10_1_00d04h00m_1.tif"]
)
def test_names_without_a_time(name):
    assert parse_time(name) is None


def test_custom_patterns():
    hours = compile_time_pattern(r"_(?P<well>[A-H]\d+)_t(?P<hours>[\d.]+)h")
    t = parse_time("plate_B3_t12.5h.tif", hours)
    assert (t.well, t.elapsed_h) == ("B3", 12.5)
    dhm = compile_time_pattern(r"(?P<d>\d+)d(?P<h>\d+)h(?P<m>\d+)m")
    t = parse_time("exp1_02d03h15m.png", dhm)
    assert t.well == "all" and t.elapsed_h == 51.25
    only_minutes = compile_time_pattern(r"T(?P<m>\d+)min")
    assert parse_time("x_T90min.tif", only_minutes).elapsed_h == 1.5
    assert parse_time("x_T90.tif", only_minutes) is None
    with_suffix = compile_time_pattern(r"_(?P<hours>\d+)\.tif$")  # matched on the full name
    assert parse_time("a_7.tif", with_suffix).elapsed_h == 7
    assert parse_time("a_b.tif", compile_time_pattern(r"_(?P<hours>\w)")) is None  # not a number


def test_bad_patterns():
    with pytest.raises(PhasesegInputError, match="not a regular expression"):
        compile_time_pattern(r"(?P<hours>\d+")
    with pytest.raises(PhasesegInputError, match="named group"):
        compile_time_pattern(r"t(\d+)h")


def test_timecourse_is_sorted_and_averages_fields():
    rows = pd.DataFrame(
        {
            "image_id": list("abcdefg"),
            "well": ["B2", "A1", "A1", "B2", "A1", "A1", "A1"],
            "elapsed_h": [4.0, 8.0, 0.0, 0.0, 4.0, 4.0, np.nan],
            "n_cells": [10, 30, 5, 8, 20, 40, 99],
            "confluence_pct": [1.0, 3.0, 0.5, 0.8, 2.0, 4.0, 9.9],
            "median_area_px": [100.0] * 7,
            "density_per_mpx": [1.0] * 7,
        }
    )
    tc = timecourse(rows.sample(frac=1, random_state=0))
    assert list(tc.columns) == [
        c.name
        for c in COLUMNS["timecourse.csv"]
        if c.when not in ("with a pixel size", "when the names carry a plate")
    ]
    assert list(zip(tc.well, tc.elapsed_h, strict=True)) == [
        ("A1", 0),
        ("A1", 4),
        ("A1", 8),
        ("B2", 0),
        ("B2", 4),
    ]
    a1_4h = tc.iloc[1]
    assert a1_4h.n_images == 2 and a1_4h.n_cells == 60 and a1_4h.cells_per_image == 30
    assert a1_4h.confluence_pct == 3.0
    assert timecourse(rows.assign(elapsed_h=np.nan)).empty


def test_column_docs_are_in_the_docs_folder():
    text = describe_columns()
    assert (REPO / "docs" / "measure_columns.md").read_text(encoding="utf-8") == text
    for columns in COLUMNS.values():
        for c in columns:
            assert f"`{c.name}`" in text and c.unit


# --------------------------------------------------------------------------- CLI


def _timelapse(folder: Path, n: int = 3, shape=(60, 80)):
    """LIVECell-named images (cells multiply over time) and their label TIFFs."""
    img_dir, lab_dir = folder / "images", folder / "labels"
    img_dir.mkdir(parents=True)
    lab_dir.mkdir()
    for t in range(n):
        labels = np.zeros(shape, np.int32)
        for k in range(2 ** (t + 1)):
            y, x = 8 + 14 * (k // 5), 8 + 15 * (k % 5)
            labels[_disc(shape, y, x, 5)] = k + 1
        name = f"SHSY5Y_Phase_A1_1_00d{4 * t:02d}h00m_1"
        image = np.where(labels > 0, 180, 90).astype(np.uint8)
        Image.fromarray(image).save(img_dir / f"{name}.png")
        write_labels(lab_dir / f"{name}.tif", labels)
    return img_dir, lab_dir


def test_cli_measure_with_labels(tmp_path, capsys):
    img_dir, lab_dir = _timelapse(tmp_path)
    out = tmp_path / "out"
    argv = ["measure", str(img_dir), "--labels", str(lab_dir), "--out", str(out)]
    assert main([*argv, "--pixel-size", "0.5"]) == 0
    assert "3 images, 14 cells" in capsys.readouterr().out
    cells = pd.read_csv(out / "cells.csv")
    images = pd.read_csv(out / "images.csv")
    tc = pd.read_csv(out / "timecourse.csv")
    assert list(cells.columns) == [c.name for c in COLUMNS["cells.csv"]]
    assert len(cells) == 14 and (cells.area_um2 == cells.area_px * 0.25).all()
    assert images.n_cells.tolist() == [2, 4, 8] and "cell_type" not in images.columns
    assert tc.elapsed_h.tolist() == [0, 4, 8] and tc.cells_per_image.tolist() == [2, 4, 8]
    assert tc.well.unique().tolist() == ["A1"] and "density_per_mm2" in tc.columns
    name = "SHSY5Y_Phase_A1_1_00d08h00m_1"
    np.testing.assert_array_equal(
        read_labels(out / "labels" / f"{name}.tif"), read_labels(lab_dir / f"{name}.tif")
    )
    assert (out / "overlays" / f"{name}.png").is_file()
    assert (out / "timecourse.png").read_bytes()[:4] == b"\x89PNG"
    html = (out / "report.html").read_text(encoding="utf-8")
    assert html.count("data:image/png;base64,") == 3  # time course, distributions, overlays
    # the images table fits the page: what every image shares is said above it, not repeated
    assert "The same for every image: height_px 60, width_px 80, pixel_size_um 0.5," in html
    assert ">height_<wbr>px</th>" not in html and ">elapsed_<wbr>h</th>" in html
    assert ">SHSY5Y_<wbr>Phase_<wbr>A1_<wbr>1_<wbr>00d08h00m_<wbr>1</td>" in html
    assert 'src="http' not in html and "<script" not in html


def test_cli_measure_without_time_points(tmp_path, capsys):
    img_dir, lab_dir = _timelapse(tmp_path, n=2)
    for f in [*img_dir.iterdir(), *lab_dir.iterdir()]:
        f.rename(f.with_name(f.name.replace("SHSY5Y_Phase_A1_1_", "field_")))
    out = tmp_path / "out"
    assert main(["measure", str(img_dir), "--labels", str(lab_dir), "--out", str(out)]) == 0
    assert "0 with a time point" in capsys.readouterr().out
    assert not (out / "timecourse.csv").exists() and not (out / "timecourse.png").exists()
    images = pd.read_csv(out / "images.csv")
    assert "elapsed_h" not in images.columns and "density_per_mpx" in images.columns
    # a custom pattern finds the times
    argv = ["measure", str(img_dir), "--labels", str(lab_dir), "--out", str(tmp_path / "o2")]
    assert main([*argv, "--time-from", r"(?P<d>\d\d)d(?P<h>\d\d)h(?P<m>\d\d)m"]) == 0
    tc = pd.read_csv(tmp_path / "o2" / "timecourse.csv")
    assert tc.well.tolist() == ["all", "all"] and tc.elapsed_h.tolist() == [0, 4]


def test_cli_measure_with_a_tiny_model(tmp_path, capsys):
    from phaseseg.nn.checkpoint import save_model
    from phaseseg.nn.model import NetConfig, build_model
    from phaseseg.segment.postprocess import PostprocessParams

    tiny = NetConfig(channels=(4, 8, 16), convs_per_block=1)
    torch.manual_seed(0)
    meta = {
        "net": tiny.to_dict(),
        "postprocess": {
            t: PostprocessParams(fg_thresh=0.3, min_size=5).to_dict()
            for t in ("astro", "cort", "shsy5y")
        },
    }
    save_model(tmp_path / "m.pt", build_model(tiny).state_dict(), meta)
    img_dir, _ = _timelapse(tmp_path, n=2)
    out = tmp_path / "out"
    argv = ["measure", str(img_dir), "--model", str(tmp_path / "m.pt"), "--device", "cpu"]
    assert main([*argv, "--out", str(out)]) == 0
    images = pd.read_csv(out / "images.csv")
    assert len(images) == 2 and images.cell_type.isin(["astro", "cort", "shsy5y"]).all()
    assert len(list((out / "labels").glob("*.tif"))) == 2
    assert (out / "report.html").is_file() and (out / "timecourse.csv").is_file()
    assert main([*argv, "--out", str(tmp_path / "o2"), "--cell-type", "cort"]) == 0
    assert (pd.read_csv(tmp_path / "o2" / "images.csv").cell_type == "cort").all()
    capsys.readouterr()
    assert main([*argv, "--out", str(tmp_path / "o3"), "--cell-type", "neuron"]) == 2
    assert "the model knows astro, cort, shsy5y" in capsys.readouterr().err


def test_cli_skips_bad_images_and_exits_1(tmp_path, capsys):
    img_dir, lab_dir = _timelapse(tmp_path)
    (img_dir / "SHSY5Y_Phase_A1_1_00d12h00m_1.png").write_bytes(b"not an image")
    (img_dir / "extra.png").write_bytes(
        (img_dir / "SHSY5Y_Phase_A1_1_00d00h00m_1.png").read_bytes()
    )
    wrong = lab_dir / "SHSY5Y_Phase_A1_1_00d04h00m_1.tif"
    write_labels(wrong, np.zeros((10, 10), np.int32))  # does not fit its image
    out = tmp_path / "out"
    assert main(["measure", str(img_dir), "--labels", str(lab_dir), "--out", str(out)]) == 1
    captured = capsys.readouterr()
    assert "2 images, 10 cells" in captured.out
    skipped = [line for line in captured.err.splitlines() if line.startswith("phaseseg measure:")]
    assert len(skipped) == 3  # unreadable, no label file, labels of the wrong size
    assert "Traceback" not in captured.err
    assert len(pd.read_csv(out / "images.csv")) == 2
    assert "Skipped images" in (out / "report.html").read_text(encoding="utf-8")


@pytest.mark.parametrize(
    "extra,message",
    [
        (["--time-from", "(?P<hours>"], "not a regular expression"),
        (["--time-from", "t(\\d+)"], "named group"),
        (["--pixel-size", "-1"], "positive"),
        (["--pixel-size", "nan"], "positive"),
        (["--model", "m.pt"], "not both"),
    ],
)
def test_cli_bad_options_exit_2(tmp_path, capsys, extra, message):
    img_dir, lab_dir = _timelapse(tmp_path, n=1)
    argv = ["measure", str(img_dir), "--labels", str(lab_dir), "--out", str(tmp_path / "o")]
    assert main([*argv, *extra]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


def test_cli_bad_inputs_exit_2(tmp_path, capsys):
    img_dir, lab_dir = _timelapse(tmp_path, n=1)
    empty = tmp_path / "empty"
    empty.mkdir()
    cases = [
        (
            ["measure", str(tmp_path / "missing.png"), "--labels", str(lab_dir), "--out", "o"],
            "no such",
        ),
        (["measure", str(empty), "--labels", str(lab_dir), "--out", "o"], "no images"),
        (
            ["measure", str(img_dir), "--labels", str(tmp_path / "nolabels"), "--out", "o"],
            "no such",
        ),
        (["measure", str(img_dir), "--labels", str(lab_dir)], "--out"),
        (["measure", "--out", "o"], "IMAGES"),
    ]
    for argv, message in cases:
        assert main(argv) == 2, argv
        assert message in capsys.readouterr().err
    (tmp_path / "file").write_text("x")
    assert (
        main(["measure", str(img_dir), "--labels", str(lab_dir), "--out", str(tmp_path / "file")])
        == 2
    )
    assert "not a folder" in capsys.readouterr().err


def test_cli_describe(capsys):
    assert main(["measure", "--describe"]) == 0
    out = capsys.readouterr().out
    assert out == describe_columns()
    assert "neurite_index" in out and "cells/mm²" in out

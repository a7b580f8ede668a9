"""Fiji / ImageJ ROI sets: read back with roifile, rasterised, they give back the masks.

Rasterising: ImageJ puts integer coordinates on pixel corners and counts a pixel as inside a
polygon when its centre is; skimage's ``polygon2mask`` tests the point ``(row, col)`` itself,
so the polygon is shifted by half a pixel: ``polygon2mask(shape, yx - 0.5)``.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import roifile
import tifffile
from scipy import ndimage as ndi
from skimage.draw import polygon2mask
from skimage.measure import find_contours

from phaseseg.io.rois import cell_outline, labels_to_outlines, write_rois


def _rasterise(roi: roifile.ImagejRoi, shape) -> np.ndarray:
    xy = roi.coordinates().astype(float)  # (x, y) in ImageJ's pixel-corner coordinates
    return polygon2mask(shape, xy[:, ::-1] - 0.5)


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / (a | b).sum())


def _read_back(path, labels):
    """IoU of every ROI in ``path`` with its cell in ``labels``, by ROI name."""
    rois = roifile.roiread(path)
    return {int(r.name): _iou(_rasterise(r, labels.shape), labels == int(r.name)) for r in rois}


def _shapes() -> dict[str, np.ndarray]:
    """Hand-made cells, each a bool (24, 24) mask."""
    out = {}
    m = np.zeros((24, 24), bool)
    m[3:12, 4:20] = True
    m[6:12, 8:16] = False  # concave: a U
    out["concave U"] = m
    m = np.zeros((24, 24), bool)
    m[10, 2:22] = True  # a one-pixel-wide line
    m[2:10, 21] = True  # and a one-pixel-wide arm: an L
    out["one-pixel-wide L"] = m
    m = np.zeros((24, 24), bool)
    m[5:11, 5:11] = True
    m[11:19, 10] = True  # a body with a one-pixel-wide neurite
    m[18, 10:20] = True
    out["body with a thin neurite"] = m
    m = np.zeros((24, 24), bool)
    idx = np.arange(2, 20)
    m[idx, idx] = True  # pixels touching only at corners: 8-connected staircase
    out["diagonal staircase"] = m
    m = np.zeros((24, 24), bool)
    m[7, 9] = True
    out["single pixel"] = m
    yy, xx = np.mgrid[:24, :24]
    out["disc"] = (yy - 12) ** 2 + (xx - 11) ** 2 <= 40
    m = np.zeros((24, 24), bool)
    m[1:23, 1:23] = True
    m[1:23:3, 1:19] = False  # comb: deep, one-pixel-wide slits open to the left
    out["comb"] = m
    return out


@pytest.mark.parametrize("name", list(_shapes()))
def test_outline_rasterises_back_to_the_mask_exactly(name):
    mask = _shapes()[name]
    poly = cell_outline(mask)
    assert poly.dtype.kind == "i"
    back = polygon2mask(mask.shape, poly[:, ::-1] - 0.5)
    np.testing.assert_array_equal(back, mask)


def _centre_outline(mask: np.ndarray) -> np.ndarray:
    """(row, col) of the boundary pixels' centres in order, like the outlines of OpenCV's
    ``findContours`` that cellpose exported (a contour snapped onto the inside pixels)."""
    (contour,) = find_contours(np.pad(mask, 1).astype(float), 0.5)
    contour -= 1
    snapped = []
    for r, c in contour:
        rr = [int(np.floor(r)), int(np.ceil(r))]
        cc = [int(np.floor(c)), int(np.ceil(c))]
        snapped.append(next((y, x) for y in rr for x in cc if mask[y, x]))
    return np.array(snapped, dtype=float)


def test_pixel_centre_outlines_come_out_smaller_in_imagej():
    """cellpose #757: a polygon through the boundary pixels' centres, read by ImageJ (integer
    coordinates on pixel corners), loses the right and bottom boundary pixels."""
    mask = _shapes()["disc"]  # 129 pixels
    centres = _centre_outline(mask)
    naive = polygon2mask(mask.shape, centres - 0.5)  # as ImageJ fills it
    assert naive.sum() < mask.sum() and _iou(naive, mask) < 0.9
    edge = polygon2mask(mask.shape, cell_outline(mask)[:, ::-1] - 0.5)
    assert _iou(edge, mask) == 1.0


def _ring() -> np.ndarray:
    ring = np.zeros((24, 24), bool)
    ring[1:23, 1:23] = True
    ring[8:14, 8:14] = False  # a 36-pixel hole in a 484-pixel square
    return ring


def test_holes_are_filled_and_pieces_give_the_largest():
    ring = _ring()
    back = polygon2mask(ring.shape, cell_outline(ring)[:, ::-1] - 0.5)
    np.testing.assert_array_equal(back, ndi.binary_fill_holes(ring))
    assert _iou(back, ring) == pytest.approx(448 / 484)  # the hole counts against it
    pieces = np.zeros((20, 20), bool)
    pieces[1:4, 1:4] = True
    pieces[10:16, 10:16] = True
    back = polygon2mask(pieces.shape, cell_outline(pieces)[:, ::-1] - 0.5)
    assert back.sum() == 36 and back[10:16, 10:16].all()


def test_roi_set_round_trip_with_roifile(tmp_path):
    shapes = [*_shapes().values(), _ring()]
    labels = np.zeros((48, 96), np.int32)  # the shapes side by side, 4 per row
    for k, mask in enumerate(shapes):
        r, c = divmod(k, 4)
        labels[r * 24 : r * 24 + 24, c * 24 : c * 24 + 24][mask] = k + 1
    labels[labels == 3] = 0  # a missing label id is skipped
    n = write_rois(tmp_path / "img.zip", labels)
    ids = sorted(set(np.unique(labels).tolist()) - {0})
    assert n == len(ids) == len(shapes) - 1
    rois = roifile.roiread(tmp_path / "img.zip")
    assert [r.name for r in rois] == [str(i) for i in ids]
    assert all(r.roitype == roifile.ROI_TYPE.POLYGON for r in rois)
    ious = _read_back(tmp_path / "img.zip", labels)
    assert all(ious[label] == 1.0 for label in ids[:-1])  # every shape without a hole: exact
    assert ious[ids[-1]] == pytest.approx(448 / 484) and ious[ids[-1]] >= 0.9  # the ring
    assert [p.name for p in tmp_path.iterdir()] == ["img.zip"]  # no temporary file left


def test_empty_labels_give_an_empty_roi_set(tmp_path):
    assert write_rois(tmp_path / "none.zip", np.zeros((8, 8), np.int32)) == 0
    assert roifile.roiread(tmp_path / "none.zip") == []


def test_outlines_of_many_cells_are_placed_in_the_image():
    labels = np.zeros((30, 40), np.int32)
    labels[2:5, 30:38] = 7
    labels[20:29, 1:3] = 2
    outlines = labels_to_outlines(labels)
    assert list(outlines) == [2, 7]
    assert outlines[7].tolist() == [[30, 2], [38, 2], [38, 5], [30, 5]]


def test_roi_sets_of_real_predicted_labels(shared_data, tmp_path):
    """Cells predicted by the bundled model on a real image: every ROI has IoU >= 0.9 with its
    cell, and exactly 1 for cells without holes."""
    from phaseseg import io
    from phaseseg.segment.segmenter import load_model

    image = io.read_image(shared_data / "train" / "0030fd0e6378.png")  # shsy5y, dense
    labels = load_model().segment(image)
    assert labels.max() > 50
    write_rois(tmp_path / "cells.zip", labels)
    ious = _read_back(tmp_path / "cells.zip", labels)
    assert sorted(ious) == sorted(set(np.unique(labels)) - {0})
    assert min(ious.values()) >= 0.9
    exact = [
        label
        for label in ious
        if (ndi.binary_fill_holes(labels == label) == (labels == label)).all()
        and ndi.label(labels == label, structure=np.ones((3, 3)))[1] == 1
    ]
    assert len(exact) >= 0.9 * len(ious)
    assert all(ious[label] == 1.0 for label in exact)


IMAGEJ_JAR = Path("/usr/share/java/ij.jar")  # Debian's `imagej` package
FILL_MACRO = """
args = split(getArgument(), ",");
setBatchMode(true);
newImage("filled", "16-bit black", parseInt(args[2]), parseInt(args[3]), 1);
roiManager("Open", args[0]);
for (i = 0; i < roiManager("count"); i++) {
  roiManager("select", i);
  setColor(parseInt(Roi.getName));
  fill();
}
run("Select None");
saveAs("Tiff", args[1]);
"""


@pytest.mark.skipif(
    not IMAGEJ_JAR.is_file() or shutil.which("xvfb-run") is None,
    reason="ImageJ not installed (apt-get install imagej xvfb)",
)
def test_imagej_roi_manager_fills_exactly_the_cells(tmp_path):
    """The real ImageJ opens the set in its ROI Manager; each ROI, filled with its name's
    value, gives back its cell (holes filled)."""
    shapes = [*_shapes().values(), _ring()]
    labels = np.zeros((48, 96), np.int32)
    for k, mask in enumerate(shapes):
        r, c = divmod(k, 4)
        labels[r * 24 : r * 24 + 24, c * 24 : c * 24 + 24][mask] = k + 1
    write_rois(tmp_path / "cells.zip", labels)
    (tmp_path / "fill.ijm").write_text(FILL_MACRO)
    args = f"{tmp_path / 'cells.zip'},{tmp_path / 'filled.tif'},96,48"
    subprocess.run(
        [
            "xvfb-run",
            "-a",
            "java",
            "-jar",
            str(IMAGEJ_JAR),
            "-batch",
            str(tmp_path / "fill.ijm"),
            args,
        ],
        check=True,
        timeout=300,
        capture_output=True,
    )
    filled = tifffile.imread(tmp_path / "filled.tif").astype(np.int32)
    for label in range(1, labels.max() + 1):
        np.testing.assert_array_equal(filled == label, ndi.binary_fill_holes(labels == label))

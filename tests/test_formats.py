"""Tests of phaseseg.io.formats: COCO JSON (polygons, RLE) and label images."""

from __future__ import annotations

import json
import logging

import hypothesis.extra.numpy as hnp
import numpy as np
import pytest
import tifffile
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image
from scipy import ndimage
from skimage.draw import disk, ellipse

from phaseseg.io import PhasesegInputError, iter_image_labels, read_train_csv
from phaseseg.io.formats import (
    coco_rle_decode,
    coco_rle_encode,
    compress_coco_counts,
    decompress_coco_counts,
    iter_coco,
    read_coco,
    read_labels,
    write_coco,
    write_labels,
)

shapes = st.tuples(st.integers(1, 12), st.integers(1, 15))
masks = shapes.flatmap(lambda s: hnp.arrays(bool, s))
label_images = shapes.flatmap(lambda s: hnp.arrays(np.int32, s, elements=st.integers(0, 5)))

# --------------------------------------------------------------------------- COCO RLE


@pytest.mark.parametrize(
    ("counts", "text"),
    [
        ([], ""),
        ([2, 3, 1], "231"),
        ([0, 10, 2, 3], "0:2I"),  # 3 - 10 = -7: one char with the sign bit
        ([13, 3, 3, 3, 3, 3, 3, 3, 7, 1], "=33000004N"),
        ([366080], "P`U;"),  # one value over several 5-bit characters
    ],
)
def test_compressed_counts_known_strings(counts, text):
    """Strings worked out by hand from pycocotools' maskApi.c (rleToString / rleFrString)."""
    assert compress_coco_counts(counts) == text
    assert decompress_coco_counts(text).tolist() == counts


@given(st.lists(st.integers(0, 2**31 - 1), max_size=40))
def test_compressed_counts_round_trip(counts):
    assert decompress_coco_counts(compress_coco_counts(counts)).tolist() == counts


@pytest.mark.parametrize(
    ("text", "message"),
    [("0:2 ", "outside"), ("0:2\u00e9", "non-ASCII"), ("0:b", "middle of a value")],
)
def test_decompress_rejects_bad_strings(text, message):
    with pytest.raises(PhasesegInputError, match=message):
        decompress_coco_counts(text)


def test_coco_rle_is_column_major():
    mask = coco_rle_decode({"size": [2, 3], "counts": [1, 1, 4]})
    assert mask.tolist() == [[False, False, False], [True, False, False]]
    assert coco_rle_encode(mask) == {"size": [2, 3], "counts": "114"}
    full = coco_rle_decode({"size": [2, 3], "counts": [0, 6]})
    assert full.all()
    assert coco_rle_decode({"size": [2, 3], "counts": b"06"}).all()  # bytes, as pycocotools


@given(masks)
def test_coco_rle_round_trip_any_mask(mask):
    rle = coco_rle_encode(mask)
    assert rle["size"] == list(mask.shape) and isinstance(rle["counts"], str)
    assert np.array_equal(coco_rle_decode(rle), mask)
    counts = decompress_coco_counts(rle["counts"])
    assert counts.sum() == mask.size and np.all(counts[1:] > 0)


@pytest.mark.parametrize(
    ("rle", "message"),
    [
        ({"size": [2, 3], "counts": [1, 1]}, "add up to 2, not 2x3"),
        ({"size": [2, 3], "counts": [7, -1]}, "negative"),
        ({"counts": [6]}, "needs 'size'"),
        ({"size": [2, 2], "counts": [4]}, "differs from the image"),
    ],
)
def test_coco_rle_decode_errors(rle, message):
    with pytest.raises(PhasesegInputError, match=message):
        coco_rle_decode(rle, shape=(2, 3) if "differs" in message else None)


# --------------------------------------------------------------------------- COCO files


def _coco(tmp_path, data, name="coco.json"):
    path = tmp_path / name
    path.write_text(json.dumps(data))
    return path


def _square_rle(shape, rows, cols):
    mask = np.zeros(shape, bool)
    mask[rows, cols] = True
    return mask


def test_read_coco_polygons_and_both_rle_kinds(tmp_path):
    shape = (6, 8)
    m_list = _square_rle(shape, slice(4, 6), slice(0, 2))
    m_str = _square_rle(shape, slice(0, 2), slice(6, 8))
    counts_list = decompress_coco_counts(coco_rle_encode(m_list)["counts"]).tolist()
    data = {
        "images": [
            {"id": 7, "file_name": "a.tif", "height": 6, "width": 8},
            {"id": 9, "file_name": "empty.tif", "height": 3, "width": 4},
        ],
        "annotations": [
            {"id": 1, "image_id": 7, "segmentation": [[0, 0, 4, 0, 4, 4, 0, 4]]},
            {"id": 2, "image_id": 7, "segmentation": {"size": [6, 8], "counts": counts_list}},
            {"id": 3, "image_id": 7, "segmentation": coco_rle_encode(m_str)},
            {"id": 4, "image_id": 7, "segmentation": [3, 3, 6, 3, 6, 6]},  # flat polygon
        ],
        "categories": [{"id": 1, "name": "cell"}],
    }
    labels = read_coco(_coco(tmp_path, data))
    assert list(labels) == ["a.tif", "empty.tif"]
    a = labels["a.tif"]
    assert a.dtype == np.int32 and a.shape == shape
    expected = np.array(
        [
            [1, 1, 1, 1, 0, 0, 3, 3],  # square: pixels whose centre is in [0, 4) x [0, 4)
            [1, 1, 1, 1, 0, 0, 3, 3],  # compressed RLE
            [1, 1, 1, 1, 0, 0, 0, 0],
            [1, 1, 1, 1, 4, 4, 0, 0],  # triangle, under the earlier square at (3, 3)
            [2, 2, 0, 0, 4, 4, 0, 0],  # uncompressed RLE
            [2, 2, 0, 0, 0, 4, 0, 0],
        ]
    )
    assert a.tolist() == expected.tolist()
    assert not labels["empty.tif"].any() and labels["empty.tif"].shape == (3, 4)


def test_read_coco_livecell_dict_annotations_and_overlap(tmp_path):
    data = {
        "images": [{"id": 1, "file_name": "x.tif", "height": 5, "width": 5}],
        "annotations": {
            "10": {"id": 10, "image_id": 1, "segmentation": [[0, 0, 3, 0, 3, 3, 0, 3]]},
            "11": {"id": 11, "image_id": 1, "segmentation": [[2, 2, 5, 2, 5, 5, 2, 5]]},
            "12": {"id": 12, "image_id": 1, "segmentation": [[1, 1, 2, 1]]},  # no area
        },
    }
    (name, labels), *rest = list(iter_coco(_coco(tmp_path, data)))
    assert name == "x.tif" and rest == []
    assert labels[2, 2] == 1  # shared pixel: the earlier annotation keeps it
    assert (labels == 1).sum() == 9 and (labels == 2).sum() == 8 and labels.max() == 2


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ([1, 2], "not a COCO file"),
        ({"images": [{"id": 1, "file_name": "a"}]}, "image entry 0 needs"),
        (
            {"images": [], "annotations": [{"id": 5, "image_id": 3, "segmentation": []}]},
            "annotation 5: unknown image_id 3",
        ),
        ({"images": [], "annotations": "x"}, "must be a list or a dict"),
        ({"images": [], "annotations": [{"id": 5}]}, "has no image_id"),
    ],
)
def test_read_coco_structure_errors(tmp_path, data, message):
    with pytest.raises(PhasesegInputError, match=message):
        read_coco(_coco(tmp_path, data))


@pytest.mark.parametrize(
    ("segmentation", "message"),
    [
        ([[0, 0, 1, 1, 2]], "odd number of coordinates"),
        ({"size": [2, 2], "counts": [4]}, "differs from the image"),
        ({"size": [3, 4], "counts": [5]}, "add up to 5"),
        ("abc", "polygons or RLE"),
    ],
)
def test_read_coco_bad_segmentation_names_annotation(tmp_path, segmentation, message):
    data = {
        "images": [{"id": 1, "file_name": "x.tif", "height": 3, "width": 4}],
        "annotations": [{"id": 42, "image_id": 1, "segmentation": segmentation}],
    }
    path = _coco(tmp_path, data)
    with pytest.raises(PhasesegInputError, match=f"coco.json, annotation 42: .*{message}"):
        read_coco(path)


def test_read_coco_file_errors(tmp_path):
    with pytest.raises(PhasesegInputError, match="no such file"):
        read_coco(tmp_path / "nope.json")
    (tmp_path / "bad.json").write_text('{"images": [\n  {"id": 1,,}\n]}')
    with pytest.raises(PhasesegInputError, match=r"bad.json: not valid JSON \(line 2, column"):
        read_coco(tmp_path / "bad.json")
    (tmp_path / "bin.json").write_bytes(b"\xff\xfe\x00\x01")
    with pytest.raises(PhasesegInputError, match="bin.json: not a UTF-8"):
        read_coco(tmp_path / "bin.json")


def _blobs(shape=(40, 50), n=6, seed=0) -> np.ndarray:
    """Label image of overlapping ellipses and disks (later ones on top), no holes."""
    rng = np.random.default_rng(seed)
    labels = np.zeros(shape, np.int32)
    for lab in range(1, n + 1):
        r, c = rng.integers(0, shape[0]), rng.integers(0, shape[1])
        if lab % 2:
            rr, cc = disk((r, c), rng.integers(2, 8), shape=shape)
        else:
            rr, cc = ellipse(r, c, rng.integers(2, 9), rng.integers(2, 9), shape, rng.uniform(0, 3))
        labels[rr, cc] = lab
    return labels


def test_write_coco_rle_round_trip(tmp_path):
    items = [("a.png", _blobs(seed=1)), ("b.png", _blobs(seed=2)), ("c.png", np.zeros((4, 5), int))]
    path = write_coco(tmp_path / "out.json", items)
    back = read_coco(path)
    for name, labels in items:
        assert np.array_equal(back[name] > 0, labels > 0)
        # Same instances, renumbered in annotation order.
        pairs = {(a, b) for a, b in zip(labels.ravel(), back[name].ravel(), strict=True)}
        assert len(pairs) == len(np.unique(labels))
    data = json.loads(path.read_text())
    ann = data["annotations"][0]
    mask = items[0][1] == 1
    rows, cols = np.nonzero(mask)
    assert ann["area"] == mask.sum()
    assert ann["bbox"] == [cols.min(), rows.min(), np.ptp(cols) + 1, np.ptp(rows) + 1]
    assert data["categories"] == [{"id": 1, "name": "cell"}]


@given(label_images)
def test_write_coco_rle_round_trip_any_labels(tmp_path_factory, labels):
    path = write_coco(tmp_path_factory.mktemp("coco") / "x.json", [("x", labels)])
    back = read_coco(path)["x"]
    present = [lab for lab in np.unique(labels) if lab > 0]
    for k, lab in enumerate(present, start=1):
        assert np.array_equal(back == k, labels == lab)


def test_write_coco_polygons_round_trip_without_holes(tmp_path):
    labels = np.pad(_blobs(seed=3, n=8), ((0, 0), (0, 10)))  # free columns 50..59
    labels[0, 52:] = 20  # touching two borders
    labels[10, 55] = 21  # one pixel
    labels[30, 54] = labels[31, 55] = 22  # two pixels touching by a corner
    assert np.array_equal(ndimage.binary_fill_holes(labels), labels > 0)  # no holes
    path = write_coco(tmp_path / "p.json", [("p", labels)], segmentation="polygon")
    back = read_coco(path)["p"]
    present = [lab for lab in np.unique(labels) if lab > 0]
    for k, lab in enumerate(present, start=1):
        assert np.array_equal(back == k, labels == lab), lab
    seg = json.loads(path.read_text())["annotations"][0]["segmentation"]
    assert isinstance(seg, list) and all(len(p) >= 6 and len(p) % 2 == 0 for p in seg)


def test_write_coco_polygons_fill_holes_and_simplify(tmp_path):
    ring = np.zeros((12, 12), np.int32)
    ring[2:10, 2:10] = 1
    ring[5:7, 5:7] = 0
    path = write_coco(tmp_path / "r.json", [("r", ring)], segmentation="polygon")
    assert np.array_equal(read_coco(path)["r"], ndimage.binary_fill_holes(ring).astype(np.int32))
    exact = len(json.loads(path.read_text())["annotations"][0]["segmentation"][0])
    path = write_coco(tmp_path / "s.json", [("r", ring)], segmentation="polygon", tolerance=1)
    simple = len(json.loads(path.read_text())["annotations"][0]["segmentation"][0])
    assert simple < exact
    with pytest.raises(ValueError, match="segmentation"):
        write_coco(tmp_path / "t.json", [("r", ring)], segmentation="mask")


# --------------------------------------------------------------------------- label images


@pytest.mark.parametrize(("top", "dtype"), [(7, np.uint16), (65535, np.uint16), (70000, np.uint32)])
def test_write_read_labels_tiff(tmp_path, top, dtype):
    labels = _blobs()
    labels[labels == 1] = top
    path = write_labels(tmp_path / "l.tif", labels)
    with tifffile.TiffFile(path) as tif:
        page = tif.pages[0]
        assert page.dtype == dtype and page.compression == 8  # deflate
    back = read_labels(path)
    assert back.dtype == np.int32 and np.array_equal(back, labels)
    with Image.open(path) as im:
        assert np.array_equal(np.asarray(im), labels)  # plain readers agree


def test_write_labels_png_and_relabel(tmp_path):
    labels = _blobs() * 1000
    path = write_labels(tmp_path / "l.png", labels)
    with Image.open(path) as im:
        assert im.mode == "I;16"
    assert np.array_equal(read_labels(path), labels)
    path = write_labels(tmp_path / "r.tif", labels, relabel=True)
    back = read_labels(path)
    assert back.max() == len(np.unique(labels)) - 1
    assert np.array_equal(back > 0, labels > 0)
    with pytest.raises(PhasesegInputError, match="does not fit a 16-bit PNG"):
        write_labels(tmp_path / "big.png", labels * 100)
    with pytest.raises(PhasesegInputError, match="written as .tif or .png"):
        write_labels(tmp_path / "l.jpg", labels)
    with pytest.raises(ValueError, match="integers"):
        write_labels(tmp_path / "f.tif", labels.astype(float))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["l.png", "r.tif"]


def test_read_labels_accepts_common_layouts(tmp_path, caplog):
    labels = _blobs()
    tifffile.imwrite(tmp_path / "stack.tif", labels[None].astype(np.int32))
    assert np.array_equal(read_labels(tmp_path / "stack.tif"), labels)
    Image.fromarray(labels.astype(np.uint8)).save(tmp_path / "l8.png")
    assert np.array_equal(read_labels(tmp_path / "l8.png"), labels)
    palette = Image.fromarray(labels.astype(np.uint8), mode="L").convert("P")
    palette.save(tmp_path / "p.png")
    assert np.array_equal(read_labels(tmp_path / "p.png") > 0, labels > 0)
    tifffile.imwrite(tmp_path / "f.tif", labels.astype(np.float32))
    with caplog.at_level(logging.WARNING, logger="phaseseg.io.formats"):
        assert np.array_equal(read_labels(tmp_path / "f.tif"), labels)
    assert "converted to integers" in caplog.text


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p: None, "no such file"),
        (lambda p: p.write_bytes(b"garbage"), "not a readable image"),
        (
            lambda p: Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(p.with_suffix(".png")),
            "RGB colour image",
        ),
        (lambda p: tifffile.imwrite(p, np.zeros((2, 4, 4), np.uint16)), "expected a 2-D"),
        (lambda p: tifffile.imwrite(p, np.full((4, 4), 0.5, np.float32)), "fractional"),
        (lambda p: tifffile.imwrite(p, np.full((4, 4), -1, np.int16)), "negative"),
        (lambda p: tifffile.imwrite(p, np.ones((4, 4), bool)), "binary mask"),
    ],
)
def test_read_labels_errors(tmp_path, make, message):
    path = tmp_path / "l.tif"
    make(path)
    if (tmp_path / "l.png").exists():
        path = tmp_path / "l.png"
    with pytest.raises(PhasesegInputError, match=message):
        read_labels(path)


def test_read_labels_truncated_png(tmp_path):
    write_labels(tmp_path / "ok.png", _blobs())
    data = (tmp_path / "ok.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(PhasesegInputError, match="cut.png: not a readable image"):
        read_labels(tmp_path / "cut.png")


# --------------------------------------------------------------------------- real data


def test_real_labels_through_coco_and_tiff(shared_data, tmp_path):
    df = read_train_csv(shared_data / "train.csv")
    first = df.drop_duplicates("cell_type")["id"].tolist()
    items = [(i, lab) for i, lab in iter_image_labels(df[df["id"].isin(first)])]
    back = read_coco(write_coco(tmp_path / "rle.json", items))
    poly = read_coco(write_coco(tmp_path / "poly.json", items, segmentation="polygon"))
    for image_id, labels in items:
        assert np.array_equal(back[image_id] > 0, labels > 0)
        filled = np.zeros(labels.shape, bool)  # polygons fill holes (8-connected background)
        for lab, sl in enumerate(ndimage.find_objects(labels), start=1):
            if sl is not None:
                filled[sl] |= ndimage.binary_fill_holes(labels[sl] == lab, np.ones((3, 3)))
        assert np.array_equal(poly[image_id] > 0, filled)
        tif = write_labels(tmp_path / f"{image_id}.tif", labels)
        assert np.array_equal(read_labels(tif), labels)

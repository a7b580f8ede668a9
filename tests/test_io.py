"""Tests of phaseseg.io: RLE, train/submission CSV, images, atomic writes."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import hypothesis.extra.numpy as hnp
import numpy as np
import pandas as pd
import pytest
import tifffile
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image
from skimage.segmentation import relabel_sequential

from phaseseg.io import (
    IMAGE_SHAPE,
    PhasesegInputError,
    annotations_to_labels,
    atomic_path,
    check_labels,
    find_images,
    image_shape,
    iter_image_labels,
    label_runs,
    labels_to_rles,
    read_image,
    read_submission,
    read_train_csv,
    rle_decode,
    rle_encode,
    rle_runs,
    rles_to_labels,
)

shapes = st.tuples(st.integers(1, 12), st.integers(1, 15))
masks = shapes.flatmap(lambda s: hnp.arrays(bool, s))
label_images = shapes.flatmap(lambda s: hnp.arrays(np.int32, s, elements=st.integers(0, 6)))


# --------------------------------------------------------------------------- RLE


def test_rle_encode_docstring_example():
    assert rle_encode(np.array([[0, 1, 1], [1, 0, 0]])) == "2 3"


@pytest.mark.parametrize(
    ("pixels", "expected"),
    [
        ([], ""),
        ([(0, 0)], "1 1"),
        ([(2, 3)], f"{2 * 4 + 3 + 1} 1"),  # last pixel of a 3x4 image
        ([(0, 3), (1, 0)], "4 2"),  # a run wraps from the end of row 0 to row 1 (row-major)
        ([(1, 1), (2, 1)], "6 1 10 1"),  # a vertical pair is two runs
    ],
)
def test_rle_encode_known(pixels, expected):
    mask = np.zeros((3, 4), bool)
    for r, c in pixels:
        mask[r, c] = True
    assert rle_encode(mask) == expected
    assert np.array_equal(rle_decode(expected, (3, 4)), mask)


def test_rle_full_mask():
    assert rle_encode(np.ones((3, 4), bool)) == "1 12"
    assert rle_decode("1 12", (3, 4)).all()


@given(masks)
def test_rle_round_trip_any_mask(mask):
    rle = rle_encode(mask)
    decoded = rle_decode(rle, mask.shape)
    assert decoded.dtype == bool and decoded.shape == mask.shape
    assert np.array_equal(decoded, mask)
    starts, lengths = rle_runs(rle, mask.shape)
    assert lengths.sum() == mask.sum()


def test_rle_decode_default_shape_is_competition_size():
    assert rle_decode("1 5").shape == IMAGE_SHAPE


@pytest.mark.parametrize(
    ("rle", "message"),
    [
        ("1 2 3", "odd number"),
        ("1 x", "non-integer value 'x'"),
        ("1.5 2", "non-integer value '1.5'"),
        ("0 3", "start below 1"),
        ("-4 3", "start below 1"),
        ("5 0", "length must be positive"),
        ("5 -2", "length must be positive"),
        ("10 2 3 2", "unsorted or overlap"),
        ("1 5 3 2", "unsorted or overlap"),
        ("11 3", "beyond the 3x4 image"),
        ("13 1", "beyond the 3x4 image"),
        ("99999999999999999999 1", "beyond"),
        ("1 99999999999999999999", "beyond"),
    ],
)
def test_rle_runs_rejects_malformed(rle, message):
    with pytest.raises(PhasesegInputError, match=message):
        rle_runs(rle, (3, 4))


def test_rle_runs_empty_and_missing_values():
    for empty in ("", "   ", None, float("nan")):
        starts, lengths = rle_runs(empty, (3, 4))
        assert len(starts) == len(lengths) == 0
    with pytest.raises(PhasesegInputError, match="must be a string"):
        rle_runs(12, (3, 4))


def test_rle_runs_accepts_adjacent_runs_and_extra_whitespace():
    starts, lengths = rle_runs("  1 2\t3 2\n", (3, 4))
    assert starts.tolist() == [0, 2] and lengths.tolist() == [2, 2]


def test_rles_to_labels_earlier_instance_wins_overlap():
    labels = rles_to_labels(["1 3", "2 3", "", "11 2"], (3, 4))
    assert labels.dtype == np.int32
    assert labels.ravel().tolist() == [1, 1, 1, 2, 0, 0, 0, 0, 0, 0, 4, 4]


def test_rles_to_labels_reports_the_bad_string():
    with pytest.raises(PhasesegInputError, match="unsorted"):
        rles_to_labels(["1 2", "8 2 3 1"], (3, 4))
    with pytest.raises(PhasesegInputError, match="non-integer"):
        rles_to_labels(["1 2", "a b"], (3, 4))
    assert not rles_to_labels([], (3, 4)).any()
    assert rles_to_labels([None, "2 1"], (3, 4)).ravel().tolist()[:3] == [0, 2, 0]


@given(label_images)
def test_labels_rle_round_trip_any_label_image(labels):
    rles = labels_to_rles(labels)
    assert len(rles) == len(np.unique(labels[labels > 0]))
    assert rles == [rle_encode(labels == lab) for lab in np.unique(labels) if lab > 0]
    back = rles_to_labels(rles, labels.shape)
    assert np.array_equal(back, relabel_sequential(labels)[0])


@given(label_images)
def test_label_runs_column_major(labels):
    ids, starts, lengths = label_runs(labels, order="F")
    flat = np.zeros(labels.size, np.int64)
    for lab, s, n in zip(ids, starts, lengths, strict=True):
        flat[s : s + n] = lab
    assert np.array_equal(flat.reshape(labels.shape, order="F"), labels)


def test_labels_to_rles_empty_and_sparse_ids():
    assert labels_to_rles(np.zeros((3, 4), np.int32)) == []
    labels = np.zeros((3, 4), np.uint32)
    labels[0, 0], labels[2, 3] = 70000, 5
    assert labels_to_rles(labels) == ["12 1", "1 1"]  # increasing label order: 5, 70000


def test_check_labels():
    with pytest.raises(ValueError, match="2-D"):
        check_labels(np.zeros((2, 3, 4), int))
    with pytest.raises(ValueError, match="integers"):
        check_labels(np.zeros((3, 4)))
    with pytest.raises(ValueError, match=">= 0"):
        check_labels(-np.ones((3, 4), int))


# --------------------------------------------------------------------------- CSV


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_read_train_csv_with_and_without_extra_columns(tmp_path):
    plain = _write(tmp_path / "a.csv", "id,annotation,width,height,cell_type\nx,1 2,4,3,cort\n")
    df = read_train_csv(plain)
    assert df["width"].dtype == np.int64 and df["id"].tolist() == ["x"]
    extra = _write(
        tmp_path / "b.csv",
        "id,annotation,width,height,cell_type,plate_time,sample_date,sample_id,elapsed_timedelta\n"
        "NA,1 2,4,3,cort,11h30m00s,2019-06-16,cort[x],0 days 11:30:00\n",
    )
    df = read_train_csv(extra)
    assert df["id"].tolist() == ["NA"]  # not turned into a missing value
    assert "sample_id" in df.columns


def test_read_train_csv_errors(tmp_path):
    with pytest.raises(PhasesegInputError, match="no such file"):
        read_train_csv(tmp_path / "nope.csv")
    with pytest.raises(PhasesegInputError, match="missing column.*cell_type"):
        read_train_csv(_write(tmp_path / "c.csv", "id,annotation,width,height\nx,1 2,4,3\n"))
    bad = "id,annotation,width,height,cell_type\nx,1 2,4,3,cort\ny,1 2,wide,3,cort\n"
    with pytest.raises(PhasesegInputError, match=r"d.csv, line 3: width is not a positive"):
        read_train_csv(_write(tmp_path / "d.csv", bad))
    with pytest.raises(PhasesegInputError, match="not a readable CSV"):
        read_train_csv(_write(tmp_path / "e.csv", ""))
    (tmp_path / "f.csv").write_bytes(b"id,annotation\n\xff\xfe\x00garbage\n")
    with pytest.raises(PhasesegInputError, match="f.csv"):
        read_train_csv(tmp_path / "f.csv")
    ragged = "id,annotation,width,height,cell_type\nx,1 2,4,3,cort,extra,more\n"
    with pytest.raises(PhasesegInputError, match="not a readable CSV"):
        read_train_csv(_write(tmp_path / "g.csv", ragged))


def test_malformed_rle_row_raises_with_line(tmp_path):
    text = (
        "id,annotation,width,height,cell_type\na,1 2,4,3,cort\nb,1 2,4,3,cort\nb,5 1 2 1,4,3,cort\n"
    )
    df = read_train_csv(_write(tmp_path / "t.csv", text))
    with pytest.raises(PhasesegInputError, match=r"^t.csv, line 4: RLE runs are unsorted"):
        dict(iter_image_labels(df, source="t.csv"))


def test_iter_image_labels_groups_in_order_and_uses_size(tmp_path):
    text = (
        "id,annotation,width,height,cell_type\nb,1 2,4,3,cort\na,1 1,5,2,astro\nb,12 1,4,3,cort\n"
    )
    out = dict(iter_image_labels(read_train_csv(_write(tmp_path / "t.csv", text))))
    assert list(out) == ["b", "a"]
    assert out["b"].shape == (3, 4) and out["b"].max() == 2 and out["b"][2, 3] == 2
    assert out["a"].shape == (2, 5)


def test_annotations_to_labels_on_submission_rows():
    rows = pd.DataFrame({"id": ["a", "a"], "predicted": ["1 2", ""]})
    labels = annotations_to_labels(rows)
    assert labels.shape == IMAGE_SHAPE and labels.max() == 1


def test_read_submission(tmp_path):
    df = read_submission(_write(tmp_path / "s.csv", "id,predicted\na,1 2\nb,\n"))
    assert df["predicted"].tolist() == ["1 2", ""]
    with pytest.raises(PhasesegInputError, match="missing column.*predicted"):
        read_submission(_write(tmp_path / "t.csv", "id,annotation\na,1 2\n"))


# --------------------------------------------------------------------------- images


@pytest.fixture
def gray() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (20, 30), dtype=np.uint8)


def test_read_image_png_and_tiff(tmp_path, gray):
    Image.fromarray(gray).save(tmp_path / "a.png")
    tifffile.imwrite(tmp_path / "b.tif", gray)
    for name in ("a.png", "b.tif"):
        img = read_image(tmp_path / name)
        assert img.dtype == np.uint8 and np.array_equal(img, gray)
        assert image_shape(tmp_path / name) == (20, 30)


def test_read_image_rgb_converted_with_warning(tmp_path, gray, caplog):
    Image.fromarray(np.stack([gray] * 3, axis=-1)).save(tmp_path / "rgb.png")
    with caplog.at_level(logging.WARNING, logger="phaseseg.io"):
        img = read_image(tmp_path / "rgb.png")
    assert "RGB image converted to grayscale" in caplog.text
    assert np.array_equal(img, gray)
    assert image_shape(tmp_path / "rgb.png") == (20, 30)


def test_read_image_16bit_rescaled_with_warning(tmp_path, caplog):
    img16 = np.linspace(1000, 3000, 600).reshape(20, 30).astype(np.uint16)
    Image.fromarray(img16).save(tmp_path / "d.png")
    with caplog.at_level(logging.WARNING, logger="phaseseg.io"):
        img = read_image(tmp_path / "d.png")
    assert "uint16 image rescaled to 8 bit" in caplog.text
    assert img.dtype == np.uint8 and img.min() == 0 and img.max() == 255


def test_read_image_palette_gray_alpha_and_float(tmp_path, gray, caplog):
    Image.fromarray(gray).convert("P").save(tmp_path / "p.png")
    assert read_image(tmp_path / "p.png").shape == (20, 30)
    Image.fromarray(gray).convert("LA").save(tmp_path / "la.png")
    with caplog.at_level(logging.WARNING, logger="phaseseg.io"):
        assert np.array_equal(read_image(tmp_path / "la.png"), gray)
    assert "alpha channel dropped" in caplog.text
    f = gray.astype(np.float32)
    f[0, 0] = np.nan
    tifffile.imwrite(tmp_path / "f.tif", f)
    img = read_image(tmp_path / "f.tif")
    assert img.dtype == np.uint8 and img.shape == (20, 30)
    tifffile.imwrite(tmp_path / "n.tif", np.full((4, 4), np.nan, np.float32))
    with pytest.raises(PhasesegInputError, match="no finite values"):
        read_image(tmp_path / "n.tif")


def test_read_image_errors(tmp_path, gray):
    with pytest.raises(PhasesegInputError, match="no such file"):
        read_image(tmp_path / "missing.png")
    Image.fromarray(gray).save(tmp_path / "ok.png")
    data = (tmp_path / "ok.png").read_bytes()
    (tmp_path / "trunc.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(PhasesegInputError, match=r"trunc.png: not a readable image"):
        read_image(tmp_path / "trunc.png")
    (tmp_path / "junk.png").write_bytes(b"not an image at all")
    with pytest.raises(PhasesegInputError, match="junk.png: not a readable image"):
        read_image(tmp_path / "junk.png")
    with pytest.raises(PhasesegInputError, match="junk.png: not a readable image"):
        image_shape(tmp_path / "junk.png")
    tifffile.imwrite(tmp_path / "stack.tif", np.zeros((3, 5, 6, 7), np.uint8))
    with pytest.raises(PhasesegInputError, match="stack.tif: holds 15 frames"):
        read_image(tmp_path / "stack.tif")  # predict and measure read it frame by frame
    with pytest.raises(PhasesegInputError, match="expected a 2-D"):
        image_shape(tmp_path / "stack.tif")
    with pytest.raises(PhasesegInputError, match="no such file"):
        image_shape(tmp_path / "missing.png")


def test_find_images(tmp_path, gray):
    for name in ("b.png", "a.tif", ".hidden.png", "notes.txt"):
        (tmp_path / name).write_bytes(b"")
    assert [p.name for p in find_images([tmp_path])] == ["a.tif", "b.png"]
    assert find_images([tmp_path / "notes.txt"]) == [tmp_path / "notes.txt"]
    with pytest.raises(PhasesegInputError, match="no such file or folder"):
        find_images([tmp_path / "nope"])


# --------------------------------------------------------------------------- atomic writes


def test_atomic_path_success_and_permissions(tmp_path):
    target = tmp_path / "sub" / "out.csv"
    with atomic_path(target) as tmp:
        assert tmp.parent == target.parent and tmp.name.startswith(".out.csv.")
        tmp.write_text("x")
        assert not target.exists()
    assert target.read_text() == "x"
    umask = os.umask(0)
    os.umask(umask)
    assert target.stat().st_mode & 0o777 == 0o666 & ~umask
    assert [p.name for p in target.parent.iterdir()] == ["out.csv"]


def test_atomic_path_failure_keeps_old_file(tmp_path):
    target = tmp_path / "out.csv"
    target.write_text("old")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("boom")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.csv"]


# --------------------------------------------------------------------------- real data


@pytest.fixture(scope="module")
def train_df(shared_data):
    return read_train_csv(shared_data / "train.csv")


def test_real_train_csv_groups_into_all_label_images(train_df):
    assert len(train_df) > 36_000
    labels = dict(iter_image_labels(train_df))  # its speed: BENCHMARKS.md, not a timed test
    assert len(labels) == 461
    types = train_df.drop_duplicates("id")["cell_type"].value_counts().to_dict()
    assert types == {"cort": 290, "astro": 111, "shsy5y": 60}
    n_rows = train_df.groupby("id").size()
    for image_id, lab in labels.items():
        assert lab.shape == IMAGE_SHAPE and lab.dtype == np.int32
        assert 0 < len(np.unique(lab)) - 1 <= n_rows[image_id] == lab.max()


def test_real_round_trip_labels_rle_labels(train_df):
    ids = train_df.drop_duplicates("id").groupby("cell_type")["id"].first().tolist()
    for image_id in ids:
        rows = train_df[train_df["id"] == image_id]
        labels = annotations_to_labels(rows)
        back = rles_to_labels(labels_to_rles(labels))
        assert np.array_equal(back, relabel_sequential(labels)[0])
        # Every annotated pixel is labelled; overlaps go to the earlier row.
        union = np.zeros(IMAGE_SHAPE, bool)
        for rle in rows["annotation"]:
            union |= rle_decode(rle)
        assert np.array_equal(labels > 0, union)
        first = rle_decode(rows["annotation"].iloc[0])
        assert np.all(labels[first] == 1)


def test_real_images_read_as_gray_uint8(shared_data):
    paths = find_images([shared_data / "train"])
    assert len(paths) == 461
    img = read_image(paths[0])
    assert img.dtype == np.uint8 and img.shape == IMAGE_SHAPE
    assert image_shape(paths[0]) == IMAGE_SHAPE


def test_real_rle_strings_are_canonical(train_df):
    """Re-encoding real annotations gives back the same strings (same convention)."""
    for rle in train_df["annotation"].iloc[::500]:
        assert rle_encode(rle_decode(rle)) == rle

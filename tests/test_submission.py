"""Tests of phaseseg.io.submission and the validate-submission command."""

from __future__ import annotations

from pathlib import Path

import hypothesis.extra.numpy as hnp
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image

from phaseseg.cli import main
from phaseseg.io import (
    IMAGE_SHAPE,
    PhasesegInputError,
    iter_image_labels,
    labels_to_rles,
    read_submission,
    read_train_csv,
    rles_to_labels,
)
from phaseseg.io.submission import (
    Problem,
    check_submission,
    masks_to_labels,
    validate_submission,
    write_submission,
)

SHAPE = (3, 4)

# --------------------------------------------------------------------------- masks_to_labels


def test_masks_to_labels_docstring_example():
    masks = np.zeros((2, 1, 3), bool)
    masks[0, 0, :2] = True
    masks[1, 0, 1:] = True
    assert masks_to_labels(masks).tolist() == [[1, 1, 2]]  # earlier first
    assert masks_to_labels(masks, scores=np.array([0.5, 0.9])).tolist() == [[1, 2, 2]]
    assert masks_to_labels(masks, scores=np.array([0.7, 0.7])).tolist() == [[1, 1, 2]]  # tie


def test_masks_to_labels_vanished_mask_and_empty_input():
    masks = np.zeros((3, 2, 2), bool)
    masks[0] = True
    masks[1, 0, 0] = True  # fully covered by mask 0
    labels = masks_to_labels(masks)
    assert labels.dtype == np.int32 and np.all(labels == 1)
    assert masks_to_labels(np.zeros((0, 4, 5), bool)).shape == (4, 5)


def test_masks_to_labels_rejects_bad_input():
    with pytest.raises(ValueError, match=r"\(N, H, W\)"):
        masks_to_labels(np.zeros((4, 5), bool))
    with pytest.raises(ValueError, match="finite"):
        masks_to_labels(np.zeros((2, 4, 5), bool), scores=np.array([1.0]))
    with pytest.raises(ValueError, match="finite"):
        masks_to_labels(np.zeros((2, 4, 5), bool), scores=np.array([1.0, np.nan]))


@given(
    hnp.arrays(bool, st.tuples(st.integers(0, 5), st.integers(1, 6), st.integers(1, 6))),
    st.data(),
)
def test_masks_to_labels_gives_each_pixel_to_the_best_mask(masks, data):
    n = len(masks)
    scores = np.array(data.draw(st.lists(st.sampled_from([0.1, 0.5, 0.9]), min_size=n, max_size=n)))
    labels = masks_to_labels(masks, scores)
    priority = sorted(range(n), key=lambda i: (-scores[i], i))
    for r, c in np.ndindex(labels.shape):
        covering = [i for i in priority if masks[i, r, c]]
        assert labels[r, c] == (covering[0] + 1 if covering else 0)


# --------------------------------------------------------------------------- write


def _labels(*rles: str) -> np.ndarray:
    return rles_to_labels(list(rles), SHAPE)


def test_write_submission_rows_and_empty_image(tmp_path):
    items = [("a", _labels("1 2", "6 3")), ("b", np.zeros(SHAPE, np.int32)), ("c", _labels("12 1"))]
    out = write_submission(tmp_path / "submission.csv", items)
    assert out == tmp_path / "submission.csv"
    assert out.read_text() == "id,predicted\na,1 2\na,6 3\nb,\nc,12 1\n"
    assert (
        validate_submission(out, image_ids=["a", "b", "c"], shapes=dict.fromkeys("abc", SHAPE))
        == []
    )


def test_write_submission_streams_a_generator(tmp_path):
    consumed = []

    def items():
        for k in range(3):
            consumed.append(k)
            yield f"img{k}", np.full(SHAPE, k, np.uint16)

    write_submission(tmp_path / "s.csv", items())
    assert consumed == [0, 1, 2]
    df = read_submission(tmp_path / "s.csv")
    assert df["id"].tolist() == ["img0", "img1", "img2"]
    assert df["predicted"].tolist() == ["", "1 12", "1 12"]


def test_write_submission_is_atomic_on_failure(tmp_path):
    target = tmp_path / "s.csv"
    target.write_text("previous")

    def items():
        yield "a", _labels("1 2")
        raise RuntimeError("model crashed")

    with pytest.raises(RuntimeError):
        write_submission(target, items())
    assert target.read_text() == "previous"
    assert [p.name for p in tmp_path.iterdir()] == ["s.csv"]


def test_write_submission_rejects_duplicates_and_bad_labels(tmp_path):
    with pytest.raises(ValueError, match="given twice"):
        write_submission(tmp_path / "s.csv", [("a", _labels()), ("a", _labels())])
    with pytest.raises(ValueError, match="integers"):
        write_submission(tmp_path / "s.csv", [("a", np.zeros(SHAPE, float))])
    with pytest.raises(ValueError, match="2-D"):
        write_submission(tmp_path / "s.csv", [("a", np.zeros((2, *SHAPE), int))])
    assert not (tmp_path / "s.csv").exists()


@given(hnp.arrays(np.int32, (5, 7), elements=st.integers(0, 4)))
def test_written_submission_reads_back_to_same_instances(tmp_path_factory, labels):
    path = tmp_path_factory.mktemp("sub") / "s.csv"
    write_submission(path, [("x", labels)])
    df = read_submission(path)
    assert sorted(df["predicted"]) == sorted(labels_to_rles(labels) or [""])
    assert validate_submission(path, ["x"], {"x": (5, 7)}) == []


# --------------------------------------------------------------------------- validate


def _csv(tmp_path: Path, text: str, name: str = "submission.csv") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def _problems(tmp_path, text, **kwargs) -> list[str]:
    kwargs.setdefault("shapes", {"a": SHAPE, "b": SHAPE})
    return [str(p) for p in validate_submission(_csv(tmp_path, text), **kwargs)]


def test_problem_str():
    assert str(Problem("s.csv", 4, "abc", "bad")) == "s.csv, line 4, image abc: bad"
    assert str(Problem("s.csv", None, "abc", "bad")) == "s.csv, image abc: bad"
    assert str(Problem("s.csv", 1, None, "bad")) == "s.csv, line 1: bad"


def test_valid_submission_with_blank_lines_bom_and_extra_column(tmp_path):
    text = "\ufeffid,predicted,score\na,1 2,0.9\n\na,5 2,0.8\nb,,\n"
    check = check_submission(_csv(tmp_path, text), ["a", "b"], {"a": SHAPE, "b": SHAPE})
    assert check.valid and check.problems == []
    assert (check.n_rows, check.n_images, check.n_instances) == (3, 2, 2)


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ("a,1 2 3", "line 3, image a: RLE has an odd number of values"),
        ("a,1 x", "line 3, image a: RLE holds a non-integer value 'x'"),
        ("a,0 2", "line 3, image a: RLE start below 1"),
        ("a,5 0", "line 3, image a: RLE run length must be positive"),
        ("a,9 2 5 1", "line 3, image a: RLE runs are unsorted or overlap"),
        ("a,5 3 6 1", "line 3, image a: RLE runs are unsorted or overlap"),
        ("a,11 3", "line 3, image a: RLE reaches pixel 13, beyond the 3x4 image"),
        ("a,1 2,extra", "line 3, image a: 3 fields, expected 2"),
        (",1 2", "line 3: empty id"),
    ],
)
def test_malformed_rows_are_reported_with_line_and_id(tmp_path, row, message):
    problems = _problems(tmp_path, f"id,predicted\nb,\n{row}\n")
    assert len(problems) == 1
    assert problems[0].startswith(f"{tmp_path / 'submission.csv'}, {message}")


def test_out_of_range_depends_on_image_shape(tmp_path):
    text = "id,predicted\na,364000 100\n"
    assert _problems(tmp_path, text, shapes=None) == []  # fits 520 x 704
    assert "beyond the 3x4 image" in _problems(tmp_path, text)[0]


def test_overlapping_instances_name_both_lines(tmp_path):
    text = "id,predicted\na,1 4\nb,1 4\na,3 2\na,9 2\na,4 6\n"
    problems = _problems(tmp_path, text)
    src = tmp_path / "submission.csv"
    assert problems == [
        f"{src}, line 4, image a: overlaps line 2 (2 px)",
        f"{src}, line 6, image a: overlaps line 2 (1 px), line 5 (1 px)",
    ]


def test_duplicate_rows_are_same_mask(tmp_path):
    problems = _problems(tmp_path, "id,predicted\na,1 4\na,1 4\n")
    assert problems == [f"{tmp_path / 'submission.csv'}, line 3, image a: same mask as line 2"]


def test_unknown_and_missing_ids(tmp_path):
    text = "id,predicted\na,1 2\nzzz,1 2\nzzz,5 1\n"
    problems = _problems(tmp_path, text, image_ids=["a", "b", "c"])
    src = tmp_path / "submission.csv"
    assert problems[0] == f"{src}, line 3, image zzz: unknown image id (2 row(s); 3 ids expected)"
    assert problems[1].startswith(f"{src}, image b: no row (an image without cells")
    assert problems[2].startswith(f"{src}, image c: no row")
    assert len(problems) == 3


def test_bad_files(tmp_path):
    src = tmp_path / "submission.csv"
    assert _problems(tmp_path, "") == [f"{src}: empty file"]
    assert _problems(tmp_path, "id,annotation\na,1 2\n") == [
        f"{src}, line 1: missing column(s) predicted (header is id,annotation)"
    ]
    src.write_bytes(b"id,predicted\na,1 2\n\xff\xfe,3\n")
    assert [str(p) for p in validate_submission(src)] == [f"{src}: not a UTF-8 text file"]
    problems = _problems(tmp_path, 'id,predicted\na,"1 2\n')
    assert len(problems) == 1 and "malformed CSV" in problems[0]
    with pytest.raises(PhasesegInputError, match="no such file"):
        validate_submission(tmp_path / "nope.csv")


def test_problem_lines_count_blank_lines_and_quoted_newlines(tmp_path):
    text = 'id,predicted\n"a","1\n2"\n\n\n"a","1 1"\n'
    problems = _problems(tmp_path, text)
    assert problems == [f"{tmp_path / 'submission.csv'}, line 6, image a: overlaps line 2 (1 px)"]


# --------------------------------------------------------------------------- CLI


def test_cli_valid_submission(tmp_path, capsys):
    path = _csv(tmp_path, "id,predicted\na,1 2\nb,\n")
    assert main(["validate-submission", str(path)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out == [f"{path}: valid (2 rows, 2 images, 1 instances)"]


def test_cli_invalid_submission_prints_one_line_per_problem(tmp_path, capsys):
    path = _csv(tmp_path, "id,predicted\na,1 4\na,3 x\na,2 2\n")
    assert main(["validate-submission", str(path)]) == 1
    out = capsys.readouterr().out.splitlines()
    assert out == [
        f"{path}, line 3, image a: RLE holds a non-integer value 'x'",
        f"{path}, line 4, image a: overlaps line 2 (2 px)",
        f"{path}: INVALID, 2 problem(s) in 1 image(s) (3 rows, 1 images, 3 instances)",
    ]


def test_cli_with_images_folder_checks_ids_and_sizes(tmp_path, capsys):
    images = tmp_path / "test"
    images.mkdir()
    Image.fromarray(np.zeros(SHAPE, np.uint8)).save(images / "a.png")
    Image.fromarray(np.zeros((10, 10), np.uint8)).save(images / "b.png")
    Image.fromarray(np.zeros((10, 10), np.uint8)).save(images / "c.png")
    path = _csv(tmp_path, "id,predicted\na,11 3\nb,11 3\nc,\n")
    assert main(["validate-submission", str(path), "--images", str(images)]) == 1
    out = capsys.readouterr().out.splitlines()
    assert (
        out[0] == f"{path}, line 2, image a: RLE reaches pixel 13, beyond the 3x4 image (12 pixels)"
    )
    assert out[1].startswith(f"{path}: INVALID, 1 problem(s)") and "3 images in" in out[1]

    path = _csv(tmp_path, "id,predicted\na,1 3\nd,\n", "s2.csv")
    assert main(["validate-submission", str(path), "--images", str(images)]) == 1
    out = capsys.readouterr().out
    assert "line 3, image d: unknown image id" in out
    assert "image b: no row" in out and "image c: no row" in out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["{tmp}/nope.csv"], "nope.csv: no such file"),
        (["{tmp}/ok.csv", "--images", "{tmp}/nodir"], "nodir: no such folder"),
        (["{tmp}/ok.csv", "--images", "{tmp}/empty"], "empty: no images"),
    ],
)
def test_cli_usage_errors_exit_2_with_one_line(tmp_path, capsys, args, message):
    _csv(tmp_path, "id,predicted\na,\n", "ok.csv")
    (tmp_path / "empty").mkdir()
    assert main(["validate-submission", *(a.format(tmp=tmp_path) for a in args)]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.count("\n") == 1
    assert captured.err.startswith("phaseseg validate-submission: error: ")
    assert message in captured.err and "Traceback" not in captured.err


# --------------------------------------------------------------------------- real data


def test_real_submission_from_train_annotations_is_valid(shared_data, tmp_path):
    df = read_train_csv(shared_data / "train.csv")
    out = write_submission(tmp_path / "submission.csv", iter_image_labels(df))
    ids = [p.stem for p in sorted((shared_data / "train").glob("*.png"))]
    check = check_submission(out, image_ids=ids, shapes=dict.fromkeys(ids, IMAGE_SHAPE))
    assert check.problems == []
    assert check.n_images == 461 and check.n_instances > 36_000


def test_real_raw_annotations_overlap(shared_data, tmp_path):
    """The raw train annotations overlap slightly: as a submission they would be rejected."""
    df = read_train_csv(shared_data / "train.csv")
    sub = df.rename(columns={"annotation": "predicted"})[["id", "predicted"]]
    sub.to_csv(tmp_path / "raw.csv", index=False)
    problems = validate_submission(tmp_path / "raw.csv")
    assert problems and all("overlaps" in p.message or "same mask" in p.message for p in problems)
    assert all(p.line is not None and p.image_id for p in problems)
    first = problems[0]
    assert df.loc[first.line - 2, "id"] == first.image_id

"""Own annotations -> training folder (`phaseseg make-dataset`), then training on it."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import tifffile
from PIL import Image
from synthetic import blob_image, blob_labels

from phaseseg import io
from phaseseg.cli import main
from phaseseg.io.formats import write_coco
from phaseseg.nn.checkpoint import load_model_file
from phaseseg.train import TrainConfig, fit
from phaseseg.train.make_dataset import build_dataset, pair_label_images

TINY_NET = {"channels": [4, 8, 16], "convs_per_block": 1, "n_cell_types": 3}


def _write_pairs(folder: Path, n: int, suffix: str = "_masks", shape=(64, 80)) -> dict:
    """``n`` images ``cellK.png`` with label images ``cellK{suffix}.tif`` in ``folder``."""
    rng = np.random.default_rng(1)
    folder.mkdir(parents=True, exist_ok=True)
    truth = {}
    for k in range(n):
        labels = blob_labels(shape, 5, rng)
        Image.fromarray(blob_image(labels, rng)).save(folder / f"cell{k}.png")
        tifffile.imwrite(folder / f"cell{k}{suffix}.tif", labels.astype(np.uint16))
        truth[f"cell{k}"] = labels
    return truth


def _same_instances(a: np.ndarray, b: np.ndarray) -> bool:
    """Equal up to renumbering of the labels."""
    pairs = set(zip(a.ravel().tolist(), b.ravel().tolist(), strict=True))
    return len(pairs) == len(np.unique(a)) == len(np.unique(b))


def test_pairs_cellpose_style_folder_without_taking_masks_for_images(tmp_path):
    _write_pairs(tmp_path, 2)
    pairs = pair_label_images([tmp_path], tmp_path)
    assert [(p.name, q.name) for p, q in pairs] == [
        ("cell0.png", "cell0_masks.tif"),
        ("cell1.png", "cell1_masks.tif"),
    ]


def test_missing_label_image_names_the_image(tmp_path):
    _write_pairs(tmp_path / "a", 1)
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / "a" / "lonely.png")
    with pytest.raises(io.PhasesegInputError, match="lonely.png: no label image"):
        pair_label_images([tmp_path / "a"], tmp_path / "a")


def test_build_dataset_round_trips_instances_images_and_folds(tmp_path):
    truth = _write_pairs(tmp_path / "in", 4)
    empty = np.zeros((64, 80), np.int32)
    Image.fromarray(np.full((64, 80), 90, np.uint8)).save(tmp_path / "in" / "blank.png")
    items = [
        *pair_label_images([tmp_path / "in" / f"cell{k}.png" for k in range(4)], tmp_path / "in")
    ]
    items.append((tmp_path / "in" / "blank.png", empty))
    folds = build_dataset(items, tmp_path / "out", "shsy5y", n_folds=2)

    assert folds["id"].tolist() == ["blank", "cell0", "cell1", "cell2", "cell3"]
    assert folds["fold"].tolist() == [0, 1, 0, 1, 0]  # dealt round-robin in name order
    table = io.read_train_csv(tmp_path / "out" / "train.csv")
    assert set(table["cell_type"]) == {"shsy5y"}
    for image_id, labels in truth.items():
        got = io.train_labels(table, image_id)
        assert _same_instances(got, labels)
        image = io.read_image(tmp_path / "out" / "train" / f"{image_id}.png")
        np.testing.assert_array_equal(image, io.read_image(tmp_path / "in" / f"{image_id}.png"))
    assert io.train_labels(table, "blank").max() == 0  # kept, with one empty annotation
    written = pd.read_csv(tmp_path / "out" / "folds.csv", dtype={"id": str})
    assert list(written.columns) == ["id", "cell_type", "fold"]


def test_bad_inputs_leave_nothing_behind(tmp_path):
    _write_pairs(tmp_path / "in", 1)
    wrong = np.zeros((10, 10), np.int32)
    with pytest.raises(io.PhasesegInputError, match="labels are 10x10 but the image is 80x64"):
        build_dataset([(tmp_path / "in" / "cell0.png", wrong)], tmp_path / "out", "cort")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in"]
    with pytest.raises(io.PhasesegInputError, match="cell type 'micro glia': use 1-64 letters"):
        build_dataset([], tmp_path / "out", "micro glia")
    with pytest.raises(io.PhasesegInputError, match="not an empty folder"):
        build_dataset([], tmp_path / "in", "cort")


def test_cli_from_coco_then_fine_tune(tmp_path, capsys):
    """make-dataset from a COCO file, then a few training steps on it (init from a model)."""
    truth = _write_pairs(tmp_path / "img", 3, shape=(64, 64))
    write_coco(tmp_path / "ann.json", [(f"{k}.png", v) for k, v in truth.items()])
    out = tmp_path / "data"
    code = main(
        ["make-dataset", str(tmp_path / "img"), "--coco", str(tmp_path / "ann.json"),
         "--cell-type", "astro", "--out", str(out), "--folds", "3"]
    )  # fmt: skip
    assert code == 0 and "3 images written" in capsys.readouterr().out
    cfg = dict(steps=2, batch_size=2, crop_size=64, eval_every=2, warmup_steps=1, net=TINY_NET)
    fit(out, tmp_path / "a.pt", TrainConfig(**cfg), device="cpu")
    scores = fit(out, tmp_path / "b.pt", TrainConfig(**cfg, init=str(tmp_path / "a.pt")), "cpu")
    assert load_model_file(tmp_path / "b.pt")["init"]["path"] == str(tmp_path / "a.pt")
    # a folder of one declared cell type is scored as that type
    assert scores["tuned"]["astro"] == scores["tuned"]["overall"]


def test_cli_errors_are_one_line(tmp_path, capsys):
    _write_pairs(tmp_path / "img", 1)
    code = main(["make-dataset", str(tmp_path / "img"), "--cell-type", "cort", "--out", "x"])
    assert code == 2 and "give --labels DIR or --coco FILE" in capsys.readouterr().err
    code = main(
        ["make-dataset", str(tmp_path / "img"), "--labels", str(tmp_path / "nope"),
         "--cell-type", "cort", "--out", str(tmp_path / "o")]
    )  # fmt: skip
    assert code == 2 and "nope: no such folder" in capsys.readouterr().err


def test_training_crop_larger_than_an_image_is_a_clear_error(tmp_path):
    _write_pairs(tmp_path / "in", 2)
    build_dataset(pair_label_images([tmp_path / "in"], tmp_path / "in"), tmp_path / "d", "cort")
    cfg = TrainConfig(steps=1, crop_size=128, val_fold=None, net=TINY_NET)
    with pytest.raises(io.PhasesegInputError, match=r"cell0.png: 80x64 is smaller than the 128-px"):
        fit(tmp_path / "d", tmp_path / "m.pt", cfg, device="cpu")


def test_real_images_with_label_tiffs(shared_data, tmp_path):
    """Three competition shsy5y images with label TIFFs (as napari would save them)."""
    table = io.read_train_csv(shared_data / "train.csv")
    ids = table.loc[table["cell_type"] == "shsy5y", "id"].unique()[:3]
    (tmp_path / "masks").mkdir()
    truth = {}
    for image_id in ids:
        truth[image_id] = io.train_labels(table, image_id)
        tifffile.imwrite(tmp_path / "masks" / f"{image_id}.tif", truth[image_id])
    images = [shared_data / "train" / f"{i}.png" for i in ids]
    code = main(
        ["make-dataset", *map(str, images), "--labels", str(tmp_path / "masks"),
         "--cell-type", "shsy5y", "--out", str(tmp_path / "data")]
    )  # fmt: skip
    assert code == 0
    written = io.read_train_csv(tmp_path / "data" / "train.csv")
    for image_id, labels in truth.items():
        assert _same_instances(io.train_labels(written, image_id), labels)

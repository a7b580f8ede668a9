"""predict -> submission -> validate -> evaluate, with the bundled model on real images."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from phaseseg import io
from phaseseg.cli import main
from phaseseg.io.formats import read_labels
from phaseseg.io.submission import validate_submission
from phaseseg.segment.predict import predict_images
from phaseseg.segment.segmenter import BUNDLED_MODEL, load_model


def test_bundled_model_loads_with_its_metadata():
    model = load_model()
    meta = model.metadata
    assert meta["format"] == "phaseseg-model"
    assert set(model.postprocess) == {"astro", "cort", "shsy5y"}
    # trained on all 461 annotated images; thresholds from its fold-0 twin (same recipe on
    # folds 1-4), which records its fold-0 scores: 0.3079 tuned, every cell type right
    assert meta["data"]["train_images"] == 461 and meta["data"]["val_fold"] is None
    twin = meta["postprocess_from"]
    assert twin["data"]["val_fold"] == 0 and twin["data"]["train_images"] == 368
    tuned = twin["scores"]["tuned"]
    assert tuned["overall"] > 0.30 and tuned["cell_type_accuracy"] == 1.0
    assert tuned["overall"] > twin["scores"]["untuned"]["overall"]  # tuning beat the defaults
    assert BUNDLED_MODEL.stat().st_size < 20 * 2**20


def test_predict_submission_evaluate_end_to_end(shared_data, tmp_path, capsys):
    ids = ["0030fd0e6378", "0140b3c8f445"]  # an shsy5y and an astro image of the train set
    images = [str(shared_data / "train" / f"{i}.png") for i in ids]
    sub = tmp_path / "submission.csv"
    code = main(
        [
            "predict",
            *images,
            "--submission",
            str(sub),
            "--labels-dir",
            str(tmp_path / "labels"),
            "--overlays-dir",
            str(tmp_path / "ov"),
        ]
    )
    assert code == 0
    assert validate_submission(sub, image_ids=ids, shapes={i: (520, 704) for i in ids}) == []
    df = io.read_submission(sub)
    assert set(df["id"]) == set(ids)
    for i in ids:
        labels = read_labels(tmp_path / "labels" / f"{i}.tif")
        assert labels.shape == (520, 704)
        # the label TIFF and the submission describe the same cells
        assert labels.max() == (df["id"] == i).sum()
        overlay = np.asarray(Image.open(tmp_path / "ov" / f"{i}.png"))
        assert overlay.shape == (520, 704, 3)

    truth = io.read_train_csv(shared_data / "train.csv")
    truth_path = tmp_path / "truth.csv"
    truth[truth["id"].isin(ids)].to_csv(truth_path, index=False)
    capsys.readouterr()
    assert main(["evaluate", str(truth_path), str(sub), "--json", str(tmp_path / "s.json")]) == 0
    out = capsys.readouterr().out
    score = float(out.split()[1])
    # measured 0.1907 (shsy5y 0.2273, astro 0.1541; images of the model's training folds)
    assert score > 0.17
    saved = json.loads((tmp_path / "s.json").read_text())
    assert saved["score"] == pytest.approx(score, abs=5e-5)  # the JSON holds what was printed
    assert set(saved["per_image"]) == set(ids) and saved["n_missing"] == 0
    assert saved["per_cell_type"]["shsy5y"] > 0.20 and saved["per_cell_type"]["astro"] > 0.13


def test_unreadable_image_is_skipped_and_the_rest_written(tmp_path, capsys):
    good = tmp_path / "good.png"
    Image.fromarray(np.full((520, 704), 128, np.uint8)).save(good)
    bad = tmp_path / "broken.png"
    bad.write_bytes(good.read_bytes()[:200])  # truncated PNG
    sub = tmp_path / "out" / "submission.csv"
    code = main(["predict", str(good), str(bad), "--submission", str(sub)])
    assert code == 1
    err = capsys.readouterr().err
    assert "broken.png" in err and "Traceback" not in err
    df = pd.read_csv(sub, dtype={"id": str}, keep_default_na=False)
    assert set(df["id"]) == {"good"}


@pytest.mark.parametrize(
    "argv, message",
    [
        (["predict", "missing_dir/", "--submission", "s.csv"], "no such file"),
        (["predict", "{tmp}", "--submission", "s.csv"], "no images found"),
        (["predict", "{tmp}"], "nothing to write"),
        (["predict", "{tmp}", "--submission", "s.csv", "--min-score", "2"], "must lie in [0, 1]"),
    ],
)
def test_predict_bad_arguments(argv, message, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "s.csv").exists()


def test_same_image_id_twice_is_refused(tmp_path, capsys):
    for sub in ("a", "b"):
        (tmp_path / sub).mkdir()
        Image.fromarray(np.zeros((64, 64), np.uint8)).save(tmp_path / sub / "x.png")
    code = main(["predict", str(tmp_path / "a"), str(tmp_path / "b"), "--submission", "s.csv"])
    assert code == 2
    assert "same image id" in capsys.readouterr().err


def test_min_score_override_keeps_or_drops_low_confidence_cells(tmp_path):
    sample = sorted((Path(__file__).parents[1] / "samples").glob("*.tif"))[0]
    counts = {}
    for value in (None, "0", "0.95"):
        out = tmp_path / str(value)
        extra = [] if value is None else ["--min-score", value]
        argv = ["predict", str(sample), "--labels-dir", str(out), "--cell-type", "shsy5y", *extra]
        assert main(argv) == 0
        counts[value] = int(read_labels(next(out.iterdir())).max())
    # the bundled model's tuned shsy5y min_score lies between 0 and 0.95
    assert counts["0"] > counts[None] > counts["0.95"]


def test_set_min_score_applies_to_every_cell_type_and_rejects_out_of_range():
    model = load_model()
    with pytest.deprecated_call():  # min_score= per call replaces it
        model.set_min_score(0.3)
    assert {p.min_score for p in model.postprocess.values()} == {0.3}
    with pytest.raises(io.PhasesegInputError, match="must lie in"), pytest.deprecated_call():
        model.set_min_score(1.5)
    assert {p.min_score for p in model.postprocess.values()} == {0.3}


def test_cli_passes_min_score_per_call_without_changing_the_model(tmp_path, monkeypatch):
    from phaseseg.segment.segmenter import Segmenter

    def forbidden(self, value):
        raise AssertionError("the CLI must not mutate the model")

    monkeypatch.setattr(Segmenter, "set_min_score", forbidden)
    sample = sorted((Path(__file__).parents[1] / "samples").glob("*.tif"))[0]
    out = tmp_path / "labels"
    argv = ["predict", str(sample), "--labels-dir", str(out), "--min-score", "0"]
    assert main([*argv, "--cell-type", "shsy5y"]) == 0


def test_batched_prediction_writes_the_same_submission(shared_data, tmp_path):
    """Several images per forward pass (and mixed sizes) give the same cells as one at a time."""
    ids = ["0030fd0e6378", "0140b3c8f445", "01ae5a43a2ab"]
    paths = [shared_data / "train" / f"{i}.png" for i in ids]
    crop = tmp_path / "crop.png"
    Image.open(paths[0]).crop((0, 0, 300, 200)).save(crop)
    model = load_model()
    subs = {}
    for batch_size in (1, 3):
        subs[batch_size] = tmp_path / f"b{batch_size}.csv"
        predict_images([*paths, crop], model, submission=subs[batch_size], batch_size=batch_size)
    assert subs[1].read_text() == subs[3].read_text()


def test_cli_tta_defaults_to_the_machine_and_flags_choose(tmp_path, monkeypatch, caplog):
    """Without ``--tta``/``--no-tta`` the model's default applies (and is logged); each flag
    forces its choice on the calls the CLI makes."""
    import logging

    from phaseseg.segment.segmenter import Segmenter

    calls: list[bool | None] = []
    original = Segmenter.iter_segment_full

    def spy(self, images, **kw):
        calls.append(self.tta if kw.get("tta") is None else kw["tta"])
        return original(self, images, **kw)

    monkeypatch.setattr(Segmenter, "iter_segment_full", spy)
    sample = tmp_path / "small.png"
    first = sorted((Path(__file__).parents[1] / "samples").glob("*.tif"))[0]
    Image.fromarray(io.read_image(first)[:128, :160]).save(sample)
    for flags, want in ((["--no-tta"], False), (["--tta"], True), (["--precision", "fp32"], False)):
        caplog.clear()
        out = tmp_path / "-".join(flags)
        with caplog.at_level(logging.INFO, logger="phaseseg"):
            assert main(["predict", str(sample), "--labels-dir", str(out), *flags]) == 0
        assert calls[-1] is want
        logged = "test-time augmentation off" in caplog.text
        assert logged == (flags[0] == "--precision")  # said only when the machine chose

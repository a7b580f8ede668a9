"""predict and measure on a Dask LocalCluster (2 worker processes): the same outputs as in one
process, a killed worker's images recomputed elsewhere, --resume, plate ids and columns."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from phaseseg import io
from phaseseg.analysis.measure import measure_images
from phaseseg.distributed import ModelSpec
from phaseseg.distributed.models import loaded_models
from phaseseg.io.formats import read_labels, write_labels
from phaseseg.segment import predict as predict_module
from phaseseg.segment.predict import predict_images
from phaseseg.segment.segmenter import load_model

distributed = pytest.importorskip("distributed")

SAMPLES = Path(__file__).parents[1] / "samples"


@pytest.fixture(scope="module")
def client():
    """Two worker processes on 127.0.0.1, one thread each; closed after this module."""
    cluster = distributed.LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        processes=True,
        host="127.0.0.1",
        dashboard_address=None,
    )
    with distributed.Client(cluster) as c:
        yield c
    cluster.close()


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    from phaseseg.nn.checkpoint import save_model
    from phaseseg.nn.model import NetConfig, build_model
    from phaseseg.segment.postprocess import PostprocessParams

    tiny = NetConfig(channels=(4, 8, 16), convs_per_block=1)
    torch.manual_seed(0)
    meta = {
        "net": tiny.to_dict(),
        "postprocess": {
            t: PostprocessParams(fg_thresh=0.45, min_size=5).to_dict()
            for t in ("astro", "cort", "shsy5y")
        },
    }
    path = tmp_path_factory.mktemp("model") / "tiny.pt"
    save_model(path, build_model(tiny).state_dict(), meta)
    return path


def _screen(root: Path, n_per_well: int = 2) -> Path:
    """A plate layout of crops of the sample images: plate{1,2}/{A1,B2}/f{k}.png, the same
    names on both plates, plus one broken image."""
    crops = []
    for f in sorted(SAMPLES.glob("*.tif")):
        image = io.read_image(f)
        crops += [image[y : y + 96, x : x + 128] for y in (0, 200) for x in (0, 300)]
    k = 0
    for plate in ("plate1", "plate2"):
        for well in ("A1", "B2"):
            folder = root / plate / well
            folder.mkdir(parents=True)
            for field in range(1, n_per_well + 1):
                Image.fromarray(crops[k % len(crops)]).save(folder / f"f{field}.png")
                k += 1
    (root / "plate2" / "B2" / "f9.png").write_bytes(b"not a png")
    return root


def _outputs(folder: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()
    }


def _predict(screen: Path, out: Path, model_path: Path, **kw):
    model = load_model(model_path, device="cpu")
    return predict_images(
        [screen],
        model,
        submission=out / "submission.csv",
        labels_dir=out / "labels",
        overlays_dir=out / "overlays",
        rois_dir=out / "rois",
        model_spec=ModelSpec.of(model_path, "cpu"),
        **kw,
    )


def test_cluster_predict_writes_what_one_process_writes(client, tiny_model, tmp_path):
    screen = _screen(tmp_path / "screen")
    local = _predict(screen, tmp_path / "local", tiny_model)
    on_cluster = _predict(screen, tmp_path / "cluster", tiny_model, client=client)
    assert local.n_images == on_cluster.n_images == 8
    assert len(local.failed) == len(on_cluster.failed) == 1 and "f9.png" in on_cluster.failed[0]
    assert _outputs(tmp_path / "local") == _outputs(tmp_path / "cluster")  # byte for byte
    ids = io.read_submission(tmp_path / "cluster" / "submission.csv")["id"].unique().tolist()
    assert ids == [f"plate{p}__{w}__f{f}" for p in (1, 2) for w in ("A1", "B2") for f in (1, 2)]
    # each worker loaded the model once, however many images it segmented
    assert set(client.run(loaded_models).values()) <= {0, 1}


def test_a_killed_worker_s_images_are_recomputed_elsewhere(
    client, tiny_model, tmp_path, monkeypatch
):
    screen = _screen(tmp_path / "screen", n_per_well=3)
    killed: dict[str, list] = {}

    class KillWhenBusy(predict_module.tqdm):
        def update(self, n=1):
            # at the first result that finds a worker busy (on a loaded machine not always
            # the first result), kill that worker
            busy = {} if killed else {w: ts for w, ts in client.processing().items() if ts}
            if busy:
                worker = next(iter(busy))
                killed[worker] = list(busy[worker])
                try:
                    client.run(os._exit, 1, workers=[worker])
                except Exception:  # noqa: BLE001 - the worker's connection closes as it dies
                    pass
            return super().update(n)

    monkeypatch.setattr(predict_module, "tqdm", KillWhenBusy)
    summary = _predict(screen, tmp_path / "cluster", tiny_model, client=client)
    monkeypatch.undo()
    assert killed and next(iter(killed.values())), "the killed worker had tasks in flight"
    assert summary.n_images == 12 and len(summary.failed) == 1
    _predict(screen, tmp_path / "local", tiny_model)
    assert _outputs(tmp_path / "local") == _outputs(tmp_path / "cluster")
    rows = io.read_submission(tmp_path / "cluster" / "submission.csv")
    assert rows["id"].nunique() == 12  # every image exactly once (a repeat would be refused)


def test_cluster_measure_writes_what_one_process_writes(client, tiny_model, tmp_path):
    screen = _screen(tmp_path / "screen")
    model = load_model(tiny_model, device="cpu")
    spec = ModelSpec.of(tiny_model, "cpu")
    pattern = r"(?P<plate>plate\d)/(?P<well>[A-P]\d+)/f(?P<field>\d+)"
    for out, c in ((tmp_path / "local", None), (tmp_path / "cluster", client)):
        summary = measure_images(
            [screen],
            out,
            model=model,
            name_pattern=pattern,
            client=c,
            model_spec=spec,
            n_report_overlays=2,
        )
        assert summary.n_images == 8 and len(summary.failed) == 1
    for name in ("cells.csv", "images.csv"):
        local, on_cluster = (tmp_path / d / name for d in ("local", "cluster"))
        assert local.read_bytes() == on_cluster.read_bytes()
    for sub in ("labels", "overlays"):
        assert _outputs(tmp_path / "local" / sub) == _outputs(tmp_path / "cluster" / sub)
    images = pd.read_csv(tmp_path / "cluster" / "images.csv", dtype=str)
    assert images["plate"].tolist() == ["plate1"] * 4 + ["plate2"] * 4
    assert images["well"].tolist() == ["A1", "A1", "B2", "B2"] * 2
    assert images["field"].tolist() == ["1", "2"] * 4
    assert images["image_id"].iloc[-1] == "plate2__B2__f2"


def test_predict_resume_recomputes_only_what_is_missing(tiny_model, tmp_path):
    screen = _screen(tmp_path / "screen")
    out = tmp_path / "out"
    _predict(screen, out, tiny_model)
    before = _outputs(out)
    for sub, ext in (("labels", "tif"), ("rois", "zip")):
        (out / sub / f"plate1__B2__f2.{ext}").unlink()
    (out / "submission.csv").unlink()
    summary = _predict(screen, out, tiny_model, resume=True)
    assert summary.n_resumed == 7 and summary.n_images == 8
    assert _outputs(out) == before
    with pytest.raises(io.PhasesegInputError, match="needs --labels-dir"):
        predict_images([screen], load_model(tiny_model), submission=out / "s.csv", resume=True)


def test_measure_resume_reads_back_labels_and_cell_types(tiny_model, tmp_path):
    screen = _screen(tmp_path / "screen")
    out = tmp_path / "out"
    model = load_model(tiny_model, device="cpu")
    measure_images([screen], out, model=model, n_report_overlays=2)
    before = {n: (out / n).read_bytes() for n in ("cells.csv", "images.csv")}
    (out / "overlays" / "plate2__A1__f1.png").unlink()
    # the model is not needed for the 7 complete images: their labels are read back
    summary = measure_images([screen], out, model=model, resume=True, n_report_overlays=2)
    assert summary.n_resumed == 7 and summary.n_images == 8
    assert {n: (out / n).read_bytes() for n in before} == before
    assert (out / "overlays" / "plate2__A1__f1.png").is_file()


def test_plate_ids_and_livecell_columns(tmp_path):
    """Two plates' A1.tif do not collide; LIVECell names give well, field and time."""
    for plate in ("p1", "p2"):
        (tmp_path / "screen" / plate).mkdir(parents=True)
        for name in ("A1", "SHSY5Y_Phase_C7_1_01d04h00m_3"):
            Image.fromarray(np.full((40, 50), 100, np.uint8)).save(
                tmp_path / "screen" / plate / f"{name}.tif"
            )
    files = io.find_image_files([tmp_path / "screen"])
    assert [f.image_id for f in files] == [
        "p1__A1",
        "p1__SHSY5Y_Phase_C7_1_01d04h00m_3",
        "p2__A1",
        "p2__SHSY5Y_Phase_C7_1_01d04h00m_3",
    ]
    with pytest.raises(io.PhasesegInputError, match="same image id 'A1'"):
        io.find_image_files([tmp_path / "screen" / "p1", tmp_path / "screen" / "p2"])
    # a flat folder keeps the file ids (the competition's submission ids)
    assert [f.image_id for f in io.find_image_files([tmp_path / "screen" / "p1"])][0] == "A1"
    labels = tmp_path / "labels"
    for f in files:
        lab = np.zeros((40, 50), np.int32)
        lab[5:15, 5:15] = 1
        write_labels(labels / f"{f.image_id}.tif", lab)
    out = tmp_path / "out"
    measure_images([tmp_path / "screen"], out, labels=[labels], n_report_overlays=2)
    images = pd.read_csv(out / "images.csv", dtype={"field": str, "well": str})
    assert images["well"].tolist()[1::2] == ["C7", "C7"]
    assert images["field"].tolist()[1::2] == ["3", "3"]
    assert images["elapsed_h"].tolist()[1::2] == [28.0, 28.0]
    assert read_labels(out / "labels" / "p2__A1.tif").max() == 1


def test_cluster_options_are_checked_before_any_work(tmp_path, capsys):
    from phaseseg.cli import main

    images = _screen(tmp_path / "screen", n_per_well=1)
    argv = ["predict", str(images), "--labels-dir", str(tmp_path / "out")]
    assert main([*argv, "--workers", "0"]) == 2
    assert "--workers 0: give 1 or more" in capsys.readouterr().err
    resume = ["predict", str(images), "--submission", str(tmp_path / "s.csv"), "--resume"]
    assert main(resume) == 2
    assert "--resume with --submission needs --labels-dir" in capsys.readouterr().err
    assert not (tmp_path / "out").exists() and not (tmp_path / "s.csv").exists()

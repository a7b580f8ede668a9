"""A new culture as a cell type of its own, and ``phaseseg finetune``: the type head grows a
class, thresholds start from the closest type and are tuned, the model file lists the type,
predict accepts it, the encoder can stay frozen, a time budget ends training."""

from __future__ import annotations

import json
from dataclasses import asdict

import numpy as np
import pytest
import tifffile
import torch
from PIL import Image
from synthetic import blob_image, blob_labels, make_dataset
from test_fit_steps import TINY_NET, retype, tiny_config, untrained_model

from phaseseg.cli import main
from phaseseg.io import PhasesegInputError
from phaseseg.nn.checkpoint import load_model_file, save_model
from phaseseg.nn.model import add_cell_types, build_model
from phaseseg.segment.postprocess import PostprocessParams
from phaseseg.segment.segmenter import load_model
from phaseseg.train import TrainConfig, fit
from phaseseg.train.finetune import FINETUNE_DEFAULTS, finetune

TYPES = ["astro", "cort", "shsy5y"]
#: thresholds of the init model, not the defaults: a fine-tune must keep them
INIT_THRESHOLDS = {t: PostprocessParams(fg_thresh=0.4 + 0.1 * i) for i, t in enumerate(TYPES)}


def init_model(path):
    untrained_model(path, cell_types=TYPES)
    payload = load_model_file(path)
    meta = {k: v for k, v in payload.items() if k not in ("state_dict", "format")}
    meta["postprocess"] = {t: p.to_dict() for t, p in INIT_THRESHOLDS.items()}
    save_model(path, payload["state_dict"], meta)
    return path


def user_folder(root, n=3, size=(256, 256)):
    """``root/images/cell<i>.png`` and ``root/labels/cell<i>.tif`` as a user has them."""
    rng = np.random.default_rng(1)
    (root / "images").mkdir(parents=True)
    (root / "labels").mkdir()
    for i in range(n):
        labels = blob_labels(size, 30, rng)
        Image.fromarray(blob_image(labels, rng)).save(root / "images" / f"cell{i}.png")
        tifffile.imwrite(root / "labels" / f"cell{i}.tif", labels.astype(np.uint16))
    return root


def test_a_new_cell_type_grows_the_head_and_keeps_the_known_types(tmp_path, capsys):
    init = init_model(tmp_path / "init.pt")
    data = retype(make_dataset(tmp_path / "data"), {t: "mycells" for t in TYPES})
    (tmp_path / "cfg.json").write_text(json.dumps(asdict(tiny_config())))
    code = main(
        ["train", str(data), "--out", str(tmp_path / "m.pt"), "--init", str(init),
         "--config", str(tmp_path / "cfg.json")]
    )  # fmt: skip
    assert code == 0
    payload = load_model_file(tmp_path / "m.pt")
    assert payload["cell_types"] == [*TYPES, "mycells"]
    assert payload["net"]["n_cell_types"] == payload["train"]["net"]["n_cell_types"] == 4
    assert payload["state_dict"]["type_head.weight"].shape[0] == 4
    source = payload["added_cell_types"]["mycells"]["initialised_from"]
    assert source in TYPES and payload["added_cell_types"]["mycells"]["images"] == 6
    for t in TYPES:  # known types keep the init model's thresholds (no images of them here)
        assert payload["postprocess"][t] == INIT_THRESHOLDS[t].to_dict()
    assert set(payload["scores"]["tuned"]) == {"mycells", "overall", "cell_type_accuracy"}
    out = capsys.readouterr().out
    score = payload["scores"]["tuned"]["mycells"]
    assert f"fold 0 score of mycells (tuned thresholds): {score:.4f}\n" in out
    assert "astro" not in out and "overall" not in out

    model = load_model(tmp_path / "m.pt", device="cpu")
    assert model.cell_types == [*TYPES, "mycells"]
    image = np.asarray(Image.open(data / "train" / "img00.png"))
    assert model.segment_full(image, cell_type="mycells").cell_type == "mycells"
    assert set(model.segment_full(image).cell_type_probs) == {*TYPES, "mycells"}
    labels = tmp_path / "labels"
    argv = ["predict", str(data / "train"), "--model", str(tmp_path / "m.pt")]
    assert main([*argv, "--labels-dir", str(labels), "--cell-type", "mycells"]) == 0
    assert len(list(labels.glob("*.tif"))) == 6
    assert main([*argv, "--labels-dir", str(labels), "--cell-type", "yourcells"]) == 2
    err = capsys.readouterr().err
    assert "--cell-type 'yourcells': the model knows astro, cort, shsy5y, mycells" in err


def test_a_new_type_starts_as_a_copy_of_the_closest_known_type(tmp_path):
    """The grown head gives the known types the logits they had and the new type those of the
    closest known type; the new type's thresholds are that type's."""
    init = init_model(tmp_path / "init.pt")
    data = retype(make_dataset(tmp_path / "data"), {t: "mycells" for t in TYPES})
    fit(data, tmp_path / "m.pt", tiny_config(init=str(init), lr=0.0, ema_decay=0, tune=False))
    payload = load_model_file(tmp_path / "m.pt")
    source = payload["added_cell_types"]["mycells"]["initialised_from"]
    assert payload["postprocess"]["mycells"] == INIT_THRESHOLDS[source].to_dict()
    head = payload["state_dict"]["type_head.weight"]
    assert torch.equal(head[3], head[TYPES.index(source)])  # lr 0: as initialised

    net = build_model(TINY_NET).eval()
    grown = add_cell_types(net, [1, 0]).eval()
    x = torch.rand(2, 1, 64, 64)
    with torch.no_grad():
        old, new = net(x)["cell_type"], grown(x)["cell_type"]
    assert new.shape == (2, 5) and torch.allclose(new[:, :3], old, atol=1e-6)
    assert torch.allclose(new[:, 3], old[:, 1], atol=1e-6)
    assert torch.allclose(new[:, 4], old[:, 0], atol=1e-6)
    assert grown.type_head is not net.type_head and net.config.n_cell_types == 3


def test_freezing_the_encoder_keeps_its_weights_and_statistics(tmp_path):
    init = init_model(tmp_path / "init.pt")
    data = make_dataset(tmp_path / "data")
    (tmp_path / "cfg.json").write_text(json.dumps(asdict(tiny_config(ema_decay=0, tune=False))))
    argv = ["train", str(data), "--out", str(tmp_path / "m.pt"), "--init", str(init)]
    argv += ["--config", str(tmp_path / "cfg.json"), "--freeze", "encoder"]
    assert main(argv) == 0  # the flag of phaseseg train
    old = load_model_file(init)["state_dict"]
    new = load_model_file(tmp_path / "m.pt")["state_dict"]
    down = [k for k in old if k.startswith("down.")]
    assert down and all(torch.equal(old[k], new[k]) for k in down)  # running stats too
    assert not torch.equal(old["pixel_head.weight"], new["pixel_head.weight"])
    with pytest.raises(PhasesegInputError, match="freeze must be one of none, encoder"):
        TrainConfig(freeze="decoder")


def test_kept_batchnorm_statistics_stay_while_the_weights_train(tmp_path):
    init = init_model(tmp_path / "init.pt")
    data = make_dataset(tmp_path / "data")
    cfg = tiny_config(init=str(init), bn_stats="keep", ema_decay=0, tune=False)
    fit(data, tmp_path / "m.pt", cfg)
    old = load_model_file(init)["state_dict"]
    new = load_model_file(tmp_path / "m.pt")["state_dict"]
    stats = [k for k in old if k.endswith(("running_mean", "running_var"))]
    assert stats and all(torch.equal(old[k], new[k]) for k in stats)
    assert not torch.equal(old["down.0.0.0.weight"], new["down.0.0.0.weight"])


def test_a_time_budget_ends_training(tmp_path):
    data = make_dataset(tmp_path / "data")
    cfg = tiny_config(steps=10**6, minutes=0.05, eval_every=10**6, checkpoint_every=10**6)
    cfg.tune = False
    result = fit(data, tmp_path / "m.pt", cfg, device="cpu")
    assert 1 <= result.steps < 10**6
    assert result.train_seconds < 0.05 * 60 + 5  # the last step may end the budget late
    assert load_model_file(tmp_path / "m.pt")["scores"]["best_step"] == result.steps


def test_finetune_end_to_end_writes_one_model_with_the_new_type(tmp_path, capsys):
    init = init_model(tmp_path / "init.pt")
    user = user_folder(tmp_path / "user", size=(96, 96))
    out = tmp_path / "ft" / "model.pt"
    out.parent.mkdir()
    argv = ["finetune", str(user / "images"), "--labels", str(user / "labels")]
    argv += ["--cell-type", "mycells", "--minutes", "0.1", "--out", str(out), "--init", str(init)]
    cfg = {**FINETUNE_DEFAULTS, "crop_size": 64, "batch_size": 2}  # quicker than 8 x 256²
    (tmp_path / "cfg.json").write_text(json.dumps(cfg))
    argv += ["--config", str(tmp_path / "cfg.json")]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert sorted(p.name for p in out.parent.iterdir()) == ["model.config.json", "model.pt"]
    payload = load_model_file(out)
    assert payload["cell_types"] == [*TYPES, "mycells"]
    assert payload["train"]["freeze"] == "encoder" and payload["train"]["minutes"] <= 0.1
    assert payload["scores"]["tuned_on"] == "all 3 images (in-sample)"
    assert set(payload["postprocess"]) == {*TYPES, "mycells"}
    score = payload["scores"]["tuned"]["mycells"]
    assert f"mycells score, thresholds tuned on all 3 images (in-sample): {score:.4f}" in printed
    assert "new cell type mycells (started from" in printed
    labels = tmp_path / "labels"
    argv = ["predict", str(user / "images"), "--model", str(out), "--cell-type", "mycells"]
    assert main([*argv, "--labels-dir", str(labels)]) == 0
    assert sorted(p.name for p in labels.iterdir()) == ["cell0.tif", "cell1.tif", "cell2.tif"]


def test_finetune_respects_its_budget_and_holds_out_a_fold_when_asked(tmp_path, monkeypatch):
    import time

    import phaseseg.train.loop as loop

    init = init_model(tmp_path / "init.pt")
    user = user_folder(tmp_path / "user", n=4, size=(96, 96))
    cfg = tiny_config(steps=10**6, eval_every=10**6, checkpoint_every=10**6, freeze="encoder")
    real_step, step_seconds = loop.train_step, []

    def timed(*args, **kwargs):
        t0 = time.monotonic()
        out = real_step(*args, **kwargs)
        step_seconds.append(time.monotonic() - t0)
        return out

    monkeypatch.setattr(loop, "train_step", timed)
    result = finetune(
        [user / "images"], user / "labels", "mycells", tmp_path / "m.pt", minutes=0.05,
        init=str(init), config=cfg, val_fold=0, device="cpu",
    )  # fmt: skip
    # the loop stops at the first step past its share of the budget: the time before that last
    # step is within the budget, however long the step itself took on a loaded machine
    assert len(step_seconds) == result.steps
    assert result.train_seconds - step_seconds[-1] <= 0.05 * 60
    assert result.steps >= 1 and result.added and result.tuned_on == "fold 0"
    payload = load_model_file(tmp_path / "m.pt")
    assert payload["data"]["val_images"] == 1 and payload["data"]["train_images"] == 3
    assert result.score == payload["scores"]["tuned"]["mycells"]
    with pytest.raises(PhasesegInputError, match="val fold 7: 4 images are dealt into folds 0..3"):
        finetune([user / "images"], user / "labels", "mycells", tmp_path / "n.pt", val_fold=7)
    with pytest.raises(PhasesegInputError, match="cell type 'my cells'"):
        finetune([user / "images"], user / "labels", "my cells", tmp_path / "n.pt")
    assert not (tmp_path / "n.pt").exists()


def test_model_files_with_and_without_added_cell_types(tmp_path):
    init = init_model(tmp_path / "init.pt")
    payload = load_model_file(init)
    assert "added_cell_types" not in payload  # files of earlier versions: none, still load
    meta = {k: v for k, v in payload.items() if k not in ("state_dict", "format")}
    bad = {**meta, "added_cell_types": {"microglia": {"initialised_from": "astro"}}}
    save_model(tmp_path / "bad.pt", payload["state_dict"], bad)
    with pytest.raises(PhasesegInputError, match="added_cell_types microglia: not among"):
        load_model_file(tmp_path / "bad.pt")
    bad["added_cell_types"] = {"cort": {"initialised_from": "cort"}}
    save_model(tmp_path / "bad.pt", payload["state_dict"], bad)
    with pytest.raises(PhasesegInputError, match="initialised_from must name another"):
        load_model_file(tmp_path / "bad.pt")
    assert TINY_NET["n_cell_types"] == 3


def test_an_interrupted_finetune_resumes_and_cleans_up(tmp_path, monkeypatch, caplog):
    import phaseseg.train.loop as loop

    init = init_model(tmp_path / "init.pt")
    user = user_folder(tmp_path / "user", n=3, size=(96, 96))
    cfg = tiny_config(steps=10**6, eval_every=10**6, checkpoint_every=1, freeze="encoder")
    real_step, calls = loop.train_step, []

    def interrupted(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real_step(*args, **kwargs)

    monkeypatch.setattr(loop, "train_step", interrupted)
    args = ([user / "images"], user / "labels", "mycells", tmp_path / "m.pt")
    with pytest.raises(KeyboardInterrupt):  # a budget that outlasts 3 steps on a loaded machine
        finetune(*args, minutes=0.5, init=str(init), config=cfg)
    work = tmp_path / "m.pt.finetune"
    assert not (tmp_path / "m.pt").exists()  # nothing half-done where the model goes
    assert (work / "model.pt.state.pt").is_file() and (work / "data" / "train.csv").is_file()
    monkeypatch.setattr(loop, "train_step", real_step)
    with caplog.at_level("INFO", logger="phaseseg"):
        result = finetune(*args, minutes=0.05, init=str(init), config=cfg, resume=True)
    assert "at step 2" in caplog.text and "resumed from" in caplog.text
    assert result.steps > 2 and load_model_file(tmp_path / "m.pt")["cell_types"][-1] == "mycells"
    assert not work.exists()

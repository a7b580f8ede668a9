"""``fit`` in named steps: a typed result, the caller's config untouched, the resolved config
written by the library beside the model, cell types from the model, and validation by the
declared cell type on a data set of one culture."""

from __future__ import annotations

import json
from dataclasses import asdict

import numpy as np
import pandas as pd
import pytest
from synthetic import make_dataset

from phaseseg.cli import main
from phaseseg.nn.checkpoint import load_model_file, save_model
from phaseseg.nn.model import build_model
from phaseseg.segment.postprocess import PostprocessParams
from phaseseg.segment.tuning import score_val, thresholds_by
from phaseseg.train import FitResult, InitModel, TrainConfig, config_path, fit, resolve_config
from phaseseg.train.samples import Sample

TINY_NET = {"channels": [4, 8, 16], "convs_per_block": 1, "n_cell_types": 3}
OWN_TYPES = ["glia", "neuron", "other"]


def tiny_config(**kw) -> TrainConfig:
    base = dict(
        steps=2,
        batch_size=2,
        crop_size=64,
        eval_every=2,
        checkpoint_every=2,
        warmup_steps=1,
        net=TINY_NET,
    )
    return TrainConfig(**{**base, **kw})


def untrained_model(path, cell_types=OWN_TYPES, net=TINY_NET):
    """A model file of untrained tiny weights (no training needed to start from it)."""
    save_model(
        path,
        build_model(net).state_dict(),
        {
            "net": {**net, "input_scale": 1.0},
            "train": {"steps": 0},
            "cell_types": list(cell_types),
            "postprocess": {t: PostprocessParams().to_dict() for t in cell_types},
        },
    )
    return path


def retype(data, mapping):
    """Rename the cell types of a synthetic data folder (train.csv and folds.csv)."""
    for name in ("train.csv", "folds.csv"):
        table = pd.read_csv(data / name, dtype={"id": str})
        table["cell_type"] = table["cell_type"].map(mapping)
        table.to_csv(data / name, index=False)
    return data


def test_resolve_config_returns_a_new_config_and_keeps_the_input_scale_rules(tmp_path):
    init = InitModel.load(str(untrained_model(tmp_path / "init.pt")))
    cfg = tiny_config(net={"channels": [8, 8], "convs_per_block": 1, "n_cell_types": 3})
    before = asdict(cfg)
    resolved, grow = resolve_config(cfg, init)
    assert asdict(cfg) == before and resolved is not cfg
    own = {**TINY_NET, "input_scale": 1.0, "centre": False}
    assert not grow and resolved.net == own  # the init's net
    wider, grow = resolve_config(tiny_config(net={**TINY_NET, "channels": [8, 8, 16]}), init)
    assert grow and wider.net["channels"] == [8, 8, 16]
    scaled, _ = resolve_config(tiny_config(input_scale=2.0), init)
    assert scaled.net["input_scale"] == 2.0 and scaled.input_scale == 2.0
    fresh, grow = resolve_config(tiny_config(), None)
    assert not grow and fresh.net == {**TINY_NET, "input_scale": 1.0, "centre": False}


def test_fit_returns_a_typed_result_and_writes_the_config_it_used(tmp_path):
    """With ``--init`` (cell types of its own) and another input scale: the caller's config is
    unchanged, and the config file, the model file and the result agree."""
    init = untrained_model(tmp_path / "init.pt")
    data = retype(
        make_dataset(tmp_path / "data"), {"astro": "glia", "cort": "neuron", "shsy5y": "other"}
    )
    cfg = tiny_config(init=str(init), input_scale=2.0, net={"channels": [4, 8]})
    before = asdict(cfg)
    result = fit(data, tmp_path / "m.pt", cfg, device="cpu")
    assert asdict(cfg) == before
    assert isinstance(result, FitResult) and result.model_path == tmp_path / "m.pt"
    payload = load_model_file(tmp_path / "m.pt")
    assert result.config_path == config_path(tmp_path / "m.pt") == tmp_path / "m.config.json"
    assert json.loads(result.config_path.read_text()) == payload["train"] == asdict(result.config)
    net = {**TINY_NET, "input_scale": 2.0, "centre": False}
    assert payload["net"] == payload["train"]["net"] == net
    assert result.cell_types == payload["cell_types"] == OWN_TYPES
    assert set(payload["postprocess"]) == set(OWN_TYPES)
    assert result.thresholds_by == "predicted" and result.data_cell_types == OWN_TYPES
    assert result.score == result.scores["tuned"]["overall"] == result["tuned"]["overall"]
    assert "tuned" in result and len(result.history) == 1


def test_fine_tuning_on_one_declared_cell_type_reports_one_consistent_score(tmp_path, capsys):
    """A make-dataset folder of one culture: validation and tuning use its declared type, so the
    headline score is the tuned score of that type (not a mix with other types' thresholds)."""
    init = untrained_model(tmp_path / "init.pt", cell_types=["astro", "cort", "shsy5y"])
    data = retype(
        make_dataset(tmp_path / "data"), {"astro": "shsy5y", "cort": "shsy5y", "shsy5y": "shsy5y"}
    )
    (tmp_path / "cfg.json").write_text(json.dumps(asdict(tiny_config())))
    args = [
        "train",
        str(data),
        "--out",
        str(tmp_path / "m.pt"),
        "--config",
        str(tmp_path / "cfg.json"),
    ]
    assert main([*args, "--init", str(init)]) == 0
    out = capsys.readouterr().out
    payload = load_model_file(tmp_path / "m.pt")
    tuned = payload["scores"]["tuned"]
    assert payload["data"]["thresholds_by"] == "declared"
    assert payload["data"]["cell_types"] == ["shsy5y"]
    assert tuned["overall"] == tuned["shsy5y"] and set(tuned) >= {"cell_type_accuracy"}
    assert f"fold 0 score of shsy5y (tuned thresholds): {tuned['shsy5y']:.4f}\n" in out
    assert "overall" not in out
    assert "--cell-type shsy5y" in out
    assert (tmp_path / "m.config.json").is_file()


def test_score_val_chooses_thresholds_by_the_predicted_or_the_declared_type():
    labels = np.zeros((32, 32), np.int32)
    labels[4:14, 4:14], labels[18:28, 18:28] = 1, 2
    fg = (labels > 0).astype(np.float32)
    dist = fg.copy()
    sample = Sample("img", 0, (fg * 200).astype(np.uint8), labels, {})  # declared: astro
    wrong_guess = (fg, dist, np.array([0.1, 0.8, 0.1], np.float32))  # predicted: cort
    params = {
        "astro": PostprocessParams(min_size=1),
        "cort": PostprocessParams(fg_thresh=1.0),  # finds nothing
        "shsy5y": PostprocessParams(),
    }
    predicted = score_val([sample], [wrong_guess], params)
    declared = score_val([sample], [wrong_guess], params, by="declared")
    assert predicted["overall"] == 0.0 and declared["overall"] == 1.0
    assert predicted["cell_type_accuracy"] == declared["cell_type_accuracy"] == 0.0
    with pytest.raises(ValueError, match="by must be one of"):
        score_val([sample], [wrong_guess], params, by="true")
    assert thresholds_by(["shsy5y", "shsy5y"]) == "declared"

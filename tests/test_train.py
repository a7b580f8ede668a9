"""Training on a tiny synthetic set: a few steps, resume after kill -9, predict with the result."""

import json
import signal
import subprocess
import sys
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest
import torch
from synthetic import make_dataset

from phaseseg import train
from phaseseg.cli import main
from phaseseg.nn.checkpoint import load_model_file
from phaseseg.segment.postprocess import PostprocessParams
from phaseseg.segment.segmenter import load_model
from phaseseg.train import TrainConfig, fit, loop, update_ema
from phaseseg.train.samples import load_samples

TINY_NET = {"channels": [4, 8, 16], "convs_per_block": 1, "n_cell_types": 3}


def tiny_config(**kw) -> TrainConfig:
    base = dict(
        steps=6,
        batch_size=2,
        crop_size=64,
        eval_every=3,
        checkpoint_every=2,
        warmup_steps=2,
        net=TINY_NET,
    )
    return TrainConfig(**{**base, **kw})


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return make_dataset(tmp_path_factory.mktemp("data"))


def test_fit_writes_a_loadable_model_with_metadata(dataset, tmp_path):
    scores = fit(dataset, tmp_path / "m.pt", tiny_config(), device="cpu")
    payload = load_model_file(tmp_path / "m.pt")
    assert scores == payload["scores"]  # what fit returns is what the file records
    # the kept weights are the best-scored evaluation's (trained weights or moving average)
    best = max(payload["history"], key=lambda r: max(r["overall"], r["ema"]["overall"]))
    assert scores["best_step"] == best["step"] == scores["untuned"]["step"]
    # fold 0 of the synthetic set holds astro images only: overall is the astro score
    assert scores["tuned"]["overall"] == scores["tuned"]["astro"]
    assert payload["train"]["steps"] == 6 and payload["seed"] == 0
    assert payload["data"]["val_fold"] == 0 and payload["data"]["val_images"] == 2
    assert set(payload["postprocess"]) == {"astro", "cort", "shsy5y"}
    assert len(payload["history"]) == 2  # evaluated at steps 3 and 6
    labels = load_model(tmp_path / "m.pt", device="cpu").segment(
        np.full((96, 128), 100, dtype=np.uint8)
    )
    assert labels.shape == (96, 128) and labels.dtype == np.int32


def test_training_is_reproducible(dataset, tmp_path):
    fit(dataset, tmp_path / "a.pt", tiny_config(steps=3, eval_every=3), device="cpu")
    fit(dataset, tmp_path / "b.pt", tiny_config(steps=3, eval_every=3), device="cpu")
    a = load_model_file(tmp_path / "a.pt")["state_dict"]
    b = load_model_file(tmp_path / "b.pt")["state_dict"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_init_starts_from_a_model_files_weights(dataset, tmp_path):
    """Fine-tuning starts from the given weights (lr 0 keeps them; batch-norm statistics still
    move), takes their architecture and records where they came from."""
    fit(dataset, tmp_path / "a.pt", tiny_config(steps=3, eval_every=3), device="cpu")
    other_net = {**TINY_NET, "channels": [4, 8]}
    cfg = tiny_config(steps=2, eval_every=2, lr=0.0, init=str(tmp_path / "a.pt"), net=other_net)
    fit(dataset, tmp_path / "b.pt", cfg, device="cpu")
    a, b = (load_model_file(tmp_path / n) for n in ("a.pt", "b.pt"))
    assert b["net"] == a["net"] and b["train"]["net"] == a["net"]
    weights = [k for k in a["state_dict"] if "running_" not in k and "num_batches" not in k]
    assert len(weights) > 10
    assert all(torch.equal(a["state_dict"][k], b["state_dict"][k]) for k in weights)
    assert b["init"]["path"] == str(tmp_path / "a.pt") and b["init"]["train"]["steps"] == 3


def test_init_with_a_wider_net_grows_the_model(dataset, tmp_path):
    """A ``net`` wider than the init file's (same depth) widens it instead of replacing it."""
    fit(dataset, tmp_path / "a.pt", tiny_config(steps=3, eval_every=3), device="cpu")
    wide = {**TINY_NET, "channels": [8, 8, 16]}
    cfg = tiny_config(steps=2, eval_every=2, lr=0.0, init=str(tmp_path / "a.pt"), net=wide)
    fit(dataset, tmp_path / "b.pt", cfg, device="cpu")
    a, b = (load_model_file(tmp_path / n) for n in ("a.pt", "b.pt"))
    assert b["net"] == {**wide, "input_scale": 1.0, "centre": False}
    assert a["net"] == {**TINY_NET, "input_scale": 1.0, "centre": False}
    first = "down.0.0.0.weight"
    assert b["state_dict"][first].shape[0] == 8
    assert torch.equal(b["state_dict"][first][:4], a["state_dict"][first])


def test_init_at_another_input_scale_keeps_the_weights(dataset, tmp_path):
    """``input_scale`` re-trains a model's weights on enlarged images; later fine-tunes keep it."""
    fit(dataset, tmp_path / "a.pt", tiny_config(steps=3, eval_every=3), device="cpu")
    cfg = tiny_config(steps=2, eval_every=2, lr=0.0, init=str(tmp_path / "a.pt"), input_scale=2.0)
    fit(dataset, tmp_path / "b.pt", cfg, device="cpu")
    a, b = (load_model_file(tmp_path / n) for n in ("a.pt", "b.pt"))
    assert a["net"]["input_scale"] == 1.0 and b["net"] == {**a["net"], "input_scale": 2.0}
    first = "down.0.0.0.weight"
    assert torch.equal(b["state_dict"][first], a["state_dict"][first])
    cfg = tiny_config(steps=2, eval_every=2, init=str(tmp_path / "b.pt"))
    fit(dataset, tmp_path / "c.pt", cfg, device="cpu")
    assert load_model_file(tmp_path / "c.pt")["net"]["input_scale"] == 2.0
    labels = load_model(tmp_path / "c.pt", device="cpu").segment(np.zeros((70, 90), np.uint8))
    assert labels.shape == (70, 90)


def test_fit_without_tuning_keeps_the_default_thresholds(dataset, tmp_path):
    """``tune=False`` (``--no-tune``) ends after training; ``retune`` tunes the file later."""
    scores = fit(dataset, tmp_path / "m.pt", tiny_config(tune=False), device="cpu")
    payload = load_model_file(tmp_path / "m.pt")
    assert "tuned" not in scores and scores == payload["scores"]
    assert payload["postprocess"]["shsy5y"] == PostprocessParams().to_dict()
    assert len(payload["history"]) == 2 and payload["train_seconds"] > 0
    tuned = train.retune(tmp_path / "m.pt", dataset, device="cpu")
    assert load_model_file(tmp_path / "m.pt")["scores"]["tuned"] == tuned


def test_worker_processes_cut_the_same_batches(dataset):
    """Batches depend on the step alone, not on which process cuts them."""
    cfg = tiny_config(steps=5)
    samples = load_samples(dataset)
    in_process = list(train.iter_batches(samples, cfg, start=2, workers=0))
    in_workers = list(train.iter_batches(samples, cfg, start=2, workers=2))
    assert len(in_process) == len(in_workers) == 3
    for a, b in zip(in_process, in_workers, strict=True):
        assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True))


def test_steps_for_minutes_prints_a_step_count(tmp_path):
    """The GPU run's sizing script times the config's step and prints how many fit."""
    (tmp_path / "c.json").write_text(
        json.dumps({"batch_size": 2, "crop_size": 64, "net": TINY_NET})
    )
    script = Path(__file__).parents[1] / "benchmarks" / "steps_for_minutes.py"
    args = [sys.executable, str(script), "--config", str(tmp_path / "c.json"), "--minutes", "0.1"]
    out = subprocess.run(args, capture_output=True, text=True, check=True)
    assert int(out.stdout) > 0 and "ms per step" in out.stderr


def test_parallel_loading_gives_the_same_samples(tmp_path):
    data = make_dataset(tmp_path / "data", n_images=16)
    one = load_samples(data, workers=1)
    two = load_samples(data, workers=2, cache_dir=tmp_path / "cache")
    cached = load_samples(data, workers=2, cache_dir=tmp_path / "cache")
    assert [s.image_id for s in one] == [s.image_id for s in two] == [s.image_id for s in cached]
    for a, b, c in zip(one, two, cached, strict=True):
        assert np.array_equal(a.image, b.image) and np.array_equal(a.labels, c.labels)
        for k in a.targets:
            assert np.array_equal(a.targets[k], b.targets[k])
            assert np.array_equal(a.targets[k], c.targets[k])


def test_update_ema_averages_floats_and_copies_counters():
    net, ema = torch.nn.BatchNorm1d(3), torch.nn.BatchNorm1d(3)
    with torch.no_grad():
        net.weight.fill_(2.0)
        ema.weight.fill_(0.0)
    net.num_batches_tracked.fill_(7)
    update_ema(ema, net, decay=0.9, step=1000)
    assert torch.allclose(ema.weight, torch.full((3,), 0.2))
    assert ema.num_batches_tracked.item() == 7
    update_ema(ema, net, decay=0.9, step=0)  # early on the average follows the weights quickly
    assert torch.allclose(ema.weight, torch.full((3,), 0.2 + 1.8 * 0.9))


def fit_interrupted_at(stop_step, dataset, out, cfg, monkeypatch) -> None:
    """Run ``fit`` until a Ctrl-C arrives as batch ``stop_step`` is drawn (state is saved)."""
    real_make_batch = loop.make_batch

    def interrupting(samples, cfg, step):
        if step == stop_step:
            raise KeyboardInterrupt
        return real_make_batch(samples, cfg, step)

    monkeypatch.setattr(loop, "make_batch", interrupting)
    with pytest.raises(KeyboardInterrupt):
        fit(dataset, out, cfg, device="cpu")
    monkeypatch.setattr(loop, "make_batch", real_make_batch)


def test_ema_weights_are_scored_and_resumed(dataset, tmp_path, monkeypatch):
    """With ``ema_decay`` both weight sets are scored at each evaluation, and the moving
    average survives an interruption: a resumed run ends where an uninterrupted one does."""
    cfg = tiny_config(steps=6, eval_every=3, ema_decay=0.9)
    fit(dataset, tmp_path / "a.pt", cfg, device="cpu")
    payload = load_model_file(tmp_path / "a.pt")
    assert [("ema" in r) for r in payload["history"]] == [True, True]
    assert payload["scores"]["untuned"]["weights"] in ("trained", "ema")
    fit_interrupted_at(4, dataset, tmp_path / "c.pt", cfg, monkeypatch)
    fit(dataset, tmp_path / "c.pt", cfg, resume=True, device="cpu")
    fit(dataset, tmp_path / "d.pt", cfg, device="cpu")
    c = torch.load(tmp_path / "c.pt.state.pt", weights_only=True)["ema"]
    d = torch.load(tmp_path / "d.pt.state.pt", weights_only=True)["ema"]
    assert all(torch.allclose(c[k].float(), d[k].float()) for k in c)


def test_resume_with_changed_settings_warns(dataset, tmp_path, monkeypatch, caplog):
    """Resuming under other settings (e.g. a shortened schedule) is allowed but logged."""
    fit_interrupted_at(
        2, dataset, tmp_path / "m.pt", tiny_config(steps=6, eval_every=6), monkeypatch
    )
    with caplog.at_level("WARNING", logger="phaseseg"):
        cfg = tiny_config(steps=4, eval_every=4)
        fit(dataset, tmp_path / "m.pt", cfg, resume=True, device="cpu")
    assert "steps 6 -> 4" in caplog.text and "eval_every 6 -> 4" in caplog.text


def test_init_from_a_missing_file_is_a_clear_error(dataset, tmp_path, capsys):
    code = main(["train", str(dataset), "--out", str(tmp_path / "m.pt"), "--init", "nope.pt"])
    assert code != 0 and "nope.pt" in capsys.readouterr().err


def test_resume_after_kill_9(dataset, tmp_path):
    out = tmp_path / "m.pt"
    args = [
        sys.executable,
        "-m",
        "phaseseg.cli",
        "train",
        str(dataset),
        "--out",
        str(out),
        "--config",
        str(tmp_path / "cfg.json"),
    ]
    cfg = tiny_config(steps=400, eval_every=400, checkpoint_every=5)

    (tmp_path / "cfg.json").write_text(json.dumps(asdict(cfg)))
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    state = out.with_name(out.name + ".state.pt")
    deadline = time.time() + 120
    while not state.exists() and time.time() < deadline:
        time.sleep(0.2)
    time.sleep(0.5)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert state.exists(), "no training state was written before the kill"
    step_at_kill = torch.load(state, weights_only=True)["state"]["step"]
    assert 0 < step_at_kill < 400
    # resume and finish a shorter run: steps continue from the saved state
    cfg2 = tiny_config(steps=step_at_kill + 4, eval_every=1000, checkpoint_every=5)
    (tmp_path / "cfg.json").write_text(json.dumps(asdict(cfg2)))
    assert main([*args[3:], "--resume"]) == 0
    final = torch.load(state, weights_only=True)["state"]
    assert final["step"] == step_at_kill + 4
    assert load_model_file(out)["train"]["steps"] == step_at_kill + 4


def test_train_cli_bad_inputs(tmp_path, capsys):
    assert main(["train", str(tmp_path / "nowhere"), "--out", str(tmp_path / "m.pt")]) == 2
    err = capsys.readouterr().err
    assert "nowhere" in err and "train.csv" in err and len(err.strip().splitlines()) == 1
    (tmp_path / "cfg.json").write_text('{"stepz": 3}')
    assert (
        main(["train", str(tmp_path), "--out", "m.pt", "--config", str(tmp_path / "cfg.json")]) == 2
    )
    assert "unknown training option" in capsys.readouterr().err


def test_train_cli_bad_fold_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "data", "--out", "m.pt", "--val-fold", "abc"])
    assert exit_info.value.code == 2
    assert "fold number or 'none'" in capsys.readouterr().err


def test_threshold_optimism_tunes_on_one_half_and_scores_the_other(dataset, tmp_path):
    fit(dataset, tmp_path / "m.pt", tiny_config(), device="cpu")
    script = Path(__file__).parents[1] / "benchmarks" / "threshold_optimism.py"
    args = [sys.executable, str(script), "--model", str(tmp_path / "m.pt"), "--data", str(dataset)]
    subprocess.run([*args, "--json", str(tmp_path / "o.json")], check=True, capture_output=True)
    result = json.loads((tmp_path / "o.json").read_text())
    assert result["images"] == 2  # fold 0 of the synthetic set: two astro images, one per half
    held_out = result["tuned_on_other_half"]
    assert set(held_out) == {"astro", "overall"}
    assert held_out["astro"] == held_out["overall"]

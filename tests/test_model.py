import os
import pickle
import subprocess
import sys

import numpy as np
import pytest
import torch

from phaseseg.io import PhasesegInputError
from phaseseg.nn.checkpoint import FORMAT, load_model_file, save_model
from phaseseg.nn.model import NetConfig, build_model, can_widen, widen
from phaseseg.segment.postprocess import PostprocessParams
from phaseseg.segment.segmenter import Segmenter, load_model

TINY = NetConfig(channels=(4, 8, 16), convs_per_block=1)


def test_forward_shapes():
    net = build_model(TINY).eval()
    out = net(torch.zeros(2, 1, 64, 48))
    assert out["pixel"].shape == (2, 2, 64, 48)
    assert out["cell_type"].shape == (2, 3)
    assert build_model(TINY.to_dict()).config == TINY
    assert TINY.stride == 4


def test_input_scale_runs_on_the_enlarged_image_and_answers_on_the_image_grid():
    torch.manual_seed(0)
    net = build_model(TINY).eval()
    big = build_model(NetConfig(channels=(4, 8, 16), convs_per_block=1, input_scale=2.0)).eval()
    big.load_state_dict(net.state_dict())
    x = torch.randn(1, 1, 20, 28)
    out = big(x)
    assert out["pixel"].shape == (1, 2, 20, 28) and out["cell_type"].shape == (1, 3)
    # the same as enlarging by hand, running the plain network and averaging 2x2 blocks
    up = torch.nn.functional.interpolate(x, size=(40, 56), mode="bilinear", align_corners=False)
    want = torch.nn.functional.avg_pool2d(net(up)["pixel"], 2)
    assert torch.allclose(out["pixel"], want, atol=1e-5)
    assert not torch.allclose(out["pixel"], net(x)["pixel"], atol=1e-2)
    # a scale that does not divide the stride still answers on the image grid
    odd = build_model(NetConfig(channels=(4, 8, 16), convs_per_block=1, input_scale=1.5)).eval()
    assert odd(x)["pixel"].shape == (1, 2, 20, 28)
    assert NetConfig.from_dict({"channels": [4, 8]}).input_scale == 1.0  # older model files


def test_widen_keeps_the_function_and_adds_trainable_channels():
    torch.manual_seed(0)
    old = build_model(NetConfig(channels=(4, 8, 16), convs_per_block=2))
    for m in old.modules():  # non-trivial batch-norm statistics and affine parameters
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-1, 1)
            m.running_var.uniform_(0.5, 2)
            m.weight.data.uniform_(0.5, 2)
            m.bias.data.uniform_(-1, 1)
    wide_cfg = NetConfig(channels=(8, 8, 24), convs_per_block=2)
    new = widen(old, wide_cfg)
    assert new.config == wide_cfg and new.down[0][0][0].weight.shape[0] == 8
    x = torch.randn(2, 1, 32, 32)
    a, b = old.eval()(x), new.eval()(x)
    assert torch.allclose(a["pixel"], b["pixel"], atol=1e-6)
    assert torch.allclose(a["cell_type"], b["cell_type"], atol=1e-6)
    # the new channels get gradients through the zero weights that read them
    loss = new.train()(x)["pixel"].square().mean()
    loss.backward()
    assert new.pixel_head.weight.grad[:, 4:].abs().sum() > 0


def test_can_widen_needs_same_depth_and_no_narrower_level():
    base = NetConfig(channels=(4, 8, 16))
    assert can_widen(base, NetConfig(channels=(8, 8, 16)))
    assert not can_widen(base, base)
    assert not can_widen(base, NetConfig(channels=(8, 4, 16)))
    assert not can_widen(base, NetConfig(channels=(8, 8)))
    with pytest.raises(ValueError, match="cannot widen"):
        widen(build_model(base), NetConfig(channels=(8, 8)))


def _save_tiny(path, **extra):
    torch.manual_seed(0)
    net = build_model(TINY)
    meta = {
        "net": TINY.to_dict(),
        "postprocess": {t: PostprocessParams().to_dict() for t in ("astro", "cort", "shsy5y")},
        **extra,
    }
    save_model(path, net.state_dict(), meta)
    return net


def test_save_load_round_trip_gives_same_outputs(tmp_path):
    net = _save_tiny(tmp_path / "m.pt", seed=3)
    image = np.random.default_rng(0).integers(0, 255, (50, 70), dtype=np.uint8)
    before = Segmenter(net, {t: PostprocessParams() for t in ("astro", "cort", "shsy5y")})
    after = load_model(tmp_path / "m.pt", device="cpu")
    a, b = before.segment_full(image), after.segment_full(image)
    np.testing.assert_array_equal(a.foreground, b.foreground)
    np.testing.assert_array_equal(a.labels, b.labels)
    assert a.labels.shape == image.shape
    assert after.metadata["seed"] == 3 and after.metadata["format"] == FORMAT


def test_not_a_model_file(tmp_path):
    bad = tmp_path / "notes.pt"
    bad.write_text("hello")
    with pytest.raises(PhasesegInputError, match="not a phaseseg model"):
        load_model_file(bad)
    torch.save({"weights": torch.zeros(2)}, tmp_path / "other.pt")
    with pytest.raises(PhasesegInputError, match="not a phaseseg model"):
        load_model_file(tmp_path / "other.pt")
    with pytest.raises(PhasesegInputError, match="no such model"):
        load_model_file(tmp_path / "missing.pt")


def test_incompatible_version(tmp_path):
    _save_tiny(tmp_path / "m.pt")
    payload = torch.load(tmp_path / "m.pt", weights_only=True)
    payload["format_version"] = 99
    torch.save(payload, tmp_path / "future.pt")
    with pytest.raises(PhasesegInputError, match="format version 99"):
        load_model_file(tmp_path / "future.pt")


class _Evil:
    def __reduce__(self):
        return (os.system, ("touch EVIL_RAN",))


def test_loading_never_runs_code_from_the_file(tmp_path, monkeypatch):
    path = tmp_path / "evil.pt"
    with open(path, "wb") as f:
        pickle.dump({"format": FORMAT, "x": _Evil()}, f)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(PhasesegInputError, match="not a phaseseg model"):
        load_model_file(path)
    assert not (tmp_path / "EVIL_RAN").exists()


def test_cli_bad_model_file_is_one_line(tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"\x00garbage")
    image = tmp_path / "img.png"
    from PIL import Image

    Image.fromarray(np.zeros((32, 32), np.uint8)).save(image)
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "phaseseg",
            "predict",
            str(image),
            "--model",
            str(bad),
            "--submission",
            "s.csv",
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert r.returncode == 2
    assert "not a phaseseg model" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "s.csv").exists()

"""Model files are data from anywhere: checked against a schema and the weights' shapes before a
network is built, refused in one line that names the file and the problem."""

from __future__ import annotations

import copy
import os
import pickle
import time
import warnings

import pytest
import torch

from phaseseg.cli import main
from phaseseg.io import PhasesegInputError
from phaseseg.nn.checkpoint import load_model_file, save_model
from phaseseg.nn.model import build_model
from phaseseg.segment.postprocess import PostprocessParams
from phaseseg.segment.segmenter import BUNDLED_MODEL, load_model

TINY_NET = {"channels": [4, 8, 16], "convs_per_block": 1, "n_cell_types": 3, "input_scale": 1.0}
TYPES = ["astro", "cort", "shsy5y"]


def tiny_payload() -> dict:
    """The metadata and weights of a valid tiny model file."""
    return {
        "net": dict(TINY_NET),
        "train": {"steps": 1, "bf16": True},
        "cell_types": list(TYPES),
        "postprocess": {t: PostprocessParams().to_dict() for t in TYPES},
        "data": {"val_fold": 0},
        "seed": 0,
        "state_dict": build_model(TINY_NET).state_dict(),
    }


def write(path, payload: dict) -> None:
    meta = {k: v for k, v in payload.items() if k != "state_dict"}
    save_model(path, payload["state_dict"], meta)


def refusal(path) -> str:
    with pytest.raises(PhasesegInputError) as info:
        load_model_file(path)
    message = str(info.value)
    assert message.startswith(str(path)) and "\n" not in message
    return message


def test_a_valid_tiny_file_loads_and_segments(tmp_path):
    write(tmp_path / "m.pt", tiny_payload())
    assert load_model_file(tmp_path / "m.pt")["cell_types"] == TYPES
    assert load_model(tmp_path / "m.pt", device="cpu").segment(
        torch.zeros(64, 64).byte().numpy()
    ).shape == (64, 64)


def test_the_bundled_model_and_older_files_keep_loading(tmp_path):
    """The bundled file loads; so does a file of an older version without ``input_scale``,
    ``cell_types``, ``seed_h`` or ``min_score``, with the old ``bf16`` option in its train
    config (the bundled model of 2026-12-04 was such a file)."""
    bundled = load_model_file(BUNDLED_MODEL)
    assert bundled["net"]["input_scale"] == 1.0
    old = tiny_payload()
    del old["net"]["input_scale"], old["cell_types"]
    old["train"] = {**old.get("train", {}), "bf16": True}
    for params in old["postprocess"].values():
        del params["seed_h"], params["min_score"]
    write(tmp_path / "old.pt", old)
    model = load_model(tmp_path / "old.pt", device="cpu")
    assert model.postprocess["cort"] == PostprocessParams(seed_h=0.0, min_score=0.0)


def bad(change):
    payload = tiny_payload()
    change(payload)
    return payload


CASES = {
    "thresholds as strings": (
        lambda p: p["postprocess"]["astro"].update(fg_thresh="0.5"),
        "postprocess astro fg_thresh must be a number, got '0.5'",
    ),
    "no postprocess": (lambda p: p.pop("postprocess"), "no 'postprocess'"),
    "a type without thresholds": (
        lambda p: p["postprocess"].pop("cort"),
        "postprocess has no thresholds for cort",
    ),
    "threshold out of range": (
        lambda p: p["postprocess"]["cort"].update(seed_thresh=1.5),
        "postprocess cort seed_thresh must lie in [0, 1], got 1.5",
    ),
    "fractional min_size": (
        lambda p: p["postprocess"]["cort"].update(min_size=2.5),
        "min_size must be a whole number",
    ),
    "unknown threshold": (
        lambda p: p["postprocess"]["cort"].update(fg_threshold=0.5),
        "postprocess cort has unknown key(s) fg_threshold",
    ),
    "no net": (lambda p: p.pop("net"), "no 'net'"),
    "channels not ints": (lambda p: p["net"].update(channels=[4, "8", 16]), "net channels"),
    "zero channels": (lambda p: p["net"].update(channels=[4, 0, 16]), "net channels"),
    "bool convs": (lambda p: p["net"].update(convs_per_block=True), "net convs_per_block"),
    "input_scale too large": (
        lambda p: p["net"].update(input_scale=10.0),
        "net input_scale must be a number in [0.25, 4.0], got 10.0",
    ),
    "input_scale a string": (lambda p: p["net"].update(input_scale="2"), "net input_scale"),
    "unknown net key": (lambda p: p["net"].update(dropout=0.1), "net has unknown key(s) dropout"),
    "cell types not matching the head": (
        lambda p: p.update(cell_types=["astro", "cort"]),
        "cell_types names 2 types but net n_cell_types is 3",
    ),
    "cell types not strings": (lambda p: p.update(cell_types=[1, 2, 3]), "cell_types must be"),
    "train not a dict": (lambda p: p.update(train=[1]), "train must be a dict, got list"),
    "val_fold a string": (lambda p: p["data"].update(val_fold="0"), "data val_fold"),
    "weights of another net": (
        lambda p: p["net"].update(channels=[8, 8, 16]),
        "the weights do not fit net",
    ),
    "a missing tensor": (
        lambda p: p["state_dict"].pop("type_head.bias"),
        "1 tensor(s) missing (e.g. type_head.bias)",
    ),
    "NaN weights": (
        lambda p: p["state_dict"]["pixel_head.weight"].fill_(float("nan")),
        "state_dict pixel_head.weight holds NaN or infinite values",
    ),
    "no weights": (lambda p: p.update(state_dict={}), "state_dict must be a dict of tensors"),
}


@pytest.mark.parametrize("case", CASES)
def test_bad_metadata_is_refused_in_one_line(case, tmp_path):
    change, expected = CASES[case]
    write(tmp_path / "m.pt", bad(change))
    message = refusal(tmp_path / "m.pt")
    assert "bad model file" in message and expected in message


def test_a_huge_architecture_is_refused_before_anything_is_built(tmp_path):
    """A ``net`` of 4096-65536 channels used to allocate the network for over a minute."""
    huge = bad(lambda p: p["net"].update(channels=[4096, 8192, 16384, 32768, 65536]))
    write(tmp_path / "m.pt", huge)
    start = time.perf_counter()
    assert "net channels must be a list" in refusal(tmp_path / "m.pt")
    wide = bad(lambda p: p["net"].update(channels=[2048] * 8, convs_per_block=8))
    write(tmp_path / "w.pt", wide)  # allowed sizes, but the weights are those of a tiny net
    assert "the weights do not fit net" in refusal(tmp_path / "w.pt")
    assert time.perf_counter() - start < 10


class _RunsCode:
    def __reduce__(self):
        return (os.system, ("echo should-not-run",))


def test_a_pickled_object_is_refused_in_one_line_without_warnings(tmp_path):
    crafted = tmp_path / "crafted.pt"
    torch.save({"format": "phaseseg-model", "format_version": 1, "x": _RunsCode()}, crafted)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        message = refusal(crafted)
    assert not caught, [str(w.message) for w in caught]
    assert message.endswith("a phaseseg model file holds none")
    assert "could run code" in message

    legacy = tmp_path / "legacy.pt"  # a plain pickle stream, not a torch archive
    legacy.write_bytes(pickle.dumps({"x": _RunsCode()}, protocol=4))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert "not a torch zip archive" in refusal(legacy)
    assert not caught


def test_the_cli_names_the_bad_model_file(tmp_path, capsys):
    write(tmp_path / "m.pt", bad(lambda p: p["postprocess"]["astro"].update(min_score="high")))
    code = main(["predict", str(tmp_path), "--model", str(tmp_path / "m.pt"), "--submission", "s"])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert str(tmp_path / "m.pt") in err and "min_score must be a number" in err


def test_files_are_not_changed_by_loading(tmp_path):
    payload = tiny_payload()
    write(tmp_path / "m.pt", copy.deepcopy(payload))
    loaded = load_model_file(tmp_path / "m.pt")
    assert loaded["net"] == TINY_NET and loaded["train"] == {"steps": 1, "bf16": True}

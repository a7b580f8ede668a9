"""Device and precision: MPS/CUDA/CPU choice, bf16 only where native, thread count untouched."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from phaseseg.io import PhasesegInputError
from phaseseg.nn import device as dev
from phaseseg.nn.model import NetConfig, build_model
from phaseseg.segment.postprocess import PostprocessParams
from phaseseg.segment.segmenter import Segmenter
from phaseseg.train.config import TrainConfig

CPU = torch.device("cpu")
X86_BF16 = {"architecture": "x86_64", "avx512_bf16": True, "amx_bf16": True}
X86_AVX2 = {"architecture": "x86_64", "avx2": True, "avx512_bf16": False, "amx_bf16": False}


@pytest.fixture
def machine(monkeypatch):
    """Patch what the CPU reports and oneDNN's ISA cap; no probe may run."""

    def set_machine(caps: dict, isa: str | None = None) -> None:
        monkeypatch.setattr(torch.cpu, "get_capabilities", lambda: caps)
        monkeypatch.delenv("DNNL_MAX_CPU_ISA", raising=False)
        if isa is None:
            monkeypatch.delenv("ONEDNN_MAX_CPU_ISA", raising=False)
        else:
            monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", isa)

    def no_probe(*args):
        raise AssertionError("the CPU's features decide; no probe expected")

    monkeypatch.setattr(dev, "_probe", no_probe)
    return set_machine


@pytest.mark.parametrize(
    "caps, isa, expected",
    [
        (X86_BF16, None, "bf16"),
        (X86_BF16, "AVX2", "fp32"),  # oneDNN capped: bf16 would be emulated (~9x slower here)
        (X86_BF16, "avx512_core", "fp32"),
        (X86_BF16, "AVX512_CORE_AMX", "bf16"),
        (X86_BF16, "ALL", "bf16"),
        (X86_AVX2, None, "fp32"),  # a laptop
        (X86_AVX2, "ALL", "fp32"),
    ],
)
def test_auto_is_bf16_only_where_the_cpu_computes_it_natively(machine, caps, isa, expected):
    machine(caps, isa)
    assert dev.resolve_precision("auto", "cpu") == expected
    assert dev.resolve_precision("fp32", "cpu") == "fp32"
    assert dev.resolve_precision("bf16", "cpu") == "bf16"  # asked for: taken as given


def test_dnnl_spelling_of_the_isa_cap_counts_too(machine, monkeypatch):
    machine(X86_BF16)
    monkeypatch.setenv("DNNL_MAX_CPU_ISA", "AVX2")
    assert dev.resolve_precision("auto", "cpu") == "fp32"


def test_unknown_cpus_are_probed_once(monkeypatch):
    monkeypatch.setattr(torch.cpu, "get_capabilities", lambda: {"architecture": "aarch64"})
    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA", raising=False)
    monkeypatch.delenv("DNNL_MAX_CPU_ISA", raising=False)
    calls = []
    monkeypatch.setattr(dev, "_probe", lambda *a: calls.append(a) or "bf16")
    assert dev.resolve_precision("auto", "cpu") == "bf16"
    assert calls == [("cpu", "")]


def test_the_real_probe_answers_and_is_cached():
    dev._probe.cache_clear()
    first = dev._probe("cpu", "test")
    assert first in ("bf16", "fp32")
    assert dev._probe("cpu", "test") == first and dev._probe.cache_info().hits >= 1


def test_cuda_auto_follows_native_bf16_support(monkeypatch):
    for native, expected in ((True, "bf16"), (False, "fp32")):
        monkeypatch.setattr(
            torch.cuda, "is_bf16_supported", lambda including_emulation=True, n=native: n
        )
        assert dev.resolve_precision("auto", "cuda") == expected


def test_bad_precision_is_one_line():
    with pytest.raises(PhasesegInputError, match="auto, bf16, fp32"):
        dev.resolve_precision("fp16", "cpu")
    with pytest.raises(PhasesegInputError):
        Segmenter(build_model(NetConfig(channels=(4, 8))), {}, device="cpu", precision="half")


@pytest.mark.parametrize(
    "cuda, mps, expected", [(True, True, "cuda"), (False, True, "mps"), (False, False, "cpu")]
)
def test_pick_device_prefers_cuda_then_mps_then_cpu(monkeypatch, cuda, mps, expected):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: mps)
    assert dev.pick_device() == torch.device(expected)
    assert dev.pick_device("cpu") == CPU  # asked for: taken as given


def test_library_leaves_the_thread_count_alone():
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        dev.pick_device()
        net = build_model(NetConfig(channels=(4, 8), convs_per_block=1))
        seg = Segmenter(net, {t: PostprocessParams() for t in ("astro", "cort", "shsy5y")})
        seg.segment(np.zeros((20, 20), np.uint8))
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


def test_segmenter_keeps_the_resolved_precision(machine):
    machine(X86_AVX2)
    net = build_model(NetConfig(channels=(4, 8), convs_per_block=1))
    assert Segmenter(net, {}, device="cpu").precision == "fp32"
    assert Segmenter(net, {}, device="cpu", precision="bf16").precision == "bf16"


def test_train_config_precision_and_the_old_bf16_flag():
    assert TrainConfig().precision == "auto"
    assert TrainConfig.from_dict({"bf16": True}).precision == "bf16"  # older configs
    assert TrainConfig.from_dict({"bf16": False}).precision == "fp32"
    assert TrainConfig.from_dict({"bf16": True, "precision": "fp32"}).precision == "fp32"
    assert "bf16" not in TrainConfig.from_dict({"bf16": True}).__dict__
    with pytest.raises(PhasesegInputError, match="precision"):
        TrainConfig(precision="fp16")


def test_cli_precision_option(tmp_path, monkeypatch):
    from PIL import Image

    from phaseseg.cli import build_parser, main

    args = build_parser().parse_args(["predict", "x.png", "--submission", "s.csv"])
    assert args.precision == "auto"
    for command in (["predict", "x.png"], ["measure", "x.png"], ["train", "d", "--out", "m.pt"]):
        parsed = build_parser().parse_args([*command, "--precision", "fp32"])
        assert parsed.precision == "fp32"
    image = tmp_path / "a.png"
    Image.fromarray(np.zeros((64, 64), np.uint8)).save(image)
    seen = {}
    from phaseseg.segment import segmenter

    real = segmenter.load_model

    def spy(*a, **kw):
        seen.update(kw)
        return real(*a, **kw)

    monkeypatch.setattr(segmenter, "load_model", spy)
    sub = tmp_path / "s.csv"
    assert main(["predict", str(image), "--submission", str(sub), "--precision", "fp32"]) == 0
    assert seen["precision"] == "fp32"

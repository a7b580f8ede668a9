"""Where the network runs and in which precision.

* :func:`pick_device`: CUDA, else Apple's MPS, else the CPU (or the device asked for).
* :func:`resolve_precision`: ``"auto"`` -> ``"bf16"`` where the device computes bfloat16
  natively, else ``"fp32"``; ``"bf16"`` and ``"fp32"`` are taken as given.
* :func:`autocast`: the context the forward pass runs in for a resolved precision.

Why it matters: on a CPU with AVX-512 BF16 or AMX, bf16 autocast runs the bundled network
about 3x faster than float32; on a CPU with AVX2 only (most laptops), oneDNN emulates bf16 and
the same pass is about 9x *slower* than float32.

On a CPU the decision reads the CPU's features (``torch.cpu.get_capabilities()``) and honours
``ONEDNN_MAX_CPU_ISA`` (or ``DNNL_MAX_CPU_ISA``), the variable that caps the instruction set
oneDNN uses: ``ONEDNN_MAX_CPU_ISA=AVX2`` makes a machine with native bf16 behave like one
without, and ``auto`` then gives ``"fp32"``. Where the features cannot be read (an unknown CPU
architecture) or on MPS, a one-off probe times a small convolution in both precisions and keeps
the faster; the answer is cached for the process.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import time
from collections.abc import Iterator

import torch

from phaseseg.io.errors import PhasesegInputError

log = logging.getLogger(__name__)

PRECISIONS = ("auto", "bf16", "fp32")

#: oneDNN instruction-set caps (``ONEDNN_MAX_CPU_ISA`` values) under which bf16 is emulated.
_ISAS_WITHOUT_BF16 = frozenset(
    {
        "SSE41",
        "AVX",
        "AVX2",
        "AVX2_VNNI",
        "AVX2_VNNI_2",  # bf16 conversions only, no bf16 dot products
        "AVX512_CORE",
        "AVX512_CORE_VNNI",
    }
)


def pick_device(device: str | torch.device | None = None) -> torch.device:
    """The given device, else CUDA when present, else Apple's MPS when present, else the CPU.

    Leaves torch's thread count alone (a library should not change process-wide settings;
    the command line sets it once, see :func:`use_all_cores`).
    """
    if device:
        return torch.device(device)
    if torch.cuda.is_available():
        return torch.device("cuda")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def use_all_cores() -> None:
    """Let torch use every logical CPU core (for the command line; call it once, early)."""
    torch.set_num_threads(os.cpu_count() or 1)


def check_precision(precision: str) -> str:
    """Return ``precision`` if it is one of :data:`PRECISIONS`, else raise
    :class:`~phaseseg.io.errors.PhasesegInputError` (a ``ValueError``)."""
    if precision not in PRECISIONS:
        raise PhasesegInputError(
            f"precision must be one of {', '.join(PRECISIONS)}; got {precision!r}"
        )
    return precision


def resolve_precision(precision: str = "auto", device: str | torch.device | None = None) -> str:
    """``"bf16"`` or ``"fp32"``: the precision the network runs in on ``device``.

    ``"auto"`` gives ``"bf16"`` where ``device`` (default: :func:`pick_device`) computes
    bfloat16 natively (CPUs with AVX-512 BF16 or AMX, unless ``ONEDNN_MAX_CPU_ISA`` caps oneDNN
    below them; CUDA GPUs of compute capability 8.0 or newer) and ``"fp32"`` elsewhere.
    """
    if check_precision(precision) != "auto":
        return precision
    dev = pick_device(device)
    if dev.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported(including_emulation=False) else "fp32"
    if dev.type == "cpu":
        native = _cpu_native_bf16(_onednn_isa_cap())
        if native is not None:
            return "bf16" if native else "fp32"
    return _probe(dev.type, _onednn_isa_cap())


def default_tta(device: str | torch.device | None = None, precision: str = "auto") -> bool:
    """Whether predictions average the network over 4 flips by default (test-time
    augmentation): yes, unless the network runs in float32 on a CPU.

    TTA costs 4x the network's time. Where the network is fast (native bf16 on a CPU, any GPU)
    that is a few tenths of a second per 704x520 image and buys a higher score on images the
    model has not seen; on a CPU without native bf16 (most laptops) it would make a 1-second
    image a 4-second one.

    >>> default_tta("cpu", "bf16"), default_tta("cpu", "fp32")
    (True, False)
    """
    dev = pick_device(device)
    return not (dev.type == "cpu" and resolve_precision(precision, dev) == "fp32")


def _onednn_isa_cap() -> str:
    return (
        os.environ.get("ONEDNN_MAX_CPU_ISA") or os.environ.get("DNNL_MAX_CPU_ISA") or ""
    ).upper()


def _cpu_native_bf16(isa_cap: str) -> bool | None:
    """Whether the CPU computes bf16 natively for oneDNN; None when its features are unknown."""
    if not torch.backends.mkldnn.is_available():
        return False  # no oneDNN: bf16 convolutions fall back to slow generic kernels
    if isa_cap in _ISAS_WITHOUT_BF16:
        return False
    try:
        caps = torch.cpu.get_capabilities()
    except (AttributeError, RuntimeError):
        return None
    if caps.get("architecture") not in ("x86_64", "x86", "amd64", "AMD64"):
        return None  # e.g. aarch64: bf16 support varies by core; probe it
    return bool(caps.get("avx512_bf16") or caps.get("amx_bf16"))


@functools.cache
def _probe(device_type: str, isa_cap: str) -> str:
    """Time a small convolution in bf16 autocast and in float32 on ``device_type``; keep the
    faster (bf16 only when clearly faster). Cached per device type and oneDNN cap."""
    del isa_cap  # part of the cache key only
    dev = torch.device(device_type)
    sync_fn = {"cuda": torch.cuda.synchronize, "mps": torch.mps.synchronize}.get(device_type)
    conv = torch.nn.Conv2d(32, 32, 3, padding=1, bias=False).to(dev).eval()
    x = torch.randn(2, 32, 96, 96, device=dev).contiguous(memory_format=torch.channels_last)

    def seconds(precision: str) -> float:
        with torch.inference_mode(), autocast(dev, precision):
            t0 = time.perf_counter()
            conv(x)
            if sync_fn is not None:
                sync_fn()
            return time.perf_counter() - t0

    try:
        seconds("bf16"), seconds("fp32")  # warm-up: kernel selection, caches
        fp32, bf16 = [], []
        for _ in range(5):  # interleaved, so that a busy machine slows both alike
            fp32.append(seconds("fp32"))
            bf16.append(seconds("bf16"))
    except RuntimeError as e:  # bf16 autocast unsupported on this device / OS
        log.debug("bf16 probe on %s failed: %s", device_type, e)
        return "fp32"
    choice = "bf16" if min(bf16) < 0.8 * min(fp32) else "fp32"
    log.debug(
        "precision probe on %s: fp32 %.2g s, bf16 %.2g s -> %s", dev, min(fp32), min(bf16), choice
    )
    return choice


@contextlib.contextmanager
def autocast(device: torch.device, precision: str) -> Iterator[None]:
    """bf16 autocast on ``device`` for ``precision == "bf16"``; nothing for ``"fp32"``."""
    if precision == "bf16":
        with torch.autocast(device.type, dtype=torch.bfloat16):
            yield
    elif precision == "fp32":
        yield
    else:
        raise ValueError(f"resolve the precision first; got {precision!r}")

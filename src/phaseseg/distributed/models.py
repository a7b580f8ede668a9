"""The model on a worker: loaded once per worker process, from what the client sends."""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from phaseseg.segment.segmenter import Segmenter

_models: dict[ModelSpec, Segmenter] = {}
_lock = threading.Lock()


@dataclass(frozen=True)
class ModelSpec:
    """What a worker needs to load the model (small and hashable; sent with every task).

    ``path`` is absolute (workers may run in other folders) or None for the bundled model of
    the worker's own installation. ``device`` and ``precision`` as
    :func:`~phaseseg.segment.segmenter.load_model` (resolved on the worker: ``"auto"`` picks
    bf16 on a GPU worker). ``threads``: torch threads of the worker process (None: leave
    torch's default, which Dask's nanny sets to 1 through ``OMP_NUM_THREADS``).
    """

    path: str | None = None
    device: str | None = None
    precision: str = "auto"
    threads: int | None = None

    @classmethod
    def of(
        cls,
        path: str | os.PathLike | None,
        device: str | None = None,
        precision: str = "auto",
        threads: int | None = None,
    ) -> ModelSpec:
        """A spec with ``path`` made absolute.

        >>> ModelSpec.of(None).path is None
        True
        """
        return cls(os.path.abspath(path) if path else None, device, precision, threads)


def worker_model(spec: ModelSpec) -> Segmenter:
    """The model of ``spec``, loaded on the first call in this process and kept.

    Thread-safe: the tasks of a worker with several threads share one model.
    """
    with _lock:
        if spec not in _models:
            from phaseseg.segment.segmenter import load_model

            if spec.threads is not None:
                import torch

                torch.set_num_threads(spec.threads)
            _models[spec] = load_model(spec.path, device=spec.device, precision=spec.precision)
        return _models[spec]


def loaded_models() -> int:
    """How many models this process has loaded (for tests: one per spec and worker)."""
    return len(_models)

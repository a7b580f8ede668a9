"""Model files: weights plus the metadata needed to use them, loaded without running code.

A model file is a ``torch.save`` dict of tensors and plain Python values, read back with
``torch.load(..., weights_only=True)`` so that opening a file never executes code from it::

    {"format": "phaseseg-model", "format_version": 1, "phaseseg_version": "0.1.0",
     "net": {...NetConfig...}, "train": {...TrainConfig...},
     "postprocess": {"astro": {...}, "cort": {...}, "shsy5y": {...}},
     "cell_types": ["astro", "cort", "shsy5y"], "data": {...}, "scores": {...}, "seed": 0,
     "added_cell_types": {...},  # optional: cell types fine-tuning added
     "state_dict": {...}}

A file is data from anywhere, so :func:`load_model_file` checks it before anything is built
from it (:func:`check_model_payload`): the metadata against a schema (required keys, types,
ranges), then the weights' names and shapes against the architecture that ``net`` describes,
worked out on torch's ``meta`` device (no memory, no time, however large ``net`` claims to be).
A bad file is refused with one line naming it and the problem.
"""

from __future__ import annotations

import logging
import math
import os
import pickle
import warnings
from dataclasses import fields
from pathlib import Path
from typing import Any

import torch

from phaseseg import __version__
from phaseseg.io import CELL_TYPES, PhasesegInputError, atomic_path

log = logging.getLogger(__name__)

FORMAT = "phaseseg-model"
FORMAT_VERSION = 1

#: Limits of a sane ``net`` (far above any model phaseseg trains; a file asking for more is
#: refused before anything is allocated).
MAX_LEVELS = 8
MAX_CHANNELS = 2048
MAX_CONVS_PER_BLOCK = 8
MAX_CELL_TYPES = 64
INPUT_SCALE_RANGE = (0.25, 4.0)
#: Post-processing thresholds that are probabilities (or heights of a probability map).
UNIT_THRESHOLDS = ("fg_thresh", "seed_thresh", "seed_h", "min_score")
MAX_MIN_SIZE = 10**7
_REQUIRED_NET = ("channels", "convs_per_block", "n_cell_types")
_REQUIRED_POSTPROCESS = ("fg_thresh", "seed_thresh", "min_size")
_ZIP_MAGIC = b"PK\x03\x04"  # torch.save's format since torch 1.6


class ModelFileProblem(ValueError):
    """What is wrong with a model file's content (the caller adds the file's name)."""


def save_model(path: str | os.PathLike, state_dict: dict, metadata: dict[str, Any]) -> None:
    """Write weights and metadata to ``path`` atomically."""
    payload = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "phaseseg_version": __version__,
        **metadata,
        "state_dict": {k: v.detach().cpu() for k, v in state_dict.items()},
    }
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)


def load_model_file(path: str | os.PathLike) -> dict[str, Any]:
    """Read and check a model file written by :func:`save_model`.

    Returns the file's dict as written. Raises :class:`~phaseseg.io.PhasesegInputError`, one line
    naming ``path``, for anything else: not a torch file, Python objects that are not plain data
    (refused unread: loading them could run code), another format version, metadata that does
    not fit the schema of :func:`check_model_payload`, weights that do not fit ``net``.
    """
    path = Path(path)
    if not path.is_file():
        raise PhasesegInputError(f"{path}: no such model file")
    payload = _read_payload(path)
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise PhasesegInputError(f"{path}: not a phaseseg model file")
    version = payload.get("format_version")
    if version != FORMAT_VERSION:
        raise PhasesegInputError(
            f"{path}: model format version {version} is not supported by phaseseg {__version__} "
            f"(which reads version {FORMAT_VERSION})"
        )
    try:
        check_model_payload(payload)
    except ModelFileProblem as e:
        raise PhasesegInputError(f"{path}: bad model file: {e}") from None
    return payload


def _read_payload(path: Path) -> Any:
    """``torch.load(path, weights_only=True)``, its warnings silenced and its errors in one line."""
    with open(path, "rb") as f:
        magic = f.read(4)
    if magic != _ZIP_MAGIC:
        raise PhasesegInputError(f"{path}: not a phaseseg model file (not a torch zip archive)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # e.g. "Detected pickle protocol 4 ..."
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise PhasesegInputError(
            f"{path}: refused: it holds Python objects other than tensors and plain values "
            "(loading them could run code); a phaseseg model file holds none"
        ) from None
    except Exception as e:  # noqa: BLE001 - whatever torch raises, the file is not ours
        raise PhasesegInputError(
            f"{path}: not a phaseseg model file (unreadable torch archive: {type(e).__name__})"
        ) from None


# --------------------------------------------------------------------------- the schema


def check_model_payload(payload: dict[str, Any]) -> None:
    """Check a model file's dict; raise :class:`ModelFileProblem` naming the first problem.

    * ``net``: ``channels`` a list of 1-:data:`MAX_LEVELS` ints in 1-:data:`MAX_CHANNELS`,
      ``convs_per_block`` an int in 1-:data:`MAX_CONVS_PER_BLOCK`, ``n_cell_types`` an int in
      1-:data:`MAX_CELL_TYPES`, optional ``input_scale`` a number in
      :data:`INPUT_SCALE_RANGE` (files of older versions have none: 1), optional ``centre``
      a bool (none: false), no other keys than :class:`~phaseseg.nn.model.NetConfig`'s;
    * ``cell_types``: ``n_cell_types`` distinct non-empty strings (the type head's classes;
      older files without it: :data:`~phaseseg.io.CELL_TYPES` when there are three);
    * ``postprocess``: for every cell type a dict of
      :class:`~phaseseg.segment.postprocess.PostprocessParams` fields, ``fg_thresh``,
      ``seed_thresh`` and ``min_size`` required; numbers, not strings; probabilities
      (:data:`UNIT_THRESHOLDS`) in [0, 1], ``min_size`` a whole number in 0-:data:`MAX_MIN_SIZE`;
      optional ``seeds`` ``"distance"`` or, for a ``net`` with ``centre``, ``"centre"``;
    * ``added_cell_types`` (optional; files of earlier versions have none): the cell types that
      fine-tuning added to the head, ``{name: {"initialised_from": known name, "images": n}}``,
      every name among ``cell_types``;
    * ``train``, ``data``, ``scores``, ``init``: dicts when present (``train`` is free-form:
      older versions' options such as ``bf16`` stay readable); ``data["val_fold"]`` an int or
      None; ``seed`` an int;
    * ``state_dict``: names and shapes exactly those of the network ``net`` describes, floating
      point weights finite.
    """
    net = _check_net(payload.get("net"))
    cell_types = _check_cell_types(payload, net["n_cell_types"])
    _check_postprocess(payload.get("postprocess"), cell_types, net.get("centre") is True)
    _check_added_cell_types(payload.get("added_cell_types"), cell_types)
    for key in ("train", "data", "scores", "init"):
        if key in payload and not isinstance(payload[key], dict):
            raise ModelFileProblem(f"{key} must be a dict, got {_kind(payload[key])}")
    fold = payload.get("data", {}).get("val_fold")
    if fold is not None and not _is_int(fold):
        raise ModelFileProblem(f"data val_fold must be an int or None, got {fold!r}")
    if "seed" in payload and not _is_int(payload["seed"]):
        raise ModelFileProblem(f"seed must be an int, got {payload['seed']!r}")
    check_state_dict(payload.get("state_dict"), net)


def _check_net(net: Any) -> dict[str, Any]:
    from phaseseg.nn.model import NetConfig

    if net is None:
        raise ModelFileProblem("no 'net' (the architecture)")
    if not isinstance(net, dict):
        raise ModelFileProblem(f"net must be a dict, got {_kind(net)}")
    missing = [k for k in _REQUIRED_NET if k not in net]
    if missing:
        raise ModelFileProblem(f"net has no {', '.join(missing)}")
    unknown = sorted(set(net) - {f.name for f in fields(NetConfig)})
    if unknown:
        raise ModelFileProblem(f"net has unknown key(s) {', '.join(map(str, unknown))}")
    channels = net["channels"]
    if (
        not isinstance(channels, list | tuple)
        or not 1 <= len(channels) <= MAX_LEVELS
        or not all(_is_int(c) and 1 <= c <= MAX_CHANNELS for c in channels)
    ):
        raise ModelFileProblem(
            f"net channels must be a list of 1 to {MAX_LEVELS} whole numbers in "
            f"1..{MAX_CHANNELS}, got {_short(channels)}"
        )
    for key, top in (("convs_per_block", MAX_CONVS_PER_BLOCK), ("n_cell_types", MAX_CELL_TYPES)):
        if not (_is_int(net[key]) and 1 <= net[key] <= top):
            raise ModelFileProblem(
                f"net {key} must be a whole number in 1..{top}, got {net[key]!r}"
            )
    if not isinstance(net.get("centre", False), bool):
        raise ModelFileProblem(f"net centre must be true or false, got {net['centre']!r}")
    low, high = INPUT_SCALE_RANGE
    scale = net.get("input_scale", 1.0)
    if not (_is_number(scale) and low <= scale <= high):
        raise ModelFileProblem(
            f"net input_scale must be a number in [{low}, {high}], got {scale!r}"
        )
    return net


def _check_cell_types(payload: dict[str, Any], n_cell_types: int) -> list[str]:
    names = payload.get("cell_types")
    if names is None and n_cell_types == len(CELL_TYPES):
        return list(CELL_TYPES)  # files written before cell types were recorded
    if (
        not isinstance(names, list | tuple)
        or not all(isinstance(n, str) and n for n in names)
        or len(set(names)) != len(names)
    ):
        raise ModelFileProblem(f"cell_types must be a list of distinct names, got {_short(names)}")
    if len(names) != n_cell_types:
        raise ModelFileProblem(
            f"cell_types names {len(names)} types but net n_cell_types is {n_cell_types}"
        )
    return list(names)


def _check_added_cell_types(added: Any, cell_types: list[str]) -> None:
    if added is None:
        return
    if not isinstance(added, dict):
        raise ModelFileProblem(f"added_cell_types must be a dict, got {_kind(added)}")
    for name, info in added.items():
        where = f"added_cell_types {name}"
        if name not in cell_types:
            raise ModelFileProblem(f"{where}: not among cell_types {', '.join(cell_types)}")
        if not isinstance(info, dict):
            raise ModelFileProblem(f"{where} must be a dict, got {_kind(info)}")
        source = info.get("initialised_from")
        if source not in cell_types or source == name:
            raise ModelFileProblem(
                f"{where} initialised_from must name another of cell_types, got {source!r}"
            )
        images = info.get("images", 0)
        if not (_is_int(images) and images >= 0):
            raise ModelFileProblem(f"{where} images must be a whole number, got {images!r}")


def _check_postprocess(post: Any, cell_types: list[str], centre: bool = False) -> None:
    from phaseseg.segment.postprocess import SEED_MAPS, PostprocessParams

    if post is None:
        raise ModelFileProblem("no 'postprocess' (the thresholds per cell type)")
    if not isinstance(post, dict):
        raise ModelFileProblem(f"postprocess must be a dict, got {_kind(post)}")
    missing = [t for t in cell_types if t not in post]
    if missing:
        raise ModelFileProblem(f"postprocess has no thresholds for {', '.join(missing)}")
    extra = [str(t) for t in post if t not in cell_types]
    if extra:
        raise ModelFileProblem(
            f"postprocess names {', '.join(extra)}, not among cell_types {', '.join(cell_types)}"
        )
    known = {f.name for f in fields(PostprocessParams)}
    for cell_type, params in post.items():
        where = f"postprocess {cell_type}"
        if not isinstance(params, dict):
            raise ModelFileProblem(f"{where} must be a dict, got {_kind(params)}")
        unknown = sorted(map(str, set(params) - known))
        if unknown:
            raise ModelFileProblem(f"{where} has unknown key(s) {', '.join(unknown)}")
        absent = [k for k in _REQUIRED_POSTPROCESS if k not in params]
        if absent:
            raise ModelFileProblem(f"{where} has no {', '.join(absent)}")
        for key, value in params.items():
            if key == "seeds":
                if value not in SEED_MAPS:
                    raise ModelFileProblem(
                        f"{where} seeds must be one of {', '.join(SEED_MAPS)}, got {value!r}"
                    )
                if value == "centre" and not centre:
                    raise ModelFileProblem(f"{where} seeds from a centre map the net does not have")
                continue
            if not _is_number(value):
                raise ModelFileProblem(f"{where} {key} must be a number, got {value!r}")
            if key in UNIT_THRESHOLDS and not 0 <= value <= 1:
                raise ModelFileProblem(f"{where} {key} must lie in [0, 1], got {value!r}")
            if key == "min_size" and not (value == int(value) and 0 <= value <= MAX_MIN_SIZE):
                raise ModelFileProblem(
                    f"{where} min_size must be a whole number in 0..{MAX_MIN_SIZE}, got {value!r}"
                )


def check_state_dict(state_dict: Any, net: dict[str, Any]) -> None:
    """Check that ``state_dict`` holds exactly the tensors of the network ``net`` describes.

    The expected names and shapes come from building the network on torch's ``meta`` device,
    which allocates nothing; ``net`` must already have passed the schema's size limits.
    """
    from phaseseg.nn.model import build_model

    if not isinstance(state_dict, dict) or not state_dict:
        raise ModelFileProblem(f"state_dict must be a dict of tensors, got {_kind(state_dict)}")
    with torch.device("meta"):
        expected = {k: tuple(v.shape) for k, v in build_model(dict(net)).state_dict().items()}
    missing = [k for k in expected if k not in state_dict]
    unexpected = [str(k) for k in state_dict if k not in expected]
    if missing or unexpected:
        parts = [
            f"{len(names)} tensor(s) {what} (e.g. {names[0]})"
            for names, what in ((missing, "missing"), (unexpected, "unexpected"))
            if names
        ]
        raise ModelFileProblem(f"the weights do not fit net {_short(net)}: {', '.join(parts)}")
    for name, shape in expected.items():
        tensor = state_dict[name]
        if not isinstance(tensor, torch.Tensor):
            raise ModelFileProblem(f"state_dict {name} is {_kind(tensor)}, not a tensor")
        if tuple(tensor.shape) != shape:
            raise ModelFileProblem(
                f"the weights do not fit net {_short(net)}: {name} is "
                f"{tuple(tensor.shape)}, the architecture needs {shape}"
            )
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise ModelFileProblem(f"state_dict {name} holds NaN or infinite values")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _kind(value: Any) -> str:
    return "nothing" if value is None else type(value).__name__


def _short(value: Any, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."

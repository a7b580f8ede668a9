"""Reading images (PNG, TIFF, JPEG, microscope formats; converted to 8-bit gray) and finding
them in folders. Stacks and their metadata: :mod:`phaseseg.io.microscopy`."""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from phaseseg.io.errors import PhasesegInputError
from phaseseg.io.microscopy import (
    BASE_SUFFIXES,
    BIOIO_SUFFIXES,
    TIFF_SUFFIXES,
    image_id,
    is_image_path,
)

#: Every file ending phaseseg reads (``.czi .nd2 .lif .zarr`` through ``phaseseg[formats]``).
IMAGE_SUFFIXES = BASE_SUFFIXES + BIOIO_SUFFIXES


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Read a phase-contrast image as a uint8 ``(H, W)`` array.

    RGB(A), palette and gray+alpha images are converted to gray and 16-bit or float images
    rescaled (min-max) to 8 bit, each with a warning; unreadable files raise
    :class:`PhasesegInputError` naming the file. A file holding several frames (a multi-page
    TIFF, a time-lapse) is refused: read those with :func:`phaseseg.io.iter_frames`.
    """
    from phaseseg.io.microscopy import frame_infos, iter_frames

    path = Path(path)
    infos = frame_infos(path)
    if len(infos) != 1:
        raise PhasesegInputError(
            f"{path}: holds {len(infos)} frames; read it frame by frame "
            "(phaseseg.io.iter_frames; phaseseg predict and measure do)"
        )
    frames = iter_frames(path)
    try:
        return next(frames)[1]
    finally:
        frames.close()


def image_shape(path: str | os.PathLike) -> tuple[int, int]:
    """``(height, width)`` of an image file, read from its header only (fast)."""
    path = Path(path)
    if not path.is_file():
        raise PhasesegInputError(f"{path}: no such file")
    try:
        if path.suffix.lower() in TIFF_SUFFIXES:
            import tifffile

            with tifffile.TiffFile(path) as tif:
                shape = tuple(tif.series[0].shape)
        else:
            from PIL import Image

            with Image.open(path) as im:
                shape = (im.height, im.width)
    except Exception as e:  # noqa: BLE001 - any decoder failure is a bad file for the user
        raise PhasesegInputError(f"{path}: not a readable image ({type(e).__name__})") from None
    if len(shape) == 3 and shape[-1] in (2, 3, 4):  # channels last
        shape = shape[:2]
    while len(shape) > 2 and shape[0] == 1:
        shape = shape[1:]
    if len(shape) != 2:
        raise PhasesegInputError(f"{path}: expected a 2-D image, got shape {shape}")
    return int(shape[0]), int(shape[1])


#: Joins the folders below an input folder and the file id into an image id:
#: ``plate1/A1/f1.tif`` found in ``screen/`` has the id ``plate1__A1__f1``.
ID_SEPARATOR = "__"


@dataclass(frozen=True)
class ImageFile:
    """An image file found by :func:`find_image_files`.

    ``relative`` is the file's path below the folder it was found in, with ``/`` separators
    (``plate1/A1/f1.tif``); a file given directly, or lying in the folder itself, has just its
    name.
    """

    path: Path
    relative: str

    @property
    def image_id(self) -> str:
        """The file id, prefixed by its folders joined by :data:`ID_SEPARATOR`.

        >>> ImageFile(Path("s/p1/A1/f1.ome.tif"), "p1/A1/f1.ome.tif").image_id
        'p1__A1__f1'
        >>> ImageFile(Path("s/0030fd0e6378.png"), "0030fd0e6378.png").image_id
        '0030fd0e6378'
        """
        return ID_SEPARATOR.join([*self.relative.split("/")[:-1], image_id(self.path)])


def _walk(folder: Path, exclude: set[Path]) -> list[Path]:
    """Image files in ``folder`` and its sub-folders (sorted per folder, files first); hidden
    files and folders, and the folders in ``exclude`` (resolved), are skipped; an OME-Zarr
    folder is an image, not searched."""
    files: list[Path] = []
    subfolders: list[Path] = []
    for entry in sorted(folder.iterdir()):
        if entry.name.startswith(".") or (exclude and entry.resolve() in exclude):
            continue
        if is_image_path(entry):
            files.append(entry)
        elif entry.is_dir():
            subfolders.append(entry)
    for sub in subfolders:
        files.extend(_walk(sub, exclude))
    return files


def _find(
    inputs: list[str | os.PathLike], exclude: Iterable[str | os.PathLike | None] = ()
) -> list[ImageFile]:
    skip = {Path(e).resolve() for e in exclude if e is not None}
    out: list[ImageFile] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir() and not is_image_path(p):
            out.extend(ImageFile(f, f.relative_to(p).as_posix()) for f in _walk(p, skip))
        elif p.exists():
            out.append(ImageFile(p, p.name))
        else:
            raise PhasesegInputError(f"{p}: no such file or folder")
    return out


def find_images(inputs: list[str | os.PathLike]) -> list[Path]:
    """Expand files and folders into a list of image files.

    Folders are searched recursively (files of a folder first, sorted, then its sub-folders
    in order); hidden files and folders (``.name``, e.g. macOS ``._x.png`` or unfinished
    atomic writes) are skipped. An OME-Zarr folder (``*.zarr``) is an image, given itself or
    found in a folder.
    """
    return [f.path for f in _find(inputs)]


def find_image_files(
    inputs: list[str | os.PathLike], exclude: Iterable[str | os.PathLike | None] = ()
) -> list[ImageFile]:
    """Like :func:`find_images`, each file with its image id (:attr:`ImageFile.image_id`), for
    commands that name outputs by image id. Folders in ``exclude`` (a run's output folders,
    which may lie inside an input folder) are not searched.

    A file in a sub-folder of an input folder keeps the folders in its id
    (``plate1__A1__f1``), so that two plates' ``A1.tif`` do not collide; files given directly
    or lying in the input folder itself have their file id (the file name without suffix,
    :func:`phaseseg.io.microscopy.image_id`), e.g. the competition's ids.

    Raises :class:`PhasesegInputError` when no image is found (listing the accepted file
    endings) or two images share an id.
    """
    files = _find(inputs, exclude)
    if not files:
        raise PhasesegInputError(
            f"no images found in {', '.join(map(str, inputs))} "
            f"(accepted endings: {' '.join(IMAGE_SUFFIXES)}; {' '.join(BIOIO_SUFFIXES)} "
            "need phaseseg[formats])"
        )
    seen: dict[str, Path] = {}
    for f in files:
        key = f.image_id
        if key in seen:
            raise PhasesegInputError(
                f"{f.path}: same image id {key!r} as {seen[key]} (give the folder that holds "
                "both, so that their ids keep their sub-folders)"
            )
        seen[key] = f.path
    return files


def find_image_set(
    inputs: list[str | os.PathLike], exclude: Iterable[str | os.PathLike | None] = ()
) -> list[Path]:
    """The paths of :func:`find_image_files` (ids unique, at least one image)."""
    return [f.path for f in find_image_files(inputs, exclude)]

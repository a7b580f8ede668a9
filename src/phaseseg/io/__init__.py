"""Reading and writing images, Kaggle run-length encodings and the competition's CSV files.

Conventions (the Sartorius competition's):

* an RLE is a string of space-separated ``start length`` pairs; starts are 1-indexed and count
  pixels row by row (row-major, C order) over an image of shape ``(height, width)``;
* ``labels`` is an int32 ``(H, W)`` array, 0 = background, 1..N = cells;
* ``masks`` is a bool ``(N, H, W)`` array.

User mistakes (missing file, corrupt image, malformed row) raise :class:`PhasesegInputError` with
one line that names the file (and row) and what is wrong; the CLI prints it and exits non-zero.

Modules: :mod:`~phaseseg.io.rle` (RLE), :mod:`~phaseseg.io.tables` (``train.csv``,
``submission.csv``), :mod:`~phaseseg.io.images` (images), :mod:`~phaseseg.io.microscopy`
(stacks frame by frame, pixel size and frame times from metadata, bioio formats),
:mod:`~phaseseg.io.files` (atomic writes); COCO JSON and label images (TIFF/PNG) live in
:mod:`phaseseg.io.formats`, Fiji ROI sets in :mod:`phaseseg.io.rois`, writing and validating
``submission.csv`` in :mod:`phaseseg.io.submission` (none of them is imported here).
"""

from phaseseg.io.errors import PhasesegInputError
from phaseseg.io.files import atomic_dir, atomic_path, output_dir, remove_stale_temporaries
from phaseseg.io.images import (
    ID_SEPARATOR,
    IMAGE_SUFFIXES,
    TIFF_SUFFIXES,
    ImageFile,
    find_image_files,
    find_image_set,
    find_images,
    image_shape,
    read_image,
)
from phaseseg.io.microscopy import FrameInfo, frame_infos, image_id, iter_frames
from phaseseg.io.rle import (
    IMAGE_SHAPE,
    _format_runs,
    _parse_ints,
    _rows_runs,
    check_labels,
    label_runs,
    labels_to_rles,
    rle_decode,
    rle_encode,
    rle_pixels,
    rle_runs,
    rles_to_labels,
    run_indices,
)
from phaseseg.io.tables import (
    CELL_TYPES,
    TRAIN_COLUMNS,
    TRAIN_EXTRA_COLUMNS,
    _read_csv,
    annotations_to_labels,
    iter_image_labels,
    read_submission,
    read_train_csv,
    train_labels,
)

__all__ = [
    "CELL_TYPES",
    "FrameInfo",
    "IMAGE_SHAPE",
    "ID_SEPARATOR",
    "IMAGE_SUFFIXES",
    "ImageFile",
    "TIFF_SUFFIXES",
    "TRAIN_COLUMNS",
    "TRAIN_EXTRA_COLUMNS",
    "PhasesegInputError",
    "annotations_to_labels",
    "atomic_dir",
    "atomic_path",
    "check_labels",
    "find_image_files",
    "find_image_set",
    "find_images",
    "frame_infos",
    "image_id",
    "iter_frames",
    "image_shape",
    "iter_image_labels",
    "label_runs",
    "labels_to_rles",
    "output_dir",
    "read_image",
    "read_submission",
    "read_train_csv",
    "remove_stale_temporaries",
    "rle_decode",
    "rle_encode",
    "rle_pixels",
    "rle_runs",
    "rles_to_labels",
    "run_indices",
    "train_labels",
    "_format_runs",
    "_parse_ints",
    "_read_csv",
    "_rows_runs",
]

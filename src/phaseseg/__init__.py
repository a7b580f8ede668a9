"""phaseseg: instance segmentation of neuronal cells in phase-contrast microscopy.

>>> import numpy as np
>>> from phaseseg import load_model
>>> image = np.full((96, 128), 128, np.uint8)  # a phase-contrast image: uint8 (H, W)
>>> labels = load_model().segment(image)       # -> int32 (H, W) labels, 0 = background
>>> labels.shape, labels.dtype
((96, 128), dtype('int32'))
"""

__version__ = "0.1.0"
__all__ = ["load_model", "__version__"]


def __getattr__(name: str):
    # imported lazily: torch takes a second to import, the CLI's --help should not wait for it
    if name == "load_model":
        from phaseseg.segment.segmenter import load_model

        return load_model
    raise AttributeError(f"module 'phaseseg' has no attribute {name!r}")

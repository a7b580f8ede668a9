"""phaseseg: instance segmentation of neuronal cells in phase-contrast microscopy.

>>> from phaseseg import load_model
>>> labels = load_model().segment(image)   # uint8 (H, W) -> int32 (H, W) labels
"""

__version__ = "0.1.0"
__all__ = ["load_model", "__version__"]


def __getattr__(name: str):
    # imported lazily: torch takes a second to import, the CLI's --help should not wait for it
    if name == "load_model":
        from phaseseg.segment.segmenter import load_model

        return load_model
    raise AttributeError(f"module 'phaseseg' has no attribute {name!r}")

"""Time points from file names (:func:`parse_time`: LIVECell convention or a regex), plate,
well, field and time from image names (:func:`parse_name`), and the time course of count and
confluence per well (:func:`timecourse`, :func:`plot_timecourse`)."""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from matplotlib.figure import Figure

from phaseseg import io
from phaseseg.analysis.columns import COLUMNS

LIVECELL_NAME = re.compile(
    r"^(?P<cell_type>[^_]+)_Phase_(?P<well>[A-Za-z]+\d+)_(?P<rep>\d+)_"
    r"(?P<d>\d+)d(?P<h>\d+)h(?P<m>\d+)m_(?P<pos>\d+)$"
)
_TIME_GROUPS = ("hours", "d", "h", "m")
_NAME_GROUPS = ("plate", "well", "field", *_TIME_GROUPS)


@dataclass(frozen=True)
class TimePoint:
    """Where and when an image was taken."""

    well: str  # "all" when the file name carries no well
    elapsed_h: float  # hours since the start of imaging


def compile_time_pattern(regex: str) -> re.Pattern[str]:
    """Compile a ``--time-from`` regular expression and check its named groups.

    The pattern needs ``(?P<hours>...)`` (a number, may be fractional) or any of
    ``(?P<d>...)``, ``(?P<h>...)``, ``(?P<m>...)`` (days, hours, minutes; missing ones count 0),
    and may have ``(?P<well>...)``.

    Raises
    ------
    PhasesegInputError
        When the expression does not compile or has none of the time groups.

    Examples
    --------
    >>> compile_time_pattern(r"t(?P<hours>\\d+)h").groupindex["hours"]
    1
    """
    return _compile_with_groups(
        "--time-from", regex, _TIME_GROUPS, "(?P<hours>...) or (?P<d>...), (?P<h>...), (?P<m>...)"
    )


def parse_time(name: str | os.PathLike, pattern: re.Pattern[str] | None = None) -> TimePoint | None:
    """Well and elapsed hours from an image file name.

    Parameters
    ----------
    name : str or path
        File name or path (only the name is used).
    pattern : compiled regex, optional
        From :func:`compile_time_pattern`; searched (``re.search``) in the file's stem, then in
        its full name. Default: the LIVECell convention :data:`LIVECELL_NAME` on the stem.

    Returns
    -------
    TimePoint or None
        None when the name does not match (or a time group is not a number).

    Examples
    --------
    >>> parse_time("SHSY5Y_Phase_A10_1_01d04h30m_1.tif")
    TimePoint(well='A10', elapsed_h=28.5)
    >>> pattern = compile_time_pattern(r"_(?P<well>[A-H]\\d+)_t(?P<hours>[\\d.]+)h")
    >>> parse_time("plate1_B3_t12.5h.png", pattern)
    TimePoint(well='B3', elapsed_h=12.5)
    >>> parse_time("image.png") is None
    True
    """
    path = Path(name)
    if pattern is None:
        match = LIVECELL_NAME.match(path.stem)
    else:
        match = pattern.search(path.stem) or pattern.search(path.name)
    if match is None:
        return None
    groups = {k: v for k, v in match.groupdict().items() if v is not None}
    hours = _hours(groups)
    if hours is None:
        return None
    return TimePoint(groups.get("well") or "all", hours)


def _hours(groups: dict[str, str]) -> float | None:
    """Hours from the matched groups ``hours`` or ``d``/``h``/``m`` (None: none, or not a
    finite number)."""
    try:
        if "hours" in groups:
            hours = float(groups["hours"])
        else:
            parts = [float(groups.get(k, 0)) for k in ("d", "h", "m")]
            if not any(k in groups for k in ("d", "h", "m")):
                return None
            hours = 24 * parts[0] + parts[1] + parts[2] / 60
    except ValueError:
        return None
    return hours if math.isfinite(hours) else None


@dataclass(frozen=True)
class NameFields:
    """Plate, well, field (position) and time carried by an image's name (None: not there)."""

    plate: str | None = None
    well: str | None = None
    field: str | None = None
    elapsed_h: float | None = None


def compile_name_pattern(regex: str) -> re.Pattern[str]:
    """Compile a ``--name-pattern`` regular expression; it needs at least one of the named
    groups ``plate``, ``well``, ``field``, ``hours`` (or ``d``, ``h``, ``m``).

    Raises
    ------
    PhasesegInputError
        When the expression does not compile or has none of these groups.

    Examples
    --------
    >>> sorted(compile_name_pattern(r"(?P<plate>[^/]+)/(?P<well>[^/]+)/").groupindex)
    ['plate', 'well']
    """
    return _compile_with_groups(
        "--name-pattern",
        regex,
        _NAME_GROUPS,
        "among " + ", ".join(f"(?P<{g}>...)" for g in _NAME_GROUPS),
    )


def _compile_with_groups(
    option: str, regex: str, groups: tuple[str, ...], needs: str
) -> re.Pattern[str]:
    """Compile ``option``'s ``regex``; refuse it in one line unless it has one of ``groups``
    (``needs`` completes "needs a named group ...")."""
    try:
        pattern = re.compile(regex)
    except re.error as e:
        raise io.PhasesegInputError(f"{option} {regex!r}: not a regular expression ({e})") from None
    if not set(pattern.groupindex) & set(groups):
        raise io.PhasesegInputError(f"{option} {regex!r}: needs a named group {needs}")
    return pattern


def parse_name(name: str, pattern: re.Pattern[str] | None = None) -> NameFields:
    r"""Plate, well, field and elapsed hours from an image's name.

    Parameters
    ----------
    name : str
        The image's path below the folder it was found in, ``/``-separated, with the file's
        suffix (``plate1/A1/f1.tif``; a frame of a stack: ``plate1/x_t003.tif``).
    pattern : compiled regex, optional
        From :func:`compile_name_pattern`; searched in ``name`` without its suffix, then in
        ``name``. Default: LIVECell / IncuCyte file names (:data:`LIVECELL_NAME`: well, field
        = the position, time), matched on the file's name.

    Examples
    --------
    >>> parse_name("plate2/A172_Phase_C7_1_02d04h00m_1.tif")
    NameFields(plate=None, well='C7', field='1', elapsed_h=52.0)
    >>> p = compile_name_pattern(r"(?P<plate>[^/]+)/(?P<well>[A-P]\d+)/f(?P<field>\d+)")
    >>> parse_name("p1/B3/f2.tif", p)
    NameFields(plate='p1', well='B3', field='2', elapsed_h=None)
    """
    if pattern is None:
        match = LIVECELL_NAME.match(Path(name).stem)
        if match is None:
            return NameFields()
        groups = match.groupdict()
        return NameFields(None, groups["well"], groups["pos"], _hours(groups))
    suffix = Path(name).suffix
    stem = name[: -len(suffix)] if suffix else name
    match = pattern.search(stem) or pattern.search(name)
    if match is None:
        return NameFields()
    groups = {k: v for k, v in match.groupdict().items() if v is not None}
    return NameFields(groups.get("plate"), groups.get("well"), groups.get("field"), _hours(groups))


# --------------------------------------------------------------------------- time course

_TC_MEANS = (
    ("cells_per_image", "n_cells"),
    ("confluence_pct", "confluence_pct"),
    ("median_area_px", "median_area_px"),
    ("median_area_um2", "median_area_um2"),
    ("density_per_mm2", "density_per_mm2"),
    ("density_per_mpx", "density_per_mpx"),
)


def timecourse(images: pd.DataFrame) -> pd.DataFrame:
    """Aggregate per-image summaries by well and time point.

    Parameters
    ----------
    images : DataFrame
        Rows of :func:`summarize_image` with ``well`` and ``elapsed_h`` columns (and
        ``plate``, optional); rows without a time (``elapsed_h`` NaN) are ignored.

    Returns
    -------
    DataFrame
        One row per ([plate,] well, time point), sorted by plate, well then time, with the
        columns of
        ``COLUMNS["timecourse.csv"]``: totals of ``n_cells``, means of the others.
    """
    timed = images.dropna(subset=["elapsed_h"])
    if timed.empty:
        return pd.DataFrame(columns=[c.name for c in COLUMNS["timecourse.csv"] if not c.when])
    keys = ["well", "elapsed_h"]
    if "plate" in timed.columns and timed["plate"].notna().any():
        timed = timed.assign(plate=timed["plate"].fillna(""))
        keys = ["plate", *keys]
    groups = timed.groupby(keys, sort=True)
    out = groups.size().rename("n_images").to_frame()
    out["n_cells"] = groups["n_cells"].sum()
    for name, source in _TC_MEANS:
        if source in timed.columns:
            out[name] = groups[source].mean().round(2)
    return out.reset_index()


def plot_timecourse(tc: pd.DataFrame) -> Figure:
    """Cells per image and confluence over time, one line per well.

    Parameters
    ----------
    tc : DataFrame
        :func:`timecourse` output.

    Returns
    -------
    matplotlib Figure (two panels side by side).
    """
    from phaseseg.analysis.report import new_figure

    fig = new_figure(figsize=(10, 3.8), layout="constrained")
    ax_n, ax_c = fig.subplots(1, 2)
    if "plate" in tc.columns:  # one line per plate and well
        tc = tc.assign(well=tc["plate"].astype(str) + "/" + tc["well"].astype(str))
    wells = list(dict.fromkeys(tc["well"]))
    for well in wells:
        rows = tc[tc["well"] == well].sort_values("elapsed_h")
        label = None if len(wells) == 1 and well == "all" else str(well)
        ax_n.plot(rows["elapsed_h"], rows["cells_per_image"], "o-", ms=4, label=label)
        ax_c.plot(rows["elapsed_h"], rows["confluence_pct"], "o-", ms=4, label=label)
    multi = tc["n_images"].gt(1).any()
    ax_n.set_ylabel("cells per image" + (" (mean of fields)" if multi else ""))
    ax_n.set_title("Cell count")
    ax_c.set_ylabel("confluence (% of area)")
    ax_c.set_title("Confluence")
    for ax in (ax_n, ax_c):
        ax.set_xlabel("elapsed time (h)")
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
    if len(wells) > 1 or wells != ["all"]:
        ax_c.legend(title="well", fontsize="small", ncols=1 + len(wells) // 12)
    return fig

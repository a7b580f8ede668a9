"""Outputs that appear whole or not at all.

* :func:`atomic_path`: a file is written under a temporary name beside it,
  ``.NAME.phaseseg-XXXXXXXX.SUF`` (8 hex digits, the file's own suffix), and renamed onto
  ``NAME`` only when complete; on an error or Ctrl-C the temporary file is removed.
* :func:`atomic_dir`: the same for a folder built in several steps.
* :func:`output_dir`: a folder created for a run's outputs is removed again if the run fails
  before writing anything into it.
* :func:`remove_stale_temporaries`: what a killed run (``kill -9``, power loss) left behind is
  removed by the next run that writes into the same folder. A temporary is stale when no
  process holds its lock (the writer keeps an advisory lock on it while it lives) and it is
  older than the current process. (Unmarked ones of earlier versions, ``.NAME.XXXXXXXX.SUF``,
  are removed when ``NAME`` is written again.)
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import secrets
import shutil
import time
from collections.abc import Collection, Iterator
from pathlib import Path

try:  # advisory locks mark temporaries still being written (POSIX)
    import fcntl
except ImportError:  # pragma: no cover - Windows: the age rule alone decides
    fcntl = None  # type: ignore[assignment]

log = logging.getLogger(__name__)

#: When this process started writing: temporaries older than this are an earlier run's.
RUN_STARTED = time.time()

_TEMPORARY = re.compile(r"^\.(?P<name>.+)\.phaseseg-[0-9a-f]{8}(?P<suffix>\.[^.]*)?$")
_UNMARKED = re.compile(r"^\.(?P<name>.+)\.[0-9a-f]{8}(?P<suffix>\.[^.]*)?$")  # before 0.2
_seen: dict[Path, dict[str, list[Path]]] = {}  # folder -> its unmarked temporaries by target


def temporary_name(path: str | os.PathLike) -> Path:
    """A fresh temporary name beside ``path``: ``.NAME.phaseseg-XXXXXXXX.SUF`` (not created).

    >>> temporary_name("out/s.csv").name.startswith(".s.csv.phaseseg-")
    True
    """
    path = Path(path)
    return path.with_name(f".{path.name}.phaseseg-{secrets.token_hex(4)}{path.suffix}")


def is_temporary_name(name: str) -> bool:
    """Whether ``name`` is one of :func:`temporary_name`'s.

    >>> is_temporary_name(".s.csv.phaseseg-06699805.csv"), is_temporary_name("s.csv")
    (True, False)
    """
    return _target(_TEMPORARY, name) is not None


def _target(pattern: re.Pattern[str], name: str) -> str | None:
    """The file a temporary ``name`` stands for, if ``pattern`` matches it."""
    m = pattern.match(name)
    if m is None or Path(m["name"]).suffix != (m["suffix"] or ""):
        return None
    return m["name"]


def remove_stale_temporaries(
    directory: str | os.PathLike[str],
    before: float | None = None,
    targets: Collection[str] = (),
) -> list[Path]:
    """Remove the temporaries that killed runs left in ``directory``; return what was removed.

    A file or folder named like :func:`temporary_name`'s is removed when it was last modified
    before ``before`` (default: :data:`RUN_STARTED`) and no living process holds its lock. So
    are those of earlier versions, ``.NAME.XXXXXXXX.SUF`` without the ``phaseseg-`` mark, when
    ``NAME`` is in ``targets`` (the files being written again: the name alone is too plain
    to remove others).
    """
    removed: list[Path] = []
    try:
        entries = list(os.scandir(directory))
    except OSError:
        return removed
    for entry in entries:
        stands_for = _target(_UNMARKED, entry.name)  # an unmarked temporary's file, or None
        if is_temporary_name(entry.name) or (stands_for is not None and stands_for in targets):
            if _remove_if_stale(Path(entry.path), before):
                removed.append(Path(entry.path))
    return removed


def _remove_if_stale(path: Path, before: float | None = None) -> bool:
    before = RUN_STARTED if before is None else before
    try:
        if path.lstat().st_mtime >= before or _locked(str(path)):
            return False
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink()
    except OSError:  # gone meanwhile, or not ours to remove
        return False
    log.info("removed %s, left by an interrupted run", path)
    return True


def _clean_before_writing(path: Path) -> None:
    """Before ``path`` is written: the first time in its folder, remove the stale temporaries
    there; each time, those that earlier versions left for ``path`` itself."""
    folder = path.parent.resolve()
    if folder not in _seen:
        unmarked: dict[str, list[Path]] = {}
        try:
            entries = list(os.scandir(folder))
        except OSError:
            entries = []
        for entry in entries:
            if is_temporary_name(entry.name):
                _remove_if_stale(Path(entry.path))
            elif (target := _target(_UNMARKED, entry.name)) is not None:
                unmarked.setdefault(target, []).append(Path(entry.path))
        _seen[folder] = unmarked
    for old in _seen[folder].pop(path.name, []):
        _remove_if_stale(old)


def _locked(path: str) -> bool:
    """Whether another process holds the lock of the temporary ``path``."""
    if fcntl is None:  # pragma: no cover
        return False
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return False
    except OSError:
        return True
    finally:
        os.close(fd)  # also releases the lock just taken


def _hold_lock(path: Path) -> int | None:
    """Open ``path`` and lock it for as long as the descriptor stays open."""
    if fcntl is None:  # pragma: no cover
        return None
    fd = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:  # pragma: no cover - a file system without locks: the age rule decides
        pass
    return fd


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` only on success.

    The temporary file is created with the usual permissions (``0o666`` less the umask), so
    the final file is readable like any other, not private like ``tempfile.mkstemp``'s. On any
    exception, Ctrl-C included, it is removed; stale ones of killed runs are removed by the
    first write into the same folder (:func:`remove_stale_temporaries`).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _clean_before_writing(path)
    while True:
        tmp_path = temporary_name(path)
        try:
            os.close(os.open(tmp_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
            break
        except FileExistsError:  # pragma: no cover - 32-bit random name collision
            continue
    lock = None
    try:
        lock = _hold_lock(tmp_path)
        yield tmp_path
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()
        if lock is not None:
            os.close(lock)


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a new temporary folder beside ``path``; rename it onto ``path`` on success.

    ``path`` must not exist or be an empty folder. On any exception the temporary folder and
    everything in it are removed.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _clean_before_writing(path)
    while True:
        tmp_path = temporary_name(path)
        try:
            tmp_path.mkdir()
            break
        except FileExistsError:  # pragma: no cover
            continue
    lock = None
    try:
        lock = _hold_lock(tmp_path)
        yield tmp_path
        if path.exists():
            path.rmdir()
        tmp_path.rename(path)
    finally:
        if tmp_path.exists():
            shutil.rmtree(tmp_path)
        if lock is not None:
            os.close(lock)


@contextlib.contextmanager
def output_dir(path: str | os.PathLike) -> Iterator[Path]:
    """Create the folder ``path`` (and missing parents) for the block's outputs; if the block
    raises (Ctrl-C included), remove the folders it created that are still empty.

    Inside a folder it created, empty sub-folders (e.g. ``labels/`` before the first image) go
    too; files, and folders that existed before, stay.
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        from phaseseg.io.errors import PhasesegInputError

        raise PhasesegInputError(f"{path}: exists and is not a folder")
    created = [p for p in (path, *path.parents) if not p.exists()]
    path.mkdir(parents=True, exist_ok=True)
    try:
        yield path
    except BaseException:
        if created:
            for root, _, _ in sorted(os.walk(path), key=lambda w: -len(Path(w[0]).parts)):
                with contextlib.suppress(OSError):  # not empty: an output was written
                    Path(root).rmdir()
            for folder in created[1:]:  # the missing parents, deepest first
                try:
                    folder.rmdir()
                except OSError:
                    break
        raise

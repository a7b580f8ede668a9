"""One Dask task per item, results in input order as they arrive."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from distributed import Client

log = logging.getLogger(__name__)


class TaskFailed(Exception):
    """A task that raised on its worker, or that Dask gave up on (``KilledWorker``: it was
    running on ``distributed.scheduler.allowed-failures`` workers that died)."""


def map_ordered(
    client: Client,
    func: Callable[..., Any],
    items: Sequence[Any],
    *args: Any,
    window: int | None = None,
    on_done: Callable[[], None] | None = None,
) -> Iterator[tuple[int, Any]]:
    """Yield ``(i, func(items[i], *args))`` for every item, in input order.

    Tasks are submitted ``window`` at a time (default: 4 per worker thread, at least 8), so
    that results waiting for an earlier, slower one are bounded in number; each result is
    released on the workers once yielded. A task that raised yields a :class:`TaskFailed`
    instead of its result (the caller reports and skips it).

    Every item's result is yielded exactly once. If a worker dies, the scheduler runs its
    tasks (queued, running, or finished but not yet fetched) again on other workers; keys
    are unique per call, so repeated items are computed once each. ``on_done`` is called as
    each task finishes, in whatever order (a progress bar).
    """
    from distributed import as_completed

    n = len(items)
    if window is None:
        threads = sum(client.nthreads().values())
        window = max(8, 4 * threads)
    run = uuid.uuid4().hex[:8]
    futures: dict[int, Any] = {}
    done: dict[int, Any] = {}
    pending = as_completed(with_results=True, raise_errors=False)
    submitted = 0

    def submit(i: int) -> None:
        name = getattr(func, "__name__", "task")
        future = client.submit(func, items[i], *args, key=f"phaseseg-{name}-{run}-{i}", pure=False)
        futures[i] = future
        pending.add(future)

    while submitted < min(window, n):
        submit(submitted)
        submitted += 1
    index = {f.key: i for i, f in futures.items()}
    following = 0
    try:
        for future, result in pending:
            if future.status == "lost":  # its worker died before the result came here:
                pending.add(future)  # the scheduler computes it again; wait for that
                continue
            i = index.pop(future.key)
            if future.status == "error":
                _, exc, _ = result
                done[i] = TaskFailed(f"{type(exc).__name__}: {exc}")
            elif future.status != "finished":  # cancelled (e.g. the scheduler restarted)
                done[i] = TaskFailed(f"task {future.status}")
            else:
                done[i] = result
            if on_done is not None:
                on_done()
            while following in done:
                yield following, done.pop(following)
                futures.pop(following).release()
                following += 1
            while submitted < n and len(futures) < window:
                submit(submitted)
                index[futures[submitted].key] = submitted
                submitted += 1
    finally:
        for future in futures.values():
            future.cancel()

"""Connecting to a Dask scheduler, or starting a cluster of worker processes on this machine."""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from typing import TYPE_CHECKING

from phaseseg.io import PhasesegInputError

if TYPE_CHECKING:
    from distributed import Client

log = logging.getLogger(__name__)


@contextlib.contextmanager
def open_client(
    address: str | None = None, workers: int | None = None, connect_timeout: float = 20
) -> Iterator[Client | None]:
    """A ``distributed.Client`` for the block, closed (with its cluster) afterwards.

    Parameters
    ----------
    address : str, optional
        Scheduler address (``tcp://host:8786``, as ``dask scheduler`` prints it): connect to
        that cluster (``dask worker`` processes, dask-jobqueue on SLURM, Kubernetes).
    workers : int, optional
        Start a :class:`distributed.LocalCluster` of this many worker processes on
        127.0.0.1, one thread each (torch inside each uses ``cores / workers`` threads: see
        :class:`~phaseseg.distributed.ModelSpec`).
    connect_timeout : float
        Seconds to wait for the scheduler.

    Neither given: yields None (the caller runs in this process). Both: refused.
    """
    if address is not None and workers is not None:
        raise PhasesegInputError("give --dask ADDRESS or --workers N, not both")
    if address is None and workers is None:
        yield None
        return
    try:
        from distributed import Client, LocalCluster
    except ImportError:
        raise PhasesegInputError(
            "--dask / --workers need Dask distributed: pip install 'phaseseg[distributed]'"
        ) from None
    logging.getLogger("distributed").setLevel(logging.WARNING)
    # "Worker process still alive after 4 seconds, killing", as a busy machine closes them
    logging.getLogger("distributed.nanny").setLevel(logging.ERROR)
    if workers is not None:
        if workers < 1:
            raise PhasesegInputError(f"--workers {workers}: give 1 or more")
        cluster = LocalCluster(
            n_workers=workers,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            dashboard_address=None,
        )
        try:
            with Client(cluster) as client:
                log.info("started %d local workers (%s)", workers, cluster.scheduler_address)
                yield client
        finally:
            cluster.close()
        return
    try:
        client = Client(address, timeout=connect_timeout)
    except (OSError, TimeoutError, ValueError) as e:
        raise PhasesegInputError(
            f"--dask {address}: no Dask scheduler answers there ({type(e).__name__}: {e})"
        ) from None
    with client:
        n = len(client.scheduler_info().get("workers", {}))
        log.info("connected to %s (%d workers)", address, n)
        if n == 0:
            log.warning("%s has no workers yet: tasks wait until a worker joins", address)
        yield client


def local_threads(workers: int) -> int:
    """Torch threads for each of ``workers`` processes sharing this machine's cores.

    >>> local_threads(os.cpu_count() or 1) >= 1
    True
    """
    return max(1, (os.cpu_count() or 1) // workers)

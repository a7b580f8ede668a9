"""Whole screens on Dask distributed: the per-image pipeline of ``predict`` and ``measure``
run on a cluster's workers, the outputs written by the client in input order.

* :func:`open_client` — a ``distributed.Client`` of an existing scheduler (``--dask ADDRESS``)
  or of a :class:`~distributed.LocalCluster` of worker processes (``--workers N``);
* :func:`map_ordered` — one task per item, a bounded number in flight, results yielded in
  input order as they arrive (a lost worker's tasks are recomputed by Dask elsewhere);
* :class:`ModelSpec` / :func:`worker_model` — what a task needs to load the model, and the
  per-process cache that loads it once per worker.

Workers read the images from a file system they share with the client: tasks carry paths,
never pixels. Large images block by block: see the large-image path.
"""

from phaseseg.distributed.cluster import open_client
from phaseseg.distributed.models import ModelSpec, worker_model
from phaseseg.distributed.ordered import map_ordered

__all__ = ["ModelSpec", "map_ordered", "open_client", "worker_model"]

"""Grading on a Dask cluster: one task per submission, graded on a worker with the same engine,
bundle and sandbox as local grading (docs/running-a-class.md, "Grading on a cluster").

- ``grade_task(homework, archive, filename, ...)``: what a worker runs (``worker``);
- ``GradingCluster(address=None, n_workers=2, ...)``: a Dask client, on an in-process local
  cluster by default (``client``);
- ``grade_batch_on_cluster``: ``python -m autograder grade HW SUB... --cluster ADDRESS``, with
  the outputs and resume semantics of local grading (``batch``).

``distributed`` is imported only when a cluster is made: ``grade_task`` runs without it.
"""

from autograder.cluster.client import GradingCluster, GradingItem
from autograder.cluster.worker import grade_task

__all__ = ["GradingCluster", "GradingItem", "grade_task"]

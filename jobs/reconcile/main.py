"""Cloud Run job entry script (``python -m jobs.reconcile``).

The job itself is ``gatehouse.entrypoints.reconcile``, which the local stack runs too.
"""

from gatehouse.entrypoints.reconcile import main

__all__ = ["main"]

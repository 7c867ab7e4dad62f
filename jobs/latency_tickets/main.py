"""Cloud Run job entry script (``python -m jobs.latency_tickets``).

The job itself is ``gatehouse.entrypoints.latency_tickets``, which the local stack runs too.
"""

from gatehouse.entrypoints.latency_tickets import main

__all__ = ["main"]

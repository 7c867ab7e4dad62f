"""Cloud Run job entry script (``python -m jobs.rotate_credentials``).

The job itself is ``gatehouse.entrypoints.rotate_credentials``, which the local stack runs too.
"""

from gatehouse.entrypoints.rotate_credentials import main

__all__ = ["main"]

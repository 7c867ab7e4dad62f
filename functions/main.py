"""Cloud Run functions entry script: functions-framework loads this file (``--source``).

The handlers live in ``gatehouse.entrypoints.functions`` so that the local stack runs the same code.
"""

from gatehouse.entrypoints.functions import on_command, on_run_event

__all__ = ["on_command", "on_run_event"]

"""The cold-start baseline: a CloudEvent function that does nothing, served by the same
functions-framework the same way as ``on_run_event`` (see :mod:`bench.cold_start`)."""

import functions_framework


@functions_framework.cloud_event
def bare(cloud_event: object) -> None:
    """Acknowledge the event and do nothing else."""

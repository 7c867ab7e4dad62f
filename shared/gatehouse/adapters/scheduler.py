"""Cloud Scheduler v1 through the official google-cloud-scheduler client (REST transport): the
three calls a freeze makes (read a job's state, pause it, resume it).

Imported only by ``gatehouse freeze``/``unfreeze`` (through ``gatehouse.runtime``): no function or
job imports it on a cold path.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from google.auth.credentials import Credentials
from google.cloud import scheduler_v1

from gatehouse.adapters.gapic import call, rest_client
from gatehouse.adapters.http import retrying
from gatehouse.errors import NotFoundError

T = TypeVar("T")


class CloudSchedulerJobs:
    """The ``gatehouse.rollouts.ports.SchedulerJobs``: states as the API names them (ENABLED,
    PAUSED, DISABLED, UPDATE_FAILED). Refusals raise ``PermanentError`` with the HTTP status (404 for
    a missing job, 400 for a job not in the state the call needs), throttling and 5xx are retried
    and then raise ``TransientError``."""

    def __init__(
        self,
        *,
        endpoint: str | None = None,
        credentials: Credentials | None = None,
        anonymous: bool = False,
        retry_attempts: int = 5,
        retry_max_wait: float = 20.0,
        timeout: float = 30.0,
    ) -> None:
        self.client = rest_client(
            scheduler_v1.CloudSchedulerClient, endpoint=endpoint, credentials=credentials, anonymous=anonymous
        )
        self.retry = retrying(retry_attempts, retry_max_wait)
        self.timeout = timeout

    def _call(self, what: str, fn: Callable[[], T]) -> T:
        return call(self.retry, what, fn)

    def state(self, name: str) -> str | None:
        """The job's state, or None when there is no such job."""
        try:
            job = self._call(f"get {name}", lambda: self.client.get_job(name=name, timeout=self.timeout))
        except NotFoundError:
            return None
        return _state(job)

    def pause(self, name: str) -> str:
        job = self._call(f"pause {name}", lambda: self.client.pause_job(name=name, timeout=self.timeout))
        return _state(job)

    def resume(self, name: str) -> str:
        job = self._call(f"resume {name}", lambda: self.client.resume_job(name=name, timeout=self.timeout))
        return _state(job)

    def close(self) -> None:
        self.client.transport.close()  # type: ignore[no-untyped-call]


def _state(job: scheduler_v1.Job) -> str:
    return str(scheduler_v1.Job.State(job.state).name)

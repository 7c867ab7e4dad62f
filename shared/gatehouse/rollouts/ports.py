"""What the rollout engine needs from the outside world. Pure module."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from gatehouse.rollouts.fleet import FleetConfig
from gatehouse.rollouts.waves import Member


class RolloutStore(Protocol):
    """Documents by key: ``fleet`` (running configuration, active rollout, freeze), ``rollout/<id>``,
    ``config/<id>`` (every configuration a rollout may fall back to is kept)."""

    def get(self, key: str) -> dict[str, Any] | None: ...
    def put(self, key: str, doc: Mapping[str, Any]) -> None: ...


class Deployer(Protocol):
    def deploy(self, member: Member, config: FleetConfig) -> int | None:
        """Render ``member``'s service with ``config`` and deploy it (watched to READY); returns
        the deployed revision. Idempotent: what is already deployed is not deployed again."""
        ...

    def current(self, proxy: str) -> tuple[dict[str, int], dict[str, str]]:
        """The proxy's deployed revision per environment and its labels."""
        ...

    def restore(self, proxy: str, previous: Mapping[str, int], labels: Mapping[str, str]) -> None:
        """Put the proxy back on ``previous`` (0: not deployed there) and its labels."""
        ...


class GroupedStats(Protocol):
    def stats_grouped(
        self,
        environment: str,
        *,
        dimensions: Sequence[str],
        select: Sequence[str],
        start: int,
        end: int,
        proxies: Sequence[str],
    ) -> Mapping[str, Any]: ...


class Tickets(Protocol):
    def open_once(self, label: str, title: str, body: str) -> str:
        """Open a ticket unless one labelled ``label`` exists; returns its URL."""
        ...


class SchedulerJobs(Protocol):
    """Cloud Scheduler jobs by full name (``projects/P/locations/L/jobs/J``); states as the API
    names them: ENABLED, PAUSED, DISABLED, UPDATE_FAILED."""

    def state(self, name: str) -> str | None:
        """The job's state; None when there is no such job."""
        ...

    def pause(self, name: str) -> str:
        """Pause an ENABLED job; returns its new state. ``PermanentError`` (status 404: no such job,
        400: not ENABLED) or ``TransientError``."""
        ...

    def resume(self, name: str) -> str:
        """Resume a PAUSED job; returns its new state. Errors as :meth:`pause`."""
        ...

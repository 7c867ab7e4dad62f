"""One error vocabulary for every layer.

Entry points map these onto the platform: ``TransientError`` -> raise (Pub/Sub redelivers, a job
exits non-zero and Cloud Run retries the task); ``PermanentError`` and ``InputError`` -> log and
acknowledge, so a bad message never loops.
"""

from __future__ import annotations


class GatehouseError(Exception):
    """Base class of every error gatehouse raises on purpose."""


class InputError(GatehouseError):
    """The input itself is wrong (malformed envelope, hostile label, bad setting). Never retried."""


class PermanentError(GatehouseError):
    """The call was understood and refused; repeating it unchanged will fail the same way."""

    def __init__(self, message: str, *, status: int | None = None, reason: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason


class NotFoundError(PermanentError):
    """The resource does not exist (HTTP 404)."""


class ConflictError(PermanentError):
    """The desired change collides with something gatehouse must not touch (base path, ownership)."""


class TransientError(GatehouseError):
    """Worth retrying later: 429, 5xx, timeouts, connection errors, lost leases."""

    def __init__(self, message: str, *, status: int | None = None, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after


TRANSIENT_HTTP_STATUSES = frozenset({408, 429, 500, 502, 503, 504})


def is_transient_status(status: int) -> bool:
    """True for HTTP statuses that may succeed on retry."""
    return status in TRANSIENT_HTTP_STATUSES


def is_transient(exc: BaseException) -> bool:
    """The single retry predicate used by every adapter and entry point."""
    return isinstance(exc, TransientError)
